//! A plugin built against another plugin-api version, through the binary: named by a
//! pipeline from `-plugdir`, or sitting in `-driverdir`, it is refused at start-up with a
//! message naming the file and both versions, and the host exits non-zero.
//!
//! The fixture is the one the plugin-loader tests build (same crate files, same shared
//! nested target dir), so it compiles once for both suites.

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use common::{
    plugin_fixtures::{built_so, cargo_build, copy_plugin_api, private_dir, standalone_root, write_standalone_plugin},
    run_in, text, write_pipeline,
};
use sfprocessor_plugin_loader::host_api_version;

/// The plugin-api version the fixture is built for.
const FIXTURE_API: &str = "0.4.0";

/// Builds the `incompatible` processor plugin against a plugin-api copy at version
/// `FIXTURE_API`, once per test process; returns the built library.
fn incompatible_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let api = copy_plugin_api(&standalone_root().join("plugin-api-0.4"), FIXTURE_API, &[]);
        let krate = write_standalone_plugin(&standalone_root(), "incompatible-plugin", "incompatible", &api);
        cargo_build(&krate.join("Cargo.toml"), &[]);
        built_so("incompatible-plugin")
    })
}

/// A private scratch dir (0700) holding a 0755 `sub` dir with the fixture as `incompatible.so` (0644).
fn setup(sub: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let scratch = private_dir();
    let dir = scratch.path().join(sub);
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let so = dir.join("incompatible.so");
    fs::copy(incompatible_so(), &so).expect("copy plugin");
    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).expect("chmod plugin");
    (scratch, dir, so)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

const READER: &str =
    r#"{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}"#;

/// The refusal names the file and both versions; the run failed before exporting anything.
fn assert_refused(out: &std::process::Output, so: &Path, scratch: &Path) {
    let (stdout, stderr) = text(out);
    let all = format!("{stdout}{stderr}");
    assert_ne!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(out.status.code().is_some(), "killed by a signal: {stdout}\n{stderr}");
    let line = all
        .lines()
        .find(|l| l.contains(&s(so)) && l.contains("incompatible with this sfprocessor"))
        .unwrap_or_else(|| panic!("no refusal naming {}:\n{all}", so.display()));
    assert!(line.contains(&format!("built for plugin-api {FIXTURE_API}")), "{line}");
    assert!(line.contains(&format!("this host speaks plugin-api {}", host_api_version())), "{line}");
    assert!(!all.contains("Starting the processing pipeline"), "{all}");
    assert!(!scratch.join("out.json").exists(), "the pipeline ran despite the refusal");
}

#[test]
fn an_incompatible_processor_in_plugdir_is_refused_at_start_up() {
    assert_ne!(host_api_version(), FIXTURE_API, "the fixture must differ from the host's plugin-api");
    let (scratch, plugins, so) = setup("plugins");
    let cfg = write_pipeline(
        scratch.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "incompatible", "in": "flat flattenerchan", "out": "p flattenerchan"}},
            {{"processor": "exporter", "in": "p flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#
        ),
    );
    let out = run_in(scratch.path(), &["-config", &cfg, "-plugdir", &s(&plugins), &s(scratch.path())], &[]);
    assert_refused(&out, &so, scratch.path());
}

#[test]
fn an_incompatible_library_in_driverdir_stops_start_up() {
    let (scratch, drivers, so) = setup("drivers");
    let cfg = write_pipeline(
        scratch.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#
        ),
    );
    let out = run_in(scratch.path(), &["-config", &cfg, "-driverdir", &s(&drivers), &s(scratch.path())], &[]);
    assert_refused(&out, &so, scratch.path());
    let (stdout, stderr) = text(&out);
    assert!(format!("{stdout}{stderr}").contains(&format!("-driverdir {}", drivers.display())), "{stdout}\n{stderr}");
}
