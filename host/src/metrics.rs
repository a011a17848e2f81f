//! Per-node counters the host keeps (records in/out, errors, drops, batch latency,
//! restarts, reloads, the plugins' last reported counters), the `-perflog` reporter, and
//! the exit summary. The `-metrics` endpoint reads the same counters.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender};
use prometheus::{Histogram, HistogramOpts};
use sysflow_plugin_api::{Batch, Counter};

/// Upper bounds (seconds) of the batch latency histogram: 10 µs × 4ⁿ, up to about 2.6 s.
pub const BATCH_SECONDS_BUCKETS: [f64; 10] =
    [0.000_01, 0.000_04, 0.000_16, 0.000_64, 0.002_56, 0.010_24, 0.040_96, 0.163_84, 0.655_36, 2.621_44];

/// How often a node copies its plugins' counters for the metrics endpoint (checked once
/// per batch and when idle; the exit summary reads them afresh).
pub const PLUGIN_COUNTERS_INTERVAL: Duration = Duration::from_secs(1);

/// A plugin's counters as last published: (prefix naming the owner, e.g. `flattener.`, counters).
pub type PluginCounters = Vec<(String, Vec<Counter>)>;

/// Counters of one node, shared between its thread and the reporters.
pub struct NodeMetrics {
    /// Node label (`pipeline[1] (policyengine)`, `driver (file)`).
    pub label: String,
    /// Records received (processors) or read (drivers).
    pub records_in: AtomicU64,
    /// Records emitted (each record counted once however many outputs it goes to).
    pub records_out: AtomicU64,
    /// The node has no output channel (an exporter): "out" means nothing for it.
    pub sink: bool,
    /// Errors returned by the plugin.
    pub errors: AtomicU64,
    /// Records the host discarded (batch lost to an error, or input of a failed branch).
    pub dropped: AtomicU64,
    /// The plugin panicked (or failed for good); its branch was stopped.
    pub failed: AtomicBool,
    /// The plugin's `finish` reported an error (e.g. undelivered records).
    pub finish_failed: AtomicBool,
    /// Plugin panics caught by the host.
    pub panics: AtomicU64,
    /// Instances rebuilt after a panic (`on.error: restart`).
    pub restarts: AtomicU64,
    /// New builds of the node's plugin libraries swapped in (hot reload).
    pub reloads: AtomicU64,
    /// New builds that could not be swapped in (the running instance was kept).
    pub reload_failures: AtomicU64,
    /// Time to handle one batch: a processor's `process` plus its handler and sending
    /// downstream (so waits on a full queue count), a driver's `poll` that returned records.
    pub batch_seconds: Histogram,
    /// The plugins' counters as last published by the node's thread.
    plugin_counters: Mutex<PluginCounters>,
    /// The node's input queue, for depth reports. Released when the node's thread ends
    /// (even by unwinding), so this copy never keeps a channel open after its reader is gone.
    queue: Mutex<Option<(Receiver<Batch>, usize)>>,
}

