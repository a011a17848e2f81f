//! The Kafka consumer-group drivers: `kafka` (self-contained `sysflow` messages) and
//! `otelkafka` (OTLP `LogsData`, see [`crate::otel_format`]) share this consumer; a
//! [`MessageFormat`] turns each message into records.
//!
//! Offsets are committed by the driver itself (`enable.auto.commit` is forced off): a
//! message's offset is committed once its records were handed to the pipeline at least
//! [`COMMIT_DELAY`] earlier, and everything handed over is committed at stop (the host then
//! drains the pipeline). The delay keeps the committed offset behind what the pipeline may
//! still hold, so a consumer killed outright leaves its in-flight messages uncommitted and
//! the group's next owner of the partition reads them again (duplicates, never a gap).
//! This is not yet an exact acknowledgement from the exporters: see `docs/kafka.md`.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext},
    error::KafkaError,
    message::{Message, OwnedMessage},
    ClientContext, Offset, TopicPartitionList,
};
use sysflow_avro_drivers::DatumDecoder;
use sysflow_plugin_api::{
    Batch, ConfigKey, Counter, Driver, DriverPoll, Host, PluginConfig, PluginError, SysFlowRecord,
};

use crate::{
    client_log::ClientLog,
    producer::{client_config, client_properties},
    sysflow_message::{decode_message, frame_count},
};

/// How a consumer-group driver turns Kafka messages into records.
pub trait MessageFormat: Send + 'static + Sized {
    /// The record type a message decodes to.
    type Record: Send;
    /// The `group.id` used when `kafka.config` has none (`None`: the key is required).
    const DEFAULT_GROUP: Option<&'static str>;
    /// Most records one poll hands over: bounds a batch's memory by the format's record size.
    const MAX_BATCH_RECORDS: usize;
    /// Reads the format's own keys.
    fn from_config(config: &PluginConfig) -> Result<Self, PluginError>;
    /// Appends the records of one message to `out`; on error, says what was wrong (the
    /// records appended before the error are kept).
    fn decode(&mut self, payload: &[u8], out: &mut Vec<Self::Record>) -> Result<(), String>;
    /// Most records `payload` decodes to, when the format can tell without decoding it
    /// (`None`: the batch grows as needed). A batch sized from it never reallocates.
    fn records_in(_payload: &[u8]) -> Option<usize> {
        None
    }
    /// The batch handed to the pipeline.
    fn batch(records: Vec<Self::Record>) -> Batch;
}

/// The `kafka` driver's format: self-contained SysFlow messages (`format: sysflow`).
pub struct SysflowFormat(DatumDecoder);

impl MessageFormat for SysflowFormat {
    type Record = SysFlowRecord;
    const DEFAULT_GROUP: Option<&'static str> = None;
    const MAX_BATCH_RECORDS: usize = MAX_PREALLOCATED_RECORDS;

    fn from_config(config: &PluginConfig) -> Result<Self, PluginError> {
        let format = config.str_or("format", "sysflow")?;
        if format != "sysflow" {
            return Err(PluginError::new(format!(
                "key 'format': '{format}' is not available (the kafka driver reads sysflow messages; OTLP logs: driver otelkafka)"
            )));
        }
        Ok(SysflowFormat(DatumDecoder::v5()))
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<SysFlowRecord>) -> Result<(), String> {
        decode_message(&self.0, payload, out).map(drop).map_err(|e| format!("frame {}: {}", e.frame, e.reason))
    }

    fn records_in(payload: &[u8]) -> Option<usize> {
        Some(frame_count(payload))
    }

    fn batch(records: Vec<SysFlowRecord>) -> Batch {
        Batch::sysflow(records)
    }
}


