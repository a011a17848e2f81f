//! `syslog.proto: relp`: the syslog messages of [`syslog`](super::syslog) sent over RELP,
//! rsyslog's Reliable Event Logging Protocol (imrelp), which acknowledges each message.
//!
//! Every frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. A session starts with an
//! `open` command offering `relp_version`, `relp_software` and `commands=syslog`; each
//! record is one `syslog` command whose DATA is the message (without newline); the server
//! answers each command, in order, with `rsp` and `200 OK` or an error code; `close` ends
//! the session; a `serverclose` frame (transaction 0) says the server is going away.
//!
//! A record counts as delivered only once its `rsp 200` arrived. At most
//! `syslog.relp.window` messages are unacknowledged at any time. When the connection
//! breaks (or an acknowledgement takes longer than `syslog.writeTimeout`), the acknowledged
//! records are delivered, and exactly the unacknowledged ones are retried by the delivery
//! layer on a new session: no replay window, no loss. A message the server received but
//! could not acknowledge before it went down may still arrive twice. An error response
//! (not 200) rejects that record for good, as an HTTP 4xx does. No TLS.

use std::{
    collections::VecDeque,
    io::{self, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use super::syslog::{local_rfc3339_now, tcp, SyslogSettings};
use crate::delivery::{Item, Outcome, SendError, Sink};

/// Transaction numbers run from 1 to this, then wrap to 1 (RELP's 9-digit limit).
const MAX_TXNR: u32 = 999_999_999;
/// The `relp_software` offer: name, version, where to find it.
const SOFTWARE: &str = concat!("sfprocessor,", env!("CARGO_PKG_VERSION"), ",https://sysflow.io");
/// Longest TXNR, COMMAND or DATALEN field accepted from the server.
const MAX_FIELD: usize = 32;
/// Largest DATA accepted from the server (responses are short; this bounds a broken peer).
const MAX_RESPONSE_DATA: usize = 1 << 20;
/// How long the `close` handshake may take when the sink is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One frame read from the server.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    txnr: u32,
    command: String,
    data: Vec<u8>,
}

/// An open RELP session.
struct Session {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

/// Sends records to a RELP server (rsyslog imrelp), counting each delivered when acknowledged.
pub struct RelpSink {
    settings: SyslogSettings,
    session: Option<Session>,
    hostname: String,
    next_txnr: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for RelpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelpSink").field("settings", &self.settings).finish()
    }
}

/// Appends one frame to `out`.
fn frame(out: &mut Vec<u8>, txnr: u32, command: &str, data: &[u8]) {
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads one header field up to a space or newline; returns it and the byte that ended it.
fn read_field(reader: &mut impl Read, name: &str) -> io::Result<(String, u8)> {
    let mut field = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if let Err(e) = reader.read_exact(&mut byte) {
            return Err(match e.kind() {
                io::ErrorKind::UnexpectedEof => io::Error::new(io::ErrorKind::ConnectionAborted, "the server closed the connection"),
                _ => e,
            });
        }
        match byte[0] {
            b' ' | b'\n' => break,
            b if field.len() < MAX_FIELD => field.push(b),
            _ => return Err(invalid(format!("RELP {name} longer than {MAX_FIELD} bytes"))),
        }
    }
    let text = String::from_utf8(field).map_err(|_| invalid(format!("RELP {name} is not text")))?;
    Ok((text, byte[0]))
}

/// Reads one frame (`TXNR SP COMMAND SP DATALEN [SP DATA] LF`).
fn read_frame(reader: &mut impl Read) -> io::Result<Frame> {
    let (txnr, _) = read_field(reader, "TXNR")?;
    let txnr = txnr.parse().map_err(|_| invalid(format!("RELP TXNR '{txnr}' is not a number")))?;
    let (command, _) = read_field(reader, "COMMAND")?;
    let (len, end) = read_field(reader, "DATALEN")?;
    let len: usize = len.parse().map_err(|_| invalid(format!("RELP DATALEN '{len}' is not a number")))?;
    if len > MAX_RESPONSE_DATA {
        return Err(invalid(format!("RELP {command} frame of {len} bytes")));
    }
    let mut data = vec![0u8; len];
    if end == b' ' {
        reader.read_exact(&mut data)?;
        let mut trailer = [0u8; 1];
        reader.read_exact(&mut trailer)?;
        if trailer[0] != b'\n' {
            return Err(invalid(format!("RELP {command} frame {txnr}: no newline after {len} bytes of data")));
        }
    } else if len != 0 {
        return Err(invalid(format!("RELP {command} frame {txnr}: DATALEN {len} but no data")));
    }
    Ok(Frame { txnr, command, data })
}

/// The status of an `rsp` frame: `Ok` for 200, else the server's code and text.
fn response_status(data: &[u8]) -> Result<(), String> {
    let first_line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(first_line);
    if text.starts_with("200") {
        Ok(())
    } else {
        Err(format!("RELP server answered '{text}'"))
    }
}

/// Asks the kernel to acknowledge received data at once (Linux `TCP_QUICKACK`, which does
/// not stick: set before each wait). rsyslog writes each answer separately with Nagle on, so
/// after the first answer of a burst it waits for our ACK; a delayed ACK cost ~22 ms per
/// window of messages (2,800 messages/s with a window of 128).
fn quick_ack(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is an open TCP socket owned by `stream`; the option value is a
    // c_int living for the call, its size passed alongside. A failure only costs speed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl RelpSink {
    /// A sink that opens a session now (a failure fails the exporter's init, as for tcp).
    pub fn connect(settings: SyslogSettings) -> Result<RelpSink, String> {
        let mut sink = RelpSink { settings, session: None, hostname: String::new(), next_txnr: 1, buf: Vec::new() };
        sink.open()?;
        Ok(sink)
    }

    fn take_txnr(&mut self) -> u32 {
        let txnr = self.next_txnr;
        self.next_txnr = if txnr >= MAX_TXNR { 1 } else { txnr + 1 };
        txnr
    }

    /// Connects and runs the `open` handshake; transaction numbers restart at 1.
    fn open(&mut self) -> Result<(), String> {
        let target = self.settings.target.clone();
        let describe = self.settings.describe();
        let fail = |e: &dyn std::fmt::Display| format!("{describe}: {e}");
        let addrs: Vec<_> = target.to_socket_addrs().map_err(|e| fail(&e))?.collect();
        let mut last = String::from("no address");
        for addr in addrs {
            match self.handshake(addr) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(fail(&last))
    }

    fn handshake(&mut self, addr: std::net::SocketAddr) -> Result<(), String> {
        let stream = tcp(addr, self.settings.write_timeout).map_err(|e| e.to_string())?;
        // An acknowledgement may take as long as a write may stall.
        stream.set_read_timeout(Some(self.settings.write_timeout)).map_err(|e| e.to_string())?;
        // The client waits for answers after each write: Nagle could hold a write's last
        // segment until the server's (delayed) ACK.
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut session = Session { writer: stream, reader };
        self.next_txnr = 1;
        let txnr = self.take_txnr();
        let offers = format!("relp_version=0\nrelp_software={SOFTWARE}\ncommands=syslog");
        let mut out = Vec::new();
        frame(&mut out, txnr, "open", offers.as_bytes());
        session.writer.write_all(&out).map_err(|e| format!("RELP open: {e}"))?;
        let answer = read_frame(&mut session.reader).map_err(|e| format!("RELP open: {e}"))?;
        if answer.command != "rsp" || answer.txnr != txnr {
            return Err(format!("RELP open: expected 'rsp' to {txnr}, got '{}' {}", answer.command, answer.txnr));
        }
        response_status(&answer.data).map_err(|e| format!("RELP open refused: {e}"))?;
        // The answer's offers (after the status line) name the commands the server takes.
        let offers = String::from_utf8_lossy(&answer.data);
        let commands = offers.lines().find_map(|l| l.strip_prefix("commands="));
        if commands.is_some_and(|c| !c.split(',').any(|c| c.trim() == "syslog")) {
            return Err(format!("RELP open: the server does not take syslog commands (commands={})", commands.unwrap_or("")));
        }
        self.hostname = self.settings.hostname(session.writer.local_addr());
        self.session = Some(session);
        Ok(())
    }

    /// Reads the next response and settles the oldest unacknowledged message with it.
    fn settle_one(&mut self, unacked: &mut VecDeque<(u32, usize)>, outcomes: &mut [Outcome]) -> io::Result<()> {
        let session = self.session.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))?;
        if session.reader.buffer().is_empty() {
            quick_ack(&session.writer);
        }
        let answer = read_frame(&mut session.reader)?;
        if answer.command == "serverclose" {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the server is closing the session (serverclose)"));
        }
        let Some((txnr, index)) = unacked.pop_front() else {
            return Err(invalid(format!("RELP '{}' {} with nothing outstanding", answer.command, answer.txnr)));
        };
        // The server answers in the order of the commands.
        if answer.command != "rsp" || answer.txnr != txnr {
            return Err(invalid(format!("RELP: expected 'rsp' to {txnr}, got '{}' {}", answer.command, answer.txnr)));
        }
        if let Some(outcome) = outcomes.get_mut(index) {
            *outcome = match response_status(&answer.data) {
                Ok(()) => Outcome::Delivered,
                Err(e) => Outcome::Rejected(e),
            };
        }
        Ok(())
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let session = self.session.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))?;
        let result = session.writer.write_all(buf);
        buf.clear();
        result
    }

    /// Sends every item as a `syslog` command, keeping at most `relp_window` unacknowledged,
    /// and settles each with its response.
    fn exchange(&mut self, items: &[Item], outcomes: &mut [Outcome], buf: &mut Vec<u8>) -> io::Result<()> {
        let window = self.settings.relp_window.max(1);
        let timestamp = local_rfc3339_now();
        let mut unacked = VecDeque::with_capacity(window);
        let mut message = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if unacked.len() >= window {
                self.flush(buf)?;
                // Half a window of answers before sending more: fewer, larger writes.
                while unacked.len() > window / 2 {
                    self.settle_one(&mut unacked, outcomes)?;
                }
            }
            message.clear();
            self.settings.header(&mut message, &self.hostname, &timestamp);
            message.extend_from_slice(&item.body);
            let txnr = self.take_txnr();
            frame(buf, txnr, "syslog", &message);
            unacked.push_back((txnr, index));
        }
        self.flush(buf)?;
        while !unacked.is_empty() {
            self.settle_one(&mut unacked, outcomes)?;
        }
        Ok(())
    }
}

