//! Upstream 0.7's OTel pipeline on a real broker: OTLP `LogsData` messages in a topic ->
//! `otelkafka` driver -> policy engine (Falco rules over OTel attribute keys: a macro, a
//! list, `in`, `contains`, `exists`, a drop filter) -> exporter `format: otel`, `export:
//! kafka`, `kafka.encoding: proto`. The output topic is read with an independent client and
//! decoded with the OTLP protos: exactly the matching records arrive, each with the matched
//! rule names and tags in its `sf-processor` scope. A message that is not OTLP is counted
//! and skipped. Also the config check (OTel records into `format: json` are refused), the
//! `otelfile` driver and `-listrules`.
//!
//! Broker: tansu (consumer groups, `../shared/servers.md` §1a); `session.timeout.ms` is low
//! so the group join takes a second, not tens.

use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value as AnyKind, AnyValue, ArrayValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, LogsData, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message;
use serde_json::{json, Value};
use sysflow_e2e_tests::{
    kafka_broker::{Broker, BrokerKind},
    output_text, run_sfprocessor, workspace_root, write_pipeline,
};

const IN_TOPIC: &str = "otel-logs";
const OUT_TOPIC: &str = "downstream";

fn kv(key: &str, value: AnyKind) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(v: &str) -> AnyKind {
    AnyKind::StringValue(v.into())
}

/// One container process event, as an OTel collector's k8s/process enrichment writes it:
/// pod identity on the resource, the process on the log record.
fn event(id: &str, namespace: &str, pod: &str, exe: &str, cmdline: &str, user: &str, privileged: Option<bool>) -> ResourceLogs {
    let mut resource = vec![
        kv("k8s.namespace.name", s(namespace)),
        kv("k8s.pod.name", s(pod)),
        kv("k8s.node.name", s("worker-1")),
        kv("container.image.name", s("docker.io/library/nginx:1.25")),
    ];
    if let Some(p) = privileged {
        resource.push(kv("k8s.pod.privileged", AnyKind::BoolValue(p)));
    }
    ResourceLogs {
        resource: Some(Resource { attributes: resource, ..Default::default() }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope { name: "sysflow.process".into(), ..Default::default() }),
            log_records: vec![LogRecord {
                time_unix_nano: 1_733_366_400_000_000_000,
                attributes: vec![
                    kv("event.id", s(id)),
                    kv("process.executable.name", s(exe)),
                    kv("process.command_line", s(cmdline)),
                    kv("process.pid", AnyKind::IntValue(4242)),
                    kv("user.name", s(user)),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The messages produced: several records per message, one message that is not OTLP.
fn input() -> Vec<Vec<u8>> {
    let mut edge_tagged = event("e5", "dev", "builder-7", "make", "make -j4", "ci", Some(true));
    // An upstream stage already matched this record: its results are appended to.
    edge_tagged.scope_logs.push(ScopeLogs {
        scope: Some(InstrumentationScope {
            name: "sf-processor".into(),
            attributes: vec![kv(
                "sf.processor.rules",
                AnyKind::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s("edge rule")) }] }),
            )],
            ..Default::default()
        }),
        ..Default::default()
    });
    let messages = vec![
        LogsData {
            resource_logs: vec![
                event("e1", "kube-system", "coredns-5d", "bash", "bash -c cat /etc/shadow", "root", None),
                event("e2", "dev", "web-1", "bash", "bash", "alice", None),
            ],
        },
        LogsData {
            resource_logs: vec![
                event("e3", "prod", "api-2", "python3", "python3 /opt/dump.py --file /etc/shadow", "svc", Some(false)),
                event("e4", "prod", "api-2", "sh", "sh -c true", "kubelet-probe", None),
            ],
        },
        LogsData { resource_logs: vec![edge_tagged, event("e6", "prod", "api-3", "nginx", "nginx -g daemon off;", "www", None)] },
    ];
    let mut payloads: Vec<Vec<u8>> = messages.iter().map(|m| m.encode_to_vec()).collect();
    payloads.insert(1, b"not an OTLP message".to_vec());
    payloads
}

