//! Running a validated graph: one thread per node, bounded channels of batches between
//! them, fan-out by sharing batches, and an orderly drain at the end.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{atomic::Ordering, Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use abi_stable::std_types::{RArc, RResult, RStr, RVec};
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use sysflow_plugin_api::{
    ffi::{DriverBox, HandlerBox, ProcessorBox},
    Batch, Counter, DriverPoll, FlatRecord, PluginError, PluginFactory,
};

use crate::{
    action_watch::{self, ActionWatch},
    diagnostics::Diagnostics,
    graph::{DriverNode, Graph, OnError, ProcessorNode, MAX_RESTARTS},
    hot_reload::{self, Swap},
    service_notify,
    registry::Kind,
    plugin_services,
    metrics::{self, NodeMetrics, PerfReporter, PluginCounters, PLUGIN_COUNTERS_INTERVAL},
    metrics_endpoint::{DriverRunning, MetricsEndpoint},
    pipeline_reload::{self, ReloadSource},
    signals::StopFlag,
};

/// Batches an edge holds before its producer blocks (backpressure). 8 batches keep every
/// stage busy; 32 only raised peak RSS (84 MB vs 23 MB on bench/run.sh) for no throughput.
pub const CHANNEL_CAPACITY: usize = 8;
/// Most records a driver is asked for per poll.
pub const MAX_DRIVER_BATCH: usize = 1024;
/// Idle time after which a processor is asked to flush.
pub const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// Longest a driver is polled after the stop request while it still returns what its input
/// already holds (the socket driver drains its kernel queue for at most 5 s); then the host
/// stops polling it and the pipeline drains.
pub const DRIVER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive driver errors after which the driver is given up.
const MAX_CONSECUTIVE_DRIVER_ERRORS: u32 = 100;
/// Errors of one node logged individually before only every 1000th is.
const LOGGED_ERRORS: u64 = 10;
/// Interval of `-perflog` reports.
pub const PERF_INTERVAL: Duration = Duration::from_secs(15);

/// Plugin instances built from a graph.
pub struct Instances {
    processors: Vec<(ProcessorBox, Option<HandlerBox>)>,
    drivers: Vec<DriverBox>,
}

/// Builds every processor and handler (and, if `with_drivers`, every driver), in file
/// order; constructor errors are recorded in `diag`, naming the block.
pub fn construct(graph: &Graph, with_drivers: bool, diag: &mut Diagnostics) -> Option<Instances> {
    let mut processors = Vec::new();
    for node in &graph.processors {
        let proc = build_processor(node).map_err(|e| diag.error(e)).ok();
        let handler = build_handler(node).map_err(|e| diag.error(e)).ok();
        if let (Some(p), Some(h)) = (proc, handler) {
            processors.push((p, h));
        }
    }
    let mut drivers = Vec::new();
    if with_drivers {
        for node in &graph.drivers {
            let json = serde_json::Value::Object(node.config.clone()).to_string();
            let built = match node.plugin.descriptor.factory {
                PluginFactory::Driver { new, .. } => new(RStr::from_str(&json), plugin_services::host_for(&node.label)),
                _ => RResult::RErr(PluginError::new("registered as a driver but has no driver constructor")),
            };
            match built {
                RResult::ROk(d) => drivers.push(d),
                RResult::RErr(e) => diag.error(format!(
                    "{}: cannot initialise driver '{}': {e}",
                    node.label,
                    node.plugin.descriptor.name.as_str()
                )),
            }
        }
    }
    if diag.ok() {
        Some(Instances { processors, drivers })
    } else {
        None
    }
}

/// Builds a block's processor from its configuration; the error names the block.
pub fn build_processor(node: &ProcessorNode) -> Result<ProcessorBox, String> {
    let label = node.label();
    let json = serde_json::Value::Object(node.block.map.clone()).to_string();
    let proc = match node.plugin.descriptor.factory {
        PluginFactory::Processor { new, .. } => new(RStr::from_str(&json), plugin_services::host_for(&label)),
        _ => RResult::RErr(PluginError::new("registered as a processor but has no processor constructor")),
    };
    proc.into_result().map_err(|e| format!("{label}: cannot initialise processor '{}': {e}", node.block.processor))
}

/// Builds a block's handler (if it has one) from its configuration; the error names the block.
pub fn build_handler(node: &ProcessorNode) -> Result<Option<HandlerBox>, String> {
    let Some(h) = &node.handler else { return Ok(None) };
    let json = serde_json::Value::Object(node.block.map.clone()).to_string();
    let name = h.descriptor.name.as_str();
    let hlabel = format!("pipeline[{}] ({}/{name})", node.block.index, node.block.processor);
    let built = match h.descriptor.factory {
        PluginFactory::Handler { new } => new(RStr::from_str(&json), plugin_services::host_for(&hlabel)),
        _ => RResult::RErr(PluginError::new("registered as a handler but has no handler constructor")),
    };
    built
        .into_result()
        .map(Some)
        .map_err(|e| format!("{}: key 'handler': cannot initialise handler '{name}': {e}", node.label()))
}

/// What a finished node hands back for the summary.
struct NodeReport {
    counters: Vec<(String, Vec<Counter>)>,
}

/// How a run reports and judges itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Log per-node rates every [`PERF_INTERVAL`] and at exit (`-perflog`).
    pub perflog: bool,
    /// Input a driver skipped or lost (its loss counters) makes the exit status 1 (`-strict`).
    pub strict: bool,
    /// Longest the drain after a stop request may take (`-stoptimeout`); then what is still
    /// queued is reported lost and the process exits 1. None: no bound.
    pub stop_timeout: Option<Duration>,
}

