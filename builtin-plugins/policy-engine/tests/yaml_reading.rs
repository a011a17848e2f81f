//! Rule files are read as YAML; a file YAML refuses is read with the upstream-compatible
//! grammar. Both readings give one syntax tree: on every upstream policy file that YAML
//! accepts, the trees are the same except for the one documented escape (upstream parity
//! does not depend on which reader ran).

mod common;
use common::data_dir;

use std::sync::Arc;

use sysflow_policy_engine::falco::{collect_files, parser, read_file};

#[test]
fn yaml_and_upstream_readings_agree_on_upstream_policy_files() {
    let Some(data) = data_dir() else { return };
    let mut yaml_read = 0;
    let mut fallback = Vec::new();
    let mut differences = Vec::new();
    for set in ["runtimeintegrity", "distribution", "tests"] {
        let files = collect_files(&data.join("policies").join(set)).expect("policy files");
        for f in files {
            let src = std::fs::read_to_string(&f).expect("read");
            let file = Arc::new(f.clone());
            let old = parser::parse_file(&src, file.clone()).expect("upstream grammar reads upstream's files");
            let name = f.strip_prefix(data.join("policies")).unwrap_or(&f).display().to_string();
            let (items, errors, warning) = read_file(&src, file);
            assert!(errors.is_empty(), "{name}: {errors:?}");
            match warning {
                None => {
                    yaml_read += 1;
                    assert_eq!(items.len(), old.len(), "{name}");
                    for (a, b) in items.iter().zip(&old) {
                        let (a, b) = (format!("{a:?}"), format!("{b:?}"));
                        if a != b {
                            // The first differing stretch of each item, at a list-element boundary.
                            let i = a.bytes().zip(b.bytes()).position(|(x, y)| x != y).unwrap_or(0);
                            let cut = |s: &str| {
                                let s = &s[i..];
                                s[..s.find(", ").unwrap_or(s.len())].to_string()
                            };
                            differences.push(format!("{name}: YAML {} where upstream reads {}", cut(&a), cut(&b)));
                        }
                    }
                }
                Some(w) => fallback.push(name.clone() + ": " + w.message.as_str()),
            }
        }
    }
    assert!(yaml_read >= 10, "{yaml_read} files read as YAML");
    // Upstream's files that are not YAML (a wrongly indented `- list:`, tabs in a
    // condition): each is read with the upstream-compatible grammar, with one warning.
    let refused = |what: &str| format!("not read as YAML ({what}); read with the upstream-compatible grammar");
    let (dash, tab) = (refused("while parsing a block collection, did not find expected '-' indicator"), refused("while scanning a plain scalar, found a tab"));
    assert_eq!(
        fallback,
        [
            format!("runtimeintegrity/runtimeintegrity.yaml: {dash}"),
            format!("runtimeintegrity/ttps.yaml: {dash}"),
            format!("tests/falco.yaml: {}", refused("invalid indentation")),
            format!("tests/unit_test_fileflow.yaml: {tab}"),
            format!("tests/unit_test_logic.yaml: {tab}"),
            format!("tests/unit_test_networkflow.yaml: {tab}"),
            format!("tests/unit_test_simple.yaml: {dash}"),
        ]
    );
    // The one difference (docs/compatibility.md): a JSON escape in a double-quoted list
    // element, which upstream compared as its backslash text.
    assert_eq!(differences, [r#"distribution/filter.yaml: YAML <NA>" where upstream reads \\u003cNA\\u003e""#]);
}

use std::path::{Path, PathBuf};

use sysflow_policy_engine::falco::{ast::Expr, ast::Item, load_sources};

fn constructs() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/falco_style/constructs.yaml");
    let src = std::fs::read_to_string(&path).expect("constructs.yaml");
    (path, src)
}

/// Every atom of a condition, in order, as `text@line:col`.
fn atoms(e: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(v) | Expr::Or(v) => stack.extend(v.iter().rev()),
            Expr::Not(x) => stack.push(x),
            Expr::Ref { name, pos } => out.push(format!("{name}@{}:{}", pos.line, pos.col)),
            Expr::Exists(a) => out.push(format!("{}@{}:{}", a.text, a.pos.line, a.pos.col)),
            Expr::Cmp { lhs, rhs, .. } => {
                for a in [lhs, rhs] {
                    out.push(format!("{}@{}:{}", a.text, a.pos.line, a.pos.col));
                }
            }
            Expr::List { lhs, elems, .. } => {
                for a in std::iter::once(lhs).chain(elems) {
                    out.push(format!("{}@{}:{}", a.text, a.pos.line, a.pos.col));
                }
            }
        }
    }
    out
}

