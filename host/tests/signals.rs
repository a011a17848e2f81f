//! SIGTERM/SIGINT: the socket driver stops, the pipeline drains, the process exits 0.
//! SIGHUP: the process keeps running. With `NOTIFY_SOCKET` the service manager is told
//! READY=1, RELOADING=1/READY=1 around a SIGHUP, WATCHDOG=1 and STOPPING=1.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::{bin, write_pipeline};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// Sends `signal` to the child.
fn send_signal(child: &std::process::Child, signal: Signal) {
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    kill(Pid::from_raw(pid), signal).expect("kill");
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts reader → JSON file exporter (`out.json` in `dir`) behind the socket driver and
/// waits until the socket is bound; returns the process and the socket path.
fn spawn_socket_pipeline(dir: &Path) -> (Child, PathBuf) {
    spawn_socket_pipeline_with(dir, Command::new(bin()))
}

/// [`spawn_socket_pipeline`] run by `cmd` (the binary, or a wrapper with the binary as
/// its first argument, with the environment the test sets).
fn spawn_socket_pipeline_with(dir: &Path, mut cmd: Command) -> (Child, PathBuf) {
    let cfg = write_pipeline(
        dir,
        "p.json",
        r#"{"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}]}"#,
    );
    let sock = dir.join("sysflow.sock");
    let child = cmd
        .current_dir(dir)
        .args(["-config", &cfg, "-driver", "socket", &sock.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor");
    wait_for("the socket to be bound", Duration::from_secs(20), || sock.exists());
    (child, sock)
}

/// Waits for the process to exit; after `timeout` kills it and fails with `what`.
fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal_drains_socket_pipeline(signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, _sock) = spawn_socket_pipeline(dir.path());
    send_signal(&child, if signal == "TERM" { Signal::SIGTERM } else { Signal::SIGINT });
    let status = wait_exit(&mut child, Duration::from_secs(15), &format!("sfprocessor did not exit within 15 s of SIG{signal}"));
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(&format!("received SIG{signal}")), "{stderr}");
    assert!(stderr.contains("pipeline finished"), "{stderr}");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    signal_drains_socket_pipeline("TERM");
}

#[test]
fn sigint_drains_and_exits_zero() {
    signal_drains_socket_pipeline("INT");
}

/// A collector sends datums over the socket; after SIGTERM every record the driver took in
/// is exported before the process exits 0.
#[test]
fn sigterm_after_socket_data_exports_every_record() {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
    use sysflow_plugin_api::{Event, SysFlowRecord};

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, sock) = spawn_socket_pipeline(dir.path());

    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    let addr = UnixAddr::new(&sock).expect("address");
    connect(fd.as_raw_fd(), &addr).expect("connect");
    let config = sysflow_tracegen::GenConfig { records: 5000, ..Default::default() };
    let mut events = 0usize;
    let mut buf = Vec::new();
    sysflow_tracegen::generate(&config, |rec| {
        // The reader drops process flows, as upstream's does (its handler is never called).
        if matches!(rec, SysFlowRecord::Event(ref e) if !matches!(e, Event::ProcessFlow(_))) {
            events += 1;
        }
        buf.clear();
        sysflow_tracegen::encode_datum(&rec, &mut buf);
        send(fd.as_raw_fd(), &buf, MsgFlags::empty()).expect("send datum");
    });
    // Give the driver time to take in what was sent; the connection stays open.
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child, Signal::SIGTERM);
    wait_exit(&mut child, Duration::from_secs(15), "sfprocessor did not exit within 15 s of SIGTERM");
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let exported = common::lines_of(&dir.path().join("out.json")).len();
    assert!(stderr.contains("driver (socket): records in 5000,"), "the driver took in every datum\n{stderr}");
    assert_eq!(exported, events, "every event sent must be exported\nstderr: {stderr}");
    drop(fd);
}

/// When the drain cannot finish (here: the terminal exporter blocks on a stdout pipe nobody
/// reads), a second SIGTERM exits at once with status 1.
#[test]
fn second_signal_forces_exit_one() {
    let Some(data) = common::shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        r#"{"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "terminal"}]}"#,
    );
    let trace = data.join("traces/k8s_small.sf");
    let mut child = Command::new(bin())
        .current_dir(dir.path())
        .args(["-config", &cfg, &trace.to_string_lossy()])
        .stdout(Stdio::piped()) // never read: the exporter blocks once the pipe is full
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor");
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().expect("wait").is_none(), "the drain is blocked, so the first signal cannot finish it");
    send_signal(&child, Signal::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10), "second SIGTERM did not end the process");
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("received SIGTERM again: exiting without draining"), "{stderr}");
}

/// A drain that cannot finish (the terminal exporter blocks on a stdout pipe nobody reads)
/// ends after `-stoptimeout` seconds with status 1 and a message saying what was dropped.
#[test]
fn stop_timeout_bounds_a_blocked_drain() {
    let Some(data) = common::shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        r#"{"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "terminal"}]}"#,
    );
    let trace = data.join("traces/k8s_small.sf");
    let mut child = Command::new(bin())
        .current_dir(dir.path())
        .args(["-config", &cfg, "-stoptimeout", "2", &trace.to_string_lossy()])
        .stdout(Stdio::piped()) // never read: the exporter blocks once the pipe is full
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor");
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(&child, Signal::SIGTERM);
    let sent = Instant::now();
    let status = wait_exit(&mut child, Duration::from_secs(15), "-stoptimeout 2 did not end a blocked drain");
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(1));
    assert!(took >= Duration::from_secs(2), "exited {took:?} after SIGTERM, before the timeout");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("did not drain within 2 s of the stop request"), "{stderr}");
    assert!(stderr.contains("batches (up to"), "{stderr}");
}