impl NodeMetrics {
    /// Counters for a node; `queue` is its input channel and that channel's capacity.
    pub fn new(label: String, queue: Option<(Receiver<Batch>, usize)>, sink: bool) -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics {
            label,
            sink,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            finish_failed: AtomicBool::new(false),
            panics: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            batch_seconds: batch_histogram(),
            plugin_counters: Mutex::new(Vec::new()),
            queue: Mutex::new(queue),
        })
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Batches waiting in the input queue, and its capacity.
    pub fn queue_depth(&self) -> Option<(usize, usize)> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.as_ref().map(|(rx, cap)| (rx.len(), *cap))
    }

    /// Records the time one batch took (lock-free: the histogram's buckets are atomics).
    pub fn observe_batch(&self, started: Instant, ended: Instant) {
        self.batch_seconds.observe(ended.saturating_duration_since(started).as_secs_f64());
    }

    /// Replaces the published copy of the plugins' counters.
    pub fn publish_plugin_counters(&self, counters: PluginCounters) {
        *self.plugin_counters.lock().unwrap_or_else(|e| e.into_inner()) = counters;
    }

    /// The plugins' counters as last published.
    pub fn plugin_counters(&self) -> PluginCounters {
        self.plugin_counters.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops the depth-report copy of the input queue.
    pub fn release_queue(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// True when anything went wrong in this node.
    pub fn had_trouble(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
            || self.finish_failed.load(Ordering::Relaxed)
            || Self::get(&self.errors) > 0
            || Self::get(&self.dropped) > 0
    }
}

/// An empty batch latency histogram; the endpoint adds the name and the `node` label when it
/// is scraped.
fn batch_histogram() -> Histogram {
    let opts = HistogramOpts::new("batch_seconds", "time per batch").buckets(BATCH_SECONDS_BUCKETS.to_vec());
    // Fails only for buckets that are not increasing or a bad name: both constants here,
    // checked by the test below, so no input can reach this.
    Histogram::with_opts(opts).expect("constant histogram options are valid")
}

/// Releases a node's queue copy when dropped, including while its thread unwinds.
pub struct QueueRelease(pub Arc<NodeMetrics>);

impl Drop for QueueRelease {
    fn drop(&mut self) {
        self.0.release_queue();
    }
}

/// Logs per-node rates and queue depths every `interval` until stopped, then once more.
pub struct PerfReporter {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl PerfReporter {
    /// Starts the reporter thread.
    pub fn start(nodes: Vec<Arc<NodeMetrics>>, interval: Duration) -> std::io::Result<PerfReporter> {
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new().name("perflog".into()).spawn(move || {
            let mut last: Vec<(u64, u64)> = vec![(0, 0); nodes.len()];
            let mut last_at = Instant::now();
            loop {
                let done = !matches!(stop_rx.recv_timeout(interval), Err(crossbeam_channel::RecvTimeoutError::Timeout));
                let elapsed = last_at.elapsed().as_secs_f64().max(1e-3);
                last_at = Instant::now();
                for (node, prev) in nodes.iter().zip(last.iter_mut()) {
                    let rin = NodeMetrics::get(&node.records_in);
                    let rout = NodeMetrics::get(&node.records_out);
                    let queue = match node.queue_depth() {
                        Some((d, cap)) => format!(", queue {d}/{cap} batches"),
                        None => String::new(),
                    };
                    let out = if node.sink {
                        String::new()
                    } else {
                        format!(", out {rout} ({:.0}/s)", (rout - prev.1) as f64 / elapsed)
                    };
                    tracing::info!(
                        target: "perf",
                        "{}: in {rin} ({:.0}/s){out}{queue}",
                        node.label,
                        (rin - prev.0) as f64 / elapsed,
                    );
                    *prev = (rin, rout);
                }
                if done {
                    break;
                }
            }
        })?;
        Ok(PerfReporter { stop, thread })
    }

    /// Stops the reporter after a final report.
    pub fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Logs the exit summary of one node: host counters, plugin counters, and warnings for losses.
pub fn log_summary(node: &NodeMetrics, plugin_counters: &[(String, Vec<Counter>)]) {
    let mut line = format!("{}: records in {}", node.label, NodeMetrics::get(&node.records_in));
    if !node.sink {
        line.push_str(&format!(", out {}", NodeMetrics::get(&node.records_out)));
    }
    for (owner, counters) in plugin_counters {
        for c in counters {
            line.push_str(&format!(", {owner}{}={}", c.name.as_str(), c.value));
        }
    }
    tracing::info!("{line}");
    let errors = NodeMetrics::get(&node.errors);
    if errors > 0 {
        tracing::warn!("{}: {errors} errors returned by the plugin", node.label);
    }
    let dropped = NodeMetrics::get(&node.dropped);
    if dropped > 0 {
        let why = if node.failed.load(Ordering::Relaxed) {
            "plugin errors and the branch's failure"
        } else {
            "plugin errors"
        };
        tracing::warn!("{}: dropped {dropped} records: {why}", node.label);
    }
    for warning in loss_warnings(&node.label, plugin_counters) {
        tracing::warn!("{warning}");
    }
}

/// The exit warnings for a node's non-zero loss counters ([`Counter::is_loss`]); counters of
/// work done are never warned about, whatever their names.
pub fn loss_warnings(label: &str, plugin_counters: &[(String, Vec<Counter>)]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (owner, counters) in plugin_counters {
        for c in counters.iter().filter(|c| c.value > 0 && c.is_loss()) {
            // The name only picks the wording.
            if c.name.as_str().to_ascii_lowercase().contains("drop") {
                warnings.push(format!("{label}: dropped {} records: {owner}{}", c.value, c.name.as_str()));
            } else {
                warnings.push(format!("{label}: {} {owner}{}", c.value, c.name.as_str()));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_loss_counters_are_warned_about() {
        let counters = vec![(
            "reader.".to_string(),
            vec![
                Counter::new("errors_seen_upstream", 3),
                Counter::new("records_dropped_by_design", 4),
                Counter::loss("gone", 2),
                Counter::loss("records_dropped", 5),
                Counter::loss("failed_but_zero", 0),
            ],
        )];
        assert_eq!(
            loss_warnings("pipeline[1] (x)", &counters),
            vec!["pipeline[1] (x): 2 reader.gone".to_string(), "pipeline[1] (x): dropped 5 records: reader.records_dropped".to_string()]
        );
    }

    #[test]
    fn batch_histogram_counts_each_batch_once() {
        let m = NodeMetrics::new("n".into(), None, false);
        let t = Instant::now();
        m.observe_batch(t, t + Duration::from_millis(3));
        m.observe_batch(t, t);
        assert_eq!(m.batch_seconds.get_sample_count(), 2);
        assert!((m.batch_seconds.get_sample_sum() - 0.003).abs() < 1e-9);
    }
}