fn strings(kv: &KeyValue) -> Vec<String> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyKind::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(AnyKind::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("{} is not a string array: {other:?}", kv.key),
    }
}

/// (event.id, rules, tags) of one output record.
fn summary(rl: &ResourceLogs) -> (String, Vec<String>, Vec<String>) {
    let id = rl
        .scope_logs
        .iter()
        .flat_map(|sl| sl.log_records.iter())
        .flat_map(|l| l.attributes.iter())
        .find(|kv| kv.key == "event.id")
        .and_then(|kv| kv.value.as_ref().and_then(|v| v.value.as_ref()))
        .map(|v| match v {
            AnyKind::StringValue(s) => s.clone(),
            other => panic!("event.id {other:?}"),
        })
        .expect("the log record kept its attributes");
    let scopes: Vec<&InstrumentationScope> =
        rl.scope_logs.iter().filter_map(|sl| sl.scope.as_ref()).filter(|s| s.name == "sf-processor").collect();
    assert_eq!(scopes.len(), 1, "{id}: one sf-processor scope");
    let get = |key: &str| scopes[0].attributes.iter().find(|kv| kv.key == key).map(strings).unwrap_or_default();
    (id, get("sf.processor.rules"), get("sf.processor.tags"))
}

fn pipeline(broker: &str, exporter: Value) -> Value {
    json!({
        "pipeline": [
            {"processor": "policyengine", "in": "otel otelchan", "out": "evt eventchan", "language": "falco",
             "policies": workspace_root().join("config/otel-policies").to_string_lossy(), "config": "", "mode": "alert"},
            exporter
        ],
        "drivers": [
            {"driver": "otelkafka", "out": "otel otelchan",
             "kafka.config": {"bootstrap.servers": broker, "session.timeout.ms": "6000"},
             "kafka.topics": [IN_TOPIC], "kafka.encoding": "proto", "kafka.stop.at.end": "true"}
        ]
    })
}

