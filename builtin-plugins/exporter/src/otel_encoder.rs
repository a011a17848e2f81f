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
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
///
/// The message is kept between records and refilled in place: attribute keys, string
/// values and arrays keep their buffers, so a record costs no allocation once the slots
/// have grown to the largest record seen.
#[derive(Debug)]
pub struct OtelEncoder {
    encoding: OtelEncoding,
    /// The record's JSON rendering, the one definition of the attribute list (reused buffer).
    json: JsonEncoder,
    json_text: Vec<u8>,
    /// The last record's message, refilled for the next one.
    logs: LogsData,
    /// Attribute slots the last record did not need, kept for a longer one.
    spare: Vec<KeyValue>,
    /// The dotted attribute key being built (reused buffer).
    key: String,
}

impl OtelEncoder {
    /// An encoder writing `encoding`.
    pub fn new(encoding: OtelEncoding) -> OtelEncoder {
        OtelEncoder {
            encoding,
            json: JsonEncoder::new(),
            json_text: Vec::new(),
            logs: skeleton(),
            spare: Vec::new(),
            key: String::new(),
        }
    }

    /// The serialisation this encoder writes.
    pub fn encoding(&self) -> OtelEncoding {
        self.encoding
    }

    /// Builds the OTLP message for one record.
    pub fn logs_data(&mut self, record: &FlatRecord) -> Result<LogsData, String> {
        self.fill(record)?;
        Ok(self.logs.clone())
    }

    /// Refills the kept message with `record`.
    fn fill(&mut self, record: &FlatRecord) -> Result<(), String> {
        self.json_text.clear();
        self.json.encode(record, &mut self.json_text);
        if parts(&mut self.logs).is_none() {
            self.logs = skeleton();
        }
        let Some((resource, scope, log)) = parts(&mut self.logs) else {
            return Err("otel: the OTLP message skeleton has no log record".to_string());
        };
        let mut slots = Slots { attributes: &mut log.attributes, used: 0, spare: &mut self.spare };
        self.key.clear();
        self.key.push_str(ATTRIBUTE_PREFIX);
        let mut de = serde_json::Deserializer::from_slice(&self.json_text);
        // Streamed straight into the kept attributes: no JSON tree, no new strings.
        let parsed = FieldsSeed { slots: &mut slots, key: &mut self.key, top: true }
            .deserialize(&mut de)
            .and_then(|()| de.end());
        slots.finish();
        parsed.map_err(|e| format!("otel: the record's JSON rendering does not parse: {e}"))?;
        log.time_unix_nano = u64::try_from(record.event.ts()).unwrap_or(0);
        scope.attributes = policy_attributes(record);
        match resource.attributes.as_mut_slice() {
            [host] if host.key == "host.name" => {
                set_str(host.value.get_or_insert_with(AnyValue::default), record.header.exporter.as_str())
            }
            _ => resource.attributes = vec![string_kv("host.name", record.header.exporter.as_str())],
        }
        Ok(())
    }

    /// Appends one record's serialised message to `out`; on error `out` is left unchanged.
    pub fn encode(&mut self, record: &FlatRecord, out: &mut Vec<u8>) -> Result<(), String> {
        self.fill(record)?;
        match self.encoding {
            OtelEncoding::Proto => {
                out.reserve(self.logs.encoded_len());
                self.logs.encode(out).map_err(|e| format!("otel: protobuf encoding failed: {e}"))
            }
            OtelEncoding::Json => {
                let start = out.len();
                otlp_json::write_logs(out, &self.logs).map_err(|e| {
                    out.truncate(start);
                    format!("otel: JSON encoding failed: {e}")
                })
            }
        }
    }
}

/// An empty message of the layout every record gets: one resource, one scope, one log record.
fn skeleton() -> LogsData {
    let scope = InstrumentationScope { name: SCOPE_NAME.to_string(), ..InstrumentationScope::default() };
    LogsData {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![string_kv("host.name", "")], ..Resource::default() }),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope),
                log_records: vec![LogRecord::default()],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// The resource, scope and log record of a message built by [`skeleton`].
fn parts(logs: &mut LogsData) -> Option<(&mut Resource, &mut InstrumentationScope, &mut LogRecord)> {
    let ResourceLogs { resource, scope_logs, .. } = logs.resource_logs.first_mut()?;
    let ScopeLogs { scope, log_records, .. } = scope_logs.first_mut()?;
    Some((resource.as_mut()?, scope.as_mut()?, log_records.first_mut()?))
}

/// The log record's attributes being refilled: slot `used` is the next to overwrite.
struct Slots<'a> {
    attributes: &'a mut Vec<KeyValue>,
    used: usize,
    spare: &'a mut Vec<KeyValue>,
}

