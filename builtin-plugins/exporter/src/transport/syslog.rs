//! `syslog`: each record is one RFC 5424-style message over TCP or UDP
//! (export-formats.md §5.1).
//!
//! Message: `<25>1 <local time, RFC 3339, seconds> <hostname> <app> <pid> <tag> - <record>\n`
//! (priority 25 = facility daemon, severity alert). Over TCP messages are newline-framed
//! (no octet counting), as upstream's client does. `syslog.proto: tls` is refused: this
//! build has no TLS client (upstream's TLS skips certificate verification anyway).

use std::{
    io::Write,
    net::{TcpStream, ToSocketAddrs, UdpSocket},
    time::Duration,
};

use sysflow_plugin_api::PluginConfig;

use super::{EncodedBatch, Transport, TransportError};

/// Facility daemon (3) × 8 + severity alert (1).
const PRIORITY: &str = "<25>1 ";
/// Upstream keeps the last 48 bytes of the program path as the app name.
const MAX_APP_LEN: usize = 48;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

enum Connection {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// Sends records to a syslog server.
pub struct SyslogTransport {
    udp: bool,
    target: String,
    tag: String,
    /// `syslog.source`, or the local socket address when unset (upstream's quirk).
    configured_source: Option<String>,
    hostname: String,
    app: String,
    pid: u32,
    conn: Option<Connection>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for SyslogTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogTransport").field("target", &self.target).field("udp", &self.udp).finish()
    }
}

impl SyslogTransport {
    /// Reads the `syslog.*` keys and connects (a failure fails the exporter's init).
    pub fn from_config(config: &PluginConfig) -> Result<SyslogTransport, TransportError> {
        let key = |k: &str, default: &str| -> Result<String, TransportError> {
            config.str_or(k, default).map(str::to_string).map_err(|e| TransportError(e.to_string()))
        };
        let udp = match key("syslog.proto", "tcp")?.as_str() {
            "udp" => true,
            "tls" => {
                return Err(TransportError(
                    "key 'syslog.proto': 'tls' is not available in this build yet (available: tcp, udp)".into(),
                ))
            }
            _ => false,
        };
        let host = key("syslog.host", "localhost")?;
        let port_text = key("syslog.port", "514")?;
        let port: u16 = port_text
            .trim()
            .parse()
            .map_err(|e| TransportError(format!("key 'syslog.port': invalid value '{port_text}': {e}")))?;
        let source = config.str("syslog.source").map_err(|e| TransportError(e.to_string()))?.map(str::to_string);
        let app = std::env::args().next().unwrap_or_default();
        let app = match app.len().checked_sub(MAX_APP_LEN) {
            Some(cut) => app.get(cut..).unwrap_or(&app).to_string(),
            None => app,
        };
        let mut t = SyslogTransport {
            udp,
            target: format!("{host}:{port}"),
            tag: key("syslog.tag", "sysflow")?,
            configured_source: source.filter(|s| !s.is_empty()),
            hostname: String::new(),
            app,
            pid: std::process::id(),
            conn: None,
            buf: Vec::new(),
        };
        t.connect()?;
        Ok(t)
    }

