//! Avro object container file writer producing collector-like `.sf` files.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::DeflateEncoder;
use flate2::Compression;
use sysflow_plugin_api::records::SysFlowRecord;

use crate::encode::{encode_datum, put_bytes, put_long, SCHEMA_V5};

/// The collector's `COMPRESS_BLOCK_SIZE`: a block is flushed once its uncompressed
/// payload reaches this many bytes.
pub const DEFAULT_BLOCK_SIZE: usize = 80_000;

/// Sync marker used unless one is given: fixed so that equal inputs give equal files.
pub const DEFAULT_SYNC: [u8; 16] = *b"SysFlowTraceGen!";

/// Options of a [`TraceWriter`].
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Uncompressed bytes per block before it is flushed.
    pub block_size: usize,
    /// The 16-byte sync marker.
    pub sync: [u8; 16],
    /// Deflate level 0–9.
    pub level: u32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { block_size: DEFAULT_BLOCK_SIZE, sync: DEFAULT_SYNC, level: 6 }
    }
}

/// Writes SysFlow v5 records as an Avro object container file with the deflate codec.
pub struct TraceWriter<W: Write = BufWriter<fs::File>> {
    inner: W,
    opts: WriterOptions,
    block: Vec<u8>,
    block_count: i64,
    compressed: Vec<u8>,
    records: u64,
}

impl TraceWriter<BufWriter<fs::File>> {
    /// Creates (truncates) `path` and writes the container header.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let f = fs::File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        TraceWriter::new(BufWriter::with_capacity(1 << 16, f), WriterOptions::default())
    }
}

impl<W: Write> TraceWriter<W> {
    /// Writes the container header (magic, schema, codec, sync marker) to `inner`.
    pub fn new(mut inner: W, opts: WriterOptions) -> io::Result<Self> {
        let mut head = Vec::with_capacity(SCHEMA_V5.len() + 64);
        head.extend_from_slice(b"Obj\x01");
        put_long(&mut head, 2);
        put_bytes(&mut head, b"avro.schema");
        put_bytes(&mut head, SCHEMA_V5.as_bytes());
        put_bytes(&mut head, b"avro.codec");
        put_bytes(&mut head, b"deflate");
        put_long(&mut head, 0);
        head.extend_from_slice(&opts.sync);
        inner.write_all(&head)?;
        let cap = opts.block_size + 4096;
        Ok(TraceWriter {
            inner,
            opts,
            block: Vec::with_capacity(cap),
            block_count: 0,
            compressed: Vec::with_capacity(cap / 2),
            records: 0,
        })
    }

    /// Appends one record, flushing a block when it reaches the block size.
    pub fn write(&mut self, record: &SysFlowRecord) -> io::Result<()> {
        encode_datum(record, &mut self.block);
        self.block_count += 1;
        self.records += 1;
        if self.block.len() >= self.opts.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Number of records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block_count == 0 {
            return Ok(());
        }
        self.compressed.clear();
        let mut enc = DeflateEncoder::new(
            std::mem::take(&mut self.compressed),
            Compression::new(self.opts.level),
        );
        enc.write_all(&self.block)?;
        self.compressed = enc.finish()?;
        let mut prefix = Vec::with_capacity(20);
        put_long(&mut prefix, self.block_count);
        put_long(&mut prefix, self.compressed.len() as i64);
        self.inner.write_all(&prefix)?;
        self.inner.write_all(&self.compressed)?;
        self.inner.write_all(&self.opts.sync)?;
        self.block.clear();
        self.block_count = 0;
        Ok(())
    }

    /// Flushes the last block and the underlying writer, returning it.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_block()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}
