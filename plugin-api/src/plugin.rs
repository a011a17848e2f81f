//! The four plugin kinds, as a plugin author implements them, and the host services they get.
//!
//! Authors implement the plain Rust traits [`Driver`], [`Processor`], [`Handler`] and
//! [`Action`]. The [`ffi`](crate::ffi) module turns them into ABI-stable objects whose
//! every call catches panics on the plugin's side of the boundary.

use abi_stable::{
    std_types::{RStr, RString, RVec},
    StableAbi,
};

// Re-exported here too: it was defined in this module before `error` existed.
pub use crate::error::PluginError;
use crate::{
    action_object::{ActionLoaderFn, LoadedActions},
    batch::Batch,
    config::PluginConfig,
    flat::FlatRecord,
};


/// What a [`Counter`] counts, which decides how the host reports it.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    /// Work done or state (records seen, connections): listed in the exit summary and metrics.
    Info,
    /// Data lost or refused (records dropped, undecodable input, failed deliveries): also
    /// warned about at exit when non-zero, and a driver's count makes `-strict` exit 1.
    Loss,
}

/// A named counter a plugin reports (records seen, records dropped, decode errors, …).
///
/// Declare what it counts: only [`CounterKind::Loss`] counters are warned about at exit,
/// whatever their names.
///
/// ```
/// use sysflow_plugin_api::{Counter, CounterKind};
///
/// let counters = vec![Counter::new("records", 1000), Counter::loss("dropped_bad_lines", 2)];
/// assert_eq!(counters[0].kind, CounterKind::Info);
/// assert!(counters[1].is_loss());
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Counter {
    /// Counter name, e.g. `dropped_corrupt_blocks`.
    pub name: RString,
    /// Current value.
    pub value: u64,
    /// Whether it counts lost data.
    pub kind: CounterKind,
}

impl Counter {
    /// A counter of work done or state ([`CounterKind::Info`]).
    pub fn new(name: &str, value: u64) -> Counter {
        Counter { name: name.into(), value, kind: CounterKind::Info }
    }

    /// A counter of lost or refused data ([`CounterKind::Loss`]).
    pub fn loss(name: &str, value: u64) -> Counter {
        Counter { name: name.into(), value, kind: CounterKind::Loss }
    }

    /// True for a [`CounterKind::Loss`] counter.
    pub fn is_loss(&self) -> bool {
        self.kind == CounterKind::Loss
    }
}

/// Log levels, upstream's set.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Detailed tracing.
    Trace,
    /// Informational.
    Info,
    /// Warnings: something was skipped or defaulted.
    Warn,
    /// Errors.
    Error,
    /// Health messages (connections accepted, checks passed).
    Health,
}

/// Services the host offers to every plugin instance.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct Host {
    log_fn: extern "C" fn(LogLevel, RStr<'_>, RStr<'_>),
    instance: RStr<'static>,
    stop_fn: extern "C" fn() -> bool,
    // Spelled out, not as `ActionLoaderFn`: the StableAbi derive reads fn pointer types
    // only when written in place.
    load_actions_fn: extern "C" fn(RStr<'_>, RStr<'static>) -> LoadedActions,
}

/// The stop signal of a [`Host`] built without one: never set.
extern "C" fn never_stopping() -> bool {
    false
}

/// The action loader of a [`Host`] built without one: loads nothing, and says so.
extern "C" fn no_action_loader(dir: RStr<'_>, _instance: RStr<'static>) -> LoadedActions {
    LoadedActions {
        actions: RVec::new(),
        errors: RVec::from(vec![RString::from(format!("{dir}: this host does not load action libraries"))]),
    }
}

impl Host {
    /// Builds the services; `instance` names the plugin instance in log lines.
    pub fn new(log_fn: extern "C" fn(LogLevel, RStr<'_>, RStr<'_>), instance: &'static str) -> Host {
        Host { log_fn, instance: RStr::from_str(instance), stop_fn: never_stopping, load_actions_fn: no_action_loader }
    }

    /// The same services with `loader` answering [`Host::load_actions`].
    pub fn with_action_loader(self, loader: ActionLoaderFn) -> Host {
        Host { load_actions_fn: loader, ..self }
    }

