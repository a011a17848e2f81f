//! `sfreplay` against a running `sfprocessor -driver socket`: the socket path gives the same
//! output as the file driver on the same traces, pacing holds, and a missing socket or a
//! peer that hangs up ends the replay with a message and a non-zero status.

use std::{
    os::fd::AsRawFd,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::{
        signal::{kill, Signal},
        socket::{accept, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr},
    },
    unistd::Pid,
};
use serde_json::json;
use sysflow_avro_drivers::TraceReader;
use sysflow_e2e_tests::{output_text, sfprocessor_bin, sfreplay_bin, shared_data, write_pipeline};
use sysflow_plugin_api::SysFlowRecord;

/// sysflowreader → JSON lines in `out`.
fn pipeline(dir: &Path, out: &Path) -> String {
    write_pipeline(
        dir,
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "format": "json",
             "file.path": out.to_string_lossy()}]}),
    )
    .to_string_lossy()
    .into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `sfprocessor -driver socket` writing JSON lines to `dir/out.json`, listening on `dir/sysflow.sock`.
fn start_socket_processor(dir: &Path) -> Child {
    let sock = dir.join("sysflow.sock");
    let child = Command::new(sfprocessor_bin())
        .current_dir(dir)
        .args(["-config", &pipeline(dir, &dir.join("out.json")), "-driver", "socket", &sock.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor");
    wait_for("the socket to be bound", Duration::from_secs(20), || sock.exists());
    child
}

/// SIGTERM (the processor drains what was sent), then its exit status and output.
fn stop(child: Child) -> (Option<i32>, String) {
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("sfprocessor output");
    let (stdout, stderr) = output_text(&out);
    (out.status.code(), format!("{stdout}\n{stderr}"))
}

fn replay(args: &[&str]) -> (Output, Duration) {
    // Found (or built, where `cargo test` made no `sfreplay` binary) before the clock starts.
    let bin = sfreplay_bin();
    let start = Instant::now();
    let out = Command::new(bin).args(args).output().expect("spawn sfreplay");
    (out, start.elapsed())
}

/// Every shared trace replayed through the socket gives byte for byte the JSON the file
/// driver gives for the same directory.
#[test]
fn replay_through_the_socket_equals_the_file_driver() {
    let Some(data) = shared_data() else { return };
    let traces = data.join("traces");
    let file_dir = tempfile::tempdir().expect("tempdir");
    let file_out = file_dir.path().join("out.json");
    let cfg = pipeline(file_dir.path(), &file_out);
    let status = Command::new(sfprocessor_bin())
        .args(["-config", &cfg, &traces.to_string_lossy()])
        .output()
        .expect("spawn sfprocessor (file driver)");
    assert!(status.status.success(), "{:?}", output_text(&status));

    let dir = tempfile::tempdir().expect("tempdir");
    let child = start_socket_processor(dir.path());
    let (out, _) = replay(&["--socket", &dir.path().join("sysflow.sock").to_string_lossy(), &traces.to_string_lossy()]);
    let (code, log) = stop(child);
    let (_, replay_err) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "sfreplay: {replay_err}");
    assert_eq!(code, Some(0), "{log}");
    assert!(replay_err.contains("from 34 files") && replay_err.contains("records/s"), "{replay_err}");
    let from_file = std::fs::read(&file_out).expect("file driver output");
    let from_socket = std::fs::read(dir.path().join("out.json")).expect("socket driver output");
    assert!(!from_file.is_empty());
    assert!(
        from_file == from_socket,
        "socket output ({} bytes) differs from the file driver's ({} bytes)\n{log}",
        from_socket.len(),
        from_file.len()
    );
}

/// A generated trace of `records` records in `dir`.
fn generated_trace(dir: &Path, records: u64) -> std::path::PathBuf {
    let path = dir.join("gen.sf");
    let config = sysflow_tracegen::GenConfig { records, seed: 5, ..Default::default() };
    sysflow_tracegen::write_trace(&config, &path, Default::default()).expect("write trace");
    path
}

/// `--rate 400` sends 1,000 records in about 2.5 s (well above the unlimited time of a few ms).
#[test]
fn rate_limited_replay_takes_the_expected_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = generated_trace(dir.path(), 1_000);
    let child = start_socket_processor(dir.path());
    let (out, took) =
        replay(&["--rate", "400", "--socket", &dir.path().join("sysflow.sock").to_string_lossy(), &trace.to_string_lossy()]);
    let (code, log) = stop(child);
    let (_, err) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(code, Some(0), "{log}");
    assert!(err.contains("sent 1000 records"), "{err}");
    // 999 intervals of 2.5 ms; the upper bound only catches a pace that is badly off.
    assert!(took >= Duration::from_millis(2_400) && took < Duration::from_secs(10), "took {took:?}\n{err}");
}