#[test]
fn falco_style_file_reads_every_construct_with_positions_in_the_file() {
    let (path, src) = constructs();
    let file = Arc::new(path.clone());
    // The upstream-compatible grammar cannot read it: this file needs the YAML reader.
    assert!(parser::parse_file(&src, file.clone()).is_err());
    let (items, errors, warning) = read_file(&src, file);
    assert!(warning.is_none(), "{warning:?}");
    assert!(errors.is_empty(), "constructs.yaml reads: {errors:?}");
    let list = |n: &str| {
        items.iter().find_map(|i| match i {
            Item::List { name, items, .. } if name == n => Some(items.clone()),
            _ => None,
        })
    };
    let mac = |n: &str| {
        items.iter().find_map(|i| match i {
            Item::Macro { name, condition, .. } if name == n => Some(atoms(condition)),
            _ => None,
        })
    };
    assert_eq!(list("login_binaries").unwrap(), ["login", "systemd", "\"(systemd)\"", "su", "nologin"]);
    assert_eq!(list("block_binaries").unwrap(), ["curl", "wget", "nc"]);
    assert_eq!(mac("never_true").unwrap(), ["sf.ret@26:15", "-1@26:22", "sf.ret@26:29", "0@26:36"]);
    // `\"` inside a Falco string is resolved; positions count the file's characters.
    assert_eq!(
        mac("wal_e").unwrap(),
        [
            "proc.pname@32:15",
            "postgres@32:26",
            "proc.cmdline@32:39",
            "\"sh -c envdir \"/run/etc/wal-e.d/env\" wal-g\"@32:63"
        ]
    );
    // A folded condition: each atom at its own line of the file.
    assert_eq!(
        mac("folded").unwrap(),
        [
            "proc.name@36:5",
            "block_binaries@36:19",
            "proc.pname@37:13",
            "fd.name@38:9",
            "'/home/*/.ssh/*'@38:22"
        ]
    );
    let rules: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Rule(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].desc.as_deref(), Some("A shell started, folded over two lines."));
    assert_eq!(rules[0].pos.line, 43);
    assert_eq!(rules[0].pos.col, 1);
    assert_eq!(
        rules[0].output.as_deref(),
        Some("Shell started (user=%user.name command=%proc.cmdline parent=%proc.pname)")
    );
    assert_eq!(rules[0].priority.as_ref().map(|p| p.0.as_str()), Some("warning"));
    assert_eq!(rules[1].desc.as_deref(), Some("Double-quoted desc with an escaped \"quote\""));
    assert_eq!(rules[1].tags.as_deref(), Some(&["network".to_string(), "mitre_command_and_control".to_string()][..]));
    assert_eq!(rules[1].exceptions.len(), 1);
    assert_eq!(rules[1].exceptions[0].comps, ["=", "in"]);
    assert_eq!(rules[1].exceptions[0].values[0].iter().map(|a| a.text.as_str()).collect::<Vec<_>>(), ["curl", "shell_binaries"]);
    let cond = rules[1].condition.as_ref().unwrap();
    assert_eq!(atoms(cond), ["folded@57:5", "proc.aname@58:5", "login_binaries@58:28"]);
    // Lists, macros and exceptions resolve: the whole file lowers without errors.
    let set = load_sources(&[(path, src)]).expect("constructs.yaml lowers");
    assert_eq!(set.rules.len(), 2);
    assert!(!set.rules[1].enabled);
}

