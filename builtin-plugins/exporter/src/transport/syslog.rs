//! `syslog`: each record is one RFC 5424-style message over UDP, TCP or TLS
//! (export-formats.md §5.1), sent through the [`delivery`](crate::delivery) layer.
//!
//! Message: `<25>1 <local time, RFC 3339, seconds> <hostname> <app> <pid> <tag> - <record>\n`
//! (priority 25 = facility daemon, severity alert). Over TCP and TLS messages are
//! newline-framed (no octet counting), as upstream's client does.
//!
//! With `syslog.proto: relp` the same messages go over RELP, which acknowledges each one
//! ([`syslog_relp`](super::syslog_relp)).
//!
//! Differences from upstream: TLS verifies the server certificate (against
//! `syslog.tls.cafile`, or the system roots) unless `syslog.tls.insecure` is `"true"`;
//! writes time out; a broken connection is re-established with backoff by the delivery
//! layer, and since plain TCP syslog has no acknowledgement, the last records written
//! before the break (the replay window) are written again on the new connection: a
//! duplicate beats a silent loss. Every lost connection is counted and reported.

use std::{
    collections::VecDeque,
    io::Write,
    net::{TcpStream, ToSocketAddrs, UdpSocket},
    time::Duration,
};

use sysflow_plugin_api::PluginConfig;

use crate::{
    delivery::{Item, Outcome, SendError, Sink, SinkStats},
    go_duration::parse_go_duration,
};

/// Facility daemon (3) × 8 + severity alert (1).
const PRIORITY: &str = "<25>1 ";
/// Upstream keeps the last 48 bytes of the program path as the app name.
const MAX_APP_LEN: usize = 48;
/// Connecting (TCP, TLS handshake included) gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that makes no progress for this long fails (a receiver that stopped reading),
/// unless `syslog.writeTimeout` says otherwise; the connection is then re-established and
/// the batch retried.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Records written again after a TCP/TLS reconnect, unless `syslog.replayWindow` says otherwise.
pub const DEFAULT_REPLAY_WINDOW: usize = 10_000;
/// The replay window never holds more bytes than this, whatever its record count.
pub const MAX_REPLAY_BYTES: usize = 64 << 20;
/// RELP messages sent and not yet acknowledged, unless `syslog.relp.window` says otherwise
/// (librelp's own default window).
pub const DEFAULT_RELP_WINDOW: usize = 128;
/// Most records per write (the delivery layer's batch size for syslog).
pub const MAX_BATCH_RECORDS: usize = 1000;

/// The transport protocol (`syslog.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One datagram per record; no connection, no replay.
    Udp,
    /// Newline-framed over TCP (default).
    Tcp,
    /// Newline-framed over TLS (`tls` or `tcp+tls`).
    Tls,
    /// RELP over TCP: every message acknowledged by the server (`relp`).
    Relp,
}

impl Protocol {
    /// The `syslog.proto` value naming this protocol.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Relp => "relp",
        }
    }
}

enum Connection {
    Tcp(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

/// The `syslog.*` settings.
#[derive(Clone)]
pub struct SyslogSettings {
    /// udp, tcp or tls.
    pub protocol: Protocol,
    host: String,
    /// `host:port`.
    pub target: String,
    tag: String,
    /// `syslog.source`, or the local socket address when unset (upstream's quirk).
    configured_source: Option<String>,
    app: String,
    pid: u32,
    /// Records kept for replay after a reconnect.
    pub replay_window: usize,
    /// How long a write may make no progress (RELP: also how long an acknowledgement may take).
    pub write_timeout: Duration,
    /// RELP: most messages sent and not yet acknowledged.
    pub relp_window: usize,
    tls: Option<native_tls::TlsConnector>,
}

impl std::fmt::Debug for SyslogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSettings").field("target", &self.target).field("protocol", &self.protocol).finish()
    }
}