/// Runs the pipeline until every driver ended (input exhausted or stop requested) and
/// every node drained; returns the process exit status (0: everything accepted was processed).
pub fn run(graph: &Graph, instances: Instances, stop: &StopFlag, options: RunOptions) -> i32 {
    run_reloading(graph, instances, stop, options, None, None)
}

/// [`run`], and with `reload` (the options plugin libraries were loaded with) the processors
/// and handlers from libraries are swapped for new builds when their files change; with
/// `endpoint` the nodes' counters are served there and it learns when the drivers run.
pub fn run_reloading(
    graph: &Graph,
    instances: Instances,
    stop: &StopFlag,
    options: RunOptions,
    reload: Option<&sfprocessor_plugin_loader::LoadOptions>,
    endpoint: Option<&MetricsEndpoint>,
) -> i32 {
    run_service(graph, instances, stop, options, reload, endpoint, None)
}

/// How often the host looks whether every driver ended while it waits for SIGHUPs.
const DRIVER_END_POLL: Duration = Duration::from_millis(100);

/// [`run_reloading`], and with `sighup` each (coalesced) SIGHUP rebuilds everything
/// downstream of the drivers from the files (see [`reload_generation`]).
pub fn run_service(
    graph: &Graph,
    instances: Instances,
    stop: &StopFlag,
    options: RunOptions,
    reload: Option<&sfprocessor_plugin_loader::LoadOptions>,
    endpoint: Option<&MetricsEndpoint>,
    mut sighup: Option<ReloadSource<'_>>,
) -> i32 {
    let chans = Channels::new(graph);
    let mut drivers: Vec<RunningDriver> = Vec::new();
    let mut spawn_failed = false;
    for (node, driver) in graph.drivers.iter().zip(instances.drivers) {
        let outputs: Vec<Sender<Batch>> = chans.senders[node.output].clone().into_iter().collect();
        let m = NodeMetrics::new(node.label.clone(), None, false);
        let running = endpoint.map(MetricsEndpoint::driver_running);
        let (control_tx, control_rx) = unbounded::<DriverControl>();
        let shared_node = Arc::new(Mutex::new(node.clone()));
        let worker = DriverWorker {
            node: node.clone(),
            shared_node: shared_node.clone(),
            driver,
            outputs,
            metrics: m.clone(),
            stop: stop.clone(),
            control: control_rx,
            swaps: None,
            _running: running,
        };
        match std::thread::Builder::new().name("driver".into()).spawn(move || worker.run()) {
            Ok(handle) => drivers.push(RunningDriver { node: shared_node, control: control_tx, metrics: m, handle }),
            Err(e) => {
                tracing::error!("{}: cannot start its thread: {e}", node.label);
                spawn_failed = true;
            }
        }
    }
    // Drivers first here, but their batches wait in the bounded channels until the
    // processors below read them.
    let trigger = sighup.as_ref().map(|s| s.trigger.clone());
    let mut gen = Generation::spawn(graph.clone(), instances.processors, chans, reload, trigger.as_ref());
    gen.watch_drivers(&drivers);
    // The drivers opened their inputs when constructed and now read them.
    service_notify::ready();
    let current: Arc<Mutex<Vec<Arc<NodeMetrics>>>> = Arc::new(Mutex::new(Vec::new()));
    let driver_metrics: Vec<Arc<NodeMetrics>> = drivers.iter().map(|d| d.metrics.clone()).collect();
    let publish = |gen: &Generation| {
        let all: Vec<Arc<NodeMetrics>> =
            gen.threads.iter().map(|(m, _)| m.clone()).chain(driver_metrics.iter().cloned()).collect();
        if let Some(e) = endpoint {
            e.set_nodes(&all);
        }
        *current.lock().unwrap_or_else(|e| e.into_inner()) = all.clone();
        all
    };
    let all_metrics = publish(&gen);
    let watchdog = {
        let current = current.clone();
        service_notify::start_watchdog(move || {
            !current.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|m| m.failed.load(Ordering::Relaxed))
        })
    };
    let mut perf = start_perf(options.perflog, all_metrics);
    let _deadline = options.stop_timeout.and_then(|t| stop_deadline(stop.clone(), t, current.clone()));

    // Wait for the drivers to end, rebuilding the pipeline on each SIGHUP meanwhile.
    let mut earlier_trouble = false;
    let mut generation = 1u32;
    while !drivers.iter().all(|d| d.handle.is_finished()) {
        let hangup = match &sighup {
            Some(source) => match source.hangups.recv_timeout(DRIVER_END_POLL) {
                Ok(()) => true,
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => {
                    sighup = None;
                    false
                }
            },
            None => {
                std::thread::sleep(DRIVER_END_POLL);
                false
            }
        };
        let Some(source) = sighup.as_mut().filter(|_| hangup) else { continue };
        if stop.requested() {
            tracing::warn!("received SIGHUP while stopping: not reloading");
            continue;
        }
        let outcome = reload_generation(source, gen, &mut drivers, reload, generation + 1);
        gen = outcome.running;
        if outcome.old_trouble {
            earlier_trouble = true;
        }
        if outcome.applied {
            generation += 1;
            if let Some(p) = perf.take() {
                p.finish();
            }
            perf = start_perf(options.perflog, publish(&gen));
        }
    }

    let mut reports: Vec<(Arc<NodeMetrics>, NodeReport)> = Vec::new();
    let driver_count = drivers.len();
    for d in drivers {
        reports.push(d.join());
    }
    let (gen_reports, gen_failed) = gen.join();
    reports.extend(gen_reports);
    spawn_failed |= gen_failed;
    if let Some(p) = perf {
        p.finish();
    }
    drop(watchdog);
    // The input ended (or a stop was requested): only the summary remains.
    service_notify::stopping();
    let images = sfprocessor_plugin_loader::loaded_image_count();
    if images > 0 {
        tracing::info!("plugin library images mapped: {images}");
    }

    let mut status = if spawn_failed || earlier_trouble { 1 } else { 0 };
    for (m, r) in &reports {
        metrics::log_summary(m, &r.counters);
        if m.had_trouble() {
            status = 1;
        }
    }
    let failed: Vec<&str> =
        reports.iter().filter(|(m, _)| m.failed.load(Ordering::Relaxed)).map(|(m, _)| m.label.as_str()).collect();
    let input_lost = input_losses(&reports[..driver_count.min(reports.len())]);
    if !failed.is_empty() {
        tracing::error!("pipeline finished with failed branches: {}", failed.join(", "));
    } else if status != 0 {
        tracing::error!("pipeline finished, but some records were lost or not delivered (see the warnings above)");
    } else if input_lost.is_empty() {
        tracing::info!("pipeline finished: all records processed");
    } else if options.strict {
        status = 1;
        tracing::error!(
            "pipeline finished, but the input was not read in full ({}); exit status 1 because of -strict",
            input_lost.join(", ")
        );
    } else {
        tracing::warn!(
            "pipeline finished: every record read was processed, but the input was not read in full ({}); see the warnings above (-strict makes this exit 1)",
            input_lost.join(", ")
        );
    }
    status
}

