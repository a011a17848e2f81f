//! Falco-style rule files through the binary (`builtin-plugins/policy-engine/tests/falco_style`,
//! written for the tests in the constructs of Falco's own `falco_rules.yaml`): with
//! `"dialect": "falco"` they load as a policy directory in alert mode, run a real trace to
//! the end with exit 0 and a summary line per file, and `-listrules` marks the rule whose
//! fields SysFlow cannot fill `disabled` with the reason.

use serde_json::json;
use sysflow_e2e_tests::{output_text, run_sfprocessor_in, shared_data, workspace_root, write_pipeline};

#[test]
fn falco_style_rule_files_load_run_and_list_disabled_rules() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let policies = workspace_root().join("builtin-plugins/policy-engine/tests/falco_style");
    let alerts = dir.path().join("alerts.json");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "alert",
             "dialect": "falco", "policies": policies.to_string_lossy()},
            {"processor": "exporter", "in": "evt eventchan", "export": "file", "file.path": alerts.to_string_lossy(), "format": "json"}]}),
    );
    let cfg = cfg.to_string_lossy();
    let trace = data.join("traces").join("shellshock.sf");
    let out = run_sfprocessor_in(dir.path(), &["-log=error", "-config", &cfg, "-log=info", &trace.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    let all = format!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("not read as YAML"), "{all}");
    for summary in [
        "constructs.yaml: 2 rules, 2 compiled, 0 disabled",
        "dialect.yaml: 2 rules, 2 compiled, 0 disabled",
        "mapped.yaml: 2 rules, 2 compiled, 0 disabled",
        "unmapped.yaml: 1 rules, 0 compiled, 1 disabled (unknown fields: evt.arg.request, thread.cap_effective)",
    ] {
        assert!(all.contains(summary), "missing '{summary}' in:\n{all}");
    }
    assert!(all.contains("all records processed"), "{all}");
    // The shells that trace runs are alerted on (with the last `-log` given, info, in effect).
    let text = std::fs::read_to_string(&alerts).unwrap();
    assert!(text.lines().any(|l| l.contains("Shell spawned")), "{text}");
    // `evt.num` numbers the records the policy engine receives from 1: exactly one is 3.
    assert_eq!(text.lines().filter(|l| l.contains("\"Third record\"")).count(), 1, "{text}");

    let out = run_sfprocessor_in(dir.path(), &["-listrules", "-config", &cfg], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("rule\tPTRACE attached\t")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("disabled (unknown attribute(s) evt.arg.request, thread.cap_effective)"), "{line}");
}

/// Falco's documented alert fields (falco.org, "Outputs" / JSON output): exactly these keys.
const FALCO_ALERT_KEYS: [&str; 8] =
    ["hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time"];
/// Falco's priority names, as its JSON alerts write them.
const FALCO_PRIORITIES: [&str; 8] =
    ["Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"];

#[test]
fn format_falco_writes_falco_alerts_with_rendered_output() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let policies = workspace_root().join("builtin-plugins/policy-engine/tests/falco_style");
    let alerts = dir.path().join("alerts.json");
    let json_alerts = dir.path().join("alerts-json.json");
    let pipeline = |format: &str, path: &std::path::Path| {
        write_pipeline(
            dir.path(),
            &format!("{format}.json"),
            &json!({"pipeline": [
                {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
                {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "enrich",
                 "dialect": "falco", "policies": policies.to_string_lossy()},
                {"processor": "exporter", "in": "evt eventchan", "export": "file", "file.path": path.to_string_lossy(), "format": format}]}),
        )
    };
    let cfg = pipeline("falco", &alerts);
    let trace = data.join("traces").join("shellshock.sf");
    let out = run_sfprocessor_in(
        dir.path(),
        &["-config", &cfg.to_string_lossy(), "-log=info", &trace.to_string_lossy()],
        &[],
    );
    let (stdout, stderr) = output_text(&out);
    let all = format!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    let text = std::fs::read_to_string(&alerts).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(!lines.is_empty(), "{all}");
    // Enrich mode forwards every record; the ones no rule matched are counted, not written.
    assert!(all.contains("records_not_alerts="), "{all}");
    assert!(!all.contains("records_not_alerts=0,") && !all.contains("records_not_alerts=0\n"), "{all}");
    // RFC 3339 in UTC with nine fraction digits: 2022-11-29T06:11:39.671000026Z.
    let is_falco_time = |t: &str| {
        t.len() == 30
            && t.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                19 => b == b'.',
                29 => b == b'Z',
                _ => b.is_ascii_digit(),
            })
    };
    for alert in &lines {
        let obj = alert.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, FALCO_ALERT_KEYS, "{alert}");
        assert!(is_falco_time(alert["time"].as_str().unwrap()), "{alert}");
        assert!(FALCO_PRIORITIES.contains(&alert["priority"].as_str().unwrap()), "{alert}");
        assert_eq!(alert["source"], "syscall");
        assert!(alert["tags"].is_array() && alert["hostname"].is_string(), "{alert}");
        let output = alert["output"].as_str().unwrap();
        assert!(!output.contains('%'), "a %field left unrendered: {alert}");
        assert!(alert["output_fields"]["evt.time"].is_i64(), "{alert}");
    }
    let shell = lines.iter().find(|a| a["rule"] == "Shell with folded condition").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(shell["priority"], "Warning", "{shell}");
    let cmdline = shell["output_fields"]["proc.cmdline"].as_str().unwrap();
    assert!(shell["output"].as_str().unwrap().contains(&format!("command={cmdline} parent=")), "{shell}");
    let third = lines.iter().find(|a| a["rule"] == "Third record").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(third["output_fields"]["evt.num"], 3, "{third}");
    // `%evt.type` prints the system call name Falco would (the record is a CLOSE).
    assert_eq!(third["output"], "Third record (num=3 type=close)", "{third}");
    assert_eq!(third["output_fields"]["evt.type"], "close", "{third}");

    // The json format carries the rendered output in each policy under the falco dialect.
    let cfg = pipeline("json", &json_alerts);
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg.to_string_lossy(), &trace.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&json_alerts).unwrap();
    assert!(
        text.contains(r#""id":"Third record","desc":"#) && text.contains(r#""output":"Third record (num=3 type="#),
        "{text}"
    );

    // So does the ecs format, as the document's `message`.
    let ecs_alerts = dir.path().join("alerts-ecs.json");
    let cfg = pipeline("ecs", &ecs_alerts);
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg.to_string_lossy(), &trace.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = std::fs::read_to_string(&ecs_alerts).unwrap();
    assert!(text.contains(r#""message":"Third record (num=3 type="#), "{text}");
}