impl SyslogSettings {
    /// Reads and checks the `syslog.*` keys (certificate files are read here).
    pub fn from_config(config: &PluginConfig) -> Result<SyslogSettings, String> {
        let key = |k: &str, default: &str| -> Result<String, String> {
            config.str_or(k, default).map(str::to_string).map_err(|e| e.to_string())
        };
        let protocol = match key("syslog.proto", "tcp")?.as_str() {
            "udp" => Protocol::Udp,
            "tls" | "tcp+tls" => Protocol::Tls,
            "relp" => Protocol::Relp,
            // Upstream: anything else is tcp.
            _ => Protocol::Tcp,
        };
        let host = key("syslog.host", "localhost")?;
        let port_text = key("syslog.port", "514")?;
        let port: u16 =
            port_text.trim().parse().map_err(|e| format!("key 'syslog.port': invalid value '{port_text}': {e}"))?;
        let source = config.str("syslog.source").map_err(|e| e.to_string())?.map(str::to_string);
        let app = std::env::args().next().unwrap_or_default();
        let app = match app.len().checked_sub(MAX_APP_LEN) {
            Some(cut) => app.get(cut..).unwrap_or(&app).to_string(),
            None => app,
        };
        let replay_window = config
            .parse::<usize>("syslog.replayWindow")
            .map_err(|e| e.to_string())?
            .unwrap_or(DEFAULT_REPLAY_WINDOW);
        let write_timeout = match config.str("syslog.writeTimeout").map_err(|e| e.to_string())? {
            Some(text) => parse_go_duration(text).map_err(|e| format!("key 'syslog.writeTimeout': {e}"))?,
            None => DEFAULT_WRITE_TIMEOUT,
        };
        if write_timeout.is_zero() {
            return Err("key 'syslog.writeTimeout': must be more than 0".into());
        }
        let relp_window = config
            .parse::<usize>("syslog.relp.window")
            .map_err(|e| e.to_string())?
            .unwrap_or(DEFAULT_RELP_WINDOW);
        if relp_window == 0 {
            return Err("key 'syslog.relp.window': must be at least 1 message".into());
        }
        let tls = if protocol == Protocol::Tls { Some(tls_connector(config)?) } else { None };
        Ok(SyslogSettings {
            protocol,
            target: format!("{host}:{port}"),
            host,
            tag: key("syslog.tag", "sysflow")?,
            configured_source: source.filter(|s| !s.is_empty()),
            app,
            pid: std::process::id(),
            replay_window,
            write_timeout,
            relp_window,
            tls,
        })
    }

    /// Appends the message header (everything before the record) to `out`.
    pub fn header(&self, out: &mut Vec<u8>, hostname: &str, timestamp: &str) {
        out.extend_from_slice(PRIORITY.as_bytes());
        out.extend_from_slice(timestamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(hostname.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.app.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.pid.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.tag.as_bytes());
        out.extend_from_slice(b" - ");
    }

    /// The HOSTNAME field for a connection from `local`: `syslog.source`, else the local address.
    pub fn hostname(&self, local: std::io::Result<std::net::SocketAddr>) -> String {
        match &self.configured_source {
            Some(src) => src.clone(),
            None => local.map(|a| a.to_string()).unwrap_or_default(),
        }
    }

    /// Names the destination in messages (`syslog tcp localhost:514`).
    pub fn describe(&self) -> String {
        format!("syslog {} {}", self.protocol.name(), self.target)
    }
}

/// The TLS client of `syslog.tls.*`: verifies the server against `cafile` (or the system
/// roots), presents `certfile`/`keyfile` when both are set.
fn tls_connector(config: &PluginConfig) -> Result<native_tls::TlsConnector, String> {
    let key = |k: &str| -> Result<Option<String>, String> {
        Ok(config.str(k).map_err(|e| e.to_string())?.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
    };
    let read = |k: &str, path: &str| std::fs::read(path).map_err(|e| format!("key '{k}': {path}: {e}"));
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = key("syslog.tls.cafile")? {
        let pem = read("syslog.tls.cafile", &path)?;
        let ca = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("key 'syslog.tls.cafile': {path}: not a PEM certificate: {e}"))?;
        builder.add_root_certificate(ca).disable_built_in_roots(true);
    }
    match (key("syslog.tls.certfile")?, key("syslog.tls.keyfile")?) {
        (Some(cert), Some(keyfile)) => {
            let identity = native_tls::Identity::from_pkcs8(
                &read("syslog.tls.certfile", &cert)?,
                &read("syslog.tls.keyfile", &keyfile)?,
            )
            .map_err(|e| format!("keys 'syslog.tls.certfile'/'syslog.tls.keyfile': {cert}, {keyfile}: {e}"))?;
            builder.identity(identity);
        }
        (None, None) => {}
        _ => return Err("keys 'syslog.tls.certfile' and 'syslog.tls.keyfile' go together".into()),
    }
    match key("syslog.tls.insecure")?.as_deref() {
        None | Some("false") => {}
        Some("true") => {
            builder.danger_accept_invalid_certs(true).danger_accept_invalid_hostnames(true);
        }
        Some(other) => return Err(format!("key 'syslog.tls.insecure': '{other}' is not true or false")),
    }
    builder.build().map_err(|e| format!("TLS client setup: {e}"))
}

/// Sends records to a syslog server (one instance: syslog has a single sender, so that
/// messages keep their order).
pub struct SyslogSink {
    settings: SyslogSettings,
    conn: Option<Connection>,
    hostname: String,
    /// Framed messages last written on a TCP/TLS connection, oldest first.
    replay: VecDeque<Vec<u8>>,
    replay_bytes: usize,
    /// A connection broke: the next connection starts by re-writing `replay`.
    replay_due: bool,
    stats: SinkStats,
    buf: Vec<u8>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink").field("settings", &self.settings).finish()
    }
}