/// Loads `src` as `p.yaml` and returns each error as `file:line:col: message (at 'text')`.
fn errors(src: &str) -> Vec<String> {
    match load_sources(&[(PathBuf::from("p.yaml"), src.to_string())]) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn condition_mistakes_point_into_the_original_file() {
    // A plain scalar.
    assert_eq!(
        errors("- rule: r\n  desc: d\n  condition: proc.name = = x\n  priority: INFO\n"),
        ["p.yaml:3:26: expected a value (at '=')"]
    );
    // Inside a folded scalar, on its third line.
    assert_eq!(
        errors("- macro: m\n  condition: >\n    proc.name = bash and\n    (fd.name = x or\n     fd.name in (a, b) b)\n"),
        ["p.yaml:5:24: expected ')' or an operator (at 'b')"]
    );
    // After escapes in a double-quoted scalar: the column is the file's.
    assert_eq!(
        errors("- macro: m\n  condition: \"proc.cmdline = \\\"a b\\\" and and\"\n"),
        ["p.yaml:2:42: expected a value (at 'and')"]
    );
    // An unclosed parenthesis at the end of a literal block.
    assert_eq!(
        errors("- macro: m\n  condition: |\n    (proc.name = a or\n     proc.name = b\n"),
        ["p.yaml:4:19: unclosed '(' (opened at 3:5) at the end of the condition (at '(proc.name = a or proc.name = b')"]
    );
    // Falco operators and transformers this engine does not evaluate are named.
    assert_eq!(
        errors("- macro: m\n  condition: proc.name bcontains 6261\n"),
        ["p.yaml:2:24: operator 'bcontains' is not supported by this engine (at 'bcontains')"]
    );
    assert_eq!(
        errors("- macro: m\n  condition: tolower(proc.name) = bash\n"),
        ["p.yaml:2:14: field transformer 'tolower()' is not supported by this engine (at 'tolower')"]
    );
}

#[test]
fn yaml_mistakes_point_into_the_original_file() {
    // A scalar where a list is expected.
    assert_eq!(errors("- list: l\n  items: bash\n"), ["p.yaml:2:10: list 'l': expected a sequence, found a scalar"]);
    // An unknown rule key.
    assert_eq!(
        errors("- rule: r\n  desc: d\n  condition: proc.name = a\n  priorty: INFO\n"),
        ["p.yaml:4:3: 'priorty' is not a rule key (at 'priorty')"]
    );
    // A bad priority word.
    assert_eq!(
        errors("- rule: r\n  desc: d\n  condition: proc.name = a\n  priority: urgent\n"),
        ["p.yaml:4:13: expected a priority (low, medium, high, …) (at 'urgent')"]
    );
}

#[test]
fn unknown_fields_disable_their_rules_and_each_file_is_summed_up() {
    use sysflow_policy_engine::{compile_policy_text, ruleset::CompileOptions};
    let text = "- macro: ptrace_attach\n  condition: evt.type = ptrace and evt.arg.request in (PTRACE_ATTACH)\n\
                - rule: ptrace\n  desc: d\n  condition: ptrace_attach\n  priority: WARNING\n\
                - rule: caps\n  desc: d\n  condition: thread.cap_effective contains CAP_SYS_ADMIN and evt.arg.request = 1\n  priority: ERROR\n\
                - rule: shell\n  desc: d\n  condition: proc.name = bash\n  priority: NOTICE\n";
    let rs = compile_policy_text("falco_like.yaml", text, &CompileOptions::default()).expect("loads");
    assert_eq!(rs.rule_count(), 3);
    assert_eq!(rs.enabled_rule_count(), 1);
    assert_eq!(
        rs.file_summaries(),
        ["falco_like.yaml: 3 rules, 1 compiled, 2 disabled (unknown fields: evt.arg.request, thread.cap_effective)"]
    );
    let described: Vec<_> = rs.describe().into_iter().filter(|r| r.kind == "rule").map(|r| (r.name, r.disabled_reason)).collect();
    assert_eq!(described[0], ("ptrace".to_string(), Some("unknown attribute(s) evt.arg.request".to_string())));
}

#[test]
fn deeply_nested_yaml_is_refused_without_recursion() {
    let nested = |n: usize| format!("- list: l\n  items: {}{}\n", "[".repeat(n), "]".repeat(n));
    let e = errors(&nested(100));
    assert_eq!(e, ["p.yaml:2:72: YAML nests deeper than 64 levels"]);
    // Far deeper: YAML refuses it, and the upstream-compatible grammar reports it.
    assert_eq!(errors(&nested(200_000)), ["p.yaml:2:11: nested list not allowed here (at '[')"]);
}
