//! Shared helpers of the integration tests: locating the shared test data.

#![allow(dead_code)]

use std::path::PathBuf;

/// The shared data directory, or `None` (after printing why) when tests should skip.
/// With `CI=true` a missing directory fails the test instead.
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SYSFLOW_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")));
    if dir.join("traces").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data not found at {}", dir.display());
    }
    println!("skipping: test data not found at {}", dir.display());
    None
}

/// All trace files, sorted by name.
pub fn traces(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("traces"))
        .expect("traces dir readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sf"))
        .collect();
    v.sort();
    v
}
