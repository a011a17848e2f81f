//! SIGHUP reloads under a streaming socket pipeline: the test streams generated records into
//! the socket driver while it sends ten SIGHUPs with a changed pipeline file, changed
//! policies, a changed driver block (another socket path), a broken pipeline and a broken
//! policy among them. Every record is exported exactly once and in order, the broken files
//! leave the running pipeline in place, the output file is continued (never truncated), the
//! collector's connection survives every reload (the driver hands it to its successor), and
//! SIGTERM ends the process with status 0. `-test` leaves an existing output file untouched.

use std::{
    io::{BufRead, BufReader},
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
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
use sysflow_e2e_tests::{read_json_lines, run_sfprocessor_in, sfprocessor_bin, write_pipeline};
use sysflow_plugin_api::{Event, SysFlowRecord};

const ALL_TYPES: &str = "sf.type in (PE, NF, FF, FE, NE, KE)";

fn rule(name: &str) -> String {
    format!("- rule: {name}\n  desc: every record\n  condition: {ALL_TYPES}\n  priority: low\n  tags: [t]\n")
}

/// Line 5 holds a condition with a doubled operator.
const BROKEN_POLICY: &str =
    "# replaced by an editor mid-save\n- rule: Broken\n  desc: broken\n  priority: low\n  condition: sf.type = = PE\n  tags: [t]\n";

/// One encoded datum, and the ts of the flat record it yields (None: not forwarded).
struct Datum {
    bytes: Vec<u8>,
    flat_ts: Option<i64>,
}

fn datums(records: u64) -> Vec<Datum> {
    let mut v = Vec::new();
    let config = sysflow_tracegen::GenConfig { records, seed: 21, ..Default::default() };
    sysflow_tracegen::generate(&config, |rec| {
        let flat_ts = match &rec {
            // The reader drops process flows, as upstream's does.
            SysFlowRecord::Event(e) if !matches!(e, Event::ProcessFlow(_)) => Some(e.ts()),
            _ => None,
        };
        let mut bytes = Vec::new();
        sysflow_tracegen::encode_datum(&rec, &mut bytes);
        v.push(Datum { bytes, flat_ts });
    });
    v
}

/// Collects a child's output stream into a shared string, line by line.
fn collect(stream: impl std::io::Read + Send + 'static) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    let t = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut s = b.lock().expect("log buffer");
            s.push_str(&line);
            s.push('\n');
        }
    });
    (buf, t)
}

struct Proc {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    collectors: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `sfprocessor args…` in `dir`, collecting both output streams.
    fn spawn(dir: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(sfprocessor_bin())
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sfprocessor");
        let (stdout, t1) = collect(child.stdout.take().expect("stdout"));
        let (stderr, t2) = collect(child.stderr.take().expect("stderr"));
        Proc { child, stdout, stderr, collectors: vec![t1, t2] }
    }

