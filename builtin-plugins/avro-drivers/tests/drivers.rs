//! The `file` and `socket` drivers driven through the `Driver` trait, as the host does.

mod common;


use std::{
    cell::RefCell,
    io::Write,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use sysflow_avro_drivers::{descriptors, FileDriver, SocketDriver, TraceReader};
use sysflow_plugin_api::{
    abi_stable::std_types::{RStr, RString},
    Batch, Counter, Driver, DriverPoll, Event, Host, LogLevel, PluginConfig, SysFlowRecord,
};

thread_local! {
    static LOG: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn log_fn(level: LogLevel, _instance: RStr<'_>, msg: RStr<'_>) {
    LOG.with(|l| l.borrow_mut().push((level, msg.as_str().to_string())));
}

fn host() -> Host {
    LOG.with(|l| l.borrow_mut().clear());
    Host::new(log_fn, "test")
}

fn logged(level: LogLevel, needle: &str) -> usize {
    LOG.with(|l| l.borrow().iter().filter(|(lv, m)| *lv == level && m.contains(needle)).count())
}

fn config(path: &Path) -> PluginConfig {
    PluginConfig::from_json(&serde_json::json!({ "path": path.to_str().expect("utf-8 path") }).to_string()).expect("config")
}

fn counter(cs: &[Counter], name: &str) -> u64 {
    cs.iter().find(|c| c.name.as_str() == name).unwrap_or_else(|| panic!("counter {name}")).value
}

fn records_of(batch: Batch) -> Vec<SysFlowRecord> {
    match batch {
        Batch::SysFlow(b) => b.iter().cloned().collect(),
        Batch::Flat(_) | Batch::Otel(_) => panic!("driver produced flat or OTel records"),
    }
}

/// Polls a file driver to the end.
fn drain(d: &mut FileDriver, max: usize) -> Vec<SysFlowRecord> {
    let mut out = Vec::new();
    loop {
        match d.poll(max).expect("poll") {
            DriverPoll::Batch(b) => {
                assert!(b.len() <= max && !b.is_empty());
                out.extend(records_of(b));
            }
            DriverPoll::Idle => {}
            DriverPoll::End => return out,
        }
    }
}

fn decode_file(path: &Path) -> Vec<SysFlowRecord> {
    TraceReader::open(path).expect("open").map(|r| r.expect("record")).collect()
}

#[test]
fn descriptors_list_both_drivers() {
    let names: Vec<String> = descriptors().iter().map(|d| d.name.as_str().to_string()).collect();
    assert_eq!(names, ["file", "socket"]);
    assert!(descriptors().iter().all(|d| d.config_keys.iter().any(|k| k.name.as_str() == "path")));
}

#[test]
fn file_driver_reads_a_file_in_batches() {
    let Some(dir) = common::data_dir() else { return };
    let path = dir.join("traces/k8s_small.sf");
    let mut d = FileDriver::new(&config(&path), host()).expect("driver");
    let recs = drain(&mut d, 1000);
    assert_eq!(recs, decode_file(&path));
    assert_eq!(recs.len(), 6173);
    let c = d.counters();
    assert_eq!(counter(&c, "records"), 6173);
    assert_eq!(counter(&c, "files"), 1);
    assert_eq!(counter(&c, "decode_errors"), 0);
    assert!(matches!(d.poll(10), Ok(DriverPoll::End)));
}

#[test]
fn file_driver_reads_a_directory_in_name_order_and_survives_bad_files() {
    let Some(dir) = common::data_dir() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = dir.join("traces/tcp.sf");
    let b = dir.join("traces/httpd.sf");
    std::fs::copy(&b, tmp.path().join("1_httpd.sf")).expect("copy");
    std::fs::copy(&a, tmp.path().join("2_tcp.sf")).expect("copy");
    std::fs::write(tmp.path().join("15_garbage"), b"not avro").expect("write");
    // A just-rotated file the collector has not written to yet.
    std::fs::write(tmp.path().join("16_empty.sf"), b"").expect("write");
    std::fs::create_dir(tmp.path().join("0_subdir")).expect("mkdir");
    let mut d = FileDriver::new(&config(tmp.path()), host()).expect("driver");
    let recs = drain(&mut d, 7);
    // Byte order of names: "15_garbage" < "16_empty.sf" < "1_httpd.sf" < "2_tcp.sf".
    let mut want = decode_file(&b);
    want.extend(decode_file(&a));
    assert_eq!(recs, want);
    let c = d.counters();
    assert_eq!(counter(&c, "files"), 2);
    assert_eq!(counter(&c, "files_failed"), 2);
    assert_eq!(logged(LogLevel::Error, "16_empty.sf: empty file (0 bytes)"), 1);
    assert_eq!(logged(LogLevel::Warn, "0_subdir"), 1);
    assert_eq!(logged(LogLevel::Error, "15_garbage"), 1);
}

#[test]
fn file_driver_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = FileDriver::new(&config(tmp.path()), host()).expect_err("empty dir");
    assert_eq!(e.message.as_str(), format!("No files present in directory: {}", tmp.path().display()));
    let bad = tmp.path().join("bad.sf");
    std::fs::write(&bad, b"garbage").expect("write");
    let e = FileDriver::new(&config(&bad), host()).expect_err("not avro");
    assert!(e.message.as_str().contains("bad.sf") && e.message.as_str().contains("not an Avro"), "{e}");
    let e = FileDriver::new(&PluginConfig::default(), host()).expect_err("no path");
    assert!(e.message.as_str().contains("'path'"), "{e}");
    // A directory holding only unreadable files: the driver ends with an error.
    let mut d = FileDriver::new(&config(tmp.path()), host()).expect("driver");
    assert!(d.poll(10).is_err());
    assert!(matches!(d.poll(10), Ok(DriverPoll::End)));
}

/// Encodes records as socket messages; K8s messages get the collector's "\n\0" suffix back.
fn messages(recs: &[SysFlowRecord]) -> Vec<Vec<u8>> {
    recs.iter()
        .map(|r| {
            let mut r = r.clone();
            if let SysFlowRecord::Event(Event::K8s(k)) = &mut r {
                k.message = RString::from(format!("{}\n\0", k.message));
            }
            let mut buf = Vec::new();
            sysflow_tracegen::encode_datum(&r, &mut buf);
            buf
        })
        .collect()
}

fn send_all(path: &Path, msgs: &[Vec<u8>]) {
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(path).expect("addr")).expect("connect");
    for m in msgs {
        send(fd.as_raw_fd(), m, MsgFlags::empty()).expect("send");
    }
}

