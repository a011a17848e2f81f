//! Avro object container files: header, blocks, codecs, and recovery from damage.
//!
//! The file is streamed through a buffer (never read whole). A damaged block is reported
//! with its index and byte offset and skipped; when the block framing itself is lost
//! (implausible sizes, a bad sync marker after a block that does not decode) reading
//! resynchronises on the next sync marker. A bad marker after a block that decodes intact
//! only costs the marker: the block is kept and reading goes on after it.

use std::{
    fs,
    io::{self, Read},
    path::Path,
};

use flate2::{Decompress, FlushDecompress, Status};
use sysflow_plugin_api::SysFlowRecord;

use crate::{
    cursor::Cursor,
    decode::DatumDecoder,
    error::{DecodeError, ErrorKind},
};

const MAGIC: &[u8; 4] = b"Obj\x01";
const SYNC_LEN: usize = 16;
/// Largest compressed block accepted (the collector writes ~80 KB blocks).
const MAX_BLOCK_BYTES: usize = 16 << 20;
/// Largest decompressed block accepted (guards against deflate bombs).
const MAX_INFLATED_BYTES: usize = 64 << 20;
/// Largest file header (metadata incl. schema) accepted.
const MAX_HEADER_BYTES: usize = 16 << 20;
const READ_CHUNK: usize = 256 << 10;

/// Counters of one reader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Records decoded and returned.
    pub records: u64,
    /// Blocks read successfully (possibly with some records skipped).
    pub blocks: u64,
    /// Blocks (or damaged regions between sync markers) skipped entirely.
    pub blocks_skipped: u64,
    /// Records skipped (damaged blocks with a trusted count, rest of a block after a bad datum,
    /// unsupported record types).
    pub records_skipped: u64,
    /// Bytes skipped while resynchronising.
    pub bytes_skipped: u64,
    /// Damaged sync markers after intact blocks: the block was kept, nothing was skipped.
    pub damaged_markers: u64,
    /// Problems reported as `Err` items, except damaged markers (counted in `damaged_markers`:
    /// they lose nothing, and a counter named `errors` is reported as a loss).
    pub errors: u64,
    /// Warnings: schema resolution notes and enum symbols unknown to us.
    pub warnings: u64,
}

/// Allocations a [`TraceReader`] needs, kept between files.
///
/// Directories of small rotated traces open a reader every few hundred records; reusing
/// the read buffer (zero-filled once), the inflate output, the inflater state and the
/// decoder compiled for the previous file's schema (when the next file has the same one)
/// avoids faulting in fresh pages and re-parsing the schema for every file. Take them
/// back with [`TraceReader::into_buffers`].
#[derive(Default)]
pub struct ReadBuffers {
    input: Vec<u8>,
    block: Vec<u8>,
    /// Created on the first deflate block: null-codec files never need it.
    inflater: Option<Decompress>,
    /// The previous file's writer schema (JSON text) and its compiled decoder.
    decoder: Option<(String, DatumDecoder)>,
}

impl ReadBuffers {
    /// Empty buffers; they grow on first use.
    pub fn new() -> ReadBuffers {
        ReadBuffers::default()
    }
}

impl std::fmt::Debug for ReadBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuffers")
            .field("input", &self.input.len())
            .field("block", &self.block.capacity())
            .field("inflater", &self.inflater.is_some())
            .field("decoder", &self.decoder.is_some())
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Null,
    Deflate,
}

