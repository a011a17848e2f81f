//! Hot reload of processor, handler and driver plugins loaded from libraries: a watcher thread
//! reloads a library whose file changed (rename into place or copy over it) once its size
//! and mtime held still for a quiet period, refuses one that is truncated or half-written
//! (the loader's ELF check, on the private copy), and hands the
//! new plugin to the nodes running the old one; each node swaps instances at a batch
//! boundary on its own thread (see `runtime`), so no record is lost or processed twice. A
//! driver swaps between two polls, handing its live input (descriptors, read position) to
//! the new instance (`Driver::handoff`/`resume`), or keeps running when it cannot.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    thread::JoinHandle,
};

use crossbeam_channel::{select, unbounded, Receiver, Sender};
use sfprocessor_plugin_loader::{self as loader, LoadError, LoadOptions, PluginEvent, PluginWatcher, DEFAULT_DEBOUNCE};
use sysflow_plugin_api::ChannelType;

use crate::{
    graph::Graph,
    registry::{Kind, Origin, Registered},
};

/// New builds that the watcher refused before any node saw them (library not loadable,
/// plugin missing, channel types changed). Process-wide: the watcher serves every node.
static LIBRARY_RELOAD_FAILURES: AtomicU64 = AtomicU64::new(0);

/// New builds of plugin libraries refused by the watcher so far.
pub fn library_reload_failures() -> u64 {
    LIBRARY_RELOAD_FAILURES.load(Ordering::Relaxed)
}

/// A new build of a node's processor, handler or driver, to swap in at the next batch boundary.
pub struct Swap {
    /// Which of the node's plugins it replaces.
    pub kind: Kind,
    /// The plugin from the new library.
    pub plugin: Registered,
    /// Hex SHA-256 of the new library's content.
    pub sha256: String,
}

/// A node that runs a plugin from a given library.
struct Subscriber {
    /// The node's label, for messages.
    label: String,
    kind: Kind,
    name: String,
    /// The node's input channel type, which a new processor build must still accept.
    input: ChannelType,
    /// What the node writes (a processor's or driver's output), which a new build must still write.
    output: Option<ChannelType>,
    tx: Sender<Swap>,
    /// Hex SHA-256 of the build this node runs (as last handed to it): a library with this
    /// content is never swapped in again, e.g. re-installing it after a refused build.
    running_sha256: Option<String>,
}