impl Sink for RelpSink {
    fn send(&mut self, items: &[Item]) -> Result<Vec<Outcome>, SendError> {
        if self.session.is_none() {
            self.open().map_err(|message| SendError { message, retryable: true })?;
        }
        let pending = Outcome::Retry(String::new());
        let mut outcomes = vec![pending.clone(); items.len()];
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = self.exchange(items, &mut outcomes, &mut buf);
        self.buf = buf;
        if let Err(e) = result {
            // What the server acknowledged is delivered; the rest goes again on a new session.
            self.session = None;
            let why = format!("{}: {e}", self.settings.describe());
            for outcome in outcomes.iter_mut().filter(|o| **o == pending) {
                *outcome = Outcome::Retry(why.clone());
            }
        }
        Ok(outcomes)
    }
}

impl Drop for RelpSink {
    fn drop(&mut self) {
        let txnr = self.take_txnr();
        if let Some(mut session) = self.session.take() {
            // Best effort: the server may log an unannounced disconnect otherwise.
            let mut out = Vec::new();
            frame(&mut out, txnr, "close", b"");
            let _ = session.writer.set_read_timeout(Some(CLOSE_TIMEOUT));
            if session.writer.write_all(&out).is_ok() {
                let _ = read_frame(&mut session.reader);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, sync::mpsc, thread};

    use sysflow_plugin_api::PluginConfig;

    use super::*;

    fn settings(port: u16, extra: &[(&str, &str)]) -> SyslogSettings {
        let mut pairs = vec![
            ("syslog.proto".to_string(), "relp".to_string()),
            ("syslog.host".to_string(), "127.0.0.1".to_string()),
            ("syslog.port".to_string(), port.to_string()),
            ("syslog.source".to_string(), "node7".to_string()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config =
            PluginConfig::from_map(pairs.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect());
        SyslogSettings::from_config(&config).expect("settings")
    }

    fn items(n: usize) -> Vec<Item> {
        (0..n).map(|i| Item { id: None, body: format!("{{\"n\":{i}}}").into_bytes() }).collect()
    }

    /// A RELP server for one session: answers `open`, then runs `on_syslog` for each
    /// `syslog` frame (its number in the session, from 0) and writes what it returns;
    /// `None` ends the session. Sends the received messages back through the channel.
    fn serve(
        listener: &TcpListener,
        on_syslog: impl Fn(usize, u32) -> Option<Vec<u8>>,
        received: &mpsc::Sender<String>,
    ) {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        let open = read_frame(&mut reader).expect("open frame");
        assert_eq!((open.txnr, open.command.as_str()), (1, "open"));
        let offers = String::from_utf8(open.data).expect("utf8");
        assert!(offers.contains("relp_version=0") && offers.contains("commands=syslog"), "{offers}");
        let mut out = Vec::new();
        frame(&mut out, 1, "rsp", b"200 OK\nrelp_version=0\nrelp_software=test\ncommands=syslog");
        writer.write_all(&out).expect("write");
        let mut n = 0;
        while let Ok(f) = read_frame(&mut reader) {
            if f.command == "close" {
                let mut out = Vec::new();
                frame(&mut out, f.txnr, "rsp", b"");
                let _ = writer.write_all(&out);
                return;
            }
            assert_eq!(f.command, "syslog");
            let _ = received.send(String::from_utf8(f.data).expect("utf8"));
            match on_syslog(n, f.txnr) {
                Some(answer) => writer.write_all(&answer).expect("answer"),
                None => return,
            }
            n += 1;
        }
    }

    fn ok(txnr: u32) -> Vec<u8> {
        let mut out = Vec::new();
        frame(&mut out, txnr, "rsp", b"200 OK");
        out
    }

    #[test]
    fn frames_are_read_with_and_without_data() {
        let mut input: &[u8] = b"7 rsp 6 200 OK\n0 serverclose 0\n";
        assert_eq!(read_frame(&mut input).expect("rsp"), Frame { txnr: 7, command: "rsp".into(), data: b"200 OK".to_vec() });
        assert_eq!(read_frame(&mut input).expect("serverclose"), Frame { txnr: 0, command: "serverclose".into(), data: vec![] });
        let err = read_frame(&mut input).expect_err("end of input");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        let mut bad: &[u8] = b"1 rsp 9 200 OKxx";
        assert!(read_frame(&mut bad).is_err());
    }

    #[test]
    fn acknowledged_records_are_delivered_and_errors_rejected() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::channel();
        let server = thread::spawn(move || {
            serve(
                &listener,
                |n, txnr| {
                    if n == 2 {
                        let mut out = Vec::new();
                        frame(&mut out, txnr, "rsp", b"500 message too large");
                        Some(out)
                    } else {
                        Some(ok(txnr))
                    }
                },
                &tx,
            )
        });
        let mut sink = RelpSink::connect(settings(port, &[])).expect("connect");
        let outcomes = sink.send(&items(4)).expect("send");
        assert_eq!(outcomes[..2], [Outcome::Delivered, Outcome::Delivered]);
        assert!(matches!(&outcomes[2], Outcome::Rejected(e) if e.contains("500 message too large")), "{outcomes:?}");
        assert_eq!(outcomes[3], Outcome::Delivered);
        drop(sink);
        server.join().expect("server");
        let got: Vec<String> = rx.iter().collect();
        assert_eq!(got.len(), 4);
        let parts: Vec<&str> = got[0].splitn(8, ' ').collect();
        assert_eq!((parts[0], parts[2], parts[5], parts[7]), ("<25>1", "node7", "sysflow", "{\"n\":0}"), "{got:?}");
    }

    #[test]
    fn after_a_lost_session_exactly_the_unacknowledged_records_go_again() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::channel();
        let server = thread::spawn(move || {
            // First session: acknowledges 3 messages, then goes away without a word.
            serve(&listener, |n, txnr| (n < 3).then(|| ok(txnr)), &tx);
            serve(&listener, |_, txnr| Some(ok(txnr)), &tx);
        });
        let mut sink = RelpSink::connect(settings(port, &[("syslog.relp.window", "2")])).expect("connect");
        let batch = items(6);
        let outcomes = sink.send(&batch).expect("send");
        let delivered = outcomes.iter().filter(|o| **o == Outcome::Delivered).count();
        assert_eq!(delivered, 3, "{outcomes:?}");
        assert!(outcomes[3..].iter().all(|o| matches!(o, Outcome::Retry(why) if why.contains(&format!("127.0.0.1:{port}")))), "{outcomes:?}");
        // What the delivery layer does next: the retried records on a new session.
        let again = sink.send(&batch[3..]).expect("send again");
        assert_eq!(again, vec![Outcome::Delivered; 3]);
        drop(sink);
        server.join().expect("server");
        let records: Vec<String> = rx.iter().map(|m| m.splitn(8, ' ').nth(7).unwrap_or("").to_string()).collect();
        // The 4th record reached the first server unacknowledged, so it is the one duplicate.
        let expected: Vec<String> =
            [0, 1, 2, 3, 3, 4, 5].iter().map(|n| format!("{{\"n\":{n}}}")).collect();
        assert_eq!(records, expected);
    }

    #[test]
    fn no_more_than_the_window_is_unacknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut writer = stream;
            let open = read_frame(&mut reader).expect("open");
            let mut out = Vec::new();
            frame(&mut out, open.txnr, "rsp", b"200 OK\ncommands=syslog");
            writer.write_all(&out).expect("write");
            // Never acknowledges: counts what arrives until the client gives up.
            let mut count = 0;
            while let Ok(f) = read_frame(&mut reader) {
                if f.command == "syslog" {
                    count += 1;
                }
            }
            count
        });
        let mut sink =
            RelpSink::connect(settings(port, &[("syslog.relp.window", "5"), ("syslog.writeTimeout", "300ms")])).expect("connect");
        let outcomes = sink.send(&items(50)).expect("send");
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Retry(_))), "{outcomes:?}");
        drop(sink);
        assert_eq!(server.join().expect("server"), 5);
    }

    #[test]
    fn a_server_without_syslog_commands_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let open = read_frame(&mut reader).expect("open");
            let mut out = Vec::new();
            frame(&mut out, open.txnr, "rsp", b"200 OK\ncommands=other");
            let mut writer = stream;
            writer.write_all(&out).expect("write");
        });
        let err = RelpSink::connect(settings(port, &[])).expect_err("refused");
        assert!(err.contains("syslog commands") && err.contains(&format!("127.0.0.1:{port}")), "{err}");
        server.join().expect("server");
        let zero = SyslogSettings::from_config(&PluginConfig::from_map(
            [("syslog.relp.window".to_string(), serde_json::Value::String("0".into()))].into_iter().collect(),
        ));
        assert!(zero.expect_err("window 0").contains("'syslog.relp.window'"));
    }
}
