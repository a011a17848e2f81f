//! Transports: where encoded records go (`export` key).
//!
//! A transport receives whole [`EncodedBatch`]es, so line-oriented sinks write a batch
//! with one system call while message-oriented ones (syslog, Kafka) can iterate its
//! records. Adding a transport = a module implementing [`Transport`] plus an arm in
//! [`open`].

mod file;
mod null;
pub mod syslog;
mod syslog_relp;
mod terminal;

pub use file::{FileTransport, OpenMode};
pub use null::NullTransport;
pub use syslog::{SyslogSettings, SyslogSink};
pub use syslog_relp::RelpSink;
pub use terminal::TerminalTransport;

use sysflow_plugin_api::PluginConfig;

/// An error delivering records, with the transport's context (path, peer …).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Encoded records, each followed by `\n`, in one contiguous buffer.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    data: Vec<u8>,
    records: usize,
}

impl EncodedBatch {
    /// An empty batch.
    pub fn new() -> EncodedBatch {
        EncodedBatch::default()
    }

    /// Appends one record: `encode` writes its bytes (without newline) into the buffer.
    #[inline]
    pub fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.data);
        self.data.push(b'\n');
        self.records += 1;
    }

    /// Appends one record if `encode` succeeds; on failure whatever it wrote is removed.
    #[inline]
    pub fn try_push_with<E>(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let start = self.data.len();
        match encode(&mut self.data) {
            Ok(()) => {
                self.data.push(b'\n');
                self.records += 1;
                Ok(())
            }
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    /// The records as newline-terminated lines.
    pub fn as_lines(&self) -> &[u8] {
        &self.data
    }

    /// Each record's bytes, without its newline.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let body = self.data.strip_suffix(b"\n").unwrap_or(&self.data);
        body.split(|b| *b == b'\n').take(self.records)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Size in bytes, newlines included.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.data.clear();
        self.records = 0;
        // Keep the buffer from staying at the size of one exceptional batch forever.
        if self.data.capacity() > 64 << 20 {
            self.data.shrink_to(8 << 20);
        }
    }
}

/// A destination for encoded records.
pub trait Transport: Send {
    /// The `export` name of this transport.
    fn name(&self) -> &'static str;

    /// Delivers (or buffers) every record of `batch`.
    fn export(&mut self, batch: &EncodedBatch) -> Result<(), TransportError>;

    /// Pushes buffered data to the destination.
    fn flush(&mut self) -> Result<(), TransportError>;

    /// Flushes and releases the destination; later calls are errors or no-ops.
    fn close(&mut self) -> Result<(), TransportError>;
}

/// Transport names upstream knows but this build does not implement yet.
pub const UNAVAILABLE: [&str; 1] = ["kafka"];

/// Opens the transport named by `export` (already validated by the caller).
pub fn open(export: &str, config: &PluginConfig) -> Result<Box<dyn Transport>, TransportError> {
    match export {
        "file" => {
            let path = config
                .str_or("file.path", file::DEFAULT_PATH)
                .map_err(|e| TransportError(e.to_string()))?;
            Ok(Box::new(FileTransport::open(path, open_mode(config)?)?))
        }
        "null" => Ok(Box::new(NullTransport)),
        "terminal" => Ok(Box::new(TerminalTransport::new())),
        other => Err(TransportError(format!("transport '{other}' is not available in this build yet"))),
    }
}

/// Key the host injects into every block to say how outputs are opened: `replace` (a plain
/// start, upstream's behaviour), `append` (a SIGHUP reload continues the previous
/// pipeline's files) or `check` (`-test`: touch no output). Absent means `replace`.
pub const OUTPUT_MODE_KEY: &str = "sfprocessor.outputs";

/// The open mode the host asked for.
fn open_mode(config: &PluginConfig) -> Result<OpenMode, TransportError> {
    match config.str(OUTPUT_MODE_KEY).map_err(|e| TransportError(e.to_string()))? {
        None | Some("replace") => Ok(OpenMode::Replace),
        Some("append") => Ok(OpenMode::Append),
        Some("check") => Ok(OpenMode::Check),
        Some(other) => Err(TransportError(format!(
            "key '{OUTPUT_MODE_KEY}': unknown output mode '{other}' (replace, append or check)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines_and_records() {
        let mut b = EncodedBatch::new();
        b.push_with(|o| o.extend_from_slice(b"{\"a\":1}"));
        b.push_with(|o| o.extend_from_slice(b"{}"));
        assert_eq!(b.as_lines(), b"{\"a\":1}\n{}\n");
        assert_eq!(b.records().collect::<Vec<_>>(), vec![&b"{\"a\":1}"[..], &b"{}"[..]]);
        assert_eq!((b.len(), b.byte_len()), (2, 11));
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.records().count(), 0);
    }
}
