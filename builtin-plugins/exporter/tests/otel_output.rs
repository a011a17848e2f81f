//! OTel output (`format: otel`): records decoded with the OTLP protos carry the JSON
//! format's fields as attributes and the policy results in the `sf-processor` scope.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::Value as Json;
use sysflow_exporter::{
    opentelemetry_proto::tonic::{
        common::v1::{any_value::Value, AnyValue, KeyValue},
        logs::v1::LogsData,
    },
    JsonEncoder, OtelEncoder, OtelEncoding,
};
use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, ROption},
    opflags::OP_EXEC,
    Container, Event, FlatRecord, Header, Oid, PolicyContext, Process, ProcessEvent, RuleMatch,
};

const CHILD: Oid = Oid { create_ts: 1647543894672412244, hpid: 20 };

fn record(matched: &[(&str, &[&str])], action_tags: &[&str]) -> FlatRecord {
    let header = RArc::new(Header { version: 4, exporter: "node1".into(), ip: "10.0.0.1".into(), filename: "t".into() });
    let ev = ProcessEvent { proc_oid: CHILD, ts: 1647543894672412999, tid: 20, op_flags: OP_EXEC, ..ProcessEvent::default() };
    let mut r = FlatRecord::new(header, Event::Process(ev));
    let proc = Process { oid: CHILD, exe: "/bin/ls".into(), exe_args: "-la".into(), uid: 1000, ..Process::default() };
    r.ancestry = RArc::new(vec![RArc::new(proc)].into());
    r.container = ROption::RSome(RArc::new(Container {
        id: "47a2351d842b".into(),
        name: "web".into(),
        image: "nginx".into(),
        ..Container::default()
    }));
    r.context = PolicyContext {
        matched: matched
            .iter()
            .map(|(name, tags)| {
                RArc::new(RuleMatch {
                    name: (*name).into(),
                    priority: 2,
                    tags: tags.iter().map(|t| (*t).into()).collect(),
                    ..RuleMatch::default()
                })
            })
            .collect(),
        tags: action_tags.iter().map(|t| (*t).into()).collect(),
    };
    r
}

