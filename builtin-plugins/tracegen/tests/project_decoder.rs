//! Decodes generated traces with the project's own decoder (`sysflow-avro-drivers`)
//! and compares with the generated records: the encoder here is independent of it.

use sysflow_avro_drivers::{DatumDecoder, TraceReader};
use sysflow_plugin_api::records::SysFlowRecord;
use sysflow_tracegen::{encode_datum, write_trace, GenConfig, Generator, Scenario, WriterOptions};

#[test]
fn trace_reader_decodes_generated_files_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (scenario, seed) in [(Scenario::Mixed, 21), (Scenario::Attack, 22)] {
        let cfg = GenConfig { records: 30_000, seed, scenario, ..GenConfig::default() };
        let path = dir.path().join(format!("{seed}.sf"));
        write_trace(&cfg, &path, WriterOptions::default()).expect("write");
        let expected: Vec<SysFlowRecord> = Generator::new(cfg).collect();
        let reader = TraceReader::open(&path).expect("open");
        let mut n = 0;
        for (i, got) in reader.enumerate() {
            let got = got.unwrap_or_else(|e| panic!("record {i}: {e}"));
            assert_eq!(got, expected[i], "record {i}");
            n += 1;
        }
        assert_eq!(n, expected.len());
    }
}

#[test]
fn datum_decoder_decodes_socket_datums() {
    let decoder = DatumDecoder::v5();
    let mut buf = Vec::new();
    for r in Generator::new(GenConfig { records: 20_000, seed: 4, ..GenConfig::default() }) {
        buf.clear();
        encode_datum(&r, &mut buf);
        let got = decoder.decode(&buf).unwrap_or_else(|e| panic!("{e} for {r:?}"));
        assert_eq!(got, r);
    }
}
