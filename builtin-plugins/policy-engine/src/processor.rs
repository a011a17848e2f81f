//! The `policyengine` processor: configuration, modes, parallel batch evaluation, reload.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use abi_stable::std_types::{RArc, RVec};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use prost::Message;
use sysflow_plugin_api::{
    ffi::ConfigKey, Batch, Counter, FlatRecord, Host, OtelRecord, Payload, PluginConfig, PluginError, Processor,
    INPUT_PAYLOAD_KEY,
};

use crate::attributes::set_record_number;
use crate::{
    actions::ActionRegistry,
    dialect::Dialect,
    falco,
    language::PolicyLanguage,
    monitor::{policy_hash, Monitor, ReloadPolicy, DEFAULT_HOLD},
    otel::{OtelRuleSet, OtelVerdict},
    ruleset::{CompileOptions, EvalState, RuleSet, UnknownAttributes, Verdict},
};

/// Configuration keys the processor understands.
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new("policies", "policy file or directory (walked recursively for .yaml/.yml)"),
    ConfigKey::new("mode", "alert (default: forward matched records only) or enrich (forward all)"),
    ConfigKey::new("language", "policy language: falco (default) or sigma"),
    ConfigKey::new("config", "sigma backend configuration file (field mappings)"),
    ConfigKey::new("monitor", "policy hot reload: none (default) or local"),
    ConfigKey::new("monitor.interval", "seconds between checks for a reloaded rule set (default 30)"),
    ConfigKey::new("monitor.hold", "seconds a reload that loses policy files or all enabled rules waits for them to return (default 5)"),
    ConfigKey::new("concurrency", "worker threads evaluating a batch (default 5, capped at the CPU count)"),
    ConfigKey::new("actiondir", "directory of action plugins (.so), default /usr/local/sysflow/resources/actions"),
    ConfigKey::new("bench.rulesetsize", "benchmarking: keep only the first N rules (default -1: all)"),
    ConfigKey::new("bench.ruleindex", "benchmarking: keep only rule #i, from 0; wins over bench.rulesetsize (default -1: off)"),
    ConfigKey::new("unknown.attributes", "unknown attribute names: disable (default: disable the rule) or literal (upstream)"),
    ConfigKey::new("dialect", "meaning of Falco names: sysflow (default, upstream's) or falco (fd.name the full path, evt.type system call names)"),
];

/// Below this many records per worker a batch is evaluated on the calling thread only.
const MIN_RECORDS_PER_WORKER: usize = 256;

thread_local! {
    /// Evaluation state of a pool thread (scratch buffers, memo table).
    static WORKER_STATE: std::cell::RefCell<EvalState> = std::cell::RefCell::new(EvalState::default());
}

/// Batches expected to take less than this to evaluate on one thread are not split:
/// handing chunks to other cores costs more than it saves (with the entity caches most
/// records take well under a microsecond), and on a small machine the other pipeline
/// stages need those cores.
const MIN_PARALLEL_BATCH_NS: f64 = 400_000.0;

/// The cost assumed for a rule set not yet measured (ns per record).
const INITIAL_NS_PER_RECORD: f64 = 2_000.0;

/// Records a worker takes from the batch at a time.
const WORK_CHUNK: usize = 64;

/// Whether unmatched records are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward only records that matched at least one rule.
    Alert,
    /// Forward every record not dropped by a filter.
    Enrich,
}

struct Engine {
    rules: Arc<RuleSet>,
    monitor: Option<Monitor>,
    interval: Duration,
    last_check: Instant,
    states: Vec<EvalState>,
    verdicts: Vec<Verdict>,
    pool: rayon::ThreadPool,
    /// Moving average of the evaluation cost of one record on one thread (ns); starts
    /// high so that the first batches of a new rule set are split.
    ns_per_record: f64,
}

/// The rules over OTel attributes, and their reload monitor (`monitor: local`).
struct OtelEngine {
    rules: Arc<OtelRuleSet>,
    monitor: Option<Monitor<OtelRuleSet>>,
    interval: Duration,
    last_check: Instant,
}

