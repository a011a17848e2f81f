//! The Sigma front end: modifiers, condition forms and search shapes on hand-built
//! records, the shipped Sigma rules, and loader errors.

mod common;
use common::{data_dir, proc};

use std::path::Path;

use abi_stable::std_types::{RArc, ROption, RVec};
use sysflow_plugin_api::{opflags::*, Event, File, FileFlow, FlatRecord, Header, Oid, ProcessEvent};
use sysflow_policy_engine::{
    compile_sigma_policies, compile_sigma_text,
    sigma::{parse_config, SigmaConfig},
    ActionRegistry, CompileOptions, EvalState, RuleSet, UnknownAttributes, Verdict,
};

fn opts() -> CompileOptions {
    CompileOptions { actions: ActionRegistry::with_builtins(), ..Default::default() }
}

fn config() -> SigmaConfig {
    parse_config(
        "fieldmappings:\n  Image: sf.proc.exe\n  CommandLine: sf.proc.cmdline\n  ProcessId: sf.proc.pid\n  \
         ParentImage: sf.proc.aexe\n  User: [sf.proc.user, other.name]\n  TargetFilename: sf.file.path\n",
    )
    .expect("config parses")
}


fn header() -> RArc<Header> {
    RArc::new(Header { version: 5, exporter: "node1".into(), ip: "10.0.0.1".into(), filename: "/tmp/trace.sf".into() })
}

/// An exec of `exe args` (pid 10) whose parent is /bin/bash.
fn pe(exe: &str, args: &str) -> FlatRecord {
    let mut r = FlatRecord::new(
        header(),
        Event::Process(ProcessEvent { proc_oid: Oid { create_ts: 1010, hpid: 10 }, ts: 50, tid: 10, op_flags: OP_EXEC, ..Default::default() }),
    );
    r.ancestry = RArc::new(RVec::from(vec![proc(10, exe, args, Some(5)), proc(5, "/bin/bash", "", None)]));
    r
}

fn ff(path: &str) -> FlatRecord {
    let mut r = FlatRecord::new(
        header(),
        Event::FileFlow(FileFlow { proc_oid: Oid { create_ts: 1010, hpid: 10 }, ts: 60, op_flags: OP_OPEN, fd: 3, ..Default::default() }),
    );
    r.ancestry = RArc::new(RVec::from(vec![proc(10, "/usr/bin/cat", "", None)]));
    r.file = ROption::RSome(RArc::new(File { path: path.into(), restype: 'f' as i32, ..Default::default() }));
    r
}

fn rule(detection: &str) -> String {
    format!("title: T\nid: rule-1\ndescription: D\ntags: [attack.t1]\nlevel: high\nlogsource:\n  product: linux\ndetection:\n{detection}\n")
}

fn compile(detection: &str) -> RuleSet {
    compile_sigma_text("t.yml", &rule(detection), &config(), &opts())
}

fn hits(rs: &RuleSet, mut rec: FlatRecord) -> usize {
    let mut st = EvalState::default();
    match rs.evaluate(&mut rec, &mut st) {
        Verdict::Drop => panic!("sigma sets have no drop filters"),
        Verdict::Pass { matched } => matched as usize,
    }
}

/// Whether the (single, enabled) rule matches `rec`.
fn matches(detection: &str, rec: FlatRecord) -> bool {
    let rs = compile(detection);
    assert_eq!(rs.enabled_rule_count(), 1, "rule disabled: {:?}", rs.warnings());
    hits(&rs, rec) == 1
}

fn disabled_with(detection: &str, needle: &str) {
    let rs = compile(detection);
    assert_eq!(rs.rule_count(), 1);
    assert_eq!(rs.enabled_rule_count(), 0, "{detection}");
    assert!(rs.warnings().iter().any(|w| w.message.contains(needle) && w.message.contains("rule-1")), "{:?}", rs.warnings());
    assert_eq!(hits(&rs, pe("/usr/bin/curl", "x")), 0);
}