impl Slots<'_> {
    /// The next attribute, keyed `key`, with its old value left for the caller to overwrite.
    fn next(&mut self, key: &str) -> &mut AnyValue {
        if self.used == self.attributes.len() {
            self.attributes.push(self.spare.pop().unwrap_or_default());
        }
        let slot = &mut self.attributes[self.used];
        self.used += 1;
        slot.key.clear();
        slot.key.push_str(key);
        slot.value.get_or_insert_with(AnyValue::default)
    }

    /// Puts the slots this record did not use aside for the next one.
    fn finish(self) {
        self.spare.extend(self.attributes.drain(self.used..));
    }
}

fn set_str(v: &mut AnyValue, s: &str) {
    match &mut v.value {
        Some(Value::StringValue(old)) => {
            old.clear();
            old.push_str(s);
        }
        other => *other = Some(Value::StringValue(s.to_string())),
    }
}

/// The element list of `v` made an array, with its old elements kept for reuse.
fn array_values(v: &mut AnyValue) -> &mut Vec<AnyValue> {
    if !matches!(v.value, Some(Value::ArrayValue(_))) {
        v.value = Some(Value::ArrayValue(ArrayValue::default()));
    }
    match &mut v.value {
        Some(Value::ArrayValue(a)) => &mut a.values,
        // Set just above.
        _ => unreachable!("array value"),
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
struct FieldsSeed<'a, 'b> {
    slots: &'a mut Slots<'b>,
    key: &'a mut String,
    top: bool,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_, '_> {
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
            map.next_value_seed(FieldSeed { slots: &mut *self.slots, key: &mut *self.key })?;
        }
        self.key.truncate(base);
        Ok(())
    }
}

/// One JSON value under `key`: an object is flattened further, anything else is one attribute.
struct FieldSeed<'a, 'b> {
    slots: &'a mut Slots<'b>,
    key: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.key.push('.');
        FieldsSeed { slots: self.slots, key: self.key, top: false }.visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        ValueSeed(self.slots.next(self.key)).visit_seq(seq)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        ValueSeed(self.slots.next(self.key)).visit_bool(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        ValueSeed(self.slots.next(self.key)).visit_i64(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        ValueSeed(self.slots.next(self.key)).visit_u64(v)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        ValueSeed(self.slots.next(self.key)).visit_f64(v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        ValueSeed(self.slots.next(self.key)).visit_str(v)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        ValueSeed(self.slots.next(self.key)).visit_unit()
    }
}

/// Overwrites an attribute value in place with a JSON value, reusing its string and array
/// buffers; objects inside arrays (pod services) become key-value lists.
struct ValueSeed<'a>(&'a mut AnyValue);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Rare (pod services only): built afresh.
        let mut values = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let mut v = AnyValue::default();
            map.next_value_seed(ValueSeed(&mut v))?;
            values.push(kv(k, v));
        }
        self.0.value = Some(Value::KvlistValue(KeyValueList { values }));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let values = array_values(self.0);
        let mut used = 0;
        loop {
            if used == values.len() {
                values.push(AnyValue::default());
            }
            if seq.next_element_seed(ValueSeed(&mut values[used]))?.is_none() {
                break;
            }
            used += 1;
        }
        values.truncate(used);
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.value = Some(Value::BoolValue(v));
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.0.value = Some(Value::IntValue(v));
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0.value = Some(int_value(v));
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.0.value = Some(Value::DoubleValue(v));
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        set_str(self.0, v);
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.value = None;
        Ok(())
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

/// OTLP/JSON text of a message, byte for byte what serde_json writes for the
/// opentelemetry-proto types, without serde's per-field machinery: the shapes this encoder
/// builds are written directly, anything else (trace ids, bodies, doubles, entity refs) is
/// handed to serde_json, so the output never depends on guessing a rarely used encoding.
mod otlp_json {
    use opentelemetry_proto::tonic::{
        common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue},
        logs::v1::{LogRecord, LogsData, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
    };

    use crate::json_text::{is_plain, write_int};

    type Result = std::result::Result<(), serde_json::Error>;

    /// Appends the OTLP/JSON object of `logs`.
    pub(super) fn write_logs(out: &mut Vec<u8>, logs: &LogsData) -> Result {
        out.extend_from_slice(b"{\"resourceLogs\":[");
        list(out, &logs.resource_logs, resource_logs)?;
        out.extend_from_slice(b"]}");
        Ok(())
    }

