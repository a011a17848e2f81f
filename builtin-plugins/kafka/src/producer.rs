//! Kafka delivery: a librdkafka producer whose queue is the exporter's bounded queue and
//! whose delivery reports decide what counts as sent.
//!
//! A record is `sent` only when the broker acknowledged its message (`acks=all` by
//! default). A message librdkafka gives up on (after its own retries, within
//! `message.timeout.ms`) is produced again up to [`MAX_REDELIVERIES`] times (`retried`),
//! then counted `failed` with the error. When the queue
//! (`queue.buffering.max.messages`) is full the exporter waits for room (`block`, the
//! default: the pipeline slows down) or, with `"delivery.mode": "drop"`, drops the
//! message and counts its records `dropped`. On stop it flushes for at most
//! [`FLUSH_TIMEOUT`]; what is still undelivered then is purged and counted `failed`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    config::{ClientConfig, RDKafkaLogLevel},
    error::KafkaError,
    message::{DeliveryResult, Message},
    producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig},
    types::RDKafkaErrorCode,
    ClientContext,
};
use sysflow_plugin_api::{Counter, Host, PluginConfig};

use sysflow_exporter::delivery::{DeliveryCounters, DeliveryMode, DeliverySettings};

use crate::client_log::ClientLog;

/// How many times a message librdkafka reported undeliverable is produced again.
pub const MAX_REDELIVERIES: u32 = 3;
/// Longest the exporter waits at stop for outstanding delivery reports.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one wait for queue room in block mode (then the wait repeats).
const QUEUE_WAIT: Duration = Duration::from_millis(100);
/// librdkafka properties the exporter sets unless `kafka.config` does (upstream's defaults).
const PRODUCER_DEFAULTS: [(&str, &str); 2] = [("client.id", "sfprocessor"), ("acks", "all")];

/// Per-message state travelling through librdkafka.
#[derive(Debug)]
pub struct Opaque {
    records: u64,
    attempt: u32,
}

/// A message to produce again.
#[derive(Debug)]
struct Redelivery {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    opaque: Opaque,
}

/// Receives delivery reports on the thread that polls the producer.
pub struct DeliveryContext {
    log: ClientLog,
    counters: Arc<DeliveryCounters>,
    redeliveries: Mutex<Vec<Redelivery>>,
    closing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Opaque>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<Opaque>) {
        let c = &self.counters;
        c.queued.fetch_sub(opaque.records, Ordering::Relaxed);
        match result {
            Ok(_) => {
                c.sent.fetch_add(opaque.records, Ordering::Relaxed);
            }
            Err((error, message)) => {
                let permanent = matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessage)
                );
                let closing = self.closing.load(Ordering::Relaxed);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(format!("topic {}: {error}", message.topic()));
                }
                if permanent || closing || opaque.attempt >= MAX_REDELIVERIES {
                    c.failed.fetch_add(opaque.records, Ordering::Relaxed);
                } else if let Ok(mut queue) = self.redeliveries.lock() {
                    c.retried.fetch_add(opaque.records, Ordering::Relaxed);
                    queue.push(Redelivery {
                        topic: message.topic().to_string(),
                        key: message.key().unwrap_or_default().to_vec(),
                        payload: message.payload().unwrap_or_default().to_vec(),
                        opaque: Opaque { records: opaque.records, attempt: opaque.attempt + 1 },
                    });
                } else {
                    c.failed.fetch_add(opaque.records, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A producer for one topic with counted, acknowledged delivery.
pub struct KafkaSink {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    queue_full: DeliveryMode,
    counters: Arc<DeliveryCounters>,
    /// For the operator's stop signal: a full queue stops blocking once it is set.
    host: Host,
    /// Records not produced because the stop came while the queue was full.
    refused_at_stop: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("topic", &self.topic).field("queue_full", &self.queue_full).finish()
    }
}

/// librdkafka properties from a `kafka.config` object (values may be strings, numbers or booleans).
pub fn client_properties(config: &PluginConfig, key: &str) -> Result<HashMap<String, String>, String> {
    let Some(value) = config.value(key) else {
        return Err(format!(
            "key '{key}': missing (a JSON object of librdkafka properties with at least bootstrap.servers)"
        ));
    };
    let object =
        value.as_object().ok_or_else(|| format!("key '{key}': expected a JSON object of librdkafka properties"))?;
    let mut props = HashMap::new();
    for (name, v) in object {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "key '{key}': property '{name}' must be a string, number or boolean, found {other}"
                ))
            }
        };
        props.insert(name.clone(), text);
    }
    if !props.contains_key("bootstrap.servers") && !props.contains_key("metadata.broker.list") {
        return Err(format!("key '{key}': needs 'bootstrap.servers'"));
    }
    Ok(props)
}

/// A librdkafka configuration: `defaults` first, then the user's properties.
pub fn client_config(props: &HashMap<String, String>, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    for (k, v) in defaults {
        cfg.set(*k, *v);
    }
    for (k, v) in props {
        cfg.set(k, v);
    }
    cfg
}

