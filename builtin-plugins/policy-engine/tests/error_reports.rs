//! Errors that teach: every error of a policy file in one run (up to the per-file limit),
//! each with its position, and "did you mean" for misspelt attributes, macros and lists.
//! The policy files are written to disk and loaded the way the engine loads them.

use std::path::Path;

use sysflow_policy_engine::{
    compile_policies_with, dialect::Dialect, limits::MAX_ERRORS_PER_FILE, ActionRegistry, CompileOptions,
    PolicyErrors, RuleSet,
};

fn opts(dialect: Dialect) -> CompileOptions {
    CompileOptions { actions: ActionRegistry::with_builtins(), dialect, ..Default::default() }
}

/// Writes `files` (name, text) into a fresh directory and compiles it.
fn load(files: &[(&str, &str)], dialect: Dialect) -> (tempfile::TempDir, Result<RuleSet, PolicyErrors>) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write policy file");
    }
    let result = compile_policies_with(dir.path(), &opts(dialect));
    (dir, result)
}

/// The errors of a refused set, each as `file:line:col: message (at 'text')` with the
/// directory left out.
fn refused(dir: &Path, result: Result<RuleSet, PolicyErrors>) -> (Vec<String>, PolicyErrors) {
    let errors = match result {
        Ok(rs) => panic!("the set loaded ({} rules) although it has errors", rs.rule_count()),
        Err(e) => e,
    };
    let prefix = format!("{}/", dir.display());
    (errors.0.iter().map(|e| e.to_string().replace(&prefix, "")).collect(), errors)
}

/// The warnings of a loaded set, as text.
fn warnings(result: Result<RuleSet, PolicyErrors>) -> Vec<String> {
    match result {
        Ok(rs) => rs.warnings().iter().map(ToString::to_string).collect(),
        Err(e) => panic!("the set was refused: {e}"),
    }
}

const THREE_ERRORS: &str = "\
- list: shell_binaries
  items: [bash, sh, zsh]

- macro: spawned_process
  condition: sf.opflags = EXEC

- rule: Broken syntax
  desc: an operator without its value
  condition: spawned_process and sf.proc.name =
  priority: high

- rule: Misspelt macro
  desc: uses a macro that is not defined
  condition: spawnd_process and sf.proc.name in (shell_binaries)
  priority: high

- rule: Fine
  desc: loads
  condition: spawned_process
  priority: low

- rule: No description
  condition: spawned_process
  priority: low
";

#[test]
fn three_errors_of_one_file_are_reported_in_one_run_in_file_order() {
    let (dir, result) = load(&[("rules.yaml", THREE_ERRORS)], Dialect::Sysflow);
    let (errors, all) = refused(dir.path(), result);
    assert_eq!(
        errors,
        [
            "rules.yaml:9:48: expected a value at the end of the condition (at 'spawned_process and sf.proc.name =')",
            "rules.yaml:14:14: undefined macro 'spawnd_process' (did you mean 'spawned_process'?) (at 'spawnd_process')",
            "rules.yaml:22:1: rule 'No description' has no desc (at 'No description')",
        ]
    );
    assert_eq!(all.omitted(), 0);
    assert!(all.to_string().starts_with("3 error(s) in policies\n  /"), "{all}");
}

#[test]
fn upstream_grammar_files_report_syntax_and_reference_errors_together() {
    // A tab in a condition: not YAML, read with the upstream-compatible grammar.
    let text = "- macro: spawned_process\n  condition: sf.opflags = EXEC\n\
                - rule: a\n  desc: d\n  condition: sf.proc.name = bash and\tsf.ts >\n  priority: low\n\
                - rule: b\n  desc: d\n  condition: spawned_proces\n  priority: low\n";
    let (dir, result) = load(&[("old.yaml", text)], Dialect::Sysflow);
    let (errors, _) = refused(dir.path(), result);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("old.yaml:5:") && errors[0].contains("expected a value"), "{errors:?}");
    assert!(
        errors[1].starts_with("old.yaml:9:14: undefined macro 'spawned_proces' (did you mean 'spawned_process'?)"),
        "{errors:?}"
    );
}

#[test]
fn a_broken_definition_is_reported_once_not_again_where_it_is_used() {
    let text = "\
- list: tools
  items: curl
- macro: m
  condition: sf.ts > and
- rule: r
  desc: d
  condition: m and sf.proc.name in (tools)
  priorty: high
- rule: r
  append: true
  condition: or sf.ret = 1
- rule: r
  enabled: false
";
    let (dir, result) = load(&[("broken.yaml", text)], Dialect::Sysflow);
    let (errors, _) = refused(dir.path(), result);
    // No "undefined macro 'm'", no "appends to a rule that is not defined": only the
    // three definitions that are wrong.
    assert_eq!(
        errors,
        [
            "broken.yaml:2:10: list 'tools': expected a sequence, found a scalar",
            "broken.yaml:4:22: expected a value (at 'and')",
            "broken.yaml:8:3: 'priorty' is not a rule key (at 'priorty')",
        ]
    );
}

