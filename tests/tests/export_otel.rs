//! `format: otel` on a real trace with a policy: every exported message decodes with the OTLP
//! protos, and the `sf-processor` scope carries exactly the rule names and (distinct) tags
//! that the JSON format of the same run reports, record for record. Once through a file
//! (OTLP/JSON lines), once through a real Kafka-protocol broker (protobuf, read back with an
//! independent client).

use std::path::Path;

use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue},
    logs::v1::LogsData,
};
use prost::Message;
use serde_json::{json, Value as Json};
use sysflow_e2e_tests::{
    kafka_broker::{Broker, BrokerKind},
    output_text, read_json_lines, run_sfprocessor_in, shared_data, write_pipeline,
};

const TRACE: &str = "mon.1531776712.sf";
const RULES: &str = "\
- rule: Exec seen
  desc: any exec
  condition: sf.type = PE and sf.opflags = EXEC
  priority: low
  tags: [exec, mitre:T1059]
- rule: Root exec
  desc: exec as root
  condition: sf.type = PE and sf.opflags = EXEC and sf.proc.uid = 0
  priority: medium
  tags: [exec, root]
";

/// Rule names and distinct tags (first-seen order) of one record.
type Results = (Vec<String>, Vec<String>);

fn pipeline(dir: &Path, exporter: Json) -> std::path::PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::write(policies.join("exec.yaml"), RULES).expect("write rules");
    let cfg = json!({"pipeline": [
        {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
        {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "alert",
         "policies": policies.to_string_lossy()},
        exporter]});
    write_pipeline(dir, "p.json", &cfg)
}

fn run(dir: &Path, exporter: Json, trace: &Path) {
    let cfg = pipeline(dir, exporter);
    let out = run_sfprocessor_in(dir, &["-config", &cfg.to_string_lossy(), &trace.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
}

/// What the JSON format says about each record: `policies[].id` and the distinct `tags`.
fn json_results(dir: &Path, trace: &Path) -> Vec<Results> {
    let path = dir.join("alerts.json");
    run(dir, json!({"processor": "exporter", "in": "evt eventchan", "export": "file", "format": "json",
                    "file.path": path.to_string_lossy()}), trace);
    read_json_lines(&path)
        .iter()
        .map(|l| {
            let rules = l["policies"].as_array().expect("policies").iter().map(|p| p["id"].as_str().expect("id").to_string()).collect();
            let mut tags: Vec<String> = Vec::new();
            for t in l["tags"].as_array().expect("tags").iter().filter_map(Json::as_str) {
                if !tags.iter().any(|x| x == t) {
                    tags.push(t.to_string());
                }
            }
            (rules, tags)
        })
        .collect()
}

fn strings(v: &AnyValue) -> Vec<String> {
    let Some(Value::ArrayValue(a)) = &v.value else { panic!("not an array: {v:?}") };
    a.values
        .iter()
        .map(|x| match &x.value {
            Some(Value::StringValue(s)) => s.clone(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The policy results of one decoded message, checking its shape on the way.
fn otel_results(logs: &LogsData) -> Results {
    assert_eq!(logs.resource_logs.len(), 1, "one ResourceLogs per record");
    let scope_logs = &logs.resource_logs[0].scope_logs;
    assert_eq!(scope_logs.len(), 1);
    let scope = scope_logs[0].scope.as_ref().expect("scope");
    assert_eq!(scope.name, "sf-processor");
    let log = &scope_logs[0].log_records[0];
    let attr = |k: &str| log.attributes.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.clone());
    assert_eq!(attr("sf.type").and_then(|v| v.value), Some(Value::StringValue("PE".into())));
    let scope_attr = |k: &str| {
        let kv = scope.attributes.iter().find(|kv| kv.key == k).unwrap_or_else(|| panic!("no {k}"));
        strings(kv.value.as_ref().expect("value"))
    };
    (scope_attr("sf.processor.rules"), scope_attr("sf.processor.tags"))
}

fn check(expected: &[Results], got: &[Results]) {
    assert!(expected.len() > 10, "the rules must match the trace ({} alerts)", expected.len());
    assert!(expected.iter().any(|(r, _)| r.len() == 2), "some record must match both rules");
    assert_eq!(got.len(), expected.len(), "one OTel message per alert");
    assert_eq!(got, expected, "rule names and tags, record for record");
}

#[test]
fn otel_file_lines_carry_the_rules_and_tags() {
    let Some(data) = shared_data() else { return };
    let trace = data.join("traces").join(TRACE);
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = json_results(dir.path(), &trace);
    let path = dir.path().join("alerts.otel");
    run(dir.path(), json!({"processor": "exporter", "in": "evt eventchan", "export": "file", "format": "otel",
                           "file.path": path.to_string_lossy()}), &trace);
    let text = std::fs::read_to_string(&path).expect("read");
    let got: Vec<Results> = text
        .lines()
        .map(|l| otel_results(&serde_json::from_str(l).unwrap_or_else(|e| panic!("not OTLP/JSON ({e}): {l}"))))
        .collect();
    check(&expected, &got);
}

#[test]
fn otel_kafka_messages_decode_as_otlp_protobuf() {
    let Some(data) = shared_data() else { return };
    let trace = data.join("traces").join(TRACE);
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = Broker::start(BrokerKind::Tansu, dir.path(), "otel_kafka_messages_decode_as_otlp_protobuf") else {
        return;
    };
    broker.create_topic("otel-out", 1);
    let expected = json_results(dir.path(), &trace);
    run(dir.path(), json!({"processor": "exporter", "in": "evt eventchan", "export": "kafka", "format": "otel",
                           "kafka.config": {"bootstrap.servers": broker.bootstrap}, "kafka.topic": "otel-out"}), &trace);
    let got: Vec<Results> = broker
        .read_all("otel-out", 1)
        .iter()
        .map(|bytes| otel_results(&LogsData::decode(bytes.as_slice()).expect("OTLP LogsData protobuf")))
        .collect();
    check(&expected, &got);
}