impl SyslogSink {
    /// A sink that connects now (a failure fails the exporter's init, as upstream).
    pub fn connect(settings: SyslogSettings) -> Result<SyslogSink, String> {
        let mut sink = SyslogSink {
            settings,
            conn: None,
            hostname: String::new(),
            replay: VecDeque::new(),
            replay_bytes: 0,
            replay_due: false,
            stats: SinkStats::default(),
            buf: Vec::new(),
        };
        sink.open()?;
        Ok(sink)
    }

    fn open(&mut self) -> Result<(), String> {
        let s = &self.settings;
        let fail = |e: &dyn std::fmt::Display| format!("syslog {} connection to {}: {e}", s.protocol.name(), s.target);
        let addrs: Vec<_> = s.target.to_socket_addrs().map_err(|e| fail(&e))?.collect();
        let mut last = String::from("no address");
        for addr in addrs {
            let attempt = match s.protocol {
                Protocol::Udp => {
                    let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                    UdpSocket::bind(bind).and_then(|u| u.connect(addr).map(|()| u)).map(Connection::Udp).map_err(|e| e.to_string())
                }
                // The caller opens a RelpSink for relp; plain TCP is the fallback.
                Protocol::Tcp | Protocol::Relp => tcp(addr, s.write_timeout).map(Connection::Tcp).map_err(|e| e.to_string()),
                Protocol::Tls => match (tcp(addr, s.write_timeout), &s.tls) {
                    (Ok(stream), Some(tls)) => tls
                        .connect(&s.host, stream)
                        .map(|t| Connection::Tls(Box::new(t)))
                        .map_err(|e| format!("TLS handshake: {e}")),
                    (Err(e), _) => Err(e.to_string()),
                    (Ok(_), None) => Err("no TLS client configured".into()),
                },
            };
            match attempt {
                Ok(conn) => {
                    let local = match &conn {
                        Connection::Tcp(t) => t.local_addr(),
                        Connection::Tls(t) => t.get_ref().local_addr(),
                        Connection::Udp(u) => u.local_addr(),
                    };
                    self.hostname = s.hostname(local);
                    self.conn = Some(conn);
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(fail(&last))
    }

    fn header(&self, out: &mut Vec<u8>, timestamp: &str) {
        self.settings.header(out, &self.hostname, timestamp);
    }


    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.conn {
            Some(Connection::Tcp(t)) => t.write_all(bytes).and_then(|()| t.flush()),
            Some(Connection::Tls(t)) => t.write_all(bytes).and_then(|()| t.flush()),
            Some(Connection::Udp(u)) => u.send(bytes).map(|_| ()),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "not connected")),
        }
    }

    /// Forgets the connection after a failure; TCP/TLS schedule a replay.
    fn broken(&mut self, what: &str, e: &std::io::Error) -> SendError {
        self.conn = None;
        if self.settings.protocol != Protocol::Udp {
            self.replay_due = true;
            self.stats.connections_lost += 1;
        }
        SendError { message: format!("{} {what}: {e}", self.settings.describe()), retryable: true }
    }