#[test]
fn socket_driver_serves_reconnecting_collectors() {
    let Some(dir) = common::data_dir() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("run/sysflow/sf.sock");
    std::fs::create_dir_all(sock.parent().unwrap()).expect("mkdir");
    // A stale socket left by a killed run is replaced (a regular file would be refused).
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("stale socket at the socket path"));
    let mut d = SocketDriver::new(&config(&sock), host()).expect("driver");

    // Nothing connected: poll returns Idle promptly.
    let t = Instant::now();
    assert!(matches!(d.poll(100), Ok(DriverPoll::Idle)));
    assert!(t.elapsed() < Duration::from_millis(600), "{:?}", t.elapsed());

    let first = decode_file(&dir.join("traces/sf-collector_tcp-client-server.sf"));
    let second = decode_file(&dir.join("traces/k8s_small.sf"));
    let (m1, m2) = (messages(&first), messages(&second));
    let client_path = sock.clone();
    let client = std::thread::spawn(move || {
        send_all(&client_path, &m1);
        // A datum that does not decode: counted, logged, not forwarded.
        send_all(&client_path, &[vec![0x7f]]);
        send_all(&client_path, &m2);
    });

    let mut got = Vec::new();
    let want = first.len() + second.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want && Instant::now() < deadline {
        match d.poll(500).expect("poll") {
            DriverPoll::Batch(b) => {
                assert!(b.len() <= 500);
                got.extend(records_of(b));
            }
            DriverPoll::Idle => {}
            DriverPoll::End => panic!("socket driver ended"),
        }
    }
    client.join().expect("client");
    let mut expected = first.clone();
    expected.extend(second.iter().cloned());
    assert_eq!(got.len(), want);
    assert_eq!(got, expected, "records arrive in order, equal to the file-decoded ones");
    // Let the driver see the last EOF.
    for _ in 0..3 {
        assert!(matches!(d.poll(10), Ok(DriverPoll::Idle)));
    }
    let c = d.counters();
    assert_eq!(counter(&c, "records"), want as u64);
    assert_eq!(counter(&c, "connections"), 3);
    assert_eq!(counter(&c, "decode_errors"), 1);
    assert_eq!(logged(LogLevel::Health, "Successfully accepted new input stream"), 3);
    assert_eq!(logged(LogLevel::Error, "message 1:"), 1);

    d.stop();
    assert!(matches!(d.poll(10), Ok(DriverPoll::End)));
    assert!(!sock.exists(), "the end of the drain after a stop removes the socket file");
}

