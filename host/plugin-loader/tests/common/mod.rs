//! Building plugin libraries for the loader tests (the host's tests include this module
//! too, so both suites build the same fixtures once).
//!
//! Plugins are built by a nested `cargo build` into one target directory shared by every
//! test and kept between runs (`$TMPDIR/sfprocessor-plugin-test-target-<checkout key>`, or
//! `$SFPROCESSOR_PLUGIN_TEST_TARGET`), so dependencies compile once. It is separate from the outer build's target directory, whose lock the
//! running `cargo test` holds.

#![allow(dead_code)] // each test file uses part of this

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

/// The example plugins: (package, plugin file name to install as).
pub const EXAMPLES: &[(&str, &str)] = &[
    ("example-processor", "example.so"),
    ("printer-handler", "printer.so"),
    ("now-action", "now.so"),
    ("ndjson-driver", "ndjson.so"),
    ("passthrough", "passthrough.so"),
    ("panicking-processor", "panicky.so"),
];

static CARGO_LOCK: Mutex<()> = Mutex::new(());

/// The workspace root: the nearest directory holding `Cargo.lock` above the crate whose
/// tests include this module (the plugin-loader's or the host's).
pub fn workspace_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().expect("crate dir");
    crate_dir
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .expect("a workspace root with Cargo.lock")
        .to_path_buf()
}

/// The shared target directory for nested builds, one per checkout (keyed by the workspace
/// path) so two checkouts never read each other's libraries.
pub fn plugin_target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SFPROCESSOR_PLUGIN_TEST_TARGET") {
        return PathBuf::from(dir);
    }
    // FNV-1a: stable across runs and Rust versions, unlike std's hasher.
    let key = workspace_root()
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    std::env::temp_dir().join(format!("sfprocessor-plugin-test-target-{key:016x}"))
}

/// Runs `cargo build` for `manifest` with the shared target dir; panics with cargo's output on failure.
pub fn cargo_build(manifest: &Path, packages: &[&str]) {
    cargo_build_with_env(manifest, packages, &[]);
}

/// [`cargo_build`] with extra environment variables for the build (e.g. a fixture's
/// compile-time settings).
pub fn cargo_build_with_env(manifest: &Path, packages: &[&str], envs: &[(&str, &str)]) {
    let _guard = CARGO_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").arg("--manifest-path").arg(manifest);
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    cmd.env("CARGO_TARGET_DIR", plugin_target_dir());
    // Without debug info the libraries are a fifth of the size: faster to copy and hash.
    cmd.env("CARGO_PROFILE_DEV_DEBUG", "0");
    // The target dir outlives this clone: do not replay cached rustc probe results (a
    // broken earlier run can leave a failure there).
    cmd.env("CARGO_CACHE_RUSTC_INFO", "0");
    cmd.envs(envs.iter().copied());
    let out = cmd.output().expect("running cargo");
    assert!(
        out.status.success(),
        "cargo build of {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the example plugins once per test process; returns the directory holding the `.so` files.
pub fn example_build_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let pkgs: Vec<&str> = EXAMPLES.iter().map(|(p, _)| *p).collect();
        cargo_build(&workspace_root().join("Cargo.toml"), &pkgs);
        plugin_target_dir().join("debug")
    })
}

/// The built library of an example package.
pub fn example_so(package: &str) -> PathBuf {
    example_build_dir();
    built_so(package)
}

/// The library a nested build of `package` produced in the shared target dir.
pub fn built_so(package: &str) -> PathBuf {
    plugin_target_dir().join("debug").join(format!("lib{}.so", package.replace('-', "_")))
}

/// Copies an example plugin into `dir` as `name`, mode 0644.
pub fn install_example(package: &str, dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    fs::copy(example_so(package), &dest).expect("copy plugin");
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o644)).expect("chmod plugin");
    dest
}

/// A fresh private directory (mode 0700).
pub fn private_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).expect("chmod dir");
    d
}

