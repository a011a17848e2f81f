//! Every record of every shared trace survives a v5 encode/decode round trip through
//! `DatumDecoder::v5` (the socket path), including trailing bytes after the datum.

mod common;

use sysflow_avro_drivers::{DatumDecoder, TraceReader};


#[test]
fn v5_round_trip_of_all_traces() {
    let Some(dir) = common::data_dir() else { return };
    let decoder = DatumDecoder::v5();
    let mut buf = Vec::new();
    let mut n = 0;
    for path in common::traces(&dir) {
        for rec in TraceReader::open(&path).expect("open") {
            let rec = rec.expect("record");
            buf.clear();
            sysflow_tracegen::encode_datum(&rec, &mut buf);
            let back = decoder.decode(&buf).unwrap_or_else(|e| panic!("{}: {e} for {rec:?}", path.display()));
            assert_eq!(back, rec, "{}", path.display());
            // Trailing bytes are tolerated (upstream never checks them either).
            buf.extend_from_slice(&[1, 2, 3]);
            assert_eq!(decoder.decode(&buf).expect("with trailing bytes"), rec);
            n += 1;
        }
    }
    assert!(n > 50_000, "decoded {n} records");
    assert_eq!(decoder.unknown_enum_symbols(), 0);
}

#[test]
fn v5_decoder_accepts_v4_process_datums() {
    let Some(dir) = common::data_dir() else { return };
    let decoder = DatumDecoder::v5();
    let mut n = 0;
    // S4 processes: no cwd/env, so their v5 encoding ends with an empty string and an empty array.
    for rec in TraceReader::open(&dir.join("traces/shellshock.sf")).expect("open") {
        let rec = rec.expect("record");
        if let sysflow_plugin_api::SysFlowRecord::Process(_) = &rec {
            let mut buf = Vec::new();
            sysflow_tracegen::encode_datum(&rec, &mut buf);
            assert_eq!(&buf[buf.len() - 2..], &[0, 0]);
            buf.truncate(buf.len() - 2);
            assert_eq!(decoder.decode(&buf).expect("v4 datum"), rec);
            // A file decoder compiled from the v5 schema stays strict.
            let strict = DatumDecoder::new(sysflow_avro_drivers::SCHEMA_V5).expect("v5");
            assert!(strict.decode(&buf).is_err());
            n += 1;
        }
    }
    assert_eq!(n, 13);
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[test]
fn null_codec_container_file_with_two_blocks() {
    let Some(dir) = common::data_dir() else { return };
    let recs: Vec<_> =
        TraceReader::open(&dir.join("traces/k8s_small.sf")).expect("open").map(|r| r.expect("record")).collect();
    let sync = *b"0123456789abcdef";
    let mut file = b"Obj\x01".to_vec();
    zigzag(&mut file, 2);
    for (k, v) in [("avro.codec", "null".as_bytes()), ("avro.schema", sysflow_avro_drivers::SCHEMA_V5.as_bytes())] {
        zigzag(&mut file, k.len() as i64);
        file.extend_from_slice(k.as_bytes());
        zigzag(&mut file, v.len() as i64);
        file.extend_from_slice(v);
    }
    zigzag(&mut file, 0);
    file.extend_from_slice(&sync);
    let (a, b) = recs.split_at(recs.len() / 2);
    for chunk in [a, b] {
        let mut data = Vec::new();
        for r in chunk {
            sysflow_tracegen::encode_datum(r, &mut data);
        }
        zigzag(&mut file, chunk.len() as i64);
        zigzag(&mut file, data.len() as i64);
        file.extend_from_slice(&data);
        file.extend_from_slice(&sync);
    }
    let mut reader = TraceReader::from_reader("null.sf", std::io::Cursor::new(file)).expect("open");
    let back: Vec<_> = reader.by_ref().map(|r| r.expect("record")).collect();
    assert_eq!(back, recs);
    assert_eq!(reader.stats().blocks, 2);
}
