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
    /// The attribute lists of the other record types, by type number: each type has its
    /// own field layout, so a slot keeps its value kind (and its buffers) from one record
    /// of a type to the next.
    parked: Vec<Vec<KeyValue>>,
    /// The type number of the attributes in `logs`.
    current_type: usize,
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
            parked: Vec::new(),
            current_type: 0,
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
        let rtype = record.record_type() as usize;
        if rtype != self.current_type {
            // `parked[current_type]` always holds an empty list: it takes the current
            // type's attributes, and that empty list goes to where the new type's came from.
            if self.parked.len() <= rtype.max(self.current_type) {
                self.parked.resize_with(rtype.max(self.current_type) + 1, Vec::new);
            }
            std::mem::swap(&mut log.attributes, &mut self.parked[self.current_type]);
            std::mem::swap(&mut log.attributes, &mut self.parked[rtype]);
            self.current_type = rtype;
        }
        let mut slots = Slots { attributes: &mut log.attributes, used: 0, spare: &mut self.spare };
        self.key.clear();
        self.key.push_str(ATTRIBUTE_PREFIX);
        // Streamed straight into the kept attributes: no JSON tree, no new strings.
        let parsed = std::str::from_utf8(&self.json_text)
            .map_err(|e| e.to_string())
            .and_then(|text| Scan { text, pos: 0 }.fields(&mut slots, &mut self.key, true));
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
                let start = out.len();
                encode_proto(&self.logs, out).map_err(|e| {
                    out.truncate(start);
                    format!("otel: protobuf encoding failed: {e}")
                })
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

/// Appends the `LogsData` message holding one OTel record (`resource_logs`: a protobuf
/// `ResourceLogs`, as [`sysflow_plugin_api::OtelRecord`] carries it) to `out`, serialised as
/// `encoding`; on error `out` is left unchanged.
///
/// Protobuf needs no decoding: a `LogsData` with one `ResourceLogs` is that message framed as
/// field 1, so the record's bytes are copied as they are.
pub fn encode_resource_logs(resource_logs: &[u8], encoding: OtelEncoding, out: &mut Vec<u8>) -> Result<(), String> {
    match encoding {
        OtelEncoding::Proto => {
            out.reserve(1 + prost::length_delimiter_len(resource_logs.len()) + resource_logs.len());
            out.push(0x0a);
            let start = out.len() - 1;
            prost::encode_length_delimiter(resource_logs.len(), out).map_err(|e| {
                out.truncate(start);
                format!("otel: protobuf framing failed: {e}")
            })?;
            out.extend_from_slice(resource_logs);
            Ok(())
        }
        OtelEncoding::Json => {
            let decoded = ResourceLogs::decode(resource_logs)
                .map_err(|e| format!("otel: record is not a protobuf ResourceLogs: {e}"))?;
            let logs = LogsData { resource_logs: vec![decoded] };
            let start = out.len();
            otlp_json::write_logs(out, &logs).map_err(|e| {
                out.truncate(start);
                format!("otel: JSON encoding failed: {e}")
            })
        }
    }
}

