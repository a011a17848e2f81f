//! Times generation, encoding and compression separately:
//! `cargo run --release -p sysflow-tracegen --example bench_phases -- 5000000`.

use std::time::Instant;

use sysflow_tracegen::{encode_datum, GenConfig, Generator, TraceWriter, WriterOptions};

fn main() -> std::io::Result<()> {
    let records = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000u64);
    let cfg = GenConfig { records, ..GenConfig::default() };

    let t = Instant::now();
    let n = Generator::new(cfg.clone()).count();
    let gen = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut buf = Vec::with_capacity(256);
    let mut bytes = 0usize;
    for r in Generator::new(cfg.clone()) {
        buf.clear();
        encode_datum(&r, &mut buf);
        bytes += buf.len();
    }
    let enc = t.elapsed().as_secs_f64();

    for level in [1, 6] {
        let t = Instant::now();
        let mut w = TraceWriter::new(std::io::sink(), WriterOptions { level, ..WriterOptions::default() })?;
        for r in Generator::new(cfg.clone()) {
            w.write(&r)?;
        }
        w.finish()?;
        let all = t.elapsed().as_secs_f64();
        println!("write (deflate level {level}, to sink): {all:.2}s ({:.0} rec/s)", n as f64 / all);
    }
    println!("generate only: {gen:.2}s ({:.0} rec/s)", n as f64 / gen);
    println!("generate+encode: {enc:.2}s, {bytes} bytes uncompressed ({:.1} B/record)", bytes as f64 / n as f64);
    Ok(())
}