    fn connect(&mut self) -> Result<(), TransportError> {
        let proto = if self.udp { "udp" } else { "tcp" };
        let fail = |e: std::io::Error| TransportError(format!("syslog {proto} connection to {}: {e}", self.target));
        let addrs: Vec<_> = self.target.to_socket_addrs().map_err(fail)?.collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            let attempt = if self.udp {
                let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                UdpSocket::bind(bind).and_then(|s| s.connect(addr).map(|()| s)).map(Connection::Udp)
            } else {
                TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map(Connection::Tcp)
            };
            match attempt {
                Ok(conn) => {
                    let local = match &conn {
                        Connection::Tcp(s) => s.local_addr(),
                        Connection::Udp(s) => s.local_addr(),
                    };
                    self.hostname = match &self.configured_source {
                        Some(s) => s.clone(),
                        None => local.map(|a| a.to_string()).unwrap_or_default(),
                    };
                    self.conn = Some(conn);
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(fail(last))
    }

    fn header(&self, out: &mut Vec<u8>, timestamp: &str) {
        out.extend_from_slice(PRIORITY.as_bytes());
        out.extend_from_slice(timestamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.hostname.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.app.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.pid.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.tag.as_bytes());
        out.extend_from_slice(b" - ");
    }

    fn send(&mut self, batch: &EncodedBatch, timestamp: &str) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = match &self.conn {
            Some(Connection::Tcp(_)) => {
                for record in batch.records() {
                    self.header(&mut buf, timestamp);
                    buf.extend_from_slice(record);
                    buf.push(b'\n');
                }
                match &mut self.conn {
                    Some(Connection::Tcp(s)) => s.write_all(&buf),
                    _ => Ok(()),
                }
            }
            Some(Connection::Udp(_)) => {
                let mut result = Ok(());
                for record in batch.records() {
                    buf.clear();
                    self.header(&mut buf, timestamp);
                    buf.extend_from_slice(record);
                    buf.push(b'\n');
                    if let Some(Connection::Udp(s)) = &self.conn {
                        if let Err(e) = s.send(&buf) {
                            result = Err(e);
                            break;
                        }
                    }
                }
                result
            }
            None => Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "not connected")),
        };
        self.buf = buf;
        result
    }
}

impl Transport for SyslogTransport {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn export(&mut self, batch: &EncodedBatch) -> Result<(), TransportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let timestamp = local_rfc3339_now();
        if self.send(batch, &timestamp).is_ok() {
            return Ok(());
        }
        // Upstream re-establishes a broken connection and retries once.
        self.conn = None;
        self.connect()?;
        self.send(batch, &timestamp)
            .map_err(|e| TransportError(format!("syslog send to {}: {e}", self.target)))
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        match &mut self.conn {
            Some(Connection::Tcp(s)) => {
                s.flush().map_err(|e| TransportError(format!("syslog flush to {}: {e}", self.target)))
            }
            _ => Ok(()),
        }
    }

    fn close(&mut self) -> Result<(), TransportError> {
        let result = self.flush();
        self.conn = None;
        result
    }
}

/// The current local time as RFC 3339 with second precision (`Z` for a zero offset).
fn local_rfc3339_now() -> String {
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
    };

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> PluginConfig {
        PluginConfig::from_map(
            pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect(),
        )
    }

    fn batch(lines: &[&str]) -> EncodedBatch {
        let mut b = EncodedBatch::new();
        for l in lines {
            b.push_with(|o| o.extend_from_slice(l.as_bytes()));
        }
        b
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
        let cfg = config(&[("syslog.host", "127.0.0.1"), ("syslog.port", &port), ("syslog.source", "node7")]);
        let mut t = SyslogTransport::from_config(&cfg).expect("connect");
        let (conn, _) = listener.accept().expect("accept");
        t.export(&batch(&["{\"a\":1}", "{\"b\":2}"])).expect("export");
        t.close().expect("close");
        let lines: Vec<String> = BufReader::new(conn).lines().map(|l| l.expect("line")).collect();
        assert_eq!(lines.len(), 2);
        check_message(&lines[0], "node7", "sysflow", "{\"a\":1}");
        check_message(&lines[1], "node7", "sysflow", "{\"b\":2}");
    }

    #[test]
    fn udp_sends_one_datagram_per_record_with_the_local_address_as_hostname() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = server.local_addr().expect("addr").port().to_string();
        let cfg = config(&[("syslog.proto", "udp"), ("syslog.host", "127.0.0.1"), ("syslog.port", &port), ("syslog.tag", "sf")]);
        let mut t = SyslogTransport::from_config(&cfg).expect("connect");
        t.export(&batch(&["{}", "{\"x\":[]}"])).expect("export");
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
    fn configuration_errors() {
        let err = |pairs: &[(&str, &str)]| SyslogTransport::from_config(&config(pairs)).expect_err("must fail").0;
        assert!(err(&[("syslog.port", "five")]).contains("'syslog.port'"));
        assert!(err(&[("syslog.proto", "tls")]).contains("'tls' is not available"));
        // Nothing listens on this port: init fails, naming the target.
        let free = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let msg = err(&[("syslog.host", "127.0.0.1"), ("syslog.port", &free.to_string())]);
        assert!(msg.contains(&format!("127.0.0.1:{free}")), "{msg}");
    }
}
