//! Per-node counters the host keeps (records in/out, errors, drops), the `-perflog`
//! reporter, and the exit summary.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender};
use sysflow_plugin_api::{Batch, Counter};

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

/// Whether a plugin counter counts lost records or errors (worth a warning when non-zero).
pub fn is_loss_counter(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["drop", "error", "fail", "corrupt", "discard", "skip", "lost", "invalid", "truncat", "unread"].iter().any(|w| n.contains(w))
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
    for (owner, counters) in plugin_counters {
        for c in counters.iter().filter(|c| c.value > 0 && is_loss_counter(c.name.as_str())) {
            if c.name.as_str().to_ascii_lowercase().contains("drop") {
                tracing::warn!("{}: dropped {} records: {owner}{}", node.label, c.value, c.name.as_str());
            } else {
                tracing::warn!("{}: {} {owner}{}", node.label, c.value, c.name.as_str());
            }
        }
    }
}