    fn logs(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout.lock().expect("log"), self.stderr.lock().expect("log"))
    }

    fn count(&self, needle: &str) -> usize {
        self.stdout.lock().expect("log").matches(needle).count() + self.stderr.lock().expect("log").matches(needle).count()
    }

    /// Waits until `cond` holds, failing with the logs after `timeout`.
    fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&Proc) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        kill(Pid::from_raw(pid), signal).expect("kill");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipeline(policies: &Path, out: &Path, concurrency: &str, buffer: &str, sock: &Path) -> Value {
    json!({"drivers": [{"driver": "socket", "out": "sysflow sysflowchan", "path": sock.to_string_lossy()}],
        "pipeline": [
        {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
        {"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "enrich",
         "policies": policies.to_string_lossy(), "concurrency": concurrency},
        {"processor": "exporter", "in": "evt eventchan", "export": "file", "format": "json", "buffer": buffer,
         "file.path": out.to_string_lossy()}]})
}

/// Sends every datum (blocking while the processor's socket buffer is full); the time it took.
fn send_all(fd: &OwnedFd, chunk: &[Datum]) -> Duration {
    let start = Instant::now();
    for d in chunk {
        send(fd.as_raw_fd(), &d.bytes, MsgFlags::empty()).expect("send datum");
    }
    start.elapsed()
}

/// One SIGHUP step: what changes on disk before the signal, and whether the reload applies.
enum Change {
    Policy(String),
    Pipeline { concurrency: &'static str, buffer: &'static str },
    BrokenPipeline,
    /// The driver block's `path` changes: the socket driver hands its connection to a new
    /// instance listening on the new path.
    DriverPath(&'static str),
}

#[test]
fn ten_sighups_under_a_stream_lose_and_repeat_no_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("mkdir");
    let policy_file = policies.join("rules.yaml");
    std::fs::write(&policy_file, rule("Rule 0")).expect("write rule");
    let out = dir.path().join("out.json");
    let sock = dir.path().join("sysflow.sock");
    let cfg = write_pipeline(dir.path(), "p.json", &pipeline(&policies, &out, "1", "0", &sock));
    // What the pipeline file says now: concurrency, buffer and socket path.
    let mut shape: (&str, &str, std::path::PathBuf) = ("1", "0", sock.clone());
    let p = Proc::spawn(dir.path(), &["-config", &cfg.to_string_lossy()]);
    p.wait("the socket to be bound", Duration::from_secs(20), |_| sock.exists());

    let steps: Vec<(Change, bool)> = vec![
        (Change::Policy(rule("Rule 1")), true),
        (Change::Pipeline { concurrency: "1", buffer: "100" }, true),
        (Change::BrokenPipeline, false),
        (Change::Pipeline { concurrency: "2", buffer: "0" }, true),
        (Change::Policy(rule("Rule 4")), true),
        (Change::DriverPath("moved.sock"), true),
        (Change::Policy(BROKEN_POLICY.to_string()), false),
        (Change::Policy(rule("Rule 7")), true),
        (Change::Pipeline { concurrency: "1", buffer: "10" }, true),
        (Change::Policy(rule("Rule 9")), true),
    ];
    let chunk = 40_000usize;
    let data = datums((chunk * (steps.len() + 1)) as u64);
    let fd = Arc::new(socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket"));
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
    let data = Arc::new(data);

    let started = Instant::now();
    let mut sent = 0usize;
    // Time spent sending: the stream's rate while it flows (the reloads happen during it).
    let mut sending = Duration::ZERO;
    let (mut applied, mut refused) = (0usize, 0usize);
    for (i, (change, applies)) in steps.iter().enumerate() {
        // Stream the next chunk while this reload happens.
        let (fd2, data2) = (fd.clone(), data.clone());
        let range = sent..(sent + chunk).min(data.len());
        sent = range.end;
        let sender = std::thread::spawn(move || send_all(&fd2, &data2[range]));
        match change {
            Change::Policy(text) => std::fs::write(&policy_file, text).expect("write policy"),
            Change::Pipeline { concurrency, buffer } => {
                shape = (concurrency, buffer, shape.2);
                write_pipeline(dir.path(), "p.json", &pipeline(&policies, &out, shape.0, shape.1, &shape.2));
            }
            Change::BrokenPipeline => std::fs::write(&cfg, "{\"pipeline\": [\n  {\"processor\": \"exporter\",,\n]}\n").expect("write"),
            Change::DriverPath(name) => {
                shape.2 = dir.path().join(name);
                write_pipeline(dir.path(), "p.json", &pipeline(&policies, &out, shape.0, shape.1, &shape.2));
            }
        }
        p.signal(Signal::SIGHUP);
        if *applies {
            applied += 1;
        } else {
            refused += 1;
        }
        p.wait(&format!("the outcome of SIGHUP #{}", i + 1), Duration::from_secs(30), |p| {
            p.count("reload applied: pipeline generation") == applied && p.count("reload refused (") == refused
        });
        if let Change::DriverPath(name) = change {
            assert!(dir.path().join(name).exists() && !sock.exists(), "the listener moved to the new path\n{}", p.logs());
        }
        if matches!(change, Change::BrokenPipeline) {
            // Repaired on disk before the next step (which rewrites it anyway).
            write_pipeline(dir.path(), "p.json", &pipeline(&policies, &out, shape.0, shape.1, &shape.2));
        }
        sending += sender.join().expect("sender");
    }
    sending += send_all(&fd, &data[sent..]);
    let elapsed = started.elapsed();
    eprintln!(
        "streamed {} records at {:.0} records/s while sending ({:.2} s), {:.2} s in all with the waits for \
         {} reload outcomes",
        data.len(),
        data.len() as f64 / sending.as_secs_f64(),
        sending.as_secs_f64(),
        elapsed.as_secs_f64(),
        steps.len()
    );

    let total = data.iter().filter(|d| d.flat_ts.is_some()).count();
    p.wait("every record exported", Duration::from_secs(60), |_| {
        std::fs::read_to_string(&out).map(|s| s.lines().count()).unwrap_or(0) >= total
    });
    p.signal(Signal::SIGTERM);
    let mut p = p;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = p.child.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no exit within 20 s of SIGTERM\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    for t in std::mem::take(&mut p.collectors) {
        let _ = t.join();
    }
    let logs = p.logs();
    assert_eq!(status.code(), Some(0), "{logs}");
    for line in logs.lines().filter(|l| l.contains("reload applied")) {
        eprintln!("{line}");
    }

    let lines = read_json_lines(&out);
    let sent_ts: Vec<i64> = data.iter().filter_map(|d| d.flat_ts).collect();
    let got_ts: Vec<i64> = lines.iter().map(|l| l["ts"].as_i64().expect("ts")).collect();
    assert_eq!(got_ts.len(), sent_ts.len(), "every record exported exactly once\n{logs}");
    assert!(got_ts == sent_ts, "records in sending order, none lost or repeated");
    let last_rule = lines.last().and_then(|l| l["policies"][0]["id"].as_str()).unwrap_or_default().to_string();
    assert_eq!(last_rule, "Rule 9", "the last policy applies after its reload");
    let first_rule = lines.first().and_then(|l| l["policies"][0]["id"].as_str()).unwrap_or_default().to_string();
    assert_eq!(first_rule, "Rule 0", "the first records (written before any reload) are still in the file");
    assert!(logs.contains("p.json: invalid JSON at line"), "the broken pipeline's error names file and line\n{logs}");
    assert!(logs.contains("rules.yaml:5"), "the broken policy's error names file and line\n{logs}");
    assert_eq!(logs.matches("reload refused (").count(), 2, "{logs}");
    assert_eq!(logs.matches("replaced between two polls").count(), 1, "the driver was replaced once\n{logs}");
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// The value of the unlabelled sample `name` at `/metrics` on `port`.
fn metric(port: u16, name: &str) -> Option<f64> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
    let body = agent.get(&format!("http://127.0.0.1:{port}/metrics")).call().ok()?.body_mut().read_to_string().ok()?;
    let prefix = format!("{name} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// `-test` on a pipeline whose output file has content leaves the file as it is (upstream
/// truncated it); SIGHUP on a running pipeline continues its output file, and the reload
/// and reload-failure counters at `/metrics` count an applied and a refused reload.
#[test]
fn test_flag_and_reload_keep_an_existing_output_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("alerts.json");
    std::fs::write(&out, "{\"earlier\":1}\n").expect("seed output");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": out.to_string_lossy()}]}),
    );
    let o = run_sfprocessor_in(dir.path(), &["-test", "-config", &cfg.to_string_lossy()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "{\"earlier\":1}\n", "-test touched the output file");

    // A plain start replaces the file (upstream's behaviour); a reload continues it.
    let sock = dir.path().join("s.sock");
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let args = ["-config", &cfg.to_string_lossy(), "-driver", "socket", &sock.to_string_lossy(), "-metrics", &metrics];
    let p = Proc::spawn(dir.path(), &args);
    p.wait("the socket to be bound", Duration::from_secs(20), |_| sock.exists());
    let data = datums(3000);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
    let (a, b) = data.split_at(1500);
    send_all(&fd, a);
    let n_a = a.iter().filter(|d| d.flat_ts.is_some()).count();
    p.wait("the first half exported", Duration::from_secs(20), |_| {
        std::fs::read_to_string(&out).map(|s| s.lines().count()).unwrap_or(0) == n_a
    });
    assert_eq!(metric(port, "sfprocessor_reloads_total"), Some(0.0));
    p.signal(Signal::SIGHUP);
    p.wait("the reload", Duration::from_secs(20), |p| p.count("reload applied") == 1);
    assert_eq!(metric(port, "sfprocessor_reloads_total"), Some(1.0));
    assert_eq!(metric(port, "sfprocessor_reload_failures_total"), Some(0.0));
    let good = std::fs::read_to_string(&cfg).expect("read pipeline");
    std::fs::write(&cfg, good.replace("flattenerchan", "nosuchchan")).expect("break the pipeline");
    p.signal(Signal::SIGHUP);
    p.wait("the refused reload", Duration::from_secs(20), |p| p.count("reload refused (") == 1);
    assert_eq!(metric(port, "sfprocessor_reload_failures_total"), Some(1.0));
    assert_eq!(metric(port, "sfprocessor_reloads_total"), Some(1.0));
    assert!(p.logs().contains("nosuchchan"), "the error names the bad channel type\n{}", p.logs());
    send_all(&fd, b);
    let total = data.iter().filter(|d| d.flat_ts.is_some()).count();
    p.wait("every record exported", Duration::from_secs(20), |_| {
        std::fs::read_to_string(&out).map(|s| s.lines().count()).unwrap_or(0) == total
    });
    p.signal(Signal::SIGTERM);
    let mut p = p;
    let status = p.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{}", p.logs());
    let got: Vec<i64> = read_json_lines(&out).iter().map(|l| l["ts"].as_i64().expect("ts")).collect();
    let want: Vec<i64> = data.iter().filter_map(|d| d.flat_ts).collect();
    assert_eq!(got, want, "the reload truncated or repeated output");
}

/// A file-driver run reloaded mid-way goes on where it was: the trace is not read again
/// (which would export its records twice) and every record is exported once. The trace
/// arrives through a FIFO in two halves with the reload in between, so the run cannot finish
/// before the reload is applied however fast the machine (a regular file raced the SIGHUP).
#[test]
fn file_driver_is_not_reread_by_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("big.sf");
    let config = sysflow_tracegen::GenConfig { records: 400_000, seed: 5, ..Default::default() };
    sysflow_tracegen::write_trace(&config, &trace, sysflow_tracegen::WriterOptions::default()).expect("write trace");
    let mut flat = 0usize;
    sysflow_tracegen::generate(&config, |rec| {
        if matches!(rec, SysFlowRecord::Event(ref e) if !matches!(e, Event::ProcessFlow(_))) {
            flat += 1;
        }
    });
    let bytes = std::fs::read(&trace).expect("read trace");
    let fifo = dir.path().join("trace.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).expect("mkfifo");
    let out = dir.path().join("out.json");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": out.to_string_lossy()}]}),
    );
    let mut p = Proc::spawn(dir.path(), &["-config", &cfg.to_string_lossy(), &fifo.to_string_lossy()]);
    let (second_half, go) = std::sync::mpsc::channel::<()>();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            // Opening blocks until the driver opens the FIFO for reading.
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open FIFO for writing");
            let (first, rest) = bytes.split_at(bytes.len() / 2);
            w.write_all(first).expect("write the first half");
            if go.recv().is_ok() {
                w.write_all(rest).expect("write the second half");
            }
        })
    };
    p.wait("the first records exported", Duration::from_secs(30), |_| {
        std::fs::read_to_string(&out).map(|s| !s.is_empty()).unwrap_or(false)
    });
    p.signal(Signal::SIGHUP);
    p.wait("the reload applied", Duration::from_secs(30), |p| p.count("reload applied") == 1);
    second_half.send(()).expect("writer alive");
    writer.join().expect("writer thread");
    let status = p.child.wait().expect("wait");
    for t in std::mem::take(&mut p.collectors) {
        let _ = t.join();
    }
    let logs = p.logs();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert_eq!(logs.matches("reload applied").count(), 1, "{logs}");
    assert_eq!(read_json_lines(&out).len(), flat, "every record exported exactly once\n{logs}");
}

