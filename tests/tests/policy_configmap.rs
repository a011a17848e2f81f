//! Policies mounted from a Kubernetes ConfigMap: the kubelet writes the files into a hidden
//! timestamped directory, points the `..data` symlink at it and exposes each file as a
//! symlink `rules.yaml -> ..data/rules.yaml`; an update swaps `..data` atomically. Each rule
//! must be loaded once (not once per path that reaches the file), and a swap must reload.

use std::{os::unix::fs::symlink, path::Path};

use serde_json::json;
use sysflow_e2e_tests::{output_text, read_json_lines, run_sfprocessor_in, shared_data, write_pipeline};

fn rule(name: &str) -> String {
    format!("- rule: {name}\n  desc: exec\n  condition: sf.type = PE and sf.opflags = EXEC\n  priority: low\n  tags: [t]\n")
}

/// Builds `dir` as the kubelet lays out a ConfigMap volume with one key `rules.yaml`.
fn configmap(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("..2026_11_25_10_00_00.1")).expect("mkdir");
    std::fs::write(dir.join("..2026_11_25_10_00_00.1/rules.yaml"), text).expect("write");
    symlink("..2026_11_25_10_00_00.1", dir.join("..data")).expect("symlink ..data");
    symlink("..data/rules.yaml", dir.join("rules.yaml")).expect("symlink rules.yaml");
}

#[test]
fn configmap_policy_directory_loads_each_rule_once() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    configmap(&policies, &rule("Exec seen"));
    let out_path = dir.path().join("out.json");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "alert",
             "policies": policies.to_string_lossy()},
            {"processor": "exporter", "in": "evt eventchan", "export": "file", "file.path": out_path.to_string_lossy()}]}),
    );
    let trace = data.join("traces/k8s_small.sf");
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg.to_string_lossy(), &trace.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("loaded 1 rules"), "{stderr}");
    let lines = read_json_lines(&out_path);
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["policies"].as_array().map(Vec::len), Some(1), "rule listed more than once: {l}");
    }
}
