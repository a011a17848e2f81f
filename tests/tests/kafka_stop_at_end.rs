//! `kafka.stop.at.end`, on a real broker: a consumer reads a topic whose partitions are
//! partly empty (one node's records land in one partition of four) to its end and exits by
//! itself with status 0, its alerts equal a file run over the same trace, and reaching the
//! end of a partition — news, not a failure — logs no warning.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use sysflow_e2e_tests::{
    kafka_broker::{Broker, BrokerKind},
    read_json_lines, sfprocessor_bin, workspace_root, write_pipeline,
};
use sysflow_tracegen::{GenConfig, Scenario, TraceWriter};

#[test]
fn a_consumer_with_stop_at_end_reads_every_partition_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = Broker::start(BrokerKind::Tansu, dir.path(), "kafka_stop_at_end") else { return };
    broker.create_topic("sysflow", 4);
    let trace = dir.path().join("node.sf");
    let config = GenConfig { records: 20_000, seed: 3, scenario: Scenario::Attack, ..Default::default() };
    let mut w = TraceWriter::create(&trace).expect("create trace");
    sysflow_tracegen::generate(&config, |r| w.write(&r).expect("write trace"));
    w.finish().expect("finish trace");

    let policies = workspace_root().join("config/policies");
    let stages = |input: &str, out: &std::path::Path| {
        json!([
            {"processor": "sysflowreader", "in": input, "out": "flat flattenerchan"},
            {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "policies": policies.to_string_lossy(), "mode": "alert"},
            {"processor": "exporter", "in": "evt eventchan", "export": "file", "file.path": out.to_string_lossy()}])
    };
    let run = |args: &[&str]| {
        let out = Command::new(sfprocessor_bin()).args(args).stdin(Stdio::null()).output().expect("spawn sfprocessor");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let single = dir.path().join("single.json");
    let cfg = write_pipeline(dir.path(), "single.pipeline.json", &json!({"pipeline": stages("sysflow sysflowchan", &single)}));
    let (code, log) = run(&["-config", &cfg.to_string_lossy(), &trace.to_string_lossy()]);
    assert_eq!(code, Some(0), "{log}");
    let expected = read_json_lines(&single);
    assert!(expected.len() > 10, "the attack scenario raises alerts: {}", expected.len());

    let edge = write_pipeline(
        dir.path(),
        "edge.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "kafka", "format": "sysflow",
             "kafka.topic": "sysflow", "kafka.config": {"bootstrap.servers": broker.bootstrap}}]}),
    );
    let (code, log) = run(&["-config", &edge.to_string_lossy(), &trace.to_string_lossy()]);
    assert_eq!(code, Some(0), "{log}");

    let central = dir.path().join("central.json");
    let cfg = write_pipeline(
        dir.path(),
        "central.pipeline.json",
        &json!({
            "drivers": [{"driver": "kafka", "out": "sysflow sysflowchan", "kafka.stop.at.end": "true", "kafka.topics": ["sysflow"],
                         "kafka.config": {"bootstrap.servers": broker.bootstrap, "group.id": "once", "session.timeout.ms": 6000}}],
            "pipeline": stages("sysflow sysflowchan", &central),
        }),
    );
    let start = Instant::now();
    let (code, log) = run(&["-config", &cfg.to_string_lossy(), "-driver", "kafka"]);
    assert_eq!(code, Some(0), "{log}");
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
    assert!(log.contains("every assigned partition read to its end"), "{log}");
    assert!(!log.contains("[Warn]"), "reaching the end of a partition is not a warning:\n{log}");
    assert!(log.contains("all records processed"), "{log}");
    assert_eq!(read_json_lines(&central), expected, "the consumer's alerts are the file run's");
}
