//! Reader-only speed on a trace: decodes it in batches of 1000 records and hands each to
//! the `sysflowreader`, counting only the reader's CPU time (this thread's CPU clock around
//! `process`, dropping its output included), so decoding and machine load from other
//! processes are left out.
//!
//! `cargo run --release -p sysflow-reader --example reader_speed -- <trace.sf> [key=value …]`
//!
//! `key=value` pairs are reader pipeline keys (e.g. `cache.filemaxage=86400`). Prints
//! SysFlow records per reader CPU-second and the reader's counters.

use sysflow_avro_drivers::TraceReader;
use sysflow_plugin_api::{abi_stable::std_types::RStr, Batch, Host, LogLevel, PluginConfig, Processor, SysFlowRecord};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

/// This thread's CPU time in ns.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: reader_speed <trace.sf> [key=value …]")?;
    let mut keys = serde_json::Map::new();
    for pair in args {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("'{pair}': expected key=value"))?;
        keys.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let mut reader = SysFlowReader::new(&PluginConfig::from_map(keys), Host::new(quiet, "bench"))?;
    let mut trace = TraceReader::open(path.as_ref())?;
    let (mut records, mut flat, mut cpu) = (0u64, 0u64, 0u64);
    loop {
        let batch: Vec<SysFlowRecord> = trace.by_ref().take(1000).collect::<Result<_, _>>()?;
        if batch.is_empty() {
            break;
        }
        records += batch.len() as u64;
        let start = cpu_ns();
        if let Some(Batch::Flat(b)) = reader.process(Batch::sysflow(batch))? {
            flat += b.len() as u64;
        }
        cpu += cpu_ns().saturating_sub(start);
    }
    let secs = cpu as f64 / 1e9;
    println!(
        "{path}: {records} records, {flat} flat records, reader CPU {secs:.2} s, {:.2} M records per reader CPU-second",
        records as f64 / secs / 1e6
    );
    let counters: Vec<String> = reader
        .counters()
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    println!("{}", counters.join(" "));
    Ok(())
}
