//! The `file` driver: reads one trace file, or every file of a directory in name order.

use std::{
    collections::VecDeque,
    fs,
    os::unix::{ffi::OsStrExt, fs::FileTypeExt},
    path::{Path, PathBuf},
    time::Duration,
};

use sysflow_plugin_api::{Batch, Counter, Driver, DriverPoll, Host, PluginConfig, PluginError, SysFlowRecord};

use crate::{
    error::{DecodeError, ErrorKind},
    fifo_input::{FifoInput, FifoItem, FifoPoll},
    ocf::{DecodeStats, ReadBuffers, TraceReader},
};

/// Longest a poll waits for a FIFO's writer before returning `Idle`.
const FIFO_POLL_WAIT: Duration = Duration::from_millis(100);

/// Reads SysFlow Avro object container files.
///
/// Damaged blocks and bad datums are logged, counted and skipped; a file that cannot be
/// opened is logged and counted and the next file is read.
pub struct FileDriver {
    host: Host,
    input: PathBuf,
    files: VecDeque<PathBuf>,
    current: Option<TraceReader>,
    /// Allocations handed from each finished file's reader to the next one.
    buffers: ReadBuffers,
    /// Stats of finished files.
    totals: DecodeStats,
    files_read: u64,
    files_failed: u64,
    /// Directory entries that are neither regular files nor directories (FIFOs, sockets,
    /// devices): never opened, since reading them can block for ever.
    files_skipped: u64,
    /// The input when the path is a FIFO.
    fifo: Option<FifoInput>,
    /// Records of a FIFO batch beyond the poll's `max_records`.
    carry: Vec<SysFlowRecord>,
    finished: bool,
}

impl std::fmt::Debug for FileDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDriver").field("input", &self.input).field("pending", &self.files.len()).finish()
    }
}

