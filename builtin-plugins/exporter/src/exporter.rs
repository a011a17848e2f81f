//! The `exporter` processor: encodes flat records and hands them to a transport.

use std::time::{Duration, Instant};

use sysflow_plugin_api::{
    Batch, ConfigKey, Counter, Host, OtelRecord, Payload, PluginConfig, PluginError, Processor, INPUT_PAYLOAD_KEY,
};

use crate::{
    delivery::{Delivery, DeliverySettings, Item, Sink},
    document_id::document_id,
    ecs_encoder::EcsEncoder,
    elasticsearch::{EsSettings, EsSink},
    falco_encoder::FalcoEncoder,
    http::{HttpSettings, HttpSink},
    json_encoder::JsonEncoder,
    otel_encoder::{encode_resource_logs, OtelEncoder, OtelEncoding},
    transport::{self, syslog, EncodedBatch, RelpSink, SyslogSettings, SyslogSink, Transport},
};

/// Pending records older than this are delivered at the next batch (upstream's 1 s ticker).
const MAX_PENDING_AGE: Duration = Duration::from_secs(1);

/// The configuration keys of the exporter (pipeline-config.md §3.3).
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new("export", "transport: terminal (default), file, syslog, es, http, kafka, null"),
    ConfigKey::new("format", "encoding: json (default), ecs, falco (Falco's JSON alerts), otel (OTLP logs), or sysflow (export kafka only)"),
    ConfigKey::new("buffer", "records per delivery (integer, default 0 = deliver every batch)"),
    ConfigKey::new("file.path", "file transport target, replaced at start, appended to after a SIGHUP reload, untouched by -test (default ./export.out)"),
    ConfigKey::new("vault.secrets", "\"true\" reads Elasticsearch credentials from secret files (es transport)"),
    ConfigKey::new("vault.path", "secrets directory (default /run/secrets)"),
    ConfigKey::new("vault.encoding", "secret file encoding: none (default) or base64"),
    ConfigKey::new("syslog.proto", "syslog protocol: tcp (default), udp, tls (or tcp+tls), relp (acknowledged, rsyslog imrelp; no TLS)"),
    ConfigKey::new("syslog.relp.window", "syslog relp: most messages sent and not yet acknowledged (default 128)"),
    ConfigKey::new("syslog.tls.cafile", "syslog tls: PEM CA certificate(s) the server certificate must chain to (default: system roots)"),
    ConfigKey::new("syslog.tls.certfile", "syslog tls: PEM client certificate (with syslog.tls.keyfile)"),
    ConfigKey::new("syslog.tls.keyfile", "syslog tls: PEM PKCS#8 client key (with syslog.tls.certfile)"),
    ConfigKey::new("syslog.tls.insecure", "syslog tls: \"true\" skips server certificate verification (tests only)"),
    ConfigKey::new("syslog.writeTimeout", "syslog tcp/tls/relp: a write making no progress (relp: an acknowledgement not arriving) this long fails and reconnects, Go duration (default 10s)"),
    ConfigKey::new("syslog.replayWindow", "syslog tcp/tls: records written again after a reconnect (default 10000)"),
    ConfigKey::new("syslog.tag", "syslog tag (default sysflow)"),
    ConfigKey::new("syslog.source", "syslog HOSTNAME field"),
    ConfigKey::new("syslog.host", "syslog server host (default localhost)"),
    ConfigKey::new("syslog.port", "syslog server port (default 514)"),
    ConfigKey::new("es.addresses", "Elasticsearch URLs (http:// or https://), comma-separated"),
    ConfigKey::new("es.index", "Elasticsearch index"),
    ConfigKey::new("es.username", "Elasticsearch user"),
    ConfigKey::new("es.password", "Elasticsearch password"),
    ConfigKey::new("es.bulk.numWorkers", "bulk indexer workers (0 = number of CPUs)"),
    ConfigKey::new("es.bulk.flushBuffer", "bulk indexer flush size in bytes (default 5000000)"),
    ConfigKey::new("es.bulk.flushTimeout", "bulk indexer flush interval, Go duration (default 30s)"),
    ConfigKey::new("es.tls.cafile", "Elasticsearch https: PEM CA certificate(s) the server certificate must chain to (default: system roots)"),
    ConfigKey::new("es.tls.certfile", "Elasticsearch https: PEM client certificate (with es.tls.keyfile)"),
    ConfigKey::new("es.tls.keyfile", "Elasticsearch https: PEM client key (with es.tls.certfile)"),
    ConfigKey::new("es.tls.insecure", "Elasticsearch https: \"true\" skips server certificate verification (tests only)"),
    ConfigKey::new("es.apikey", "Elasticsearch API key (sent as Authorization: ApiKey; wins over username/password)"),
    ConfigKey::new("es.gzip", "\"true\" gzips bulk request bodies (default false)"),
    ConfigKey::new("http.url", "http exporter: the http:// or https:// URL records are POSTed to"),
    ConfigKey::new("http.tls.cafile", "http exporter https: PEM CA certificate(s) the server certificate must chain to (default: system roots)"),
    ConfigKey::new("http.tls.certfile", "http exporter https: PEM client certificate (with http.tls.keyfile)"),
    ConfigKey::new("http.tls.keyfile", "http exporter https: PEM client key (with http.tls.certfile)"),
    ConfigKey::new("http.tls.insecure", "http exporter https: \"true\" skips server certificate verification (tests only)"),
    ConfigKey::new("http.mode", "http exporter: batch (default, NDJSON requests) or record (one JSON document per request)"),
    ConfigKey::new("http.headers", "http exporter: object of extra request headers (name: string value)"),
    ConfigKey::new("http.username", "http exporter: basic authentication user"),
    ConfigKey::new("http.password", "http exporter: basic authentication password"),
    ConfigKey::new("http.token", "http exporter: bearer token (Authorization: Bearer)"),
    ConfigKey::new("delivery.mode", "network exporters (es, http, syslog, kafka): block (default: the pipeline waits, nothing lost) or drop when the queue is full"),
    ConfigKey::new("delivery.queue", "network exporters (es, http, syslog): records the delivery queue holds (default 20000)"),
    ConfigKey::new("delivery.stopTimeout", "network exporters (es, http, syslog): how long a stop waits without delivery progress before giving up the queued records, Go duration (default 10s)"),
    ConfigKey::new("kafka.config", "Kafka client properties (object; needs bootstrap.servers); only for export kafka"),
    ConfigKey::new("kafka.topic", "Kafka topic"),
    ConfigKey::new("kafka.encoding", "format otel with export kafka: proto (default, OTLP protobuf) or json (OTLP/JSON); other formats: json only"),
];

