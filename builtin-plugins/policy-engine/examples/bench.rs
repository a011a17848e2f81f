//! Evaluation speed: `cargo run --release --example bench -- <policies> <trace.sf|dir> [seconds] [concurrency]`.
//! Resolves the trace once, then evaluates its flat records repeatedly in batches of 1024,
//! (1) directly with `RuleSet::evaluate` on one thread and (2) through the `policyengine`
//! processor in alert mode, and prints records per second.

use std::{path::Path, time::Instant};

use abi_stable::std_types::RStr;
use sysflow_avro_drivers::TraceReader;
use sysflow_plugin_api::{Batch, FlatRecord, Host, LogLevel, PluginConfig, Processor, SysFlowRecord};
use sysflow_policy_engine::{compile_policies, EvalState, PolicyEngine};
use sysflow_reader::SysFlowReader;

/// CPU seconds used by the calling thread (from /proc; 0 where unavailable).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0, utime 11, stime 12 (clock ticks, 100 Hz).
    (ticks(11) + ticks(12)) / 100.0
}

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench <policies> <trace.sf|dir> [seconds] [concurrency]");
        std::process::exit(2);
    }
    let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let conc: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
    // A trace file, or a directory of them (each resolved on its own, as the file driver
    // starts a new entity table per file).
    let input = Path::new(&args[2]);
    let files: Vec<std::path::PathBuf> = if input.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(input)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    } else {
        vec![input.to_path_buf()]
    };
    let mut flat: Vec<FlatRecord> = Vec::new();
    for f in &files {
        let Ok(trace) = TraceReader::open(f) else { continue };
        let mut reader = SysFlowReader::with_host(Host::new(quiet, "reader"));
        let recs: Vec<SysFlowRecord> = trace.filter_map(Result::ok).collect();
        if let Ok(Some(Batch::Flat(b))) = reader.process(Batch::sysflow(recs)) {
            flat.extend(b.iter().cloned());
        }
    }
    let batches: Vec<Vec<FlatRecord>> = flat.chunks(1024).map(|c| c.to_vec()).collect();
    println!("{} flat records in {} batches", flat.len(), batches.len());

    let rs = compile_policies(Path::new(&args[1])).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let mut st = EvalState::default();
    let (mut n, mut matched) = (0u64, 0u64);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    // PASSES=<n> runs a fixed amount of work (for instruction counts) instead of a duration.
    let passes: Option<u64> = std::env::var("PASSES").ok().and_then(|p| p.parse().ok());
    let mut pass = 0u64;
    while passes.map_or(start.elapsed().as_secs_f64() < secs, |p| pass < p) {
        pass += 1;
        for b in &batches {
            let mut b = b.clone();
            for r in b.iter_mut() {
                if let sysflow_policy_engine::Verdict::Pass { matched: m } = rs.evaluate(r, &mut st) {
                    matched += (m > 0) as u64;
                }
            }
            n += b.len() as u64;
        }
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu0;
    println!(
        "RuleSet::evaluate, 1 thread: {:.0} records/s wall, {:.0} records per CPU second ({} records, {} matched)",
        n as f64 / el,
        n as f64 / cpu.max(0.01),
        n,
        matched
    );

    let cfg = PluginConfig::from_json(&format!(
        r#"{{"mode":"alert","policies":"{}","concurrency":"{conc}","actiondir":"/nonexistent"}}"#,
        args[1]
    ))
    .expect("config");
    if passes.is_some() {
        return;
    }
    let mut pe = PolicyEngine::new(&cfg, Host::new(quiet, "pe")).expect("engine");
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        for b in &batches {
            n += b.len() as u64;
            let _ = pe.process(Batch::flat(b.clone()));
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!("policyengine processor, concurrency {conc}: {:.0} records/s", n as f64 / el);
}