/// A buffered window over the input that allows looking back within the current block.
struct Source {
    input: Box<dyn Read + Send>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl Source {
    /// `buf` may be a previous file's buffer: its contents are ignored, and its length (the
    /// part already zero-filled) is kept so it is not cleared again.
    fn new(input: Box<dyn Read + Send>, buf: Vec<u8>) -> Source {
        Source { input, buf, start: 0, end: 0, base: 0, eof: false }
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Makes at least `n` bytes available unless the input ends first.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.start < n && !self.eof {
            // Compact only when the request does not fit or little room is left, so a
            // block is copied at most once per buffer's worth of input.
            if self.start + n > self.buf.len() || self.buf.len() - self.end < READ_CHUNK / 4 {
                let target = n.max(READ_CHUNK);
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.base += self.start as u64;
                    self.end -= self.start;
                    self.start = 0;
                }
                if self.buf.len() < target {
                    self.buf.resize(target, 0);
                }
            }
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Reads SysFlow records from an Avro object container file.
///
/// Iteration yields records in file order; an `Err` item reports a problem (damaged
/// block, bad datum, truncation) and iteration continues after it where possible.
pub struct TraceReader {
    name: String,
    src: Source,
    decoder: DatumDecoder,
    /// Writer schema text, kept to match the next file's against when the decoder is reused.
    schema: String,
    codec: Codec,
    sync: [u8; SYNC_LEN],
    inflater: Option<Decompress>,
    block: Vec<u8>,
    block_pos: usize,
    block_left: u64,
    block_index: u64,
    block_offset: u64,
    record_in_block: u64,
    next_block_index: u64,
    stats: DecodeStats,
    done: bool,
    counted_unknown_symbols: u64,
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader").field("name", &self.name).field("stats", &self.stats).finish()
    }
}

impl TraceReader {
    /// Opens a file and reads its header (magic, metadata, schema, sync marker).
    pub fn open(path: &Path) -> Result<TraceReader, DecodeError> {
        TraceReader::open_with(path, &mut ReadBuffers::new())
    }

    /// Like [`Self::open`], reusing `buffers` (taken on success; the read buffer stays on failure).
    pub fn open_with(path: &Path, buffers: &mut ReadBuffers) -> Result<TraceReader, DecodeError> {
        let name = path.display().to_string();
        let file = fs::File::open(path).map_err(|e| DecodeError::new(ErrorKind::Io, format!("cannot open: {e}")).in_source(&name))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(DecodeError::new(ErrorKind::Io, "is a directory").in_source(&name));
        }
        TraceReader::from_reader_with(&name, file, buffers)
    }

    /// Reads a container file from any byte stream; `name` is used in messages.
    pub fn from_reader<R: Read + Send + 'static>(name: &str, input: R) -> Result<TraceReader, DecodeError> {
        TraceReader::from_reader_with(name, input, &mut ReadBuffers::new())
    }

