//! What the policy engine's integration tests share.

use std::path::PathBuf;

/// The shared test data directory (`SYSFLOW_TEST_DATA`, else `../shared/data` beside the
/// workspace), or `None` after printing why when it is absent outside CI; in CI
/// (`CI=true`) a missing directory fails the test, so CI cannot pass by skipping.
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SYSFLOW_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data not found at {}", dir.display());
    }
    eprintln!("skipping: test data not found at {}", dir.display());
    None
}