/// How long records must have been in the pipeline before their offsets are committed.
pub const COMMIT_DELAY: Duration = Duration::from_secs(5);
/// Most SysFlow records a poll reserves room for up front.
pub const MAX_PREALLOCATED_RECORDS: usize = 1 << 16;
/// Longest a poll waits for messages.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How many consume or decode errors are logged one by one; later only powers of two.
const LOGGED_ERRORS: u64 = 10;
/// librdkafka properties the driver sets unless `kafka.config` does.
/// `queued.max.messages.kbytes` bounds librdkafka's prefetch queue (its default is 64 MB;
/// a broker that answers a fetch with more than asked, as noida-db does, still overshoots it).
/// `fetch.queue.backoff.ms`: once that queue is over its bound, librdkafka's default waits
/// 1 s before fetching again, while the pipeline drains the queue in a fraction of that; the
/// fetcher then sat idle for most of a second at every refill.
const CONSUMER_DEFAULTS: [(&str, &str); 4] = [
    ("client.id", "sfprocessor"),
    ("auto.offset.reset", "earliest"),
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.queue.backoff.ms", "10"),
];

/// The configuration keys of the `kafka` driver (upstream `otelkafka`'s names).
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new("kafka.config", "librdkafka consumer properties (object; needs bootstrap.servers and group.id)"),
    ConfigKey::new("kafka.topics", "topics to subscribe to (array of names, or one comma-separated string)"),
    ConfigKey::new("format", "message format: sysflow (default); OTLP logs are read by the otelkafka driver"),
    ConfigKey::new(
        "kafka.stop.at.end",
        "\"true\": end the run once every assigned partition is read to its end (replays, benchmarks)",
    ),
];

/// Next offset to commit per (topic, partition).
type NextOffsets = HashMap<(String, i32), i64>;

/// The consumer's librdkafka callbacks: logs and errors go to the host's log, rate-limited.
pub struct ConsumerLog(ClientLog);

impl ClientContext for ConsumerLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.0.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(error, reason);
    }
}

impl ConsumerContext for ConsumerLog {}

/// Consumes messages of format `F` from Kafka topics as a consumer-group member.
pub struct KafkaDriver<F: MessageFormat = SysflowFormat> {
    host: Host,
    /// Shared so a polled message (which borrows the consumer) can be taken by `&mut self`.
    consumer: Arc<BaseConsumer<ConsumerLog>>,
    format: F,
    /// Next offsets per (topic, partition) handed to the pipeline and not yet committed, by hand-over time.
    handed: VecDeque<(Instant, NextOffsets)>,
    /// A message that did not fit the last batch: the first of the next one.
    pending: Option<OwnedMessage>,
    /// When the driver subscribed: the first message's delay is the group join's.
    subscribed: Instant,
    stopping: bool,
    /// `kafka.stop.at.end`: partitions read to their end so far (`None` when the key is off).
    at_end: Option<HashSet<(String, i32)>>,
    messages: u64,
    records: u64,
    bad_messages: u64,
    consume_errors: u64,
    commits: u64,
    commit_errors: u64,
}

impl<F: MessageFormat> std::fmt::Debug for KafkaDriver<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDriver").field("messages", &self.messages).finish()
    }
}

fn topics(config: &PluginConfig) -> Result<Vec<String>, PluginError> {
    let list: Vec<String> = match config.value("kafka.topics") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| PluginError::new("key 'kafka.topics': every topic must be a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(serde_json::Value::String(s)) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Some(_) => return Err(PluginError::new("key 'kafka.topics': expected an array of topic names")),
        None => return Err(PluginError::new("key 'kafka.topics': missing (the topics to consume)")),
    };
    let list: Vec<String> = list.into_iter().filter(|t| !t.is_empty()).collect();
    if list.is_empty() {
        return Err(PluginError::new("key 'kafka.topics': no topic given"));
    }
    Ok(list)
}

