//! `terminal`: records on standard output, one per line.

use std::io::Write;

use super::{EncodedBatch, Transport, TransportError};

/// Writes each batch to stdout with one locked write and flushes it.
#[derive(Debug, Default)]
pub struct TerminalTransport;

impl TerminalTransport {
    /// The stdout transport.
    pub fn new() -> TerminalTransport {
        TerminalTransport
    }
}

impl Transport for TerminalTransport {
    fn name(&self) -> &'static str {
        "terminal"
    }

    fn export(&mut self, batch: &EncodedBatch) -> Result<(), TransportError> {
        let mut out = std::io::stdout().lock();
        out.write_all(batch.as_lines())
            .and_then(|()| out.flush())
            .map_err(|e| TransportError(format!("writing to stdout: {e}")))
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        std::io::stdout().flush().map_err(|e| TransportError(format!("flushing stdout: {e}")))
    }

    fn close(&mut self) -> Result<(), TransportError> {
        self.flush()
    }
}
