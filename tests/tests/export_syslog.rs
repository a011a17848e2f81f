//! `export: syslog` end to end against a real rsyslogd: every record of a real trace
//! arrives over TCP and over TLS even when rsyslog is restarted mid-run (duplicates
//! allowed, losses not), and over RELP with at most a window of duplicates and a clean
//! exit (every record acknowledged); the loss of a connection is never summarised as "all records
//! processed", and a server certificate that does not verify is refused.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sysflow_e2e_tests::{
    background_run::{finish, spawn},
    output_text, read_json_lines, run_sfprocessor_in, shared_data,
    syslog_server::{make_certificates, Rsyslog},
    write_pipeline,
};

/// The shared trace of the delivery tests.
const TRACE: &str = "k8s_small.sf";
/// Copies of it read in one run, so that the run lasts long enough to restart rsyslog.
const COPIES: usize = 20;
/// Received messages after which rsyslog is restarted.
const RESTART_AFTER: usize = 5000;

fn pipeline(dir: &Path, name: &str, exporter: Value) -> String {
    let cfg = json!({"pipeline": [
        {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
        exporter]});
    write_pipeline(dir, name, &cfg).to_string_lossy().into_owned()
}

/// A directory holding [`COPIES`] links to the trace, and every JSON record the run
/// must deliver (the file exporter's output of one copy, [`COPIES`] times).
fn input_and_expected(dir: &Path, data: &Path) -> (PathBuf, HashMap<String, usize>) {
    let trace = data.join("traces").join(TRACE);
    let cfg = pipeline(dir, "file.json", json!({"processor": "exporter", "in": "flat flattenerchan",
        "export": "file", "format": "json", "file.path": dir.join("expected.json").to_string_lossy()}));
    let out = run_sfprocessor_in(dir, &["-config", &cfg, &trace.to_string_lossy()], &[]);
    assert!(out.status.success(), "{:?}", output_text(&out));
    let mut expected = HashMap::new();
    for record in read_json_lines(&dir.join("expected.json")) {
        *expected.entry(record.to_string()).or_insert(0) += COPIES;
    }
    let input = dir.join("input");
    std::fs::create_dir_all(&input).expect("create input dir");
    for n in 0..COPIES {
        std::os::unix::fs::symlink(&trace, input.join(format!("copy{n:02}.sf"))).expect("link the trace");
    }
    (input, expected)
}

/// Missing records (messages compared as parsed JSON), examples of them, and surplus copies
/// (duplicates).
fn compare(expected: &HashMap<String, usize>, received: &[String]) -> (usize, Vec<String>, usize) {
    let mut got: HashMap<String, usize> = HashMap::new();
    for line in received {
        if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
            *got.entry(v.to_string()).or_insert(0) += 1;
        }
    }
    let mut total = 0;
    let mut examples = Vec::new();
    let surplus = got.iter().map(|(record, have)| have.saturating_sub(expected.get(record).copied().unwrap_or(0))).sum();
    for (record, want) in expected {
        let have = got.get(record).copied().unwrap_or(0);
        if have < *want {
            total += want - have;
            if examples.len() < 3 {
                examples.push(record.chars().take(200).collect());
            }
        }
    }
    (total, examples, surplus)
}

