//! The `exporter` processor: configuration, buffering, delivery and error reporting.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use sysflow_exporter::{
    transport::{EncodedBatch, Transport, TransportError},
    Exporter,
};
use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, RStr},
    Batch, Event, FlatRecord, Header, Host, LogLevel, PluginConfig, Processor, ProcessEvent, SysFlowRecord,
};

extern "C" fn discard_log(_level: LogLevel, _instance: RStr<'_>, _message: RStr<'_>) {}

fn host() -> Host {
    Host::new(discard_log, "exporter")
}

fn config(pairs: &[(&str, &str)]) -> PluginConfig {
    let map = pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
    PluginConfig::from_map(map)
}

fn records(n: usize, first_ts: i64) -> Batch {
    let header = RArc::new(Header { version: 4, exporter: "n".into(), ip: "1.2.3.4".into(), filename: "t".into() });
    Batch::flat(
        (0..n)
            .map(|i| {
                let ev = ProcessEvent { ts: first_ts + i as i64, op_flags: 2, ..ProcessEvent::default() };
                FlatRecord::new(header.clone(), Event::Process(ev))
            })
            .collect(),
    )
}

fn counter(e: &Exporter, name: &str) -> u64 {
    e.counters().into_iter().find(|c| c.name.as_str() == name).map(|c| c.value).unwrap_or(u64::MAX)
}

#[test]
fn file_transport_delivers_every_batch_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.json");
    std::fs::write(&path, "stale\n").expect("seed");
    let path_text = path.to_str().expect("utf8 path");
    let mut e = Exporter::new(&config(&[("export", "file"), ("file.path", path_text)]), host()).expect("init");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "", "the old file is replaced at start");
    e.process(records(2, 10)).expect("process");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 2, "delivered at the batch boundary without waiting for finish");
    for (line, ts) in text.lines().zip([10, 11]) {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        assert_eq!(v["ts"], ts);
        assert_eq!(v["opflags"][0], "EXEC");
    }
    e.finish().expect("finish");
    assert_eq!(counter(&e, "records_exported"), 2);
    assert_eq!(counter(&e, "bytes_written"), text.len() as u64);
    assert_eq!(counter(&e, "transport_errors"), 0);
}

#[test]
fn otel_format_writes_otlp_json_lines_to_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.json");
    let path_text = path.to_str().expect("utf8 path");
    // kafka.encoding proto does not apply to lines of text: warned about, JSON written.
    let cfg = config(&[("export", "file"), ("file.path", path_text), ("format", "otel"), ("kafka.encoding", "proto")]);
    let mut e = Exporter::new(&cfg, host()).expect("init");
    e.process(records(3, 100)).expect("process");
    e.finish().expect("finish");
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    for (line, ts) in lines.iter().zip([100u64, 101, 102]) {
        let logs: sysflow_exporter::opentelemetry_proto::tonic::logs::v1::LogsData =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not OTLP/JSON ({e}): {line}"));
        assert_eq!(logs.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano, ts);
    }
    assert_eq!(counter(&e, "records_exported"), 3);
    assert_eq!(counter(&e, "encode_errors"), 0);
}

#[test]
fn buffer_holds_records_until_full_or_flushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.json");
    let path_text = path.to_str().expect("utf8 path");
    let cfg = config(&[("export", "file"), ("file.path", path_text), ("buffer", "3")]);
    let mut e = Exporter::new(&cfg, host()).expect("init");
    let lines = || std::fs::read_to_string(&path).expect("read").lines().count();
    e.process(records(2, 0)).expect("process");
    assert_eq!(lines(), 0);
    e.process(records(2, 2)).expect("process");
    assert_eq!(lines(), 4, "reaching the buffer size delivers everything pending");
    e.process(records(1, 4)).expect("process");
    assert_eq!(lines(), 4);
    e.flush().expect("flush");
    assert_eq!(lines(), 5, "an idle flush delivers pending records");
    e.process(records(1, 5)).expect("process");
    e.finish().expect("finish");
    assert_eq!(lines(), 6, "finish delivers the rest");
    assert_eq!(counter(&e, "records_exported"), 6);
}

#[test]
fn null_transport_still_encodes() {
    let mut e = Exporter::new(&config(&[("export", "null")]), host()).expect("init");
    e.process(records(3, 0)).expect("process");
    e.finish().expect("finish");
    assert_eq!(counter(&e, "records_exported"), 3);
    assert!(counter(&e, "bytes_written") > 3 * 100, "records were encoded");
}

