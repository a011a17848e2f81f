//! Every record of every shared trace survives a v5 encode/decode round trip through
//! `DatumDecoder::v5` (the socket path), including trailing bytes after the datum.

mod common;

use sysflow_avro_drivers::{DatumDecoder, TraceReader};

#[path = "common/encoder.rs"]
mod encoder;

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
            encoder::encode_v5(&rec, &mut buf);
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