/// Runs the pipeline `cfg` over `input` to rsyslog, stopping rsyslog once [`RESTART_AFTER`]
/// messages are in and starting it again 2 s later; the run's exit status, its log and every
/// message rsyslog wrote.
fn run_across_a_restart(rsyslog: &mut Rsyslog, dir: &Path, cfg: &str, input: &Path) -> (i32, String, Vec<String>) {
    let mut child = spawn(dir, cfg, input);
    let start = Instant::now();
    while rsyslog.received().len() < RESTART_AFTER {
        assert!(start.elapsed() < Duration::from_secs(120), "rsyslog received too little: {}", rsyslog.process.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    rsyslog.stop();
    assert!(child.try_wait().expect("wait").is_none(), "the run ended before the restart: use more copies");
    std::thread::sleep(Duration::from_secs(2));
    rsyslog.restart();
    let (status, log) = finish(child, dir, Duration::from_secs(300));
    rsyslog.stop();
    (status, log, rsyslog.received())
}

/// Runs [`COPIES`] of the trace to rsyslog, restarting it once [`RESTART_AFTER`] messages
/// are in; asserts every record arrived and the run reports the lost connection.
fn every_record_across_a_restart(test: &str, tls: bool) {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = tls.then(|| make_certificates(dir.path()));
    let Some(mut rsyslog) = Rsyslog::start(test, dir.path(), certs.as_ref()) else { return };
    let (input, expected) = input_and_expected(dir.path(), &data);
    let mut exporter = json!({"processor": "exporter", "in": "flat flattenerchan", "export": "syslog", "format": "json",
        "syslog.host": "127.0.0.1", "syslog.port": rsyslog.tcp_port.to_string(), "delivery.stopTimeout": "60s"});
    if let Some(c) = &certs {
        exporter["syslog.proto"] = json!("tls");
        exporter["syslog.port"] = json!(rsyslog.tls_port.to_string());
        exporter["syslog.tls.cafile"] = json!(c.ca.to_string_lossy());
    }
    let cfg = pipeline(dir.path(), "syslog.json", exporter);
    let (status, log, received) = run_across_a_restart(&mut rsyslog, dir.path(), &cfg, &input);
    let (lost, examples, _) = compare(&expected, &received);
    assert_eq!(lost, 0, "{lost} records never arrived (of {} received), e.g. {examples:?}\n{log}", received.len());
    // Plain TCP has no acknowledgement: the run must not claim everything arrived.
    assert!(log.contains("connection was lost") && log.contains("cannot be confirmed"), "{log}");
    assert!(!log.contains("all records processed"), "{log}");
    assert_eq!(status, 1, "{log}");
}

#[test]
fn rsyslog_receives_every_record_over_tcp_across_a_restart() {
    every_record_across_a_restart("rsyslog_receives_every_record_over_tcp_across_a_restart", false);
}

#[test]
fn rsyslog_receives_every_record_over_tls_across_a_restart() {
    every_record_across_a_restart("rsyslog_receives_every_record_over_tls_across_a_restart", true);
}

/// RELP messages the exporter may have unacknowledged at once (the `syslog.relp.window` default).
const RELP_WINDOW: usize = 128;

#[test]
fn rsyslog_receives_every_record_over_relp_across_a_restart_with_at_most_a_window_of_duplicates() {
    let test = "rsyslog_receives_every_record_over_relp_across_a_restart_with_at_most_a_window_of_duplicates";
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut rsyslog) = Rsyslog::start_relp(test, dir.path()) else { return };
    let (input, expected) = input_and_expected(dir.path(), &data);
    let exporter = json!({"processor": "exporter", "in": "flat flattenerchan", "export": "syslog", "format": "json",
        "syslog.proto": "relp", "syslog.host": "127.0.0.1", "syslog.port": rsyslog.relp_port.to_string(),
        "delivery.stopTimeout": "60s"});
    let cfg = pipeline(dir.path(), "relp.json", exporter);
    let (status, log, received) = run_across_a_restart(&mut rsyslog, dir.path(), &cfg, &input);
    let (lost, examples, duplicates) = compare(&expected, &received);
    let want: usize = expected.values().sum();
    eprintln!("relp across a restart: {} received for {want} records, {duplicates} duplicates", received.len());
    assert_eq!(lost, 0, "{lost} records never arrived (of {} received), e.g. {examples:?}\n{log}", received.len());
    // Only what rsyslog took in but had not acknowledged when it stopped can arrive twice.
    assert!(duplicates <= RELP_WINDOW, "{duplicates} duplicates: more than the unacknowledged window\n{log}");
    // Every record was acknowledged: the run may say so, and the break shows as retries.
    assert_eq!(status, 0, "{log}");
    assert!(log.contains("all records processed") && log.contains("connections_lost=0"), "{log}");
    assert!(!log.contains("delivery_retried=0,"), "the records unacknowledged at the restart are retried: {log}");
}

#[test]
fn a_server_certificate_that_does_not_verify_is_refused() {
    let test = "a_server_certificate_that_does_not_verify_is_refused";
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certificates(dir.path());
    let Some(rsyslog) = Rsyslog::start(test, dir.path(), Some(&certs)) else { return };
    let trace = data.join("traces").join(TRACE).to_string_lossy().into_owned();
    // No cafile: the system roots do not know the test CA (upstream would accept anything).
    let cfg = pipeline(dir.path(), "tls.json", json!({"processor": "exporter", "in": "flat flattenerchan",
        "export": "syslog", "syslog.proto": "tls", "syslog.host": "127.0.0.1", "syslog.port": rsyslog.tls_port.to_string()}));
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    let (stdout, stderr) = output_text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    let text = format!("{stdout}{stderr}");
    assert!(text.contains(&format!("127.0.0.1:{}", rsyslog.tls_port)) && text.contains("TLS handshake"), "{text}");
    assert!(rsyslog.received().is_empty());
    // With syslog.tls.insecure the same server is accepted (for tests only).
    let cfg = pipeline(dir.path(), "insecure.json", json!({"processor": "exporter", "in": "flat flattenerchan",
        "export": "syslog", "syslog.proto": "tls", "syslog.host": "127.0.0.1", "syslog.port": rsyslog.tls_port.to_string(),
        "syslog.tls.insecure": "true"}));
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    assert!(out.status.success(), "{:?}", output_text(&out));
}
