//! A truncated plugin library at start-up, through the binary: in `-plugdir` or
//! `-driverdir` it stops start-up with a message naming the file and what is cut (as any
//! plugin that fails to load); in a policy engine's `actiondir` it is reported and the run
//! goes on (as any action library that fails to load). Never a death by SIGBUS.

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
};

use common::{
    plugin_fixtures::{example_so, private_dir},
    run_in, shared_data, text, workspace_root, write_pipeline,
};

const READER: &str =
    r#"{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}"#;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A 0755 `sub` directory of a fresh private scratch dir, holding the first half of the
/// example `package`'s library as `name` (mode 0644): the middle of a library is inside
/// its code segment, which the dynamic loader would map past the end of the file.
fn setup_half(sub: &str, package: &str, name: &str) -> (tempfile::TempDir, PathBuf, PathBuf, usize) {
    let scratch = private_dir();
    let dir = scratch.path().join(sub);
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let bytes = fs::read(example_so(package)).expect("read example plugin");
    let half = bytes.len() / 2;
    let so = dir.join(name);
    fs::write(&so, &bytes[..half]).expect("write half a library");
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).expect("chmod plugin");
    (scratch, dir, so, half)
}

/// The process exited (no signal), and a log line names the file and the truncation.
fn assert_reported(out: &Output, so: &Path, half: usize) -> String {
    let (stdout, stderr) = text(out);
    let all = format!("{stdout}{stderr}");
    assert!(out.status.code().is_some(), "killed by a signal ({:?}):\n{all}", out.status);
    let line = all
        .lines()
        .find(|l| l.contains(&s(so)) && l.contains("truncated: "))
        .unwrap_or_else(|| panic!("no line naming {} as truncated:\n{all}", so.display()));
    assert!(line.contains(&format!("file has {half} bytes")), "{line}");
    all
}

#[test]
fn a_truncated_processor_in_plugdir_stops_start_up() {
    let (scratch, plugins, so, half) = setup_half("plugins", "passthrough", "passthrough.so");
    let cfg = write_pipeline(
        scratch.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "passthrough", "in": "flat flattenerchan", "out": "p flattenerchan"}},
            {{"processor": "exporter", "in": "p flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#
        ),
    );
    let out = run_in(scratch.path(), &["-config", &cfg, "-plugdir", &s(&plugins), &s(scratch.path())], &[]);
    let all = assert_reported(&out, &so, half);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(!scratch.path().join("out.json").exists(), "the pipeline ran despite the refusal");
}

#[test]
fn a_truncated_library_in_driverdir_stops_start_up() {
    let (scratch, drivers, so, half) = setup_half("drivers", "ndjson-driver", "ndjson.so");
    let cfg = write_pipeline(
        scratch.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#
        ),
    );
    let out = run_in(scratch.path(), &["-config", &cfg, "-driverdir", &s(&drivers), &s(scratch.path())], &[]);
    let all = assert_reported(&out, &so, half);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(&format!("-driverdir {}", drivers.display())), "{all}");
}

#[test]
fn a_truncated_action_library_is_reported_and_the_run_goes_on() {
    let Some(data) = shared_data() else { return };
    let (scratch, actions, so, half) = setup_half("actions", "now-action", "now.so");
    let cfg = write_pipeline(
        scratch.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "enrich", "policies": "{}", "actiondir": "{}"}},
            {{"processor": "exporter", "in": "evt eventchan", "export": "null"}}]}}"#,
            s(&workspace_root().join("config/policies")),
            s(&actions)
        ),
    );
    let trace = s(&data.join("traces/shellshock.sf"));
    let out = run_in(scratch.path(), &["-config", &cfg, &trace], &[]);
    let all = assert_reported(&out, &so, half);
    assert!(all.contains("action plugin not loaded"), "{all}");
    assert!(!all.contains("Re-declaration of action"), "the refused library must not register: {all}");
    assert_eq!(out.status.code(), Some(0), "as for any action library that fails to load, the run goes on: {all}");
}
