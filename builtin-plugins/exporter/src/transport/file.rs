//! `file`: records appended to `file.path`, one per line.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, ErrorKind, Write},
    path::{Path, PathBuf},
};

use super::{EncodedBatch, Transport, TransportError};

/// Upstream's default `file.path`.
pub const DEFAULT_PATH: &str = "./export.out";

/// How the host asks a transport to open its output (injected key
/// [`OUTPUT_MODE_KEY`](crate::transport::OUTPUT_MODE_KEY)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// A plain start: the file is replaced, as upstream does.
    Replace,
    /// A SIGHUP reload: records are appended to what the previous pipeline wrote.
    Append,
    /// `-test`: the path is checked, nothing is created, truncated or written.
    Check,
}

/// Writes to a file that is replaced at start (appended to after a reload).
#[derive(Debug)]
pub struct FileTransport {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl FileTransport {
    /// Deletes `path` if it is a regular file or a symlink (as upstream does: a symlink is
    /// replaced, not followed) and creates it anew with mode 0644. A device, FIFO or socket
    /// at `path` (`/dev/null`, `/dev/stdout`, a named pipe) is written to as it is: upstream
    /// deletes it too, which as root replaces `/dev/null` with a regular file for the
    /// whole machine.
    pub fn create(path: impl AsRef<Path>) -> Result<FileTransport, TransportError> {
        FileTransport::open(path, OpenMode::Replace)
    }

    /// Opens `path` as `mode` asks: [`OpenMode::Replace`] is [`FileTransport::create`];
    /// [`OpenMode::Append`] keeps the file's content and writes after it (creating it if
    /// missing); [`OpenMode::Check`] only refuses a directory or a missing parent directory
    /// and leaves the path untouched (the transport then has no writer).
    pub fn open(path: impl AsRef<Path>, mode: OpenMode) -> Result<FileTransport, TransportError> {
        let path = path.as_ref().to_path_buf();
        match mode {
            OpenMode::Replace => {}
            OpenMode::Append => {
                let mut options = OpenOptions::new();
                options.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o644);
                }
                let file = options
                    .open(&path)
                    .map_err(|e| TransportError(format!("cannot open export file '{}' to append: {e}", path.display())))?;
                return Ok(FileTransport { path, writer: Some(BufWriter::with_capacity(1 << 20, file)) });
            }
            OpenMode::Check => {
                if path.is_dir() {
                    return Err(TransportError(format!("export file '{}' is a directory", path.display())));
                }
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if !parent.is_dir() {
                    return Err(TransportError(format!(
                        "export file '{}': directory '{}' does not exist",
                        path.display(),
                        parent.display()
                    )));
                }
                return Ok(FileTransport { path, writer: None });
            }
        }
        let context = |action: &str, e: std::io::Error| TransportError(format!("{action} '{}': {e}", path.display()));
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                return Err(TransportError(format!("cannot create export file '{}': it is a directory", path.display())))
            }
            Ok(m) if m.is_file() || m.file_type().is_symlink() => {
                std::fs::remove_file(&path).map_err(|e| context("cannot remove old export file", e))?
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(context("cannot inspect old export file", e)),
        }
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o644);
        }
        let file = options.open(&path).map_err(|e| context("cannot create export file", e))?;
        Ok(FileTransport { path, writer: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    /// The target path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, TransportError> {
        let path = &self.path;
        self.writer
            .as_mut()
            .ok_or_else(|| TransportError(format!("export file '{}' is already closed", path.display())))
    }

    fn error(&self, action: &str, e: std::io::Error) -> TransportError {
        TransportError(format!("{action} export file '{}': {e}", self.path.display()))
    }
}

impl Transport for FileTransport {
    fn name(&self) -> &'static str {
        "file"
    }

    fn export(&mut self, batch: &EncodedBatch) -> Result<(), TransportError> {
        let result = self.writer()?.write_all(batch.as_lines());
        result.map_err(|e| self.error("writing to", e))
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        let result = self.writer()?.flush();
        result.map_err(|e| self.error("flushing", e))
    }

    fn close(&mut self) -> Result<(), TransportError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        match writer.into_inner() {
            Ok(file) => file.sync_data().or_else(|e| {
                // Pipes and character devices (e.g. /dev/stdout) cannot be synced.
                if e.kind() == ErrorKind::InvalidInput { Ok(()) } else { Err(e) }
            }),
            Err(e) => Err(e.into_error()),
        }
        .map_err(|e| self.error("closing", e))
    }
}

impl Drop for FileTransport {
    fn drop(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_writes_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.json");
        std::fs::write(&path, "old content that must go\n").expect("seed file");
        let mut t = FileTransport::create(&path).expect("create");
        let mut batch = EncodedBatch::new();
        batch.push_with(|o| o.extend_from_slice(b"{\"x\":1}"));
        t.export(&batch).expect("export");
        t.flush().expect("flush");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"x\":1}\n");
        t.export(&batch).expect("export");
        t.close().expect("close");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"x\":1}\n{\"x\":1}\n");
        assert!(t.export(&batch).is_err(), "export after close must fail");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode & !0o644, 0, "mode {mode:o} exceeds 0644");
            assert_eq!(mode & 0o600, 0o600);
        }
    }

    #[test]
    fn append_keeps_content_and_check_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, "{\"old\":1}\n").expect("seed file");
        let checked = FileTransport::open(&path, OpenMode::Check).expect("check");
        drop(checked);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"old\":1}\n", "check mode touched the file");
        assert!(FileTransport::open(dir.path(), OpenMode::Check).is_err(), "a directory must be refused");
        assert!(FileTransport::open(dir.path().join("no/such/x.json"), OpenMode::Check).is_err());
        assert!(!dir.path().join("no").exists());
        let mut t = FileTransport::open(&path, OpenMode::Append).expect("append");
        let mut batch = EncodedBatch::new();
        batch.push_with(|o| o.extend_from_slice(b"{\"new\":2}"));
        t.export(&batch).expect("export");
        t.close().expect("close");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"old\":1}\n{\"new\":2}\n");
    }

    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_written_to_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("alerts.pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        // Opening a FIFO for writing waits for a reader.
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).expect("read fifo"))
        };
        let mut t = FileTransport::create(&fifo).expect("create");
        // Checked before joining: a replaced pipe would leave the reader waiting.
        let kind = std::fs::symlink_metadata(&fifo).expect("meta").file_type();
        assert!(kind.is_fifo(), "the pipe was replaced: {kind:?}");
        let mut batch = EncodedBatch::new();
        batch.push_with(|o| o.extend_from_slice(b"{\"x\":1}"));
        t.export(&batch).expect("export");
        t.close().expect("close");
        drop(t);
        assert_eq!(reader.join().expect("reader"), "{\"x\":1}\n");
    }

    #[test]
    fn a_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = FileTransport::create(dir.path()).expect_err("must fail");
        assert!(err.0.contains("is a directory") && err.0.contains(&dir.path().display().to_string()), "{err}");
        assert!(dir.path().is_dir());
    }

    #[test]
    fn missing_directory_error_names_the_path() {
        let err = FileTransport::create("/nonexistent-dir-xyz/out.json").expect_err("must fail");
        assert!(err.0.contains("/nonexistent-dir-xyz/out.json"), "{err}");
    }
}
