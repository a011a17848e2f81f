//! One reader fanning out to two policy engines with different policy directories, each
//! exporting to its own file: each output holds exactly what that engine alone produces
//! (no duplicates, no cross-talk between the branches).

use std::path::Path;

use serde_json::{json, Value};
use sysflow_e2e_tests::{output_text, read_json_lines, run_sfprocessor_in, shared_data, write_pipeline};

const EXEC_RULE: &str = "- rule: Exec seen\n  desc: any exec\n  condition: sf.type = PE and sf.opflags = EXEC\n  priority: low\n  tags: [branch-exec]\n";
const OPEN_RULE: &str = "- rule: Open seen\n  desc: any file open\n  condition: sf.type = FF and sf.opflags = OPEN\n  priority: low\n  tags: [branch-open]\n";

fn engine(input: &str, output: &str, policies: &Path) -> Value {
    json!({"processor": "policyengine", "in": input, "out": output, "mode": "alert",
           "policies": policies.to_string_lossy(), "concurrency": "2"})
}

fn exporter(input: &str, path: &Path) -> Value {
    json!({"processor": "exporter", "in": input, "export": "file", "format": "json", "file.path": path.to_string_lossy()})
}

/// Runs the pipeline on the trace; returns the log (stderr).
fn run(dir: &Path, pipeline: Value, trace: &Path) -> String {
    let cfg = write_pipeline(dir, "p.json", &pipeline);
    let out = run_sfprocessor_in(dir, &["-config", &cfg.to_string_lossy(), &trace.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    stderr
}

/// The single rule id of every line, checking there is exactly one.
fn only_rule(lines: &[Value], rule: &str, tag: &str) {
    for l in lines {
        let ids: Vec<&str> = l["policies"].as_array().expect("policies").iter().filter_map(|p| p["id"].as_str()).collect();
        assert_eq!(ids, vec![rule], "cross-talk or duplicate match: {l}");
        let tags: Vec<&str> = l["tags"].as_array().expect("tags").iter().filter_map(Value::as_str).collect();
        assert_eq!(tags, vec![tag], "{l}");
    }
}

#[test]
fn two_engines_on_one_reader_keep_their_own_matches() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (dir.path().join("policies-exec"), dir.path().join("policies-open"));
    std::fs::create_dir(&pa).expect("mkdir");
    std::fs::create_dir(&pb).expect("mkdir");
    std::fs::write(pa.join("exec.yaml"), EXEC_RULE).expect("write");
    std::fs::write(pb.join("open.yaml"), OPEN_RULE).expect("write");
    let reader = |out: Value| json!({"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": out});

    for trace_name in ["k8s_small.sf", "mon.1531776712.sf"] {
        let trace = data.join("traces").join(trace_name);
        // Each engine alone.
        let solo_a = dir.path().join("solo-a.json");
        run(dir.path(), json!({"pipeline": [reader(json!("flat flattenerchan")),
            engine("flat flattenerchan", "evt eventchan", &pa), exporter("evt eventchan", &solo_a)]}), &trace);
        let solo_b = dir.path().join("solo-b.json");
        run(dir.path(), json!({"pipeline": [reader(json!("flat flattenerchan")),
            engine("flat flattenerchan", "evt eventchan", &pb), exporter("evt eventchan", &solo_b)]}), &trace);
        // Both behind one reader.
        let (fa, fb) = (dir.path().join("fan-a.json"), dir.path().join("fan-b.json"));
        let log = run(
            dir.path(),
            json!({"pipeline": [
                reader(json!(["f1 flattenerchan", "f2 flattenerchan"])),
                engine("f1 flattenerchan", "e1 eventchan", &pa),
                engine("f2 flattenerchan", "e2 eventchan", &pb),
                exporter("e1 eventchan", &fa),
                exporter("e2 eventchan", &fb)]}),
            &trace,
        );
        let (solo_a, solo_b) = (read_json_lines(&solo_a), read_json_lines(&solo_b));
        let (fan_a, fan_b) = (read_json_lines(&fa), read_json_lines(&fb));
        assert!(!solo_a.is_empty() && !solo_b.is_empty(), "{trace_name}: both rules must match something");
        only_rule(&fan_a, "Exec seen", "branch-exec");
        only_rule(&fan_b, "Open seen", "branch-open");
        assert!(fan_a.iter().all(|l| l["type"] == "PE" && l["opflags"] == json!(["EXEC"])), "{trace_name}");
        assert!(fan_b.iter().all(|l| l["type"] == "FF"), "{trace_name}");
        assert_eq!(fan_a.len(), solo_a.len(), "{trace_name}: exec branch count");
        assert_eq!(fan_b.len(), solo_b.len(), "{trace_name}: open branch count");
        assert_eq!(fan_a, solo_a, "{trace_name}: exec branch differs from the engine alone");
        assert_eq!(fan_b, solo_b, "{trace_name}: open branch differs from the engine alone");
        // The summary agrees: each exporter took in exactly its engine's alerts.
        assert!(log.contains(&format!("pipeline[3] (exporter): records in {},", fan_a.len())), "{log}");
        assert!(log.contains(&format!("pipeline[4] (exporter): records in {},", fan_b.len())), "{log}");
    }
}
