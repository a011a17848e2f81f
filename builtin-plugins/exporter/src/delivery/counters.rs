//! The delivery counters of one exporter, shared between the pipeline thread (which
//! reports them to the host) and the sender threads (which update them).

use std::sync::atomic::{AtomicU64, Ordering};

use sysflow_plugin_api::Counter;

/// Per-exporter delivery counters; each record ends in exactly one of `sent`,
/// `failed` or `dropped` (or is still queued / in flight).
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Records the receiver acknowledged.
    pub sent: AtomicU64,
    /// Payload bytes of the acknowledged records.
    pub bytes_sent: AtomicU64,
    /// Record deliveries attempted again after a retryable failure.
    pub retried: AtomicU64,
    /// Records given up: rejected as malformed, or still undelivered when the stop timeout ran out.
    pub failed: AtomicU64,
    /// Records refused because the queue was full (`delivery.mode: drop`).
    pub dropped: AtomicU64,
    /// Records waiting in the queue.
    pub queued: AtomicU64,
    /// Connections that broke (unacknowledged protocols: TCP/TLS syslog).
    pub connections_lost: AtomicU64,
    /// Records written again after a reconnect (replay window).
    pub replayed: AtomicU64,
}

impl DeliveryCounters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters as the host publishes them (`-perflog`, `/metrics`, exit summary).
    pub fn to_counters(&self) -> Vec<Counter> {
        vec![
            Counter::new("records_exported", Self::get(&self.sent)),
            Counter::new("bytes_written", Self::get(&self.bytes_sent)),
            Counter::new("delivery_retried", Self::get(&self.retried)),
            Counter::loss("delivery_failed", Self::get(&self.failed)),
            Counter::loss("records_dropped", Self::get(&self.dropped)),
            Counter::new("queue_depth", Self::get(&self.queued)),
            Counter::loss("connections_lost", Self::get(&self.connections_lost)),
            Counter::new("records_replayed", Self::get(&self.replayed)),
        ]
    }
}
