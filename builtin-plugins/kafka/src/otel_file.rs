//! The `otelfile` driver: reads OTel log records from a file holding a JSON array of OTLP
//! `ResourceLogs` objects (the OTLP/JSON mapping), or from every file of a directory in
//! name order (upstream sf-processor 0.7's `otelfile`; not recursive, as upstream). In a
//! directory a file that cannot be read is skipped, named and counted (`files_failed`), where
//! upstream stopped; a single file given as the path that cannot be read stops the run.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
};

use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use prost::Message;
use sysflow_plugin_api::{Batch, ConfigKey, Counter, Driver, DriverPoll, Host, OtelRecord, PluginConfig, PluginError};

/// The configuration keys of the `otelfile` driver.
pub const CONFIG_KEYS: &[ConfigKey] = &[ConfigKey::new(
    "path",
    "a file holding a JSON array of OTLP/JSON ResourceLogs, or a directory of such files (read in name order)",
)];

/// Largest file read: a file is parsed whole (one JSON array), so its size bounds memory.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Reads OTel records from JSON files.
#[derive(Debug)]
pub struct OtelFileDriver {
    host: Host,
    /// The `path` key, when it names a directory (bad files are then skipped).
    directory: Option<PathBuf>,
    files: VecDeque<PathBuf>,
    /// Records of the file being read, not handed over yet.
    pending: VecDeque<OtelRecord>,
    stopping: bool,
    files_read: u64,
    files_failed: u64,
    records: u64,
}

/// The files `path` names: itself, or a directory's files in name order.
fn files(path: &Path) -> Result<VecDeque<PathBuf>, PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| PluginError::new(format!("key 'path': {}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(VecDeque::from([path.to_path_buf()]));
    }
    let mut list: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| PluginError::new(format!("key 'path': {}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    if list.is_empty() {
        return Err(PluginError::new(format!("key 'path': no files in directory {}", path.display())));
    }
    list.sort();
    Ok(list.into())
}

/// The records of one file: a JSON array of `ResourceLogs`.
pub fn read_file(path: &Path) -> Result<Vec<OtelRecord>, PluginError> {
    let size = std::fs::metadata(path).map_err(|e| PluginError::new(format!("{}: {e}", path.display())))?.len();
    if size > MAX_FILE_BYTES {
        return Err(PluginError::new(format!(
            "{}: {size} bytes, over otelfile's limit of {MAX_FILE_BYTES} (a file is parsed whole; split it)",
            path.display()
        )));
    }
    let text = std::fs::read(path).map_err(|e| PluginError::new(format!("{}: {e}", path.display())))?;
    let logs: Vec<ResourceLogs> = serde_json::from_slice(&text).map_err(|e| {
        PluginError::new(format!("{}: not a JSON array of OTLP ResourceLogs: {e}", path.display()))
    })?;
    Ok(logs.iter().map(|rl| OtelRecord::from_proto(rl.encode_to_vec())).collect())
}

impl Driver for OtelFileDriver {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let path = config.str("path")?.ok_or_else(|| PluginError::new("key 'path': missing (a file or directory)"))?;
        let path = Path::new(path);
        Ok(OtelFileDriver {
            host,
            directory: path.is_dir().then(|| path.to_path_buf()),
            files: files(path)?,
            pending: VecDeque::new(),
            stopping: false,
            files_read: 0,
            files_failed: 0,
            records: 0,
        })
    }

    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError> {
        if self.stopping {
            return Ok(DriverPoll::End);
        }
        while self.pending.is_empty() {
            let Some(file) = self.files.pop_front() else {
                return match &self.directory {
                    Some(dir) if self.files_read == 0 => Err(PluginError::new(format!(
                        "no readable OTel file in {} ({} files failed)",
                        dir.display(),
                        self.files_failed
                    ))),
                    _ => Ok(DriverPoll::End),
                };
            };
            self.host.info(&format!("reading {}", file.display()));
            match read_file(&file) {
                Ok(records) => {
                    self.pending = records.into();
                    self.files_read += 1;
                    if self.pending.is_empty() {
                        return Ok(DriverPoll::Idle);
                    }
                }
                Err(e) if self.directory.is_some() => {
                    self.files_failed += 1;
                    self.host.warn(&format!("{e}; file skipped ({} files failed so far)", self.files_failed));
                }
                // A single file that does not parse stops the run, naming it and the position.
                Err(e) => return Err(e),
            }
        }
        let n = self.pending.len().min(max_records.max(1));
        let batch: Vec<OtelRecord> = self.pending.drain(..n).collect();
        self.records += batch.len() as u64;
        Ok(DriverPoll::Batch(Batch::otel(batch)))
    }

    fn stop(&mut self) {
        self.stopping = true;
    }

    fn counters(&self) -> Vec<Counter> {
        vec![
            Counter::new("files", self.files_read),
            Counter::loss("files_failed", self.files_failed),
            Counter::new("records", self.records),
        ]
    }
}
