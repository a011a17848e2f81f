//! The Kafka exporter across a broker outage: the broker is stopped mid-run and started
//! again. In block mode (default) no record is lost; in drop mode the records missing from
//! the topic are exactly the exporter's `dropped` counter.
//!
//! Broker: noida-db, because it keeps its data in its data directory and so can be restarted
//! with the topic and what was already delivered (tansu is memory only).
//! The trace is written into a FIFO the file driver reads, a fifth before the outage and the
//! rest during it, so the exporter meets the outage with records still arriving and a
//! 3000-message queue: block mode must wait, drop mode must drop.

use std::{
    collections::HashMap,
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use nix::{sys::stat::Mode, unistd::mkfifo};
use serde_json::json;
use sysflow_e2e_tests::{
    kafka_broker::{Broker, BrokerKind},
    sfprocessor_bin, write_pipeline,
};
use sysflow_tracegen::{GenConfig, TraceWriter, WriterOptions};

const TOPIC: &str = "alerts";
const PARTITIONS: u32 = 2;
/// The producer queue (`queue.buffering.max.messages`), smaller than what arrives during the outage.
const QUEUE: u64 = 3000;

/// A generated trace as OCF bytes.
fn trace_bytes(records: u64) -> Vec<u8> {
    let config = GenConfig { records, seed: 3, ..Default::default() };
    let mut w = TraceWriter::new(Vec::new(), WriterOptions::default()).expect("trace writer");
    sysflow_tracegen::generate(&config, |r| w.write(&r).expect("write"));
    w.finish().expect("finish")
}

/// JSON records the file exporter writes for the same trace (the expected multiset).
fn expected_lines(dir: &Path, trace: &[u8]) -> Vec<String> {
    let path = dir.join("expected.sf");
    std::fs::write(&path, trace).expect("write trace");
    let out = dir.join("expected.json");
    let cfg = write_pipeline(
        dir,
        "expected.pipeline.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "format": "json", "file.path": out.to_string_lossy()}]}),
    );
    let run = Command::new(sfprocessor_bin())
        .args(["-config", &cfg.to_string_lossy(), &path.to_string_lossy()])
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stdout));
    std::fs::read_to_string(&out).expect("expected output").lines().map(str::to_string).collect()
}

/// Runs the exporter over a FIFO, stopping the broker between the two halves of the trace.
/// Returns the exporter's log.
fn run_with_outage(dir: &Path, broker: &mut Broker, trace: &[u8], queue_full: &str) -> (bool, String) {
    let fifo = dir.join(format!("in-{queue_full}.fifo"));
    mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
    let cfg = write_pipeline(
        dir,
        &format!("{queue_full}.pipeline.json"),
        &json!({"pipeline": [
            {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "kafka", "format": "json",
             "kafka.topic": TOPIC, "delivery.mode": queue_full,
             "kafka.config": {"bootstrap.servers": broker.bootstrap, "queue.buffering.max.messages": QUEUE,
                              "message.timeout.ms": 120000, "reconnect.backoff.max.ms": 200}}]}),
    );
    let child = Command::new(sfprocessor_bin())
        .args(["-log", "info", "-config", &cfg.to_string_lossy(), &fifo.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exporter");
    let mut input = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open fifo");
    // A fifth before the outage (fewer records than the queue holds), the rest during it.
    let first = trace.len() / 5;
    input.write_all(&trace[..first]).expect("write the first part");
    std::thread::sleep(Duration::from_secs(2));
    broker.stop();
    // In block mode the pipeline stops reading while the queue is full: write from a thread.
    let rest = trace[first..].to_vec();
    let writer = std::thread::spawn(move || {
        input.write_all(&rest).expect("write the rest");
    });
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    writer.join().expect("writer thread");
    let out = child.wait_with_output().expect("wait exporter");
    // The log, exit summary included, is on stderr (on stdout too under -logstdout).
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), log)
}

fn counter(log: &str, name: &str) -> u64 {
    let key = format!(" {name}=");
    log.lines()
        .filter_map(|l| {
            l.split(',').find_map(|part| part.strip_prefix(&key[..]).or_else(|| part.trim().strip_prefix(&key[1..])))
        })
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("counter {name} not in the exit summary:\n{log}"))
}

/// Expected records missing from what the topic holds (multiset difference).
fn missing(expected: &[String], got: &[String]) -> usize {
    let mut have: HashMap<&str, usize> = HashMap::new();
    for l in got {
        *have.entry(l.as_str()).or_insert(0) += 1;
    }
    expected
        .iter()
        .filter(|l| match have.get_mut(l.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .count()
}

fn outage(queue_full: &str) {
    let test = format!("kafka_export_outage ({queue_full})");
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut broker) = Broker::start(BrokerKind::Noida, dir.path(), &test) else { return };
    broker.create_topic(TOPIC, PARTITIONS);
    let trace = trace_bytes(12_000);
    let expected = expected_lines(dir.path(), &trace);
    let (ok, log) = run_with_outage(dir.path(), &mut broker, &trace, queue_full);
    let got = broker.read_all_text(TOPIC, PARTITIONS);
    let lost = missing(&expected, &got);
    let (sent, dropped, failed) = (counter(&log, "records_exported"), counter(&log, "records_dropped"), counter(&log, "delivery_failed"));
    eprintln!(
        "{test}: {} expected, {} in the topic, {lost} missing; sent={sent} dropped={dropped} failed={failed}",
        expected.len(),
        got.len()
    );
    assert!(ok, "exporter run failed:\n{log}");
    assert_eq!(failed, 0, "{log}");
    match queue_full {
        "block" => {
            assert_eq!(lost, 0, "block mode lost records across the outage:\n{log}");
            assert_eq!(dropped, 0);
            assert_eq!(sent as usize, expected.len());
        }
        _ => {
            assert!(dropped > 0, "the outage should have filled the {QUEUE}-message queue:\n{log}");
            // More than one queue's worth delivered: the queued messages went out after the restart.
            assert!(sent > QUEUE, "sent={sent}: delivery did not resume after the restart:\n{log}");
            assert_eq!(lost as u64, dropped, "missing records must equal the drop counter:\n{log}");
            assert_eq!(sent + dropped, expected.len() as u64);
        }
    }
}

#[test]
fn broker_outage_block_mode_loses_nothing() {
    outage("block");
}

#[test]
fn broker_outage_drop_mode_counts_every_missing_record() {
    outage("drop");
}
