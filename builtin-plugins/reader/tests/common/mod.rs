//! Helpers shared by the real-data tests: locating the shared data, running a trace
//! through the reader, reading gzip'd JSON lines.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use abi_stable::std_types::RStr;
use serde_json::{Map, Value};
use sysflow_avro_drivers::TraceReader;
use sysflow_plugin_api::{Batch, FlatRecord, Host, LogLevel, Processor, SysFlowRecord};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SYSFLOW_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join("traces").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data not found at {}", dir.display());
    }
    eprintln!("skipping: test data not found at {}", dir.display());
    None
}

/// What reading one trace produced.
pub struct TraceRun {
    pub records: Vec<FlatRecord>,
    pub stats: sysflow_reader::ReaderCounters,
    pub reader_time: Duration,
}

/// Decodes a trace, then runs it through the reader in batches of 1000 records, as the
/// pipeline would (only the reader's time is measured).
pub fn read_trace(path: &Path) -> TraceRun {
    let trace = TraceReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoded: Vec<SysFlowRecord> = trace
        .map(|rec| rec.unwrap_or_else(|e| panic!("{}: decode error: {e}", path.display())))
        .collect();
    let mut batches = Vec::new();
    let mut it = decoded.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(Batch::sysflow(it.by_ref().take(1000).collect()));
    }
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "sysprint-compare"));
    let mut outputs = Vec::with_capacity(batches.len());
    let start = Instant::now();
    for b in batches {
        outputs.push(reader.process(b).expect("reader"));
    }
    let reader_time = start.elapsed();
    let mut records = Vec::new();
    for out in outputs.into_iter().flatten() {
        match out {
            Batch::Flat(b) => records.extend(b.iter().cloned()),
            Batch::SysFlow(_) | Batch::Otel(_) => panic!("reader emitted a SysFlow or OTel batch"),
        }
    }
    TraceRun {
        records,
        stats: reader.stats(),
        reader_time,
    }
}

pub fn json_lines(path: &Path) -> Vec<Map<String, Value>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            match serde_json::from_str(&line) {
                Ok(Value::Object(m)) => m,
                other => panic!("{}:{}: not a JSON object: {other:?}", path.display(), i + 1),
            }
        })
        .collect()
}

/// The shared traces, sorted by name.
pub fn traces(dir: &Path) -> Vec<PathBuf> {
    let mut traces: Vec<PathBuf> = std::fs::read_dir(dir.join("traces"))
        .expect("traces dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sf"))
        .collect();
    traces.sort();
    traces
}
