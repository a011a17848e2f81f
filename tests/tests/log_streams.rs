//! Where log lines go: stderr by default, so that `export: terminal` leaves stdout with
//! records only; `-logformat json` writes one JSON object per log line; `-logstdout` keeps
//! upstream 0.7's split (errors on stderr, every other line on stdout, mixed with records).

use std::path::PathBuf;

use serde_json::Value;
use sysflow_e2e_tests::{output_text, run_sfprocessor_in, shared_data, workspace_root};

/// The bypass pipeline (every flat record exported as JSON to the terminal) and a shared
/// trace with its reference count of flat records (`counts.tsv`: `sysprint_records`).
const TRACE: &str = "k8s_small.sf";
const FLAT_RECORDS: usize = 5247;
const TRACE_RECORDS: usize = 6173;

fn trace() -> Option<PathBuf> {
    Some(shared_data()?.join("traces").join(TRACE))
}

/// Runs the bypass pipeline on the trace with `flags`; returns (stdout, stderr) after checking
/// the exit status.
fn run(flags: &[&str]) -> Option<(String, String)> {
    let trace = trace()?;
    let trace = trace.to_str().expect("utf-8 path");
    let mut args = flags.to_vec();
    args.extend(["-config", "config/pipeline.bypass.json", trace]);
    let out = run_sfprocessor_in(&workspace_root(), &args, &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{flags:?}\nstderr: {stderr}");
    Some((stdout, stderr))
}

/// Every line of `text` parsed as JSON, failing with the line number and text otherwise.
fn json_lines(what: &str, text: &str) -> Vec<Value> {
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} line {} is not JSON ({e}): {l}", i + 1)))
        .collect()
}

/// The exported records: each a flat record with a type and a timestamp.
fn assert_records(records: &[Value]) {
    assert_eq!(records.len(), FLAT_RECORDS, "one stdout line per flat record");
    for r in records {
        assert!(r["type"].is_string() && r["ts"].is_i64(), "not an exported record: {r}");
    }
}

#[test]
fn terminal_export_keeps_stdout_for_records_and_logs_on_stderr() {
    let Some((stdout, stderr)) = run(&[]) else { return };
    assert_records(&json_lines("stdout", &stdout));
    // The whole log, health and exit summary included, is on stderr in upstream's text shape.
    assert!(stderr.lines().all(|l| l.starts_with('[')), "{stderr}");
    assert!(stderr.contains("[Health] ") && stderr.contains("Health checks: passed"), "{stderr}");
    assert!(stderr.contains("Successfully loaded pipeline configuration"), "{stderr}");
    assert!(stderr.contains(&format!("driver (file): records in {TRACE_RECORDS},")), "{stderr}");
    assert!(stderr.contains(&format!("pipeline[2] (exporter): records in {FLAT_RECORDS},")), "{stderr}");
    assert!(stderr.contains("pipeline finished: all records processed"), "{stderr}");
}

#[test]
fn logformat_json_writes_one_object_per_log_line() {
    let Some((stdout, stderr)) = run(&["-logformat", "json"]) else { return };
    assert_records(&json_lines("stdout", &stdout));
    let logs = json_lines("stderr", &stderr);
    for l in &logs {
        assert!(l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(), "{l}");
    }
    let find = |needle: &str| {
        logs.iter()
            .find(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
            .unwrap_or_else(|| panic!("no log line with '{needle}' in\n{stderr}"))
    };
    assert_eq!(find("Health checks: passed")["target"], "health");
    // A plugin's own line names its instance in a field of its own.
    let plugin = find("no policies configured in enrich mode");
    assert_eq!(plugin["instance"], "pipeline[1] (policyengine)");
    assert_eq!((plugin["level"].as_str(), plugin["target"].as_str()), (Some("INFO"), Some("plugin")));
    assert_eq!(find("records processed")["level"], "INFO");
    assert!(find(&format!("records in {TRACE_RECORDS},"))["message"].as_str().is_some_and(|m| m.starts_with("driver (file)")));
}

#[test]
fn logstdout_restores_upstreams_shared_stdout() {
    let Some((stdout, stderr)) = run(&["-logstdout"]) else { return };
    let (records, logs): (Vec<&str>, Vec<&str>) = stdout.lines().partition(|l| l.starts_with('{'));
    assert_records(&json_lines("stdout record", &records.join("\n")));
    assert!(logs.iter().all(|l| l.starts_with('[')), "{logs:?}");
    assert!(logs.iter().any(|l| l.starts_with("[Health] ") && l.ends_with("Health checks: passed")), "{stdout}");
    assert!(logs.iter().any(|l| l.ends_with("pipeline finished: all records processed")), "{stdout}");
    assert!(stderr.is_empty(), "nothing but errors go to stderr: {stderr}");
}

#[test]
fn logstdout_keeps_errors_on_stderr_in_either_format() {
    let Some(trace) = trace() else { return };
    let trace = trace.to_str().expect("utf-8 path");
    for format in ["text", "json"] {
        let out = run_sfprocessor_in(
            &workspace_root(),
            &["-logstdout", "-logformat", format, "-config", "no-such-pipeline.json", trace],
            &[],
        );
        let (stdout, stderr) = output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{format}: {stdout}{stderr}");
        assert!(stderr.contains("no-such-pipeline.json"), "{format}: the error names the file on stderr: {stderr}");
        assert!(!stdout.contains("no-such-pipeline.json"), "{format}: {stdout}");
        if format == "json" {
            let errors = json_lines("stderr", &stderr);
            assert!(errors.iter().all(|e| e["level"] == "ERROR"), "{stderr}");
        }
    }
}
