//! Decode throughput: reads every shared trace into memory, then decodes all of them
//! N times (default 20) and prints records/s.
//!
//! `cargo run --release -p sysflow-avro-drivers --example decode_speed [-- N [DATA_DIR]]`

use std::{path::PathBuf, time::Instant};

use sysflow_avro_drivers::{ReadBuffers, TraceReader};

/// CPU time of this process in seconds (machines are shared; wall time alone misleads).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = args
        .next()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("SYSFLOW_TEST_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")));
    let mut traces = Vec::new();
    let entries = match std::fs::read_dir(dir.join("traces")) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.join("traces").display());
            std::process::exit(1);
        }
    };
    for entry in entries.flatten() {
        if let Ok(bytes) = std::fs::read(entry.path()) {
            traces.push((entry.file_name().to_string_lossy().into_owned(), bytes));
        }
    }
    let bytes: usize = traces.iter().map(|(_, b)| b.len()).sum();
    let mut records = 0u64;
    let mut errors = 0u64;
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    // Handed from reader to reader, as the file driver does for a directory.
    let mut buffers = ReadBuffers::new();
    for _ in 0..rounds {
        for (name, data) in &traces {
            let mut reader = match TraceReader::from_reader_with(name, std::io::Cursor::new(data.clone()), &mut buffers) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    errors += 1;
                    continue;
                }
            };
            for item in reader.by_ref() {
                match item {
                    Ok(rec) => {
                        records += 1;
                        std::hint::black_box(rec);
                    }
                    Err(_) => errors += 1,
                }
            }
            buffers = reader.into_buffers();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    println!(
        "{} traces ({} KiB compressed) x {rounds}: {records} records in {secs:.3} s wall / {cpu:.3} s CPU = {:.0} records/s wall, {:.0} records per CPU-second ({:.1} MiB/s compressed), {errors} errors",
        traces.len(),
        bytes / 1024,
        records as f64 / secs,
        records as f64 / cpu,
        (bytes as f64 * f64::from(rounds)) / secs / (1 << 20) as f64
    );
}
