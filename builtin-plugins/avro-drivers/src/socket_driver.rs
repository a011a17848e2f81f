//! The `socket` driver: the server end of the collector's `AF_UNIX` `SOCK_SEQPACKET` stream.
//!
//! One message is one binary SysFlow datum (schema v5). Connections are served one at a
//! time; after a disconnect the driver accepts the next one. Every wait is bounded (~100 ms)
//! so the host can stop the driver at any time.
//!
//! On stop the driver first drains what the collector already sent — the messages queued in
//! the kernel for the current connection and for connections waiting to be accepted — for at
//! most [`DRAIN_LIMIT`]; what is still queued then is counted as `unread_at_stop`. A
//! zero-length message is counted (`empty_messages`) and reading goes on: only a
//! zero-length read with the peer gone and nothing queued is the end of the stream.
//!
//! A reload hands the driver's live input to a new instance (`Driver::handoff`/`resume`):
//! with the same `path` the successor keeps the listening socket and the current connection,
//! so the collector notices nothing; with another `path` it listens there instead (the old
//! socket file is removed) and reads the current connection to its end first.

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
use serde_json::{json, Value};
use sysflow_plugin_api::{
    abi_stable::std_types::RVec, Batch, Counter, Driver, DriverHandoff, DriverPoll, Host, PluginConfig, PluginError,
    SysFlowRecord,
};

use crate::{
    decode::DatumDecoder,
    seqpacket_batch::{ReceiveBuffers, Received},
};

/// Receive buffer: messages up to this size are decoded; larger ones are counted and dropped.
const MAX_MESSAGE: usize = 1 << 20;
/// Records a poll's output starts with room for (it grows past this only for larger polls).
const OUT_CAPACITY: usize = 8 * crate::seqpacket_batch::RECV_BATCH;
/// Longest a poll waits when nothing arrives.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Longest the driver keeps reading already-queued messages after a stop request (a
/// collector that keeps sending could otherwise hold the shutdown forever).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Longest the driver spends counting the messages it could not read within [`DRAIN_LIMIT`].
const COUNT_UNREAD_LIMIT: Duration = Duration::from_millis(500);

/// Receives SysFlow datums from a live collector.
pub struct SocketDriver {
    host: Host,
    path: PathBuf,
    listener: Option<OwnedFd>,
    conn: Option<OwnedFd>,
    decoder: DatumDecoder,
    /// Buffers of the batched receive (`recvmmsg`).
    recv: ReceiveBuffers,
    /// Buffer of the one-message `recv` that counts what is left at stop.
    buf: Vec<u8>,
    connections: u64,
    records: u64,
    decode_errors: u64,
    truncated: u64,
    socket_errors: u64,
    first_record_seen: bool,
    /// Messages received on the current connection (for error context).
    message_index: u64,
    /// Zero-length messages received (no record in them, nothing lost).
    empty_messages: u64,
    /// Messages still queued when the drain after a stop ran out of time.
    unread_at_stop: u64,
    /// Set by `stop`: until then the queued messages are drained, then polls return `End`.
    drain_deadline: Option<Instant>,
    stopped: bool,
    /// Set once the input was handed to a successor: dropping this instance must then leave
    /// the socket file in place for it.
    handed_over: bool,
}

impl std::fmt::Debug for SocketDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketDriver").field("path", &self.path).field("connected", &self.conn.is_some()).finish()
    }
}

/// What a zero-length read on a connection means.
#[derive(Debug, PartialEq, Eq)]
enum ZeroRead {
    /// A zero-length message: more may follow.
    EmptyMessage,
    /// The peer closed and nothing is queued.
    EndOfStream,
}