/// Protobuf of `logs`, byte for byte prost's `encode`, with the log record sized once:
/// prost sizes a nested message again at each level it is framed in, and the log record
/// (nearly all the bytes) sits four levels down. The three outer levels of the one-record
/// layout are framed here; any other layout is left to prost.
fn encode_proto(logs: &LogsData, out: &mut Vec<u8>) -> Result<(), prost::EncodeError> {
    // Field 1 / field 2, wire type 2 (length-delimited).
    const FIELD_1: u8 = 0x0a;
    const FIELD_2: u8 = 0x12;
    let [rl] = logs.resource_logs.as_slice() else { return logs.encode(out) };
    let (Some(resource), [sl], true) = (&rl.resource, rl.scope_logs.as_slice(), rl.schema_url.is_empty()) else {
        return logs.encode(out);
    };
    let (Some(scope), [log], true) = (&sl.scope, sl.log_records.as_slice(), sl.schema_url.is_empty()) else {
        return logs.encode(out);
    };
    let framed = |len: usize| 1 + prost::length_delimiter_len(len) + len;
    let (log_len, scope_len, resource_len) = (log.encoded_len(), scope.encoded_len(), resource.encoded_len());
    let sl_len = framed(scope_len) + framed(log_len);
    let rl_len = framed(resource_len) + framed(sl_len);
    out.reserve(framed(rl_len));
    out.push(FIELD_1);
    prost::encode_length_delimiter(rl_len, out)?;
    out.push(FIELD_1);
    resource.encode_length_delimited(out)?;
    out.push(FIELD_2);
    prost::encode_length_delimiter(sl_len, out)?;
    out.push(FIELD_1);
    scope.encode_length_delimited(out)?;
    out.push(FIELD_2);
    prost::encode_length_delimiter(log_len, out)?;
    log.encode(out)
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

/// Makes `v` the string `s`, reusing its string buffer when it already holds one.
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

/// A reader of the JSON encoder's compact output (no whitespace, integers only), which
/// streams it into attribute slots.
struct Scan<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() != Some(b) {
            return Err(self.error(&format!("expected '{}'", b as char)));
        }
        self.pos += 1;
        Ok(())
    }

    /// Consumes `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        self.pos += found as usize;
        found
    }

    /// A string; borrowed from the text unless it has escapes (rare: serde_json decodes those).
    fn string(&mut self) -> Result<std::borrow::Cow<'a, str>, String> {
        let start = self.pos;
        self.expect(b'"')?;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        loop {
            let Some(at) = bytes.get(self.pos..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) else {
                return Err(self.error("unterminated string"));
            };
            self.pos += at + 1;
            if bytes[self.pos - 1] == b'"' {
                break;
            }
            // A backslash: the escaped character (or the `u` of `\uXXXX`) is never a quote.
            escaped = true;
            self.pos += 1;
        }
        let quoted = self.text.get(start..self.pos).ok_or_else(|| self.error("string not on a character boundary"))?;
        if escaped {
            serde_json::from_str(quoted).map(std::borrow::Cow::Owned).map_err(|e| format!("{e} in string at byte {start}"))
        } else {
            Ok(std::borrow::Cow::Borrowed(&quoted[1..quoted.len() - 1]))
        }
    }

    /// Streams an object into `slots`: nested objects (the JSON sections) become dotted keys
    /// under `key`; at the top level, the policy results (`policies`, `tags`) are skipped
    /// because they go to the scope, as upstream's contextualiser puts them.
    fn fields(&mut self, slots: &mut Slots, key: &mut String, top: bool) -> Result<(), String> {
        self.expect(b'{')?;
        let base = key.len();
        if !self.eat(b'}') {
            loop {
                let name = self.string()?;
                self.expect(b':')?;
                if top && (name == "policies" || name == "tags") {
                    self.value(&mut AnyValue::default())?;
                } else {
                    key.truncate(base);
                    key.push_str(&name);
                    if self.peek() == Some(b'{') {
                        key.push('.');
                        self.fields(slots, key, false)?;
                    } else {
                        self.value(slots.next(key))?;
                    }
                }
                if !self.eat(b',') {
                    break;
                }
            }
            self.expect(b'}')?;
        }
        key.truncate(base);
        if top && self.pos != self.text.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(())
    }

    /// Overwrites `v` in place with the next value, reusing its string and array buffers;
    /// objects inside arrays (pod services) become key-value lists.
    fn value(&mut self, v: &mut AnyValue) -> Result<(), String> {
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                set_str(v, &s);
            }
            Some(b'[') => {
                self.pos += 1;
                let values = array_values(v);
                let mut used = 0;
                if !self.eat(b']') {
                    loop {
                        if used == values.len() {
                            values.push(AnyValue::default());
                        }
                        self.value(&mut values[used])?;
                        used += 1;
                        if !self.eat(b',') {
                            break;
                        }
                    }
                    self.expect(b']')?;
                }
                values.truncate(used);
            }
            Some(b'{') => {
                // Rare (pod services only): built afresh.
                self.pos += 1;
                let mut values = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        let k = self.string()?.into_owned();
                        self.expect(b':')?;
                        let mut item = AnyValue::default();
                        self.value(&mut item)?;
                        values.push(kv(k, item));
                        if !self.eat(b',') {
                            break;
                        }
                    }
                    self.expect(b'}')?;
                }
                v.value = Some(Value::KvlistValue(KeyValueList { values }));
            }
            Some(b't') | Some(b'f') | Some(b'n') => {
                let rest = self.text.get(self.pos..).unwrap_or_default();
                let (value, len) = if rest.starts_with("true") {
                    (Some(Value::BoolValue(true)), 4)
                } else if rest.starts_with("false") {
                    (Some(Value::BoolValue(false)), 5)
                } else if rest.starts_with("null") {
                    (None, 4)
                } else {
                    return Err(self.error("unknown literal"));
                };
                self.pos += len;
                v.value = value;
            }
            _ => {
                let bytes = self.text.as_bytes();
                let start = self.pos;
                self.pos += bytes[start..].iter().take_while(|b| b.is_ascii_digit() || **b == b'-').count();
                let number = self.text.get(start..self.pos).unwrap_or_default();
                v.value = Some(match number.parse::<i64>() {
                    Ok(i) => Value::IntValue(i),
                    Err(_) => int_value(number.parse::<u64>().map_err(|e| format!("number {number:?} at byte {start}: {e}"))?),
                });
            }
        }
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
