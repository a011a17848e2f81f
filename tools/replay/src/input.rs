//! The traces to send: files and directories expanded in name order, read record by record.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sysflow_avro_drivers::{DecodeError, TraceReader};
use sysflow_plugin_api::SysFlowRecord;

/// The trace files named by `paths`: files as given, directories' regular files in name order
/// (the file driver's order; subdirectories are not entered).
pub fn trace_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("trace {}", path.display()))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path).with_context(|| format!("cannot list directory {}", path.display()))? {
            let entry = entry.with_context(|| format!("cannot list directory {}", path.display()))?;
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                entries.push(entry.path());
            }
        }
        entries.sort();
        files.extend(entries);
    }
    Ok(files)
}

/// One trace file's records, decoded (any SysFlow schema version) as they are read: memory
/// stays at one block whatever the file's size.
pub struct TraceRecords {
    reader: TraceReader,
    index: u64,
}

impl TraceRecords {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<TraceRecords> {
        let reader = TraceReader::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        for warning in reader.schema_warnings() {
            eprintln!("sfreplay: {}: {warning}", path.display());
        }
        Ok(TraceRecords { reader, index: 0 })
    }

    /// The next record or decode problem (reading goes on after a problem), `None` at the end.
    pub fn next(&mut self) -> Option<Result<SysFlowRecord, DecodeError>> {
        let item = self.reader.next()?;
        if item.is_ok() {
            self.index += 1;
        }
        Some(item)
    }

    /// 1-based index of the last record returned.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Records the reader skipped in damaged blocks (beyond the reported errors).
    pub fn records_skipped(&self) -> u64 {
        self.reader.stats().records_skipped
    }
}