/// The running watcher thread; dropping it stops the watch.
pub struct Reloader {
    done: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `<canonical dir>/<file name>`: how the watcher names files.
fn watch_key(path: &Path) -> PathBuf {
    match (path.parent().and_then(|d| d.canonicalize().ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Per node, the receiver of its swaps (none when it runs no library plugin).
pub type SwapReceivers = Vec<Option<Receiver<Swap>>>;

/// Starts watching the libraries of the graph's processors, handlers and drivers. Returns
/// the reloader (none when no node runs a library plugin) and the receivers of the swaps
/// per processor node and per driver.
pub fn start(graph: &Graph, opts: &LoadOptions) -> (Option<Reloader>, SwapReceivers, SwapReceivers) {
    let mut receivers: SwapReceivers = Vec::new();
    let mut subscribers: HashMap<PathBuf, Vec<Subscriber>> = HashMap::new();
    for node in &graph.processors {
        let mut rx_slot = None;
        let input = graph.channels[node.input].kind;
        let output_type = node.plugin.output();
        let plugins = [(Kind::Processor, Some(&node.plugin)), (Kind::Handler, node.handler.as_ref())];
        for (kind, plugin) in plugins {
            let Some(plugin) = plugin else { continue };
            let Origin::Library(path) = &plugin.origin else { continue };
            let tx = match &rx_slot {
                Some((tx, _)) => Sender::clone(tx),
                None => {
                    let (tx, rx) = unbounded::<Swap>();
                    rx_slot = Some((tx.clone(), rx));
                    tx
                }
            };
            subscribers.entry(watch_key(path)).or_default().push(Subscriber {
                label: node.label(),
                kind,
                name: plugin.descriptor.name.as_str().to_string(),
                input,
                output: if kind == Kind::Processor { output_type } else { None },
                tx,
                // Hashed when the watch starts, like the watcher's own baseline, right after start-up loaded it.
                running_sha256: loader::sha256_file(path).ok(),
            });
        }
        receivers.push(rx_slot.map(|(_, rx)| rx));
    }
    let mut driver_receivers: SwapReceivers = Vec::new();
    for node in &graph.drivers {
        let Origin::Library(path) = &node.plugin.origin else {
            driver_receivers.push(None);
            continue;
        };
        let (tx, rx) = unbounded::<Swap>();
        subscribers.entry(watch_key(path)).or_default().push(Subscriber {
            label: node.label.clone(),
            kind: Kind::Driver,
            name: node.plugin.descriptor.name.as_str().to_string(),
            input: ChannelType::SysFlow,
            output: node.plugin.output(),
            tx,
            running_sha256: loader::sha256_file(path).ok(),
        });
        driver_receivers.push(Some(rx));
    }
    if subscribers.is_empty() {
        return (None, receivers, driver_receivers);
    }
    let mut dirs: Vec<PathBuf> = subscribers.keys().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    dirs.sort();
    dirs.dedup();
    let watcher = match PluginWatcher::new(&dirs, DEFAULT_DEBOUNCE) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("{e}: plugins will not be reloaded when their libraries change");
            return (None, receivers, driver_receivers);
        }
    };
    let (done_tx, done_rx) = unbounded::<()>();
    let opts = opts.clone();
    let thread = std::thread::Builder::new()
        .name("plugin-reload".into())
        .spawn(move || watch_loop(&watcher, &done_rx, &mut subscribers, &opts));
    match thread {
        Ok(t) => {
            tracing::info!(
                "watching {} for new builds of running plugins",
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            );
            (Some(Reloader { done: Some(done_tx), thread: Some(t) }), receivers, driver_receivers)
        }
        Err(e) => {
            tracing::warn!("cannot start the plugin reload thread: {e}: plugins will not be reloaded");
            (None, receivers, driver_receivers)
        }
    }
}

fn watch_loop(
    watcher: &PluginWatcher,
    done: &Receiver<()>,
    subscribers: &mut HashMap<PathBuf, Vec<Subscriber>>,
    opts: &LoadOptions,
) {
    loop {
        let event = select! {
            recv(watcher.events()) -> ev => match ev { Ok(ev) => ev, Err(_) => return },
            recv(done) -> _ => return,
        };
        match event {
            PluginEvent::Error(e) => tracing::warn!("plugin directory watch: {e}"),
            PluginEvent::Changed { path, sha256 } => {
                let Some(subs) = subscribers.get_mut(&watch_key(&path)) else { continue };
                reload(&path, &sha256, subs, watcher, opts);
            }
        }
    }
}

fn reload(path: &Path, sha256: &str, subs: &mut [Subscriber], watcher: &PluginWatcher, opts: &LoadOptions) {
    // The watcher hashed the file once its size and mtime held still for a quiet period;
    // a copy with another content means it is being written again, and that write's own
    // event brings it back here once it settles.
    let lib = match loader::load_library_expecting(path, opts, sha256) {
        Ok(lib) => lib,
        Err(e @ LoadError::ChangedSinceCheck { .. }) => {
            tracing::warn!("hot reload of {} postponed: {e}; the running instances are kept meanwhile", path.display());
            return;
        }
        Err(e) => {
            // Remember the content, so the same broken build is not retried on every event.
            watcher.set_known(path, sha256);
            LIBRARY_RELOAD_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::error!("hot reload of {} failed: {e}; the running instances are kept", path.display());
            return;
        }
    };
    watcher.set_known(path, &lib.sha256);
    for s in subs {
        let label = s.label.as_str();
        if s.running_sha256.as_deref() == Some(lib.sha256.as_str()) {
            tracing::info!(
                "{label}: {} is the build already running (sha256 {}): nothing to swap",
                path.display(),
                &lib.sha256[..12.min(lib.sha256.len())]
            );
            continue;
        }
        let found = lib.descriptors.iter().find(|d| {
            d.name.as_str() == s.name && loader::plugin_kind(&d.factory) == s.kind.name()
        });
        let Some(descriptor) = found else {
            LIBRARY_RELOAD_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "{label}: the new build of {} offers no {} '{}': the running instance is kept",
                path.display(),
                s.kind.name(),
                s.name
            );
            continue;
        };
        let plugin = Registered { descriptor: descriptor.clone(), origin: Origin::Library(lib.path.clone()) };
        let types_changed = match s.kind {
            Kind::Processor => !plugin.inputs().contains(&s.input) || plugin.output() != s.output,
            Kind::Driver => plugin.output() != s.output,
            _ => false,
        };
        if types_changed {
            LIBRARY_RELOAD_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "{label}: the new build of {} changes the channel types of {} '{}': the running instance is kept",
                path.display(),
                s.kind.name(),
                s.name
            );
            continue;
        }
        if s.tx.send(Swap { kind: s.kind, plugin, sha256: lib.sha256.clone() }).is_ok() {
            s.running_sha256 = Some(lib.sha256.clone());
        }
    }
}
