//! Decode errors with the context needed to find the damage: file, block, byte offset, record.

use std::fmt;

/// What kind of problem a [`DecodeError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading the input failed (I/O error).
    Io,
    /// The input is not an Avro object container file.
    NotAvro,
    /// The writer schema is invalid or cannot be resolved against the SysFlow records.
    Schema,
    /// A block is damaged (bad sync marker, bad compression, implausible header); skipped.
    CorruptBlock,
    /// The sync marker after a block is damaged, but the block decoded intact and was kept
    /// (a notice: no data was skipped).
    DamagedMarker,
    /// A datum could not be decoded; the rest of its block is skipped.
    Datum,
    /// A datum of a record type this decoder does not know; that datum is skipped.
    UnsupportedRecord,
    /// The input ends in the middle of a block.
    Truncated,
}

/// A decoding problem, with as much location context as is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    kind: ErrorKind,
    message: String,
    source_name: Option<String>,
    block: Option<u64>,
    offset: Option<u64>,
    record: Option<u64>,
}

impl DecodeError {
    /// A new error without location context.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> DecodeError {
        DecodeError { kind, message: message.into(), source_name: None, block: None, offset: None, record: None }
    }

    /// Adds the file (or stream) name.
    pub fn in_source(mut self, name: &str) -> DecodeError {
        self.source_name = Some(name.to_string());
        self
    }

    /// Adds the block index (0-based) and the byte offset of the block in the file.
    pub fn at_block(mut self, block: u64, offset: u64) -> DecodeError {
        self.block = Some(block);
        self.offset = Some(offset);
        self
    }

    /// Adds the byte offset alone (header problems).
    pub fn at_offset(mut self, offset: u64) -> DecodeError {
        self.offset = Some(offset);
        self
    }

    /// Adds the index of the record inside its block (0-based).
    pub fn at_record(mut self, record: u64) -> DecodeError {
        self.record = Some(record);
        self
    }

    /// The kind of problem.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The bare message, without location context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// File or stream name, if known.
    pub fn source_name(&self) -> Option<&str> {
        self.source_name.as_deref()
    }

    /// Block index, if the error concerns a block.
    pub fn block(&self) -> Option<u64> {
        self.block
    }

    /// Byte offset in the file, if known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// Record index within the block, if known.
    pub fn record(&self) -> Option<u64> {
        self.record
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.source_name {
            write!(f, "{name}: ")?;
        }
        match (self.block, self.offset) {
            (Some(b), Some(o)) => write!(f, "block {b} at byte offset {o}: ")?,
            (None, Some(o)) => write!(f, "at byte offset {o}: ")?,
            _ => {}
        }
        if let Some(r) = self.record {
            write!(f, "record {r} of the block: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}