/// Without a service manager, SIGHUP (whose default action killed the process) reloads the
/// pipeline and it keeps running; SIGTERM still drains and exits 0.
#[test]
fn sighup_keeps_the_pipeline_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, _sock) = spawn_socket_pipeline(dir.path());
    send_signal(&child, Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().expect("wait").is_none(), "SIGHUP ended the process");
    send_signal(&child, Signal::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(15), "sfprocessor did not exit within 15 s of SIGTERM");
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(0), "stdout: {}\nstderr: {stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("reload applied: pipeline generation 2 running"), "{stderr}");
}

/// Sends `records` generated records over a new collector connection; returns the
/// connection (kept open) and how many of them the pipeline exports (process flows are dropped).
fn send_generated(sock: &Path, records: u64) -> (std::os::fd::OwnedFd, usize) {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
    use sysflow_plugin_api::{Event, SysFlowRecord};

    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(sock).expect("address")).expect("connect");
    let mut events = 0usize;
    let mut buf = Vec::new();
    sysflow_tracegen::generate(&sysflow_tracegen::GenConfig { records, ..Default::default() }, |rec| {
        if matches!(rec, SysFlowRecord::Event(ref e) if !matches!(e, Event::ProcessFlow(_))) {
            events += 1;
        }
        buf.clear();
        sysflow_tracegen::encode_datum(&rec, &mut buf);
        send(fd.as_raw_fd(), &buf, MsgFlags::empty()).expect("send datum");
    });
    (fd, events)
}

/// The datagrams a service manager would receive on `NOTIFY_SOCKET`.
struct NotifyListener {
    socket: std::os::unix::net::UnixDatagram,
    seen: Vec<String>,
}

impl NotifyListener {
    fn bind(path: &Path) -> NotifyListener {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("bind the notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        NotifyListener { socket, seen: Vec::new() }
    }

    /// Receives datagrams until one satisfies `pred` (returned) or `timeout` passes (fails).
    fn wait(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < timeout {
            let Ok(n) = self.socket.recv(&mut buf) else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if pred(&msg) {
                return msg;
            }
        }
        panic!("no {what} within {timeout:?}; received: {:?}", self.seen);
    }
}

/// The sd_notify sequence of a `Type=notify` service: READY=1 once the socket driver reads,
/// watchdog pings (WATCHDOG_USEC set for this pid), RELOADING=1 with MONOTONIC_USEC and
/// READY=1 around a burst of SIGHUPs with the process still running (the reload applies the
/// pipeline file's new policy engine and its rule), STOPPING=1 on SIGTERM and exit 0.
#[test]
fn notify_socket_sees_ready_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify_path = dir.path().join("notify.sock");
    let mut listener = NotifyListener::bind(&notify_path);
    // WATCHDOG_PID must be the service's pid: `exec` keeps the shell's.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", bin()])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000");
    let (mut child, sock) = spawn_socket_pipeline_with(dir.path(), cmd);

    listener.wait("READY=1", Duration::from_secs(20), |m| m.lines().any(|l| l == "READY=1"));
    listener.wait("WATCHDOG=1", Duration::from_secs(5), |m| m.lines().any(|l| l == "WATCHDOG=1"));

    // The edited pipeline: a policy engine tags every record with its rule.
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::write(
        policies.join("rules.yaml"),
        "- rule: Reloaded rule\n  desc: every record\n  condition: sf.type in (PE, NF, FF, FE, NE, KE)\n  priority: low\n  tags: [t]\n",
    )
    .expect("write policy");
    write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "enrich", "policies": "{}"}},
            {{"processor": "exporter", "in": "evt eventchan", "export": "file", "file.path": "out.json"}}]}}"#,
            policies.display()
        ),
    );
    for _ in 0..3 {
        send_signal(&child, Signal::SIGHUP);
    }
    let reloading = listener.wait("RELOADING=1", Duration::from_secs(10), |m| m.lines().any(|l| l == "RELOADING=1"));
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"));
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "MONOTONIC_USEC is not a positive integer: {reloading:?}");
    listener.wait("READY=1 after the reload", Duration::from_secs(10), |m| m.lines().any(|l| l == "READY=1"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("wait").is_none(), "SIGHUP ended the process");
    let (_collector, sent) = send_generated(&sock, 500);
    wait_for("the records exported", Duration::from_secs(20), || common::lines_of(&dir.path().join("out.json")).len() == sent);
    for line in common::lines_of(&dir.path().join("out.json")) {
        assert!(line.contains("\"Reloaded rule\""), "a record exported after the reload lacks the new rule: {line}");
    }

    send_signal(&child, Signal::SIGTERM);
    listener.wait("STOPPING=1", Duration::from_secs(10), |m| m.lines().any(|l| l == "STOPPING=1"));
    let status = wait_exit(&mut child, Duration::from_secs(15), "sfprocessor did not exit within 15 s of SIGTERM");
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let reloads = listener.seen.iter().filter(|m| m.lines().any(|l| l == "RELOADING=1")).count();
    assert!(reloads <= 3, "more reloads than SIGHUPs: {:?}", listener.seen);
}