#[test]
fn configuration_errors_name_the_key() {
    let err = |pairs: &[(&str, &str)]| Exporter::new(&config(pairs), host()).expect_err("must fail").to_string();
    let msg = err(&[("export", "kafka")]);
    assert!(msg.contains("transport 'kafka' is not available"), "{msg}");
    let msg = err(&[("export", "es")]);
    assert!(msg.contains("'es.addresses' is required"), "{msg}");
    let msg = err(&[("export", "http")]);
    assert!(msg.contains("'http.url' is required"), "{msg}");
    let msg = err(&[("export", "es"), ("es.addresses", "http://localhost:9200"), ("es.index", "i"), ("delivery.mode", "lossy")]);
    assert!(msg.contains("'delivery.mode'") && msg.contains("lossy"), "{msg}");
    let msg = err(&[("export", "null"), ("buffer", "ten")]);
    assert!(msg.contains("'buffer'") && msg.contains("ten"), "{msg}");
    let msg = err(&[("export", "file"), ("file.path", "/nonexistent-dir-xyz/out")]);
    assert!(msg.contains("/nonexistent-dir-xyz/out"), "{msg}");
    // Upstream falls back to the defaults for unknown names; so do we (with a warning).
    assert!(Exporter::new(&config(&[("export", "carrier-pigeon"), ("format", "xml")]), host()).is_ok());
    // No kafka.config is needed unless the transport is kafka (upstream bug not reproduced).
    assert!(Exporter::new(&config(&[("export", "null")]), host()).is_ok());
}

#[test]
fn sysflow_batches_are_rejected() {
    let mut e = Exporter::new(&config(&[("export", "null")]), host()).expect("init");
    let batch = Batch::sysflow(vec![SysFlowRecord::Header(Header::default())]);
    let msg = e.process(batch).expect_err("must fail").to_string();
    assert!(msg.contains("flat records"), "{msg}");
    assert_eq!(counter(&e, "encode_errors"), 1);
}

/// Fails every export after the first `ok` ones.
struct FailingTransport {
    ok: usize,
    calls: Arc<AtomicUsize>,
}

impl Transport for FailingTransport {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn export(&mut self, _batch: &EncodedBatch) -> Result<(), TransportError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.ok {
            Ok(())
        } else {
            Err(TransportError("disk full".into()))
        }
    }
    fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn close(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}

#[test]
fn transport_errors_are_counted_and_reported_at_finish() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut e = Exporter::with_transport(host(), Box::new(FailingTransport { ok: 1, calls: calls.clone() }), 0);
    e.process(records(2, 0)).expect("first batch delivered");
    e.process(records(3, 2)).expect("processing continues after a transport error, as upstream");
    e.process(records(1, 5)).expect("processing continues");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let msg = e.finish().expect_err("undelivered records must fail finish").to_string();
    assert!(msg.contains("4 records could not be delivered") && msg.contains("disk full"), "{msg}");
    assert_eq!(counter(&e, "records_exported"), 2);
    assert_eq!(counter(&e, "records_dropped"), 4);
    assert_eq!(counter(&e, "transport_errors"), 2);
}

#[test]
fn descriptor_declares_inputs_and_keys() {
    let d = sysflow_exporter::descriptors();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].name.as_str(), "exporter");
    let keys: Vec<&str> = d[0].config_keys.iter().map(|k| k.name.as_str()).collect();
    for key in ["export", "format", "buffer", "file.path", "syslog.port", "es.bulk.flushTimeout", "kafka.config"] {
        assert!(keys.contains(&key), "missing key {key}");
    }
}

#[test]
fn ecs_format_writes_ecs_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.json");
    let cfg = config(&[("export", "file"), ("format", "ecs"), ("file.path", path.to_str().expect("utf8"))]);
    let mut e = Exporter::new(&cfg, host()).expect("init");
    e.process(records(1, 1_000_000_000)).expect("process");
    e.finish().expect("finish");
    let text = std::fs::read_to_string(&path).expect("read");
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).expect("valid JSON");
    assert_eq!(v["@timestamp"], "1970-01-01T00:00:01Z");
    assert_eq!(v["event"]["category"], "process");
}
