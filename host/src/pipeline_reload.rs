//! SIGHUP reload: what a reload needs from the start-up code, the rule that decides which
//! running drivers carry over to the new pipeline and which hand their input to a new instance, and the process-wide reload
//! counters served at `/metrics`. The swap itself happens in `runtime` (see
//! docs/operations.md, "Reload").

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};

use sysflow_plugin_api::{ffi::DriverResumeCtor, PluginFactory};

use crate::{
    graph::{DriverNode, Graph},
    registry::Registered,
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

/// The driver constructors of a plugin: `new` (to tell builds apart: a library content is
/// mapped once, so another constructor address means another build) and `resume` (present
/// when the driver can hand over its live input, `Driver::HANDOFF`).
pub fn driver_ctors(plugin: &Registered) -> Option<(usize, Option<DriverResumeCtor>)> {
    match plugin.descriptor.factory {
        PluginFactory::Driver { new, resume, .. } => Some((new as usize, resume.into_option())),
        _ => None,
    }
}

/// Decides, per running driver, whether the new pipeline keeps it as it is (`false`) or
/// replaces it by handing its live input to a new instance (`true`: a key of its block
/// changed, or its library is another build). The new pipeline must have the same drivers
/// (labels and plugin names) in the same order; a driver that must be replaced must be able
/// to hand over (`Driver::HANDOFF`, in the running and in the new build). Otherwise the
/// reload is refused: the message names the driver and the key or build that differs.
pub fn driver_changes(running: &[DriverNode], next: &[DriverNode]) -> Result<Vec<bool>, String> {
    if running.len() != next.len() {
        return Err(format!(
            "the new pipeline has {} driver(s), the running one {}: a reload replaces drivers but does not add or remove them; restart to change them",
            next.len(),
            running.len()
        ));
    }
    let mut changes = Vec::with_capacity(running.len());
    for (old, new) in running.iter().zip(next) {
        let (old_name, new_name) = (old.plugin.descriptor.name.as_str(), new.plugin.descriptor.name.as_str());
        if old.label != new.label || old_name != new_name {
            return Err(format!(
                "{}: the new pipeline has {} (driver '{new_name}') here: a reload replaces a driver by another instance of the same plugin only; restart to change it",
                old.label, new.label
            ));
        }
        let mut keys: Vec<&String> = old.config.keys().chain(new.config.keys()).collect();
        keys.sort();
        keys.dedup();
        let changed_key = keys.into_iter().find(|k| old.config.get(*k) != new.config.get(*k));
        let (old_ctors, new_ctors) = (driver_ctors(&old.plugin), driver_ctors(&new.plugin));
        let new_build = old_ctors.map(|(n, _)| n) != new_ctors.map(|(n, _)| n);
        let what = match (changed_key, new_build) {
            (None, false) => {
                changes.push(false);
                continue;
            }
            (Some(key), _) => format!("key '{key}' changed"),
            (None, true) => format!("its library ({}) is another build", new.plugin.origin),
        };
        let hands_over = |c: Option<(usize, Option<DriverResumeCtor>)>| c.is_some_and(|(_, r)| r.is_some());
        if !hands_over(old_ctors) {
            return Err(format!(
                "{}: {what}, but the running driver '{old_name}' cannot hand over its input (it does not implement Driver::handoff): restart to change it",
                old.label
            ));
        }
        if !hands_over(new_ctors) {
            return Err(format!(
                "{}: {what}, but the new build of driver '{new_name}' cannot resume a running input (it does not implement Driver::resume): restart to change it",
                old.label
            ));
        }
        changes.push(true);
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnostics::Diagnostics,
        graph::{build, DriverChoice},
        pipeline_config::{interpret, parse_str},
        registry::Registry,
    };

    /// The drivers of a pipeline whose `drivers` list is `drivers`.
    fn drivers(drivers: &str) -> Vec<DriverNode> {
        let text = format!(
            r#"{{"drivers": {drivers}, "pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "exporter", "in": "flat flattenerchan", "export": "null"}}]}}"#
        );
        let registry = Registry::with_builtins().unwrap_or_else(|e| panic!("{e:?}"));
        let mut diag = Diagnostics::default();
        let cfg = interpret(&parse_str(&text).expect("json"), "", &mut diag);
        let g = build(&cfg, &registry, &DriverChoice { driver: None, path: None }, &mut diag);
        assert!(diag.ok(), "{:?}", diag.errors);
        g.drivers
    }

    fn socket(path: &str) -> String {
        format!(r#"[{{"driver": "socket", "out": "sysflow sysflowchan", "path": "{path}"}}]"#)
    }

    #[test]
    fn an_unchanged_driver_is_kept_and_a_changed_socket_is_handed_over() {
        let running = drivers(&socket("/run/a.sock"));
        assert_eq!(driver_changes(&running, &drivers(&socket("/run/a.sock"))), Ok(vec![false]));
        assert_eq!(driver_changes(&running, &drivers(&socket("/run/b.sock"))), Ok(vec![true]));
    }

    #[test]
    fn what_cannot_be_handed_over_is_refused_naming_driver_and_key() {
        let file = |p: &str| format!(r#"[{{"driver": "file", "out": "sysflow sysflowchan", "path": "{p}"}}]"#);
        let err = driver_changes(&drivers(&file("/t/a.sf")), &drivers(&file("/t/b.sf"))).expect_err("file cannot hand over");
        assert!(err.starts_with("drivers[0] (file): key 'path' changed, but the running driver 'file' cannot hand over"), "{err}");
        let err = driver_changes(&drivers(&socket("/run/a.sock")), &drivers(&file("/t/a.sf"))).expect_err("another plugin");
        assert!(err.starts_with("drivers[0] (socket): the new pipeline has drivers[0] (file)"), "{err}");
        let two = r#"[{"driver": "socket", "out": "sysflow sysflowchan", "path": "/a"}, {"driver": "socket", "out": "sysflow sysflowchan", "path": "/b"}]"#;
        let err = driver_changes(&drivers(&socket("/a")), &drivers(two)).expect_err("a driver added");
        assert!(err.contains("has 2 driver(s), the running one 1"), "{err}");
    }
}