/// How often the stop deadline thread looks whether a stop was requested.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Starts the thread that bounds the drain: once a stop is requested, if the pipeline has
/// not finished (the returned sender dropped) within `timeout`, it logs how many batches are
/// still queued (lost) and exits the process with status 1.
fn stop_deadline(stop: StopFlag, timeout: Duration, nodes: Arc<Mutex<Vec<Arc<NodeMetrics>>>>) -> Option<Sender<()>> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let spawned = std::thread::Builder::new().name("stop-deadline".into()).spawn(move || {
        while !stop.requested() {
            if !matches!(done_rx.recv_timeout(STOP_POLL), Err(RecvTimeoutError::Timeout)) {
                return;
            }
        }
        if !matches!(done_rx.recv_timeout(timeout), Err(RecvTimeoutError::Timeout)) {
            return;
        }
        let nodes = nodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let queued: usize = nodes.iter().filter_map(|n| n.queue_depth()).map(|(depth, _)| depth).sum();
        let read: u64 = nodes.iter().filter(|n| n.queue_depth().is_none()).map(|n| NodeMetrics::get(&n.records_in)).sum();
        // Written directly: the logger may be what is blocked.
        eprintln!(
            "[Error] the pipeline did not drain within {} s of the stop request (-stoptimeout): exiting with status 1; \
             {queued} batches (up to {} records) still queued and any record inside a plugin are dropped; the drivers had read {read} records",
            timeout.as_secs(),
            queued * MAX_DRIVER_BATCH
        );
        std::process::exit(1);
    });
    match spawned {
        Ok(_) => Some(done_tx),
        Err(e) => {
            tracing::warn!("cannot start the stop deadline thread: {e}: the drain after SIGTERM is not bounded");
            None
        }
    }
}

/// One bounded channel per graph channel, before the nodes take their ends.
struct Channels {
    senders: Vec<Option<Sender<Batch>>>,
    receivers: Vec<Option<Receiver<Batch>>>,
}

impl Channels {
    fn new(graph: &Graph) -> Channels {
        let (senders, receivers) = graph
            .channels
            .iter()
            .map(|_| {
                let (tx, rx) = bounded::<Batch>(CHANNEL_CAPACITY);
                (Some(tx), Some(rx))
            })
            .unzip();
        Channels { senders, receivers }
    }
}

/// What the host tells a running driver between two polls.
enum DriverControl {
    /// First, when `replace` is set, hand the live input over to a new instance of that
    /// node (new configuration or build); then send to `outputs` from now on. Dropping the
    /// old senders lets the previous generation's channels close, so it drains and
    /// finishes. Acknowledged once done, with why the replacement did not happen if it did not.
    Retarget { outputs: Vec<Sender<Batch>>, replace: Option<Box<DriverNode>>, ack: Sender<Result<(), String>> },
    /// New builds of the driver's library, from the current generation's watcher.
    Watch(Receiver<Swap>),
}

/// A driver thread, which outlives pipeline generations.
struct RunningDriver {
    /// What the driver runs now (its thread updates it when it replaced its instance).
    node: Arc<Mutex<DriverNode>>,
    control: Sender<DriverControl>,
    metrics: Arc<NodeMetrics>,
    handle: JoinHandle<NodeReport>,
}

impl RunningDriver {
    fn join(self) -> (Arc<NodeMetrics>, NodeReport) {
        match self.handle.join() {
            Ok(r) => (self.metrics, r),
            Err(_) => {
                self.metrics.failed.store(true, Ordering::Relaxed);
                tracing::error!("{}: its thread panicked", self.metrics.label);
                (self.metrics, NodeReport { counters: Vec::new() })
            }
        }
    }
}

fn start_perf(perflog: bool, nodes: Vec<Arc<NodeMetrics>>) -> Option<PerfReporter> {
    if !perflog {
        return None;
    }
    match PerfReporter::start(nodes, PERF_INTERVAL) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("cannot start the performance reporter: {e}");
            None
        }
    }
}

/// The processors of one pipeline generation: everything downstream of the drivers.
struct Generation {
    threads: Vec<(Arc<NodeMetrics>, JoinHandle<NodeReport>)>,
    /// Watches the generation's plugin libraries (hot reload); stopped with it.
    reloader: Option<hot_reload::Reloader>,
    /// Watches its policy engines' action libraries (a change queues a pipeline reload).
    action_watch: Option<ActionWatch>,
    /// Per driver, the new builds of its library found by `reloader`, until handed to the driver.
    driver_swaps: hot_reload::SwapReceivers,
    spawn_failed: bool,
}