#[test]
fn errors_beyond_the_limit_are_counted_per_file() {
    let n = MAX_ERRORS_PER_FILE + 5;
    let many: String = (0..n).map(|i| format!("- rule: r{i}\n  desc: d\n  condition: undefined_{i}\n")).collect();
    let few = "- rule: x\n  condition: sf.ts > 0\n";
    let (dir, result) = load(&[("a_many.yaml", &many), ("b_few.yaml", few)], Dialect::Sysflow);
    let (errors, all) = refused(dir.path(), result);
    assert_eq!(errors.len(), MAX_ERRORS_PER_FILE + 1, "{errors:?}");
    assert_eq!(all.omitted(), 5);
    // The first of the file, in order; the other file still gets its error listed.
    assert_eq!(errors[0], "a_many.yaml:3:14: undefined macro 'undefined_0' (at 'undefined_0')");
    let last = MAX_ERRORS_PER_FILE - 1;
    let expected = format!("a_many.yaml:{}:14: undefined macro 'undefined_{last}'", 3 * last + 3);
    assert!(errors[last].starts_with(&expected), "{errors:?}");
    assert_eq!(errors[MAX_ERRORS_PER_FILE], "b_few.yaml:1:1: rule 'x' has no desc (at 'x')");
    let text = all.to_string();
    assert!(text.starts_with(&format!("{} error(s) in policies\n", n + 1)), "{text}");
    assert!(text.ends_with(&format!("\n  ... and 5 more (only the first {MAX_ERRORS_PER_FILE} errors of a file are listed)")), "{text}");
}

#[test]
fn misspelt_attributes_get_the_close_name_falco_aliases_too() {
    let text = "- rule: typo\n  desc: d\n  condition: proc.nmae = bash\n  priority: low\n\
                - rule: ok\n  desc: d\n  condition: proc.name = bash\n  priority: low\n";
    let w = warnings(load(&[("t.yaml", text)], Dialect::Sysflow).1);
    assert!(
        w.iter().any(|w| w.ends_with("t.yaml:1:1: rule 'typo' disabled: unknown attribute(s) proc.nmae (did you mean proc.name?)")),
        "{w:?}"
    );
    // A Falco field that only the falco dialect maps is suggested only there.
    let falco = "- rule: typo\n  desc: d\n  condition: fd.tpye = file\n  priority: low\n\
                 - rule: ok\n  desc: d\n  condition: fd.type = file\n  priority: low\n";
    let w = warnings(load(&[("f.yaml", falco)], Dialect::Falco).1);
    assert!(w.iter().any(|w| w.contains("unknown attribute(s) fd.tpye (did you mean fd.type?)")), "{w:?}");
    let w = warnings(load(&[("f.yaml", falco)], Dialect::Sysflow).1);
    assert!(w.iter().any(|w| w.contains("unknown attribute(s) fd.tpye") && !w.contains("fd.tpye (did")), "{w:?}");
}

#[test]
fn a_misspelt_list_gets_the_close_list_name() {
    let text = "- list: shell_binaries\n  items: [bash, sh]\n\
                - rule: r\n  desc: d\n  condition: sf.proc.name in (shel_binaries, python)\n  priority: low\n";
    let w = warnings(load(&[("l.yaml", text)], Dialect::Sysflow).1);
    assert!(
        w.iter().any(|w| w.ends_with(
            "l.yaml:5:31: 'shel_binaries' is not a defined list; it is compared as a literal value (did you mean 'shell_binaries'?)"
        )),
        "{w:?}"
    );
}

#[test]
fn every_undefined_macro_of_a_condition_is_named_and_a_macro_error_once() {
    let text = "\
- macro: uses_missing
  condition: sf.ts > 0 and missing_one
- rule: a
  desc: d
  condition: missing_two or (missing_three and sf.ret = 0)
- rule: b
  desc: d
  condition: uses_missing
- rule: c
  desc: d
  condition: not uses_missing
";
    let (dir, result) = load(&[("refs.yaml", text)], Dialect::Sysflow);
    let (errors, _) = refused(dir.path(), result);
    // Both undefined macros of rule a; the one inside the macro once, though two rules use it.
    assert_eq!(
        errors,
        [
            "refs.yaml:2:28: undefined macro 'missing_one' (at 'missing_one')",
            "refs.yaml:5:14: undefined macro 'missing_two' (at 'missing_two')",
            "refs.yaml:5:30: undefined macro 'missing_three' (at 'missing_three')",
        ]
    );
}
