//! The client end of the collector's socket: a connected `AF_UNIX` `SOCK_SEQPACKET` socket,
//! one datum per message.

use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
};

use anyhow::{anyhow, Result};
use nix::{
    errno::Errno,
    sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr},
};

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
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

    /// Sends one message, blocking while the socket is full.
    pub fn send(&mut self, message: &[u8]) -> Result<SendOutcome> {
        loop {
            // MSG_NOSIGNAL: a closed peer is an EPIPE error here, not a SIGPIPE that kills us silently.
            match send(self.fd.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(SendOutcome::Sent),
                Err(Errno::EINTR) => continue,
                Err(Errno::EMSGSIZE) => return Ok(SendOutcome::TooLarge),
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(anyhow!("the processor closed the socket")),
                Err(e) => return Err(anyhow!("send failed: {e}")),
            }
        }
    }
}