#[test]
fn rule_metadata() {
    let rs = compile("  sel:\n    Image: /usr/bin/curl\n  condition: sel");
    let r = &rs.rules()[0];
    assert_eq!(r.matched.name.as_str(), "rule-1");
    assert_eq!(r.matched.desc.as_str(), "D");
    assert_eq!(r.matched.priority, 3);
    assert_eq!(r.matched.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(), vec!["attack.t1"]);
    // logsource is ignored: every record type is evaluated.
    assert_eq!(rs.describe()[0].record_types, vec!["PE", "NF", "FF", "FE", "NE", "PF", "KE"]);
    for (level, p) in [("informational", 0), ("low", 1), ("medium", 2), ("critical", 4), ("bogus", 0)] {
        let text = rule("  sel:\n    Image: x\n  condition: sel").replace("level: high", &format!("level: {level}"));
        assert_eq!(compile_sigma_text("t.yml", &text, &config(), &opts()).rules()[0].matched.priority, p, "{level}");
    }
    // No id: the title names the rule.
    let text = rule("  sel:\n    Image: x\n  condition: sel").replace("id: rule-1\n", "");
    assert_eq!(compile_sigma_text("t.yml", &text, &config(), &opts()).rules()[0].matched.name.as_str(), "T");
}

#[test]
fn default_comparison_is_case_insensitive_equality() {
    assert!(matches("  sel:\n    Image: /USR/bin/Curl\n  condition: sel", pe("/usr/bin/curl", "x")));
    assert!(!matches("  sel:\n    Image: /usr/bin/cur\n  condition: sel", pe("/usr/bin/curl", "x")));
    // Values of a list are ORed; integers compare by their text.
    assert!(matches("  sel:\n    Image: [/bin/sh, /usr/bin/curl]\n  condition: sel", pe("/usr/bin/curl", "x")));
    assert!(matches("  sel:\n    ProcessId: 10\n  condition: sel", pe("/usr/bin/curl", "x")));
    assert!(!matches("  sel:\n    ProcessId: 11\n  condition: sel", pe("/usr/bin/curl", "x")));
    // The `cased` modifier makes it exact.
    assert!(!matches("  sel:\n    Image|cased: /USR/bin/curl\n  condition: sel", pe("/usr/bin/curl", "x")));
    assert!(matches("  sel:\n    Image|cased: /usr/bin/curl\n  condition: sel", pe("/usr/bin/curl", "x")));
}

#[test]
fn string_modifiers() {
    let r = || pe("/usr/bin/curl", "-X POST http://EVIL.example");
    assert!(matches("  sel:\n    CommandLine|contains: evil.EXAMPLE\n  condition: sel", r()));
    assert!(!matches("  sel:\n    CommandLine|contains: nothere\n  condition: sel", r()));
    assert!(matches("  sel:\n    CommandLine|startswith: /USR/bin\n  condition: sel", r()));
    assert!(!matches("  sel:\n    CommandLine|startswith: /bin\n  condition: sel", r()));
    assert!(matches("  sel:\n    Image|endswith: /CURL\n  condition: sel", r()));
    assert!(!matches("  sel:\n    Image|endswith: /wget\n  condition: sel", r()));
    // Mapped ancestry attribute: any ancestor.
    assert!(matches("  sel:\n    ParentImage|endswith: /bash\n  condition: sel", r()));
    // Mapping lists take the first target.
    assert!(matches("  sel:\n    User: ALICE\n  condition: sel", r()));
}

#[test]
fn all_modifier_ands_the_values() {
    let r = || pe("/usr/bin/curl", "-X POST http://x");
    assert!(matches("  sel:\n    CommandLine|contains|all: [POST, http]\n  condition: sel", r()));
    assert!(!matches("  sel:\n    CommandLine|contains|all: [POST, ftp]\n  condition: sel", r()));
    assert!(matches("  sel:\n    CommandLine|contains: [POST, ftp]\n  condition: sel", r()));
}

