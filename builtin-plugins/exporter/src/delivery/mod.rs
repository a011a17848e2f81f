//! One delivery layer for every network exporter (Elasticsearch, HTTP; Kafka can plug in):
//! a bounded queue per exporter drained by sender threads, `block` or `drop` when full,
//! retries with exponential backoff and jitter, a bounded flush at stop that names what
//! was not delivered, and counters (sent, retried, failed, dropped, queue depth).
//!
//! A transport plugs in by implementing [`Sink`]: it sends a batch of [`Item`]s and
//! reports one [`Outcome`] per item. Everything else (queueing, retry timing, counting,
//! logging, stop) lives here.

pub mod backoff;
pub mod counters;
pub mod queue;
mod sender;
pub mod settings;

use std::{
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use sysflow_plugin_api::{Counter, Host};

pub use counters::DeliveryCounters;
pub use queue::{BoundedQueue, Pushed};
pub use settings::{DeliveryMode, DeliverySettings};

/// One encoded record on its way to a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The receiver-side identity (Elasticsearch document id), if the transport uses one;
    /// also names the record in "not delivered" messages.
    pub id: Option<String>,
    /// The encoded record (one JSON document, no newline).
    pub body: Vec<u8>,
}

/// What became of one item of a [`Sink::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver has it (including "already have it": a retried create of an existing id).
    Delivered,
    /// A transient failure (overload, 5xx): sent again after a backoff.
    Retry(String),
    /// The receiver refuses it for good (malformed, mapping conflict): counted as failed,
    /// logged once per cause, never retried.
    Rejected(String),
}

/// A request-level failure: nothing of the batch is known to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// What went wrong, naming the receiver.
    pub message: String,
    /// False when retrying cannot help (e.g. 401 Unauthorized): the batch is failed.
    pub retryable: bool,
}

/// What a connection-oriented sink without acknowledgements (TCP syslog) reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Connections that broke (what they carried last may not have arrived).
    pub connections_lost: u64,
    /// Records written again on a new connection (the replay window).
    pub replayed: u64,
}

/// A receiver that takes batches of items (one instance per sender thread).
pub trait Sink: Send {
    /// Sends `items`; `Ok` holds one outcome per item, in order.
    fn send(&mut self, items: &[Item]) -> Result<Vec<Outcome>, SendError>;

    /// The connection losses and replays since the last call (sinks with acknowledged
    /// delivery have none).
    fn take_stats(&mut self) -> SinkStats {
        SinkStats::default()
    }
}

/// How many log lines about failing sends an outage produces at most per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How many undelivered record ids the stop message lists.
const LISTED_UNDELIVERED: usize = 5;

/// The queue and sender threads of one exporter.
pub struct Delivery {
    shared: Arc<sender::Shared>,
    workers: Vec<JoinHandle<()>>,
    settings: DeliverySettings,
    host: Host,
    /// Drops since the last drop summary, and when it was logged.
    drops_unlogged: u64,
    last_drop_log: Option<Instant>,
    /// Records not queued because the stop came while the queue was full (block mode), and
    /// the first of their ids.
    refused_at_stop: u64,
    refused_at_stop_ids: Vec<String>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("settings", &self.settings).field("workers", &self.workers.len()).finish()
    }
}

