//! Watches plugin directories and reports libraries whose content changed.
//!
//! Installing a build produces a burst of events (create, several writes, close, or a
//! rename into place); the watcher waits until a file has been quiet for the debounce
//! interval — no event, and the same size and mtime at the end of the interval as at its
//! start, so writes whose events were merged or lost still count — hashes it, and reports
//! it only if its content differs from what was last seen (a `touch`, a `chmod` or
//! re-copying the same build reports nothing). A writer that pauses longer than the
//! interval can still be caught mid-file: the loader's ELF check refuses such a file, and
//! the rest of the write brings a new event.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use notify::{event::AccessKind, event::AccessMode, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::{image::sha256_file, is_plugin_file_name};

/// Default quiet time before a changed file is reported.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// Something the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginEvent {
    /// A plugin library appeared or its content changed.
    Changed {
        /// The library (inside a watched directory).
        path: PathBuf,
        /// Hex SHA-256 of its new content.
        sha256: String,
    },
    /// The watch itself failed (events may have been missed).
    Error(String),
}

/// The watcher could not be started.
#[derive(Debug)]
pub struct WatchError(pub String);

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WatchError {}

type KnownHashes = Arc<Mutex<HashMap<PathBuf, String>>>;

/// A watch over plugin directories; dropping it stops the watch.
pub struct PluginWatcher {
    watcher: Option<RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
    events: Receiver<PluginEvent>,
    known: KnownHashes,
    unwatched: Vec<PathBuf>,
}

impl PluginWatcher {
    /// Watches `dirs` (not recursively). Directories that do not exist are skipped and
    /// listed by [`PluginWatcher::unwatched`]. The `*.so` files present now are hashed, so
    /// only later changes are reported.
    pub fn new(dirs: &[PathBuf], debounce: Duration) -> Result<PluginWatcher, WatchError> {
        let (raw_tx, raw_rx) = crossbeam_channel::unbounded::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(move |res| {
            let _ = raw_tx.send(res);
        })
        .map_err(|e| WatchError(format!("cannot start the plugin directory watcher: {e}")))?;

        let mut known = HashMap::new();
        let mut unwatched = Vec::new();
        for dir in dirs {
            let Ok(dir) = dir.canonicalize() else {
                unwatched.push(dir.clone());
                continue;
            };
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|e| WatchError(format!("cannot watch plugin directory {}: {e}", dir.display())))?;
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for path in entries.flatten().map(|e| e.path()).filter(|p| is_plugin_file_name(p)) {
                    if let Ok(sha) = sha256_file(&path) {
                        known.insert(path, sha);
                    }
                }
            }
        }
        let known: KnownHashes = Arc::new(Mutex::new(known));
        let (tx, events) = crossbeam_channel::unbounded();
        let thread_known = Arc::clone(&known);
        let thread = std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || debounce_loop(raw_rx, tx, thread_known, debounce))
            .map_err(|e| WatchError(format!("cannot start the plugin watcher thread: {e}")))?;
        Ok(PluginWatcher { watcher: Some(watcher), thread: Some(thread), events, known, unwatched })
    }

    /// The reported events; select on it beside other channels.
    pub fn events(&self) -> &Receiver<PluginEvent> {
        &self.events
    }

    /// Records the content the host actually loaded for `path`, so only a different
    /// content is reported next.
    pub fn set_known(&self, path: &Path, sha256: &str) {
        let key = normalize(path);
        lock(&self.known).insert(key, sha256.to_string());
    }

    /// Directories that did not exist when the watch started.
    pub fn unwatched(&self) -> &[PathBuf] {
        &self.unwatched
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        // Dropping the notify watcher drops its sender, which ends the debounce thread.
        drop(self.watcher.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(known: &KnownHashes) -> std::sync::MutexGuard<'_, HashMap<PathBuf, String>> {
    known.lock().unwrap_or_else(|p| p.into_inner())
}

/// Events name files under the canonical directory that is watched; keys follow suit.
fn normalize(path: &Path) -> PathBuf {
    match (path.parent().and_then(|d| d.canonicalize().ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

fn is_content_event(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// What changes when a file is written or replaced: size, mtime, inode, ctime.
type FileStamp = (u64, Option<std::time::SystemTime>, u64, i64, i64);

/// The file's stamp, `None` when it is gone.
fn file_stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok(), m.ino(), m.ctime_nsec(), m.ctime()))
}

/// The file's hash, or `None` if it vanished or changed while being read (hashing a large
/// library takes long enough for a slow copy to resume).
fn stable_hash(path: &Path) -> Option<String> {
    let before = file_stamp(path)?;
    let sha = sha256_file(path).ok()?;
    let after = file_stamp(path)?;
    (before == after).then_some(sha)
}

/// A file waiting for its quiet period to end.
struct Pending {
    /// When the quiet period ends.
    deadline: Instant,
    /// The file's stamp when the quiet period began; it must be the same at its end.
    stamp: Option<FileStamp>,
}

impl Pending {
    fn starting_now(path: &Path, debounce: Duration) -> Pending {
        Pending { deadline: Instant::now() + debounce, stamp: file_stamp(path) }
    }
}

fn debounce_loop(
    raw: Receiver<notify::Result<notify::Event>>,
    out: Sender<PluginEvent>,
    known: KnownHashes,
    debounce: Duration,
) {
    let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
    loop {
        let wait = pending
            .values()
            .map(|p| p.deadline)
            .min()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match raw.recv_timeout(wait) {
            Ok(Ok(event)) if is_content_event(&event.kind) => {
                for path in event.paths.into_iter().filter(|p| is_plugin_file_name(p)) {
                    let quiet = Pending::starting_now(&path, debounce);
                    pending.insert(path, quiet);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if out.send(PluginEvent::Error(format!("plugin directory watch: {e}"))).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let due: Vec<PathBuf> = pending.iter().filter(|(_, p)| p.deadline <= now).map(|(p, _)| p.clone()).collect();
        for path in due {
            let Some(quiet) = pending.remove(&path) else { continue };
            let stamp = file_stamp(&path);
            if stamp.is_some() && stamp != quiet.stamp {
                // Grew or was rewritten during the quiet period without an event saying so
                // (events merged, or a writer through a mapping): another quiet period.
                pending.insert(path, Pending { deadline: Instant::now() + debounce, stamp });
                continue;
            }
            // Gone again (an installer's intermediate name, or a removal): nothing to load.
            let Some(sha) = stable_hash(&path) else {
                if path.exists() {
                    // Written to while being hashed: wait for it to settle again.
                    let quiet = Pending::starting_now(&path, debounce);
                    pending.insert(path, quiet);
                }
                continue;
            };
            let mut map = lock(&known);
            if map.get(&path) == Some(&sha) {
                continue;
            }
            map.insert(path.clone(), sha.clone());
            drop(map);
            if out.send(PluginEvent::Changed { path, sha256: sha }).is_err() {
                return;
            }
        }
    }
}
