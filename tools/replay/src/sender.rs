//! The client end of the collector's socket: a connected `AF_UNIX` `SOCK_SEQPACKET` socket,
//! one datum per message.

use std::{
    io::IoSlice,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
};

use anyhow::{anyhow, Result};
use nix::{
    errno::Errno,
    sys::socket::{connect, sendmmsg, socket, AddressFamily, MsgFlags, MultiHeaders, SockFlag, SockType, UnixAddr},
};

/// Most messages one `sendmmsg` call hands to the kernel (unpaced replay).
pub const SEND_BATCH: usize = 64;

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The kernel took it.
    Sent,
    /// Larger than the socket can carry in one message (`EMSGSIZE`); nothing was sent.
    TooLarge,
}

/// A connection to the processor's socket.
#[derive(Debug)]
pub struct Sender {
    fd: OwnedFd,
}

impl Sender {
    /// Connects to `path`, explaining the usual failures (no socket, nobody listening).
    pub fn connect(path: &Path) -> Result<Sender> {
        let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| anyhow!("cannot create a unix seqpacket socket: {e}"))?;
        let addr = UnixAddr::new(path).map_err(|e| anyhow!("socket path {}: {e}", path.display()))?;
        connect(fd.as_raw_fd(), &addr).map_err(|e| match e {
            Errno::ENOENT => anyhow!(
                "socket {} does not exist: is `sfprocessor -driver socket {}` (or the sysflow-processor service) running?",
                path.display(),
                path.display()
            ),
            Errno::ECONNREFUSED => anyhow!("socket {}: nobody is listening on it (connection refused)", path.display()),
            Errno::EPROTOTYPE => anyhow!("socket {} is not a SOCK_SEQPACKET socket (not a SysFlow socket driver)", path.display()),
            e => anyhow!("cannot connect to {}: {e}", path.display()),
        })?;
        Ok(Sender { fd })
    }

    /// Sends `messages` in order with as few `sendmmsg` calls as the socket allows (blocking
    /// while it is full), pushing one outcome per message onto `outcomes` as it is decided, so
    /// on a fatal error `outcomes` tells what was sent before it.
    pub fn send_batch(&mut self, messages: &[Vec<u8>], outcomes: &mut Vec<SendOutcome>) -> Result<()> {
        let mut next = 0;
        while next < messages.len() {
            let pending = &messages[next..];
            let slices: Vec<[IoSlice<'_>; 1]> = pending.iter().map(|m| [IoSlice::new(m)]).collect();
            let addrs: Vec<Option<()>> = vec![None; pending.len()];
            let mut headers = MultiHeaders::<()>::preallocate(pending.len(), None);
            match sendmmsg(self.fd.as_raw_fd(), &mut headers, slices.iter(), &addrs, [], MsgFlags::MSG_NOSIGNAL) {
                Ok(sent) => {
                    let sent = sent.count();
                    outcomes.extend(std::iter::repeat_n(SendOutcome::Sent, sent));
                    next += sent;
                }
                Err(Errno::EINTR) => {}
                // The first pending message is the one the kernel refused; the rest are retried.
                Err(Errno::EMSGSIZE) => {
                    outcomes.push(SendOutcome::TooLarge);
                    next += 1;
                }
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(anyhow!("the processor closed the socket")),
                Err(e) => return Err(anyhow!("send failed: {e}")),
            }
        }
        Ok(())
    }
}