    /// Like [`Self::from_reader`], reusing `buffers` (taken on success; the read buffer stays on failure).
    pub fn from_reader_with<R: Read + Send + 'static>(
        name: &str,
        input: R,
        buffers: &mut ReadBuffers,
    ) -> Result<TraceReader, DecodeError> {
        let mut src = Source::new(Box::new(input), std::mem::take(&mut buffers.input));
        let parsed = read_header(&mut src).and_then(|(schema, codec, sync)| {
            let decoder = match buffers.decoder.take() {
                Some((prev, decoder)) if prev == schema => decoder,
                _ => DatumDecoder::new(&schema)?,
            };
            Ok((decoder, schema, codec, sync))
        });
        let (decoder, schema, codec, sync) = match parsed {
            Ok(p) => p,
            Err(e) => {
                buffers.input = src.buf;
                return Err(e.in_source(name));
            }
        };
        let warnings = decoder.warnings().len() as u64;
        // A reused decoder's count is cumulative; this file's warnings start from here.
        let counted_unknown_symbols = decoder.unknown_enum_symbols();
        let mut block = std::mem::take(&mut buffers.block);
        // A previous file's leftovers would read as trailing garbage of "block 0".
        block.clear();
        Ok(TraceReader {
            name: name.to_string(),
            src,
            decoder,
            schema,
            codec,
            sync,
            inflater: buffers.inflater.take(),
            block,
            block_pos: 0,
            block_left: 0,
            block_index: 0,
            block_offset: 0,
            record_in_block: 0,
            next_block_index: 0,
            stats: DecodeStats { warnings, ..DecodeStats::default() },
            done: false,
            counted_unknown_symbols,
        })
    }

    /// Ends reading and returns the allocations for the next file's reader.
    pub fn into_buffers(self) -> ReadBuffers {
        ReadBuffers {
            input: self.src.buf,
            block: self.block,
            inflater: self.inflater,
            decoder: Some((self.schema, self.decoder)),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Records of the current block not returned yet; at 0 the next record needs more input
    /// (a stream reader hands over what it has before that read can wait).
    pub fn records_buffered(&self) -> u64 {
        self.block_left
    }

    /// The file (or stream) name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Schema resolution warnings for this file's writer schema.
    pub fn schema_warnings(&self) -> &[String] {
        self.decoder.warnings()
    }

    fn error(&mut self, e: DecodeError) -> DecodeError {
        self.stats.errors += 1;
        e.in_source(&self.name)
    }

    fn block_error(&mut self, kind: ErrorKind, msg: String) -> DecodeError {
        let e = DecodeError::new(kind, msg).at_block(self.block_index, self.block_offset);
        self.error(e)
    }

    /// Reads the next block into `self.block`. `Ok(false)` at a clean end of input.
    fn read_block(&mut self) -> Result<bool, DecodeError> {
        self.block_index = self.next_block_index;
        self.block_offset = self.src.offset();
        self.src.fill(20).map_err(|e| self.io_error(e))?;
        if self.src.avail().is_empty() {
            return Ok(false);
        }
        self.next_block_index += 1;
        let mut c = Cursor::new(self.src.avail());
        let header = c.varint().and_then(|n| Ok((n, c.varint()?)));
        let hdr_len = c.pos;
        let (count, size) = match header {
            Ok(h) => h,
            Err(_) if self.src.eof => {
                self.done = true;
                let left = self.src.avail().len();
                return Err(self.block_error(ErrorKind::Truncated, format!("file truncated: {left} trailing bytes do not form a block header")));
            }
            Err(e) => return Err(self.resync(format!("unreadable block header: {}", e.msg))),
        };
        let (Ok(count), Ok(size)) = (u64::try_from(count), usize::try_from(size)) else {
            return Err(self.resync(format!("implausible block header (count {count}, size {size})")));
        };
        if size > MAX_BLOCK_BYTES || count > (MAX_INFLATED_BYTES as u64) {
            return Err(self.resync(format!("implausible block header (count {count}, size {size})")));
        }
        let total = hdr_len + size + SYNC_LEN;
        self.src.fill(total).map_err(|e| self.io_error(e))?;
        if self.src.avail().len() < total {
            let have = self.src.avail().len();
            return Err(self.resync_or_truncated(
                format!("file truncated: block declares {size} bytes, only {} follow", have.saturating_sub(hdr_len)),
                count,
            ));
        }
        if self.src.avail()[hdr_len + size..total] != self.sync {
            return self.keep_block_before_damaged_marker(hdr_len, size, count);
        }
        let inflated = self.load_payload(hdr_len, size).map(|_| ());
        self.src.consume(total);
        if let Err(msg) = inflated {
            self.stats.blocks_skipped += 1;
            self.stats.records_skipped += count;
            return Err(self.block_error(ErrorKind::CorruptBlock, format!("{msg}; block of {count} records skipped")));
        }
        if count > self.block.len() as u64 {
            self.stats.blocks_skipped += 1;
            return Err(self.block_error(
                ErrorKind::CorruptBlock,
                format!("block declares {count} records in {} bytes; block skipped", self.block.len()),
            ));
        }
        self.stats.blocks += 1;
        self.block_pos = 0;
        self.block_left = count;
        self.record_in_block = 0;
        Ok(true)
    }

    /// Copies (null codec) or inflates (deflate) the payload at `avail()[hdr_len..hdr_len + size]`
    /// into `self.block`; `Ok(true)` when every payload byte was used (a deflate stream may end early).
    fn load_payload(&mut self, hdr_len: usize, size: usize) -> Result<bool, String> {
        let payload = &self.src.avail()[hdr_len..hdr_len + size];
        match self.codec {
            Codec::Null => {
                self.block.clear();
                self.block.extend_from_slice(payload);
                Ok(true)
            }
            Codec::Deflate => {
                let z = self.inflater.get_or_insert_with(|| Decompress::new(false));
                inflate(z, payload, &mut self.block)?;
                Ok(z.total_in() == payload.len() as u64)
            }
        }
    }

    /// The 16 bytes after the block are not the file's sync marker. Either only the marker is
    /// damaged (the block itself is intact), or the block's size is wrong and the framing is
    /// lost. The block is kept when its payload is used exactly and its `count` datums decode
    /// to exactly its end — a wrong size cannot pass that test — and reading goes on at the
    /// header after the damaged marker (whose own checks resynchronise if it is damaged too).
    /// Otherwise reading resynchronises on the next marker.
    fn keep_block_before_damaged_marker(&mut self, hdr_len: usize, size: usize, count: u64) -> Result<bool, DecodeError> {
        let reason = "sync marker after the block does not match the file's";
        if !matches!(self.load_payload(hdr_len, size), Ok(true)) || !self.block_decodes_exactly(count) {
            return Err(self.resync(reason.to_string()));
        }
        let marker_at = self.src.offset() + (hdr_len + size) as u64;
        self.src.consume(hdr_len + size + SYNC_LEN);
        self.stats.blocks += 1;
        self.stats.damaged_markers += 1;
        self.block_pos = 0;
        self.block_left = count;
        self.record_in_block = 0;
        Err(DecodeError::new(
            ErrorKind::DamagedMarker,
            format!(
                "{reason} (16 bytes at byte offset {marker_at}); the block decodes intact, its {count} records are kept and reading goes on after the marker"
            ),
        )
        .at_block(self.block_index, self.block_offset)
        .in_source(&self.name))
    }

    /// Whether `self.block` holds exactly `count` well-formed datums. Runs the decoder, so
    /// the unknown enum symbols it meets are discounted here (the real decode counts them).
    fn block_decodes_exactly(&mut self, count: u64) -> bool {
        let before = self.decoder.unknown_enum_symbols();
        let mut c = Cursor::new(&self.block);
        let mut ok = true;
        for _ in 0..count {
            match self.decoder.decode_next(&mut c) {
                Ok(_) => {}
                Err(e) if e.skippable => {}
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        ok = ok && c.pos == self.block.len();
        self.counted_unknown_symbols += self.decoder.unknown_enum_symbols() - before;
        ok
    }

    fn io_error(&mut self, e: io::Error) -> DecodeError {
        self.done = true;
        let e = DecodeError::new(ErrorKind::Io, format!("read error: {e}")).at_offset(self.src.offset());
        self.error(e)
    }

    /// Reports the damaged block and scans for the next sync marker after its start.
    fn resync(&mut self, reason: String) -> DecodeError {
        match self.scan_for_sync() {
            Ok(Some((skipped, at))) => {
                self.stats.blocks_skipped += 1;
                self.stats.bytes_skipped += skipped;
                self.block_error(
                    ErrorKind::CorruptBlock,
                    format!("{reason}; skipped {skipped} bytes, resynchronised at byte offset {at}"),
                )
            }
            Ok(None) => {
                self.done = true;
                self.stats.blocks_skipped += 1;
                self.block_error(ErrorKind::CorruptBlock, format!("{reason}; no further sync marker, rest of the file skipped"))
            }
            Err(e) => self.io_error(e),
        }
    }

    /// Like [`Self::resync`], but when no sync marker follows, the file was simply cut short
    /// and the `count` records its intact header announced are counted as skipped.
    fn resync_or_truncated(&mut self, reason: String, count: u64) -> DecodeError {
        match self.scan_for_sync() {
            Ok(Some((skipped, at))) => {
                self.stats.blocks_skipped += 1;
                self.stats.bytes_skipped += skipped;
                self.block_error(
                    ErrorKind::CorruptBlock,
                    format!("damaged block header ({reason}); skipped {skipped} bytes, resynchronised at byte offset {at}"),
                )
            }
            Ok(None) => {
                self.done = true;
                self.stats.blocks_skipped += 1;
                self.stats.records_skipped += count;
                self.block_error(ErrorKind::Truncated, format!("{reason}; its {count} records are lost"))
            }
            Err(e) => self.io_error(e),
        }
    }

    /// Searches for the sync marker starting one byte after the current block's start and
    /// positions the input after it. Returns (bytes skipped, offset of the next block).
    fn scan_for_sync(&mut self) -> io::Result<Option<(u64, u64)>> {
        let from = self.src.offset();
        self.src.consume(1);
        let finder = memchr::memmem::Finder::new(&self.sync);
        loop {
            if let Some(i) = finder.find(self.src.avail()) {
                self.src.consume(i + SYNC_LEN);
                let at = self.src.offset();
                return Ok(Some((at - from, at)));
            }
            if self.src.eof {
                let n = self.src.avail().len();
                self.src.consume(n);
                return Ok(None);
            }
            // Keep a marker's worth of bytes in case one straddles the refill.
            let keep = (SYNC_LEN - 1).min(self.src.avail().len());
            let n = self.src.avail().len() - keep;
            self.src.consume(n);
            self.src.fill(keep + READ_CHUNK)?;
        }
    }

    fn next_record(&mut self) -> Option<Result<SysFlowRecord, DecodeError>> {
        loop {
            if self.block_left > 0 {
                let mut c = Cursor { buf: &self.block, pos: self.block_pos };
                let result = self.decoder.decode_next(&mut c);
                let pos = c.pos;
                let rec_index = self.record_in_block;
                self.record_in_block += 1;
                match result {
                    Ok(rec) => {
                        self.block_pos = pos;
                        self.block_left -= 1;
                        self.stats.records += 1;
                        self.count_unknown_symbols();
                        return Some(Ok(rec));
                    }
                    Err(e) if e.skippable => {
                        self.block_pos = pos;
                        self.block_left -= 1;
                        self.stats.records_skipped += 1;
                        let kind = ErrorKind::UnsupportedRecord;
                        let err = DecodeError::new(kind, e.msg.into_owned())
                            .at_block(self.block_index, self.block_offset)
                            .at_record(rec_index);
                        return Some(Err(self.error(err)));
                    }
                    Err(e) => {
                        let left = self.block_left;
                        self.stats.records_skipped += left;
                        self.block_left = 0;
                        self.block_pos = self.block.len();
                        let err = DecodeError::new(
                            ErrorKind::Datum,
                            format!(
                                "{} (at byte {} of the decompressed block); {left} remaining records of the block skipped",
                                e.msg, e.pos
                            ),
                        )
                        .at_block(self.block_index, self.block_offset)
                        .at_record(rec_index);
                        return Some(Err(self.error(err)));
                    }
                }
            }
            if self.block_pos < self.block.len() {
                let extra = self.block.len() - self.block_pos;
                self.block_pos = self.block.len();
                return Some(Err(self.block_error(
                    ErrorKind::CorruptBlock,
                    format!("{extra} bytes left over after the block's {} records", self.record_in_block),
                )));
            }
            if self.done {
                return None;
            }
            match self.read_block() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn count_unknown_symbols(&mut self) {
        let n = self.decoder.unknown_enum_symbols();
        if n != self.counted_unknown_symbols {
            self.stats.warnings += n - self.counted_unknown_symbols;
            self.counted_unknown_symbols = n;
        }
    }
}

impl Iterator for TraceReader {
    type Item = Result<SysFlowRecord, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// Inflates a raw RFC 1951 stream into `out` (cleared first), reusing its allocation.
fn inflate(z: &mut Decompress, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    z.reset(false);
    out.clear();
    if out.capacity() < input.len() * 4 {
        out.reserve(input.len() * 4);
    }
    loop {
        let before_in = z.total_in();
        let before_out = z.total_out();
        let consumed = usize::try_from(before_in).unwrap_or(usize::MAX).min(input.len());
        let status = z
            // Not `Finish`: miniz treats that as "output fits in one call" and fails otherwise.
            .decompress_vec(&input[consumed..], out, FlushDecompress::None)
            .map_err(|e| format!("deflate data is corrupt: {e}"))?;
        match status {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => {
                let progressed = z.total_in() != before_in || z.total_out() != before_out;
                if out.len() >= MAX_INFLATED_BYTES {
                    return Err(format!("block inflates to more than {MAX_INFLATED_BYTES} bytes"));
                }
                if out.len() == out.capacity() {
                    out.reserve(out.len().max(64 << 10));
                } else if !progressed {
                    return Err("deflate stream ends before its final block".to_string());
                }
            }
        }
    }
}

/// Reads magic, metadata and sync marker; returns (schema JSON, codec, sync marker).
fn read_header(src: &mut Source) -> Result<(String, Codec, [u8; SYNC_LEN]), DecodeError> {
    let io = |e: io::Error| DecodeError::new(ErrorKind::Io, format!("read error: {e}"));
    src.fill(4).map_err(io)?;
    let head = src.avail();
    if head.is_empty() {
        // Typical of a rotated file the collector has just created: say so, not "not Avro".
        return Err(DecodeError::new(ErrorKind::NotAvro, "empty file (0 bytes)"));
    }
    if head.len() < 4 && MAGIC.starts_with(head) {
        return Err(DecodeError::new(ErrorKind::Truncated, format!("file ends inside the container magic ({} bytes)", head.len())));
    }
    if head.len() < 4 || &head[..4] != MAGIC {
        return Err(DecodeError::new(
            ErrorKind::NotAvro,
            "not an Avro object container file (the first bytes are not 'Obj\\x01')",
        ));
    }
    let mut want = 4096;
    loop {
        src.fill(want).map_err(io)?;
        match parse_header(src.avail()) {
            Ok((schema, codec, sync, len)) => {
                src.consume(len);
                return Ok((schema, codec, sync));
            }
            Err(HeaderError::NeedMore) if !src.eof && want < MAX_HEADER_BYTES => want *= 4,
            Err(HeaderError::NeedMore) if src.eof => {
                return Err(DecodeError::new(ErrorKind::Truncated, "file ends inside the container header"))
            }
            Err(HeaderError::NeedMore) => {
                return Err(DecodeError::new(ErrorKind::NotAvro, format!("container header larger than {MAX_HEADER_BYTES} bytes")))
            }
            Err(HeaderError::Bad(msg, at)) => {
                return Err(DecodeError::new(ErrorKind::NotAvro, format!("invalid container header: {msg}")).at_offset(at as u64))
            }
        }
    }
}

enum HeaderError {
    NeedMore,
    Bad(String, usize),
}

fn parse_header(buf: &[u8]) -> Result<(String, Codec, [u8; SYNC_LEN], usize), HeaderError> {
    let mut c = Cursor::new(buf);
    c.pos = 4;
    let more = |_| HeaderError::NeedMore;
    let mut schema = None;
    let mut codec = Codec::Null;
    loop {
        let n = c.varint().map_err(more)?;
        if n == 0 {
            break;
        }
        let n = if n < 0 {
            c.varint().map_err(more)?;
            n.unsigned_abs()
        } else {
            n.unsigned_abs()
        };
        if n > 10_000 {
            return Err(HeaderError::Bad(format!("metadata map with {n} entries"), c.pos));
        }
        for _ in 0..n {
            let at = c.pos;
            let klen = c.varint().map_err(more)?;
            let klen = usize::try_from(klen).map_err(|_| HeaderError::Bad("negative metadata key length".into(), at))?;
            if klen > MAX_HEADER_BYTES {
                return Err(HeaderError::Bad("metadata key too long".into(), at));
            }
            let key = c.bytes(klen).map_err(more)?;
            let at = c.pos;
            let vlen = c.varint().map_err(more)?;
            let vlen = usize::try_from(vlen).map_err(|_| HeaderError::Bad("negative metadata value length".into(), at))?;
            if vlen > MAX_HEADER_BYTES {
                return Err(HeaderError::Bad("metadata value too long".into(), at));
            }
            let value = c.bytes(vlen).map_err(more)?;
            match key {
                b"avro.schema" => {
                    let s = std::str::from_utf8(value).map_err(|_| HeaderError::Bad("avro.schema is not UTF-8".into(), at))?;
                    schema = Some(s.to_string());
                }
                b"avro.codec" => {
                    codec = match value {
                        b"null" | b"" => Codec::Null,
                        b"deflate" => Codec::Deflate,
                        other => {
                            return Err(HeaderError::Bad(
                                format!("unsupported codec '{}' (supported: null, deflate)", String::from_utf8_lossy(other)),
                                at,
                            ))
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let sync_bytes = c.bytes(SYNC_LEN).map_err(more)?;
    let mut sync = [0u8; SYNC_LEN];
    sync.copy_from_slice(sync_bytes);
    let schema = schema.ok_or_else(|| HeaderError::Bad("no avro.schema in the file metadata".into(), c.pos))?;
    Ok((schema, codec, sync, c.pos))
}
