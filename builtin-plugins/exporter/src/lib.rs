//! The SysFlow exporter (`exporter` processor): encodes flat records as upstream's JSON
//! lines (`format: json`), ECS documents (`format: ecs`), Falco's JSON alerts
//! (`format: falco`, [`falco_encoder`]) or OTLP logs (`format: otel`, [`otel_encoder`],
//! OTLP/JSON lines on local transports) and delivers them to the terminal, a file, or
//! nowhere (`null`), or through the [`delivery`] layer (bounded queue, retries, counters)
//! to a syslog server (UDP/TCP/TLS/RELP), Elasticsearch/OpenSearch (`es`) or an HTTP webhook
//! (`http`).
//!
//! Output is byte-for-byte upstream's (sf-processor 0.7) wherever upstream's output is
//! valid and correct, including its HTML-safe string escaping. Deliberate differences
//! of the JSON format:
//!
//! * flow counters (`flow.rbytes/rops/wbytes/wops`) are the recorded values; upstream
//!   doubles them;
//! * pod `hostip`/`internalip`, service `clusterIP` and `services` arrays have commas
//!   between elements (upstream omits them: invalid JSON with ≥ 2 elements);
//! * a parent process missing from the cache gives `""` strings (upstream: `"\"\""`);
//! * a process missing from the cache gives `[]` for `acmdline`/`aexe`/`aname`/`apid`
//!   (upstream writes no value: invalid JSON) and the pid/createts/oid the event names
//!   (upstream: zeros);
//! * strings are exported as recorded: upstream strips one leading and one trailing quote
//!   character (`"` or `'`) from every string value (TrimBoundingQuotes);
//! * op flag names are computed per record (`SEND`/`RECV` only for network flows);
//!   upstream memoises them per numeric value across record types.
//!
//! The ECS format shares the counter, quoting and unknown-process fixes above (ECS flow
//! values `sf_file_action.*`, `network.bytes`, `source`/`destination` `bytes`/`packets`
//! are the recorded counters); a KE message that is not JSON gives no `orchestrator`.
//!
//! Kept quirks: `proc.cmdline` is `exe + " " + args` even when args are empty;
//! `meta.tracename`, `file.newname`, `file.newdirectory` are `"."` when empty; on FE
//! records `file.fd` is the new file's state ordinal and `openflags` is `["NONE"]`;
//! `endts` equals `ts` for KE records.

pub mod delivery;
pub mod document_id;
pub mod ecs_encoder;
pub mod elasticsearch;
pub mod exporter;
pub mod falco_encoder;
mod fragment_cache;
pub mod go_duration;
pub mod http;
pub mod http_tls;
pub mod json_encoder;
pub mod json_text;
pub mod otel_encoder;
pub mod transport;
pub mod vault;

use sysflow_plugin_api::{ChannelType, PluginDescriptor};

pub use ecs_encoder::EcsEncoder;
pub use exporter::Exporter;
pub use falco_encoder::FalcoEncoder;
pub use json_encoder::JsonEncoder;
pub use otel_encoder::{encode_resource_logs, OtelEncoder, OtelEncoding};
/// The OTLP protobuf types the OTel encoder builds (re-exported so consumers decode with the same version).
pub use opentelemetry_proto;

/// The plugins this crate provides.
pub fn descriptors() -> Vec<PluginDescriptor> {
    vec![PluginDescriptor::processor::<Exporter>(
        "exporter",
        "encodes records as JSON, ECS, Falco alerts or OTLP logs and exports them to the terminal, a file, syslog, Elasticsearch, an HTTP webhook or null",
        env!("CARGO_PKG_VERSION"),
        exporter::CONFIG_KEYS,
        &[ChannelType::Flat, ChannelType::Event, ChannelType::Otel],
        None,
    )]
}