#[test]
fn socket_driver_drops_oversized_messages_and_keeps_the_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("big.sock");
    let mut d = SocketDriver::new(&config(&sock), host()).expect("driver");
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("addr")).expect("connect");
    let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
    let big = vec![0u8; (1 << 20) + 10];
    if let Err(e) = send(fd.as_raw_fd(), &big, MsgFlags::MSG_DONTWAIT) {
        // The kernel's socket buffer limit (net.core.wmem_max) refuses such messages outright.
        println!("skipping oversized message check: send failed: {e}");
        return;
    }
    let mut header = Vec::new();
    sysflow_tracegen::encode_datum(&SysFlowRecord::Header(Default::default()), &mut header);
    send(fd.as_raw_fd(), &header, MsgFlags::empty()).expect("send");
    let mut got = Vec::new();
    for _ in 0..20 {
        if let DriverPoll::Batch(b) = d.poll(10).expect("poll") {
            got.extend(records_of(b));
        }
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1);
    assert_eq!(counter(&d.counters(), "truncated_messages"), 1);
}

#[test]
fn socket_driver_stops_promptly_with_an_idle_collector_connected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("new-dir/idle.sock");
    let mut d = SocketDriver::new(&config(&sock), host()).expect("driver creates the parent directory");
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("addr")).expect("connect");
    for _ in 0..3 {
        let t = Instant::now();
        assert!(matches!(d.poll(1000), Ok(DriverPoll::Idle)));
        assert!(t.elapsed() < Duration::from_millis(600), "{:?}", t.elapsed());
    }
    assert_eq!(counter(&d.counters(), "connections"), 1);
    d.stop();
    // Nothing queued: the drain ends at once.
    let t = Instant::now();
    assert!(matches!(d.poll(1000), Ok(DriverPoll::End)));
    assert!(t.elapsed() < Duration::from_millis(600), "{:?}", t.elapsed());
    assert!(!sock.exists());
    // The collector sees the connection closed.
    assert!(send(fd.as_raw_fd(), &[0], MsgFlags::MSG_NOSIGNAL).is_err());
}

/// Polls a driver until `End`, failing if that takes longer than `limit` (a hang).
fn drain_within<D: Driver>(d: &mut D, limit: Duration) -> Vec<SysFlowRecord> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        assert!(start.elapsed() < limit, "no End within {limit:?}");
        match d.poll(1024).expect("poll") {
            DriverPoll::Batch(b) => out.extend(records_of(b)),
            DriverPoll::Idle => {}
            DriverPoll::End => return out,
        }
    }
}

