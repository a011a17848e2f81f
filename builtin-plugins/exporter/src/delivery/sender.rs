//! The sender threads: take batches from the queue, send them through the [`Sink`],
//! settle each item (delivered, retried after a backoff, or failed), and log outages
//! and rejections without flooding the log.

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, Mutex},
    time::Instant,
};

use sysflow_plugin_api::Host;

use super::{
    backoff::Backoff, BoundedQueue, DeliveryCounters, DeliverySettings, Item, Outcome, SendError, Sink, LOG_INTERVAL,
};

/// What the pipeline thread and the senders of one exporter share.
pub(super) struct Shared {
    pub queue: BoundedQueue,
    pub counters: DeliveryCounters,
    /// Names the destination in messages (`es http://127.0.0.1:9200/sysflow`).
    pub receiver: String,
    host: Host,
    max_items: usize,
    max_bytes: usize,
    /// Items a sender still held when the queue was aborted.
    handed_back: Mutex<Vec<Item>>,
    /// Rejection causes already logged (each is logged once, with its first record's id).
    logged_causes: Mutex<HashSet<String>>,
    /// When a failing send was last logged (an outage logs once per [`LOG_INTERVAL`]).
    last_failure_log: Mutex<Option<Instant>>,
}

impl Shared {
    pub fn new(settings: &DeliverySettings, receiver: String, host: Host) -> Shared {
        Shared {
            queue: BoundedQueue::new(settings.queue_capacity),
            counters: DeliveryCounters::default(),
            receiver,
            host,
            max_items: settings.max_batch_items,
            max_bytes: settings.max_batch_bytes,
            handed_back: Mutex::new(Vec::new()),
            logged_causes: Mutex::new(HashSet::new()),
            last_failure_log: Mutex::new(None),
        }
    }

    /// Copies the queue length into the `queue_depth` counter.
    pub fn sync_queue_depth(&self) {
        self.counters.queued.store(self.queue.len() as u64, Ordering::Relaxed);
    }

    /// The items senders held when the queue was aborted.
    pub fn take_handed_back(&self) -> Vec<Item> {
        std::mem::take(&mut *self.handed_back.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn log_rejection(&self, cause: &str, item: &Item) {
        // "status 400 mapper_parsing_exception: <reason naming the document>": one line per
        // kind of rejection, not per document.
        let kind = cause.split(": ").next().unwrap_or(cause);
        let first = self.logged_causes.lock().unwrap_or_else(|e| e.into_inner()).insert(kind.to_string());
        if first {
            let id = item.id.as_deref().unwrap_or("(no id)");
            self.host.error(&format!(
                "{}: record rejected, not retried: {cause} (first record with this cause: id {id}; later ones are counted in delivery_failed)",
                self.receiver
            ));
        }
    }

    fn log_failure(&self, records: usize, reason: &str, attempt: u32) {
        let mut last = self.last_failure_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
            *last = Some(Instant::now());
            self.host.warn(&format!(
                "{}: {records} records not delivered yet (attempt {attempt}), retrying with backoff: {reason}",
                self.receiver
            ));
        }
    }
}

/// Sends batches until the queue is closed and empty, or aborted.
pub(super) fn run(shared: &Shared, mut sink: Box<dyn Sink>) {
    let mut backoff = Backoff::default();
    while let Some(mut pending) = shared.queue.pop_batch(shared.max_items, shared.max_bytes) {
        shared.sync_queue_depth();
        let mut attempt = 1u32;
        loop {
            let result = sink.send(&pending);
            let stats = sink.take_stats();
            DeliveryCounters::add(&shared.counters.connections_lost, stats.connections_lost);
            DeliveryCounters::add(&shared.counters.replayed, stats.replayed);
            let reason = match result {
                Ok(outcomes) => {
                    let (retry, reason) = settle(shared, pending, outcomes);
                    pending = retry;
                    reason
                }
                Err(SendError { message, retryable: false }) => {
                    for item in &pending {
                        shared.log_rejection(&message, item);
                    }
                    DeliveryCounters::add(&shared.counters.failed, pending.len() as u64);
                    shared.queue.settle(pending.len());
                    pending.clear();
                    String::new()
                }
                Err(SendError { message, retryable: true }) => message,
            };
            if pending.is_empty() {
                if attempt > 1 {
                    shared.host.info(&format!("{}: delivering again after {attempt} attempts", shared.receiver));
                }
                backoff.reset();
                break;
            }
            shared.log_failure(pending.len(), &reason, attempt);
            if !shared.queue.sleep_unless_aborted(backoff.next_delay()) {
                let n = pending.len();
                shared.handed_back.lock().unwrap_or_else(|e| e.into_inner()).append(&mut pending);
                shared.queue.settle(n);
                return;
            }
            DeliveryCounters::add(&shared.counters.retried, pending.len() as u64);
            attempt = attempt.saturating_add(1);
        }
    }
}

/// Counts each item's outcome; returns the items to retry and the first retry reason.
fn settle(shared: &Shared, items: Vec<Item>, outcomes: Vec<Outcome>) -> (Vec<Item>, String) {
    let total = items.len();
    let mut retry = Vec::new();
    let mut reason = String::new();
    let mut outcomes = outcomes.into_iter();
    for item in items {
        // A response with fewer results than items (a broken receiver) retries the rest.
        match outcomes.next().unwrap_or_else(|| Outcome::Retry("no result for this record in the response".into())) {
            Outcome::Delivered => {
                DeliveryCounters::add(&shared.counters.sent, 1);
                DeliveryCounters::add(&shared.counters.bytes_sent, item.body.len() as u64);
            }
            Outcome::Rejected(cause) => {
                shared.log_rejection(&cause, &item);
                DeliveryCounters::add(&shared.counters.failed, 1);
            }
            Outcome::Retry(why) => {
                if reason.is_empty() {
                    reason = why;
                }
                retry.push(item);
            }
        }
    }
    shared.queue.settle(total - retry.len());
    (retry, reason)
}
