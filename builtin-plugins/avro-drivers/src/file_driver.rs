//! The `file` driver: reads one trace file, or every file of a directory in name order.

use std::{
    collections::VecDeque,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use sysflow_plugin_api::{Batch, Counter, Driver, DriverPoll, Host, PluginConfig, PluginError, SysFlowRecord};

use crate::{
    error::ErrorKind,
    ocf::{DecodeStats, ReadBuffers, TraceReader},
};

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
    finished: bool,
}

impl std::fmt::Debug for FileDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDriver").field("input", &self.input).field("pending", &self.files.len()).finish()
    }
}

/// Lists the files of `dir` in byte order of their names, skipping subdirectories with a warning.
fn list_dir(dir: &Path, host: &Host) -> Result<Vec<PathBuf>, PluginError> {
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
    for name in names {
        let path = dir.join(&name);
        if path.is_dir() {
            host.warn(&format!("skipping subdirectory {} (directories are not read recursively)", path.display()));
        } else {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(PluginError::new(format!("No files present in directory: {} (only subdirectories)", dir.display())));
    }
    Ok(files)
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
            finished: false,
        };
        if meta.is_dir() {
            driver.files = list_dir(&input, &host)?.into();
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
                // A damaged marker after an intact block loses nothing: a warning, not an error.
                Some(Err(e)) if e.kind() == ErrorKind::DamagedMarker => self.host.warn(&e.to_string()),
                Some(Err(e)) => self.host.error(&e.to_string()),
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
            Counter::new("files_failed", self.files_failed),
            Counter::new("decode_errors", s.errors),
            Counter::new("blocks_skipped", s.blocks_skipped),
            Counter::new("records_skipped", s.records_skipped),
            Counter::new("bytes_skipped", s.bytes_skipped),
            Counter::new("damaged_sync_markers", s.damaged_markers),
            Counter::new("warnings", s.warnings),
        ]
    }

    fn stop(&mut self) {
        self.finish_current();
        self.files.clear();
        self.finished = true;
    }
}