/// How many transport errors are logged individually; after that only the 16th, 32nd, 64th …
const LOGGED_ERRORS: u64 = 10;

/// Counts a record the encoder could not encode (it is skipped, as upstream skips it).
fn note_encode_error(host: &Host, encode_errors: &mut u64, error: String) {
    *encode_errors += 1;
    if *encode_errors <= LOGGED_ERRORS || encode_errors.is_power_of_two() {
        host.error(&format!("record skipped ({encode_errors} encode errors so far): {error}"));
    }
}

/// Refuses a `format` other than `otel` when the block's input carries OTel records (the
/// host's [`INPUT_PAYLOAD_KEY`]): the other formats are made of flat SysFlow records.
pub fn check_otel_input(config: &PluginConfig) -> Result<(), PluginError> {
    let otel_input = config.str(INPUT_PAYLOAD_KEY)? == Some(Payload::Otel.name());
    let format = config.str_or("format", "json")?;
    if otel_input && format != "otel" {
        return Err(PluginError::new(format!(
            "key 'format': the input channel carries OTel records (fed by an OTel driver or a policy engine reading otelchan); only format 'otel' takes them, not '{format}'"
        )));
    }
    Ok(())
}

/// The configured encoder.
#[derive(Debug)]
pub enum Encoder {
    /// `format: json`.
    Json(Box<JsonEncoder>),
    /// `format: ecs`.
    Ecs(EcsEncoder),
    /// `format: falco`.
    Falco(FalcoEncoder),
    /// `format: otel` (OTLP/JSON lines on local transports).
    Otel(Box<OtelEncoder>),
}

impl Encoder {
    #[inline]
    fn encode(&mut self, record: &sysflow_plugin_api::FlatRecord, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Encoder::Json(e) => e.encode(record, out),
            Encoder::Ecs(e) => e.encode(record, out),
            Encoder::Falco(e) => {
                e.encode(record, out);
            }
            Encoder::Otel(e) => return e.encode(record, out),
        }
        Ok(())
    }
}

/// Where encoded records go.
enum Output {
    /// A local or synchronous transport (terminal, file, syslog, null), fed whole batches.
    Transport(Box<dyn Transport>),
    /// A network exporter behind the delivery layer (queue, senders, retries).
    Delivery {
        delivery: Delivery,
        /// The `export` name.
        name: &'static str,
        /// Whether records carry upstream's document id (Elasticsearch).
        with_ids: bool,
    },
}

/// Encodes flat records (JSON or ECS) and delivers them with the configured transport.
pub struct Exporter {
    host: Host,
    encoder: Encoder,
    output: Output,
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
            .field("transport", &self.output_name())
            .field("buffer", &self.buffer)
            .field("records_exported", &self.records_exported)
            .finish()
    }
}