#[test]
fn otel_logs_through_policies_to_kafka_carry_the_matched_rules_and_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = Broker::start(BrokerKind::Tansu, dir.path(), "otel_logs_through_policies_to_kafka") else {
        return;
    };
    broker.create_topic(IN_TOPIC, 1);
    broker.create_topic(OUT_TOPIC, 1);
    broker.produce(IN_TOPIC, &input());

    let exporter = json!({"processor": "exporter", "in": "evt eventchan", "format": "otel", "export": "kafka",
                          "kafka.config": {"bootstrap.servers": broker.bootstrap}, "kafka.topic": OUT_TOPIC,
                          "kafka.encoding": "proto"});
    let cfg = write_pipeline(dir.path(), "otel.json", &pipeline(&broker.bootstrap, exporter));
    let out = run_sfprocessor(&["-config", &cfg.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    let log = format!("{stdout}{stderr}");
    assert!(out.status.success(), "{log}");
    eprintln!("{log}");

    let got: Vec<(String, Vec<String>, Vec<String>)> = broker
        .read_all(OUT_TOPIC, 1)
        .iter()
        .flat_map(|m| {
            let logs = LogsData::decode(m.as_slice()).expect("each output message is a protobuf LogsData");
            assert_eq!(logs.resource_logs.len(), 1, "one record per message");
            logs.resource_logs.iter().map(summary).collect::<Vec<_>>()
        })
        .collect();
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // e2: dev namespace, no rule; e4: the liveness-probe filter; e6: nothing matches.
    let want = vec![
        (
            "e1".to_string(),
            v(&["Shell in sensitive namespace", "Read of shadow file"]),
            v(&["container", "shell", "mitre_execution", "filesystem", "mitre_credential_access"]),
        ),
        ("e3".to_string(), v(&["Read of shadow file"]), v(&["filesystem", "mitre_credential_access"])),
        ("e5".to_string(), v(&["edge rule", "Privileged pod process"]), v(&["k8s", "container"])),
    ];
    assert_eq!(got, want, "{log}");
    assert!(
        log.lines().any(|l| l.contains("(otelkafka): records in") && l.contains("bad_messages=1")),
        "the non-OTLP message is counted:\n{log}"
    );
}

#[test]
fn otel_records_are_refused_by_blocks_that_cannot_take_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |name: &str, exporter: Value, expect: &[&str]| {
        let cfg = write_pipeline(dir.path(), name, &pipeline("127.0.0.1:1", exporter));
        let out = run_sfprocessor(&["-test", "-config", &cfg.to_string_lossy()], &[]);
        let (stdout, stderr) = output_text(&out);
        let text = format!("{stdout}{stderr}");
        assert!(!out.status.success(), "{name} accepted:\n{text}");
        for e in expect {
            assert!(text.contains(e), "{name}: message lacks {e:?}:\n{text}");
        }
    };
    check(
        "json.json",
        json!({"processor": "exporter", "in": "evt eventchan", "format": "json", "export": "terminal"}),
        &["pipeline[1] (exporter)", "key 'format'", "OTel records", "not 'json'"],
    );
    check(
        "ecs-kafka.json",
        json!({"processor": "exporter", "in": "evt eventchan", "format": "ecs", "export": "kafka",
               "kafka.config": {"bootstrap.servers": "127.0.0.1:1"}}),
        &["pipeline[1] (exporter)", "key 'format'", "not 'ecs'"],
    );
    // The same pipeline with format otel passes.
    let cfg = write_pipeline(
        dir.path(),
        "ok.json",
        &pipeline("127.0.0.1:1", json!({"processor": "exporter", "in": "evt eventchan", "format": "otel"})),
    );
    let out = run_sfprocessor(&["-test", "-config", &cfg.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // A reader fed otelchan.
    let reader = json!({
        "pipeline": [{"processor": "sysflowreader", "in": "otel otelchan", "out": "flat flattenerchan"},
                     {"processor": "exporter", "in": "flat flattenerchan", "export": "null"}],
        "drivers": [{"driver": "otelkafka", "out": "otel otelchan",
                     "kafka.config": {"bootstrap.servers": "127.0.0.1:1"}, "kafka.topics": [IN_TOPIC]}]
    });
    let cfg = write_pipeline(dir.path(), "reader.json", &reader);
    let out = run_sfprocessor(&["-test", "-config", &cfg.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    let text = format!("{stdout}{stderr}");
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("pipeline[0] (sysflowreader): key 'in'") && text.contains("otelchan"), "{text}");
}

/// otelfile → policy engine (the shipped OTel policies, alert) → OTLP/JSON lines in `out`.
fn otelfile_pipeline(dir: &std::path::Path, out: &std::path::Path) -> std::path::PathBuf {
    write_pipeline(
        dir,
        "otelfile.json",
        &json!({
            "pipeline": [
                {"processor": "policyengine", "in": "otel otelchan", "out": "evt eventchan",
                 "policies": workspace_root().join("config/otel-policies").to_string_lossy(), "mode": "alert"},
                {"processor": "exporter", "in": "evt eventchan", "format": "otel", "export": "file",
                 "file.path": out.to_string_lossy()}
            ],
            "drivers": [{"driver": "otelfile", "out": "otel otelchan"}]
        }),
    )
}

/// `otelfile`: a directory of JSON arrays of ResourceLogs (read in name order) through the
/// same policies to OTLP/JSON lines in a file.
#[test]
fn otelfile_records_through_policies_to_otlp_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("logs");
    std::fs::create_dir(&input).expect("mkdir");
    let first = vec![
        event("f1", "kube-system", "etcd-0", "sh", "sh -c id", "root", None),
        event("f2", "dev", "web-1", "cat", "cat /etc/shadow", "alice", None),
    ];
    let second = vec![event("f3", "dev", "web-2", "ls", "ls /", "bob", None)];
    std::fs::write(input.join("a.json"), serde_json::to_vec(&first).expect("serialise")).expect("write");
    std::fs::write(input.join("b.json"), serde_json::to_vec(&second).expect("serialise")).expect("write");
    let out_file = dir.path().join("alerts.json");
    let cfg = otelfile_pipeline(dir.path(), &out_file);
    let out = run_sfprocessor(&["-config", &cfg.to_string_lossy(), &input.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let text = std::fs::read_to_string(&out_file).expect("output written");
    let got: Vec<(String, Vec<String>, Vec<String>)> = text
        .lines()
        .flat_map(|line| {
            let logs: LogsData = serde_json::from_str(line).expect("each line is an OTLP/JSON LogsData");
            logs.resource_logs.iter().map(summary).collect::<Vec<_>>()
        })
        .collect();
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            ("f1".to_string(), v(&["Shell in sensitive namespace"]), v(&["container", "shell", "mitre_execution"])),
            ("f2".to_string(), v(&["Read of shadow file"]), v(&["filesystem", "mitre_credential_access"])),
        ],
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("files=2") || stdout.contains("files=2"), "{stdout}{stderr}");
}

/// `otelfile` over a directory holding a file that is not OTLP/JSON: the bad file is
/// skipped, named and counted (`files_failed`), the others go through the policies; a
/// directory of only bad files fails the run, naming the directory.
#[test]
fn otelfile_skips_a_bad_file_of_a_directory_and_counts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("logs");
    std::fs::create_dir(&input).expect("mkdir");
    let shell = vec![event("g1", "kube-system", "etcd-0", "sh", "sh -c id", "root", None)];
    let shadow = vec![event("g3", "dev", "web-1", "cat", "cat /etc/shadow", "alice", None)];
    std::fs::write(input.join("a.json"), serde_json::to_vec(&shell).expect("serialise")).expect("write");
    std::fs::write(input.join("b.json"), b"[{\"resource\": {\"attributes\": [}]").expect("write");
    std::fs::write(input.join("c.json"), serde_json::to_vec(&shadow).expect("serialise")).expect("write");
    let out_file = dir.path().join("alerts.json");
    let cfg = otelfile_pipeline(dir.path(), &out_file);
    let out = run_sfprocessor(&["-config", &cfg.to_string_lossy(), &input.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "readable files make the run succeed\n{stdout}{stderr}");
    let ids: Vec<String> = std::fs::read_to_string(&out_file)
        .expect("output written")
        .lines()
        .flat_map(|line| {
            let logs: LogsData = serde_json::from_str(line).expect("each line is an OTLP/JSON LogsData");
            logs.resource_logs.iter().map(|rl| summary(rl).0).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, ["g1", "g3"], "both readable files went through the policies\n{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("[Warn]") && l.contains("b.json") && l.contains("file skipped")),
        "the bad file is named\n{stderr}"
    );
    assert!(stderr.contains("files=2") && stderr.contains("files_failed=1"), "{stderr}");
    assert!(!stderr.contains("all records processed"), "a skipped file is a loss\n{stderr}");

    std::fs::remove_file(input.join("a.json")).expect("rm");
    std::fs::remove_file(input.join("c.json")).expect("rm");
    let out = run_sfprocessor(&["-config", &cfg.to_string_lossy(), &input.to_string_lossy()], &[]);
    let (stdout, stderr) = output_text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("no readable OTel file in {}", input.display())), "{stderr}");
}

/// `-listrules` on the shipped OTel pipeline: the rules over attribute keys are listed as
/// enabled, with no "unknown attribute" (the SysFlow attribute table does not apply).
#[test]
fn listrules_shows_otel_rules_enabled() {
    let out = sysflow_e2e_tests::run_sfprocessor_in(
        &workspace_root(),
        &["-listrules", "-config", "config/pipeline.otel.json"],
        &[],
    );
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for rule in ["Shell in sensitive namespace", "Read of shadow file", "Privileged pod process"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("rule\t{rule}\t"))).unwrap_or_else(|| panic!("{rule} not listed:\n{stdout}"));
        assert!(line.contains("\t[otel]\t") && line.contains("\tenabled\t"), "{line}");
    }
    assert!(!stdout.contains("unknown attribute") && !stderr.contains("unknown attribute"), "{stdout}{stderr}");
}
