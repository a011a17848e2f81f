//! Hot reload of action libraries. A policy engine loads the `*.so` files of its
//! `actiondir` when it is constructed, so a new action build reaches the records through a
//! pipeline reload: this watcher queues one, exactly as a SIGHUP does (coalesced with any
//! pending SIGHUP), when a library in the `actiondir` of a running policy engine changes.
//! The reload then swaps the whole pipeline behind the drivers without losing or repeating
//! a record (`runtime::reload_generation`).

use std::{
    path::{Path, PathBuf},
    thread::JoinHandle,
};

use crossbeam_channel::{select, unbounded, Sender};
use sfprocessor_plugin_loader::{PluginEvent, PluginWatcher, DEFAULT_DEBOUNCE};
use sysflow_policy_engine::processor::DEFAULT_ACTION_DIR;

use crate::graph::Graph;

/// Name of the builtin policy engine processor, whose blocks have an `actiondir`.
const POLICY_ENGINE: &str = "policyengine";

/// The running watcher; dropping it stops the watch.
pub struct ActionWatch {
    done: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ActionWatch {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The existing `actiondir`s of the graph's policy engines (default
/// `/usr/local/sysflow/resources/actions`), canonical and without repeats.
fn action_dirs(graph: &Graph) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = graph
        .processors
        .iter()
        .filter(|n| n.block.processor == POLICY_ENGINE)
        .map(|n| n.block.map.get("actiondir").and_then(|v| v.as_str()).unwrap_or(DEFAULT_ACTION_DIR))
        .filter_map(|d| Path::new(d).canonicalize().ok())
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Starts watching the graph's action directories; each changed library queues a reload on
/// `trigger`. None when no policy engine has an existing action directory.
pub fn start(graph: &Graph, trigger: Sender<()>) -> Option<ActionWatch> {
    let dirs = action_dirs(graph);
    if dirs.is_empty() {
        return None;
    }
    let watcher = match PluginWatcher::new(&dirs, DEFAULT_DEBOUNCE) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("{e}: action libraries will not be reloaded when they change (send SIGHUP)");
            return None;
        }
    };
    let (done_tx, done_rx) = unbounded::<()>();
    let thread = std::thread::Builder::new().name("action-watch".into()).spawn(move || loop {
        let event = select! {
            recv(watcher.events()) -> ev => match ev { Ok(ev) => ev, Err(_) => return },
            recv(done_rx) -> _ => return,
        };
        match event {
            PluginEvent::Error(e) => tracing::warn!("action directory watch: {e}"),
            PluginEvent::Changed { path, sha256 } => {
                watcher.set_known(&path, &sha256);
                tracing::info!("action library {} changed: reloading the pipeline", path.display());
                // Full: a reload is pending already; disconnected: the run is ending.
                let _ = trigger.try_send(());
            }
        }
    });
    match thread {
        Ok(t) => Some(ActionWatch { done: Some(done_tx), thread: Some(t) }),
        Err(e) => {
            tracing::warn!("cannot start the action watch thread: {e}: action libraries reload on SIGHUP only");
            None
        }
    }
}