/// The `monitor`, `monitor.hold` and `monitor.interval` keys.
struct ReloadSettings {
    /// `Some` with `monitor: local`.
    policy: Option<ReloadPolicy>,
    /// How often the engine looks for a reloaded set.
    interval: Duration,
}

fn reload_settings(config: &PluginConfig, mode: Mode, host: Host) -> Result<ReloadSettings, PluginError> {
    let hold = match config.str("monitor.hold")? {
        None => DEFAULT_HOLD,
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| PluginError::new(format!("key 'monitor.hold': invalid value '{v}' (expected seconds, e.g. 5 or 0.5)")))?,
    };
    let interval = Duration::from_secs(config.parse_or("monitor.interval", 30)?);
    let policy = match config.str("monitor")? {
        None | Some("none") => None,
        Some("local") => Some(ReloadPolicy { hold, refuse_empty: mode == Mode::Alert }),
        Some(other) => {
            host.warn(&format!("key 'monitor': unknown value '{other}', monitoring disabled"));
            None
        }
    };
    Ok(ReloadSettings { policy, interval })
}

/// Where action plugins are installed (the package layout), unless `actiondir` says otherwise.
pub const DEFAULT_ACTION_DIR: &str = "/usr/local/sysflow/resources/actions";

/// The policy engine processor.
pub struct PolicyEngine {
    host: Host,
    mode: Mode,
    engine: Option<Engine>,
    workers: usize,
    records_in: u64,
    records_out: u64,
    filtered: u64,
    unmatched: u64,
    matches: u64,
    action_errors: u64,
    /// The rules compiled over OTel attributes when the input carries OTel records.
    otel: Option<OtelEngine>,
    /// OTel records that did not decode as a protobuf `ResourceLogs` (dropped).
    decode_errors: u64,
    /// Workers for OTel batches (`None`: one worker, the calling thread).
    otel_pool: Option<rayon::ThreadPool>,
}

/// Registers the action plugins of `dir`, which the host loads (`Host::load_actions`) with
/// the permission, version and layout checks of every plugin library: the engine has no
/// plugin loader of its own.
fn load_action_plugins(dir: &Path, registry: &mut ActionRegistry, host: Host) {
    let loaded = host.load_actions(&dir.to_string_lossy());
    for e in &loaded.errors {
        host.error(&format!("key 'actiondir': action plugin not loaded: {e}"));
    }
    for a in loaded.actions {
        if registry.register_plugin(a.name.as_str(), a.action) {
            host.warn(&format!("Re-declaration of action '{}' ({})", a.name, a.library));
        }
    }
}

impl PolicyEngine {
    /// The rule set currently running (`None` in bypass mode).
    pub fn rules(&self) -> Option<Arc<RuleSet>> {
        self.engine.as_ref().map(|e| e.rules.clone())
    }

    /// The last reload error, if a reload failed.
    pub fn last_reload_error(&self) -> Option<String> {
        match (&self.engine, &self.otel) {
            (Some(e), _) => e.monitor.as_ref().and_then(|m| m.last_error()),
            (None, Some(o)) => o.monitor.as_ref().and_then(|m| m.last_error()),
            (None, None) => None,
        }
    }

    fn maybe_swap(&mut self) {
        let Some(e) = self.engine.as_mut() else { return };
        let Some(m) = e.monitor.as_ref() else { return };
        if e.last_check.elapsed() < e.interval {
            return;
        }
        e.last_check = Instant::now();
        if let Some(rs) = m.take_pending() {
            e.rules = rs;
            e.ns_per_record = INITIAL_NS_PER_RECORD;
            self.host.info("switched to the reloaded rule set");
        }
    }
}

