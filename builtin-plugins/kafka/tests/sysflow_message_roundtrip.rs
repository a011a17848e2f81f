//! `sysflow` messages decode on their own: every shared trace and a generated one, read
//! directly (decode → reader → JSON) and through messages (reader → message builder →
//! decode_message → a fresh reader per message → JSON), give the same JSON lines.

use std::path::{Path, PathBuf};

use sysflow_avro_drivers::{DatumDecoder, TraceReader};
use sysflow_exporter::JsonEncoder;
use sysflow_kafka::sysflow_message::{decode_message, node_key, MessageBuilder, MAX_EVENTS_PER_MESSAGE, MAX_MESSAGE_BYTES};
use sysflow_plugin_api::{
    abi_stable::std_types::RStr, abi_stable::std_types::RVec, FlatRecord, Host, LogLevel, SysFlowRecord,
};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SYSFLOW_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join("traces").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data not found at {}", dir.display());
    }
    eprintln!("skipping: test data not found at {}", dir.display());
    None
}

/// Flat records of a record stream, read in pipeline-sized batches.
fn flat_records(records: Vec<SysFlowRecord>) -> Vec<FlatRecord> {
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "roundtrip"));
    let mut out = RVec::new();
    for chunk in records.chunks(1000) {
        reader.read_records(chunk.iter().cloned(), &mut out);
    }
    out.into_iter().collect()
}

fn json(records: &[FlatRecord]) -> Vec<String> {
    let mut enc = JsonEncoder::new();
    records
        .iter()
        .map(|r| {
            let mut b = Vec::new();
            enc.encode(r, &mut b);
            String::from_utf8(b).expect("utf-8")
        })
        .collect()
}

/// The records as a consumer sees them: one message per node per batch of 1000, each
/// decoded and read by a reader that saw nothing before it; and each message's size.
fn through_messages(flat: &[FlatRecord]) -> (Vec<FlatRecord>, Vec<usize>) {
    let decoder = DatumDecoder::v5();
    let mut out = Vec::new();
    let mut messages = Vec::new();
    for batch in flat.chunks(1000) {
        let mut builder = MessageBuilder::new();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        for r in batch {
            assert!(!node_key(&r.header).is_empty() || r.header.exporter.is_empty());
            builder.push(r);
            if builder.is_full() {
                pending.push(builder.take());
            }
        }
        pending.push(builder.take());
        for m in pending.into_iter().filter(|m| !m.is_empty()) {
            messages.push(m.len());
            let mut records = Vec::new();
            decode_message(&decoder, &m, &mut records).expect("message decodes");
            let events = records.iter().filter(|r| matches!(r, SysFlowRecord::Event(_))).count();
            assert!(events <= MAX_EVENTS_PER_MESSAGE);
            let mut reader = SysFlowReader::with_host(Host::new(quiet, "consumer"));
            let mut flat = RVec::new();
            reader.read_records(records, &mut flat);
            assert_eq!(flat.len(), events, "every event of a message resolves to one flat record");
            out.extend(flat);
        }
    }
    (out, messages)
}

fn assert_same(name: &str, records: Vec<SysFlowRecord>) {
    let direct = flat_records(records);
    let (consumed, messages) = through_messages(&direct);
    let (a, b) = (json(&direct), json(&consumed));
    assert_eq!(a.len(), b.len(), "{name}: record count");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "{name}: record {i} differs after the sysflow message round trip");
    }
    assert!(a.is_empty() || !messages.is_empty());
}

/// Processes with long arguments close a message at MAX_MESSAGE_BYTES, before it holds a
/// whole batch: every message stays under librdkafka's default `message.max.bytes`, and the
/// split messages still decode on their own into the same records.
#[test]
fn long_entities_split_a_batch_by_bytes() {
    let config = sysflow_tracegen::GenConfig { records: 5_000, ..Default::default() };
    let mut records = Vec::new();
    sysflow_tracegen::generate(&config, |mut r| {
        if let SysFlowRecord::Process(p) = &mut r {
            p.exe_args = format!("{} {}", p.exe_args, "x".repeat(32 * 1024)).into();
        }
        records.push(r)
    });
    let direct = flat_records(records);
    let (consumed, messages) = through_messages(&direct);
    assert_eq!(json(&direct), json(&consumed), "the split messages round trip");
    let batches = direct.len().div_ceil(1000);
    assert!(messages.len() > 2 * batches, "{} messages for {batches} batches: no split by bytes", messages.len());
    assert!(messages.iter().any(|&m| m >= MAX_MESSAGE_BYTES), "{messages:?}");
    assert!(messages.iter().all(|&m| m < 1_000_000), "a message over message.max.bytes: {messages:?}");
}

#[test]
fn generated_trace_round_trips() {
    let config = sysflow_tracegen::GenConfig { records: 20_000, ..Default::default() };
    let mut records = Vec::new();
    sysflow_tracegen::generate(&config, |r| records.push(r));
    assert_same("generated", records);
}

#[test]
fn every_shared_trace_round_trips() {
    let Some(data) = data_dir() else { return };
    let mut traces: Vec<PathBuf> = std::fs::read_dir(data.join("traces"))
        .expect("traces dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sf"))
        .collect();
    traces.sort();
    assert!(!traces.is_empty());
    for path in traces {
        let records: Vec<SysFlowRecord> = TraceReader::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .filter_map(Result::ok)
            .collect();
        assert_same(&path.display().to_string(), records);
    }
}
