//! The `socket` driver: the server end of the collector's `AF_UNIX` `SOCK_SEQPACKET` stream.
//!
//! One message is one binary SysFlow datum (schema v5). Connections are served one at a
//! time; after a disconnect the driver accepts the next one. Every wait is bounded (~100 ms)
//! so the host can stop the driver at any time.

use std::{
    fs,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::fs::{DirBuilderExt, FileTypeExt},
    },
    path::PathBuf,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::socket::{accept4, bind, listen, recv, socket, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr},
};
use sysflow_plugin_api::{Batch, Counter, Driver, DriverPoll, Host, PluginConfig, PluginError, SysFlowRecord};

use crate::decode::DatumDecoder;

/// Receive buffer: messages up to this size are decoded; larger ones are counted and dropped.
const MAX_MESSAGE: usize = 1 << 20;
/// Longest a poll waits when nothing arrives.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Receives SysFlow datums from a live collector.
pub struct SocketDriver {
    host: Host,
    path: PathBuf,
    listener: Option<OwnedFd>,
    conn: Option<OwnedFd>,
    decoder: DatumDecoder,
    buf: Vec<u8>,
    connections: u64,
    records: u64,
    decode_errors: u64,
    truncated: u64,
    socket_errors: u64,
    first_record_seen: bool,
    /// Messages received on the current connection (for error context).
    message_index: u64,
    stopped: bool,
}

impl std::fmt::Debug for SocketDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketDriver").field("path", &self.path).field("connected", &self.conn.is_some()).finish()
    }
}

/// Waits until `fd` is readable or `timeout` passes; true when readable (or on error, so the
/// caller's next call reports it).
fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n != 0
}

fn prepare_path(path: &PathBuf) -> Result<(), PluginError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(PluginError::new(format!("socket path {} is a directory; refusing to delete it", path.display())))
        }
        // A stale socket (left by a killed run) is replaced; any other file is refused,
        // so mixing up `-driver socket` and a trace path never deletes a trace.
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path)
            .map_err(|e| PluginError::new(format!("cannot remove stale socket {}: {e}", path.display())))?,
        Ok(_) => {
            return Err(PluginError::new(format!(
                "socket path {} exists and is not a socket; refusing to delete it (remove it yourself if it is not needed)",
                path.display()
            )))
        }
        Err(_) => {}
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Upstream creates it with mode 0600, which nobody can traverse; 0755 works.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| PluginError::new(format!("cannot create socket directory {}: {e}", parent.display())))?;
    }
    Ok(())
}

impl SocketDriver {
    fn close_listener(&mut self) {
        self.conn = None;
        if self.listener.take().is_some() {
            if let Ok(meta) = fs::symlink_metadata(&self.path) {
                if meta.file_type().is_socket() {
                    let _ = fs::remove_file(&self.path);
                }
            }
        }
    }

    fn handle_message(&mut self, n: usize, out: &mut Vec<SysFlowRecord>) {
        self.message_index += 1;
        if n > self.buf.len() {
            self.truncated += 1;
            self.host.error(&format!(
                "{}: connection {}, message {}: {n} bytes exceed the {MAX_MESSAGE}-byte receive buffer; message dropped",
                self.path.display(),
                self.connections,
                self.message_index
            ));
            return;
        }
        match self.decoder.decode(&self.buf[..n]) {
            Ok(rec) => {
                if !self.first_record_seen {
                    self.first_record_seen = true;
                    self.host.health("Successfully read first record from input stream");
                }
                self.records += 1;
                out.push(rec);
            }
            Err(e) => {
                self.decode_errors += 1;
                self.host.error(&format!(
                    "{}: connection {}, message {}: {e}; record dropped",
                    self.path.display(),
                    self.connections,
                    self.message_index
                ));
            }
        }
    }
}

impl Driver for SocketDriver {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let path = config
            .str("path")?
            .filter(|p| !p.is_empty())
            .ok_or_else(|| PluginError::new("socket driver: key 'path' is required (the socket path)"))?;
        let path = PathBuf::from(path);
        prepare_path(&path)?;
        let ctx = |what: &str, e: Errno| PluginError::new(format!("socket {}: {what}: {e}", path.display()));
        let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
            .map_err(|e| ctx("cannot create socket", e))?;
        let addr = UnixAddr::new(&path).map_err(|e| ctx("invalid socket path", e))?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| ctx("cannot bind", e))?;
        let backlog = Backlog::new(16).map_err(|e| ctx("invalid backlog", e))?;
        listen(&fd, backlog).map_err(|e| ctx("cannot listen", e))?;
        host.info(&format!("listening on {}", path.display()));
        Ok(SocketDriver {
            host,
            path,
            listener: Some(fd),
            conn: None,
            decoder: DatumDecoder::v5(),
            buf: vec![0; MAX_MESSAGE],
            connections: 0,
            records: 0,
            decode_errors: 0,
            truncated: 0,
            socket_errors: 0,
            first_record_seen: false,
            message_index: 0,
            stopped: false,
        })
    }

    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError> {
        if self.stopped {
            return Ok(DriverPoll::End);
        }
        let Some(listener) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return Ok(DriverPoll::End);
        };
        let max = max_records.max(1);
        let deadline = Instant::now() + POLL_WAIT;
        let mut out = Vec::new();
        while out.len() < max {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() && !out.is_empty() {
                break;
            }
            let Some(conn) = self.conn.as_ref().map(AsRawFd::as_raw_fd) else {
                match accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK) {
                    Ok(fd) => {
                        // SAFETY: accept4 returned a new descriptor that nothing else owns.
                        self.conn = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                        self.connections += 1;
                        self.first_record_seen = false;
                        self.message_index = 0;
                        self.host.health("Successfully accepted new input stream");
                    }
                    Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNABORTED) => {
                        if !out.is_empty() || remaining.is_zero() || !wait_readable(listener, remaining) {
                            break;
                        }
                    }
                    Err(e) => {
                        self.socket_errors += 1;
                        self.host.error(&format!("{}: accept failed: {e}", self.path.display()));
                        std::thread::sleep(remaining.min(POLL_WAIT));
                        break;
                    }
                }
                continue;
            };
            match recv(conn, &mut self.buf, MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT) {
                Ok(0) => {
                    self.conn = None;
                    self.host.info(&format!(
                        "{}: input stream closed after {} messages; waiting for a new connection",
                        self.path.display(),
                        self.message_index
                    ));
                }
                Ok(n) => self.handle_message(n, &mut out),
                Err(Errno::EAGAIN | Errno::EINTR) => {
                    if !out.is_empty() || remaining.is_zero() || !wait_readable(conn, remaining) {
                        break;
                    }
                }
                Err(e) => {
                    self.socket_errors += 1;
                    self.conn = None;
                    self.host.error(&format!("{}: connection {} failed: {e}", self.path.display(), self.connections));
                }
            }
        }
        if out.is_empty() {
            Ok(DriverPoll::Idle)
        } else {
            Ok(DriverPoll::Batch(Batch::sysflow(out)))
        }
    }

    fn counters(&self) -> Vec<Counter> {
        vec![
            Counter::new("records", self.records),
            Counter::new("connections", self.connections),
            Counter::new("decode_errors", self.decode_errors),
            Counter::new("truncated_messages", self.truncated),
            Counter::new("socket_errors", self.socket_errors),
            Counter::new("unknown_enum_symbols", self.decoder.unknown_enum_symbols()),
        ]
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.close_listener();
    }
}

impl Drop for SocketDriver {
    fn drop(&mut self) {
        self.close_listener();
    }
}