#[test]
fn integer_modifiers() {
    let r = || pe("/usr/bin/curl", "x");
    assert!(matches("  sel:\n    ProcessId|lt: 11\n  condition: sel", r()));
    assert!(!matches("  sel:\n    ProcessId|lt: 10\n  condition: sel", r()));
    assert!(matches("  sel:\n    ProcessId|lte: 10\n  condition: sel", r()));
    assert!(matches("  sel:\n    ProcessId|gt: 9\n  condition: sel", r()));
    assert!(!matches("  sel:\n    ProcessId|gt: 10\n  condition: sel", r()));
    assert!(matches("  sel:\n    ProcessId|gte: 10\n  condition: sel", r()));
}

#[test]
fn re_is_a_real_regex() {
    // Upstream compares `|re` values by equality (BUG): here they are searched.
    let r = || pe("/usr/bin/curl", "aaaa,bbbb");
    assert!(matches("  sel:\n    CommandLine|re: 'curl a{3,}'\n  condition: sel", r()));
    assert!(!matches("  sel:\n    CommandLine|re: '^curl'\n  condition: sel", r()));
    assert!(matches("  sel:\n    CommandLine|re: '(.){20,}'\n  condition: sel", r()));
    assert!(!matches("  sel:\n    CommandLine|re: '(.){200,}'\n  condition: sel", r()));
    assert!(matches("  sel:\n    Image|re|i: 'CURL$'\n  condition: sel", r()));
    assert!(!matches("  sel:\n    Image|re: 'CURL$'\n  condition: sel", r()));
    disabled_with("  sel:\n    Image|re: '(unclosed'\n  condition: sel", "regular expression");
}

#[test]
fn value_transformers() {
    // base64 of "curl" is "Y3VybA=="; base64offset finds "http://" inside an encoded blob.
    let r = || pe("/usr/bin/sh", "-c echo Y3VybA== | base64 -d");
    assert!(matches("  sel:\n    CommandLine|base64|contains: curl\n  condition: sel", r()));
    assert!(!matches("  sel:\n    CommandLine|base64|contains: wget\n  condition: sel", r()));
    for prefix in ["", "x", "xy"] {
        let blob = { sysflow_policy_engine::sigma::search::base64(format!("{prefix}http://evil").as_bytes()) };
        let r = pe("/usr/bin/sh", &format!("-c echo {blob}"));
        assert!(matches("  sel:\n    CommandLine|base64offset|contains: http://\n  condition: sel", r), "{prefix}");
    }
    assert!(matches("  sel:\n    CommandLine|windash|contains: ' /c '\n  condition: sel", pe("/usr/bin/sh", "-c x")));
    assert!(matches("  sel:\n    CommandLine|windash|contains: ' -c '\n  condition: sel", pe("/usr/bin/sh", "-c x")));
    assert!(!matches("  sel:\n    CommandLine|windash|contains: ' -d '\n  condition: sel", pe("/usr/bin/sh", "-c x")));
    // UTF-16 modifiers leave SysFlow's UTF-8 values unchanged (as upstream).
    assert!(matches("  sel:\n    Image|wide|endswith: /sh\n  condition: sel", pe("/usr/bin/sh", "-c x")));
    assert!(matches("  sel:\n    Image|utf16le|endswith: /sh\n  condition: sel", pe("/usr/bin/sh", "-c x")));
}

#[test]
fn null_means_absent() {
    assert!(matches("  sel:\n    TargetFilename: null\n  condition: sel", pe("/usr/bin/sh", "x")));
    assert!(!matches("  sel:\n    TargetFilename: null\n  condition: sel", ff("/etc/passwd")));
    assert!(matches("  sel:\n    TargetFilename|exists: true\n  condition: sel", ff("/etc/passwd")));
    assert!(!matches("  sel:\n    TargetFilename|exists: true\n  condition: sel", pe("/usr/bin/sh", "x")));
}