    fn remember(&mut self, message: Vec<u8>) {
        if self.settings.replay_window == 0 || self.settings.protocol == Protocol::Udp {
            return;
        }
        self.replay_bytes += message.len();
        self.replay.push_back(message);
        while self.replay.len() > self.settings.replay_window || self.replay_bytes > MAX_REPLAY_BYTES {
            match self.replay.pop_front() {
                Some(old) => self.replay_bytes -= old.len(),
                None => break,
            }
        }
    }
}

impl Sink for SyslogSink {
    fn send(&mut self, items: &[Item]) -> Result<Vec<Outcome>, SendError> {
        if self.conn.is_none() {
            self.open().map_err(|message| SendError { message, retryable: true })?;
        }
        if self.replay_due {
            let window: Vec<u8> = self.replay.iter().flatten().copied().collect();
            if let Err(e) = self.write(&window) {
                return Err(self.broken("replay after reconnect", &e));
            }
            self.stats.replayed += self.replay.len() as u64;
            self.replay_due = false;
        }
        let timestamp = local_rfc3339_now();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut messages = Vec::with_capacity(items.len());
        for item in items {
            let mut m = Vec::with_capacity(item.body.len() + 96);
            self.header(&mut m, &timestamp);
            m.extend_from_slice(&item.body);
            m.push(b'\n');
            messages.push(m);
        }
        let result = if self.settings.protocol == Protocol::Udp {
            messages.iter().try_for_each(|m| self.write(m))
        } else {
            for m in &messages {
                buf.extend_from_slice(m);
            }
            self.write(&buf)
        };
        self.buf = buf;
        if let Err(e) = result {
            return Err(self.broken("send", &e));
        }
        for m in messages {
            self.remember(m);
        }
        Ok(vec![Outcome::Delivered; items.len()])
    }

    fn take_stats(&mut self) -> SinkStats {
        std::mem::take(&mut self.stats)
    }
}

/// A TCP connection with the connect and write timeouts set.
pub fn tcp(addr: std::net::SocketAddr, write_timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_write_timeout(Some(write_timeout))?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    Ok(stream)
}

