//! The exporter's `kafka` transport: encodes flat records (`json`, `ecs`, `otel` or `sysflow`) into
//! Kafka messages keyed by node, so one node's records keep their order in one partition.

use std::sync::atomic::Ordering;

use rustc_hash::FxHashMap;
use sysflow_exporter::{encode_resource_logs, EcsEncoder, JsonEncoder, OtelEncoder, OtelEncoding};
use sysflow_plugin_api::{Batch, Counter, Host, OtelRecord, PluginConfig, PluginError, Processor};

use crate::{
    producer::{KafkaSink, FLUSH_TIMEOUT},
    sysflow_message::{node_key, MessageBuilder},
};

/// How records become messages.
#[derive(Debug)]
enum KafkaFormat {
    /// One upstream JSON record per message.
    Json(Box<JsonEncoder>),
    /// One ECS document per message.
    Ecs(EcsEncoder),
    /// One OTLP `LogsData` per message (`kafka.encoding`: proto or json).
    Otel(Box<OtelEncoder>),
    /// Self-contained SysFlow Avro messages of up to
    /// [`MAX_EVENTS_PER_MESSAGE`](crate::sysflow_message::MAX_EVENTS_PER_MESSAGE) records.
    Sysflow,
}

/// The `exporter` processor with `"export": "kafka"`.
#[derive(Debug)]
pub struct KafkaExporter {
    host: Host,
    sink: KafkaSink,
    format: KafkaFormat,
    buf: Vec<u8>,
    builders: FxHashMap<String, MessageBuilder>,
    records_in: u64,
    rejected_batches: u64,
    /// Records the OTel encoder could not encode (skipped).
    encode_errors: u64,
}

impl KafkaExporter {
    /// Validates the `format` and `kafka.*` keys and creates the producer.
    pub fn from_config(config: &PluginConfig, host: Host) -> Result<KafkaExporter, PluginError> {
        sysflow_exporter::exporter::check_otel_input(config)?;
        let encoding = config.str("kafka.encoding")?;
        let format = match config.str_or("format", "json")? {
            "json" => KafkaFormat::Json(Box::default()),
            "ecs" => KafkaFormat::Ecs(EcsEncoder::new()),
            "sysflow" => KafkaFormat::Sysflow,
            "otel" => {
                let encoding = match encoding {
                    None => OtelEncoding::Proto,
                    Some(e) => OtelEncoding::parse(e).ok_or_else(|| {
                        PluginError::new(format!("key 'kafka.encoding': unknown encoding '{e}' (otel: proto or json)"))
                    })?,
                };
                KafkaFormat::Otel(Box::new(OtelEncoder::new(encoding)))
            }
            other => {
                return Err(PluginError::new(format!(
                    "key 'format': unknown encoder '{other}' (kafka formats: json, ecs, otel, sysflow)"
                )))
            }
        };
        if let (Some(encoding), false) = (encoding, matches!(format, KafkaFormat::Otel(_))) {
            if encoding != "json" {
                return Err(PluginError::new(format!(
                    "key 'kafka.encoding': '{encoding}' is not available (only json; proto is for the otel format)"
                )));
            }
        }
        let sink = KafkaSink::from_config(config, host).map_err(PluginError::new)?;
        host.info(&format!("exporting to Kafka topic '{}'", sink.topic()));
        Ok(KafkaExporter {
            host,
            sink,
            format,
            buf: Vec::new(),
            builders: FxHashMap::default(),
            records_in: 0,
            rejected_batches: 0,
            encode_errors: 0,
        })
    }

    fn send_built(&mut self, node: Option<&str>) {
        for (key, builder) in self.builders.iter_mut() {
            if node.is_some_and(|n| n != key) || builder.events() == 0 {
                continue;
            }
            let records = builder.events() as u64;
            let message = builder.take();
            self.sink.send(key.as_bytes(), &message, records);
        }
    }
}

impl KafkaExporter {
    /// Sends each OTel record as one `LogsData` message (`format: otel` only), with an empty
    /// key: the records carry no node id to key by, and one key keeps them in order.
    fn process_otel(&mut self, records: &[OtelRecord]) -> Result<Option<Batch>, PluginError> {
        let KafkaFormat::Otel(encoder) = &self.format else {
            self.rejected_batches += 1;
            return Err(PluginError::new(format!(
                "exporter: dropped a batch of {} OTel records: only format 'otel' takes them",
                records.len()
            )));
        };
        let encoding = encoder.encoding();
        self.records_in += records.len() as u64;
        for record in records {
            self.buf.clear();
            if let Err(e) = encode_resource_logs(&record.resource_logs, encoding, &mut self.buf) {
                self.encode_errors += 1;
                if self.encode_errors <= 10 || self.encode_errors.is_power_of_two() {
                    self.host.error(&format!("record skipped ({} so far): {e}", self.encode_errors));
                }
                continue;
            }
            self.sink.send(b"", &self.buf, 1);
        }
        self.sink.poll();
        Ok(None)
    }
}