/// `--as-recorded --speed 40` replays k8s_small.sf's 89 s of events in about 2.2 s.
#[test]
fn as_recorded_replay_follows_the_timestamps() {
    let Some(data) = shared_data() else { return };
    let trace = data.join("traces/k8s_small.sf");
    let events: Vec<i64> = TraceReader::open(&trace)
        .expect("open trace")
        .filter_map(|r| match r.expect("trace decodes") {
            SysFlowRecord::Event(e) => Some(e.ts()),
            _ => None,
        })
        .collect();
    let span_ns = events.iter().max().expect("events") - events.first().expect("events");
    let expected = Duration::from_nanos((span_ns / 40) as u64);
    assert!(expected > Duration::from_secs(1), "the trace spans too little time to test pacing: {expected:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let child = start_socket_processor(dir.path());
    let (out, took) = replay(&[
        "--as-recorded",
        "--speed",
        "40",
        "--socket",
        &dir.path().join("sysflow.sock").to_string_lossy(),
        &trace.to_string_lossy(),
    ]);
    let (code, log) = stop(child);
    let (_, err) = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(code, Some(0), "{log}");
    assert!(took >= expected.mul_f64(0.95) && took < expected + Duration::from_secs(10), "took {took:?}, expected {expected:?}\n{err}");
}

/// No socket at the path: exit 1, naming the path.
#[test]
fn missing_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = generated_trace(dir.path(), 10);
    let sock = dir.path().join("absent.sock");
    let (out, _) = replay(&["--socket", &sock.to_string_lossy(), &trace.to_string_lossy()]);
    let (_, err) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("socket {} does not exist", sock.display())), "{err}");

    // A socket file left by a processor that is gone: nobody listens on it.
    let stale = dir.path().join("stale.sock");
    let listener = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    bind(listener.as_raw_fd(), &UnixAddr::new(&stale).expect("address")).expect("bind");
    drop(listener);
    let (out, _) = replay(&["--socket", &stale.to_string_lossy(), &trace.to_string_lossy()]);
    let (_, err) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("socket {}: nobody is listening on it", stale.display())), "{err}");
}

