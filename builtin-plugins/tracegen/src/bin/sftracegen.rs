//! `sftracegen`: writes a synthetic SysFlow v5 trace file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use sysflow_tracegen::{write_trace, GenConfig, Scenario, WriterOptions, DEFAULT_BLOCK_SIZE};

/// Writes a synthetic, collector-like SysFlow v5 Avro trace.
#[derive(Parser, Debug)]
#[command(name = "sftracegen", version)]
struct Args {
    /// Number of records to write (the header counts).
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Seed; equal arguments give byte-identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Activity: mixed, attack or benign.
    #[arg(long, default_value = "mixed")]
    scenario: Scenario,
    /// Uncompressed bytes per Avro block.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
    block_size: usize,
    /// Start a new segment (header + REUP re-sends) every N records; 0 = never.
    #[arg(long, default_value_t = 0)]
    rotate_every: u64,
    /// Deflate level (0-9).
    #[arg(long, default_value_t = 6)]
    level: u32,
    /// Exporter (node) name in the header.
    #[arg(long, default_value = "k8s-worker-1")]
    exporter: String,
    /// Node IP in the header.
    #[arg(long, default_value = "10.0.1.17")]
    ip: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.block_size == 0 {
        anyhow::bail!("--block-size must be positive");
    }
    if args.level > 9 {
        anyhow::bail!("--level must be 0-9, got {}", args.level);
    }
    if args.ip.parse::<std::net::Ipv4Addr>().is_err() {
        anyhow::bail!("--ip must be a dotted IPv4 address, got {:?}", args.ip);
    }
    let config = GenConfig {
        records: args.records,
        seed: args.seed,
        scenario: args.scenario,
        exporter: args.exporter,
        ip: args.ip,
        rotate_every: args.rotate_every,
        ..GenConfig::default()
    };
    let options = WriterOptions { block_size: args.block_size, level: args.level, ..WriterOptions::default() };
    let started = Instant::now();
    let n = write_trace(&config, &args.out, options)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {n} records ({size} bytes) to {} in {secs:.2}s ({:.0} records/s)",
        args.out.display(),
        n as f64 / secs.max(1e-9)
    );
    Ok(())
}