impl Processor for KafkaExporter {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        KafkaExporter::from_config(config, host)
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        let records = match batch {
            Batch::Flat(records) => records,
            Batch::Otel(records) => return self.process_otel(&records),
            Batch::SysFlow(records) => {
                self.rejected_batches += 1;
                return Err(PluginError::new(format!(
                    "exporter expects flat records (flattenerchan or eventchan); dropped a batch of {} SysFlow records",
                    records.len()
                )));
            }
        };
        self.records_in += records.len() as u64;
        match &mut self.format {
            KafkaFormat::Json(encoder) => {
                for record in records.iter() {
                    self.buf.clear();
                    encoder.encode(record, &mut self.buf);
                    self.sink.send(node_key(&record.header).as_bytes(), &self.buf, 1);
                }
            }
            KafkaFormat::Ecs(encoder) => {
                for record in records.iter() {
                    self.buf.clear();
                    encoder.encode(record, &mut self.buf);
                    self.sink.send(node_key(&record.header).as_bytes(), &self.buf, 1);
                }
            }
            KafkaFormat::Otel(encoder) => {
                for record in records.iter() {
                    self.buf.clear();
                    if let Err(e) = encoder.encode(record, &mut self.buf) {
                        // Upstream skips a record that fails to serialise; this one is counted.
                        self.encode_errors += 1;
                        if self.encode_errors <= 10 || self.encode_errors.is_power_of_two() {
                            self.host.error(&format!("record skipped ({} so far): {e}", self.encode_errors));
                        }
                        continue;
                    }
                    self.sink.send(node_key(&record.header).as_bytes(), &self.buf, 1);
                }
            }
            KafkaFormat::Sysflow => {
                for record in records.iter() {
                    let node = node_key(&record.header);
                    let builder = match self.builders.get_mut(node) {
                        Some(b) => b,
                        None => self.builders.entry(node.to_string()).or_default(),
                    };
                    builder.push(record);
                    if builder.is_full() {
                        let node = node.to_string();
                        self.send_built(Some(&node));
                    }
                }
                // A message never waits for the next batch: latency stays one batch.
                self.send_built(None);
            }
        }
        self.sink.poll();
        Ok(None)
    }

    fn flush(&mut self) -> Result<Option<Batch>, PluginError> {
        self.send_built(None);
        self.sink.poll();
        Ok(None)
    }

    fn finish(&mut self) -> Result<(), PluginError> {
        self.send_built(None);
        let failed_now = self.sink.close(FLUSH_TIMEOUT);
        let c = self.sink.counters();
        let (sent, failed, dropped) =
            (c.sent.load(Ordering::Relaxed), c.failed.load(Ordering::Relaxed), c.dropped.load(Ordering::Relaxed));
        if dropped > 0 {
            self.host.warn(&format!(
                "kafka: {dropped} records dropped because the producer queue was full (delivery.mode: drop)"
            ));
        }
        let refused = self.sink.refused_at_stop();
        if refused > 0 {
            self.host.error(&format!(
                "kafka: {refused} records not delivered: the stop came while the producer queue was full \
                 and the broker was not taking records"
            ));
        }
        if failed_now > 0 {
            self.host.error(&format!(
                "kafka: {failed_now} records still undelivered after the {}s stop flush",
                FLUSH_TIMEOUT.as_secs()
            ));
        }
        if failed > 0 {
            return Err(PluginError::new(format!(
                "kafka transport: {failed} records could not be delivered to topic '{}' ({sent} delivered; last error: {})",
                self.sink.topic(),
                self.sink.last_error().unwrap_or_else(|| "none reported".into())
            )));
        }
        Ok(())
    }

    fn counters(&self) -> Vec<Counter> {
        let mut counters = self.sink.counter_values();
        counters.push(Counter::new("records_in", self.records_in));
        counters.push(Counter::loss("rejected_batches", self.rejected_batches));
        counters.push(Counter::loss("encode_errors", self.encode_errors));
        counters
    }
}