#[test]
fn search_shapes() {
    let r = || pe("/usr/bin/curl", "-X POST");
    // A map ANDs its fields.
    assert!(matches("  sel:\n    Image: /usr/bin/curl\n    CommandLine|contains: POST\n  condition: sel", r()));
    assert!(!matches("  sel:\n    Image: /usr/bin/curl\n    CommandLine|contains: GET\n  condition: sel", r()));
    // A list of maps ORs them (upstream ANDs them: BUG).
    let list = "  sel:\n    - Image: /usr/bin/wget\n    - CommandLine|contains: POST\n  condition: sel";
    assert!(matches(list, r()));
    assert!(!matches(list, pe("/usr/bin/ls", "-l")));
    // Keyword searches are unsupported: false, with a warning.
    let rs = compile("  keywords:\n    - POST\n  condition: keywords");
    assert_eq!(rs.enabled_rule_count(), 1);
    assert_eq!(hits(&rs, r()), 0);
    assert!(rs.warnings().iter().any(|w| w.message.contains("keyword")), "{:?}", rs.warnings());
}

#[test]
fn condition_forms() {
    let r = || pe("/usr/bin/curl", "-X POST");
    let searches = "  sel_a:\n    Image|endswith: /curl\n  sel_b:\n    CommandLine|contains: GET\n  filter:\n    CommandLine|contains: POST\n";
    let m = |cond: &str| matches(&format!("{searches}  condition: {cond}"), r());
    assert!(m("sel_a"));
    assert!(!m("sel_b"));
    assert!(m("sel_a or sel_b"));
    assert!(!m("sel_a and sel_b"));
    assert!(m("sel_a and not sel_b"));
    assert!(!m("sel_a and not filter"));
    assert!(m("not (sel_b or filter) or sel_a"));
    assert!(!m("not (sel_a or sel_b)"));
    assert!(m("1 of sel_*"));
    assert!(!m("all of sel_*"));
    assert!(m("all of sel_a*"));
    assert!(m("1 of them"));
    assert!(!m("all of them"));
    assert!(m("any of sel?b or sel_a"));
    // Aggregations are ignored (with a warning).
    let rs = compile(&format!("{searches}  condition: sel_a | count() by Image > 3"));
    assert_eq!(hits(&rs, r()), 1);
    assert!(rs.warnings().iter().any(|w| w.message.contains("aggregation")));
    // A condition list gives one engine rule per entry, all named by the id.
    let rs = compile(&format!("{searches}  condition:\n    - sel_a\n    - sel_b\n    - filter"));
    assert_eq!(rs.rule_count(), 3);
    assert_eq!(hits(&rs, r()), 2);
}

#[test]
fn unsupported_constructs_disable_the_rule() {
    disabled_with("  sel:\n    DestinationIp|cidr: 10.0.0.0/8\n  condition: sel", "cidr");
    disabled_with("  sel:\n    Image|frobnicate: x\n  condition: sel", "frobnicate");
    disabled_with("  sel:\n    Image: x\n  condition: sel and nosuch", "nosuch");
    disabled_with("  sel:\n    Image: x\n  condition: 1 of nomatch*", "nomatch*");
    disabled_with("  sel:\n    Image: x\n  condition: sel and (", "condition");
    // An unknown sf.* attribute disables (default `unknown.attributes: disable`).
    disabled_with("  sel:\n    sf.proc.nosuch: x\n  condition: sel", "sf.proc.nosuch");
}

#[test]
fn wildcards_are_literal_with_one_warning() {
    let rs = compile("  sel:\n    Image: ['/usr/bin/*', '/bin/?']\n  condition: sel");
    assert_eq!(rs.enabled_rule_count(), 1);
    assert_eq!(hits(&rs, pe("/usr/bin/curl", "x")), 0);
    assert_eq!(hits(&rs, pe("/usr/bin/*", "x")), 1);
    assert_eq!(rs.warnings().iter().filter(|w| w.message.contains("wildcard")).count(), 1, "{:?}", rs.warnings());
}