/// The peer accepts, then hangs up: sfreplay stops with exit 1 and says so (no SIGPIPE death,
/// no silent success).
#[test]
fn peer_closing_the_socket_ends_the_replay_with_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = generated_trace(dir.path(), 1_000);
    let sock = dir.path().join("closing.sock");
    let listener = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    bind(listener.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("bind");
    listen(&listener, Backlog::new(1).expect("backlog")).expect("listen");
    let replayer = Command::new(sfreplay_bin())
        .args(["--rate", "200", "--socket", &sock.to_string_lossy(), &trace.to_string_lossy()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfreplay");
    let conn = accept(listener.as_raw_fd()).expect("accept");
    std::thread::sleep(Duration::from_millis(300));
    nix::unistd::close(conn).expect("close the connection");
    let out = replayer.wait_with_output().expect("sfreplay output");
    let (_, err) = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the processor closed the socket") && err.contains("gen.sf after"), "{err}");
}

/// A server end for sfreplay that reads every message until the peer closes; returns the
/// message sizes.
fn collect_messages(sock: &Path) -> std::thread::JoinHandle<Vec<usize>> {
    let listener = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    bind(listener.as_raw_fd(), &UnixAddr::new(sock).expect("address")).expect("bind");
    listen(&listener, Backlog::new(1).expect("backlog")).expect("listen");
    std::thread::spawn(move || {
        let conn = accept(listener.as_raw_fd()).expect("accept");
        let mut buf = vec![0u8; 8 << 20];
        let mut sizes = Vec::new();
        loop {
            match nix::sys::socket::recv(conn, &mut buf, nix::sys::socket::MsgFlags::empty()) {
                Ok(0) => break,
                Ok(n) => sizes.push(n),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        let _ = nix::unistd::close(conn);
        sizes
    })
}

/// A record too large for one socket message is skipped with a warning naming the file and
/// the record, the records after it are still sent, and the exit status is 2.
#[test]
fn oversized_record_is_reported_and_the_rest_is_sent() {
    use sysflow_plugin_api::records::{Event, Header, K8sEvent};
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("big.sf");
    let mut writer = sysflow_tracegen::TraceWriter::create(&trace).expect("create trace");
    let header = Header { version: 5, exporter: "node".into(), ip: "10.0.0.1".into(), filename: "big".into() };
    writer.write(&SysFlowRecord::Header(header)).expect("write");
    let event = |ts: i64, len: usize| {
        SysFlowRecord::Event(Event::K8s(K8sEvent { kind: 0, action: 0, ts, message: "x".repeat(len).as_str().into() }))
    };
    // 16 MiB: more than a unix socket carries in one message (at most its send buffer, wmem_max).
    writer.write(&event(1, 100)).expect("write");
    writer.write(&event(2, 16 << 20)).expect("write");
    writer.write(&event(3, 100)).expect("write");
    writer.finish().expect("finish trace");

    let sock = dir.path().join("big.sock");
    let server = collect_messages(&sock);
    let (out, _) = replay(&["--socket", &sock.to_string_lossy(), &trace.to_string_lossy()]);
    let (_, err) = output_text(&out);
    let sizes = server.join().expect("server");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("big.sf: record 3 encodes to") && err.contains("skipped"), "{err}");
    assert!(err.contains("sent 3 records") && err.contains("1 oversized records"), "{err}");
    assert_eq!(sizes.len(), 3, "header and the two small events arrive: {sizes:?}");
}

/// A damaged block is reported naming the file; the intact blocks around it are still sent
/// and the exit status is 2.
#[test]
fn damaged_trace_is_reported_and_the_rest_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("damaged.sf");
    let config = sysflow_tracegen::GenConfig { records: 20_000, seed: 3, ..Default::default() };
    let options = sysflow_tracegen::WriterOptions { block_size: 16 << 10, ..Default::default() };
    sysflow_tracegen::write_trace(&config, &trace, options).expect("write trace");
    let mut bytes = std::fs::read(&trace).expect("read trace");
    // Garble 64 bytes in the middle of the file: one block's compressed data.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&trace, &bytes).expect("write damaged trace");

    let sock = dir.path().join("damaged.sock");
    let server = collect_messages(&sock);
    let (out, _) = replay(&["--socket", &sock.to_string_lossy(), &trace.to_string_lossy()]);
    let (_, err) = output_text(&out);
    let received = server.join().expect("server").len();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("damaged.sf") && err.contains("warning"), "{err}");
    assert!(received > 10_000 && received < 20_000, "{received} records arrived of 20000, one block lost\n{err}");
    assert!(err.contains(&format!("sent {received} records")), "{err}");
}

/// In a directory, a file that is not a trace is reported and skipped; the traces are sent
/// and the exit status is 2.
#[test]
fn file_that_is_not_a_trace_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = dir.path().join("traces");
    std::fs::create_dir(&traces).expect("mkdir");
    let config = sysflow_tracegen::GenConfig { records: 100, seed: 2, ..Default::default() };
    sysflow_tracegen::write_trace(&config, &traces.join("b.sf"), Default::default()).expect("write trace");
    std::fs::write(traces.join("a.txt"), "not a trace\n").expect("write");
    let sock = dir.path().join("dir.sock");
    let server = collect_messages(&sock);
    let (out, _) = replay(&["--socket", &sock.to_string_lossy(), &traces.to_string_lossy()]);
    let (_, err) = output_text(&out);
    let received = server.join().expect("server").len();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("a.txt") && err.contains("file skipped"), "{err}");
    assert!(err.contains("sent 100 records") && err.contains("1 unreadable files"), "{err}");
    assert_eq!(received, 100);
}