fn strings(v: &AnyValue) -> Vec<String> {
    match &v.value {
        Some(Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|x| match &x.value {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("not a string: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, AnyValue> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default())).collect()
}

fn decode_proto(r: &FlatRecord) -> LogsData {
    let mut out = vec![0xAA]; // bytes already in the buffer stay untouched
    OtelEncoder::new(OtelEncoding::Proto).encode(r, &mut out).expect("encode");
    assert_eq!(out[0], 0xAA);
    LogsData::decode(&out[1..]).expect("decodes as OTLP LogsData")
}

#[test]
fn policy_results_are_in_the_sf_processor_scope() {
    let r = record(&[("Exec in container", &["mitre:T1059", "container"]), ("Any exec", &["container"])], &["action-tag"]);
    let logs = decode_proto(&r);
    assert_eq!(logs.resource_logs.len(), 1);
    let rl = &logs.resource_logs[0];
    let resource = attrs(&rl.resource.as_ref().expect("resource").attributes);
    assert_eq!(resource["host.name"].value, Some(Value::StringValue("node1".into())));
    assert_eq!(rl.scope_logs.len(), 1);
    let scope = rl.scope_logs[0].scope.as_ref().expect("scope");
    assert_eq!(scope.name, "sf-processor");
    let scope_attrs = attrs(&scope.attributes);
    assert_eq!(strings(&scope_attrs["sf.processor.rules"]), ["Exec in container", "Any exec"]);
    assert_eq!(strings(&scope_attrs["sf.processor.tags"]), ["action-tag", "mitre:T1059", "container"], "distinct");
    assert_eq!(rl.scope_logs[0].log_records.len(), 1);
    let log = &rl.scope_logs[0].log_records[0];
    assert_eq!(log.time_unix_nano, 1647543894672412999);
    let a = attrs(&log.attributes);
    assert_eq!(a["sf.type"].value, Some(Value::StringValue("PE".into())));
    assert_eq!(a["sf.proc.exe"].value, Some(Value::StringValue("/bin/ls".into())));
    assert_eq!(a["sf.proc.uid"].value, Some(Value::IntValue(1000)));
    assert_eq!(a["sf.proc.tty"].value, Some(Value::BoolValue(false)));
    assert_eq!(strings(&a["sf.opflags"]), ["EXEC"]);
    assert_eq!(a["sf.container.name"].value, Some(Value::StringValue("web".into())));
    assert!(!a.contains_key("sf.policies") && !a.contains_key("sf.tags"), "policy results only in the scope");
}

#[test]
fn unmatched_record_has_no_policy_attributes() {
    let logs = decode_proto(&record(&[], &[]));
    let scope = logs.resource_logs[0].scope_logs[0].scope.as_ref().expect("scope");
    assert_eq!(scope.name, "sf-processor");
    assert!(scope.attributes.is_empty(), "{:?}", scope.attributes);
}

/// Every leaf of the JSON format appears as an attribute with the same value.
#[test]
fn attributes_are_the_json_fields() {
    let r = record(&[("R", &["t"])], &[]);
    let mut json = Vec::new();
    JsonEncoder::new().encode(&r, &mut json);
    let json: Json = serde_json::from_slice(&json).expect("json");
    let logs = decode_proto(&r);
    let a = attrs(&logs.resource_logs[0].scope_logs[0].log_records[0].attributes);
    let mut leaves = 0;
    for (section, value) in json.as_object().expect("object") {
        if section == "policies" || section == "tags" {
            continue;
        }
        let fields: Vec<(String, &Json)> = match value.as_object() {
            Some(m) => m.iter().map(|(k, v)| (format!("sf.{section}.{k}"), v)).collect(),
            None => vec![(format!("sf.{section}"), value)],
        };
        for (key, v) in fields {
            let got = a.get(&key).unwrap_or_else(|| panic!("attribute {key} missing"));
            let expect = match v {
                Json::String(s) => Value::StringValue(s.clone()),
                Json::Bool(b) => Value::BoolValue(*b),
                Json::Number(n) => Value::IntValue(n.as_i64().expect("int")),
                Json::Array(_) => continue, // arrays checked above (opflags)
                other => panic!("unexpected JSON value {other}"),
            };
            assert_eq!(got.value.as_ref(), Some(&expect), "{key}");
            leaves += 1;
        }
    }
    assert!(leaves > 20, "only {leaves} fields compared");
}

#[test]
fn json_encoding_is_otlp_json() {
    let r = record(&[("Exec in container", &["mitre:T1059"])], &[]);
    let mut out = Vec::new();
    OtelEncoder::new(OtelEncoding::Json).encode(&r, &mut out).expect("encode");
    let text = String::from_utf8(out).expect("utf8");
    assert!(!text.contains('\n'), "one line per record");
    let raw: Json = serde_json::from_str(&text).expect("JSON");
    // OTLP/JSON: camelCase names, 64-bit integers as strings.
    let log = &raw["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(log["timeUnixNano"], "1647543894672412999", "{text}");
    let logs: LogsData = serde_json::from_str(&text).expect("deserialises as LogsData");
    let scope = logs.resource_logs[0].scope_logs[0].scope.as_ref().expect("scope");
    assert_eq!(strings(&attrs(&scope.attributes)["sf.processor.rules"]), ["Exec in container"]);
    assert_eq!(logs, decode_proto(&r), "JSON and protobuf carry the same message");
}

/// The encoder keeps its message between records: a record without policy results after
/// one with them, or with fewer attributes, carries nothing of the earlier one.
#[test]
fn reused_message_keeps_nothing_of_the_previous_record() {
    let matched = record(&[("R", &["t"])], &["a"]);
    let mut plain = record(&[], &[]);
    plain.container = ROption::RNone;
    for encoding in [OtelEncoding::Proto, OtelEncoding::Json] {
        let mut reused = OtelEncoder::new(encoding);
        let mut out = Vec::new();
        for r in [&matched, &plain, &matched] {
            out.clear();
            reused.encode(r, &mut out).expect("encode");
            let mut fresh = Vec::new();
            OtelEncoder::new(encoding).encode(r, &mut fresh).expect("encode");
            assert_eq!(out, fresh, "{encoding:?}");
        }
    }
    let logs = OtelEncoder::new(OtelEncoding::Proto).logs_data(&plain).expect("message");
    let a = attrs(&logs.resource_logs[0].scope_logs[0].log_records[0].attributes);
    assert!(!a.keys().any(|k| k.starts_with("sf.container.")), "{:?}", a.keys());
}
