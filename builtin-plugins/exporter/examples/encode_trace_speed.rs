//! Measures JSON encoding speed on a real trace: decodes and resolves it once, then
//! encodes all its flat records repeatedly with one encoder (CPU time of this thread).
//!
//! `cargo run --release -p sysflow-exporter --example encode_trace_speed -- <trace.sf> [passes] [json|ecs]`

use std::time::Instant;

use sysflow_avro_drivers::TraceReader;
use sysflow_exporter::{EcsEncoder, JsonEncoder};
use sysflow_plugin_api::{abi_stable::std_types::RStr, Batch, FlatRecord, Host, LogLevel, Processor};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: encode_trace_speed <trace.sf> [passes]")?;
    let passes: usize = args.next().map(|p| p.parse()).transpose()?.unwrap_or(20);
    let ecs = args.next().as_deref() == Some("ecs");

    let mut records = Vec::new();
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "bench"));
    let decoded: Result<Vec<_>, _> = TraceReader::open(path.as_ref())?.collect();
    for chunk in decoded?.chunks(1000) {
        if let Some(Batch::Flat(b)) = reader.process(Batch::sysflow(chunk.to_vec()))? {
            records.extend(b.iter().cloned());
        }
    }
    let records: Vec<FlatRecord> = records;

    let mut encoder = JsonEncoder::new();
    let mut ecs_encoder = EcsEncoder::new();
    let mut out = Vec::with_capacity(1 << 20);
    let (mut bytes, mut count) = (0usize, 0usize);
    let wall = Instant::now();
    let cpu_start = cpu_ns();
    for _ in 0..passes {
        for r in &records {
            if ecs {
                ecs_encoder.encode(r, &mut out);
            } else {
                encoder.encode(r, &mut out);
            }
            out.push(b'\n');
            count += 1;
            if out.len() > 256 << 10 {
                bytes += out.len();
                out.clear();
            }
        }
    }
    bytes += out.len();
    let secs = match (cpu_start, cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => wall.elapsed().as_secs_f64(),
    };
    println!(
        "{path}: {count} records, {:.0} bytes/record, {:.2} M records per CPU-second, {:.2} GB/s, cache (hits, misses) {:?}",
        bytes as f64 / count as f64,
        count as f64 / secs / 1e6,
        bytes as f64 / secs / 1e9,
        encoder.cache_stats()
    );
    Ok(())
}

/// CPU time of this thread in ns (Linux `schedstat`), if available.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
