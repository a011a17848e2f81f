//! `-metrics ADDR`: the listener serves the pipeline's counters in Prometheus text (checked
//! against the records sent and the exit summary, and by `promtool`), `/healthz` and
//! `/readyz`; an address it cannot listen on stops start-up with a message naming it.

use std::{
    io::Write,
    net::TcpListener,
    os::fd::AsRawFd,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::{
        signal::{kill, Signal},
        socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr},
    },
    unistd::Pid,
};
use serde_json::{json, Value};
use sysflow_e2e_tests::{output_text, read_json_lines, run_sfprocessor_in, sfprocessor_bin, write_pipeline};
use sysflow_plugin_api::{Event, SysFlowRecord};

/// Records the test sends through the socket.
const RECORDS: u64 = 3000;

/// Reader + flattener → JSON file exporter; `extra` adds top-level keys.
fn reader_to_file(dir: &Path, extra: &[(&str, Value)]) -> String {
    let mut cfg = json!({"pipeline": [
        {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
        {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "format": "json",
         "file.path": dir.join("out.json").to_string_lossy()}]});
    for (k, v) in extra {
        cfg[*k] = v.clone();
    }
    write_pipeline(dir, "p.json", &cfg).to_string_lossy().into_owned()
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET `path`: status and body (`None` when nothing answers).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent.get(&format!("http://127.0.0.1:{port}{path}")).call().ok()?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// SIGTERM, then the exit status and both outputs.
fn stop(child: Child) -> Output {
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let mut child = child;
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("no exit within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Runs `promtool check metrics` on the text. Without promtool: a visible SKIP, or a
/// failure under CI=true (CI installs it, see .ci/run).
fn promtool_check(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but promtool cannot be run ({e}): install the Debian package 'prometheus'"
            );
            eprintln!("SKIP promtool check: promtool cannot be run ({e}); install the Debian package 'prometheus'");
            return;
        }
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "promtool check metrics failed:\n{stdout}{stderr}\n--- scraped text:\n{text}");
}

#[test]
fn socket_pipeline_serves_its_counters_health_and_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("sysflow.sock");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(sfprocessor_bin())
        .current_dir(dir.path())
        .args(["-config", &reader_to_file(dir.path(), &[]), "-driver", "socket", "-metrics", &addr])
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor");
    wait_for("the socket to be bound", Duration::from_secs(20), || sock.exists());
    wait_for("/readyz to answer 200", Duration::from_secs(20), || get(port, "/readyz").is_some_and(|(s, _)| s == 200));
    assert_eq!(get(port, "/healthz").map(|(s, _)| s), Some(200));
    assert_eq!(get(port, "/nothing-here").map(|(s, _)| s), Some(404));

    let (status, before) = get(port, "/metrics").expect("scrape before any record");
    assert_eq!(status, 200, "{before}");
    assert_eq!(sample(&before, "sfprocessor_node_records_in_total", r#"node="driver (socket)""#), Some(0.0), "{before}");
    assert!(before.contains(r#"sfprocessor_build_info{version=""#), "{before}");

    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
    let mut exported = 0usize;
    let mut buf = Vec::new();
    let config = sysflow_tracegen::GenConfig { records: RECORDS, seed: 11, ..Default::default() };
    sysflow_tracegen::generate(&config, |rec| {
        buf.clear();
        sysflow_tracegen::encode_datum(&rec, &mut buf);
        // The flattener folds process flows into the process; every other event is exported.
        if let SysFlowRecord::Event(e) = &rec {
            if !matches!(e, Event::ProcessFlow(_)) {
                exported += 1;
            }
        }
        send(fd.as_raw_fd(), &buf, MsgFlags::empty()).expect("send datum");
    });
    let out_path = dir.path().join("out.json");
    wait_for("every record to be exported", Duration::from_secs(20), || {
        std::fs::read_to_string(&out_path).map(|s| s.lines().count() >= exported).unwrap_or(false)
    });
    // Plugin counters are published about once a second: wait for the exporter's to catch up.
    let exporter = r#"node="pipeline[1] (exporter)""#;
    let mut text = String::new();
    wait_for("the exporter's counter to reach the records exported", Duration::from_secs(10), || {
        text = get(port, "/metrics").map(|(_, t)| t).unwrap_or_default();
        sample(&text, "sfprocessor_plugin_value", &format!(r#"{exporter},name="records_exported""#))
            == Some(exported as f64)
    });
    let driver = r#"node="driver (socket)""#;
    let reader = r#"node="pipeline[0] (sysflowreader)""#;
    assert_eq!(sample(&text, "sfprocessor_node_records_in_total", driver), Some(RECORDS as f64), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_records_out_total", driver), Some(RECORDS as f64), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_records_in_total", reader), Some(RECORDS as f64), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_records_out_total", reader), Some(exported as f64), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_records_in_total", exporter), Some(exported as f64), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_records_out_total", exporter), None, "an exporter has no 'out'\n{text}");
    assert_eq!(sample(&text, "sfprocessor_node_records_dropped_total", reader), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "sfprocessor_plugin_value", &format!(r#"{driver},name="records""#)),
        Some(RECORDS as f64),
        "{text}"
    );
    // One histogram observation per batch: at least one, at most one per record.
    let batches = sample(&text, "sfprocessor_node_batch_seconds_count", reader).expect("reader batch histogram");
    assert!((1.0..=RECORDS as f64).contains(&batches), "{text}");
    assert_eq!(sample(&text, "sfprocessor_queue_capacity_batches", reader), Some(8.0), "{text}");
    assert_eq!(get(port, "/readyz").map(|(s, _)| s), Some(200), "still reading the socket");
    promtool_check(&text);

    let out = stop(child);
    drop(fd);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    // The exit summary reads the same counters.
    assert!(stderr.contains(&format!("driver (socket): records in {RECORDS}, out {RECORDS},")), "{stderr}");
    assert!(stderr.contains(&format!("pipeline[1] (exporter): records in {exported}, records_exported={exported},")), "{stderr}");
    assert_eq!(read_json_lines(&out_path).len(), exported);
}

/// Start-up with a metrics address it cannot listen on: exit 1, the message names the
/// address and where it came from, and no input was opened.
fn refused(dir: &Path, extra: &[(&str, Value)], flag: Option<&str>) -> String {
    let sock = dir.join("sysflow.sock");
    let cfg = reader_to_file(dir, extra);
    let sock_arg = sock.to_string_lossy();
    let mut args = vec!["-config", cfg.as_str(), "-driver", "socket"];
    if let Some(f) = flag {
        args.extend(["-metrics", f]);
    }
    args.push(&sock_arg);
    let out = run_sfprocessor_in(dir, &args, &[]);
    let (stdout, stderr) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!sock.exists(), "the socket driver must not be started");
    format!("{stdout}{stderr}")
}

#[test]
fn address_in_use_is_a_startup_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("address").to_string();
    let text = refused(dir.path(), &[], Some(&addr));
    assert!(text.contains(&format!("-metrics '{addr}': cannot listen")), "{text}");
}

#[test]
fn not_an_address_is_a_startup_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = refused(dir.path(), &[], Some("not-an-address"));
    assert!(text.contains("-metrics 'not-an-address': cannot listen"), "{text}");
}

#[test]
fn pipeline_key_is_used_and_the_flag_wins_over_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("address").to_string();
    let text = refused(dir.path(), &[("metrics", json!(addr))], None);
    assert!(text.contains(&format!("pipeline key 'metrics' '{addr}': cannot listen")), "{text}");
    // The flag's (also unusable) address is the one tried, not the key's.
    let text = refused(dir.path(), &[("metrics", json!(addr))], Some("not-an-address"));
    assert!(text.contains("-metrics 'not-an-address'"), "{text}");
    assert!(!text.contains(&addr), "{text}");
}

#[test]
fn pipeline_key_of_the_wrong_type_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = refused(dir.path(), &[("metrics", json!(9977))], None);
    assert!(text.contains("top-level key 'metrics' must be a string"), "{text}");
}
