//! The `exporter` processor: encodes flat records and hands them to a transport.

use std::time::{Duration, Instant};

use sysflow_plugin_api::{Batch, ConfigKey, Counter, Host, PluginConfig, PluginError, Processor};

use crate::{
    ecs_encoder::EcsEncoder,
    falco_encoder::FalcoEncoder,
    json_encoder::JsonEncoder,
    transport::{self, EncodedBatch, Transport},
};

/// Pending records older than this are delivered at the next batch (upstream's 1 s ticker).
const MAX_PENDING_AGE: Duration = Duration::from_secs(1);

/// The configuration keys of the exporter (pipeline-config.md §3.3).
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new("export", "transport: terminal (default), file, syslog, kafka, null; es is not available yet"),
    ConfigKey::new("format", "encoding: json (default), ecs, falco (Falco's JSON alerts), or sysflow (export kafka only); otel is not available yet"),
    ConfigKey::new("buffer", "records per delivery (integer, default 0 = deliver every batch)"),
    ConfigKey::new("file.path", "file transport target, replaced at start, appended to after a SIGHUP reload, untouched by -test (default ./export.out)"),
    ConfigKey::new("vault.secrets", "\"true\" reads Elasticsearch credentials from secret files (es transport)"),
    ConfigKey::new("vault.path", "secrets directory (default /run/secrets)"),
    ConfigKey::new("vault.encoding", "secret file encoding: none (default) or base64"),
    ConfigKey::new("syslog.proto", "syslog protocol: tcp (default), udp; tls is not available yet"),
    ConfigKey::new("syslog.tag", "syslog tag (default sysflow)"),
    ConfigKey::new("syslog.source", "syslog HOSTNAME field"),
    ConfigKey::new("syslog.host", "syslog server host (default localhost)"),
    ConfigKey::new("syslog.port", "syslog server port (default 514)"),
    ConfigKey::new("es.addresses", "Elasticsearch URLs, comma-separated"),
    ConfigKey::new("es.index", "Elasticsearch index"),
    ConfigKey::new("es.username", "Elasticsearch user"),
    ConfigKey::new("es.password", "Elasticsearch password"),
    ConfigKey::new("es.bulk.numWorkers", "bulk indexer workers (0 = number of CPUs)"),
    ConfigKey::new("es.bulk.flushBuffer", "bulk indexer flush size in bytes (default 5000000)"),
    ConfigKey::new("es.bulk.flushTimeout", "bulk indexer flush interval, Go duration (default 30s)"),
    ConfigKey::new("kafka.config", "Kafka client properties (object; needs bootstrap.servers); only for export kafka"),
    ConfigKey::new("kafka.topic", "Kafka topic"),
    ConfigKey::new("kafka.encoding", "Kafka payload encoding: json (proto is for otel, not available yet)"),
    ConfigKey::new("kafka.queue.full", "producer queue full: block (default, the pipeline slows) or drop (counted)"),
];

/// How many transport errors are logged individually; after that only the 16th, 32nd, 64th …
const LOGGED_ERRORS: u64 = 10;

/// The configured encoder.
#[derive(Debug)]
pub enum Encoder {
    /// `format: json`.
    Json(Box<JsonEncoder>),
    /// `format: ecs`.
    Ecs(EcsEncoder),
    /// `format: falco`.
    Falco(FalcoEncoder),
}

impl Encoder {
    #[inline]
    fn encode(&mut self, record: &sysflow_plugin_api::FlatRecord, out: &mut Vec<u8>) {
        match self {
            Encoder::Json(e) => e.encode(record, out),
            Encoder::Ecs(e) => e.encode(record, out),
            Encoder::Falco(e) => {
                e.encode(record, out);
            }
        }
    }
}

/// Encodes flat records (JSON or ECS) and delivers them with the configured transport.
pub struct Exporter {
    host: Host,
    encoder: Encoder,
    transport: Box<dyn Transport>,
    pending: EncodedBatch,
    /// Records per delivery; 0 delivers every batch.
    buffer: usize,
    oldest_pending: Option<Instant>,
    records_exported: u64,
    bytes_written: u64,
    encode_errors: u64,
    transport_errors: u64,
    records_dropped: u64,
    /// Records `format: falco` skipped because no rule matched them.
    records_not_alerts: u64,
    first_error: Option<String>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("transport", &self.transport.name())
            .field("buffer", &self.buffer)
            .field("records_exported", &self.records_exported)
            .finish()
    }
}