impl<F: MessageFormat> KafkaDriver<F> {
    /// Decodes one message into the batch and notes its offset.
    fn take_message(
        &mut self,
        message: &impl Message,
        records: &mut Vec<F::Record>,
        offsets: &mut NextOffsets,
        wanted: usize,
    ) {
        if self.messages == 0 {
            self.host.info(&format!(
                "kafka: first message {} ms after subscribing (the group join)",
                self.subscribed.elapsed().as_millis()
            ));
        }
        self.messages += 1;
        let (topic, partition, offset) = (message.topic().to_string(), message.partition(), message.offset());
        if let Some(at_end) = &mut self.at_end {
            at_end.remove(&(topic.clone(), partition));
        }
        offsets.insert((topic.clone(), partition), offset + 1);
        let payload = message.payload().unwrap_or_default();
        if records.capacity() == 0 {
            records.reserve_exact(wanted.max(F::records_in(payload).unwrap_or(0)));
        }
        let before = records.len();
        if let Err(e) = self.format.decode(payload, records) {
            self.bad_messages += 1;
            if self.error_logged(self.bad_messages) {
                self.host.warn(&format!(
                    "kafka: message {topic}[{partition}]@{offset}: {e}; kept {} records before it ({} bad messages so far)",
                    records.len() - before,
                    self.bad_messages
                ));
            }
        }
    }

    fn error_logged(&self, count: u64) -> bool {
        count <= LOGGED_ERRORS || count.is_power_of_two()
    }

    /// Commits the offsets handed over before `cutoff` (all of them when `None`).
    fn commit(&mut self, cutoff: Option<Instant>, mode: CommitMode) {
        let mut latest = NextOffsets::new();
        while let Some((at, _)) = self.handed.front() {
            if cutoff.is_some_and(|c| *at > c) {
                break;
            }
            if let Some((_, offsets)) = self.handed.pop_front() {
                for (tp, next) in offsets {
                    let e = latest.entry(tp).or_insert(next);
                    *e = (*e).max(next);
                }
            }
        }
        if latest.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &latest {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                self.commit_errors += 1;
                self.host.error(&format!("kafka: cannot commit {topic}[{partition}] at {next}: {e}"));
            }
        }
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => self.commits += 1,
            Err(e) => {
                // A partition revoked in a rebalance refuses the commit: its next owner
                // reads those records again (duplicates, not loss).
                self.commit_errors += 1;
                if self.error_logged(self.commit_errors) {
                    self.host.warn(&format!("kafka: offset commit failed ({} so far): {e}", self.commit_errors));
                }
            }
        }
    }
}

