//! SIGHUP reload: what a reload needs from the start-up code, the rule that decides whether
//! the running drivers can carry over to the new pipeline, and the process-wide reload
//! counters served at `/metrics`. The swap itself happens in `runtime` (see
//! docs/operations.md, "Reload").

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::{
    graph::{DriverNode, Graph},
    runtime::Instances,
};

/// Reloads applied since start.
static RELOADS: AtomicU64 = AtomicU64::new(0);
/// Reloads refused since start (the running pipeline was kept).
static RELOAD_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Reloads applied since start.
pub fn reloads() -> u64 {
    RELOADS.load(Ordering::Relaxed)
}

/// Reloads refused since start.
pub fn reload_failures() -> u64 {
    RELOAD_FAILURES.load(Ordering::Relaxed)
}

/// Counts an applied reload.
pub fn count_reload() {
    RELOADS.fetch_add(1, Ordering::Relaxed);
}

/// Counts a refused reload.
pub fn count_failure() {
    RELOAD_FAILURES.fetch_add(1, Ordering::Relaxed);
}

/// Builds the next pipeline from the files as they are now: the validated graph and its
/// processors and handlers (outputs opened to append), never its drivers. Each error names
/// the file and line, or the block and key.
pub type Rebuild<'a> = Box<dyn FnMut() -> Result<(Graph, Instances), Vec<String>> + 'a>;

/// What a running pipeline needs to reload itself on SIGHUP.
pub struct ReloadSource<'a> {
    /// One message per (coalesced) SIGHUP.
    pub hangups: Receiver<()>,
    /// Queues a reload as a SIGHUP does (for the action library watcher).
    pub trigger: Sender<()>,
    /// Builds the next pipeline.
    pub rebuild: Rebuild<'a>,
}

/// Checks that the new pipeline has the running drivers: a reload keeps every driver
/// instance (the socket driver's listener and connection, the file driver's position), so
/// a pipeline that adds, removes or reconfigures a driver is refused; the message names
/// the driver and what differs.
pub fn same_drivers(running: &[DriverNode], next: &[DriverNode]) -> Result<(), String> {
    if running.len() != next.len() {
        return Err(format!(
            "the new pipeline has {} driver(s), the running one {}: a reload keeps the running drivers; restart to change them",
            next.len(),
            running.len()
        ));
    }
    for (old, new) in running.iter().zip(next) {
        let (old_name, new_name) = (old.plugin.descriptor.name.as_str(), new.plugin.descriptor.name.as_str());
        if old.label != new.label || old_name != new_name {
            return Err(format!(
                "{}: the new pipeline has {} (driver '{new_name}') here: a reload keeps the running drivers; restart to change them",
                old.label, new.label
            ));
        }
        let mut keys: Vec<&String> = old.config.keys().chain(new.config.keys()).collect();
        keys.sort();
        keys.dedup();
        if let Some(key) = keys.into_iter().find(|k| old.config.get(*k) != new.config.get(*k)) {
            return Err(format!(
                "{}: key '{key}' changed: a reload keeps the running drivers (their sockets and read positions); restart to change a driver",
                old.label
            ));
        }
    }
    Ok(())
}
