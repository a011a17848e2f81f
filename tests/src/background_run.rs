//! A pipeline run in the background while a test disturbs its surroundings (a server
//! stopped, a signal sent): stdout and stderr go to `sfprocessor.log` in the run's
//! directory, and [`finish`] waits for the end with a bound.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::sfprocessor_bin;

/// The log file of a background run, inside its directory.
pub const LOG_FILE: &str = "sfprocessor.log";

/// Starts `sfprocessor -config <cfg> <input>` in `dir`, both output streams to [`LOG_FILE`].
pub fn spawn(dir: &Path, cfg: &str, input: &Path) -> Child {
    let log = std::fs::File::create(dir.join(LOG_FILE)).expect("create log");
    let err = log.try_clone().expect("clone log");
    Command::new(sfprocessor_bin())
        .current_dir(dir)
        .args(["-config", cfg, &input.to_string_lossy()])
        .stdout(log)
        .stderr(err)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sfprocessor")
}

/// Waits for the run to end; its exit code and log. Kills it and fails the test, showing
/// the log, when it is still running after `timeout`.
pub fn finish(mut child: Child, dir: &Path, timeout: Duration) -> (i32, String) {
    let log = || std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("sfprocessor still running after {timeout:?}:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.code().unwrap_or(-1), log())
}