/// What the collector sent before the stop request is read after it: the drain on stop.
#[test]
fn socket_driver_drains_queued_messages_on_stop() {
    let Some(dir) = common::data_dir() else { return };
    let recs = decode_file(&dir.join("traces/tcp.sf"));
    let msgs = messages(&recs[..recs.len().min(150)]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("drain.sock");
    let mut d = SocketDriver::new(&config(&sock), host()).expect("driver");
    // Connected and sent, but never polled: everything sits in the kernel (and the
    // connection in the listen backlog) when the stop arrives.
    send_all(&sock, &msgs);
    d.stop();
    let got = drain_within(&mut d, Duration::from_secs(8));
    assert_eq!(got.len(), msgs.len(), "every queued message read after the stop");
    let cs = d.counters();
    assert_eq!((counter(&cs, "connections"), counter(&cs, "unread_at_stop")), (1, 0));
    assert!(!sock.exists());
}

/// A zero-length message is counted and the messages behind it are still read.
#[test]
fn socket_driver_reads_past_a_zero_length_message() {
    let Some(dir) = common::data_dir() else { return };
    let recs = decode_file(&dir.join("traces/tcp.sf"));
    let mut msgs = messages(&recs[..recs.len().min(40)]);
    msgs.insert(20, Vec::new());
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("empty.sock");
    let mut d = SocketDriver::new(&config(&sock), host()).expect("driver");
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("addr")).expect("connect");
    for m in &msgs {
        send(fd.as_raw_fd(), m, MsgFlags::MSG_NOSIGNAL).expect("send");
    }
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < msgs.len() - 1 && start.elapsed() < Duration::from_secs(3) {
        if let DriverPoll::Batch(b) = d.poll(1024).expect("poll") {
            got.extend(records_of(b));
        }
    }
    assert_eq!(got.len(), msgs.len() - 1, "the messages after the empty one are read");
    assert_eq!(counter(&d.counters(), "empty_messages"), 1);
    // The peer closing is still the end of the stream, also right after an empty message.
    send(fd.as_raw_fd(), &[], MsgFlags::MSG_NOSIGNAL).expect("send");
    drop(fd);
    let start = Instant::now();
    while logged(LogLevel::Info, "input stream closed after") == 0 {
        assert!(start.elapsed() < Duration::from_secs(3), "the close was not seen");
        let _ = d.poll(1024).expect("poll");
    }
    assert_eq!(counter(&d.counters(), "empty_messages"), 1, "the empty message before the close is its end");
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).expect("mkfifo");
}

fn demo_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.sf"))
}

/// A FIFO among the traces of a directory (nobody writing to it) is skipped with a warning
/// naming it; the other files are read and the driver ends.
#[test]
fn file_driver_skips_a_fifo_in_a_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::copy(demo_path(), tmp.path().join("a.sf")).expect("copy");
    mkfifo(&tmp.path().join("b.fifo"));
    std::fs::copy(demo_path(), tmp.path().join("c.sf")).expect("copy");
    let dir = tmp.path().to_path_buf();
    // On a thread of its own: a driver that opens the FIFO blocks inside `poll` for ever.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut d = FileDriver::new(&config(&dir), host()).expect("driver");
        let got = drain_within(&mut d, Duration::from_secs(10));
        let _ = tx.send((got.len(), logged(LogLevel::Warn, "b.fifo: it is a FIFO, not a regular file"), d.counters()));
    });
    let (records, warned, cs) = rx.recv_timeout(Duration::from_secs(15)).expect("the driver hangs on the FIFO");
    assert_eq!(records, 6000, "both traces read");
    assert_eq!(warned, 1);
    assert_eq!((counter(&cs, "files"), counter(&cs, "files_skipped"), counter(&cs, "files_failed")), (2, 1, 0));
}

/// Other non-regular files given as the path are refused at start-up, naming what they are.
#[test]
fn file_driver_refuses_a_socket_as_its_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("x.sock");
    let _listener = SocketDriver::new(&config(&sock), host()).expect("socket");
    let e = FileDriver::new(&config(&sock), host()).expect_err("a socket is no trace");
    assert!(e.to_string().contains("x.sock is a socket"), "{e}");
}

