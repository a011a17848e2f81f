//! `export: http` end to end: a real HTTP receiver on loopback (tiny_http, in this test)
//! answers 500 for a while, then 200; every record of a real trace arrives exactly once,
//! in NDJSON batches and one per request, with the configured headers.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sysflow_e2e_tests::{output_text, read_json_lines, run_sfprocessor_in, shared_data, write_pipeline};

/// A request the receiver accepted: its headers of interest and body.
struct Accepted {
    authorization: Option<String>,
    source: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// An HTTP server that answers 500 to everything during its first `failing_for`, then 200.
struct Receiver {
    port: u16,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(failing_for: Duration) -> Receiver {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("listen");
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, refs, st) = (Arc::clone(&accepted), Arc::clone(&refused), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !st.load(Ordering::Relaxed) {
                let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50)) else { continue };
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                if started.elapsed() < failing_for {
                    refs.fetch_add(1, Ordering::Relaxed);
                    let _ = request.respond(tiny_http::Response::from_string("overloaded").with_status_code(500));
                    continue;
                }
                let header = |name: &'static str| {
                    request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string())
                };
                let accepted = Accepted {
                    authorization: header("Authorization"),
                    source: header("X-Source"),
                    content_type: header("Content-Type"),
                    body,
                };
                acc.lock().expect("lock").push(accepted);
                let _ = request.respond(tiny_http::Response::from_string("ok"));
            }
        });
        Receiver { port, accepted, refused, stop, thread: Some(thread) }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pipeline(dir: &Path, name: &str, exporter: Value) -> String {
    let cfg = json!({"pipeline": [
        {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
        exporter]});
    write_pipeline(dir, name, &cfg).to_string_lossy().into_owned()
}

/// The trace's records as the file exporter writes them (JSON text, counted).
fn expected(dir: &Path, trace: &str) -> HashMap<String, usize> {
    let cfg = pipeline(dir, "file.json", json!({"processor": "exporter", "in": "flat flattenerchan",
        "export": "file", "format": "json", "file.path": dir.join("expected.json").to_string_lossy()}));
    let out = run_sfprocessor_in(dir, &["-config", &cfg, trace], &[]);
    assert!(out.status.success(), "{:?}", output_text(&out));
    let mut counts = HashMap::new();
    for record in read_json_lines(&dir.join("expected.json")) {
        *counts.entry(record.to_string()).or_insert(0) += 1;
    }
    counts
}

fn received(accepted: &[Accepted]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for a in accepted {
        for line in a.body.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("received invalid JSON ({e}): {line}"));
            *counts.entry(v.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn a_receiver_answering_500_then_200_gets_every_record_exactly_once() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = data.join("traces/k8s_small.sf").to_string_lossy().into_owned();
    let want = expected(dir.path(), &trace);
    let receiver = Receiver::start(Duration::from_secs(2));
    let cfg = pipeline(dir.path(), "http.json", json!({"processor": "exporter", "in": "flat flattenerchan",
        "export": "http", "format": "json", "http.url": format!("http://127.0.0.1:{}/events", receiver.port)}));
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    let (stdout, stderr) = output_text(&out);
    let log = format!("{stdout}{stderr}");
    assert!(out.status.success(), "{log}");
    assert!(receiver.refused.load(Ordering::Relaxed) > 0, "the receiver refused requests first");
    assert!(log.contains("HTTP 500") && log.contains("delivering again"), "{log}");
    let accepted = receiver.accepted.lock().expect("lock");
    assert!(accepted.iter().all(|a| a.content_type.as_deref() == Some("application/x-ndjson")));
    assert!(accepted.len() < 5247, "records were batched: {} requests", accepted.len());
    assert!(received(&accepted) == want, "every record exactly once");
}

#[test]
fn record_mode_posts_one_document_per_request_with_the_configured_headers() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = data.join("traces/sf-apis_setns.sf").to_string_lossy().into_owned();
    let want = expected(dir.path(), &trace);
    let receiver = Receiver::start(Duration::from_millis(500));
    let cfg = pipeline(dir.path(), "http.json", json!({"processor": "exporter", "in": "flat flattenerchan",
        "export": "http", "format": "json", "http.mode": "record", "http.token": "t0k",
        "http.headers": {"X-Source": "sysflow"}, "http.url": format!("http://127.0.0.1:{}/", receiver.port)}));
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    assert!(out.status.success(), "{:?}", output_text(&out));
    let accepted = receiver.accepted.lock().expect("lock");
    assert_eq!(accepted.len(), 408, "one request per record");
    for a in accepted.iter() {
        assert_eq!(a.authorization.as_deref(), Some("Bearer t0k"));
        assert_eq!(a.source.as_deref(), Some("sysflow"));
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert!(!a.body.contains('\n'), "one document, no newline");
    }
    assert!(received(&accepted) == want, "every record exactly once");
}

#[test]
fn falco_alerts_reach_a_webhook_one_per_request_as_falcosidekick_reads_them() {
    // Falcosidekick's input is Falco's `http_output`: one JSON alert per POST to `/`.
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = data.join("traces/shellshock.sf").to_string_lossy().into_owned();
    let policies = sysflow_e2e_tests::workspace_root().join("builtin-plugins/policy-engine/tests/falco_style");
    let falco_pipeline = |name: &str, exporter: Value| {
        let cfg = json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "alert",
             "dialect": "falco", "policies": policies.to_string_lossy()},
            exporter]});
        write_pipeline(dir.path(), name, &cfg).to_string_lossy().into_owned()
    };
    let file = dir.path().join("alerts.json");
    let cfg = falco_pipeline("file.json", json!({"processor": "exporter", "in": "evt eventchan", "export": "file",
        "format": "falco", "file.path": file.to_string_lossy()}));
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    assert!(out.status.success(), "{:?}", output_text(&out));
    let mut want = HashMap::new();
    for alert in read_json_lines(&file) {
        *want.entry(alert.to_string()).or_insert(0) += 1;
    }
    assert!(!want.is_empty(), "the falco-style rules alert on this trace");

    let receiver = Receiver::start(Duration::from_millis(300));
    let cfg = falco_pipeline("http.json", json!({"processor": "exporter", "in": "evt eventchan", "export": "http",
        "format": "falco", "http.mode": "record", "http.url": format!("http://127.0.0.1:{}/", receiver.port)}));
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    assert!(out.status.success(), "{:?}", output_text(&out));
    let accepted = receiver.accepted.lock().expect("lock");
    assert_eq!(accepted.len(), want.values().sum::<usize>(), "one request per alert");
    for a in accepted.iter() {
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        let alert: Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body));
        for key in ["output", "priority", "rule", "time", "output_fields", "source", "tags", "hostname"] {
            assert!(alert.get(key).is_some(), "Falco alert field {key} missing: {alert}");
        }
    }
    assert!(received(&accepted) == want, "every alert exactly once, as the file exporter writes it");
}
