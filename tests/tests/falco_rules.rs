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