    /// Asks the host to load the action libraries (`*.so`) of `dir` and start every action
    /// they offer, each with a `Host` carrying this instance's name. The host applies the
    /// checks it applies to every plugin library (permissions, plugin-api version, type
    /// layouts); what it refuses, and actions whose constructor failed, are in
    /// [`LoadedActions::errors`]. A missing directory yields nothing and no error.
    ///
    /// This is how the policy engine gets the actions its rules name without depending on
    /// the host's plugin loader: any processor may do the same.
    ///
    /// ```
    /// use sysflow_plugin_api::{Host, LogLevel};
    /// # use abi_stable::std_types::RStr;
    /// extern "C" fn log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}
    /// // A Host built without a loader (a unit test's) loads nothing and says why.
    /// let loaded = Host::new(log, "doc").load_actions("/usr/local/sysflow/resources/actions");
    /// assert!(loaded.actions.is_empty());
    /// assert!(loaded.errors[0].contains("does not load action libraries"));
    /// ```
    pub fn load_actions(&self, dir: &str) -> LoadedActions {
        (self.load_actions_fn)(RStr::from_str(dir), self.instance)
    }

    /// The same services with `stop_fn` as the process's stop signal (see [`Host::stop_requested`]).
    pub fn with_stop_signal(self, stop_fn: extern "C" fn() -> bool) -> Host {
        Host { stop_fn, ..self }
    }

    /// True once the operator asked the process to stop (SIGTERM/SIGINT). A plugin that waits
    /// for something outside the pipeline (a receiver that is down, a full remote queue)
    /// checks it and stops waiting, counting what it could not deliver, so a stop stays
    /// bounded. The pipeline still drains: records keep arriving after it is set.
    ///
    /// ```
    /// use sysflow_plugin_api::{Host, LogLevel};
    /// # use abi_stable::std_types::RStr;
    /// extern "C" fn log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}
    /// extern "C" fn stopping() -> bool { true }
    /// assert!(!Host::new(log, "doc").stop_requested());
    /// assert!(Host::new(log, "doc").with_stop_signal(stopping).stop_requested());
    /// ```
    pub fn stop_requested(&self) -> bool {
        (self.stop_fn)()
    }

    /// Name of this instance (plugin name, or pipeline block).
    pub fn instance(&self) -> &'static str {
        self.instance.as_str()
    }

    /// Logs a message through the host's logger.
    pub fn log(&self, level: LogLevel, message: &str) {
        (self.log_fn)(level, self.instance, RStr::from_str(message));
    }

    /// Logs at trace level.
    pub fn trace(&self, message: &str) {
        self.log(LogLevel::Trace, message)
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message)
    }

    /// Logs a warning.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message)
    }

    /// Logs an error.
    pub fn error(&self, message: &str) {
        self.log(LogLevel::Error, message)
    }

    /// Logs a health message.
    pub fn health(&self, message: &str) {
        self.log(LogLevel::Health, message)
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("instance", &self.instance.as_str()).finish()
    }
}

/// What a driver poll produced.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Debug)]
pub enum DriverPoll {
    /// Records read.
    Batch(Batch),
    /// Nothing now (waited a short while); poll again unless stopping.
    Idle,
    /// The input is exhausted.
    End,
}

/// A data source. The host calls [`Driver::poll`] in a loop on the driver's thread and
/// checks for shutdown between calls, so a poll should return within ~100 ms.
pub trait Driver: Send + 'static {
    /// Builds the driver from its configuration. The host puts the input path
    /// (positional argument, or the `drivers` entry's `path`) under the key `path`.
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError>
    where
        Self: Sized;

    /// Reads up to `max_records` records.
    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError>;

    /// Counters reported at exit and in metrics.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }

    /// Shutdown was requested: stop taking new input. The host keeps polling (for at most
    /// 10 s) until `End`, so a driver may first return what its input already holds (the
    /// socket driver drains its kernel queue); one with nothing to drain returns `End` next.
    fn stop(&mut self) {}

    /// Whether this driver implements [`Driver::handoff`] and [`Driver::resume`], so the host
    /// can replace a running instance (a new build of its library, a changed configuration)
    /// without closing its input. The host reads it from the descriptor before it stops
    /// anything: a driver without it is kept, and a reload that needs to replace it is refused.
    const HANDOFF: bool = false;

    /// Called between two polls when the host replaces this instance: stop reading and return
    /// the live state a successor needs to go on exactly where this instance stopped (open
    /// descriptors, read position, counters), with nothing read but not yet returned. The
    /// instance is never polled again, only dropped once the successor resumed, so its
    /// descriptors stay open until then; its `Drop` must leave the input usable (e.g. not
    /// unlink a socket path the successor listens on). `None`: this instance cannot hand
    /// over now, and it keeps running.
    fn handoff(&mut self) -> Result<Option<DriverHandoff>, PluginError> {
        Ok(None)
    }

    /// Builds the successor of an instance that handed over `state` (from this build or an
    /// earlier one), with the successor's configuration, which may differ from the
    /// predecessor's. The descriptors in `state` belong to the predecessor: duplicate those
    /// you keep ([`DriverHandoff::dup_fd`]). An error leaves the predecessor's input intact,
    /// and the host resumes the running build from the same state instead.
    fn resume(config: &PluginConfig, host: Host, state: &DriverHandoff) -> Result<Self, PluginError>
    where
        Self: Sized,
    {
        let _ = (config, host, state);
        Err(PluginError::new("this driver cannot resume from a predecessor's state"))
    }
}

