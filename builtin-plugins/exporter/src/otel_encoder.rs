//! The OTel encoder (`format: otel`): each flat record becomes an OTLP `LogsData` holding
//! one `ResourceLogs` with one `LogRecord`, serialised as protobuf or as OTLP/JSON.
//!
//! Layout (docs/exporters.md, "OTel"):
//! * the resource carries `host.name` = the record's node id;
//! * one scope named `sf-processor` holds the log record and, when a rule matched or an
//!   action tagged the record, the attributes `sf.processor.rules` (matched rule names in
//!   evaluation order) and `sf.processor.tags` (distinct tags, action tags first) — the
//!   attributes upstream's OTel contextualiser writes;
//! * the log record's `time_unix_nano` is the record's `ts`; its attributes are the fields of
//!   the JSON format (`format: json`) under `sf.` + their dotted JSON path (`sf.proc.exe`,
//!   `sf.type`, `sf.net.dport`), with JSON strings, integers, booleans, arrays and objects as
//!   OTLP string, int, bool, array and key-value-list values.

use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList},
    logs::v1::{LogRecord, LogsData, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message;
use sysflow_plugin_api::FlatRecord;

use crate::json_encoder::JsonEncoder;

/// The scope the processor's policy results live in (upstream's `SF_PROCESSOR_SCOPE_NAME`).
pub const SCOPE_NAME: &str = "sf-processor";
/// Scope attribute holding the matched rule names.
pub const RULES_KEY: &str = "sf.processor.rules";
/// Scope attribute holding the distinct tags.
pub const TAGS_KEY: &str = "sf.processor.tags";
/// Prefix of every log-record attribute built from a JSON field.
const ATTRIBUTE_PREFIX: &str = "sf.";

/// How an OTLP message is serialised (`kafka.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtelEncoding {
    /// Protobuf wire format (upstream's default for Kafka).
    Proto,
    /// OTLP/JSON (camelCase field names, 64-bit integers as strings).
    Json,
}

impl OtelEncoding {
    /// Parses a `kafka.encoding` value.
    pub fn parse(value: &str) -> Option<OtelEncoding> {
        match value {
            "proto" => Some(OtelEncoding::Proto),
            "json" => Some(OtelEncoding::Json),
            _ => None,
        }
    }
}

/// Encodes flat records as OTLP logs.
#[derive(Debug)]
pub struct OtelEncoder {
    encoding: OtelEncoding,
    /// The record's JSON rendering, the source of its attributes (reused buffer).
    json: JsonEncoder,
    json_text: Vec<u8>,
}

impl OtelEncoder {
    /// An encoder writing `encoding`.
    pub fn new(encoding: OtelEncoding) -> OtelEncoder {
        OtelEncoder { encoding, json: JsonEncoder::new(), json_text: Vec::new() }
    }

    /// The serialisation this encoder writes.
    pub fn encoding(&self) -> OtelEncoding {
        self.encoding
    }

    /// Builds the OTLP message for one record.
    pub fn logs_data(&mut self, record: &FlatRecord) -> Result<LogsData, String> {
        self.json_text.clear();
        self.json.encode(record, &mut self.json_text);
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&self.json_text)
            .map_err(|e| format!("otel: the record's JSON rendering does not parse: {e}"))?;
        let mut attributes = Vec::with_capacity(64);
        for (key, value) in fields {
            // Policy results go to the scope, as upstream's contextualiser puts them.
            if key == "policies" || key == "tags" {
                continue;
            }
            flatten_into(&mut attributes, &format!("{ATTRIBUTE_PREFIX}{key}"), value);
        }
        let log = LogRecord {
            time_unix_nano: u64::try_from(record.event.ts()).unwrap_or(0),
            attributes,
            ..LogRecord::default()
        };
        let scope = InstrumentationScope {
            name: SCOPE_NAME.to_string(),
            attributes: policy_attributes(record),
            ..InstrumentationScope::default()
        };
        let resource = Resource {
            attributes: vec![string_kv("host.name", record.header.exporter.as_str())],
            ..Resource::default()
        };
        Ok(LogsData {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource),
                scope_logs: vec![ScopeLogs { scope: Some(scope), log_records: vec![log], ..ScopeLogs::default() }],
                ..ResourceLogs::default()
            }],
        })
    }

    /// Appends one record's serialised message to `out`; on error `out` is left unchanged.
    pub fn encode(&mut self, record: &FlatRecord, out: &mut Vec<u8>) -> Result<(), String> {
        let logs = self.logs_data(record)?;
        match self.encoding {
            OtelEncoding::Proto => {
                out.reserve(logs.encoded_len());
                logs.encode(out).map_err(|e| format!("otel: protobuf encoding failed: {e}"))
            }
            OtelEncoding::Json => {
                let start = out.len();
                serde_json::to_writer(&mut *out, &logs).map_err(|e| {
                    out.truncate(start);
                    format!("otel: JSON encoding failed: {e}")
                })
            }
        }
    }
}

/// `sf.processor.rules` and `sf.processor.tags`, or nothing for a record without policy results.
fn policy_attributes(record: &FlatRecord) -> Vec<KeyValue> {
    let context = &record.context;
    if context.is_empty() {
        return Vec::new();
    }
    let rules = context.matched.iter().map(|m| string_value(m.name.as_str())).collect();
    let mut tags: Vec<&str> = Vec::new();
    for tag in context.all_tags() {
        // Upstream keeps each tag once; a record has a handful, so a linear scan is cheapest.
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    vec![
        array_kv(RULES_KEY, rules),
        array_kv(TAGS_KEY, tags.into_iter().map(string_value).collect()),
    ]
}

/// Adds `value` under `key`; nested objects (the JSON sections) become dotted keys.
fn flatten_into(out: &mut Vec<KeyValue>, key: &str, value: serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten_into(out, &format!("{key}.{k}"), v);
            }
        }
        other => out.push(kv(key.to_string(), any_value(other))),
    }
}

/// The OTLP value of a JSON value (objects inside arrays become key-value lists).
fn any_value(value: serde_json::Value) -> AnyValue {
    let value = match value {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(Value::BoolValue(b)),
        serde_json::Value::Number(n) => Some(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::IntValue(i),
            // Counters above i64::MAX keep their bits, as protobuf's int64 would.
            (None, Some(u)) => Value::IntValue(u as i64),
            (None, None) => Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        serde_json::Value::String(s) => Some(Value::StringValue(s)),
        serde_json::Value::Array(items) => {
            Some(Value::ArrayValue(ArrayValue { values: items.into_iter().map(any_value).collect() }))
        }
        serde_json::Value::Object(map) => Some(Value::KvlistValue(KeyValueList {
            values: map.into_iter().map(|(k, v)| kv(k, any_value(v))).collect(),
        })),
    };
    AnyValue { value }
}

fn string_value(s: &str) -> AnyValue {
    AnyValue { value: Some(Value::StringValue(s.to_string())) }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    kv(key.to_string(), string_value(value))
}

fn array_kv(key: &str, values: Vec<AnyValue>) -> KeyValue {
    kv(key.to_string(), AnyValue { value: Some(Value::ArrayValue(ArrayValue { values })) })
}

fn kv(key: String, value: AnyValue) -> KeyValue {
    KeyValue { key, value: Some(value), ..KeyValue::default() }
}
