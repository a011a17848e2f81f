//! Policy hot reload (`monitor: local`): a filesystem watcher on the policy path feeds a
//! background thread that debounces events, compares content hashes of the policy files,
//! compiles a changed set off the hot path and leaves it for the engine to swap in
//! between batches. A set that fails to compile is logged and the running one is kept.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use sysflow_plugin_api::Host;

use crate::{falco, language::PolicyLanguage, ruleset::CompileOptions, RuleSet};

/// Quiet time after the last filesystem event before the files are re-read.
const DEBOUNCE: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Shared {
    pending: Mutex<Option<Arc<RuleSet>>>,
    last_error: Mutex<Option<String>>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

/// A running policy monitor.
pub struct Monitor {
    shared: Arc<Shared>,
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

/// Content hash of the policy files under `path` (paths and bytes), or `None` if unreadable.
pub fn policy_hash(path: &Path) -> Option<u64> {
    let files = falco::collect_files(path).ok()?;
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(&[0]);
        h.update(&std::fs::read(&f).ok()?);
        h.update(&[0]);
    }
    Some(h.digest())
}

fn is_policy_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml") | Some("yml"))
}

impl Monitor {
    /// Starts watching `path`, recompiling it as `language`; `initial_hash` is the hash of
    /// the set already running.
    pub fn start(
        path: PathBuf,
        language: PolicyLanguage,
        opts: CompileOptions,
        host: Host,
        initial_hash: Option<u64>,
    ) -> Result<Monitor, String> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                use notify::EventKind::*;
                if matches!(ev.kind, Create(_) | Modify(_) | Remove(_)) {
                    for p in ev.paths {
                        let _ = tx.send(p);
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start policy watcher: {e}"))?;
        let (watch_path, mode) = if path.is_dir() {
            (path.clone(), RecursiveMode::Recursive)
        } else {
            (path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")), RecursiveMode::NonRecursive)
        };
        watcher
            .watch(&watch_path, mode)
            .map_err(|e| format!("cannot watch policy path {}: {e}", watch_path.display()))?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("policy-monitor".into())
            .spawn(move || run(path, language, opts, host, rx, sh, initial_hash))
            .map_err(|e| format!("cannot start policy monitor thread: {e}"))?;
        Ok(Monitor { shared, watcher: Some(watcher), thread: Some(thread) })
    }

    /// A newly compiled rule set, if one is waiting.
    pub fn take_pending(&self) -> Option<Arc<RuleSet>> {
        self.shared.pending.lock().take()
    }

    /// Number of successful reloads.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Number of failed reloads.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// The last reload error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // Dropping the watcher closes the event channel, which ends the thread.
        self.watcher.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    path: PathBuf,
    language: PolicyLanguage,
    opts: CompileOptions,
    host: Host,
    rx: mpsc::Receiver<PathBuf>,
    shared: Arc<Shared>,
    mut last_hash: Option<u64>,
) {
    loop {
        // Wait for a relevant event, then until events stop for DEBOUNCE.
        match rx.recv() {
            Ok(p) if is_policy_file(&p) || p == path => {}
            Ok(_) => continue,
            Err(_) => return,
        }
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let hash = policy_hash(&path);
        if hash.is_some() && hash == last_hash {
            continue;
        }
        match language.load(&path) {
            Ok(set) => {
                let rs = RuleSet::compile(set, &opts);
                for w in rs.warnings() {
                    host.warn(&w.to_string());
                }
                host.info(&format!(
                    "policies reloaded from {}: {} rules ({} enabled), {} filters",
                    path.display(),
                    rs.rule_count(),
                    rs.enabled_rule_count(),
                    rs.filter_count()
                ));
                *shared.pending.lock() = Some(Arc::new(rs));
                shared.reloads.fetch_add(1, Ordering::Relaxed);
                last_hash = hash;
            }
            Err(e) => {
                let msg = format!("policy reload failed, keeping the running rules: {e}");
                host.error(&msg);
                *shared.last_error.lock() = Some(msg);
                shared.failures.fetch_add(1, Ordering::Relaxed);
                last_hash = hash;
            }
        }
    }
}
