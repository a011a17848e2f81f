//! `sfreplay`: streams SysFlow trace files into the unix socket a `sfprocessor -driver socket`
//! listens on, one datum per `SOCK_SEQPACKET` message as the collector sends them, at a chosen
//! pace. A separate binary (not a `sfprocessor` subcommand) because it is the client of the
//! socket the processor serves: operators run it against an installed service.

mod input;
mod pace;
mod sender;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::{
    input::{trace_files, TraceRecords},
    pace::Pace,
    sender::{SendOutcome, Sender, SEND_BATCH},
};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "sfreplay",
    version,
    about = "Streams SysFlow traces into a collector-style unix socket (what `sfprocessor -driver socket` reads)",
    after_help = "Without --rate or --as-recorded records are sent as fast as the reader takes them.\n\
                  Exit status: 0 when every record was sent, 1 on a fatal error (no socket, peer closed), \n\
                  2 when some input was skipped (unreadable files, damaged blocks, oversized datums; each is reported)."
)]
struct Args {
    /// Socket the processor listens on (the collector's default: /sock/sysflow.sock).
    #[arg(short, long, default_value = "/sock/sysflow.sock")]
    socket: PathBuf,
    /// Send at most N records per second.
    #[arg(long, value_name = "N", conflicts_with = "as_recorded", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Pace records by their event timestamps, as the collector sent them.
    #[arg(long)]
    as_recorded: bool,
    /// With --as-recorded: play F times faster (2 = twice as fast).
    #[arg(long, value_name = "F", default_value_t = 1.0, requires = "as_recorded", value_parser = parse_rate)]
    speed: f64,
    /// Trace files, or directories whose regular files are sent in name order.
    #[arg(required = true)]
    traces: Vec<PathBuf>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

/// What one run sent and skipped.
#[derive(Debug, Default)]
struct Totals {
    files: u64,
    files_skipped: u64,
    records: u64,
    bytes: u64,
    decode_errors: u64,
    records_skipped: u64,
    oversized: u64,
}

/// Encoded records waiting for one `sendmmsg`, in reused buffers.
#[derive(Debug, Default)]
struct Batch {
    datums: Vec<Vec<u8>>,
    /// Each datum's 1-based record index in its file (for warnings).
    indices: Vec<u64>,
    filled: usize,
    outcomes: Vec<SendOutcome>,
}

impl Batch {
    fn push(&mut self, record: &sysflow_plugin_api::SysFlowRecord, index: u64) {
        if self.datums.len() == self.filled {
            self.datums.push(Vec::new());
            self.indices.push(0);
        }
        let datum = &mut self.datums[self.filled];
        datum.clear();
        sysflow_tracegen::encode_datum(record, datum);
        self.indices[self.filled] = index;
        self.filled += 1;
    }

    /// Sends the waiting datums, counting each outcome (also those before a fatal error).
    fn flush(&mut self, sender: &mut Sender, file: &std::path::Path, totals: &mut Totals) -> Result<()> {
        self.outcomes.clear();
        let result = sender.send_batch(&self.datums[..self.filled], &mut self.outcomes);
        for (i, outcome) in self.outcomes.iter().enumerate() {
            match outcome {
                SendOutcome::Sent => {
                    totals.records += 1;
                    totals.bytes += self.datums[i].len() as u64;
                }
                SendOutcome::TooLarge => {
                    totals.oversized += 1;
                    eprintln!(
                        "sfreplay: warning: {}: record {} encodes to {} bytes, more than the socket takes in one message; skipped",
                        file.display(),
                        self.indices[i],
                        self.datums[i].len()
                    );
                }
            }
        }
        self.filled = 0;
        result.with_context(|| format!("{} after {} records", file.display(), totals.records))
    }
}

fn run(args: &Args) -> Result<Totals> {
    let files = trace_files(&args.traces)?;
    if files.is_empty() {
        bail!("no trace files in {}", args.traces.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let mut sender = Sender::connect(&args.socket)?;
    let mut pace = match (args.rate, args.as_recorded) {
        (Some(rate), _) => Pace::rate(rate),
        (None, true) => Pace::as_recorded(args.speed),
        (None, false) => Pace::unlimited(),
    };
    // Unpaced, records go out in batches of one `sendmmsg` each; paced, each goes out when
    // its time comes.
    let batch_len = if matches!(pace, Pace::Unlimited) { SEND_BATCH } else { 1 };
    let mut totals = Totals::default();
    let mut batch = Batch::default();
    for file in &files {
        // A file that is not a trace (a stray file in a directory) is skipped, not fatal.
        let mut records = match TraceRecords::open(file) {
            Ok(records) => records,
            Err(e) => {
                totals.files_skipped += 1;
                eprintln!("sfreplay: warning: {e:#}; file skipped");
                continue;
            }
        };
        totals.files += 1;
        while let Some(item) = records.next() {
            let record = match item {
                Ok(record) => record,
                Err(e) => {
                    totals.decode_errors += 1;
                    eprintln!("sfreplay: warning: {e}; skipped");
                    continue;
                }
            };
            pace.wait_for(&record);
            batch.push(&record, records.index());
            if batch.filled == batch_len {
                batch.flush(&mut sender, file, &mut totals)?;
            }
        }
        batch.flush(&mut sender, file, &mut totals)?;
        totals.records_skipped += records.records_skipped();
    }
    Ok(totals)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let start = Instant::now();
    match run(&args) {
        Ok(t) => {
            let secs = start.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { t.records as f64 / secs } else { 0.0 };
            eprintln!(
                "sfreplay: sent {} records ({} bytes) from {} files to {} in {:.3} s: {:.0} records/s; \
                 skipped: {} unreadable files, {} decode errors, {} records in damaged blocks, {} oversized records",
                t.records,
                t.bytes,
                t.files,
                args.socket.display(),
                secs,
                rate,
                t.files_skipped,
                t.decode_errors,
                t.records_skipped,
                t.oversized
            );
            if t.files_skipped + t.decode_errors + t.records_skipped + t.oversized > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("sfreplay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
