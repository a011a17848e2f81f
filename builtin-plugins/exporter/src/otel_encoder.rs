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
use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
        let mut attributes = Vec::with_capacity(64);
        let mut key = String::from(ATTRIBUTE_PREFIX);
        let mut de = serde_json::Deserializer::from_slice(&self.json_text);
        // Streamed straight into attributes: no intermediate JSON tree per record.
        FieldsSeed { out: &mut attributes, key: &mut key, top: true }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| format!("otel: the record's JSON rendering does not parse: {e}"))?;
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

/// Streams a JSON object into attributes: nested objects (the JSON sections) become dotted
/// keys under `key`; at the top level, the policy results (`policies`, `tags`) are skipped
/// because they go to the scope, as upstream's contextualiser puts them.
struct FieldsSeed<'a> {
    out: &'a mut Vec<KeyValue>,
    key: &'a mut String,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let base = self.key.len();
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.top && (name == "policies" || name == "tags") {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.key.truncate(base);
            self.key.push_str(&name);
            map.next_value_seed(FieldSeed { out: self.out, key: self.key })?;
        }
        self.key.truncate(base);
        Ok(())
    }
}

/// One JSON value under `key`: an object is flattened further, anything else is one attribute.
struct FieldSeed<'a> {
    out: &'a mut Vec<KeyValue>,
    key: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FieldSeed<'_> {
    fn push(self, value: Option<Value>) {
        self.out.push(kv(self.key.clone(), AnyValue { value }));
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.key.push('.');
        FieldsSeed { out: self.out, key: self.key, top: false }.visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let array = JsonAny::array(seq)?;
        self.push(Some(array));
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.push(Some(Value::BoolValue(v)));
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.push(Some(Value::IntValue(v)));
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.push(Some(int_value(v)));
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Some(Value::DoubleValue(v)));
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.push(Some(Value::StringValue(v.to_string())));
        Ok(())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        self.push(Some(Value::StringValue(v)));
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.push(None);
        Ok(())
    }
}

/// A JSON value inside an array: objects (pod services) become key-value lists.
struct JsonAny(AnyValue);

impl JsonAny {
    fn array<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(JsonAny(v)) = seq.next_element()? {
            values.push(v);
        }
        Ok(Value::ArrayValue(ArrayValue { values }))
    }
}

impl<'de> Deserialize<'de> for JsonAny {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonAny, D::Error> {
        deserializer.deserialize_any(JsonAnyVisitor)
    }
}

struct JsonAnyVisitor;

impl<'de> Visitor<'de> for JsonAnyVisitor {
    type Value = JsonAny;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonAny, A::Error> {
        let mut values = Vec::new();
        while let Some((k, JsonAny(v))) = map.next_entry::<String, JsonAny>()? {
            values.push(kv(k, v));
        }
        Ok(JsonAny(AnyValue { value: Some(Value::KvlistValue(KeyValueList { values })) }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<JsonAny, A::Error> {
        Ok(JsonAny(AnyValue { value: Some(JsonAny::array(seq)?) }))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<JsonAny, E> {
        Ok(JsonAny(AnyValue { value: Some(Value::BoolValue(v)) }))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JsonAny, E> {
        Ok(JsonAny(AnyValue { value: Some(Value::IntValue(v)) }))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JsonAny, E> {
        Ok(JsonAny(AnyValue { value: Some(int_value(v)) }))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<JsonAny, E> {
        Ok(JsonAny(AnyValue { value: Some(Value::DoubleValue(v)) }))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonAny, E> {
        Ok(JsonAny(AnyValue { value: Some(Value::StringValue(v.to_string())) }))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<JsonAny, E> {
        Ok(JsonAny(AnyValue { value: None }))
    }
}

/// Counters above i64::MAX keep their bits, as protobuf's int64 would.
fn int_value(v: u64) -> Value {
    Value::IntValue(v as i64)
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