impl Delivery {
    /// Starts one sender thread per sink, `receiver` naming the destination in messages.
    pub fn start(
        sinks: Vec<Box<dyn Sink>>,
        settings: DeliverySettings,
        receiver: String,
        host: Host,
    ) -> Result<Delivery, String> {
        let shared = Arc::new(sender::Shared::new(&settings, receiver, host));
        let mut workers = Vec::new();
        for (n, sink) in sinks.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("{}-sender-{n}", host.instance()))
                .spawn(move || sender::run(&shared, sink))
                .map_err(|e| format!("cannot start a sender thread: {e}"))?;
            workers.push(handle);
        }
        Ok(Delivery {
            shared,
            workers,
            settings,
            host,
            drops_unlogged: 0,
            last_drop_log: None,
            refused_at_stop: 0,
            refused_at_stop_ids: Vec::new(),
        })
    }

    /// Queues one record: waits for room in `block` mode, counts a drop in `drop` mode.
    /// Once the operator asked to stop ([`Host::stop_requested`]), a full queue no longer
    /// waits: the record counts as failed (undelivered at stop) and is named by [`Delivery::finish`].
    pub fn push(&mut self, item: Item) {
        let wait = self.settings.mode == DeliveryMode::Block;
        let host = self.host;
        match self.shared.queue.push_unless(item, wait, &|| host.stop_requested()) {
            Pushed::Queued => {}
            Pushed::Refused(item) if wait => {
                DeliveryCounters::add(&self.shared.counters.failed, 1);
                self.refused_at_stop += 1;
                if self.refused_at_stop_ids.len() < LISTED_UNDELIVERED {
                    self.refused_at_stop_ids.extend(item.id);
                }
            }
            Pushed::Refused(_) => {
                DeliveryCounters::add(&self.shared.counters.dropped, 1);
                self.drops_unlogged += 1;
                self.log_drops(false);
            }
        }
        self.shared.sync_queue_depth();
    }

    /// Logs the drops since the last summary, at most once per [`LOG_INTERVAL`] unless `now`.
    fn log_drops(&mut self, now: bool) {
        if self.drops_unlogged == 0 {
            return;
        }
        let due = self.last_drop_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL);
        if now || due {
            self.host.warn(&format!(
                "{}: queue full ({} records): dropped {} records since the last report ({} in all; delivery.mode is drop)",
                self.shared.receiver,
                self.settings.queue_capacity,
                self.drops_unlogged,
                DeliveryCounters::get(&self.shared.counters.dropped)
            ));
            self.drops_unlogged = 0;
            self.last_drop_log = Some(Instant::now());
        }
    }

    /// The delivery counters.
    pub fn counters(&self) -> Vec<Counter> {
        self.shared.sync_queue_depth();
        self.shared.counters.to_counters()
    }

    /// The shared counters (for tests and the exit summary).
    pub fn raw_counters(&self) -> &DeliveryCounters {
        &self.shared.counters
    }

    /// Waits until everything queued is settled, giving up after a whole stop timeout
    /// without progress: a slow receiver still gets every record, a dead one delays
    /// the stop by one timeout. True when drained.
    fn wait_while_progressing(&self) -> bool {
        let c = &self.shared.counters;
        let settled = || DeliveryCounters::get(&c.sent) + DeliveryCounters::get(&c.failed);
        let mut seen = settled();
        loop {
            let deadline = Instant::now() + self.settings.stop_timeout;
            if self.shared.queue.wait_drained(deadline) {
                return true;
            }
            let now = settled();
            if now == seen {
                return false;
            }
            seen = now;
        }
    }

    /// Delivers what is queued (see [`DeliverySettings::stop_timeout`]), then stops the senders. Returns an
    /// error naming how many records (and which, by id) were not delivered, if any.
    pub fn finish(&mut self) -> Result<(), String> {
        self.log_drops(true);
        self.shared.queue.close();
        let drained = self.wait_while_progressing();
        let mut undelivered = self.shared.queue.abort();
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                self.host.error(&format!("{}: a sender thread panicked", self.shared.receiver));
            }
        }
        undelivered.extend(self.shared.take_handed_back());
        self.shared.sync_queue_depth();
        let c = &self.shared.counters;
        DeliveryCounters::add(&c.failed, undelivered.len() as u64);
        if !drained || !undelivered.is_empty() {
            let ids: Vec<&str> =
                undelivered.iter().filter_map(|i| i.id.as_deref()).take(LISTED_UNDELIVERED).collect();
            let listed = if ids.is_empty() { String::new() } else { format!(" (first ids: {})", ids.join(", ")) };
            let msg = format!(
                "{}: {} records not delivered: nothing was delivered for the whole stop timeout ({} s){listed}",
                self.shared.receiver,
                undelivered.len(),
                self.settings.stop_timeout.as_secs_f64()
            );
            self.host.error(&msg);
        }
        if self.refused_at_stop > 0 {
            let listed = if self.refused_at_stop_ids.is_empty() {
                String::new()
            } else {
                format!(" (first ids: {})", self.refused_at_stop_ids.join(", "))
            };
            self.host.error(&format!(
                "{}: {} records not delivered: the stop came while the queue was full and the receiver was not taking records{listed}",
                self.shared.receiver, self.refused_at_stop
            ));
        }
        let (failed, dropped) = (DeliveryCounters::get(&c.failed), DeliveryCounters::get(&c.dropped));
        let lost = DeliveryCounters::get(&c.connections_lost);
        let mut problems = Vec::new();
        if failed + dropped > 0 {
            problems.push(format!("{failed} failed, {dropped} dropped"));
        }
        if lost > 0 {
            // Without acknowledgements nobody can say whether the replay covered everything.
            problems.push(format!(
                "the connection was lost {lost} times and {} records were written again after reconnecting \
                 (duplicates possible); the receiver does not acknowledge, so delivery cannot be confirmed",
                DeliveryCounters::get(&c.replayed)
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}: {} records written, {}",
            self.shared.receiver,
            DeliveryCounters::get(&c.sent),
            problems.join("; ")
        ))
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.shared.queue.abort();
            for w in self.workers.drain(..) {
                let _ = w.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex as StdMutex,
    };

    use sysflow_plugin_api::{abi_stable::std_types::RStr, LogLevel};

    use super::*;

    static LOGS: StdMutex<Vec<String>> = StdMutex::new(Vec::new());

    extern "C" fn capture(_level: LogLevel, instance: RStr<'_>, message: RStr<'_>) {
        LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{instance}: {message}"));
    }

    fn logs(instance: &str) -> Vec<String> {
        LOGS.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.starts_with(&format!("{instance}: ")))
            .cloned()
            .collect()
    }

    /// A receiver in this process: fails the first `failures` requests, rejects bodies
    /// equal to `b"bad"`, records what it accepted.
    struct FlakySink {
        failures: Arc<AtomicUsize>,
        received: Arc<StdMutex<Vec<Item>>>,
        /// Never succeeds (an outage lasting past the stop).
        down: bool,
    }

    impl Sink for FlakySink {
        fn send(&mut self, items: &[Item]) -> Result<Vec<Outcome>, SendError> {
            if self.down || self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(SendError { message: "HTTP 503".into(), retryable: true });
            }
            let mut out = Vec::new();
            for item in items {
                if item.body == b"bad" {
                    out.push(Outcome::Rejected("mapper_parsing_exception".into()));
                } else {
                    self.received.lock().unwrap_or_else(|e| e.into_inner()).push(item.clone());
                    out.push(Outcome::Delivered);
                }
            }
            Ok(out)
        }
    }

    fn settings(mode: DeliveryMode, capacity: usize, stop: Duration) -> DeliverySettings {
        DeliverySettings { mode, queue_capacity: capacity, stop_timeout: stop, max_batch_items: 7, max_batch_bytes: 1 << 20 }
    }

    fn item(n: usize) -> Item {
        Item { id: Some(format!("id{n}")), body: format!("{{\"n\":{n}}}").into_bytes() }
    }

    #[test]
    fn block_mode_delivers_everything_once_across_failures_and_counts_retries() {
        let received = Arc::new(StdMutex::new(Vec::new()));
        let sink = FlakySink { failures: Arc::new(AtomicUsize::new(3)), received: Arc::clone(&received), down: false };
        let host = Host::new(capture, "block-test");
        let mut d = Delivery::start(vec![Box::new(sink)], settings(DeliveryMode::Block, 4, Duration::from_secs(30)), "r".into(), host)
            .expect("start");
        for n in 0..100 {
            d.push(item(n));
        }
        d.push(Item { id: Some("broken".into()), body: b"bad".to_vec() });
        d.push(Item { id: Some("broken2".into()), body: b"bad".to_vec() });
        let result = d.finish();
        let got: Vec<Item> = received.lock().expect("lock").clone();
        assert_eq!(got, (0..100).map(item).collect::<Vec<_>>(), "every record exactly once, in order");
        let c = d.raw_counters();
        assert_eq!(DeliveryCounters::get(&c.sent), 100);
        assert_eq!(DeliveryCounters::get(&c.failed), 2);
        assert_eq!(DeliveryCounters::get(&c.dropped), 0);
        assert!(DeliveryCounters::get(&c.retried) >= 3, "three failed requests of ≥ 1 record");
        let err = result.expect_err("two records failed");
        assert!(err.contains("100 records written, 2 failed"), "{err}");
        let rejections: Vec<String> = logs("block-test").into_iter().filter(|l| l.contains("rejected")).collect();
        assert_eq!(rejections.len(), 1, "one line per cause: {rejections:?}");
        assert!(rejections[0].contains("mapper_parsing_exception") && rejections[0].contains("id broken"), "{rejections:?}");
    }

    #[test]
    fn drop_mode_accounts_for_every_record_and_stop_names_the_undelivered() {
        let sink = FlakySink { failures: Arc::new(AtomicUsize::new(0)), received: Arc::default(), down: true };
        let host = Host::new(capture, "drop-test");
        let mut d =
            Delivery::start(vec![Box::new(sink)], settings(DeliveryMode::Drop, 10, Duration::from_millis(300)), "r".into(), host)
                .expect("start");
        for n in 0..50 {
            d.push(item(n));
        }
        let started = Instant::now();
        let err = d.finish().expect_err("nothing delivered");
        assert!(started.elapsed() < Duration::from_secs(5), "stop must not wait for the receiver");
        let c = d.raw_counters();
        let (sent, failed, dropped) =
            (DeliveryCounters::get(&c.sent), DeliveryCounters::get(&c.failed), DeliveryCounters::get(&c.dropped));
        assert_eq!(sent + failed + dropped, 50, "sent {sent} failed {failed} dropped {dropped}");
        assert!(dropped >= 33, "queue of 10 plus at most 7 in flight: {dropped}");
        assert!(err.contains("0 records written"), "{err}");
        let log = logs("drop-test").join("\n");
        assert!(log.contains(&format!("{failed} records not delivered: nothing was delivered")), "{log}");
        assert!(log.contains("first ids: id"), "{log}");
        assert!(log.contains("queue full"), "{log}");
    }
}
