//! The README's demo, run exactly as documented from the workspace root: the default policies
//! catch every step of the demo's intrusion with MITRE-tagged JSON alerts, `-test` accepts the
//! pipeline, and the bypass pipeline prints one JSON line per flat record of the trace.

use std::collections::BTreeMap;

use serde_json::Value;
use sysflow_avro_drivers::TraceReader;
use sysflow_e2e_tests::{output_text, run_sfprocessor_in, workspace_root};
use sysflow_plugin_api::{Event, SysFlowRecord};

/// Rules the demo's attack chain must trigger (config/policies/rules.yaml).
const ATTACK_RULES: &[&str] = &[
    "Shell spawned by a web server",
    "Credential file read",
    "Connection to a mining pool port",
    "Reverse shell connection",
    "Cron job written",
    "SSH authorized keys modified",
];

/// Every stdout line as JSON: the terminal exporter has stdout to itself (logs go to stderr).
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not a JSON record ({e}): {l}")))
        .collect()
}

#[test]
fn demo_prints_mitre_tagged_alerts_for_the_attack() {
    let root = workspace_root();
    let out = run_sfprocessor_in(&root, &["-config", "config/pipeline.json", "config/demo.sf"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let alerts = json_lines(&stdout);
    assert!(!alerts.is_empty(), "the demo printed no alerts\n{stdout}");
    // The log, which the README says precedes the alerts, is on stderr.
    assert!(stderr.contains("Successfully loaded pipeline configuration"), "{stderr}");
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for a in &alerts {
        let policies = a["policies"].as_array().unwrap_or_else(|| panic!("alert without policies: {a}"));
        assert!(!policies.is_empty(), "alert with an empty policies list: {a}");
        let tags = a["tags"].as_array().unwrap_or_else(|| panic!("alert without tags: {a}"));
        assert!(
            tags.iter().filter_map(Value::as_str).any(|t| t.starts_with("mitre:T")),
            "alert without a MITRE tag: {a}"
        );
        assert!(a["ts"].as_i64().is_some() && a["type"].as_str().is_some(), "alert without ts/type: {a}");
        for p in policies {
            let id = p["id"].as_str().unwrap_or_else(|| panic!("policy without id: {a}"));
            assert!(p["priority"].is_number(), "policy without priority: {a}");
            *by_rule.entry(id.to_owned()).or_default() += 1;
        }
    }
    for rule in ATTACK_RULES {
        assert!(by_rule.contains_key(*rule), "rule '{rule}' did not fire; fired: {by_rule:?}");
    }
    // A shell under a web server is the attack's first step: an exec record.
    assert!(alerts.iter().any(|a| a["type"] == "PE"
        && a["policies"].as_array().is_some_and(|p| p.iter().any(|p| p["id"] == "Shell spawned by a web server"))));
    assert!(alerts.iter().any(|a| a["type"] == "NF"
        && a["policies"].as_array().is_some_and(|p| p.iter().any(|p| p["id"] == "Connection to a mining pool port"))));
    // The demo is a mostly benign node: alerts are the exception.
    assert!(alerts.len() < 3000 / 10, "{} alerts out of 3000 records: the default policies are too noisy", alerts.len());
}

#[test]
fn demo_pipelines_pass_test_mode() {
    let root = workspace_root();
    for cfg in ["config/pipeline.json", "config/pipeline.bypass.json"] {
        let out = run_sfprocessor_in(&root, &["-config", cfg, "-test"], &[]);
        let (stdout, stderr) = output_text(&out);
        assert_eq!(out.status.code(), Some(0), "{cfg}\nstdout: {stdout}\nstderr: {stderr}");
        assert!(stderr.contains("Successfully loaded pipeline configuration"), "{cfg}: {stderr}");
        assert!(stdout.is_empty(), "{cfg}: -test must not process records\n{stdout}");
    }
}

#[test]
fn bypass_demo_prints_one_line_per_flat_record() {
    let root = workspace_root();
    let mut expected: BTreeMap<&'static str, usize> = BTreeMap::new();
    let reader = TraceReader::open(&root.join("config/demo.sf")).expect("open demo trace");
    let mut total = 0usize;
    for rec in reader {
        let rec = rec.unwrap_or_else(|e| panic!("demo trace decodes cleanly: {e:?}"));
        total += 1;
        let kind = match rec {
            SysFlowRecord::Event(Event::Process(_)) => "PE",
            SysFlowRecord::Event(Event::NetworkFlow(_)) => "NF",
            SysFlowRecord::Event(Event::FileFlow(_)) => "FF",
            SysFlowRecord::Event(Event::File(_)) => "FE",
            SysFlowRecord::Event(Event::Network(_)) => "NE",
            SysFlowRecord::Event(Event::K8s(_)) => "KE",
            _ => continue,
        };
        *expected.entry(kind).or_default() += 1;
    }
    assert_eq!(total, 3000, "the README says the demo trace holds 3000 records");
    let out = run_sfprocessor_in(&root, &["-config", "config/pipeline.bypass.json", "config/demo.sf"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let lines = json_lines(&stdout);
    let mut got: BTreeMap<&'static str, usize> = BTreeMap::new();
    for l in &lines {
        let t = l["type"].as_str().unwrap_or_else(|| panic!("record without type: {l}"));
        let key = ["PE", "NF", "FF", "FE", "NE", "KE"]
            .into_iter()
            .find(|k| *k == t)
            .unwrap_or_else(|| panic!("unexpected record type {t}: {l}"));
        *got.entry(key).or_default() += 1;
        assert!(l.get("policies").is_none(), "bypass pipeline has no policies: {l}");
    }
    assert_eq!(lines.len(), expected.values().sum::<usize>(), "one line per flat record");
    assert_eq!(got, expected, "per-type counts");
}
