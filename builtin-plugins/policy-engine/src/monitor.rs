//! Policy hot reload (`monitor: local`): a filesystem watcher on the policy path feeds a
//! background thread that debounces events, compares content hashes of the policy files,
//! compiles a changed set off the hot path and leaves it for the engine to swap in
//! between batches. A set that fails to compile is logged and the running one is kept.
//!
//! A reload that would lose a policy file of the running set, or take the enabled rules
//! to 0, is held back (a delete-then-create deploy passes through such a state): the
//! monitor warns, keeps the running rules and keeps watching; when the files come back
//! the set compiles normally, and only if the reduced state lasts the hold time is it
//! applied, with a warning. 0 enabled rules are never swapped in when the engine alerts
//! (it would forward nothing): that is an error each time.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use sysflow_plugin_api::Host;

use crate::{
    error::PolicyWarning, falco, ir::PolicySet, language::PolicyLanguage, limits::COMPILE_STACK_SIZE, otel::OtelRuleSet,
    ruleset::CompileOptions, RuleSet,
};

/// Quiet time after the last filesystem event before the files are re-read.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// How long a reload that loses policy files or all enabled rules is held back, unless
/// the `monitor.hold` key says otherwise.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(5);

/// How the monitor treats reloads that would reduce the running set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReloadPolicy {
    /// How long a reload that loses files (or, in enrich mode, all enabled rules) waits
    /// for the directory to come back before it is applied.
    pub hold: Duration,
    /// Never swap in a set with 0 enabled rules (alert mode: it would forward nothing).
    pub refuse_empty: bool,
}

impl Default for ReloadPolicy {
    fn default() -> Self {
        ReloadPolicy { hold: DEFAULT_HOLD, refuse_empty: true }
    }
}

/// A compiled rule set the monitor rebuilds when the files change: the one over SysFlow
/// records ([`RuleSet`]) or the one over OTel attributes ([`OtelRuleSet`]).
pub trait Recompile: Send + Sync + 'static {
    /// Compiles a loaded policy set.
    fn recompile(set: PolicySet, opts: &CompileOptions) -> Self;
    /// The policy files it was compiled from.
    fn policy_files(&self) -> &[PathBuf];
    /// Warnings from loading and compiling.
    fn compile_warnings(&self) -> &[PolicyWarning];
    /// Rules, enabled or not.
    fn rules_total(&self) -> usize;
    /// Enabled rules.
    fn rules_enabled(&self) -> usize;
    /// Drop filters.
    fn filters_total(&self) -> usize;
}

/// Both compiled sets have these accessors as inherent methods; the trait forwards to them.
macro_rules! recompile_by_forwarding {
    ($set:ty, $compile:expr) => {
        impl Recompile for $set {
            fn recompile(set: PolicySet, opts: &CompileOptions) -> Self {
                $compile(set, opts)
            }
            fn policy_files(&self) -> &[PathBuf] {
                self.files()
            }
            fn compile_warnings(&self) -> &[PolicyWarning] {
                self.warnings()
            }
            fn rules_total(&self) -> usize {
                self.rule_count()
            }
            fn rules_enabled(&self) -> usize {
                self.enabled_rule_count()
            }
            fn filters_total(&self) -> usize {
                self.filter_count()
            }
        }
    };
}

recompile_by_forwarding!(RuleSet, RuleSet::compile);
// The OTel compiler needs no options: no actions, no attribute table.
recompile_by_forwarding!(OtelRuleSet, |set: PolicySet, _: &CompileOptions| OtelRuleSet::compile(&set));

struct Shared<R> {
    pending: Mutex<Option<Arc<R>>>,
    last_error: Mutex<Option<String>>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl<R> Default for Shared<R> {
    fn default() -> Self {
        Shared { pending: Mutex::new(None), last_error: Mutex::new(None), reloads: AtomicU64::new(0), failures: AtomicU64::new(0) }
    }
}

/// A running policy monitor, rebuilding rule sets of type `R`.
pub struct Monitor<R: Recompile = RuleSet> {
    shared: Arc<Shared<R>>,
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

impl<R: Recompile> Monitor<R> {
    /// Starts watching `path`, recompiling it as `language`; `initial_hash` is the hash of
    /// the set already running.
    pub fn start(
        path: PathBuf,
        language: PolicyLanguage,
        opts: CompileOptions,
        host: Host,
        running: &R,
        initial_hash: Option<u64>,
        policy: ReloadPolicy,
    ) -> Result<Self, String> {
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
        let state = Running { files: running.policy_files().to_vec(), enabled: running.rules_enabled(), hash: initial_hash };
        let reloader = Reloader { path, language, opts, host, shared: sh, policy, running: state, hold: None };
        // It parses and compiles: the stack the limits are sized for.
        let thread = std::thread::Builder::new()
            .name("policy-monitor".into())
            .stack_size(COMPILE_STACK_SIZE)
            .spawn(move || reloader.run(rx))
            .map_err(|e| format!("cannot start policy monitor thread: {e}"))?;
        Ok(Monitor { shared, watcher: Some(watcher), thread: Some(thread) })
    }

