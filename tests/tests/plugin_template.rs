//! The plugin template works as `docs/plugins.md` §1 says: copied to a directory outside this
//! workspace, its `sysflow-plugin-api` path pointed at this checkout, built with a plain
//! `cargo build --release`, installed in a `-plugdir`, it loads into a running pipeline and
//! every record passes through it (tagged, so the test can tell it did).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use serde_json::{json, Value};
use sysflow_e2e_tests::{output_text, read_json_lines, run_sfprocessor_in, workspace_root, write_pipeline};

/// The tag the test configures (`mystage.tag`) and looks for on every exported record.
const TAG: &str = "seen-by-template";

/// Copies `example-plugins/template` (its manifest and sources, nothing built) into `dest`,
/// pointing its `sysflow-plugin-api` dependency at this checkout by absolute path.
fn copy_template(dest: &Path) {
    let template = workspace_root().join("example-plugins/template");
    let manifest = fs::read_to_string(template.join("Cargo.toml")).expect("read template Cargo.toml");
    let api = fs::canonicalize(workspace_root().join("plugin-api")).expect("plugin-api dir");
    let relative = r#"sysflow-plugin-api = { path = "../../plugin-api" }"#;
    assert!(manifest.contains(relative), "the template's dependency line changed; update this test and docs/plugins.md");
    let absolute = format!(r#"sysflow-plugin-api = {{ path = "{}" }}"#, api.display());
    fs::write(dest.join("Cargo.toml"), manifest.replace(relative, &absolute)).expect("write Cargo.toml");
    fs::create_dir_all(dest.join("src")).expect("mkdir src");
    fs::copy(template.join("src/lib.rs"), dest.join("src/lib.rs")).expect("copy src/lib.rs");
    // The workspace's lock file pins the versions already downloaded and compiled for the
    // workspace, so the copy resolves without a registry round trip (cargo prunes the rest).
    fs::copy(workspace_root().join("Cargo.lock"), dest.join("Cargo.lock")).expect("copy Cargo.lock");
}

/// Target directory for template builds: `<target>/plugin-template`, next to the test's own
/// profile directory, so repeated runs (and CI on a clean clone, after its first build) reuse
/// the compiled dependencies. Not the test's own target directory: `cargo test` holds its lock.
fn template_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // <target>/<profile>/deps/<test>
    let target = exe.ancestors().nth(3).expect("target dir of the test executable");
    target.join("plugin-template")
}

#[test]
fn template_copied_outside_the_workspace_builds_loads_and_sees_every_record() {
    let started = Instant::now();
    let work = tempfile::Builder::new().prefix("sfp-plugin-template-").tempdir().expect("temp dir");
    let crate_dir = work.path().join("my-plugin");
    fs::create_dir_all(&crate_dir).expect("mkdir crate");
    copy_template(&crate_dir);
    // Outside the workspace: cargo must not find this repository's manifest above the copy.
    assert!(!crate_dir.starts_with(fs::canonicalize(workspace_root()).expect("workspace root")));

    let target = template_target_dir();
    let build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&crate_dir)
        .args(["build", "--release"])
        .env("CARGO_TARGET_DIR", &target)
        // The outer `cargo test` sets these for its own package; the copy is a different one.
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_PKG_NAME")
        .output()
        .expect("spawn cargo build");
    let (_, build_log) = output_text(&build);
    assert!(build.status.success(), "the copied template did not build:\n{build_log}");
    let built = target.join("release/libmy_plugin.so");
    assert!(built.is_file(), "no {} after the build:\n{build_log}", built.display());

    // Install as the plugin's name, as docs/plugins.md §3 says, in a directory only we can write.
    let plugins = work.path().join("plugins");
    fs::create_dir_all(&plugins).expect("mkdir plugins");
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o755)).expect("chmod plugins");
    fs::copy(&built, plugins.join("mystage.so")).expect("install mystage.so");
    fs::set_permissions(plugins.join("mystage.so"), fs::Permissions::from_mode(0o644)).expect("chmod mystage.so");

    let trace = workspace_root().join("config/demo.sf");
    let trace = trace.to_string_lossy();
    let reader = json!({"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"});
    let direct = write_pipeline(
        work.path(),
        "direct.json",
        &json!({"pipeline": [reader, {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "direct.out"}]}),
    );
    let via = write_pipeline(
        work.path(),
        "via.json",
        &json!({"pipeline": [reader,
            {"processor": "mystage", "mystage.tag": TAG, "in": "flat flattenerchan", "out": "tagged flattenerchan"},
            {"processor": "exporter", "in": "tagged flattenerchan", "export": "file", "file.path": "via.out"}]}),
    );
    let out = run_sfprocessor_in(work.path(), &["-config", &direct.to_string_lossy(), "-log", "warn", &trace], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", output_text(&out));
    let out = run_sfprocessor_in(
        work.path(),
        &["-config", &via.to_string_lossy(), "-plugdir", &plugins.to_string_lossy(), &trace],
        &[],
    );
    let loaded_after = started.elapsed();
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let log = format!("{stdout}{stderr}");
    assert!(log.contains("plugins/mystage.so"), "the load is logged with its path:\n{log}");

    let direct_records = read_json_lines(&work.path().join("direct.out"));
    let via_records = read_json_lines(&work.path().join("via.out"));
    assert!(!direct_records.is_empty(), "the trace produced no records");
    assert_eq!(via_records.len(), direct_records.len(), "records were lost or added by the template plugin");
    for (i, (tagged, plain)) in via_records.iter().zip(&direct_records).enumerate() {
        let tags: Vec<&str> = tagged["tags"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        assert!(tags.contains(&TAG), "record {i} did not pass through the template plugin: {tagged}");
        let mut untagged = tagged.clone();
        if let Some(obj) = untagged.as_object_mut() {
            obj.remove("tags");
        }
        let mut plain = plain.clone();
        if let Some(obj) = plain.as_object_mut() {
            obj.remove("tags");
        }
        assert_eq!(untagged, plain, "record {i} changed beyond its tag");
    }
    // Written to the real stderr: libtest swallows the output of a passing test.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("plugin template: copy → build → loaded and ran in {:.1} s\n", loaded_after.as_secs_f64()).as_bytes(),
    );
}