impl Generation {
    /// Starts one thread per processor, reading `chans` (the drivers hold their own senders);
    /// with `trigger`, a changed action library queues a pipeline reload there.
    fn spawn(
        graph: Graph,
        processors: Vec<(ProcessorBox, Option<HandlerBox>)>,
        mut chans: Channels,
        reload: Option<&sfprocessor_plugin_loader::LoadOptions>,
        trigger: Option<&Sender<()>>,
    ) -> Generation {
        let action_watch = trigger.and_then(|t| action_watch::start(&graph, t.clone()));
        let (reloader, mut swaps, driver_swaps) = match reload {
            Some(opts) => hot_reload::start(&graph, opts),
            None => (None, Vec::new(), Vec::new()),
        };
        let mut threads = Vec::new();
        let mut spawn_failed = false;
        for (i, (node, (proc, handler))) in graph.processors.iter().zip(processors).enumerate() {
            let swaps = swaps.get_mut(i).and_then(Option::take);
            let Some(rx) = chans.receivers[node.input].take() else {
                tracing::error!("{}: input channel already taken (validation should have refused two readers)", node.label());
                spawn_failed = true;
                continue;
            };
            let outputs: Vec<Sender<Batch>> = node.outputs.iter().filter_map(|&c| chans.senders[c].clone()).collect();
            let m = NodeMetrics::new(node.label(), Some((rx.clone(), CHANNEL_CAPACITY)), node.outputs.is_empty());
            let worker =
                ProcessorWorker { node: node.clone(), proc, handler, input: rx, outputs, metrics: m.clone(), swaps };
            match std::thread::Builder::new().name(format!("node-{}", node.block.index)).spawn(move || worker.run()) {
                Ok(h) => threads.push((m, h)),
                Err(e) => {
                    tracing::error!("{}: cannot start its thread: {e}", node.label());
                    spawn_failed = true;
                }
            }
        }
        // `chans` is dropped here: the host keeps no sender, so a channel closes when its
        // last producer finishes.
        Generation { threads, reloader, action_watch, driver_swaps, spawn_failed }
    }

    /// Hands each driver the receiver of its library's new builds found by this generation's watcher.
    fn watch_drivers(&mut self, drivers: &[RunningDriver]) {
        for (driver, rx) in drivers.iter().zip(self.driver_swaps.drain(..)) {
            if let Some(rx) = rx {
                // A driver that already ended has dropped its control receiver.
                let _ = driver.control.send(DriverControl::Watch(rx));
            }
        }
    }

    /// Waits for every processor to finish (their inputs closed); returns their reports.
    fn join(self) -> (Vec<(Arc<NodeMetrics>, NodeReport)>, bool) {
        let mut reports = Vec::new();
        for (m, h) in self.threads {
            match h.join() {
                Ok(r) => reports.push((m, r)),
                Err(_) => {
                    m.failed.store(true, Ordering::Relaxed);
                    tracing::error!("{}: its thread panicked", m.label);
                    reports.push((m, NodeReport { counters: Vec::new() }));
                }
            }
        }
        drop(self.reloader);
        drop(self.action_watch);
        (reports, self.spawn_failed)
    }
}

/// What a SIGHUP left running.
struct ReloadOutcome {
    running: Generation,
    applied: bool,
    /// The replaced generation lost records or failed (its summary says how).
    old_trouble: bool,
}