/// A reload that moves the socket driver to another path hands its live connection to a new
/// instance listening on the new path: the collector's connection goes on, the old socket
/// file is removed, the next collector connects at the new path, and every record of both
/// connections is exported once. A reload that swaps the driver for another plugin is refused,
/// naming the driver.
#[test]
fn a_changed_socket_path_moves_the_listener_and_keeps_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.json");
    let with_socket = |sock: &Path| {
        json!({"drivers": [{"driver": "socket", "out": "sysflow sysflowchan", "path": sock.to_string_lossy()}],
               "pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": out.to_string_lossy()}]})
    };
    let sock = dir.path().join("a.sock");
    let cfg = write_pipeline(dir.path(), "p.json", &with_socket(&sock));
    let mut p = Proc::spawn(dir.path(), &["-config", &cfg.to_string_lossy()]);
    p.wait("the socket to be bound", Duration::from_secs(20), |_| sock.exists());
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
    let data = datums(3000);
    let (a, rest) = data.split_at(1000);
    let (b, c) = rest.split_at(1000);
    send_all(&fd, a);

    let moved = dir.path().join("b.sock");
    write_pipeline(dir.path(), "p.json", &with_socket(&moved));
    p.signal(Signal::SIGHUP);
    p.wait("the applied reload", Duration::from_secs(20), |p| p.count("reload applied: pipeline generation") == 1);
    assert!(p.logs().contains("replaced between two polls"), "the driver was replaced\n{}", p.logs());
    assert!(moved.exists() && !sock.exists(), "the listener moved to the new path\n{}", p.logs());
    // The collector's connection outlives the move; the next one connects at the new path.
    send_all(&fd, b);
    drop(fd);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&moved).expect("address")).expect("connect at the new path");
    send_all(&fd, c);

    // Another plugin in the driver's place cannot take its input over: refused, naming it.
    let with_file = json!({"drivers": [{"driver": "file", "out": "sysflow sysflowchan", "path": "/nonexistent"}],
        "pipeline": with_socket(&moved)["pipeline"].clone()});
    write_pipeline(dir.path(), "p.json", &with_file);
    p.signal(Signal::SIGHUP);
    p.wait("the refused reload", Duration::from_secs(20), |p| p.count("reload refused (") == 1);
    assert!(p.logs().contains("drivers[0] (socket): the new pipeline has drivers[0] (file)"), "{}", p.logs());
    let total = data.iter().filter(|d| d.flat_ts.is_some()).count();
    p.wait("every record exported", Duration::from_secs(20), |_| {
        std::fs::read_to_string(&out).map(|s| s.lines().count()).unwrap_or(0) >= total
    });
    p.signal(Signal::SIGTERM);
    let status = p.child.wait().expect("wait");
    for t in std::mem::take(&mut p.collectors) {
        let _ = t.join();
    }
    assert_eq!(status.code(), Some(0), "{}", p.logs());
    let got: Vec<i64> = read_json_lines(&out).iter().map(|l| l["ts"].as_i64().expect("ts")).collect();
    let want: Vec<i64> = data.iter().filter_map(|d| d.flat_ts).collect();
    assert_eq!(got, want, "every record of both connections exported once, in order\n{}", p.logs());
}