    fn list<T>(out: &mut Vec<u8>, items: &[T], write: fn(&mut Vec<u8>, &T) -> Result) -> Result {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write(out, item)?;
        }
        Ok(())
    }

    fn serde(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) -> Result {
        serde_json::to_writer(out, value)
    }

    /// A JSON string; serde_json's escaping unless the text needs none.
    fn string(out: &mut Vec<u8>, s: &str) -> Result {
        if is_plain(s.as_bytes()) {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
            Ok(())
        } else {
            serde(out, s)
        }
    }

    fn resource_logs(out: &mut Vec<u8>, rl: &ResourceLogs) -> Result {
        let Some(resource) = rl.resource.as_ref().filter(|r| r.entity_refs.is_empty()) else {
            return serde(out, rl);
        };
        out.extend_from_slice(b"{\"resource\":");
        self::resource(out, resource)?;
        out.extend_from_slice(b",\"scopeLogs\":[");
        list(out, &rl.scope_logs, scope_logs)?;
        out.extend_from_slice(b"],\"schemaUrl\":");
        string(out, &rl.schema_url)?;
        out.push(b'}');
        Ok(())
    }

    fn resource(out: &mut Vec<u8>, r: &Resource) -> Result {
        out.extend_from_slice(b"{\"attributes\":[");
        list(out, &r.attributes, key_value)?;
        out.extend_from_slice(b"],\"droppedAttributesCount\":");
        write_int(out, r.dropped_attributes_count);
        out.extend_from_slice(b",\"entityRefs\":[]}");
        Ok(())
    }

    fn scope_logs(out: &mut Vec<u8>, sl: &ScopeLogs) -> Result {
        let Some(scope) = &sl.scope else {
            return serde(out, sl);
        };
        out.extend_from_slice(b"{\"scope\":");
        self::scope(out, scope)?;
        out.extend_from_slice(b",\"logRecords\":[");
        list(out, &sl.log_records, log_record)?;
        out.extend_from_slice(b"],\"schemaUrl\":");
        string(out, &sl.schema_url)?;
        out.push(b'}');
        Ok(())
    }

    fn scope(out: &mut Vec<u8>, s: &InstrumentationScope) -> Result {
        out.extend_from_slice(b"{\"name\":");
        string(out, &s.name)?;
        out.extend_from_slice(b",\"version\":");
        string(out, &s.version)?;
        out.extend_from_slice(b",\"attributes\":[");
        list(out, &s.attributes, key_value)?;
        out.extend_from_slice(b"],\"droppedAttributesCount\":");
        write_int(out, s.dropped_attributes_count);
        out.push(b'}');
        Ok(())
    }

    fn log_record(out: &mut Vec<u8>, log: &LogRecord) -> Result {
        if log.body.is_some() || log.severity_number != 0 || !log.trace_id.is_empty() || !log.span_id.is_empty() {
            return serde(out, log);
        }
        out.extend_from_slice(b"{\"timeUnixNano\":\"");
        write_int(out, log.time_unix_nano);
        out.extend_from_slice(b"\",\"observedTimeUnixNano\":\"");
        write_int(out, log.observed_time_unix_nano);
        out.extend_from_slice(b"\",\"severityNumber\":0,\"severityText\":");
        string(out, &log.severity_text)?;
        out.extend_from_slice(b",\"body\":null,\"attributes\":[");
        list(out, &log.attributes, key_value)?;
        out.extend_from_slice(b"],\"droppedAttributesCount\":");
        write_int(out, log.dropped_attributes_count);
        out.extend_from_slice(b",\"flags\":");
        write_int(out, log.flags);
        out.extend_from_slice(b",\"traceId\":\"\",\"spanId\":\"\",\"eventName\":");
        string(out, &log.event_name)?;
        out.push(b'}');
        Ok(())
    }

    fn key_value(out: &mut Vec<u8>, kv: &KeyValue) -> Result {
        let Some(value) = &kv.value else {
            return serde(out, kv);
        };
        out.extend_from_slice(b"{\"key\":");
        string(out, &kv.key)?;
        out.extend_from_slice(b",\"value\":");
        any_value(out, value)?;
        out.push(b'}');
        Ok(())
    }

    fn any_value(out: &mut Vec<u8>, v: &AnyValue) -> Result {
        match &v.value {
            Some(Value::StringValue(s)) => {
                out.extend_from_slice(b"{\"stringValue\":");
                string(out, s)?;
            }
            Some(Value::IntValue(i)) => {
                out.extend_from_slice(b"{\"intValue\":\"");
                write_int(out, *i);
                out.push(b'"');
            }
            Some(Value::BoolValue(b)) => {
                out.extend_from_slice(if *b { b"{\"boolValue\":true" } else { b"{\"boolValue\":false" });
            }
            Some(Value::ArrayValue(a)) => {
                out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
                list(out, &a.values, any_value)?;
                out.extend_from_slice(b"]}");
            }
            Some(Value::KvlistValue(l)) => {
                out.extend_from_slice(b"{\"kvlistValue\":{\"values\":[");
                list(out, &l.values, key_value)?;
                out.extend_from_slice(b"]}");
            }
            _ => return serde(out, v),
        }
        out.push(b'}');
        Ok(())
    }
}
