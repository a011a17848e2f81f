//! Damaged input: truncation, flipped bytes, broken sync markers, non-Avro files, and a
//! fuzz-style loop. Errors must carry context, later blocks must still be read, and
//! nothing may panic.

mod common;

use std::path::Path;

use sysflow_avro_drivers::{DecodeError, DecodeStats, ErrorKind, TraceReader};
use sysflow_plugin_api::SysFlowRecord;

/// Block layout of a container file: (sync marker, [(block start, record count, block end incl. sync)]).
fn layout(data: &[u8]) -> ([u8; 16], Vec<(usize, u64, usize)>) {
    fn varint(d: &[u8], i: &mut usize) -> i64 {
        let (mut n, mut s) = (0u64, 0);
        loop {
            let b = d[*i];
            *i += 1;
            n |= u64::from(b & 0x7f) << s;
            s += 7;
            if b < 0x80 {
                break;
            }
        }
        ((n >> 1) as i64) ^ -((n & 1) as i64)
    }
    let mut i = 4;
    loop {
        let n = varint(data, &mut i);
        if n == 0 {
            break;
        }
        for _ in 0..n.abs() {
            let k = varint(data, &mut i) as usize;
            i += k;
            let v = varint(data, &mut i) as usize;
            i += v;
        }
    }
    let mut sync = [0u8; 16];
    sync.copy_from_slice(&data[i..i + 16]);
    i += 16;
    let mut blocks = Vec::new();
    while i < data.len() {
        let start = i;
        let count = varint(data, &mut i) as u64;
        let size = varint(data, &mut i) as usize;
        i += size + 16;
        blocks.push((start, count, i));
    }
    (sync, blocks)
}

/// Reads everything; returns records and errors. Fails the test if iteration runs away.
fn read_all(name: &str, data: Vec<u8>) -> Result<(Vec<SysFlowRecord>, Vec<DecodeError>), DecodeError> {
    let limit = data.len() * 2 + 1000;
    let reader = TraceReader::from_reader(name, std::io::Cursor::new(data))?;
    let (mut recs, mut errs) = (Vec::new(), Vec::new());
    for (i, item) in reader.enumerate() {
        assert!(i < limit, "{name}: iteration does not terminate");
        match item {
            Ok(r) => recs.push(r),
            Err(e) => errs.push(e),
        }
    }
    Ok((recs, errs))
}

fn trace(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join("traces").join(name)).expect("trace")
}

const MULTI_BLOCK: &str = "mon.1531776682.sf";

#[test]
fn truncated_file_reports_and_ends_cleanly() {
    let Some(dir) = common::data_dir() else { return };
    let data = trace(&dir, MULTI_BLOCK);
    let (clean, _) = read_all("clean", data.clone()).expect("open");
    let (_, blocks) = layout(&data);
    assert!(blocks.len() >= 4, "need a multi-block trace");
    let (start, _, end) = blocks[2];
    let before: u64 = blocks[..2].iter().map(|b| b.1).sum();
    let cut = data[..(start + end) / 2].to_vec();
    let (recs, errs) = read_all("cut.sf", cut).expect("header intact");
    assert_eq!(recs.len() as u64, before, "records of the complete blocks are all read");
    assert_eq!(&recs[..], &clean[..recs.len()]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
    assert_eq!((e.block(), e.offset()), (Some(2), Some(start as u64)));
    let msg = e.to_string();
    assert!(msg.starts_with("cut.sf: block 2 at byte offset"), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    // Cut inside the header.
    let e = read_all("head.sf", data[..100].to_vec()).expect_err("header cut");
    assert_eq!(e.kind(), ErrorKind::Truncated);
    assert!(e.to_string().starts_with("head.sf: "), "{e}");
}

/// A file cut inside its last block (a collector killed mid-write) counts the records that
/// block's header announced as skipped, whether the cut is in the file's real last block or
/// in an earlier one.
#[test]
fn truncated_final_block_counts_its_records_as_skipped() {
    let Some(dir) = common::data_dir() else { return };
    let data = trace(&dir, MULTI_BLOCK);
    let (_, blocks) = layout(&data);
    assert!(blocks.len() >= 4, "need a multi-block trace");
    let tmp = tempfile::tempdir().expect("tempdir");
    for cut_block in [2, blocks.len() - 1] {
        let (start, count, end) = blocks[cut_block];
        assert!(count > 0);
        let path = tmp.path().join(format!("cut{cut_block}.sf"));
        std::fs::write(&path, &data[..(start + end) / 2]).expect("write");
        let mut reader = TraceReader::open(&path).expect("header intact");
        let errs: Vec<DecodeError> = reader.by_ref().filter_map(Result::err).collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].kind(), ErrorKind::Truncated, "{}", errs[0]);
        assert!(errs[0].message().contains(&format!("its {count} records are lost")), "{}", errs[0]);
        let s = reader.stats();
        let before: u64 = blocks[..cut_block].iter().map(|b| b.1).sum();
        assert_eq!(s.records, before, "block {cut_block}");
        assert_eq!(s.records_skipped, count, "block {cut_block}");
        assert_eq!((s.blocks, s.blocks_skipped, s.errors), (cut_block as u64, 1, 1), "block {cut_block}");
    }
}

