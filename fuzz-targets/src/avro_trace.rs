//! The trace reader over arbitrary bytes: `TraceReader` as the `file` driver runs it
//! (a fresh reader, then one reusing the first one's buffers, as for the next file of a
//! directory), feeding the records to the `sysflowreader` processor.

use std::io::Cursor;

use abi_stable::std_types::RStr;
use sysflow_avro_drivers::{DecodeStats, ReadBuffers, TraceReader};
use sysflow_plugin_api::{Batch, Host, LogLevel, Processor, SysFlowRecord};
use sysflow_reader::SysFlowReader;

/// The name the input is given in messages; every reported problem must carry it.
const TRACE_NAME: &str = "fuzz-input.sf";
/// Records handed to the reader processor at a time (the file driver's batch size order).
const BATCH_RECORDS: usize = 256;

extern "C" fn discard_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

/// What one pass over the input produced, compared between a fresh and a reused reader.
#[derive(Debug, PartialEq, Eq)]
struct Pass {
    /// The header error, if the file was refused.
    refused: Option<String>,
    stats: DecodeStats,
    records: u64,
    errors: Vec<String>,
}

/// Reads `data` as an Avro object container file to the end and checks that every record
/// and problem is accounted for in the reader's counters, and that a reader reusing the
/// previous file's buffers (the `file` driver's directory mode) reads it identically.
pub fn avro_trace(data: &[u8]) {
    let mut buffers = ReadBuffers::new();
    let (fresh, mut buffers_after) = read_once(data, &mut buffers, true);
    let (reused, _) = read_once(data, &mut buffers_after, false);
    assert_eq!(fresh, reused, "a reader reusing buffers must read the same input identically");
}

fn read_once(data: &[u8], buffers: &mut ReadBuffers, flatten: bool) -> (Pass, ReadBuffers) {
    let mut reader = match TraceReader::from_reader_with(TRACE_NAME, Cursor::new(data.to_vec()), buffers) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with(TRACE_NAME), "header error does not name the file: {msg}");
            let pass = Pass { refused: Some(msg), stats: DecodeStats::default(), records: 0, errors: Vec::new() };
            return (pass, std::mem::take(buffers));
        }
    };
    let mut processor = flatten.then(|| SysFlowReader::with_host(Host::new(discard_log, "reader")));
    let mut batch: Vec<SysFlowRecord> = Vec::new();
    let mut records = 0u64;
    let mut errors = Vec::new();
    for item in reader.by_ref() {
        match item {
            Ok(rec) => {
                records += 1;
                if let Some(p) = processor.as_mut() {
                    batch.push(rec);
                    if batch.len() == BATCH_RECORDS {
                        flatten_batch(p, &mut batch);
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with(TRACE_NAME), "decode error does not name the file: {msg}");
                errors.push(msg);
            }
        }
    }
    if let Some(p) = processor.as_mut() {
        flatten_batch(p, &mut batch);
    }
    assert!(reader.next().is_none(), "the reader yields items after reporting its end");
    let stats = reader.stats().clone();
    assert_eq!(stats.records, records, "records returned vs counted: {stats:?}");
    assert_eq!(stats.errors + stats.damaged_markers, errors.len() as u64, "problems returned vs counted: {stats:?}");
    let len = data.len() as u64;
    assert!(stats.bytes_skipped <= len, "skipped {} bytes of a {len}-byte input", stats.bytes_skipped);
    // Every block read or skipped consumes at least one input byte.
    assert!(stats.blocks + stats.blocks_skipped <= len, "more blocks than input bytes: {stats:?}");
    (Pass { refused: None, stats, records, errors }, reader.into_buffers())
}

/// Runs the `sysflowreader` processor on the batch: it may refuse records (as values), never panic.
fn flatten_batch(processor: &mut SysFlowReader, batch: &mut Vec<SysFlowRecord>) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    if let Ok(Some(Batch::Flat(flat))) = processor.process(Batch::sysflow(std::mem::take(batch))) {
        assert!(flat.len() <= n, "{} flat records out of {n} SysFlow records", flat.len());
    }
}