/// Rebuilds the pipeline downstream of the drivers. The new graph is validated and its
/// processors constructed beside the running ones; on any error the running generation is
/// kept and the failure counted. Otherwise every driver is pointed at the new channels
/// between two polls, the old generation drains, flushes and finishes (its exporters close
/// their outputs), and only then do the new processors start reading: no record is lost,
/// none is processed twice, and two exporters never write one file at once.
fn reload_generation(
    source: &mut ReloadSource<'_>,
    old: Generation,
    drivers: &mut [RunningDriver],
    reload: Option<&sfprocessor_plugin_loader::LoadOptions>,
    number: u32,
) -> ReloadOutcome {
    service_notify::reloading();
    let started = Instant::now();
    tracing::info!("received SIGHUP: reloading the pipeline file, policies and plugins");
    let running: Vec<DriverNode> =
        drivers.iter().map(|d| d.node.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect();
    let built = (source.rebuild)().and_then(|(graph, instances)| {
        pipeline_reload::driver_changes(&running, &graph.drivers).map(|changes| (graph, instances, changes)).map_err(|e| vec![e])
    });
    let (graph, instances, changes) = match built {
        Ok(b) => b,
        Err(errors) => {
            for e in &errors {
                tracing::error!("reload: {e}");
            }
            pipeline_reload::count_failure();
            tracing::error!(
                "reload refused ({} error{}, listed above): the running pipeline is kept (reload failures so far: {})",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                pipeline_reload::reload_failures()
            );
            service_notify::reloaded();
            return ReloadOutcome { running: old, applied: false, old_trouble: false };
        }
    };
    let chans = Channels::new(&graph);
    let (ack_tx, ack_rx) = unbounded::<Result<(), String>>();
    let mut waiting = 0usize;
    for ((driver, node), changed) in drivers.iter_mut().zip(&graph.drivers).zip(changes) {
        let outputs: Vec<Sender<Batch>> = chans.senders[node.output].clone().into_iter().collect();
        let replace = changed.then(|| Box::new(node.clone()));
        // A driver that already ended has dropped its control receiver.
        if driver.control.send(DriverControl::Retarget { outputs, replace, ack: ack_tx.clone() }).is_ok() {
            waiting += 1;
        }
    }
    drop(ack_tx);
    // A driver blocked on a full channel of the old generation acknowledges once that
    // generation took the batch; one that ends meanwhile drops its acknowledgement sender.
    for _ in 0..waiting {
        match ack_rx.recv() {
            Ok(Ok(())) => {}
            // The rest of the reload still applies: the old generation is already cut off.
            Ok(Err(e)) => tracing::error!("reload: {e}; that driver keeps running as it was"),
            Err(_) => break,
        }
    }
    let retargeted = started.elapsed();
    let (reports, spawn_failed) = old.join();
    let mut old_trouble = spawn_failed;
    tracing::info!("reload: the previous pipeline drained; its summary:");
    for (m, r) in &reports {
        metrics::log_summary(m, &r.counters);
        old_trouble |= m.had_trouble();
    }
    let drained = started.elapsed();
    let mut new = Generation::spawn(graph, instances.processors, chans, reload, Some(&source.trigger));
    new.watch_drivers(drivers);
    pipeline_reload::count_reload();
    tracing::info!(
        "reload applied: pipeline generation {number} running, {} ms after the SIGHUP (build and retarget {} ms, drain {} ms)",
        started.elapsed().as_millis(),
        retargeted.as_millis(),
        drained.saturating_sub(retargeted).as_millis()
    );
    service_notify::reloaded();
    ReloadOutcome { running: new, applied: true, old_trouble }
}

/// The drivers' non-zero loss counters (skipped blocks, undecodable or unread messages,
/// unreadable files), as `label: name=value`.
fn input_losses(driver_reports: &[(Arc<NodeMetrics>, NodeReport)]) -> Vec<String> {
    let mut lost = Vec::new();
    for (m, r) in driver_reports {
        for (owner, counters) in &r.counters {
            for c in counters.iter().filter(|c| c.value > 0 && c.is_loss()) {
                lost.push(format!("{}: {owner}{}={}", m.label, c.name.as_str(), c.value));
            }
        }
    }
    lost
}

/// Sends a batch to every output: shared copies to all but the last, which gets it by move.
fn emit(batch: Batch, outputs: &[Sender<Batch>], metrics: &NodeMetrics) {
    if batch.is_empty() || outputs.is_empty() {
        if !batch.is_empty() {
            NodeMetrics::add(&metrics.records_out, batch.len());
        }
        return;
    }
    let n = batch.len();
    let Some((last, rest)) = outputs.split_last() else { return };
    for tx in rest {
        if tx.send(batch.clone()).is_err() {
            NodeMetrics::add(&metrics.dropped, n);
        }
    }
    if last.send(batch).is_err() {
        NodeMetrics::add(&metrics.dropped, n);
    }
    NodeMetrics::add(&metrics.records_out, n);
}

struct DriverWorker {
    node: DriverNode,
    /// `node`, as the host reads it on SIGHUP.
    shared_node: Arc<Mutex<DriverNode>>,
    driver: DriverBox,
    outputs: Vec<Sender<Batch>>,
    metrics: Arc<NodeMetrics>,
    stop: StopFlag,
    /// Retargets from the host (SIGHUP reload).
    control: Receiver<DriverControl>,
    /// New builds of the driver's library (hot reload).
    swaps: Option<Receiver<Swap>>,
    /// Keeps `/readyz` at 200 while this driver reads (dropped with the worker).
    _running: Option<DriverRunning>,
}

impl DriverWorker {
    fn run(mut self) -> NodeReport {
        let label = self.node.label.clone();
        let mut consecutive_errors = 0u32;
        let mut clean = true;
        let mut stopping_since: Option<Instant> = None;
        let mut published = Instant::now();
        loop {
            match stopping_since {
                None if self.stop.requested() => {
                    tracing::info!("{label}: stop requested: reading what the input already holds, then closing it");
                    if let RResult::RErr(e) = self.driver.stop() {
                        tracing::error!("{label}: error while stopping: {e}");
                        NodeMetrics::add(&self.metrics.errors, 1);
                        break;
                    }
                    stopping_since = Some(Instant::now());
                }
                Some(since) if since.elapsed() >= DRIVER_DRAIN_TIMEOUT => {
                    tracing::warn!(
                        "{label}: still not finished {} s after the stop request: no longer polled",
                        DRIVER_DRAIN_TIMEOUT.as_secs()
                    );
                    break;
                }
                _ => {}
            }
            // Between polls: the only place the instance and the outputs change.
            let controls: Vec<DriverControl> = self.control.try_iter().collect();
            for control in controls {
                match control {
                    DriverControl::Retarget { outputs, replace, ack } => {
                        let outcome = match replace {
                            Some(next) => self.replace(&label, *next, "its configuration changed (SIGHUP)"),
                            None => Replaced::Yes,
                        };
                        self.outputs = outputs;
                        let _ = ack.send(match outcome {
                            Replaced::Yes => Ok(()),
                            Replaced::Kept(why) | Replaced::Lost(why) => Err(format!("{label}: not replaced: {why}")),
                        });
                    }
                    DriverControl::Watch(rx) => self.swaps = Some(rx),
                }
            }
            let swaps: Vec<Swap> = self.swaps.as_ref().map(|rx| rx.try_iter().collect()).unwrap_or_default();
            for swap in swaps {
                let mut next = self.node.clone();
                next.plugin = swap.plugin;
                let why = format!("a new build of its library (sha256 {})", &swap.sha256[..12.min(swap.sha256.len())]);
                if let Replaced::Kept(e) | Replaced::Lost(e) = self.replace(&label, next, &why) {
                    tracing::error!("{label}: new build not swapped in: {e}");
                }
            }
            if self.metrics.failed.load(Ordering::Relaxed) {
                clean = false;
                break;
            }
            let started = Instant::now();
            let polled = self.driver.poll(MAX_DRIVER_BATCH);
            let ended = Instant::now();
            if ended.saturating_duration_since(published) >= PLUGIN_COUNTERS_INTERVAL {
                published = ended;
                // Plugin code: a panic here only leaves the previous copy in place.
                if let Ok(c) = catch_unwind(AssertUnwindSafe(|| self.driver.counters().into_iter().collect())) {
                    self.metrics.publish_plugin_counters(vec![(String::new(), c)]);
                }
            }
            match polled {
                RResult::ROk(DriverPoll::Batch(batch)) => {
                    self.metrics.observe_batch(started, ended);
                    consecutive_errors = 0;
                    NodeMetrics::add(&self.metrics.records_in, batch.len());
                    emit(batch, &self.outputs, &self.metrics);
                }
                RResult::ROk(DriverPoll::Idle) => {}
                RResult::ROk(DriverPoll::End) => break,
                RResult::RErr(e) => {
                    NodeMetrics::add(&self.metrics.errors, 1);
                    let count = NodeMetrics::get(&self.metrics.errors);
                    if e.panicked || count <= LOGGED_ERRORS || count % 1000 == 0 {
                        tracing::error!("{label}: {e} (error #{count})");
                    }
                    if e.panicked {
                        NodeMetrics::add(&self.metrics.panics, 1);
                        self.metrics.failed.store(true, Ordering::Relaxed);
                        clean = false;
                        break;
                    }
                    consecutive_errors += 1;
                    if consecutive_errors >= MAX_CONSECUTIVE_DRIVER_ERRORS {
                        tracing::error!("{label}: {consecutive_errors} consecutive errors: giving this driver up");
                        self.metrics.failed.store(true, Ordering::Relaxed);
                        clean = false;
                        break;
                    }
                }
            }
        }
        let counters = if clean { self.driver.counters().into_iter().collect() } else { Vec::new() };
        let counters = vec![(String::new(), counters)];
        if clean {
            // A failed driver's last published counters stay: better than none.
            self.metrics.publish_plugin_counters(counters.clone());
        }
        // Dropping the senders (with `self`) closes the channel once every producer is done.
        NodeReport { counters }
    }
}

/// What became of a driver replacement.
enum Replaced {
    /// The new instance runs, from where the old one stopped.
    Yes,
    /// The old instance runs on (why not replaced).
    Kept(String),
    /// Neither could resume the handed-over input: the driver failed.
    Lost(String),
}

impl DriverWorker {
    /// Replaces the running instance with one of `next` (another configuration or build)
    /// between two polls: the running instance hands over its live input (descriptors, read
    /// position) and the new one resumes from it, so no record is read twice or skipped. A
    /// driver that cannot hand over keeps running; a new instance that cannot resume makes
    /// the running build resume the same state instead.
    fn replace(&mut self, label: &str, next: DriverNode, why: &str) -> Replaced {
        let origin = next.plugin.origin.to_string();
        let kept = |metrics: &NodeMetrics, msg: String| {
            NodeMetrics::add(&metrics.reload_failures, 1);
            Replaced::Kept(msg)
        };
        if self.stop.requested() {
            // The running instance already drains for the stop; a successor would not know.
            return kept(&self.metrics, "a stop was requested: the running instance finishes the drain".to_string());
        }
        let running_resume = pipeline_reload::driver_ctors(&self.node.plugin).and_then(|(_, r)| r);
        let Some(next_resume) = pipeline_reload::driver_ctors(&next.plugin).and_then(|(_, r)| r) else {
            return kept(&self.metrics, format!("the driver from {origin} cannot resume a running input (no Driver::resume)"));
        };
        let Some(running_resume) = running_resume else {
            return kept(
                &self.metrics,
                format!("the running driver '{}' cannot hand over its input (no Driver::handoff)", self.node.plugin.descriptor.name.as_str()),
            );
        };
        let state = match self.driver.handoff() {
            RResult::ROk(abi_stable::std_types::ROption::RSome(state)) => state,
            RResult::ROk(abi_stable::std_types::ROption::RNone) => {
                return kept(&self.metrics, "the running instance declined to hand over its input now".to_string())
            }
            RResult::RErr(e) if e.panicked => {
                NodeMetrics::add(&self.metrics.panics, 1);
                self.metrics.failed.store(true, Ordering::Relaxed);
                return Replaced::Lost(format!("handing over its input failed: {e}"));
            }
            RResult::RErr(e) => return kept(&self.metrics, format!("handing over its input failed: {e}")),
        };
        let json = serde_json::Value::Object(next.config.clone()).to_string();
        let resumed = next_resume(RStr::from_str(&json), plugin_services::host_for(&next.label), &state);
        let outcome = match resumed {
            RResult::ROk(d) => {
                let old = std::mem::replace(&mut self.driver, d);
                log_replaced(label, &old.counters().into_iter().collect::<Vec<_>>());
                // The old instance lets go of its descriptors only now that the new one holds duplicates.
                drop(old);
                self.node = next;
                NodeMetrics::add(&self.metrics.reloads, 1);
                tracing::info!("{label}: replaced between two polls ({why}): the new instance from {origin} resumed the input where the old one stopped");
                Replaced::Yes
            }
            RResult::RErr(e) => {
                let json = serde_json::Value::Object(self.node.config.clone()).to_string();
                match running_resume(RStr::from_str(&json), plugin_services::host_for(label), &state) {
                    RResult::ROk(d) => {
                        drop(std::mem::replace(&mut self.driver, d));
                        kept(&self.metrics, format!("the new instance from {origin} could not resume the input: {e}; the running build resumed it"))
                    }
                    RResult::RErr(again) => {
                        self.metrics.failed.store(true, Ordering::Relaxed);
                        Replaced::Lost(format!(
                            "the new instance from {origin} could not resume the input ({e}), nor could the running build ({again}): this driver stopped"
                        ))
                    }
                }
            }
        };
        *self.shared_node.lock().unwrap_or_else(|e| e.into_inner()) = self.node.clone();
        outcome
    }
}

struct ProcessorWorker {
    node: ProcessorNode,
    proc: ProcessorBox,
    handler: Option<HandlerBox>,
    input: Receiver<Batch>,
    outputs: Vec<Sender<Batch>>,
    metrics: Arc<NodeMetrics>,
    /// New builds of this node's plugins (hot reload).
    swaps: Option<Receiver<Swap>>,
}

impl ProcessorWorker {
    fn run(mut self) -> NodeReport {
        let _release = metrics::QueueRelease(self.metrics.clone());
        let label = self.node.label();
        let mut failed = false;
        let mut published = Instant::now();
        loop {
            // Between batches: the only place an instance may be replaced.
            let pending: Vec<Swap> = self.swaps.as_ref().map(|rx| rx.try_iter().collect()).unwrap_or_default();
            for swap in pending {
                if !failed {
                    failed = self.swap(&label, swap);
                }
            }
            match self.input.recv_timeout(IDLE_FLUSH) {
                Ok(batch) => {
                    let n = batch.len();
                    NodeMetrics::add(&self.metrics.records_in, n);
                    if failed {
                        NodeMetrics::add(&self.metrics.dropped, n);
                        continue;
                    }
                    let started = Instant::now();
                    let result = catch_unwind(AssertUnwindSafe(|| self.step(batch)));
                    let ended = Instant::now();
                    self.metrics.observe_batch(started, ended);
                    failed = self.settle(&label, result, n) && !self.restart(&label);
                    if !failed && ended.saturating_duration_since(published) >= PLUGIN_COUNTERS_INTERVAL {
                        published = ended;
                        self.publish_plugin_counters();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !failed {
                        let result = catch_unwind(AssertUnwindSafe(|| self.flush_chain()));
                        failed = self.settle(&label, result, 0) && !self.restart(&label);
                    }
                    if !failed {
                        published = Instant::now();
                        self.publish_plugin_counters();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if failed && !self.outputs.is_empty() {
                // Downstream nodes finish now instead of waiting for our input to end.
                self.outputs.clear();
            }
        }
        if failed {
            self.metrics.failed.store(true, Ordering::Relaxed);
            return NodeReport { counters: self.restart_counter() };
        }
        let result = catch_unwind(AssertUnwindSafe(|| self.flush_chain()));
        if self.settle(&label, result, 0) {
            self.metrics.failed.store(true, Ordering::Relaxed);
            return NodeReport { counters: Vec::new() };
        }
        if let RResult::RErr(e) = self.proc.finish() {
            tracing::error!("{label}: finishing failed: {e}");
            self.metrics.finish_failed.store(true, Ordering::Relaxed);
        }
        // Closing our outputs lets downstream nodes finish.
        self.outputs.clear();
        let counters = self.plugin_counters();
        self.metrics.publish_plugin_counters(counters.clone());
        NodeReport { counters }
    }

    /// The processor's and handler's counters, and the host's restart counter.
    fn plugin_counters(&self) -> PluginCounters {
        let mut counters = vec![(String::new(), self.proc.counters().into_iter().collect())];
        if let Some(h) = &self.handler {
            counters.push((format!("{}.", h_name(&self.node)), h.counters().into_iter().collect()));
        }
        counters.extend(self.restart_counter());
        counters
    }

    /// Copies the current counters for the metrics endpoint. Plugin code, so a panic
    /// here only leaves the previous copy in place.
    fn publish_plugin_counters(&self) {
        if let Ok(counters) = catch_unwind(AssertUnwindSafe(|| self.plugin_counters())) {
            self.metrics.publish_plugin_counters(counters);
        }
    }

    /// Replaces the processor or handler with an instance of a new build (same
    /// configuration): the old instance flushes and finishes first, so every record is
    /// processed exactly once. A new instance that cannot be built leaves the old one running.
    /// Returns true when the branch failed while flushing the old instance.
    fn swap(&mut self, label: &str, swap: Swap) -> bool {
        let mut node = self.node.clone();
        match swap.kind {
            Kind::Handler => node.handler = Some(swap.plugin.clone()),
            _ => node.plugin = swap.plugin.clone(),
        }
        let path = match &swap.plugin.origin {
            crate::registry::Origin::Library(p) => p.display().to_string(),
            other => other.to_string(),
        };
        let short = &swap.sha256[..12.min(swap.sha256.len())];
        match swap.kind {
            Kind::Handler => {
                let new = match build_handler(&node) {
                    Ok(Some(h)) => h,
                    Ok(None) => return false,
                    Err(e) => {
                        NodeMetrics::add(&self.metrics.reload_failures, 1);
                        tracing::error!("{label}: new build of {path} not swapped in: {e}; the running instance is kept");
                        return false;
                    }
                };
                let result = catch_unwind(AssertUnwindSafe(|| self.flush_chain()));
                if self.settle(label, result, 0) {
                    return true;
                }
                if let Some(old) = self.handler.replace(new) {
                    log_replaced(label, &old.counters().into_iter().collect::<Vec<_>>());
                }
            }
            _ => {
                let new = match build_processor(&node) {
                    Ok(p) => p,
                    Err(e) => {
                        NodeMetrics::add(&self.metrics.reload_failures, 1);
                        tracing::error!("{label}: new build of {path} not swapped in: {e}; the running instance is kept");
                        return false;
                    }
                };
                let result = catch_unwind(AssertUnwindSafe(|| self.flush_chain()));
                if self.settle(label, result, 0) {
                    return true;
                }
                if let RResult::RErr(e) = self.proc.finish() {
                    tracing::error!("{label}: finishing the replaced instance failed: {e}");
                    self.metrics.finish_failed.store(true, Ordering::Relaxed);
                }
                let old = std::mem::replace(&mut self.proc, new);
                log_replaced(label, &old.counters().into_iter().collect::<Vec<_>>());
            }
        }
        self.node = node;
        NodeMetrics::add(&self.metrics.reloads, 1);
        tracing::info!("{label}: swapped in the new build of {path} (sha256 {short}) at a batch boundary");
        false
    }

    /// The host's `restarts` counter, when the block may restart.
    fn restart_counter(&self) -> Vec<(String, Vec<Counter>)> {
        if self.node.on_error == OnError::Restart {
            vec![("host.".to_string(), vec![Counter::new("restarts", NodeMetrics::get(&self.metrics.restarts))])]
        } else {
            Vec::new()
        }
    }

    /// After a panic under `on.error: restart`: replaces the processor (and handler) with
    /// new instances of the same configuration. True when the branch may go on.
    fn restart(&mut self, label: &str) -> bool {
        if self.node.on_error != OnError::Restart {
            return false;
        }
        let restarts = NodeMetrics::get(&self.metrics.restarts);
        if restarts >= u64::from(MAX_RESTARTS) {
            tracing::error!("{label}: on.error is 'restart', but it was restarted {MAX_RESTARTS} times already: this branch stays stopped");
            return false;
        }
        let built = build_processor(&self.node).and_then(|p| build_handler(&self.node).map(|h| (p, h)));
        match built {
            Ok((proc, handler)) => {
                NodeMetrics::add(&self.metrics.restarts, 1);
                // The panicked instances may hold broken state: they never run again, and
                // are not dropped either (their destructor is plugin code in the same state).
                // Bounded by MAX_RESTARTS.
                std::mem::forget(std::mem::replace(&mut self.proc, proc));
                if let Some(old) = std::mem::replace(&mut self.handler, handler) {
                    std::mem::forget(old);
                }
                self.metrics.failed.store(false, Ordering::Relaxed);
                tracing::warn!(
                    "{label}: restarted with the same configuration (restart {} of {MAX_RESTARTS}); going on with the next batch",
                    restarts + 1
                );
                true
            }
            Err(e) => {
                tracing::error!("{label}: restart failed: {e}; this branch stays stopped");
                false
            }
        }
    }

    /// Logs an error of a step; returns true when the branch must stop (a panic).
    fn settle(
        &self,
        label: &str,
        result: std::thread::Result<Result<(), PluginError>>,
        records: usize,
    ) -> bool {
        let err = match result {
            Ok(Ok(())) => return false,
            Ok(Err(e)) => e,
            Err(_) => PluginError::panic("the host panicked while running this node"),
        };
        NodeMetrics::add(&self.metrics.errors, 1);
        NodeMetrics::add(&self.metrics.dropped, records);
        let count = NodeMetrics::get(&self.metrics.errors);
        if err.panicked {
            NodeMetrics::add(&self.metrics.panics, 1);
            let restarts = NodeMetrics::get(&self.metrics.restarts);
            if self.node.on_error == OnError::Restart && restarts < u64::from(MAX_RESTARTS) {
                tracing::error!("{label}: {err} ({records} records lost); on.error is 'restart'");
            } else {
                tracing::error!("{label}: {err}; this branch is stopped, its input is discarded from now on");
            }
            self.metrics.failed.store(true, Ordering::Relaxed);
            true
        } else {
            // A plugin failing on every batch must not flood the log: the first few errors,
            // then every 1000th; the exit summary has the totals.
            if count <= LOGGED_ERRORS || count % 1000 == 0 {
                let more = if count == LOGGED_ERRORS { " (further errors are logged every 1000th)" } else { "" };
                tracing::error!("{label}: {err} ({records} records lost; error #{count}){more}");
            }
            false
        }
    }

    fn step(&mut self, batch: Batch) -> Result<(), PluginError> {
        let out = self.proc.process(batch).into_result()?.into_option();
        let out = self.through_handler(out)?;
        if let Some(b) = out {
            emit(b, &self.outputs, &self.metrics);
        }
        Ok(())
    }

    fn flush_chain(&mut self) -> Result<(), PluginError> {
        let out = self.proc.flush().into_result()?.into_option();
        if let Some(b) = self.through_handler(out)? {
            emit(b, &self.outputs, &self.metrics);
        }
        if let Some(h) = &mut self.handler {
            if let Some(records) = h.flush().into_result()?.into_option() {
                emit(Batch::Flat(RArc::new(records)), &self.outputs, &self.metrics);
            }
        }
        Ok(())
    }

    fn through_handler(&mut self, out: Option<Batch>) -> Result<Option<Batch>, PluginError> {
        let Some(h) = &mut self.handler else { return Ok(out) };
        let Some(batch) = out else { return Ok(None) };
        let records: RVec<FlatRecord> = batch.into_flat_records().ok_or_else(|| {
            PluginError::new("the processor produced SysFlow records, but its handler takes flat records")
        })?;
        Ok(h.handle(records).into_result()?.into_option().map(|r| Batch::Flat(RArc::new(r))))
    }
}

/// Logs the counters of an instance that a new build replaced (the summary has the new one's).
fn log_replaced(label: &str, counters: &[Counter]) {
    let list: Vec<String> = counters.iter().map(|c| format!("{}={}", c.name.as_str(), c.value)).collect();
    if !list.is_empty() {
        tracing::info!("{label}: the replaced instance's counters: {}", list.join(", "));
    }
}

fn h_name(node: &ProcessorNode) -> String {
    node.handler.as_ref().map(|h| h.descriptor.name.as_str().to_string()).unwrap_or_default()
}