/// Load options with a runtime dir inside `dir`.
pub fn options_in(dir: &Path) -> sfprocessor_plugin_loader::LoadOptions {
    sfprocessor_plugin_loader::LoadOptions { runtime_dir: Some(dir.join("run")), ..Default::default() }
}

/// Where standalone crates are written: a fixed place beside the shared target dir, so a
/// re-run finds them unchanged and cargo rebuilds nothing.
pub fn standalone_root() -> PathBuf {
    plugin_target_dir().join("standalone-crates")
}

/// Writes a file unless it already has this content (keeps its mtime, so cargo sees no change).
pub fn write_if_changed(path: &Path, contents: &[u8]) {
    if fs::read(path).map(|old| old == contents).unwrap_or(false) {
        return;
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Writes a standalone plugin crate (outside the workspace) depending on the plugin-api at
/// `api_dir`; pins dependency versions with the workspace's lock file so the build reuses
/// the shared target dir's artifacts and needs no registry access.
pub fn write_standalone_plugin(root: &Path, package: &str, plugin_name: &str, api_dir: &Path) -> PathBuf {
    let dir = root.join(package);
    write_if_changed(
        &dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nsysflow-plugin-api = {{ path = \"{}\" }}\n\n[workspace]\n",
            api_dir.display()
        )
        .as_bytes(),
    );
    write_if_changed(
        &dir.join("src/lib.rs"),
        format!(
            r#"use sysflow_plugin_api::{{export_plugins, Batch, ChannelType, Host, PluginConfig, PluginDescriptor, PluginError, Processor}};

pub struct P;

impl Processor for P {{
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {{
        Ok(P)
    }}
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {{
        Ok(Some(batch))
    }}
}}

export_plugins![PluginDescriptor::processor::<P>("{plugin_name}", "standalone test plugin", "0.1.0", &[], &[ChannelType::Flat], Some(ChannelType::Flat))];
"#
        )
        .as_bytes(),
    );
    let lock = fs::read(workspace_root().join("Cargo.lock")).expect("read Cargo.lock");
    write_if_changed(&dir.join("Cargo.lock"), &lock);
    dir
}

/// A copy of `plugin-api/` at `dest` with its version set to `version` and the keys it
/// inherits from the workspace written out, so it builds on its own.
/// `edits` are (file under `src/`, text, replacement); a missing text fails the test.
pub fn copy_plugin_api(dest: &Path, version: &str, edits: &[(&str, &str, &str)]) -> PathBuf {
    let src = workspace_root().join("plugin-api");
    copy_tree(&src.join("src"), &dest.join("src"), Path::new(""), edits);
    let root_manifest = fs::read_to_string(workspace_root().join("Cargo.toml")).expect("root Cargo.toml");
    let inherited = |key: &str| -> String {
        root_manifest
            .lines()
            .find(|l| l.split('=').next().map(str::trim) == Some(key))
            .unwrap_or_else(|| panic!("workspace defines no '{key}'"))
            .to_string()
    };
    let manifest = fs::read_to_string(src.join("Cargo.toml")).expect("plugin-api Cargo.toml");
    let mut out = String::new();
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("version") && trimmed.contains('=') && !out.contains("\nversion") {
            out.push_str(&format!("version = \"{version}\"\n"));
        } else if let Some(key) = trimmed.strip_suffix(".workspace = true") {
            let def = inherited(key);
            out.push_str(&def);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    write_if_changed(&dest.join("Cargo.toml"), out.as_bytes());
    dest.to_path_buf()
}

fn copy_tree(from: &Path, to: &Path, rel: &Path, edits: &[(&str, &str, &str)]) {
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let rel = rel.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target, &rel, edits);
            continue;
        }
        let mut bytes = fs::read(entry.path()).expect("read");
        for (file, text, replacement) in edits.iter().filter(|(f, _, _)| Path::new(f) == rel) {
            let content = String::from_utf8(bytes).expect("utf-8 source");
            assert!(content.contains(text), "{file} no longer contains {text:?}; update the test's edit");
            bytes = content.replace(text, replacement).into_bytes();
        }
        write_if_changed(&target, &bytes);
    }
}