/// The current local time as RFC 3339 with second precision (`Z` for a zero offset).
pub fn local_rfc3339_now() -> String {
    // SAFETY: time(NULL) has no preconditions; localtime_r writes only into `tm`, a
    // zero-initialised struct owned by this frame.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return "1970-01-01T00:00:00Z".to_string();
        }
        tm
    };
    let offset = tm.tm_gmtoff;
    let zone = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.abs();
        format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader},
        net::TcpListener,
        time::Instant,
    };

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> PluginConfig {
        PluginConfig::from_map(
            pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect(),
        )
    }

    fn sink(pairs: &[(&str, &str)]) -> Result<SyslogSink, String> {
        SyslogSettings::from_config(&config(pairs)).and_then(SyslogSink::connect)
    }

    fn items(lines: &[&str]) -> Vec<Item> {
        lines.iter().map(|l| Item { id: None, body: l.as_bytes().to_vec() }).collect()
    }

    /// `<25>1 <ts> <host> <app> <pid> <tag> - <record>`: checks all but the timestamp.
    fn check_message(line: &str, host: &str, tag: &str, record: &str) {
        let parts: Vec<&str> = line.splitn(8, ' ').collect();
        assert_eq!(parts.len(), 8, "{line}");
        assert_eq!(parts[0], "<25>1");
        assert!(parts[1].len() >= 20 && parts[1].as_bytes()[10] == b'T', "timestamp {}", parts[1]);
        assert_eq!(parts[2], host);
        assert!(parts[3].len() <= MAX_APP_LEN);
        assert_eq!(parts[4], std::process::id().to_string());
        assert_eq!((parts[5], parts[6], parts[7]), (tag, "-", record));
    }

    #[test]
    fn tcp_messages_are_newline_framed() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port().to_string();
        let mut t = sink(&[("syslog.host", "127.0.0.1"), ("syslog.port", &port), ("syslog.source", "node7")]).expect("connect");
        let (conn, _) = listener.accept().expect("accept");
        assert_eq!(t.send(&items(&["{\"a\":1}", "{\"b\":2}"])), Ok(vec![Outcome::Delivered; 2]));
        drop(t);
        let lines: Vec<String> = BufReader::new(conn).lines().map(|l| l.expect("line")).collect();
        assert_eq!(lines.len(), 2);
        check_message(&lines[0], "node7", "sysflow", "{\"a\":1}");
        check_message(&lines[1], "node7", "sysflow", "{\"b\":2}");
    }

    #[test]
    fn udp_sends_one_datagram_per_record_with_the_local_address_as_hostname() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = server.local_addr().expect("addr").port().to_string();
        let mut t =
            sink(&[("syslog.proto", "udp"), ("syslog.host", "127.0.0.1"), ("syslog.port", &port), ("syslog.tag", "sf")])
                .expect("connect");
        t.send(&items(&["{}", "{\"x\":[]}"])).expect("send");
        let local = t.hostname.clone();
        assert!(local.starts_with("127.0.0.1:"), "{local}");
        let mut buf = [0u8; 2048];
        for record in ["{}", "{\"x\":[]}"] {
            let n = server.recv(&mut buf).expect("recv");
            let text = std::str::from_utf8(&buf[..n]).expect("utf8");
            check_message(text.strip_suffix('\n').expect("newline"), &local, "sf", record);
        }
    }

    #[test]
    fn after_a_broken_connection_the_replay_window_is_written_again_first() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port().to_string();
        let mut t = sink(&[("syslog.host", "127.0.0.1"), ("syslog.port", &port), ("syslog.replayWindow", "2")])
            .expect("connect");
        let (first, _) = listener.accept().expect("accept");
        for n in 0..3 {
            t.send(&items(&[&format!("r{n}")])).expect("send");
        }
        drop(first);
        // The peer is gone: a write fails within a few attempts (the first may still be buffered).
        let mut failed = false;
        for _ in 0..50 {
            if t.send(&items(&["lost?"])).is_err() {
                failed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(failed, "writing to a closed peer must fail");
        assert_eq!(t.take_stats().connections_lost, 1);
        t.send(&items(&["after"])).expect("reconnect and send");
        let stats = t.take_stats();
        assert_eq!(stats.replayed, 2, "the window holds the last 2 written records");
        let (second, _) = listener.accept().expect("accept again");
        drop(t);
        let lines: Vec<String> = BufReader::new(second).lines().map(|l| l.expect("line")).collect();
        let records: Vec<&str> = lines.iter().map(|l| l.splitn(8, ' ').nth(7).unwrap_or("")).collect();
        assert_eq!(records.last(), Some(&"after"), "{records:?}");
        assert_eq!(records.len(), 3, "two replayed, then the new record: {records:?}");
    }

    #[test]
    fn a_receiver_that_stops_reading_fails_the_write_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port().to_string();
        let mut t = sink(&[("syslog.host", "127.0.0.1"), ("syslog.port", &port), ("syslog.writeTimeout", "300ms")])
            .expect("connect");
        let (_never_read, _) = listener.accept().expect("accept");
        let big = "x".repeat(1 << 20);
        let started = Instant::now();
        let mut result = Ok(Vec::new());
        for _ in 0..64 {
            result = t.send(&items(&[&big]));
            if result.is_err() {
                break;
            }
        }
        let err = result.expect_err("64 MiB cannot fit in the socket buffers");
        assert!(err.retryable && err.message.contains(&format!("127.0.0.1:{port}")), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    }

    #[test]
    fn configuration_errors() {
        let err = |pairs: &[(&str, &str)]| sink(pairs).expect_err("must fail");
        assert!(err(&[("syslog.port", "five")]).contains("'syslog.port'"));
        assert!(err(&[("syslog.proto", "tls"), ("syslog.tls.cafile", "/nonexistent/ca.pem")]).contains("/nonexistent/ca.pem"));
        assert!(err(&[("syslog.proto", "tls"), ("syslog.tls.certfile", "/c.pem")]).contains("go together"));
        assert!(err(&[("syslog.writeTimeout", "10")]).contains("'syslog.writeTimeout'"));
        // Nothing listens on this port: init fails, naming the target.
        let free = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let msg = err(&[("syslog.host", "127.0.0.1"), ("syslog.port", &free.to_string())]);
        assert!(msg.contains(&format!("127.0.0.1:{free}")), "{msg}");
    }
}