    /// A newly compiled rule set, if one is waiting.
    pub fn take_pending(&self) -> Option<Arc<R>> {
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

impl<R: Recompile> Drop for Monitor<R> {
    fn drop(&mut self) {
        // Dropping the watcher closes the event channel, which ends the thread.
        self.watcher.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the monitor knows of the set running (or about to run) in the engine.
struct Running {
    files: Vec<PathBuf>,
    enabled: usize,
    hash: Option<u64>,
}

/// A reload being held back: since when, and what was warned about.
struct Hold {
    until: Instant,
    reason: String,
}

/// The monitor thread's state: what to compile, how, and what runs.
struct Reloader<R> {
    path: PathBuf,
    language: PolicyLanguage,
    opts: CompileOptions,
    host: Host,
    shared: Arc<Shared<R>>,
    policy: ReloadPolicy,
    running: Running,
    hold: Option<Hold>,
}

impl<R: Recompile> Reloader<R> {
    fn run(mut self, rx: mpsc::Receiver<PathBuf>) {
        loop {
            // Wait for a relevant event (or the end of a hold), then until events stop
            // for DEBOUNCE.
            let event = match &self.hold {
                Some(h) => match rx.recv_timeout(h.until.saturating_duration_since(Instant::now())) {
                    Ok(p) => Some(p),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
            };
            if let Some(p) = event {
                if !(is_policy_file(&p) || p == self.path) {
                    continue;
                }
                loop {
                    match rx.recv_timeout(DEBOUNCE) {
                        Ok(_) => continue,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
            let hold_over = self.hold.as_ref().is_some_and(|h| Instant::now() >= h.until);
            self.check(hold_over);
        }
    }

    /// Starts (or continues) holding back a reload; warns when the reason is new.
    fn hold_back(&mut self, reason: String) {
        let hold = self.policy.hold;
        match &mut self.hold {
            Some(h) if h.reason == reason => {}
            Some(h) => {
                self.host.warn(&format!("policy reload held back: {reason}; keeping the running rules"));
                h.reason = reason;
            }
            None => {
                self.host.warn(&format!(
                    "policy reload held back: {reason}; keeping the running rules for up to {:.1} s while the directory settles",
                    hold.as_secs_f64()
                ));
                self.hold = Some(Hold { until: Instant::now() + hold, reason });
            }
        }
    }

    /// Re-reads the policy path after a change; `hold_over`: a held reload has waited
    /// its hold time.
    fn check(&mut self, hold_over: bool) {
        let hash = policy_hash(&self.path);
        if hash.is_some() && hash == self.running.hash {
            if self.hold.take().is_some() {
                self.host.info(&format!("policy files back in {}: running rules unchanged", self.path.display()));
            }
            return;
        }
        let files = falco::collect_files(&self.path).unwrap_or_default();
        let missing: Vec<String> =
            self.running.files.iter().filter(|f| !files.contains(f)).map(|f| f.display().to_string()).collect();
        if !missing.is_empty() && !hold_over {
            self.hold_back(format!("policy file(s) missing: {}", missing.join(", ")));
            return;
        }
        let loaded = self.language.load(&self.path).map(|set| R::recompile(set, &self.opts));
        let rs = match loaded {
            Ok(rs) => rs,
            Err(e) => {
                self.hold = None;
                self.fail(format!("policy reload failed, keeping the running rules: {e}"), hash);
                return;
            }
        };
        if rs.rules_enabled() == 0 && self.running.enabled > 0 {
            if self.policy.refuse_empty {
                self.hold = None;
                let msg = format!(
                    "policy reload refused: {} has no enabled rules ({} rules); in alert mode that would forward nothing, keeping the running {} enabled rules",
                    self.path.display(),
                    rs.rules_total(),
                    self.running.enabled
                );
                self.fail(msg, hash);
                return;
            }
            if !hold_over {
                self.hold_back(format!("{} has no enabled rules", self.path.display()));
                return;
            }
        }
        for w in rs.compile_warnings() {
            self.host.warn(&w.to_string());
        }
        if let Some(h) = self.hold.take() {
            self.host.warn(&format!(
                "policy reload applied after holding it back {:.1} s: {}",
                self.policy.hold.as_secs_f64(),
                h.reason
            ));
        }
        self.host.info(&format!(
            "policies reloaded from {}: {} rules ({} enabled), {} filters",
            self.path.display(),
            rs.rules_total(),
            rs.rules_enabled(),
            rs.filters_total()
        ));
        self.running = Running { files: rs.policy_files().to_vec(), enabled: rs.rules_enabled(), hash };
        *self.shared.pending.lock() = Some(Arc::new(rs));
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Logs and counts a reload that is not applied.
    fn fail(&mut self, msg: String, hash: Option<u64>) {
        self.host.error(&msg);
        *self.shared.last_error.lock() = Some(msg);
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        // Not retried until the files change again.
        self.running.hash = hash;
    }
}
