//! Kafka for sfprocessor: the exporter's `kafka` transport (formats `json`, `ecs`, `otel` and the
//! self-contained `sysflow` messages), the `kafka` and `otelkafka` consumer-group drivers, and
//! the `otelfile` driver (OTLP/JSON files; here because it shares the OTel decoding).
//!
//! librdkafka (bundled by `rdkafka`) is compiled only by this crate: the exporter crate
//! stays free of it, and [`descriptors`] provides the `exporter` processor that dispatches
//! `"export": "kafka"` here and every other transport to the exporter crate.
//! Message format, delivery and commit semantics: `docs/kafka.md`.

pub mod client_log;
pub mod exporter_dispatch;
pub mod kafka_driver;
pub mod kafka_exporter;
pub mod otel_file;
pub mod otel_format;
pub mod producer;
pub mod sysflow_message;

use sysflow_plugin_api::{ChannelType, PluginDescriptor};

pub use exporter_dispatch::ExporterDispatch;
pub use kafka_driver::{KafkaDriver, MessageFormat, SysflowFormat};
pub use otel_file::OtelFileDriver;
pub use otel_format::OtelFormat;
pub use kafka_exporter::KafkaExporter;

/// The plugins this crate provides: `exporter` (with kafka), the `kafka` and `otelkafka`
/// drivers, and `otelfile` (it shares the OTel decoding).
pub fn descriptors() -> Vec<PluginDescriptor> {
    vec![
        PluginDescriptor::processor::<ExporterDispatch>(
            "exporter",
            "encodes records as JSON, ECS, Falco alerts, OTLP logs or SysFlow and exports them to the terminal, a file, syslog, Elasticsearch, an HTTP webhook, Kafka or null",
            env!("CARGO_PKG_VERSION"),
            sysflow_exporter::exporter::CONFIG_KEYS,
            &[ChannelType::Flat, ChannelType::Event, ChannelType::Otel],
            None,
        ),
        PluginDescriptor::driver::<KafkaDriver>(
            "kafka",
            "consumes self-contained SysFlow messages from Kafka topics as a consumer-group member",
            env!("CARGO_PKG_VERSION"),
            kafka_driver::CONFIG_KEYS,
        ),
        PluginDescriptor::driver::<KafkaDriver<OtelFormat>>(
            "otelkafka",
            "consumes OTLP logs (LogsData messages, protobuf or OTLP/JSON) from Kafka topics as a consumer-group member",
            env!("CARGO_PKG_VERSION"),
            otel_format::CONFIG_KEYS,
        )
        .with_output(ChannelType::Otel),
        PluginDescriptor::driver::<OtelFileDriver>(
            "otelfile",
            "reads OTLP logs from a file holding a JSON array of ResourceLogs, or a directory of such files",
            env!("CARGO_PKG_VERSION"),
            otel_file::CONFIG_KEYS,
        )
        .with_output(ChannelType::Otel),
    ]
}