/// The live state a driver hands to its successor ([`Driver::handoff`], [`Driver::resume`]).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverHandoff {
    /// Open file descriptors (listening socket, connection, input file), still owned by the
    /// predecessor; the successor duplicates the ones it keeps.
    pub fds: RVec<i32>,
    /// Everything else, in the driver's own encoding (e.g. JSON): read position, counters.
    /// A driver must accept the state of its earlier builds, or refuse it with an error.
    pub state: RVec<u8>,
}

impl DriverHandoff {
    /// A duplicate of descriptor `index` (close-on-exec), for the successor to keep; it shares
    /// the open file (read position) or socket with the predecessor's.
    pub fn dup_fd(&self, index: usize) -> Result<std::os::fd::OwnedFd, PluginError> {
        let fd = *self
            .fds
            .get(index)
            .ok_or_else(|| PluginError::new(format!("handoff: no descriptor #{index} (it has {})", self.fds.len())))?;
        if fd < 0 {
            return Err(PluginError::new(format!("handoff: descriptor #{index} is invalid ({fd})")));
        }
        // SAFETY: the host keeps the predecessor, which owns these descriptors, alive and
        // unpolled while the successor resumes, so `fd` is open for the borrow's duration.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        borrowed
            .try_clone_to_owned()
            .map_err(|e| PluginError::new(format!("handoff: cannot duplicate descriptor #{index} ({fd}): {e}")))
    }
}

/// A pipeline stage: batches in, at most one batch out (the host fans it out).
pub trait Processor: Send + 'static {
    /// Builds the processor from its pipeline block.
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError>
    where
        Self: Sized;

    /// Processes one batch.
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError>;

    /// Called when no batch arrived for a while (about a second) and at end of input:
    /// emit anything buffered.
    fn flush(&mut self) -> Result<Option<Batch>, PluginError> {
        Ok(None)
    }

    /// Called once after the input closed and the last flush: release resources and
    /// confirm delivery (an exporter returns an error if records could not be delivered).
    fn finish(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Counters reported at exit and in metrics.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }
}

/// A handler of the `sysflowreader` processor: receives the reader's resolved flat
/// records (upstream's per-record-kind handler calls, batched) and emits flat records.
pub trait Handler: Send + 'static {
    /// Builds the handler from the reader's pipeline block.
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError>
    where
        Self: Sized;

    /// Handles one batch of resolved records.
    fn handle(&mut self, records: RVec<FlatRecord>) -> Result<Option<RVec<FlatRecord>>, PluginError>;

    /// Emits anything buffered (idle and end of input).
    fn flush(&mut self) -> Result<Option<RVec<FlatRecord>>, PluginError> {
        Ok(None)
    }

    /// Counters reported at exit and in metrics.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }
}

/// A policy action, run on each record a rule naming it matched. Actions run on several
/// policy-engine workers at once, hence `&self` and `Sync`.
pub trait Action: Send + Sync + 'static {
    /// Builds the action (actions have no per-instance configuration upstream).
    fn new(host: Host) -> Result<Self, PluginError>
    where
        Self: Sized;

    /// Acts on a matched record; typically adds tags to `record.context.tags`.
    fn apply(&self, record: &mut FlatRecord) -> Result<(), PluginError>;
}
