//! Live policy reload under a streaming socket pipeline: a collector streams records over
//! SOCK_SEQPACKET while the policy file is replaced (rename into place) by a new rule, then by
//! a broken file. Every record is exported exactly once, carries the old rule before the swap
//! and the new one after it (never both), and the broken file changes nothing but the log.

use std::{
    io::{BufRead, BufReader},
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
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
use sysflow_e2e_tests::{read_json_lines, sfprocessor_bin, write_pipeline};
use sysflow_plugin_api::{Event, SysFlowRecord};

const ALL_TYPES: &str = "sf.type in (PE, NF, FF, FE, NE, KE)";

fn rule(name: &str, tag: &str) -> String {
    format!("- rule: {name}\n  desc: every record\n  condition: {ALL_TYPES}\n  priority: low\n  tags: [{tag}]\n")
}

/// Line 5 holds a condition with a doubled operator.
const BROKEN: &str =
    "# replaced by an editor mid-save\n- rule: Rule C\n  desc: broken\n  priority: low\n  condition: sf.type = = PE\n  tags: [phase-c]\n";

/// One encoded datum, and the ts of the flat record it yields (None: not forwarded).
struct Datum {
    bytes: Vec<u8>,
    flat_ts: Option<i64>,
}

fn datums(records: u64) -> Vec<Datum> {
    datums_with(&sysflow_tracegen::GenConfig { records, seed: 7, ..Default::default() }).0
}

/// Encoded datums of `config`, and the indices where a new segment (header) starts.
fn datums_with(config: &sysflow_tracegen::GenConfig) -> (Vec<Datum>, Vec<usize>) {
    let mut v = Vec::new();
    let mut segments = Vec::new();
    sysflow_tracegen::generate(config, |rec| {
        if matches!(rec, SysFlowRecord::Header(_)) {
            segments.push(v.len());
        }
        let flat_ts = match &rec {
            // The reader drops process flows, as upstream's does.
            SysFlowRecord::Event(e) if !matches!(e, Event::ProcessFlow(_)) => Some(e.ts()),
            _ => None,
        };
        let mut bytes = Vec::new();
        sysflow_tracegen::encode_datum(&rec, &mut bytes);
        v.push(Datum { bytes, flat_ts });
    });
    (v, segments)
}

/// Collects a child's output stream into a shared string, line by line.
fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut s = b.lock().expect("log buffer");
            s.push_str(&line);
            s.push('\n');
        }
    });
    buf
}

