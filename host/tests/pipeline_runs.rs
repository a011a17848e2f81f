//! Real runs of the binary on the shared traces: reader → exporter(file) gives one JSON line
//! per expected record; fan-out gives every record to each branch; environment overrides,
//! `drivers` entries and directory inputs work.

mod common;

use std::path::Path;

use common::{expected_counts, lines_of, run_in, shared_data, text, write_pipeline};

fn reader_to_file(out: &str) -> String {
    format!(
        r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "format": "json", "file.path": "{out}"}}]}}"#
    )
}

#[test]
fn every_trace_exports_one_line_per_expected_record() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out.json");
    let cfg = write_pipeline(dir.path(), "p.json", &reader_to_file(&out_path.to_string_lossy()));
    let mut checked = 0;
    for (trace, expected) in expected_counts(&data) {
        let trace_path = data.join("traces").join(&trace);
        if !trace_path.is_file() {
            continue;
        }
        let out = run_in(dir.path(), &["-config", &cfg, "-log", "warn", &trace_path.to_string_lossy()], &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{trace}\nstdout: {stdout}\nstderr: {stderr}");
        let lines = lines_of(&out_path);
        assert_eq!(lines.len(), expected, "{trace}: exported lines");
        for l in lines.iter().take(3) {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{trace}: invalid JSON {e}: {l}"));
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} traces found");
}

#[test]
fn fan_out_gives_every_record_to_both_exporters() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        r#"{"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan",
             "out": ["a flattenerchan", "b flattenerchan"]},
            {"processor": "exporter", "in": "a flattenerchan", "export": "file", "file.path": "a.json"},
            {"processor": "exporter", "in": "b flattenerchan", "export": "file", "file.path": "b.json"}]}"#,
    );
    let trace = data.join("traces/k8s_small.sf");
    let out = run_in(dir.path(), &["-config", &cfg, &trace.to_string_lossy()], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let expected = expected_for(&data, "k8s_small.sf");
    let a = lines_of(&dir.path().join("a.json"));
    let b = lines_of(&dir.path().join("b.json"));
    assert_eq!(a.len(), expected);
    assert_eq!(a, b, "both branches must see the same records in the same order");
    // The exit summary names each node with its counters.
    assert!(stderr.contains("pipeline[0] (sysflowreader): records in"), "{stderr}");
    assert!(stderr.contains(&format!("pipeline[1] (exporter): records in {expected}")), "{stderr}");
    assert!(stderr.contains(&format!("pipeline[2] (exporter): records in {expected}")), "{stderr}");
}

fn expected_for(data: &Path, trace: &str) -> usize {
    expected_counts(data).into_iter().find(|(t, _)| t == trace).map(|(_, n)| n).expect("trace in counts.tsv")
}

#[test]
fn environment_override_redirects_the_export_file() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", &reader_to_file("configured.json"));
    let trace = data.join("traces/httpd.sf");
    let target = dir.path().join("from_env.json");
    let out = run_in(
        dir.path(),
        &["-config", &cfg, &trace.to_string_lossy()],
        &[("EXPORTER_FILE_PATH", &target.to_string_lossy())],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("pipeline[1] (exporter): key 'file.path' set from environment variable EXPORTER_FILE_PATH"), "{stderr}");
    assert_eq!(lines_of(&target).len(), expected_for(&data, "httpd.sf"));
    assert!(!dir.path().join("configured.json").exists());
}

#[test]
fn drivers_entry_with_its_own_path_needs_no_positional_argument() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = data.join("traces/httpd.sf");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"drivers": [{{"driver": "file", "out": "sysflow sysflowchan", "path": "{}"}}],
                "pipeline": [
                {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
                {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#,
            trace.to_string_lossy()
        ),
    );
    let out = run_in(dir.path(), &["-config", &cfg, "-perflog"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(lines_of(&dir.path().join("out.json")).len(), expected_for(&data, "httpd.sf"));
    assert!(stderr.contains("[Perf]") && stderr.contains("drivers[0] (file): in"), "{stderr}");
}

#[test]
fn directory_input_reads_every_trace() {
    let Some(data) = shared_data() else { return };
    // A directory of three traces (symlinks, so nothing is copied).
    let input = tempfile::tempdir().expect("tempdir");
    let names = ["httpd.sf", "k8s_small.sf", "sf-apis_files.sf"];
    let mut expected = 0;
    for n in names {
        std::os::unix::fs::symlink(data.join("traces").join(n), input.path().join(n)).expect("symlink");
        expected += expected_for(&data, n);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", &reader_to_file("out.json"));
    let out = run_in(dir.path(), &["-config", &cfg, "-driver", "file", &input.path().to_string_lossy()], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(lines_of(&dir.path().join("out.json")).len(), expected);
}

#[test]
fn missing_trace_fails_at_start_naming_the_driver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", &reader_to_file("out.json"));
    let out = run_in(dir.path(), &["-config", &cfg, "/nonexistent/trace.sf"], &[]);
    let (stdout, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("driver (file)"), "{stderr}");
}

/// Upstream's shipped pipeline file, unchanged, redirected by environment variables as an
/// operator would: the policy engine's alerts all reach the export file.
#[test]
fn upstream_distribution_pipeline_with_env_overrides() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = dir.path().join("alerts.json");
    let policies = data.join("policies/distribution/filter.yaml");
    let cfg = data.join("pipelines-upstream/pipeline.distribution.json");
    let trace = data.join("traces/k8s_small.sf");
    let out = run_in(
        dir.path(),
        &["-config", &cfg.to_string_lossy(), &trace.to_string_lossy()],
        &[
            ("POLICYENGINE_POLICIES", &policies.to_string_lossy()),
            ("EXPORTER_EXPORT", "file"),
            ("EXPORTER_FILE_PATH", &alerts.to_string_lossy()),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let engine_line = stderr
        .lines()
        .find(|l| l.contains("pipeline[1] (policyengine): records in"))
        .unwrap_or_else(|| panic!("no policy engine summary in\n{stderr}"));
    let out_count: usize = engine_line
        .split(", out ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot read the out count of {engine_line}"));
    let lines = lines_of(&alerts);
    assert!(!lines.is_empty(), "the distribution policy raises alerts on k8s_small.sf");
    assert_eq!(lines.len(), out_count, "every alert the engine emitted was exported");
    assert!(stderr.contains(&format!("pipeline[2] (exporter): records in {out_count},")), "{stderr}");
}
