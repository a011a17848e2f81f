//! The `exporter` processor of a build with Kafka: `"export": "kafka"` goes to
//! [`KafkaExporter`], every other transport to the exporter crate's [`Exporter`].
//!
//! The exporter crate stays free of librdkafka; this crate wraps it, and the host registers
//! this `exporter` in its place.

use sysflow_exporter::Exporter;
use sysflow_plugin_api::{Batch, Counter, Host, PluginConfig, PluginError, Processor};

use crate::kafka_exporter::KafkaExporter;

/// An exporter writing to Kafka or to one of the exporter crate's transports.
#[derive(Debug)]
pub enum ExporterDispatch {
    /// terminal, file, syslog, null.
    Local(Exporter),
    /// kafka.
    Kafka(Box<KafkaExporter>),
}

impl Processor for ExporterDispatch {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let export = config.str_or("export", "terminal")?;
        if export == "kafka" {
            return Ok(ExporterDispatch::Kafka(Box::new(KafkaExporter::from_config(config, host)?)));
        }
        if config.str_or("format", "json")? == "sysflow" {
            return Err(PluginError::new(format!(
                "key 'format': 'sysflow' needs \"export\": \"kafka\" (export is '{export}')"
            )));
        }
        Ok(ExporterDispatch::Local(Exporter::from_config(config, host)?))
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        match self {
            ExporterDispatch::Local(e) => e.process(batch),
            ExporterDispatch::Kafka(e) => e.process(batch),
        }
    }

    fn flush(&mut self) -> Result<Option<Batch>, PluginError> {
        match self {
            ExporterDispatch::Local(e) => e.flush(),
            ExporterDispatch::Kafka(e) => e.flush(),
        }
    }

    fn finish(&mut self) -> Result<(), PluginError> {
        match self {
            ExporterDispatch::Local(e) => e.finish(),
            ExporterDispatch::Kafka(e) => e.finish(),
        }
    }

    fn counters(&self) -> Vec<Counter> {
        match self {
            ExporterDispatch::Local(e) => e.counters(),
            ExporterDispatch::Kafka(e) => e.counters(),
        }
    }
}
