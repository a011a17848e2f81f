//! Hostile policy files through the binary: `-test` and `-listrules` compile with the
//! same limits and stack as the running engine, so a policy beyond a limit is an error
//! naming file, line and rule (exit 1), never a crashed process; a broken file lists all
//! its errors in one run; an alert-mode pipeline whose policies have no enabled rule does
//! not start.

use std::path::Path;

use serde_json::json;
use sysflow_e2e_tests::{output_text, run_sfprocessor_in, write_pipeline};

fn pipeline(dir: &Path, policies: &Path) -> String {
    write_pipeline(
        dir,
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "policies": policies.to_string_lossy()},
            {"processor": "exporter", "in": "evt eventchan", "export": "null", "format": "json"}]}),
    )
    .to_string_lossy()
    .into_owned()
}

#[test]
fn test_and_listrules_refuse_policies_beyond_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let deep_parens = format!("{}sf.ts > 0{}", "(".repeat(6000), ")".repeat(6000));
    let deep_nots = format!("{}sf.ts > 0", "not ".repeat(6000));
    let mut chain = String::from("- macro: m0\n  condition: sf.ts > 0\n");
    for i in 1..10_000 {
        chain.push_str(&format!("- macro: m{i}\n  condition: m{}\n", i - 1));
    }
    for (name, text) in [
        ("parens", format!("- rule: deep\n  desc: d\n  condition: {deep_parens}\n")),
        ("nots", format!("- rule: deep\n  desc: d\n  condition: {deep_nots}\n")),
        ("chain", format!("{chain}- rule: deep\n  desc: d\n  condition: m9999\n")),
    ] {
        let policy = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&policy, text).unwrap();
        let cfg = pipeline(dir.path(), &policy);
        for flag in ["-test", "-listrules"] {
            let out = run_sfprocessor_in(dir.path(), &[flag, "-config", &cfg], &[]);
            let (stdout, stderr) = output_text(&out);
            assert_eq!(out.status.code(), Some(1), "{name} {flag}: {stdout}\n{stderr}");
            let all = format!("{stdout}{stderr}");
            assert!(all.contains(&format!("{name}.yaml:")) && all.contains("rule 'deep'"), "{name} {flag}: {all}");
            assert!(all.contains("deeper than"), "{name} {flag}: {all}");
        }
    }
}

#[test]
fn alert_pipeline_without_enabled_rules_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("lists.yaml"), "- list: shells\n  items: [sh, bash]\n").unwrap();
    let cfg = pipeline(dir.path(), &policies);
    let out = run_sfprocessor_in(dir.path(), &["-test", "-config", &cfg], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("no enabled rules") && all.contains(&policies.display().to_string()), "{all}");
}

#[test]
fn test_lists_every_error_of_a_broken_file_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("rules.yaml");
    let text = "- macro: spawned_process\n  condition: sf.opflags = EXEC\n\
                - rule: a\n  desc: d\n  condition: spawned_process and sf.proc.name =\n\
                - rule: b\n  desc: d\n  condition: spawnd_process\n\
                - rule: c\n  condition: spawned_process\n";
    std::fs::write(&policy, text).unwrap();
    let cfg = pipeline(dir.path(), &policy);
    let out = run_sfprocessor_in(dir.path(), &["-test", "-config", &cfg], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("3 error(s) in policies"), "{all}");
    // One line per error, each with the file and position, in file order.
    let lines: Vec<&str> = all.lines().filter(|l| l.trim_start().starts_with(&policy.to_string_lossy()[..])).collect();
    assert_eq!(lines.len(), 3, "{all}");
    assert!(lines[0].contains("rules.yaml:5:48: expected a value"), "{all}");
    assert!(lines[1].contains("rules.yaml:8:14: undefined macro 'spawnd_process' (did you mean 'spawned_process'?)"), "{all}");
    assert!(lines[2].contains("rules.yaml:9:1: rule 'c' has no desc"), "{all}");
}