#[test]
fn damaged_block_is_skipped_and_later_blocks_are_read() {
    let Some(dir) = common::data_dir() else { return };
    let data = trace(&dir, MULTI_BLOCK);
    let (clean, _) = read_all("clean", data.clone()).expect("open");
    let (_, blocks) = layout(&data);
    let (start, count, end) = blocks[1];
    let mut bad = data.clone();
    for b in &mut bad[start + 40..start + 60] {
        *b ^= 0x5a;
    }
    let (recs, errs) = read_all("flipped.sf", bad).expect("open");
    assert!(!errs.is_empty());
    let e = &errs[0];
    assert_eq!(e.block(), Some(1), "{e}");
    assert_eq!(e.offset(), Some(start as u64), "{e}");
    assert!(matches!(e.kind(), ErrorKind::CorruptBlock | ErrorKind::Datum), "{e}");
    assert!(e.to_string().starts_with("flipped.sf: block 1 at byte offset"), "{e}");
    // Everything outside block 1 is intact and in order.
    let first = blocks[0].1 as usize;
    assert_eq!(&recs[..first], &clean[..first]);
    let after = clean.len() - first - count as usize;
    assert_eq!(&recs[recs.len() - after..], &clean[clean.len() - after..]);
    let _ = end;
}

/// Byte offset of a block's payload (after its count and size varints).
fn payload_start(data: &[u8], block_start: usize) -> usize {
    let mut i = block_start;
    for _ in 0..2 {
        while data[i] >= 0x80 {
            i += 1;
        }
        i += 1;
    }
    i
}

/// Reads a container file from memory: records, problems, and the reader's final counters.
fn read_with_stats(name: &str, data: Vec<u8>) -> (Vec<SysFlowRecord>, Vec<DecodeError>, DecodeStats) {
    let mut reader = TraceReader::from_reader(name, std::io::Cursor::new(data)).expect("header intact");
    let (mut recs, mut errs) = (Vec::new(), Vec::new());
    for item in reader.by_ref() {
        match item {
            Ok(r) => recs.push(r),
            Err(e) => errs.push(e),
        }
    }
    (recs, errs, reader.stats().clone())
}

/// The demo trace shipped in `config/`.
fn demo_trace() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.sf")).expect("config/demo.sf")
}

/// The red-team case: one flipped byte in the file's last sync marker used to lose the whole
/// last block (862 of 3,000 records) with `records_skipped=0`.
#[test]
fn flipped_last_byte_of_demo_keeps_every_record() {
    let data = demo_trace();
    let (clean, clean_errs, _) = read_with_stats("clean", data.clone());
    assert!(clean_errs.is_empty(), "{clean_errs:?}");
    assert_eq!(clean.len(), 3000);
    let mut bad = data.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let (recs, errs, s) = read_with_stats("demo.sf", bad);
    assert_eq!(recs, clean, "every record read, in order");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].kind(), ErrorKind::DamagedMarker, "{}", errs[0]);
    assert!(errs[0].to_string().starts_with("demo.sf: block "), "{}", errs[0]);
    assert!(errs[0].message().contains(&format!("at byte offset {}", data.len() - 16)), "{}", errs[0]);
    assert_eq!((s.records, s.records_skipped, s.bytes_skipped, s.blocks_skipped), (3000, 0, 0, 0), "{s:?}");
    assert_eq!((s.damaged_markers, s.errors), (1, 0), "{s:?}");
}

