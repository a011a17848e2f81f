//! Batched receive on a `SOCK_SEQPACKET` connection: one `recvmmsg` call takes up to
//! [`RECV_BATCH`] queued messages, each into a buffer of its own, so the per-message syscall
//! cost of `recv` is paid once per batch.

use std::{io::IoSliceMut, os::fd::RawFd};

use nix::{
    errno::Errno,
    sys::socket::{recvmmsg, MsgFlags, MultiHeaders},
};

/// Most messages one `recvmmsg` call takes. Each has a receive buffer of the full message
/// limit; the buffers are allocated zeroed (untouched pages are not resident), so memory in
/// use grows only with the sizes of the messages actually received.
pub const RECV_BATCH: usize = 32;

/// One message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Full length of the message, larger than the buffer when it was truncated (`MSG_TRUNC`).
    pub len: usize,
    /// Whether the kernel cut the message to fit the buffer.
    pub truncated: bool,
}

/// How many messages a `receive` call took, and how many it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    /// Messages received.
    pub received: usize,
    /// Messages asked for: a batch short of it ended because nothing more was queued, so it
    /// did not reach the end of the stream (which would have filled every remaining entry).
    pub asked: usize,
}

/// Reusable receive buffers for [`RECV_BATCH`] messages.
#[derive(Debug, Default)]
pub struct ReceiveBuffers {
    bufs: Vec<Vec<u8>>,
    received: Vec<Received>,
}

impl ReceiveBuffers {
    /// Buffers for [`RECV_BATCH`] messages of up to `max_message` bytes each.
    pub fn new(max_message: usize) -> Self {
        ReceiveBuffers { bufs: (0..RECV_BATCH).map(|_| vec![0; max_message]).collect(), received: Vec::with_capacity(RECV_BATCH) }
    }

    /// Takes up to `max` (at most [`RECV_BATCH`]) queued messages from `fd` without waiting.
    /// `EAGAIN` when none is queued. At the end of the stream the kernel returns zero-length
    /// entries (it reports the end as a zero-length read on every call), so the caller tells
    /// those from zero-length messages.
    pub fn receive(&mut self, fd: RawFd, max: usize) -> Result<BatchSize, Errno> {
        let asked = max.clamp(1, RECV_BATCH.min(self.bufs.len()));
        self.received.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self.bufs[..asked].iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let mut headers = MultiHeaders::<()>::preallocate(asked, None);
        // MSG_TRUNC: each entry's length is the message's full length, so an oversized message
        // is detected (and reported with its size) rather than decoded from a cut buffer.
        let results = recvmmsg(fd, &mut headers, slices.iter_mut(), MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT, None)?;
        for r in results {
            self.received.push(Received { len: r.bytes, truncated: r.flags.contains(MsgFlags::MSG_TRUNC) });
        }
        Ok(BatchSize { received: self.received.len(), asked })
    }

    /// Message `i` of the last batch: its length and bytes (empty when it was truncated).
    pub fn message(&self, i: usize) -> (Received, &[u8]) {
        match (self.received.get(i), self.bufs.get(i)) {
            (Some(&r), Some(buf)) if !r.truncated && r.len <= buf.len() => (r, &buf[..r.len]),
            (Some(&r), _) => (r, &[]),
            _ => (Received { len: 0, truncated: false }, &[]),
        }
    }
}
