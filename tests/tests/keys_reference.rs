//! `sfprocessor keys`: the pipeline keys reference in `docs/keys.md` is exactly the command's
//! output for the built-in plugins (regenerate it with the command below when a plugin's keys
//! change), one plugin can be selected by name, and an unknown name is an error naming the
//! known ones. Loaded plugins are covered in `host/tests/plugins.rs`.

use sysflow_e2e_tests::{output_text, run_sfprocessor_in, workspace_root};

/// How `docs/keys.md` is generated (from the workspace root, no plugin directories).
const REGENERATE: &str = "sfprocessor keys -plugdir /nonexistent -driverdir /nonexistent > docs/keys.md";

#[test]
fn docs_keys_md_is_the_output_of_sfprocessor_keys() {
    let root = workspace_root();
    let out = run_sfprocessor_in(&root, &["keys", "-plugdir", "/nonexistent", "-driverdir", "/nonexistent"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "nothing but the listing may be printed: {stderr}");
    let documented = std::fs::read_to_string(root.join("docs/keys.md")).expect("read docs/keys.md");
    if documented != stdout {
        let first = documented.lines().zip(stdout.lines()).position(|(a, b)| a != b);
        panic!(
            "docs/keys.md differs from `sfprocessor keys` (first differing line {:?}); regenerate it: {REGENERATE}\n--- command output ---\n{stdout}",
            first.map(|i| i + 1)
        );
    }
    // Keys the issue found only in the source are listed with their meaning.
    for key in ["| `file.path` |", "| `syslog.host` |", "| `on.error` |", "| `policies` |"] {
        assert!(stdout.contains(key), "{key} missing from\n{stdout}");
    }
}

#[test]
fn keys_of_one_plugin_and_unknown_names() {
    let root = workspace_root();
    let out = run_sfprocessor_in(&root, &["keys", "exporter", "-plugdir", "/nonexistent", "-driverdir", "/nonexistent"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.starts_with("## processor `exporter` (built in, sysflow-kafka)"), "{stdout}");
    assert!(stdout.contains("| `export` |") && !stdout.contains("sysflowreader"), "{stdout}");

    let out = run_sfprocessor_in(&root, &["keys", "exportr", "-plugdir", "/nonexistent"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}");
    assert!(stderr.contains("no plugin is named 'exportr'") && stderr.contains("exporter"), "{stderr}");
}

#[test]
fn upstream_flags_still_run_a_pipeline_check() {
    // The subcommand is only the first word: upstream's flag-only command lines are unchanged.
    let root = workspace_root();
    let out = run_sfprocessor_in(&root, &["-config", "config/pipeline.json", "-test"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("Successfully loaded pipeline configuration"), "{stderr}");
}

#[test]
fn the_help_names_the_subcommands() {
    let out = run_sfprocessor_in(&workspace_root(), &["-h"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("sfprocessor keys [flags] [plugin]") && stdout.contains("explain "), "{stdout}");
}