impl KafkaSink {
    /// Creates the producer from the exporter's `kafka.*` keys.
    pub fn from_config(config: &PluginConfig, host: Host) -> Result<KafkaSink, String> {
        let props = client_properties(config, "kafka.config")?;
        let topic = config.str_or("kafka.topic", "sysflow").map_err(|e| e.to_string())?.to_string();
        // The delivery layer's key; librdkafka's queue is the bounded queue and its retrier the retries.
        let queue_full = DeliverySettings::from_config(config, 1, 1)?.mode;
        let counters = Arc::new(DeliveryCounters::default());
        let context = DeliveryContext {
            log: ClientLog::new(host),
            counters: Arc::clone(&counters),
            redeliveries: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            last_error: Mutex::new(None),
        };
        let producer = client_config(&props, &PRODUCER_DEFAULTS)
            .create_with_context(context)
            .map_err(|e| format!("key 'kafka.config': cannot create the Kafka producer: {e}"))?;
        Ok(KafkaSink { producer, topic, queue_full, counters, host, refused_at_stop: Default::default() })
    }

    /// The topic messages go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Hands one message carrying `records` records to librdkafka (waiting for queue room in
    /// block mode, counting a drop in drop mode).
    pub fn send(&self, key: &[u8], payload: &[u8], records: u64) {
        self.send_opaque(&self.topic, key, payload, Opaque { records, attempt: 0 });
    }

    fn send_opaque(&self, topic: &str, key: &[u8], payload: &[u8], opaque: Opaque) {
        let records = opaque.records;
        self.counters.queued.fetch_add(records, Ordering::Relaxed);
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(opaque)).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if self.queue_full == DeliveryMode::Block && self.host.stop_requested() {
                        // The broker is not taking records and the operator wants to stop:
                        // counted undelivered, reported by `flush`, instead of waiting for ever.
                        self.counters.queued.fetch_sub(records, Ordering::Relaxed);
                        self.counters.failed.fetch_add(records, Ordering::Relaxed);
                        self.refused_at_stop.fetch_add(records, Ordering::Relaxed);
                        return;
                    }
                    if self.queue_full == DeliveryMode::Drop {
                        self.counters.queued.fetch_sub(records, Ordering::Relaxed);
                        self.counters.dropped.fetch_add(records, Ordering::Relaxed);
                        return;
                    }
                    // Serving delivery reports is what frees queue room.
                    self.producer.poll(QUEUE_WAIT);
                    record = back;
                }
                Err((error, _)) => {
                    self.counters.queued.fetch_sub(records, Ordering::Relaxed);
                    self.counters.failed.fetch_add(records, Ordering::Relaxed);
                    if let Ok(mut last) = self.producer.context().last_error.lock() {
                        *last = Some(format!("topic {topic}: {error}"));
                    }
                    return;
                }
            }
        }
    }

    /// Serves delivery reports and produces again what librdkafka gave up on.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
        let again = match self.producer.context().redeliveries.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(_) => Vec::new(),
        };
        for r in again {
            self.send_opaque(&r.topic, &r.key, &r.payload, r.opaque);
        }
    }

    /// Records not produced because the stop came while the queue was full (block mode).
    pub fn refused_at_stop(&self) -> u64 {
        self.refused_at_stop.load(Ordering::Relaxed)
    }

    /// The last delivery error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.producer.context().last_error.lock().ok().and_then(|l| l.clone())
    }

    /// Waits up to `timeout` for every outstanding delivery report; what is still undelivered
    /// then is purged and counted failed. Returns the records that failed in this call.
    pub fn close(&self, timeout: Duration) -> u64 {
        let failed_before = self.counters.failed.load(Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            let pending = self.counters.queued.load(Ordering::Relaxed) > 0
                || self.producer.context().redeliveries.lock().map(|q| !q.is_empty()).unwrap_or(false);
            if !pending {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.producer.context().closing.store(true, Ordering::Relaxed);
                self.producer.purge(PurgeConfig::default().queue().inflight());
                // Purged messages report their error through the same callback.
                let _ = self.producer.flush(Duration::from_millis(500));
                self.producer.poll(Duration::ZERO);
                if let Ok(mut queue) = self.producer.context().redeliveries.lock() {
                    for r in queue.drain(..) {
                        self.counters.failed.fetch_add(r.opaque.records, Ordering::Relaxed);
                    }
                }
                break;
            }
            let _ = self.producer.flush(left.min(Duration::from_millis(200)));
        }
        self.counters.failed.load(Ordering::Relaxed) - failed_before
    }

    /// The shared delivery counters.
    pub fn counters(&self) -> &DeliveryCounters {
        &self.counters
    }

    /// The delivery layer's counters (`records_exported`, `delivery_retried`, `delivery_failed`,
    /// `records_dropped`, `queue_depth` = records awaiting a delivery report), plus `client_errors`.
    pub fn counter_values(&self) -> Vec<Counter> {
        let mut counters = self.counters.to_counters();
        counters.push(Counter::new("client_errors", self.producer.context().log.errors()));
        counters
    }
}