/// A damaged marker after block 0 used to lose blocks 0 and 1, both intact.
#[test]
fn damaged_sync_after_block_keeps_intact_blocks() {
    let Some(dir) = common::data_dir() else { return };
    for data in [trace(&dir, MULTI_BLOCK), demo_trace()] {
        let (clean, _, _) = read_with_stats("clean", data.clone());
        let (_, blocks) = layout(&data);
        assert!(blocks.len() >= 3, "need a multi-block trace");
        for damaged in [0, 1] {
            let end = blocks[damaged].2;
            let mut bad = data.clone();
            for b in &mut bad[end - 12..end - 4] {
                *b ^= 0xff;
            }
            let (recs, errs, s) = read_with_stats("sync.sf", bad);
            assert!(recs == clean, "block {damaged}: {} of {} records read", recs.len(), clean.len());
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!((errs[0].kind(), errs[0].block()), (ErrorKind::DamagedMarker, Some(damaged as u64)), "{}", errs[0]);
            assert_eq!((s.records_skipped, s.bytes_skipped, s.blocks_skipped, s.damaged_markers), (0, 0, 0, 1), "{s:?}");
        }
    }
}

/// When the block before a damaged marker is damaged too, the framing is lost: reading
/// resynchronises on the next marker, and exactly the bytes up to it are counted.
#[test]
fn damaged_block_and_marker_resynchronise_with_exact_byte_count() {
    let Some(dir) = common::data_dir() else { return };
    let data = trace(&dir, MULTI_BLOCK);
    let (clean, _, _) = read_with_stats("clean", data.clone());
    let (_, blocks) = layout(&data);
    let (start, count, end) = blocks[1];
    let mut bad = data.clone();
    // BFINAL=1, BTYPE=11 (reserved): an invalid deflate stream, whatever follows.
    bad[payload_start(&data, start)] = 0x07;
    bad[end - 3] ^= 0xff;
    let (recs, errs, s) = read_with_stats("sync.sf", bad);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].kind(), errs[0].block()), (ErrorKind::CorruptBlock, Some(1)), "{}", errs[0]);
    assert!(errs[0].message().contains("resynchronised"), "{}", errs[0]);
    // Block 1 lost its trailing marker, so block 2 (whose start is then unknown) goes with it.
    let lost = count + blocks[2].1;
    assert_eq!(recs.len() as u64, clean.len() as u64 - lost);
    let first = blocks[0].1 as usize;
    assert_eq!(&recs[..first], &clean[..first]);
    assert_eq!(&recs[first..], &clean[first + lost as usize..]);
    assert_eq!((s.blocks_skipped, s.bytes_skipped, s.errors), (1, (blocks[2].2 - start) as u64, 1), "{s:?}");
}

/// A damaged block header (implausible size) resynchronises on that block's own marker:
/// only that block is lost, and the bytes counted are exactly its span.
#[test]
fn damaged_block_header_loses_only_that_block() {
    let data = demo_trace();
    let (clean, _, _) = read_with_stats("clean", data.clone());
    let (_, blocks) = layout(&data);
    assert!(blocks.len() >= 3, "need a multi-block trace");
    let (start, count, end) = blocks[1];
    let mut bad = data.clone();
    let size_at = payload_start(&data, start) - 1;
    // The size varint's last byte gets its top bits set: a size beyond every limit.
    bad[size_at] |= 0x70;
    let (recs, errs, s) = read_with_stats("header.sf", bad);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].kind(), errs[0].block()), (ErrorKind::CorruptBlock, Some(1)), "{}", errs[0]);
    let first = blocks[0].1 as usize;
    assert_eq!(&recs[..first], &clean[..first]);
    assert_eq!(&recs[first..], &clean[first + count as usize..]);
    assert_eq!((s.blocks_skipped, s.bytes_skipped), (1, (end - start) as u64), "{s:?}");
}