struct Proc {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    fn logs(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout.lock().expect("log"), self.stderr.lock().expect("log"))
    }

    /// Waits for `cond` on (stdout, stderr), failing with the logs after `timeout`.
    fn wait_log(&self, what: &str, timeout: Duration, cond: impl Fn(&str, &str) -> bool) {
        let start = Instant::now();
        loop {
            {
                let (o, e) = (self.stdout.lock().expect("log"), self.stderr.lock().expect("log"));
                if cond(&o, &e) {
                    return;
                }
            }
            assert!(start.elapsed() < timeout, "timed out waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_lines(p: &Proc, path: &Path, n: usize, what: &str) {
    let start = Instant::now();
    loop {
        let have = std::fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0);
        if have == n {
            return;
        }
        assert!(have < n, "{what}: {have} lines exported, more than the {n} records sent\n{}", p.logs());
        assert!(start.elapsed() < Duration::from_secs(20), "{what}: {have} of {n} lines exported\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send_all(fd: &OwnedFd, chunk: &[Datum]) {
    for d in chunk {
        send(fd.as_raw_fd(), &d.bytes, MsgFlags::empty()).expect("send datum");
    }
}

fn flat_count(chunk: &[Datum]) -> usize {
    chunk.iter().filter(|d| d.flat_ts.is_some()).count()
}

/// Rename-into-place, as editors and config management tools replace files.
fn replace(dir: &Path, target: &Path, text: &str) {
    let tmp = dir.join("staging.tmp");
    std::fs::write(&tmp, text).expect("write staging file");
    std::fs::rename(&tmp, target).expect("rename into place");
}

/// A running enrich pipeline fed by the socket driver, watching `policies/rules.yaml`
/// (rule A at start) and exporting JSON to `out.json`, all in one directory.
struct Rig {
    p: Proc,
    policy_file: PathBuf,
    out_path: PathBuf,
    sock: PathBuf,
}

/// Starts a [`Rig`] in `dir` with the engine's `monitor.interval` and `concurrency`, and
/// waits until its socket is bound.
fn start_rig(dir: &Path, interval: &str, concurrency: &str) -> Rig {
    let policies = dir.join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    let policy_file = policies.join("rules.yaml");
    std::fs::write(&policy_file, rule("Rule A", "phase-a")).expect("write rule A");
    let out_path = dir.join("out.json");
    let cfg = write_pipeline(
        dir,
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "enrich",
             "policies": policies.to_string_lossy(), "monitor": "local", "monitor.interval": interval,
             "concurrency": concurrency},
            {"processor": "exporter", "in": "evt eventchan", "export": "file", "format": "json",
             "file.path": out_path.to_string_lossy()}]}),
    );
    let sock = dir.join("sysflow.sock");
    let mut child = Command::new(sfprocessor_bin())
        .current_dir(dir)
        .args(["-config", &cfg.to_string_lossy(), "-driver", "socket", &sock.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let p = Proc { child, stdout, stderr };
    p.wait_log("the socket to be bound", Duration::from_secs(20), |_, _| sock.exists());
    Rig { p, policy_file, out_path, sock }
}

fn rule_ids(line: &Value) -> Vec<String> {
    line["policies"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn rules_swap_atomically_mid_stream_and_a_broken_file_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Rig { p, policy_file, out_path, sock } = start_rig(dir.path(), "1", "1");

    let data = datums(8000);
    let (c1, rest) = data.split_at(2500);
    let (probe, rest) = rest.split_at(500);
    let (c2, c3) = rest.split_at(2500);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");

    // Phase 1: rule A.
    send_all(&fd, c1);
    let n1 = flat_count(c1);
    wait_lines(&p, &out_path, n1, "phase 1");

    // Swap to rule B. The engine swaps between batches once the interval has passed; if no
    // idle flush does it, the probe chunk's first batch does.
    replace(dir.path(), &policy_file, &rule("Rule B", "phase-b"));
    p.wait_log("the reload", Duration::from_secs(20), |o, e| {
        o.contains("policies reloaded from") || e.contains("policies reloaded from")
    });
    let switched = |o: &str, e: &str| o.contains("switched to the reloaded rule set") || e.contains("switched to the reloaded rule set");
    let start = Instant::now();
    let mut probe_sent = false;
    while !{
        let (o, e) = (p.stdout.lock().expect("log").clone(), p.stderr.lock().expect("log").clone());
        switched(&o, &e)
    } {
        if !probe_sent && start.elapsed() > Duration::from_secs(4) {
            send_all(&fd, probe);
            probe_sent = true;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the engine never switched\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    if !probe_sent {
        send_all(&fd, probe);
    }
    let n_probe = flat_count(probe);
    wait_lines(&p, &out_path, n1 + n_probe, "probe");

    // Phase 2: rule B only.
    send_all(&fd, c2);
    let n2 = flat_count(c2);
    wait_lines(&p, &out_path, n1 + n_probe + n2, "phase 2");

    // A broken file: logged with its location, rule B keeps running.
    replace(dir.path(), &policy_file, BROKEN);
    p.wait_log("the reload failure", Duration::from_secs(20), |o, e| {
        o.contains("policy reload failed") || e.contains("policy reload failed")
    });
    send_all(&fd, c3);
    let n3 = flat_count(c3);
    let total = n1 + n_probe + n2 + n3;
    wait_lines(&p, &out_path, total, "phase 3");

    let pid = i32::try_from(p.child.id()).expect("pid fits i32");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let mut p = p;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = p.child.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no exit within 15 s of SIGTERM\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(fd);
    std::thread::sleep(Duration::from_millis(200)); // let the log collectors drain
    let logs = p.logs();
    assert_eq!(status.code(), Some(0), "{logs}");

    let lines = read_json_lines(&out_path);
    assert_eq!(lines.len(), total, "every record exported exactly once (enrich mode)");
    let sent_ts: Vec<i64> = data.iter().filter_map(|d| d.flat_ts).collect();
    let got_ts: Vec<i64> = lines.iter().map(|l| l["ts"].as_i64().expect("ts")).collect();
    assert_eq!(got_ts, sent_ts, "records in sending order, none lost or repeated");

    let ids: Vec<Vec<String>> = lines.iter().map(rule_ids).collect();
    for (i, (l, id)) in lines.iter().zip(&ids).enumerate() {
        assert_eq!(id.len(), 1, "record #{i} must carry exactly one rule: {l}");
    }
    let a = |i: &Vec<String>| i[0] == "Rule A";
    assert!(ids[..n1].iter().all(a), "records before the swap carry rule A only");
    assert!(ids[n1 + n_probe..].iter().all(|i| i[0] == "Rule B"), "records after the swap carry rule B only");
    let first_b = ids.iter().position(|i| i[0] == "Rule B").expect("rule B matched");
    assert!(ids[first_b..].iter().all(|i| i[0] == "Rule B"), "no record goes back to rule A after the swap");
    for l in &lines {
        let tags = l["tags"].as_array().expect("tags");
        let expect = if rule_ids(l)[0] == "Rule A" { "phase-a" } else { "phase-b" };
        assert_eq!(tags, &vec![json!(expect)], "{l}");
    }

    // The broken file: one error naming file and line, nothing else changed.
    let err = logs
        .lines()
        .skip_while(|l| !l.contains("policy reload failed"))
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(err.contains("rules.yaml:5"), "the reload error names the file and line:\n{err}\n{logs}");
    assert_eq!(logs.matches("switched to the reloaded rule set").count(), 1, "{logs}");
    assert!(logs.contains("policy_reloads=1"), "{logs}");
    assert!(logs.contains("policy_reload_failures=1"), "{logs}");
}

/// A collector streaming without pause, reconnecting at each new segment (as it does after a
/// restart), while the rule file is swapped: no record is lost, repeated or reordered, and the
/// rule sequence is all A then all B.
#[test]
fn rules_swap_while_a_reconnecting_collector_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Rig { mut p, policy_file, out_path, sock } = start_rig(dir.path(), "0", "2");

    let config = sysflow_tracegen::GenConfig { records: 60_000, seed: 11, rotate_every: 20_000, ..Default::default() };
    let (data, segments) = datums_with(&config);
    assert!(segments.len() >= 3, "segments at {segments:?}");
    let total: usize = flat_count(&data);
    let data = Arc::new(data);
    let sender = {
        let (data, sock, segments) = (data.clone(), sock.clone(), segments.clone());
        std::thread::spawn(move || {
            let mut fd: Option<OwnedFd> = None;
            for (i, d) in data.iter().enumerate() {
                if segments.contains(&i) {
                    // Close the previous connection and open a new one, as a restarted collector.
                    drop(fd.take());
                    let s = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
                    connect(s.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
                    fd = Some(s);
                }
                let s = fd.as_ref().expect("connected at the first header");
                send(s.as_raw_fd(), &d.bytes, MsgFlags::empty()).expect("send datum");
                if i % 500 == 499 {
                    std::thread::sleep(Duration::from_millis(40)); // ~12k records/s: a few seconds
                }
            }
            // Keep the last connection open until everything was read.
            fd
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    replace(dir.path(), &policy_file, &rule("Rule B", "phase-b"));
    let last_conn = sender.join().expect("sender thread");
    wait_lines(&p, &out_path, total, "stream");
    let pid = i32::try_from(p.child.id()).expect("pid fits i32");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = p.child.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no exit within 15 s of SIGTERM\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(last_conn);
    std::thread::sleep(Duration::from_millis(200));
    let logs = p.logs();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains(&format!("connections={}", segments.len())), "one connection per segment\n{logs}");

    let lines = read_json_lines(&out_path);
    assert_eq!(lines.len(), total, "every record exported exactly once");
    let sent_ts: Vec<i64> = data.iter().filter_map(|d| d.flat_ts).collect();
    let got_ts: Vec<i64> = lines.iter().map(|l| l["ts"].as_i64().expect("ts")).collect();
    assert!(got_ts == sent_ts, "records out of order, lost or repeated");
    let ids: Vec<Vec<String>> = lines.iter().map(rule_ids).collect();
    assert!(ids.iter().all(|i| i.len() == 1), "every record carries exactly one rule");
    let first_b = ids.iter().position(|i| i[0] == "Rule B").unwrap_or_else(|| panic!("rule B never matched\n{logs}"));
    assert!(first_b > 0, "rule A matched the records sent before the swap");
    assert!(ids[..first_b].iter().all(|i| i[0] == "Rule A"));
    assert!(ids[first_b..].iter().all(|i| i[0] == "Rule B"), "a record went back to rule A after the swap");
    assert!(first_b < total * 3 / 4, "the swap took effect while streaming (first B at {first_b} of {total})\n{logs}");
}
