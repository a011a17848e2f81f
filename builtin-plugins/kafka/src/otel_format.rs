//! The `otelkafka` driver's format: each Kafka message is one OTLP `LogsData`
//! (`kafka.encoding`: `proto`, the default, or `json`, OTLP/JSON), and each of its
//! `ResourceLogs` becomes one OTel record (upstream sf-processor 0.7's `otelkafka`).

use opentelemetry_proto::tonic::logs::v1::LogsData;
use prost::Message;
use sysflow_exporter::OtelEncoding;
use sysflow_plugin_api::{Batch, ConfigKey, OtelRecord, PluginConfig, PluginError};

use crate::kafka_driver::MessageFormat;

/// The consumer group used when `kafka.config` names none (upstream's).
pub const DEFAULT_GROUP: &str = "sfprocessor-otel-kafka-driver";

/// The configuration keys of the `otelkafka` driver (upstream's names).
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new(
        "kafka.config",
        "librdkafka consumer properties (object; needs bootstrap.servers; group.id defaults to sfprocessor-otel-kafka-driver)",
    ),
    ConfigKey::new("kafka.topics", "topics to subscribe to (array of names, or one comma-separated string)"),
    ConfigKey::new("kafka.encoding", "message encoding: proto (default, OTLP protobuf LogsData) or json (OTLP/JSON LogsData)"),
    ConfigKey::new(
        "kafka.stop.at.end",
        "\"true\": end the run once every assigned partition is read to its end (replays, benchmarks)",
    ),
];

/// Decodes `LogsData` messages into one [`OtelRecord`] per `ResourceLogs`.
#[derive(Debug)]
pub struct OtelFormat {
    encoding: OtelEncoding,
}

impl OtelFormat {
    /// A decoder of `encoding` messages.
    pub fn new(encoding: OtelEncoding) -> OtelFormat {
        OtelFormat { encoding }
    }
}

impl MessageFormat for OtelFormat {
    type Record = OtelRecord;
    const DEFAULT_GROUP: Option<&'static str> = Some(DEFAULT_GROUP);
    /// An OTel record of a process event is a few KB: 1024 of them keep a batch near 5 MB
    /// (65,536, the SysFlow bound, made batches of 300 MB and a 550 MB peak RSS).
    const MAX_BATCH_RECORDS: usize = 1024;

    fn from_config(config: &PluginConfig) -> Result<Self, PluginError> {
        let value = config.str_or("kafka.encoding", "proto")?;
        let encoding = OtelEncoding::parse(value).ok_or_else(|| {
            PluginError::new(format!("key 'kafka.encoding': unknown encoding '{value}' (expected proto or json)"))
        })?;
        Ok(OtelFormat::new(encoding))
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<OtelRecord>) -> Result<(), String> {
        match self.encoding {
            OtelEncoding::Proto => {
                let start = out.len();
                split_logs_data(payload, out).map_err(|e| {
                    out.truncate(start);
                    format!("not a protobuf OTLP LogsData: {e}")
                })
            }
            OtelEncoding::Json => {
                let logs = serde_json::from_slice::<LogsData>(payload)
                    .map_err(|e| format!("not an OTLP/JSON LogsData: {e}"))?;
                out.extend(logs.resource_logs.iter().map(|rl| OtelRecord::from_proto(rl.encode_to_vec())));
                Ok(())
            }
        }
    }

    fn batch(records: Vec<OtelRecord>) -> Batch {
        Batch::otel(records)
    }
}

/// Appends each `ResourceLogs` of a protobuf `LogsData` (its field 1) as it is, without
/// decoding it: the policy engine decodes each record anyway (and counts those that do not
/// decode), so decoding here and encoding again doubled the consumer's work. Other fields
/// are skipped as the wire format says; a malformed frame is an error.
fn split_logs_data(mut buf: &[u8], out: &mut Vec<OtelRecord>) -> Result<(), String> {
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).map_err(|e| e.to_string())?;
        let (field, wire_type) = (key >> 3, key & 7);
        let skip = match wire_type {
            0 => {
                prost::encoding::decode_varint(&mut buf).map_err(|e| e.to_string())?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = prost::encoding::decode_varint(&mut buf).map_err(|e| e.to_string())?;
                let len = usize::try_from(len).map_err(|_| format!("field {field}: length {len} too large"))?;
                if len > buf.len() {
                    return Err(format!("field {field}: length {len} past the end ({} bytes left)", buf.len()));
                }
                if field == 1 {
                    out.push(OtelRecord::from_proto(buf[..len].to_vec()));
                }
                len
            }
            other => return Err(format!("field {field}: invalid wire type {other}")),
        };
        if skip > buf.len() {
            return Err(format!("field {field}: truncated"));
        }
        buf = &buf[skip..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{any_value::Value, AnyValue, KeyValue},
        logs::v1::ResourceLogs,
        resource::v1::Resource,
    };

    use super::*;

    fn logs(hosts: &[&str]) -> LogsData {
        let rl = |h: &str| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "host.name".into(),
                    value: Some(AnyValue { value: Some(Value::StringValue(h.into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        LogsData { resource_logs: hosts.iter().map(|h| rl(h)).collect() }
    }

    fn hosts(records: &[OtelRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let rl = ResourceLogs::decode(r.resource_logs.as_slice()).expect("a ResourceLogs");
                match rl.resource.and_then(|r| r.attributes.into_iter().next()).and_then(|kv| kv.value).and_then(|v| v.value)
                {
                    Some(Value::StringValue(s)) => s,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn each_resource_logs_of_a_message_is_one_record_in_both_encodings() {
        let message = logs(&["node-a", "node-b"]);
        let mut out = Vec::new();
        OtelFormat::new(OtelEncoding::Proto).decode(&message.encode_to_vec(), &mut out).expect("proto decodes");
        OtelFormat::new(OtelEncoding::Json)
            .decode(&serde_json::to_vec(&message).expect("serialises"), &mut out)
            .expect("OTLP/JSON decodes");
        assert_eq!(hosts(&out), ["node-a", "node-b", "node-a", "node-b"]);
    }

    #[test]
    fn split_records_are_the_resource_logs_encodings() {
        let message = logs(&["node-a", "node-b", "node-c"]);
        let mut out = Vec::new();
        OtelFormat::new(OtelEncoding::Proto).decode(&message.encode_to_vec(), &mut out).expect("proto decodes");
        let want: Vec<Vec<u8>> = message.resource_logs.iter().map(|rl| rl.encode_to_vec()).collect();
        let got: Vec<Vec<u8>> = out.iter().map(|r| r.resource_logs.to_vec()).collect();
        assert_eq!(got, want);
        // Truncated: an error, and nothing of the message is kept.
        let bytes = message.encode_to_vec();
        let mut out = Vec::new();
        let err = OtelFormat::new(OtelEncoding::Proto).decode(&bytes[..bytes.len() - 3], &mut out).unwrap_err();
        assert!(err.contains("past the end"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn a_message_that_is_not_logs_data_is_an_error_and_adds_nothing() {
        let mut out = Vec::new();
        let err = OtelFormat::new(OtelEncoding::Proto).decode(b"not an OTLP message", &mut out).unwrap_err();
        assert!(err.contains("not a protobuf OTLP LogsData"), "{err}");
        let err = OtelFormat::new(OtelEncoding::Json).decode(b"{\"resourceLogs\": 3}", &mut out).unwrap_err();
        assert!(err.contains("not an OTLP/JSON LogsData"), "{err}");
        assert!(out.is_empty());
    }
}