/// A block whose payload is damaged (its marker intact) loses exactly its records, counted.
#[test]
fn damaged_payload_counts_exactly_its_records() {
    let data = demo_trace();
    let (clean, _, _) = read_with_stats("clean", data.clone());
    let (_, blocks) = layout(&data);
    let (start, count, _) = blocks[1];
    let mut bad = data.clone();
    bad[payload_start(&data, start)] = 0x07;
    let (recs, errs, s) = read_with_stats("payload.sf", bad);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].kind(), errs[0].block()), (ErrorKind::CorruptBlock, Some(1)), "{}", errs[0]);
    let first = blocks[0].1 as usize;
    assert_eq!(&recs[..first], &clean[..first]);
    assert_eq!(&recs[first..], &clean[first + count as usize..]);
    assert_eq!((s.records_skipped, s.blocks_skipped, s.bytes_skipped), (count, 1, 0), "{s:?}");
}

#[test]
fn non_avro_and_missing_files_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let garbage = tmp.path().join("garbage.sf");
    std::fs::write(&garbage, b"this is not an avro file at all\n").expect("write");
    let e = TraceReader::open(&garbage).expect_err("not avro");
    assert_eq!(e.kind(), ErrorKind::NotAvro);
    assert!(e.to_string().contains("garbage.sf") && e.to_string().contains("not an Avro"), "{e}");
    let empty = tmp.path().join("empty.sf");
    std::fs::write(&empty, b"").expect("write");
    let e = TraceReader::open(&empty).expect_err("empty");
    assert_eq!(e.kind(), ErrorKind::NotAvro);
    assert_eq!(e.to_string(), format!("{}: empty file (0 bytes)", empty.display()));
    let stub = tmp.path().join("stub.sf");
    std::fs::write(&stub, b"Ob").expect("write");
    let e = TraceReader::open(&stub).expect_err("2 bytes of magic");
    assert_eq!(e.kind(), ErrorKind::Truncated);
    assert!(e.to_string().starts_with(&format!("{}: file ends inside the container magic", stub.display())), "{e}");
    let e = TraceReader::open(&tmp.path().join("missing.sf")).expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("missing.sf"), "{e}");
    let e = TraceReader::open(tmp.path()).expect_err("a directory");
    assert_eq!(e.kind(), ErrorKind::Io);
    // Valid magic, bad schema.
    let mut bad_schema = b"Obj\x01".to_vec();
    bad_schema.extend_from_slice(&[2, 22]);
    bad_schema.extend_from_slice(b"avro.schema");
    bad_schema.extend_from_slice(&[6]);
    bad_schema.extend_from_slice(b"{x}");
    bad_schema.push(0);
    bad_schema.extend_from_slice(&[7u8; 16]);
    let e = TraceReader::from_reader("schema.sf", std::io::Cursor::new(bad_schema)).expect_err("bad schema");
    assert_eq!(e.kind(), ErrorKind::Schema);
    assert!(e.to_string().starts_with("schema.sf: "), "{e}");
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzz_flips_and_truncations_never_panic() {
    let Some(dir) = common::data_dir() else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let iterations: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let traces = ["httpd.sf", "k8s_small.sf", "sf-apis_nginx.sf", "sf-collector_nginx.sf", "tcp.sf", "sf-collector_nodejs_mon.1544763289.sf"];
    let mut outcomes = [0usize; 3];
    for i in 0..iterations {
        let name = traces[i % traces.len()];
        let mut data = trace(&dir, name);
        match rng.below(4) {
            0 => {
                let n = rng.below(data.len());
                data.truncate(n);
            }
            1 => {
                // Damage the header region (metadata and schema) specifically.
                let pos = rng.below(data.len().min(7000));
                data[pos] ^= (rng.next() as u8) | 1;
            }
            _ => {
                for _ in 0..1 + rng.below(8) {
                    let pos = rng.below(data.len());
                    data[pos] = rng.next() as u8;
                }
            }
        }
        match read_all(name, data) {
            Err(e) => {
                assert!(e.to_string().starts_with(name), "{e}");
                outcomes[0] += 1;
            }
            Ok((_, errs)) if errs.is_empty() => outcomes[1] += 1,
            Ok((_, errs)) => {
                for e in errs {
                    assert!(e.to_string().starts_with(name), "{e}");
                }
                outcomes[2] += 1;
            }
        }
    }
    // The loop must actually have exercised the error paths.
    assert!(outcomes[0] > 0 && outcomes[2] > 0, "{outcomes:?}");
}