impl Exporter {
    /// Validates the configuration and opens the transport.
    pub fn from_config(config: &PluginConfig, host: Host) -> Result<Exporter, PluginError> {
        check_otel_input(config)?;
        let format = config.str_or("format", "json")?;
        let encoder = match format {
            "json" => Encoder::Json(Box::default()),
            "ecs" => Encoder::Ecs(EcsEncoder::new()),
            "falco" => Encoder::Falco(FalcoEncoder::new()),
            "otel" => {
                // Lines of text need text: protobuf is for Kafka messages only.
                if let Some(encoding) = config.str("kafka.encoding")? {
                    if encoding != "json" {
                        host.warn(&format!(
                            "key 'kafka.encoding': '{encoding}' applies to export kafka only; this exporter writes OTLP/JSON lines"
                        ));
                    }
                }
                Encoder::Otel(Box::new(OtelEncoder::new(OtelEncoding::Json)))
            }
            other => {
                host.warn(&format!("key 'format': unknown encoder '{other}', using json"));
                Encoder::Json(Box::default())
            }
        };
        let export = match config.str_or("export", "terminal")? {
            name @ ("terminal" | "file" | "null" | "syslog" | "es" | "http") => name,
            name if transport::UNAVAILABLE.contains(&name) => {
                return Err(PluginError::new(format!(
                    "key 'export': transport '{name}' is not available in this build yet (available: terminal, file, syslog, es, http, null)"
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
        let mut exporter = if export == "es" {
            let settings = EsSettings::from_config(config).map_err(PluginError::new)?;
            let delivery_settings = DeliverySettings::from_config(config, usize::MAX, settings.flush_bytes)
                .map_err(PluginError::new)?;
            let sinks: Vec<Box<dyn Sink>> =
                (0..settings.workers).map(|w| Box::new(EsSink::new(&settings, w)) as Box<dyn Sink>).collect();
            let delivery =
                Delivery::start(sinks, delivery_settings, settings.describe(), host).map_err(PluginError::new)?;
            let mut exporter = Exporter::with_transport(host, Box::new(transport::NullTransport), buffer);
            exporter.output = Output::Delivery { delivery, name: "es", with_ids: true };
            exporter
        } else if export == "http" {
            let settings = HttpSettings::from_config(config).map_err(PluginError::new)?;
            let delivery_settings =
                DeliverySettings::from_config(config, settings.max_batch_items(), crate::http::MAX_BATCH_BYTES)
                    .map_err(PluginError::new)?;
            // One sender: a webhook receives records in order.
            let sink: Box<dyn Sink> = Box::new(HttpSink::new(&settings));
            let delivery =
                Delivery::start(vec![sink], delivery_settings, settings.describe(), host).map_err(PluginError::new)?;
            let mut exporter = Exporter::with_transport(host, Box::new(transport::NullTransport), buffer);
            exporter.output = Output::Delivery { delivery, name: "http", with_ids: false };
            exporter
        } else if export == "syslog" {
            let settings = SyslogSettings::from_config(config).map_err(PluginError::new)?;
            let delivery_settings = DeliverySettings::from_config(config, syslog::MAX_BATCH_RECORDS, usize::MAX)
                .map_err(PluginError::new)?;
            let receiver = settings.describe();
            // One sender: syslog messages keep their order.
            let sink: Box<dyn Sink> = if settings.protocol == syslog::Protocol::Relp {
                Box::new(RelpSink::connect(settings).map_err(PluginError::new)?)
            } else {
                Box::new(SyslogSink::connect(settings).map_err(PluginError::new)?)
            };
            let delivery = Delivery::start(vec![sink], delivery_settings, receiver, host).map_err(PluginError::new)?;
            let mut exporter = Exporter::with_transport(host, Box::new(transport::NullTransport), buffer);
            exporter.output = Output::Delivery { delivery, name: "syslog", with_ids: false };
            exporter
        } else {
            let transport = transport::open(export, config).map_err(|e| PluginError::new(e.0))?;
            Exporter::with_transport(host, transport, buffer)
        };
        exporter.encoder = encoder;
        Ok(exporter)
    }

    fn output_name(&self) -> &'static str {
        match &self.output {
            Output::Transport(t) => t.name(),
            Output::Delivery { name, .. } => name,
        }
    }

    /// A JSON exporter writing to an already opened transport.
    pub fn with_transport(host: Host, transport: Box<dyn Transport>, buffer: usize) -> Exporter {
        Exporter {
            host,
            encoder: Encoder::Json(Box::default()),
            output: Output::Transport(transport),
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

    /// Delivers the pending records once the buffer is full or the oldest waited long enough.
    fn deliver_if_due(&mut self) {
        let now = Instant::now();
        let oldest = *self.oldest_pending.get_or_insert(now);
        if self.buffer == 0 || self.pending.len() >= self.buffer || now.duration_since(oldest) >= MAX_PENDING_AGE {
            self.deliver();
        }
    }

    /// Hands pending records to the transport and flushes it.
    fn deliver(&mut self) {
        self.oldest_pending = None;
        if self.pending.is_empty() {
            return;
        }
        let (records, bytes) = (self.pending.len() as u64, self.pending.byte_len() as u64);
        let Output::Transport(transport) = &mut self.output else {
            return;
        };
        let result = transport.export(&self.pending).and_then(|()| transport.flush());
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

impl Exporter {
    /// Writes OTel records as OTLP/JSON `LogsData` lines (`format: otel` only).
    fn process_otel(&mut self, records: &[OtelRecord]) -> Result<Option<Batch>, PluginError> {
        if !matches!(self.encoder, Encoder::Otel(_)) {
            self.encode_errors += records.len() as u64;
            return Err(PluginError::new(format!(
                "exporter: dropped a batch of {} OTel records: only format 'otel' takes them",
                records.len()
            )));
        }
        if let Output::Delivery { delivery, .. } = &mut self.output {
            for record in records {
                let mut body = Vec::new();
                match encode_resource_logs(&record.resource_logs, OtelEncoding::Json, &mut body) {
                    Ok(()) => delivery.push(Item { id: None, body }),
                    Err(e) => note_encode_error(&self.host, &mut self.encode_errors, e),
                }
            }
            return Ok(None);
        }
        for record in records {
            let pushed = self
                .pending
                .try_push_with(|out| encode_resource_logs(&record.resource_logs, OtelEncoding::Json, out));
            if let Err(e) = pushed {
                note_encode_error(&self.host, &mut self.encode_errors, e);
            }
        }
        self.deliver_if_due();
        Ok(None)
    }
}

impl Processor for Exporter {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        Exporter::from_config(config, host)
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        let records = match batch {
            Batch::Flat(records) => records,
            Batch::Otel(records) => return self.process_otel(&records),
            Batch::SysFlow(records) => {
                self.encode_errors += records.len() as u64;
                return Err(PluginError::new(format!(
                    "exporter expects flat records (flattenerchan or eventchan); dropped a batch of {} SysFlow records",
                    records.len()
                )));
            }
        };
        let falco_alerts_only = matches!(self.encoder, Encoder::Falco(_));
        if let Output::Delivery { delivery, with_ids, .. } = &mut self.output {
            // The delivery layer batches by itself: `buffer` does not apply.
            for record in records.iter() {
                // Falco alerts exist only for matched records (enrich mode forwards the others).
                if falco_alerts_only && record.context.matched.is_empty() {
                    self.records_not_alerts += 1;
                    continue;
                }
                let mut body = Vec::new();
                if let Err(e) = self.encoder.encode(record, &mut body) {
                    note_encode_error(&self.host, &mut self.encode_errors, e);
                    continue;
                }
                let id = with_ids.then(|| document_id(record));
                delivery.push(Item { id, body });
            }
            return Ok(None);
        }
        for record in records.iter() {
            // Falco alerts exist only for matched records (enrich mode forwards the others).
            if falco_alerts_only && record.context.matched.is_empty() {
                self.records_not_alerts += 1;
                continue;
            }
            if let Err(e) = self.pending.try_push_with(|out| self.encoder.encode(record, out)) {
                note_encode_error(&self.host, &mut self.encode_errors, e);
            }
        }
        self.deliver_if_due();
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
        let transport = match &mut self.output {
            Output::Transport(t) => t,
            Output::Delivery { delivery, .. } => return delivery.finish().map_err(PluginError::new),
        };
        let closed = transport.close();
        if let Err(e) = closed {
            self.transport_errors += 1;
            self.first_error.get_or_insert(e.0);
        }
        match &self.first_error {
            None => Ok(()),
            Some(first) => Err(PluginError::new(format!(
                "{} transport: {} records could not be delivered ({} errors; first: {first})",
                transport.name(),
                self.records_dropped,
                self.transport_errors
            ))),
        }
    }

    fn counters(&self) -> Vec<Counter> {
        if let Output::Delivery { delivery, .. } = &self.output {
            let mut counters = delivery.counters();
            counters.push(Counter::loss("encode_errors", self.encode_errors));
            return counters;
        }
        vec![
            Counter::new("records_exported", self.records_exported),
            Counter::new("bytes_written", self.bytes_written),
            Counter::loss("encode_errors", self.encode_errors),
            Counter::loss("transport_errors", self.transport_errors),
            Counter::loss("records_dropped", self.records_dropped),
            Counter::new("records_not_alerts", self.records_not_alerts),
        ]
    }
}