/// What kind of non-regular file `t` is, for messages.
fn kind_name(t: &fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Lists the regular files of `dir` in byte order of their names, skipping subdirectories
/// and other non-regular entries with a warning; returns them and how many were skipped.
fn list_dir(dir: &Path, host: &Host) -> Result<(Vec<PathBuf>, u64), PluginError> {
    let entries = fs::read_dir(dir).map_err(|e| PluginError::new(format!("cannot read directory {}: {e}", dir.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::new(format!("cannot read directory {}: {e}", dir.display())))?;
        names.push(entry.file_name());
    }
    if names.is_empty() {
        return Err(PluginError::new(format!("No files present in directory: {}", dir.display())));
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut files = Vec::with_capacity(names.len());
    let mut skipped = 0;
    for name in names {
        let path = dir.join(&name);
        // Follows symlinks; one that cannot be followed is kept, and opening it reports why.
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                host.warn(&format!("skipping subdirectory {} (directories are not read recursively)", path.display()))
            }
            Ok(m) if !m.is_file() => {
                skipped += 1;
                host.warn(&format!(
                    "skipping {}: it is {}, not a regular file (reading it could block; give a FIFO as the path itself to read it)",
                    path.display(),
                    kind_name(&m.file_type())
                ));
            }
            _ => files.push(path),
        }
    }
    if files.is_empty() {
        return Err(PluginError::new(format!(
            "No files present in directory: {} (only subdirectories and non-regular files)",
            dir.display()
        )));
    }
    Ok((files, skipped))
}

impl FileDriver {
    /// Opens the next pending file; `Ok(false)` when none is left.
    fn open_next(&mut self) -> bool {
        while let Some(path) = self.files.pop_front() {
            match TraceReader::open_with(&path, &mut self.buffers) {
                Ok(reader) => {
                    for w in reader.schema_warnings() {
                        self.host.warn(&format!("{}: {w}", reader.name()));
                    }
                    self.host.info(&format!("reading {}", reader.name()));
                    self.current = Some(reader);
                    return true;
                }
                Err(e) => {
                    self.files_failed += 1;
                    self.host.error(&format!("cannot read trace: {e}"));
                }
            }
        }
        false
    }

    fn finish_current(&mut self) {
        if let Some(reader) = self.current.take() {
            let s = reader.stats();
            if s.blocks_skipped > 0 || s.records_skipped > 0 || s.bytes_skipped > 0 {
                self.host.warn(&format!(
                    "{}: {} records read; skipped because of damage: {} blocks, {} records, {} bytes (the errors above give each block's byte offset)",
                    reader.name(),
                    s.records,
                    s.blocks_skipped,
                    s.records_skipped,
                    s.bytes_skipped
                ));
            }
            let unknown = s.warnings.saturating_sub(reader.schema_warnings().len() as u64);
            if unknown > 0 {
                self.host.warn(&format!("{}: {unknown} enum values with unknown symbols decoded as ordinal 0", reader.name()));
            }
            add_stats(&mut self.totals, s);
            self.files_read += 1;
            self.buffers = reader.into_buffers();
        }
    }

    fn stats(&self) -> DecodeStats {
        let mut t = self.totals.clone();
        if let Some(r) = &self.current {
            add_stats(&mut t, r.stats());
        }
        t
    }

    fn log_problem(&self, e: &DecodeError) {
        // A damaged marker after an intact block loses nothing: a warning, not an error.
        if e.kind() == ErrorKind::DamagedMarker {
            self.host.warn(&e.to_string());
        } else {
            self.host.error(&e.to_string());
        }
    }

    /// [`Driver::poll`] when the input is a FIFO.
    fn poll_fifo(&mut self, max: usize) -> Result<DriverPoll, PluginError> {
        if !self.carry.is_empty() {
            let rest = self.carry.split_off(self.carry.len().min(max));
            return Ok(DriverPoll::Batch(Batch::sysflow(std::mem::replace(&mut self.carry, rest))));
        }
        let Some(fifo) = self.fifo.as_mut() else { return Ok(DriverPoll::End) };
        match fifo.poll(FIFO_POLL_WAIT) {
            FifoPoll::Item(FifoItem::Records(mut records)) => {
                if records.len() > max {
                    self.carry = records.split_off(max);
                }
                Ok(DriverPoll::Batch(Batch::sysflow(records)))
            }
            FifoPoll::Item(FifoItem::Problem(e)) => {
                self.log_problem(&e);
                Ok(DriverPoll::Idle)
            }
            FifoPoll::Item(FifoItem::Unreadable(e)) => {
                self.files_failed += 1;
                Err(PluginError::new(format!("cannot read trace: {e}")))
            }
            FifoPoll::Nothing => Ok(DriverPoll::Idle),
            FifoPoll::Ended => {
                let s = fifo.stats();
                add_stats(&mut self.totals, &s);
                if self.files_failed == 0 {
                    self.files_read += 1;
                }
                self.fifo = None;
                self.finished = true;
                Ok(DriverPoll::End)
            }
        }
    }
}

fn add_stats(t: &mut DecodeStats, s: &DecodeStats) {
    t.records += s.records;
    t.blocks += s.blocks;
    t.blocks_skipped += s.blocks_skipped;
    t.records_skipped += s.records_skipped;
    t.bytes_skipped += s.bytes_skipped;
    t.damaged_markers += s.damaged_markers;
    t.errors += s.errors;
    t.warnings += s.warnings;
}

impl Driver for FileDriver {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let path = config.str("path")?.filter(|p| !p.is_empty()).ok_or_else(|| {
            PluginError::new("file driver: key 'path' is required (the trace file or directory to read)")
        })?;
        let input = PathBuf::from(path);
        let meta = fs::metadata(&input).map_err(|e| PluginError::new(format!("cannot access {}: {e}", input.display())))?;
        let mut driver = FileDriver {
            host,
            input: input.clone(),
            files: VecDeque::new(),
            current: None,
            buffers: ReadBuffers::new(),
            totals: DecodeStats::default(),
            files_read: 0,
            files_failed: 0,
            files_skipped: 0,
            fifo: None,
            carry: Vec::new(),
            finished: false,
        };
        if meta.is_dir() {
            let (files, skipped) = list_dir(&input, &host)?;
            driver.files = files.into();
            driver.files_skipped = skipped;
        } else if meta.file_type().is_fifo() {
            // Given explicitly, a FIFO is a deliberate stream (`mkfifo` + a collector).
            driver.fifo = Some(FifoInput::start(&input, host)?);
        } else if !meta.is_file() {
            return Err(PluginError::new(format!(
                "{} is {}: the file driver reads a trace file, a directory of trace files, or a FIFO",
                input.display(),
                kind_name(&meta.file_type())
            )));
        } else {
            // A single file that cannot be read is a configuration error: fail at startup.
            let reader = TraceReader::open(&input).map_err(|e| PluginError::new(e.to_string()))?;
            for w in reader.schema_warnings() {
                host.warn(&format!("{}: {w}", reader.name()));
            }
            driver.current = Some(reader);
        }
        Ok(driver)
    }

    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError> {
        if self.finished {
            return Ok(DriverPoll::End);
        }
        let max = max_records.max(1);
        if self.fifo.is_some() || !self.carry.is_empty() {
            return self.poll_fifo(max);
        }
        let mut out: Vec<SysFlowRecord> = Vec::with_capacity(max.min(8192));
        while out.len() < max {
            let Some(reader) = self.current.as_mut() else {
                if self.open_next() {
                    continue;
                }
                break;
            };
            match reader.next() {
                Some(Ok(rec)) => out.push(rec),
                Some(Err(e)) => self.log_problem(&e),
                None => self.finish_current(),
            }
        }
        if !out.is_empty() {
            return Ok(DriverPoll::Batch(Batch::sysflow(out)));
        }
        self.finished = true;
        if self.files_read == 0 && self.files_failed > 0 {
            return Err(PluginError::new(format!(
                "no readable trace file in {} ({} files failed)",
                self.input.display(),
                self.files_failed
            )));
        }
        Ok(DriverPoll::End)
    }

    fn counters(&self) -> Vec<Counter> {
        let s = self.stats();
        vec![
            Counter::new("records", s.records),
            Counter::new("files", self.files_read + u64::from(self.current.is_some())),
            Counter::loss("files_failed", self.files_failed),
            Counter::loss("files_skipped", self.files_skipped),
            Counter::loss("decode_errors", s.errors),
            Counter::loss("blocks_skipped", s.blocks_skipped),
            Counter::loss("records_skipped", s.records_skipped),
            Counter::loss("bytes_skipped", s.bytes_skipped),
            Counter::new("damaged_sync_markers", s.damaged_markers),
            Counter::new("warnings", s.warnings),
        ]
    }

    /// Stops reading files at once (what was read goes on down the pipeline); a FIFO is
    /// read until its pipe is empty, then ends.
    fn stop(&mut self) {
        if let Some(fifo) = &self.fifo {
            fifo.stop();
            return;
        }
        self.finish_current();
        self.files.clear();
        self.finished = true;
    }
}
