//! What the policy engine's integration tests share.

use std::{path::PathBuf, time::Duration};

use abi_stable::std_types::{RArc, ROption};
use sysflow_plugin_api::{Oid, Process};

/// The shared test data directory (`SYSFLOW_TEST_DATA`, else `../shared/data` beside the
/// workspace), or `None` after printing why when it is absent outside CI; in CI
/// (`CI=true`) a missing directory fails the test, so CI cannot pass by skipping.
#[allow(dead_code)] // not every test file reads the shared data
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

/// A process of user alice (uid 1000) in container `c1`; `poid` names its parent.
#[allow(dead_code)] // not every test file builds processes
pub fn proc(hpid: i64, exe: &str, args: &str, poid: Option<i64>) -> RArc<Process> {
    RArc::new(Process {
        oid: Oid { create_ts: 1000 + hpid, hpid },
        poid: poid.map(|p| Oid { create_ts: 1000 + p, hpid: p }).into(),
        exe: exe.into(),
        exe_args: args.into(),
        uid: 1000,
        user_name: "alice".into(),
        container_id: ROption::RSome("c1".into()),
        ..Default::default()
    })
}

/// Polls `f` every 100 ms for up to 10 s; whether it became true (reloads run on their own
/// thread, so tests wait for their effect).
#[allow(dead_code)] // not every test binary that includes this module waits
pub fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