impl Exporter {
    /// Validates the configuration and opens the transport.
    pub fn from_config(config: &PluginConfig, host: Host) -> Result<Exporter, PluginError> {
        let format = config.str_or("format", "json")?;
        let encoder = match format {
            "json" => Encoder::Json(Box::default()),
            "ecs" => Encoder::Ecs(EcsEncoder::new()),
            "falco" => Encoder::Falco(FalcoEncoder::new()),
            "otel" => {
                return Err(PluginError::new(
                    "key 'format': encoder 'otel' is not available in this build yet (available: json, ecs)",
                ))
            }
            other => {
                host.warn(&format!("key 'format': unknown encoder '{other}', using json"));
                Encoder::Json(Box::default())
            }
        };
        let export = match config.str_or("export", "terminal")? {
            name @ ("terminal" | "file" | "null" | "syslog") => name,
            name if transport::UNAVAILABLE.contains(&name) => {
                return Err(PluginError::new(format!(
                    "key 'export': transport '{name}' is not available in this build yet (available: terminal, file, syslog, null)"
                )))
            }
            other => {
                host.warn(&format!("key 'export': unknown transport '{other}', using terminal"));
                "terminal"
            }
        };
        // Upstream treats the buffer as a count; anything not positive delivers every batch.
        let buffer = config.parse::<i64>("buffer")?.unwrap_or(0).max(0);
        let buffer = usize::try_from(buffer).unwrap_or(usize::MAX);
        let transport = transport::open(export, config).map_err(|e| PluginError::new(e.0))?;
        let mut exporter = Exporter::with_transport(host, transport, buffer);
        exporter.encoder = encoder;
        Ok(exporter)
    }

    /// A JSON exporter writing to an already opened transport.
    pub fn with_transport(host: Host, transport: Box<dyn Transport>, buffer: usize) -> Exporter {
        Exporter {
            host,
            encoder: Encoder::Json(Box::default()),
            transport,
            pending: EncodedBatch::new(),
            buffer,
            oldest_pending: None,
            records_exported: 0,
            bytes_written: 0,
            encode_errors: 0,
            transport_errors: 0,
            records_dropped: 0,
            records_not_alerts: 0,
            first_error: None,
        }
    }

    /// Hands pending records to the transport and flushes it.
    fn deliver(&mut self) {
        self.oldest_pending = None;
        if self.pending.is_empty() {
            return;
        }
        let (records, bytes) = (self.pending.len() as u64, self.pending.byte_len() as u64);
        let result = self.transport.export(&self.pending).and_then(|()| self.transport.flush());
        self.pending.clear();
        match result {
            Ok(()) => {
                self.records_exported += records;
                self.bytes_written += bytes;
            }
            Err(e) => {
                self.transport_errors += 1;
                self.records_dropped += records;
                if self.transport_errors <= LOGGED_ERRORS || self.transport_errors.is_power_of_two() {
                    self.host.error(&format!(
                        "{records} records dropped ({} transport errors so far): {e}",
                        self.transport_errors
                    ));
                }
                self.first_error.get_or_insert(e.0);
            }
        }
    }
}

impl Processor for Exporter {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        Exporter::from_config(config, host)
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        let records = match batch {
            Batch::Flat(records) => records,
            Batch::SysFlow(records) => {
                self.encode_errors += records.len() as u64;
                return Err(PluginError::new(format!(
                    "exporter expects flat records (flattenerchan or eventchan); dropped a batch of {} SysFlow records",
                    records.len()
                )));
            }
        };
        for record in records.iter() {
            // Falco alerts exist only for matched records (enrich mode forwards the others).
            if matches!(self.encoder, Encoder::Falco(_)) && record.context.matched.is_empty() {
                self.records_not_alerts += 1;
                continue;
            }
            self.pending.push_with(|out| self.encoder.encode(record, out));
        }
        let now = Instant::now();
        let oldest = *self.oldest_pending.get_or_insert(now);
        if self.buffer == 0 || self.pending.len() >= self.buffer || now.duration_since(oldest) >= MAX_PENDING_AGE {
            self.deliver();
        }
        Ok(None)
    }

    fn flush(&mut self) -> Result<Option<Batch>, PluginError> {
        self.deliver();
        Ok(None)
    }

    fn finish(&mut self) -> Result<(), PluginError> {
        self.deliver();
        if let Encoder::Json(json) = &mut self.encoder {
            json.clear_caches();
        }
        let closed = self.transport.close();
        if let Err(e) = closed {
            self.transport_errors += 1;
            self.first_error.get_or_insert(e.0);
        }
        match &self.first_error {
            None => Ok(()),
            Some(first) => Err(PluginError::new(format!(
                "{} transport: {} records could not be delivered ({} errors; first: {first})",
                self.transport.name(),
                self.records_dropped,
                self.transport_errors
            ))),
        }
    }

    fn counters(&self) -> Vec<Counter> {
        vec![
            Counter::new("records_exported", self.records_exported),
            Counter::new("bytes_written", self.bytes_written),
            Counter::new("encode_errors", self.encode_errors),
            Counter::new("transport_errors", self.transport_errors),
            Counter::new("records_dropped", self.records_dropped),
            Counter::new("records_not_alerts", self.records_not_alerts),
        ]
    }
}