/// Loads the policies and compiles them over OTel attributes, and starts their reload
/// monitor with `monitor: local` (rule actions are a SysFlow-record feature here).
fn compile_otel(
    language: &PolicyLanguage,
    path: &Path,
    mode: Mode,
    config: &PluginConfig,
    host: Host,
) -> Result<OtelEngine, PluginError> {
    let reload = reload_settings(config, mode, host)?;
    let hash = policy_hash(path);
    let set = crate::limits::on_compile_thread(|| language.load(path))
        .map_err(|e| PluginError::new(format!("key 'policies': {e}")))?;
    for w in &set.warnings {
        host.warn(&w.to_string());
    }
    if set.rules.iter().any(|r| !r.actions.is_empty()) {
        host.warn("key 'policies': rule actions do not run on OTel records; the rules still match and tag");
    }
    let rules = OtelRuleSet::compile(&set);
    if rules.enabled_rule_count() == 0 && mode == Mode::Alert {
        return Err(PluginError::new(format!(
            "key 'policies': {} has no enabled rules: in alert mode nothing would be forwarded",
            path.display()
        )));
    }
    host.info(&format!(
        "loaded {} rules ({} enabled) and {} filters from {} ({} policies over OTel attributes)",
        rules.rule_count(),
        rules.enabled_rule_count(),
        rules.filter_count(),
        path.display(),
        language.name()
    ));
    let monitor = match reload.policy {
        Some(policy) => Some(
            Monitor::<OtelRuleSet>::start(path.to_path_buf(), language.clone(), CompileOptions::default(), host, &rules, hash, policy)
                .map_err(PluginError::new)?,
        ),
        None => None,
    };
    Ok(OtelEngine { rules: Arc::new(rules), monitor, interval: reload.interval, last_check: Instant::now() })
}

/// What the OTel backend decided for one record.
enum OtelOutcome {
    /// Not a protobuf `ResourceLogs` (the decoder's message).
    Undecodable(String),
    /// A drop filter held.
    Filtered,
    /// No rule matched: the record as it came in enrich mode, nothing in alert mode.
    Unmatched(Option<OtelRecord>),
    /// This many rules matched: the record with its results.
    Matched(usize, OtelRecord),
}

fn judge_otel(rules: &OtelRuleSet, mode: Mode, record: &OtelRecord) -> OtelOutcome {
    let mut logs = match ResourceLogs::decode(record.resource_logs.as_slice()) {
        Ok(l) => l,
        Err(e) => return OtelOutcome::Undecodable(e.to_string()),
    };
    match rules.evaluate(&logs) {
        OtelVerdict::Drop => OtelOutcome::Filtered,
        OtelVerdict::Pass(matched) if matched.is_empty() => {
            OtelOutcome::Unmatched((mode == Mode::Enrich).then(|| record.clone()))
        }
        OtelVerdict::Pass(matched) => {
            rules.contextualize(&mut logs, &matched);
            OtelOutcome::Matched(matched.len(), OtelRecord::from_proto(logs.encode_to_vec()))
        }
    }
}

impl PolicyEngine {
    /// Evaluates OTel records: filtered ones are dropped, matched ones get their rules and
    /// tags in the `sf-processor` scope and are re-encoded; in alert mode only those go on.
    fn process_otel(&mut self, records: &[OtelRecord]) -> Option<Batch> {
        self.records_in += records.len() as u64;
        if let Some(o) = self.otel.as_mut() {
            if let Some(m) = o.monitor.as_ref().filter(|_| o.last_check.elapsed() >= o.interval) {
                o.last_check = Instant::now();
                if let Some(rs) = m.take_pending() {
                    o.rules = rs;
                    self.host.info("switched to the reloaded rule set");
                }
            }
        }
        let Some(rules) = self.otel.as_ref().map(|o| o.rules.clone()) else {
            // Enrich mode without policies: records pass unchanged.
            self.records_out += records.len() as u64;
            return Some(Batch::otel(records.to_vec()));
        };
        let mode = self.mode;
        let judged: Vec<OtelOutcome> = match &self.otel_pool {
            // Decoding dominates (a process event has ~100 attributes): large batches are
            // spread over the workers, in order.
            Some(pool) if records.len() >= MIN_RECORDS_PER_WORKER => pool.install(|| {
                use rayon::prelude::*;
                records.par_iter().with_min_len(WORK_CHUNK).map(|r| judge_otel(&rules, mode, r)).collect()
            }),
            _ => records.iter().map(|r| judge_otel(&rules, mode, r)).collect(),
        };
        let mut out = Vec::with_capacity(records.len());
        for outcome in judged {
            match outcome {
                OtelOutcome::Undecodable(e) => {
                    self.decode_errors += 1;
                    if self.decode_errors == 1 {
                        self.host.error(&format!(
                            "an OTel record is not a protobuf ResourceLogs ({e}); such records are dropped and counted in decode_errors"
                        ));
                    }
                }
                OtelOutcome::Filtered => self.filtered += 1,
                OtelOutcome::Unmatched(None) => self.unmatched += 1,
                OtelOutcome::Unmatched(Some(r)) => out.push(r),
                OtelOutcome::Matched(n, r) => {
                    self.matches += n as u64;
                    out.push(r);
                }
            }
        }
        self.records_out += out.len() as u64;
        (!out.is_empty()).then(|| Batch::otel(out))
    }
}