impl<F: MessageFormat> Driver for KafkaDriver<F> {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let format = F::from_config(config)?;
        let mut props = client_properties(config, "kafka.config").map_err(PluginError::new)?;
        if !props.contains_key("group.id") {
            match F::DEFAULT_GROUP {
                Some(group) => {
                    props.insert("group.id".to_string(), group.to_string());
                }
                None => return Err(PluginError::new("key 'kafka.config': needs 'group.id' (the consumer group)")),
            }
        }
        let topics = topics(config)?;
        let stop_at_end = match config.value("kafka.stop.at.end") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                return Err(PluginError::new(format!("key 'kafka.stop.at.end': expected true or false, found {other}")))
            }
        };
        let mut cfg = client_config(&props, &CONSUMER_DEFAULTS);
        if stop_at_end {
            cfg.set("enable.partition.eof", "true");
        }
        // Offsets are committed by the driver only, after hand-over (see the module doc).
        cfg.set("enable.auto.commit", "false");
        let consumer: BaseConsumer<ConsumerLog> = cfg
            .create_with_context(ConsumerLog(ClientLog::new(host)))
            .map_err(|e| PluginError::new(format!("key 'kafka.config': cannot create the Kafka consumer: {e}")))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| PluginError::new(format!("key 'kafka.topics': cannot subscribe to {names:?}: {e}")))?;
        host.info(&format!(
            "consuming {names:?} in group '{}'",
            props.get("group.id").map(String::as_str).unwrap_or("")
        ));
        Ok(KafkaDriver {
            host,
            consumer: Arc::new(consumer),
            format,
            handed: VecDeque::new(),
            pending: None,
            subscribed: Instant::now(),
            stopping: false,
            at_end: stop_at_end.then(HashSet::new),
            messages: 0,
            records: 0,
            bad_messages: 0,
            consume_errors: 0,
            commits: 0,
            commit_errors: 0,
        })
    }

    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError> {
        if self.stopping {
            self.commit(None, CommitMode::Sync);
            self.consumer.unsubscribe();
            return Ok(DriverPoll::End);
        }
        if let Some(cutoff) = Instant::now().checked_sub(COMMIT_DELAY) {
            self.commit(Some(cutoff), CommitMode::Async);
        }
        let deadline = Instant::now() + POLL_WAIT;
        // A batch is sized to what the host asked for, or to its one message when that is
        // larger, and a message that would overshoot waits for the next poll: a batch grown
        // record by record, or one with room for an extra message, passed mimalloc's
        // large-object bound (512 KiB) — such blocks go back to the OS at every free and
        // fault in again at the next poll, a large share of the consume profile.
        let wanted = max_records.clamp(1, F::MAX_BATCH_RECORDS);
        let mut records: Vec<F::Record> = Vec::new();
        let mut offsets = NextOffsets::new();
        if let Some(message) = self.pending.take() {
            self.take_message(&message, &mut records, &mut offsets, wanted);
        }
        while records.len() < wanted {
            let left = deadline.saturating_duration_since(Instant::now());
            let consumer = Arc::clone(&self.consumer);
            let Some(result) = consumer.poll(left) else { break };
            match result {
                Ok(message) => {
                    let bound = F::records_in(message.payload().unwrap_or_default());
                    if bound.is_some_and(|n| !records.is_empty() && records.len() + n > wanted) {
                        self.pending = Some(message.detach());
                        break;
                    }
                    self.take_message(&message, &mut records, &mut offsets, wanted);
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    if let Some(at_end) = &mut self.at_end {
                        // librdkafka names only the partition; one subscribed topic is the common case.
                        if let Ok(assigned) = self.consumer.assignment() {
                            for e in assigned.elements().iter().filter(|e| e.partition() == partition) {
                                at_end.insert((e.topic().to_string(), partition));
                            }
                        }
                    }
                }
                Err(e) => {
                    self.consume_errors += 1;
                    if self.error_logged(self.consume_errors) {
                        self.host.warn(&format!("kafka: consumer error ({} so far): {e}", self.consume_errors));
                    }
                }
            }
            if left.is_zero() {
                break;
            }
        }
        if !offsets.is_empty() {
            self.handed.push_back((Instant::now(), offsets));
        }
        if records.is_empty() {
            if let Some(at_end) = &self.at_end {
                let assigned = self
                    .consumer
                    .assignment()
                    .map(|a| a.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>())
                    .unwrap_or_default();
                if !assigned.is_empty() && assigned.iter().all(|tp| at_end.contains(tp)) {
                    self.host.info("kafka: every assigned partition read to its end (kafka.stop.at.end)");
                    self.stopping = true;
                }
            }
            return Ok(DriverPoll::Idle);
        }
        self.records += records.len() as u64;
        Ok(DriverPoll::Batch(F::batch(records)))
    }

    fn stop(&mut self) {
        self.stopping = true;
    }

    fn counters(&self) -> Vec<Counter> {
        vec![
            Counter::new("messages", self.messages),
            Counter::new("records", self.records),
            Counter::loss("bad_messages", self.bad_messages),
            Counter::new("consume_errors", self.consume_errors),
            Counter::new("commits", self.commits),
            Counter::new("commit_errors", self.commit_errors),
            Counter::new("uncommitted_handovers", self.handed.len() as u64),
            Counter::new("client_errors", self.consumer.context().0.errors()),
        ]
    }
}
