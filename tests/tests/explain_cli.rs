//! `sfprocessor explain`: a record of the README's demo trace as the policy engine sees it,
//! with the rules that hold on it — the same rules the pipeline's alerts name — and clear
//! errors for a record that is not there or a missing argument.

use serde_json::Value;
use sysflow_e2e_tests::{output_text, run_sfprocessor_in, workspace_root};

const RULE: &str = "Shell spawned by a web server";

#[test]
fn explain_shows_attributes_and_the_rules_the_pipeline_fired() {
    let root = workspace_root();
    // The pipeline's alert for the rule gives the record's timestamp.
    let out = run_sfprocessor_in(&root, &["-config", "config/pipeline.json", "-log", "error", "config/demo.sf"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let alert: Value = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|a| a["policies"].as_array().is_some_and(|p| p.iter().any(|p| p["id"] == RULE)))
        .unwrap_or_else(|| panic!("no alert for '{RULE}':\n{stdout}"));
    let ts = alert["ts"].as_i64().expect("alert ts").to_string();

    let out = run_sfprocessor_in(&root, &["explain", "--policies", "config/policies", "--ts", &ts, "config/demo.sf"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("--- record ") && stdout.contains(&format!(": PE ts {ts}")), "{stdout}");
    assert!(stdout.contains(&format!("  rule holds: {RULE}")), "{stdout}");
    let exe = alert["proc"]["exe"].as_str().expect("alert proc.exe");
    assert!(
        stdout.lines().any(|l| l.trim_start().starts_with("sf.proc.exe") && l.contains(&format!("{exe:?}"))),
        "the process's exe {exe} as the engine sees it:\n{stdout}"
    );

    // The same record by number: the header names it; it is the one found by timestamp.
    let number: String = stdout
        .lines()
        .find_map(|l| l.strip_prefix("--- record ").and_then(|r| r.split(':').next()))
        .expect("record number")
        .to_string();
    let out = run_sfprocessor_in(&root, &["explain", "--policies", "config/policies", "--record", &number, "config/demo.sf"], &[]);
    let (by_number, _) = output_text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(by_number.contains(&format!("  rule holds: {RULE}")) && by_number.contains(&format!("PE ts {ts}")), "{by_number}");
}

#[test]
fn explain_reports_a_missing_record_and_missing_arguments() {
    let root = workspace_root();
    let out = run_sfprocessor_in(&root, &["explain", "--policies", "config/policies", "--record", "99999", "config/demo.sf"], &[]);
    let (_, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("config/demo.sf: no record 99999 (the reader produced "), "{stderr}");

    let out = run_sfprocessor_in(&root, &["explain", "config/demo.sf"], &[]);
    let (_, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("--policies"), "{stderr}");
}