/// A FIFO given as the path is read as a stream: the driver starts without a writer, stays
/// responsive while there is none, reads everything a writer sends, and ends when it closes.
#[test]
fn file_driver_reads_an_explicit_fifo() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fifo = tmp.path().join("trace.fifo");
    mkfifo(&fifo);
    let start = Instant::now();
    let mut d = FileDriver::new(&config(&fifo), host()).expect("driver");
    for _ in 0..3 {
        assert!(matches!(d.poll(1024), Ok(DriverPoll::Idle)), "no writer yet");
    }
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open for writing");
            w.write_all(&std::fs::read(demo_path()).expect("demo")).expect("write");
        })
    };
    let got = drain_within(&mut d, Duration::from_secs(10));
    writer.join().expect("writer");
    assert_eq!(got, decode_file(&demo_path()));
    let cs = d.counters();
    assert_eq!((counter(&cs, "records"), counter(&cs, "files"), counter(&cs, "decode_errors")), (3000, 1, 0));
}

/// A stop request ends a FIFO read that is blocked — no writer at all, or a writer that
/// stays connected without writing — after taking what is already in the pipe.
#[test]
fn stop_ends_a_blocked_fifo_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fifo = tmp.path().join("idle.fifo");
    mkfifo(&fifo);
    let mut d = FileDriver::new(&config(&fifo), host()).expect("driver");
    assert!(matches!(d.poll(1024), Ok(DriverPoll::Idle)));
    d.stop();
    let start = Instant::now();
    assert!(drain_within(&mut d, Duration::from_secs(2)).is_empty());
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());

    // A writer that sent the whole trace and then idles with the FIFO open.
    let mut d = FileDriver::new(&config(&fifo), host()).expect("driver");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open for writing");
            w.write_all(&std::fs::read(demo_path()).expect("demo")).expect("write");
            // Keep the FIFO open until the test is done.
            let _ = done_rx.recv_timeout(Duration::from_secs(20));
        })
    };
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 3000 {
        assert!(start.elapsed() < Duration::from_secs(10), "only {} records read", got.len());
        if let DriverPoll::Batch(b) = d.poll(1024).expect("poll") {
            got.extend(records_of(b));
        }
    }
    // Now the read waits on an idle writer; the stop ends it.
    assert!(matches!(d.poll(1024), Ok(DriverPoll::Idle)));
    d.stop();
    let start = Instant::now();
    assert!(drain_within(&mut d, Duration::from_secs(2)).is_empty());
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    let cs = d.counters();
    assert_eq!((counter(&cs, "records"), counter(&cs, "decode_errors"), counter(&cs, "records_skipped")), (3000, 0, 0));
    done_tx.send(()).expect("writer waiting");
    writer.join().expect("writer");
}

/// Polls the socket driver until `want` records arrived (or 10 s passed).
fn poll_records(d: &mut SocketDriver, want: usize) -> Vec<SysFlowRecord> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want && Instant::now() < deadline {
        match d.poll(1024).expect("poll") {
            DriverPoll::Batch(b) => got.extend(records_of(b)),
            DriverPoll::Idle => {}
            DriverPoll::End => panic!("socket driver ended"),
        }
    }
    got
}