impl Processor for PolicyEngine {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let mode = match config.str("mode")? {
            None | Some("alert") => Mode::Alert,
            Some("enrich") => Mode::Enrich,
            Some(other) => {
                host.warn(&format!("key 'mode': unknown value '{other}', using enrich (as upstream)"));
                Mode::Enrich
            }
        };
        let concurrency: usize = config.parse_or("concurrency", 5)?;
        if concurrency == 0 {
            return Err(PluginError::new("key 'concurrency': must be at least 1"));
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let workers = concurrency.min(cores);
        let mut engine = PolicyEngine {
            host,
            mode,
            engine: None,
            workers,
            records_in: 0,
            records_out: 0,
            filtered: 0,
            unmatched: 0,
            matches: 0,
            action_errors: 0,
            otel: None,
            decode_errors: 0,
            otel_pool: None,
        };
        let Some(policies) = config.str("policies")? else {
            if mode == Mode::Alert {
                return Err(PluginError::new(
                    "configuration attribute 'policies' missing from policy engine plugin settings",
                ));
            }
            host.info("no policies configured in enrich mode: forwarding records unchanged");
            return Ok(engine);
        };
        let (language, warning) =
            PolicyLanguage::from_keys(config.str("language")?, config.str("config")?).map_err(PluginError::new)?;
        if let Some(w) = warning {
            host.warn(&w);
        }
        let unknown_attributes = match config.str("unknown.attributes")? {
            None | Some("disable") => UnknownAttributes::Disable,
            Some("literal") => UnknownAttributes::Literal,
            Some(other) => {
                return Err(PluginError::new(format!(
                    "key 'unknown.attributes': invalid value '{other}' (expected disable or literal)"
                )))
            }
        };
        if config.str(INPUT_PAYLOAD_KEY)? == Some(Payload::Otel.name()) {
            engine.otel = Some(compile_otel(&language, Path::new(policies), mode, config, host)?);
            if workers > 1 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .thread_name(|i| format!("policy-worker-{i}"))
                    .build()
                    .map_err(|e| PluginError::new(format!("key 'concurrency': cannot start {workers} workers: {e}")))?;
                engine.otel_pool = Some(pool);
            }
            return Ok(engine);
        }
        let mut actions = ActionRegistry::with_builtins();
        let actiondir = config.str("actiondir")?;
        let dir = PathBuf::from(actiondir.unwrap_or(DEFAULT_ACTION_DIR));
        if dir.is_dir() {
            load_action_plugins(&dir, &mut actions, host);
        } else if actiondir.is_some() {
            host.warn(&format!("key 'actiondir': {} is not a directory; no action plugins loaded", dir.display()));
        }
        let dialect = Dialect::from_key(config.str("dialect")?).map_err(PluginError::new)?;
        let opts = CompileOptions {
            unknown_attributes,
            dialect,
            actions,
            // Upstream applies these only with `-perflog`, which the host does not pass to
            // plugins: here they apply whenever set. Negative values switch them off.
            bench_ruleset_size: usize::try_from(config.parse_or::<i64>("bench.rulesetsize", -1)?).ok(),
            bench_rule_index: usize::try_from(config.parse_or::<i64>("bench.ruleindex", -1)?).ok(),
        };
        let path = PathBuf::from(policies);
        let hash = policy_hash(&path);
        let reload = reload_settings(config, mode, host)?;
        let rules = match crate::compile_policies_in(&language, &path, &opts) {
            Ok(rules) => rules,
            // Enrich mode forwards every record anyway: an empty directory is worth a
            // warning, not a stop (the monitor loads files added later).
            Err(e) if mode == Mode::Enrich && path.is_dir() && falco::collect_files(&path).is_err() => {
                host.warn(&format!("key 'policies': {e}; records pass through without rule matches"));
                RuleSet::compile(Default::default(), &opts)
            }
            Err(e) => return Err(PluginError::new(format!("key 'policies': {e}"))),
        };
        for w in rules.warnings() {
            host.warn(&w.to_string());
        }
        for line in rules.file_summaries() {
            host.info(&line);
        }
        if rules.enabled_rule_count() == 0 {
            let what = format!(
                "key 'policies': {} has no enabled rules ({} rules, {} filters)",
                path.display(),
                rules.rule_count(),
                rules.filter_count()
            );
            if mode == Mode::Alert {
                return Err(PluginError::new(format!("{what}: in alert mode nothing would be forwarded")));
            }
            host.warn(&format!("{what}: records pass through without rule matches"));
        }
        host.info(&format!(
            "loaded {} rules ({} enabled) and {} filters from {} ({} policies)",
            rules.rule_count(),
            rules.enabled_rule_count(),
            rules.filter_count(),
            path.display(),
            language.name()
        ));
        let monitor = match reload.policy {
            Some(policy) => Some(Monitor::start(path, language, opts, host, &rules, hash, policy).map_err(PluginError::new)?),
            None => None,
        };
        engine.engine = Some(Engine {
            rules: Arc::new(rules),
            monitor,
            interval: reload.interval,
            last_check: Instant::now(),
            states: vec![EvalState::default()],
            verdicts: Vec::new(),
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .thread_name(|i| format!("policy-worker-{i}"))
                .build()
                .map_err(|e| PluginError::new(format!("key 'concurrency': cannot start {workers} workers: {e}")))?,
            ns_per_record: INITIAL_NS_PER_RECORD,
        });
        Ok(engine)
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        if let Batch::Otel(records) = &batch {
            if self.otel.is_some() || self.engine.is_none() {
                return Ok(self.process_otel(records));
            }
            return Err(PluginError::new(
                "policyengine: got OTel records but was set up for flat records (its input channel is not otelchan)",
            ));
        }
        let n = batch.len();
        // `evt.num` of this batch's records: 1-based over everything this engine received.
        let first_number = self.records_in + 1;
        self.records_in += n as u64;
        if self.engine.is_none() {
            self.records_out += n as u64;
            return Ok(Some(batch));
        }
        self.maybe_swap();
        let Some(e) = self.engine.as_mut() else { return Ok(Some(batch)) };
        let mut recs: RVec<FlatRecord> = batch
            .into_flat_records()
            .ok_or_else(|| PluginError::new("policyengine expects flat records (flattenerchan)"))?;
        e.verdicts.clear();
        e.verdicts.resize(n, Verdict::Pass { matched: 0 });
        let rules = &*e.rules;
        let mut workers = self.workers.min(n / MIN_RECORDS_PER_WORKER).max(1);
        if e.ns_per_record * (n as f64) < MIN_PARALLEL_BATCH_NS {
            workers = 1;
        }
        let started = Instant::now();
        if workers <= 1 {
            let st = &mut e.states[0];
            for (i, (r, v)) in recs.as_mut_slice().iter_mut().zip(e.verdicts.iter_mut()).enumerate() {
                set_record_number(first_number + i as u64);
                *v = rules.evaluate(r, st);
            }
        } else {
            // A work-stealing pool: the chunks of a worker that is descheduled are taken by
            // the others, so a busy machine does not stall the batch. Chunks stay in place,
            // so output order is kept.
            let errors = parking_lot::Mutex::new(Vec::new());
            let pool = &e.pool;
            pool.install(|| {
                use rayon::prelude::*;
                recs.as_mut_slice()
                    .par_chunks_mut(WORK_CHUNK)
                    .zip(e.verdicts.par_chunks_mut(WORK_CHUNK))
                    .enumerate()
                    .for_each(|(chunk, (rc, vc))| {
                        WORKER_STATE.with(|cell| {
                            let mut st = cell.borrow_mut();
                            let chunk_first = first_number + (chunk * WORK_CHUNK) as u64;
                            for (i, (r, v)) in rc.iter_mut().zip(vc.iter_mut()).enumerate() {
                                set_record_number(chunk_first + i as u64);
                                *v = rules.evaluate(r, &mut st);
                            }
                            if !st.action_errors.is_empty() {
                                errors.lock().append(&mut st.action_errors);
                            }
                        })
                    });
            });
            for msg in errors.into_inner() {
                self.action_errors += 1;
                self.host.error(&msg);
            }
        }
        // Split batches are charged wall time × workers: an upper bound of their CPU time,
        // so a cheap rule set still drifts back to one thread.
        let sample = started.elapsed().as_nanos() as f64 * workers as f64 / n.max(1) as f64;
        e.ns_per_record = 0.8 * e.ns_per_record + 0.2 * sample;
        for st in e.states.iter_mut() {
            for msg in st.action_errors.drain(..) {
                self.action_errors += 1;
                self.host.error(&msg);
            }
        }
        let mode = self.mode;
        let mut keep_all = true;
        for v in &e.verdicts {
            match *v {
                Verdict::Drop => {
                    self.filtered += 1;
                    keep_all = false;
                }
                Verdict::Pass { matched } => {
                    self.matches += matched as u64;
                    if matched == 0 && mode == Mode::Alert {
                        self.unmatched += 1;
                        keep_all = false;
                    }
                }
            }
        }
        if !keep_all {
            let mut i = 0;
            let verdicts = &e.verdicts;
            recs.retain(|_| {
                let keep = match verdicts[i] {
                    Verdict::Drop => false,
                    Verdict::Pass { matched } => matched > 0 || mode == Mode::Enrich,
                };
                i += 1;
                keep
            });
        }
        self.records_out += recs.len() as u64;
        if recs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch::Flat(RArc::new(recs))))
    }

    fn flush(&mut self) -> Result<Option<Batch>, PluginError> {
        self.maybe_swap();
        Ok(None)
    }

    /// Counter names avoid "drop": the host warns about those at exit as data loss, and
    /// neither a configured drop filter (`filtered`) nor an alert-mode record that
    /// matched no rule (`unmatched`) is a loss.
    fn counters(&self) -> Vec<Counter> {
        let mut v = vec![
            Counter::new("records_in", self.records_in),
            Counter::new("records_out", self.records_out),
            Counter::new("filtered", self.filtered),
            Counter::new("unmatched", self.unmatched),
            Counter::new("rule_matches", self.matches),
            Counter::loss("action_errors", self.action_errors),
        ];
        if self.otel.is_some() {
            v.push(Counter::loss("decode_errors", self.decode_errors));
        }
        let reloads = match (&self.engine, &self.otel) {
            (Some(e), _) => e.monitor.as_ref().map(|m| (m.reloads(), m.failures())),
            (None, Some(o)) => o.monitor.as_ref().map(|m| (m.reloads(), m.failures())),
            (None, None) => None,
        };
        if let Some((reloads, failures)) = reloads {
            v.push(Counter::new("policy_reloads", reloads));
            v.push(Counter::loss("policy_reload_failures", failures));
        }
        v
    }
}
