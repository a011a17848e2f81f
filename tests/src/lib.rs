//! Shared fixtures of the end-to-end tests: where the binary and the shared test data are,
//! and how to read reference outputs.
//!
//! The tests run the `sfprocessor` binary that `cargo test --workspace` builds into the
//! same target directory as the test executables.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

pub mod background_run;
pub mod kafka_broker;
pub mod search_server;
pub mod servers;
pub mod syslog_server;

/// Workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shared test data (`../shared/data`, or `$SYSFLOW_TEST_DATA`), or `None` after printing
/// a skip notice. Panics when `CI=true`, so CI can never pass by skipping.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("SYSFLOW_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"));
    if dir.join("traces").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the shared test data is missing at {}", dir.display());
    }
    // Written to the real stderr: libtest would swallow a println! of a passing test.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: test data not found at {} (set SYSFLOW_TEST_DATA)\n", dir.display()).as_bytes(),
    );
    None
}

/// Names of every trace in the shared data, sorted.
pub fn trace_names(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("traces"))
        .expect("read traces dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sf"))
        .collect();
    names.sort();
    names
}

/// Path of the `sfprocessor` binary built next to the test executable. When it is missing
/// (e.g. `cargo test -p sysflow-e2e-tests` alone), builds it once with the same profile into
/// `target/e2e-build/` (a separate directory: the running `cargo test` holds the lock of its own).
pub fn sfprocessor_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| locate_or_build("sfprocessor", "sfprocessor")).clone()
}

/// Path of the `sfreplay` binary (`tools/replay`), found or built as [`sfprocessor_bin`].
pub fn sfreplay_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| locate_or_build("sfreplay", "sfreplay")).clone()
}

fn locate_or_build(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir");
    let bin = profile_dir.join(name);
    if bin.is_file() {
        return bin;
    }
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_owned();
    let build_dir = profile_dir.parent().expect("target dir").join("e2e-build");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root()).args(["build", "-p", package]).env("CARGO_TARGET_DIR", &build_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("spawn cargo build -p {package}: {e}"));
    assert!(status.success(), "`cargo build -p {package}` ({profile}) failed: {status}");
    let built = build_dir.join(&profile).join(name);
    assert!(built.is_file(), "{name} binary not found at {} nor {}", bin.display(), built.display());
    built
}

/// Runs `sfprocessor` with `args` in the working directory `cwd`, returning its output.
pub fn run_sfprocessor_in(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sfprocessor_bin());
    cmd.current_dir(cwd).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn sfprocessor")
}

/// Stdout and stderr of a finished run, as text.
pub fn output_text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs `sfprocessor` with `args`, returning its output.
pub fn run_sfprocessor(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sfprocessor_bin());
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn sfprocessor")
}

/// Reads a gzip'd JSON-lines file.
pub fn read_gz_json_lines(path: &Path) -> Vec<Value> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|l| l.unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{}: invalid JSON line: {e}", path.display())))
        .collect()
}

/// Reads a JSON-lines file our exporter wrote; every line must be valid JSON.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{} line {}: invalid JSON ({e}): {l}", path.display(), i + 1))
        })
        .collect()
}

/// Writes a pipeline file into `dir` and returns its path.
pub fn write_pipeline(dir: &Path, name: &str, pipeline: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(pipeline).expect("serialise pipeline"))
        .expect("write pipeline");
    path
}