/// Tells a zero-length message from the end of the stream: `recv` returns 0 for both on a
/// `SOCK_SEQPACKET` socket. While the peer is connected it cannot be the end; once the peer
/// has hung up, it is the end only if no bytes are queued behind it (`FIONREAD` counts every
/// queued message's bytes on unix stream and seqpacket sockets).
fn classify_zero_read(fd: RawFd) -> ZeroRead {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, count 1, no wait.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    let hung_up = n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
    if !hung_up {
        return ZeroRead::EmptyMessage;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the valid pointer.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
    if rc == 0 && queued > 0 {
        ZeroRead::EmptyMessage
    } else {
        ZeroRead::EndOfStream
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

/// Removes the socket file at `path` (and nothing else that might be there).
fn remove_socket_file(path: &PathBuf) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A listening, non-blocking seqpacket socket bound at `path`.
fn listen_on(path: &PathBuf, host: &Host) -> Result<OwnedFd, PluginError> {
    prepare_path(path)?;
    let ctx = |what: &str, e: Errno| PluginError::new(format!("socket {}: {what}: {e}", path.display()));
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
        .map_err(|e| ctx("cannot create socket", e))?;
    let addr = UnixAddr::new(path).map_err(|e| ctx("invalid socket path", e))?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| ctx("cannot bind", e))?;
    let backlog = Backlog::new(16).map_err(|e| ctx("invalid backlog", e))?;
    listen(&fd, backlog).map_err(|e| ctx("cannot listen", e))?;
    host.info(&format!("listening on {}", path.display()));
    Ok(fd)
}

/// The `path` key.
fn socket_path(config: &PluginConfig) -> Result<PathBuf, PluginError> {
    config
        .str("path")?
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| PluginError::new("socket driver: key 'path' is required (the socket path)"))
}

/// A counter of a handed-over state (0 when absent: an older build's state).
fn state_u64(state: &Value, key: &str) -> u64 {
    state.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl SocketDriver {
    fn with_listener(host: Host, path: PathBuf, listener: OwnedFd) -> SocketDriver {
        SocketDriver {
            host,
            path,
            listener: Some(listener),
            conn: None,
            decoder: DatumDecoder::v5(),
            recv: ReceiveBuffers::new(MAX_MESSAGE),
            buf: vec![0; MAX_MESSAGE],
            connections: 0,
            records: 0,
            decode_errors: 0,
            truncated: 0,
            socket_errors: 0,
            first_record_seen: false,
            message_index: 0,
            empty_messages: 0,
            unread_at_stop: 0,
            drain_deadline: None,
            stopped: false,
            handed_over: false,
        }
    }

    fn close_listener(&mut self) {
        self.conn = None;
        if self.listener.take().is_some() && !self.handed_over {
            remove_socket_file(&self.path);
        }
    }

    /// Receives up to `max` queued messages of the current connection in one call and
    /// decodes them into `out` (closing the connection at the end of the stream).
    fn receive_batch(&mut self, conn: RawFd, max: usize, out: &mut Vec<SysFlowRecord>) -> Result<(), Errno> {
        let mut bufs = std::mem::take(&mut self.recv);
        let result = self.decode_batch(&mut bufs, conn, max, out);
        self.recv = bufs;
        result
    }

    fn decode_batch(
        &mut self,
        bufs: &mut ReceiveBuffers,
        conn: RawFd,
        max: usize,
        out: &mut Vec<SysFlowRecord>,
    ) -> Result<(), Errno> {
        let size = bufs.receive(conn, max)?;
        // Zero-length entries before the last message with bytes are messages; the ones after
        // it may be the end of the stream, which `recvmmsg` repeats in every remaining entry.
        let trailing_zeros_from =
            (0..size.received).rev().find(|&i| bufs.message(i).0.len > 0).map_or(0, |last| last + 1);
        for i in 0..trailing_zeros_from {
            let (received, bytes) = bufs.message(i);
            if received.len == 0 {
                self.count_empty_message();
            } else {
                self.handle_message(received, bytes, out);
            }
        }
        if trailing_zeros_from == size.received {
            return Ok(());
        }
        // A batch short of what it asked for stopped at an empty queue, so it never reached
        // the end of the stream; a full one did if the peer is gone and nothing is queued.
        if size.received < size.asked || classify_zero_read(conn) == ZeroRead::EmptyMessage {
            for _ in trailing_zeros_from..size.received {
                self.count_empty_message();
            }
        } else {
            self.conn = None;
            self.host.info(&format!(
                "{}: input stream closed after {} messages; waiting for a new connection",
                self.path.display(),
                self.message_index
            ));
        }
        Ok(())
    }

    fn count_empty_message(&mut self) {
        self.message_index += 1;
        self.empty_messages += 1;
    }

    /// Accepts a waiting connection without blocking; false when none is waiting.
    fn accept_pending(&mut self, listener: RawFd) -> Result<bool, Errno> {
        match accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK) {
            Ok(fd) => {
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                self.conn = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                self.connections += 1;
                self.first_record_seen = false;
                self.message_index = 0;
                self.host.health("Successfully accepted new input stream");
                Ok(true)
            }
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNABORTED) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// After a stop: reads what is queued on the current and the waiting connections, without
    /// waiting for more, until [`DRAIN_LIMIT`] has passed since the stop.
    fn drain(&mut self, max: usize, deadline: Instant) -> DriverPoll {
        let mut out = Vec::new();
        let mut drained = false;
        while out.len() < max {
            if Instant::now() >= deadline {
                self.count_unread();
                drained = true;
                break;
            }
            let Some(conn) = self.conn.as_ref().map(AsRawFd::as_raw_fd) else {
                let Some(listener) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
                    drained = true;
                    break;
                };
                match self.accept_pending(listener) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        self.socket_errors += 1;
                        self.host.error(&format!("{}: accept failed while draining: {e}", self.path.display()));
                    }
                }
                drained = true;
                break;
            };
            match self.receive_batch(conn, max - out.len(), &mut out) {
                Ok(()) => {}
                Err(Errno::EINTR) => {}
                // Nothing queued: this connection is drained; close it.
                Err(Errno::EAGAIN) => self.conn = None,
                Err(e) => {
                    self.socket_errors += 1;
                    self.conn = None;
                    self.host.error(&format!("{}: connection {} failed while draining: {e}", self.path.display(), self.connections));
                }
            }
        }
        if drained {
            self.stopped = true;
            self.close_listener();
        }
        if out.is_empty() {
            DriverPoll::End
        } else {
            DriverPoll::Batch(Batch::sysflow(out))
        }
    }

    /// Counts (without decoding) the messages still queued on the current connection when the
    /// drain ran out of time, for at most [`COUNT_UNREAD_LIMIT`].
    fn count_unread(&mut self) {
        let Some(conn) = self.conn.as_ref().map(AsRawFd::as_raw_fd) else { return };
        let until = Instant::now() + COUNT_UNREAD_LIMIT;
        let mut unread = 0u64;
        while Instant::now() < until {
            match recv(conn, &mut self.buf, MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT) {
                Ok(0) if classify_zero_read(conn) == ZeroRead::EndOfStream => break,
                Ok(_) => unread += 1,
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        self.unread_at_stop += unread;
        self.host.warn(&format!(
            "{}: stop: {} messages still queued after draining for {} s were not read (counted as unread_at_stop)",
            self.path.display(),
            unread,
            DRAIN_LIMIT.as_secs()
        ));
        self.conn = None;
    }

    fn handle_message(&mut self, received: Received, bytes: &[u8], out: &mut Vec<SysFlowRecord>) {
        self.message_index += 1;
        let n = received.len;
        if received.truncated || n > MAX_MESSAGE {
            self.truncated += 1;
            self.host.error(&format!(
                "{}: connection {}, message {}: {n} bytes exceed the {MAX_MESSAGE}-byte receive buffer; message dropped",
                self.path.display(),
                self.connections,
                self.message_index
            ));
            return;
        }
        match self.decoder.decode(bytes) {
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
        let path = socket_path(config)?;
        let listener = listen_on(&path, &host)?;
        Ok(SocketDriver::with_listener(host, path, listener))
    }

    const HANDOFF: bool = true;

    /// The listener and the current connection (if any), with the counters; declined while
    /// draining after a stop request (the drain finishes on this instance).
    fn handoff(&mut self) -> Result<Option<DriverHandoff>, PluginError> {
        if self.stopped || self.drain_deadline.is_some() {
            return Ok(None);
        }
        let Some(listener) = self.listener.as_ref() else { return Ok(None) };
        let mut fds = vec![listener.as_raw_fd()];
        fds.extend(self.conn.as_ref().map(AsRawFd::as_raw_fd));
        let state = json!({
            "path": self.path.to_string_lossy(),
            "connected": self.conn.is_some(),
            "connections": self.connections,
            "records": self.records,
            "decode_errors": self.decode_errors,
            "truncated": self.truncated,
            "socket_errors": self.socket_errors,
            "empty_messages": self.empty_messages,
            "message_index": self.message_index,
            "first_record_seen": self.first_record_seen,
        });
        self.handed_over = true;
        Ok(Some(DriverHandoff { fds: RVec::from(fds), state: RVec::from(state.to_string().into_bytes()) }))
    }

    fn resume(config: &PluginConfig, host: Host, handoff: &DriverHandoff) -> Result<Self, PluginError> {
        let state: Value = serde_json::from_slice(handoff.state.as_slice())
            .map_err(|e| PluginError::new(format!("socket driver: handoff state from the predecessor: {e}")))?;
        let old_path = state.get("path").and_then(Value::as_str).map(PathBuf::from).unwrap_or_default();
        let path = socket_path(config)?;
        let listener = if path == old_path {
            handoff.dup_fd(0)?
        } else {
            let fd = listen_on(&path, &host)?;
            // The predecessor leaves its socket file to the successor, who does not use it.
            remove_socket_file(&old_path);
            host.info(&format!("no longer listening on {}", old_path.display()));
            fd
        };
        let mut d = SocketDriver::with_listener(host, path, listener);
        if state.get("connected").and_then(Value::as_bool).unwrap_or(false) {
            d.conn = Some(handoff.dup_fd(1)?);
        }
        d.connections = state_u64(&state, "connections");
        d.records = state_u64(&state, "records");
        d.decode_errors = state_u64(&state, "decode_errors");
        d.truncated = state_u64(&state, "truncated");
        d.socket_errors = state_u64(&state, "socket_errors");
        d.empty_messages = state_u64(&state, "empty_messages");
        d.message_index = state_u64(&state, "message_index");
        d.first_record_seen = state.get("first_record_seen").and_then(Value::as_bool).unwrap_or(false);
        Ok(d)
    }

    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError> {
        if self.stopped {
            return Ok(DriverPoll::End);
        }
        if let Some(deadline) = self.drain_deadline {
            return Ok(self.drain(max_records.max(1), deadline));
        }
        let Some(listener) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return Ok(DriverPoll::End);
        };
        let max = max_records.max(1);
        let deadline = Instant::now() + POLL_WAIT;
        // Sized for a few receive batches, so a typical poll's records are not moved by growth.
        let mut out = Vec::with_capacity(max.min(OUT_CAPACITY));
        while out.len() < max {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() && !out.is_empty() {
                break;
            }
            let Some(conn) = self.conn.as_ref().map(AsRawFd::as_raw_fd) else {
                match self.accept_pending(listener) {
                    Ok(true) => {}
                    Ok(false) => {
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
            match self.receive_batch(conn, max - out.len(), &mut out) {
                Ok(()) => {}
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
            Counter::loss("decode_errors", self.decode_errors),
            Counter::loss("truncated_messages", self.truncated),
            Counter::loss("socket_errors", self.socket_errors),
            Counter::new("unknown_enum_symbols", self.decoder.unknown_enum_symbols()),
            Counter::new("empty_messages", self.empty_messages),
            Counter::loss("unread_at_stop", self.unread_at_stop),
        ]
    }

    /// Starts the drain: the next polls return what is already queued, then `End`.
    fn stop(&mut self) {
        if self.drain_deadline.is_none() && !self.stopped {
            self.drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
        }
    }
}

impl Drop for SocketDriver {
    fn drop(&mut self) {
        self.close_listener();
    }
}