#[test]
fn bad_files_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/good.yml"), rule("  sel:\n    Image: /usr/bin/curl\n  condition: sel")).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "title: x\ndetection: [\n  sel: 1\n").unwrap();
    std::fs::write(dir.path().join("nodetect.yml"), "title: x\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let rs = compile_sigma_policies(dir.path(), None, &opts()).expect("loads");
    assert_eq!(rs.rule_count(), 1);
    let w: Vec<String> = rs.warnings().iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.contains("broken.yaml:4:1: Could not parse input rule, skipped:")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("nodetect.yml") && w.contains("no 'detection'")), "{w:?}");
    // No config: names verbatim (Image is not an attribute, so a literal).
    assert_eq!(hits(&rs, pe("/usr/bin/curl", "x")), 0);
    // A single file works; a missing config is an error naming the path.
    let cfg = dir.path().join("cfg.yml");
    std::fs::write(&cfg, "fieldmappings:\n  Image: sf.proc.exe\n").unwrap();
    let rs = compile_sigma_policies(&dir.path().join("sub/good.yml"), Some(&cfg), &opts()).expect("loads");
    assert_eq!(hits(&rs, pe("/usr/bin/curl", "x")), 1);
    let err = compile_sigma_policies(dir.path(), Some(Path::new("/nonexistent/cfg.yml")), &opts()).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/cfg.yml"), "{err}");
    std::fs::write(&cfg, "fieldmappings: [\n").unwrap();
    assert!(compile_sigma_policies(dir.path(), Some(&cfg), &opts()).is_err());
}

/// Every shipped Sigma rule compiles with upstream's field mappings. The two rules using
/// `CurrentDirectory` (mapped to `sf.proc.cwd`, which is not an attribute) are disabled
/// by default and run with upstream's literal treatment under `unknown.attributes: literal`.
#[test]
fn shipped_rules_compile() {
    let Some(dir) = data_dir() else { return };
    let sigma = dir.join("policies/sigma");
    let files = walk(&sigma.join("rules"));
    let config = sigma.join("config/sysflow.yml");
    let rs = compile_sigma_policies(&sigma.join("rules"), Some(&config), &opts()).expect("compiles");
    for w in rs.warnings() {
        eprintln!("warning: {w}");
    }
    assert_eq!(files, 51);
    assert_eq!(rs.rule_count(), 51);
    assert_eq!(rs.enabled_rule_count(), 49, "{:?}", rs.warnings());
    let disabled: Vec<String> = rs.describe().into_iter().filter(|r| !r.enabled).map(|r| r.name).collect();
    assert_eq!(disabled, vec!["6eea1bf6-f8d2-488a-a742-e6ef6c1b67db", "21541900-27a9-4454-9c4c-3f0a4240344a"]);
    assert_eq!(rs.warnings().len(), 2);
    assert!(rs.warnings().iter().all(|w| w.message.contains("sf.proc.cwd")));
    let literal = CompileOptions { unknown_attributes: UnknownAttributes::Literal, ..opts() };
    let rs = compile_sigma_policies(&sigma.join("rules"), Some(&config), &literal).expect("compiles");
    assert_eq!(rs.enabled_rule_count(), 51, "{:?}", rs.warnings());
    assert!(rs.warnings().is_empty(), "{:?}", rs.warnings());
}

fn walk(d: &Path) -> usize {
    std::fs::read_dir(d)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        usize::from(matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Every shared policy file, Sigma or not (Falco-syntax files are partly invalid YAML),
/// loads as Sigma without a panic: non-rules are skipped with a warning each.
#[test]
fn any_yaml_loads_without_panic() {
    let Some(dir) = data_dir() else { return };
    let rs = compile_sigma_policies(&dir.join("policies"), None, &opts()).expect("loads");
    assert_eq!(rs.rule_count(), 51, "only the Sigma rules are rules");
    assert!(rs.warnings().iter().any(|w| w.message.contains("skipped")));
    for junk in ["", "---\n", "[1, 2]", "detection: 5", "detection:\n  condition: [[x]]\n", "detection:\n  s: {a: {b: c}}\n  condition: s\n",
        "detection:\n  s:\n    - [a]\n  condition: s\n", "detection:\n  s: {a|contains: ~}\n  condition: 1 of them | near x\n",
        "detection:\n  s: {'|contains': x}\n  condition: not not s\n", "detection:\n  s: {a: &x [1]}\n  t: {b: *x}\n  condition: all of them\n"] {
        let _ = compile_sigma_text("junk.yml", junk, &config(), &opts());
    }
}
