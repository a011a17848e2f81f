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
    process::Command,
    sync::OnceLock,
};

use common::{plugin_target_dir, run_in, text, workspace_root, write_pipeline};
use sfprocessor_plugin_loader::host_api_version;

/// The plugin-api version the fixture is built for.
const FIXTURE_API: &str = "0.2.0";



/// Writes a file unless it already has this content, so cargo sees no change on a re-run.
fn write_if_changed(path: &Path, contents: &[u8]) {
    if fs::read(path).map(|old| old == contents).unwrap_or(false) {
        return;
    }
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            write_if_changed(&target, &fs::read(entry.path()).expect("read"));
        }
    }
}

/// `plugin-api/` copied to `dest` with its version bumped and workspace-inherited keys
/// written out — byte for byte what the plugin-loader tests' `copy_plugin_api` writes.
fn copy_plugin_api(dest: &Path, version: &str) {
    let src = workspace_root().join("plugin-api");
    copy_tree(&src.join("src"), &dest.join("src"));
    let root_manifest = fs::read_to_string(workspace_root().join("Cargo.toml")).expect("root Cargo.toml");
    let manifest = fs::read_to_string(src.join("Cargo.toml")).expect("plugin-api Cargo.toml");
    let mut out = String::new();
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("version") && trimmed.contains('=') && !out.contains("\nversion") {
            out.push_str(&format!("version = \"{version}\"\n"));
        } else if let Some(key) = trimmed.strip_suffix(".workspace = true") {
            let def = root_manifest
                .lines()
                .find(|l| l.split('=').next().map(str::trim) == Some(key))
                .unwrap_or_else(|| panic!("workspace defines no '{key}'"));
            out.push_str(def);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    write_if_changed(&dest.join("Cargo.toml"), out.as_bytes());
}

/// Builds the `incompatible` processor plugin against a plugin-api copy at version
/// `FIXTURE_API`, once per test process; returns the built library.
fn incompatible_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let root = plugin_target_dir().join("standalone-crates");
        let api = root.join("plugin-api-0.2");
        copy_plugin_api(&api, FIXTURE_API);
        let dir = root.join("incompatible-plugin");
        write_if_changed(
            &dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"incompatible-plugin\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [lib]\ncrate-type = [\"cdylib\"]\n\n\
                 [dependencies]\nsysflow-plugin-api = {{ path = \"{}\" }}\n\n[workspace]\n",
                api.display()
            )
            .as_bytes(),
        );
        write_if_changed(
            &dir.join("src/lib.rs"),
            r#"use sysflow_plugin_api::{export_plugins, Batch, ChannelType, Host, PluginConfig, PluginDescriptor, PluginError, Processor};

pub struct P;

impl Processor for P {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(P)
    }
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        Ok(Some(batch))
    }
}

export_plugins![PluginDescriptor::processor::<P>("incompatible", "standalone test plugin", "0.1.0", &[], &[ChannelType::Flat], Some(ChannelType::Flat))];
"#
            .as_bytes(),
        );
        // The workspace's lock pins dependency versions: shared artifacts, no registry access.
        write_if_changed(&dir.join("Cargo.lock"), &fs::read(workspace_root().join("Cargo.lock")).expect("read Cargo.lock"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .arg("build")
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", plugin_target_dir())
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            // The target dir outlives this clone (it is shared by path in the temp dir): do
            // not trust its cached rustc probe results, which a broken earlier run can leave
            // as a failure cargo would replay.
            .env("CARGO_CACHE_RUSTC_INFO", "0")
            .output()
            .expect("running cargo");
        assert!(out.status.success(), "cargo build of the incompatible plugin failed:\n{}", String::from_utf8_lossy(&out.stderr));
        plugin_target_dir().join("debug/libincompatible_plugin.so")
    })
}

/// A private scratch dir (0700) holding a 0755 `sub` dir with the fixture as `incompatible.so` (0644).
fn setup(sub: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let scratch = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
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