#[test]
fn socket_driver_batches_keep_empty_messages_apart_from_the_end_of_stream() {
    let Some(dir) = common::data_dir() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("batch.sock");
    let mut d = SocketDriver::new(&config(&sock), host()).expect("driver");
    let recs: Vec<SysFlowRecord> =
        decode_file(&dir.join("traces/sf-collector_tcp-client-server.sf")).into_iter().cycle().take(67).collect();
    let datums = messages(&recs);

    // Queued before the first poll, with empty messages at the end of a 32-message batch, at
    // the start of the next one and in the middle: all are messages, none ends the stream.
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("addr")).expect("connect");
    let mut queued: Vec<&[u8]> = datums[..31].iter().map(Vec::as_slice).collect();
    queued.extend([&[][..], &[][..]]);
    queued.extend(datums[31..36].iter().map(Vec::as_slice));
    queued.push(&[]);
    queued.extend(datums[36..].iter().map(Vec::as_slice));
    queued.push(&[]);
    for m in &queued {
        send(fd.as_raw_fd(), m, MsgFlags::empty()).expect("send");
    }
    assert_eq!(poll_records(&mut d, recs.len()), recs, "records in order across batches");
    // The empty message last in the queue is counted while the peer is connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&d.counters(), "empty_messages") < 4 && Instant::now() < deadline {
        assert!(matches!(d.poll(1024), Ok(DriverPoll::Idle)));
    }
    assert_eq!(counter(&d.counters(), "empty_messages"), 4);

    // 40 messages, then the peer closes before the driver reads them: the second batch holds
    // 8 messages and the end of the stream, which `recvmmsg` repeats in the other 24 entries.
    for m in &datums[..40] {
        send(fd.as_raw_fd(), m, MsgFlags::empty()).expect("send");
    }
    drop(fd);
    assert_eq!(poll_records(&mut d, 40), recs[..40]);
    for _ in 0..3 {
        assert!(matches!(d.poll(1024), Ok(DriverPoll::Idle)));
    }
    let c = d.counters();
    assert_eq!(counter(&c, "records"), 107);
    assert_eq!(counter(&c, "empty_messages"), 4, "the end of the stream is not counted as empty messages");
    assert_eq!(counter(&c, "connections"), 1);
    assert_eq!(logged(LogLevel::Info, "input stream closed after 111 messages"), 1);
}

/// A socket driver hands its listener and live connection to a successor: with the same
/// path the collector's connection goes on unnoticed (records in order, none lost or read
/// twice, counters carried); with another path the successor listens there, the old
/// socket file is gone, and the connection still goes on.
#[test]
fn socket_driver_hands_its_connection_to_a_successor() {
    let Some(dir) = common::data_dir() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let sock = tmp.path().join("a.sock");
    let mut d = SocketDriver::new(&config(&sock), host()).expect("driver");
    let recs = decode_file(&dir.join("traces/sf-collector_tcp-client-server.sf"));
    let datums = messages(&recs);
    let third = datums.len() / 3;
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("addr")).expect("connect");
    let send_range = |r: std::ops::Range<usize>| {
        for m in &datums[r] {
            send(fd.as_raw_fd(), m, MsgFlags::empty()).expect("send");
        }
    };
    send_range(0..third);
    let mut got = poll_records(&mut d, third);
    // Queued but unread at the hand-over: the successor reads them.
    send_range(third..2 * third);
    let state = d.handoff().expect("handoff").expect("the socket driver hands over");
    let mut same = SocketDriver::resume(&config(&sock), host(), &state).expect("resume on the same path");
    drop(d);
    assert!(sock.exists(), "the predecessor leaves the socket file to its successor");
    got.extend(poll_records(&mut same, third));

    let moved = tmp.path().join("b.sock");
    let state = same.handoff().expect("handoff").expect("the socket driver hands over");
    let mut next = SocketDriver::resume(&config(&moved), host(), &state).expect("resume on another path");
    drop(same);
    assert!(moved.exists() && !sock.exists(), "the listener moved to the new path");
    send_range(2 * third..datums.len());
    got.extend(poll_records(&mut next, datums.len() - 2 * third));
    assert_eq!(got, recs, "every record once, in order, across two hand-overs");
    let c = next.counters();
    assert_eq!(counter(&c, "records"), recs.len() as u64, "the counters carry over");
    assert_eq!(counter(&c, "connections"), 1, "one connection throughout");
    next.stop();
    while !matches!(next.poll(1024).expect("poll"), DriverPoll::End) {}
    assert!(!moved.exists(), "the last instance removes its socket file at the end");
}
