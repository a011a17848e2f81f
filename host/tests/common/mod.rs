//! Fixtures shared by the host's tests: running the binary, writing pipelines, the shared data.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The built `sfprocessor` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sfprocessor")
}

/// Runs the binary in `dir` with `args` and extra environment variables.
pub fn run_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir).args(args);
    // Stray overrides from the developer's shell must not change what a test sees.
    for (k, _) in std::env::vars() {
        let l = k.to_lowercase();
        if ["exporter_", "sysflowreader_", "policyengine_"].iter().any(|p| l.starts_with(p)) {
            cmd.env_remove(&k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn sfprocessor")
}

/// Stdout and stderr of a run, for assertions and failure messages.
pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Writes `pipeline.json` with `content` into `dir`, returning its path as a string.
pub fn write_pipeline(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write pipeline");
    p.to_string_lossy().into_owned()
}

/// The shared test data directory, or `None` (after printing a skip notice) when it is
/// missing outside CI. With `CI=true` a missing directory fails the test.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("SYSFLOW_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("traces").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the shared test data is missing at {}", dir.display());
    }
    println!("skipping: test data not found at {}", dir.display());
    None
}

/// `(trace, sysprint_records)` from `expected/counts.tsv`.
pub fn expected_counts(data: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(data.join("expected/counts.tsv")).expect("read counts.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("counts.tsv header").split('\t').collect();
    let col = header.iter().position(|h| *h == "sysprint_records").expect("sysprint_records column");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[col].parse().expect("sysprint_records is a number"))
        })
        .collect()
}

/// Non-empty lines of a file.
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Plugin fixtures (example plugins, standalone crates) built by a nested cargo into the
/// target dir the plugin-loader tests share, so each compiles once for both suites.
#[path = "../../plugin-loader/tests/common/mod.rs"]
pub mod plugin_fixtures;

#[allow(unused_imports)] // not every test file needs it
pub use plugin_fixtures::workspace_root;
