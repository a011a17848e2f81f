//! Measures encoding speed on a real trace: decodes and resolves it once, then
//! encodes all its flat records repeatedly with one encoder (CPU time of this thread).
//!
//! `cargo run --release -p sysflow-exporter --example encode_trace_speed -- <trace.sf> [passes] [json|ecs|otel-json|otel-proto|file]`
//! (`file`: the whole exporter stage writing to a temporary file; `otel-*`: `format: otel`
//! as OTLP/JSON or protobuf)

use std::time::Instant;

use sysflow_avro_drivers::TraceReader;
use sysflow_exporter::{EcsEncoder, JsonEncoder, OtelEncoder, OtelEncoding};
use sysflow_plugin_api::{abi_stable::std_types::RStr, Batch, FlatRecord, Host, LogLevel, Processor};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: encode_trace_speed <trace.sf> [passes]")?;
    let passes: usize = args.next().map(|p| p.parse()).transpose()?.unwrap_or(20);
    let mode = args.next().unwrap_or_else(|| "json".into());
    let ecs = mode == "ecs";

    let mut records = Vec::new();
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "bench"));
    let decoded: Result<Vec<_>, _> = TraceReader::open(path.as_ref())?.collect();
    for chunk in decoded?.chunks(1000) {
        if let Some(Batch::Flat(b)) = reader.process(Batch::sysflow(chunk.to_vec()))? {
            records.extend(b.iter().cloned());
        }
    }
    let records: Vec<FlatRecord> = records;

    if mode == "file" {
        // The whole exporter stage: encode + file transport, batches of 1000 records.
        let target = std::env::temp_dir().join(format!("encode_trace_speed.{}.json", std::process::id()));
        let mut map = serde_json::Map::new();
        map.insert("export".into(), "file".into());
        map.insert("file.path".into(), target.to_string_lossy().into_owned().into());
        let mut exporter = sysflow_exporter::Exporter::new(&sysflow_plugin_api::PluginConfig::from_map(map), Host::new(quiet, "bench"))?;
        let batches: Vec<Batch> = records.chunks(1000).map(|c| Batch::flat(c.to_vec())).collect();
        let cpu_start = cpu_ns();
        let wall = Instant::now();
        for _ in 0..passes {
            for b in &batches {
                exporter.process(b.clone())?;
            }
        }
        exporter.finish()?;
        let cpu = match (cpu_start, cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => f64::NAN,
        };
        let n = (records.len() * passes) as f64;
        let bytes = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&target);
        println!(
            "{path}: exporter to file: {n} records, {bytes} bytes, {:.2} M records per CPU-second, {:.2} M records/s wall",
            n / cpu / 1e6,
            n / wall.elapsed().as_secs_f64() / 1e6
        );
        return Ok(());
    }

    let mut encoder = JsonEncoder::new();
    let mut ecs_encoder = EcsEncoder::new();
    let mut otel = match mode.as_str() {
        "otel-json" => Some(OtelEncoder::new(OtelEncoding::Json)),
        "otel-proto" => Some(OtelEncoder::new(OtelEncoding::Proto)),
        _ => None,
    };
    let mut out = Vec::with_capacity(1 << 20);
    let (mut bytes, mut count) = (0usize, 0usize);
    let wall = Instant::now();
    let cpu_start = cpu_ns();
    for _ in 0..passes {
        for r in &records {
            if let Some(otel) = &mut otel {
                otel.encode(r, &mut out)?;
            } else if ecs {
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
