//! The runtime, run in-process with small test plugins written against the plugin API:
//! handler chaining, fan-out, fan-in, flush at end, a panicking branch, stop requests,
//! cycles, constructor errors and duplicate registrations.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use sfprocessor::{
    app,
    cli::{self, CliOutcome},
    diagnostics::Diagnostics,
    graph::{self, DriverChoice},
    pipeline_config,
    registry::{Origin, Registry},
    signals::StopFlag,
};
use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, RVec},
    Batch, ChannelType, ConfigKey, Driver, DriverPoll, Event, FlatRecord, Handler, Header, Host, PluginConfig,
    PluginDescriptor, PluginError, Processor, ProcessEvent, SysFlowRecord,
};

/// Emits `count` header records, then ends; with `forever` it emits until stopped.
struct CountDriver {
    left: u64,
    forever: bool,
    stopped: bool,
}

static FOREVER_PRODUCED: AtomicU64 = AtomicU64::new(0);

impl Driver for CountDriver {
    fn new(config: &PluginConfig, _host: Host) -> Result<Self, PluginError> {
        Ok(CountDriver {
            left: config.parse_or("count", 0u64)?,
            forever: config.str_or("forever", "no")? == "yes",
            stopped: false,
        })
    }
    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError> {
        if self.stopped || (!self.forever && self.left == 0) {
            return Ok(DriverPoll::End);
        }
        let n = if self.forever { 100.min(max_records as u64) } else { self.left.min(max_records as u64) };
        self.left = self.left.saturating_sub(n);
        if self.forever {
            FOREVER_PRODUCED.fetch_add(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(DriverPoll::Batch(Batch::sysflow((0..n).map(|_| SysFlowRecord::Header(Header::default())).collect())))
    }
    fn stop(&mut self) {
        self.stopped = true;
    }
}

/// SysFlow → flat, one flat record per input record.
struct ToFlat;
impl Processor for ToFlat {
    fn new(config: &PluginConfig, _host: Host) -> Result<Self, PluginError> {
        if config.str("fail")?.is_some() {
            return Err(PluginError::new("key 'fail': asked to fail"));
        }
        Ok(ToFlat)
    }
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        let header = RArc::new(Header::default());
        let out: Vec<FlatRecord> = (0..batch.len())
            .map(|_| FlatRecord::new(header.clone(), Event::Process(ProcessEvent::default())))
            .collect();
        Ok(Some(Batch::flat(out)))
    }
}

/// Flat → flat unchanged.
struct Pass;
impl Processor for Pass {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(Pass)
    }
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        Ok(Some(batch))
    }
}

/// Holds every record until flushed.
struct Hold(Vec<FlatRecord>);
impl Processor for Hold {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(Hold(Vec::new()))
    }
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        self.0.extend(batch.into_flat_records().unwrap_or_default());
        Ok(None)
    }
    fn flush(&mut self) -> Result<Option<Batch>, PluginError> {
        Ok(Some(Batch::flat(std::mem::take(&mut self.0))))
    }
}

/// Panics on its first batch.
struct Panicker;
impl Processor for Panicker {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(Panicker)
    }
    fn process(&mut self, _: Batch) -> Result<Option<Batch>, PluginError> {
        panic!("test plugin panics on purpose")
    }
}

/// Returns an error (not a panic) on every second batch.
struct Flaky(u64);
impl Processor for Flaky {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(Flaky(0))
    }
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        self.0 += 1;
        if self.0 % 2 == 0 {
            return Err(PluginError::new("record 7: invalid on purpose"));
        }
        Ok(Some(batch))
    }
}

/// Emits 10 records, stays idle for 1.5 s, then ends; records when it ended.
struct PauseDriver {
    started: Option<Instant>,
    sent: bool,
}
static PAUSE_ENDED: Mutex<Option<Instant>> = Mutex::new(None);
static HOLD_FLUSHED_NONEMPTY: Mutex<Option<Instant>> = Mutex::new(None);
impl Driver for PauseDriver {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(PauseDriver { started: None, sent: false })
    }
    fn poll(&mut self, _: usize) -> Result<DriverPoll, PluginError> {
        if !self.sent {
            self.sent = true;
            self.started = Some(Instant::now());
            return Ok(DriverPoll::Batch(Batch::sysflow(vec![SysFlowRecord::Header(Header::default()); 10])));
        }
        if self.started.is_some_and(|t| t.elapsed() < Duration::from_millis(1500)) {
            std::thread::sleep(Duration::from_millis(50));
            return Ok(DriverPoll::Idle);
        }
        *PAUSE_ENDED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(DriverPoll::End)
    }
}

/// Emits 10 batches of 100 records, then stays idle until stopped.
struct UntilStopDriver {
    batches: u32,
    stopped: bool,
}
impl Driver for UntilStopDriver {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(UntilStopDriver { batches: 0, stopped: false })
    }
    fn poll(&mut self, _: usize) -> Result<DriverPoll, PluginError> {
        if self.stopped {
            return Ok(DriverPoll::End);
        }
        if self.batches < 10 {
            self.batches += 1;
            return Ok(DriverPoll::Batch(Batch::sysflow(vec![SysFlowRecord::Header(Header::default()); 100])));
        }
        std::thread::sleep(Duration::from_millis(20));
        Ok(DriverPoll::Idle)
    }
    fn stop(&mut self) {
        self.stopped = true;
    }
}

/// Like [`Hold`], and notes when a flush first released records.
struct TimedHold(Vec<FlatRecord>);
impl Processor for TimedHold {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(TimedHold(Vec::new()))
    }
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        self.0.extend(batch.into_flat_records().unwrap_or_default());
        Ok(None)
    }
    fn flush(&mut self) -> Result<Option<Batch>, PluginError> {
        if !self.0.is_empty() {
            HOLD_FLUSHED_NONEMPTY.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(Instant::now());
        }
        Ok(Some(Batch::flat(std::mem::take(&mut self.0))))
    }
}

/// Counts records and writes the count to `file` at finish.
struct Sink {
    file: String,
    seen: u64,
}
impl Processor for Sink {
    fn new(config: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(Sink { file: config.str_or("file", "")?.to_string(), seen: 0 })
    }
    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        self.seen += batch.len() as u64;
        Ok(None)
    }
    fn finish(&mut self) -> Result<(), PluginError> {
        std::fs::write(&self.file, self.seen.to_string()).map_err(|e| PluginError::new(format!("{}: {e}", self.file)))
    }
}

/// Handler that duplicates every record.
struct Dup;
impl Handler for Dup {
    fn new(_: &PluginConfig, _: Host) -> Result<Self, PluginError> {
        Ok(Dup)
    }
    fn handle(&mut self, records: RVec<FlatRecord>) -> Result<Option<RVec<FlatRecord>>, PluginError> {
        let mut out = RVec::with_capacity(records.len() * 2);
        for r in records {
            out.push(r.clone());
            out.push(r);
        }
        Ok(Some(out))
    }
}

const FLAT: &[ChannelType] = &[ChannelType::Flat];
const SYSFLOW: &[ChannelType] = &[ChannelType::SysFlow];
const DRIVER_KEYS: &[ConfigKey] = &[ConfigKey::new("count", "records"), ConfigKey::new("forever", "yes: until stopped")];
const SINK_KEYS: &[ConfigKey] = &[ConfigKey::new("file", "where the count goes")];

fn test_registry() -> Registry {
    let mut r = Registry::new();
    let o = || Origin::Builtin("test");
    let ds = vec![
        PluginDescriptor::driver::<CountDriver>("count", "test", "0", DRIVER_KEYS),
        PluginDescriptor::processor::<ToFlat>("toflat", "test", "0", &[], SYSFLOW, Some(ChannelType::Flat)),
        PluginDescriptor::processor::<Pass>("pass", "test", "0", &[], FLAT, Some(ChannelType::Flat)),
        PluginDescriptor::processor::<Hold>("hold", "test", "0", &[], FLAT, Some(ChannelType::Flat)),
        PluginDescriptor::processor::<Panicker>("panicker", "test", "0", &[], FLAT, Some(ChannelType::Flat)),
        PluginDescriptor::processor::<Sink>("sink", "test", "0", SINK_KEYS, FLAT, None),
        PluginDescriptor::handler::<Dup>("dup", "test", "0", &[]),
        PluginDescriptor::processor::<Flaky>("flaky", "test", "0", &[], FLAT, Some(ChannelType::Flat)),
        PluginDescriptor::processor::<TimedHold>("timedhold", "test", "0", &[], FLAT, Some(ChannelType::Flat)),
        PluginDescriptor::driver::<PauseDriver>("pause", "test", "0", &[]),
        PluginDescriptor::driver::<UntilStopDriver>("untilstop", "test", "0", &[]),
    ];
    for d in ds {
        r.register(d, o()).expect("register");
    }
    r
}

fn run_pipeline(dir: &Path, pipeline: &str, extra: &[&str], stop: &StopFlag) -> i32 {
    let cfg = dir.join("p.json");
    std::fs::write(&cfg, pipeline).expect("write");
    let cfg = cfg.to_string_lossy().into_owned();
    let mut args = vec!["sfprocessor", "-config", cfg.as_str(), "-driver", "count", "unused-path"];
    args.extend_from_slice(extra);
    let CliOutcome::Run(c) = cli::parse(args) else { panic!("flags") };
    app::run(&c, &test_registry(), Vec::new(), stop)
}

fn count_in(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("count")
}

#[test]
fn handler_chain_and_fan_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let code = run_pipeline(
        dir.path(),
        &format!(
            r#"{{"drivers": [{{"driver": "count", "count": "5000"}}],
                "pipeline": [
                {{"processor": "toflat", "handler": "dup", "in": "s sysflowchan", "out": ["a flattenerchan", "b flattenerchan"]}},
                {{"processor": "sink", "in": "a flattenerchan", "file": "{d}/a"}},
                {{"processor": "sink", "in": "b flattenerchan", "file": "{d}/b"}}]}}"#
        ),
        &[],
        &StopFlag::new(),
    );
    assert_eq!(code, 0);
    assert_eq!(count_in(&dir.path().join("a")), 10_000);
    assert_eq!(count_in(&dir.path().join("b")), 10_000);
}

#[test]
fn fan_in_through_a_shared_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let code = run_pipeline(
        dir.path(),
        &format!(
            r#"{{"drivers": [{{"driver": "count", "count": "3000"}}],
                "pipeline": [
                {{"processor": "toflat", "in": "s sysflowchan", "out": ["a flattenerchan", "b flattenerchan"]}},
                {{"processor": "pass", "in": "a flattenerchan", "out": "m flattenerchan"}},
                {{"processor": "pass", "in": "b flattenerchan", "out": "m flattenerchan"}},
                {{"processor": "sink", "in": "m flattenerchan", "file": "{d}/m"}}]}}"#
        ),
        &[],
        &StopFlag::new(),
    );
    assert_eq!(code, 0);
    assert_eq!(count_in(&dir.path().join("m")), 6000);
}

#[test]
fn buffered_records_are_flushed_at_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let code = run_pipeline(
        dir.path(),
        &format!(
            r#"{{"drivers": [{{"driver": "count", "count": "2500"}}],
                "pipeline": [
                {{"processor": "toflat", "in": "s sysflowchan", "out": "f flattenerchan"}},
                {{"processor": "hold", "in": "f flattenerchan", "out": "h flattenerchan"}},
                {{"processor": "sink", "in": "h flattenerchan", "file": "{d}/h"}}]}}"#
        ),
        &[],
        &StopFlag::new(),
    );
    assert_eq!(code, 0);
    assert_eq!(count_in(&dir.path().join("h")), 2500);
}

#[test]
fn panicking_branch_stops_alone_and_fails_the_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let code = run_pipeline(
        dir.path(),
        &format!(
            r#"{{"drivers": [{{"driver": "count", "count": "4000"}}],
                "pipeline": [
                {{"processor": "toflat", "in": "s sysflowchan", "out": ["a flattenerchan", "b flattenerchan"]}},
                {{"processor": "panicker", "in": "a flattenerchan", "out": "c flattenerchan"}},
                {{"processor": "sink", "in": "c flattenerchan", "file": "{d}/c"}},
                {{"processor": "sink", "in": "b flattenerchan", "file": "{d}/b"}}]}}"#
        ),
        &[],
        &StopFlag::new(),
    );
    assert_eq!(code, 1, "a failed branch must make the exit status non-zero");
    assert_eq!(count_in(&dir.path().join("b")), 4000, "the healthy branch gets every record");
    assert_eq!(count_in(&dir.path().join("c")), 0, "downstream of the failed node finishes empty");
}

#[test]
fn stop_request_drains_everything_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let stop = StopFlag::new();
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.request();
        })
    };
    let code = run_pipeline(
        dir.path(),
        &format!(
            r#"{{"drivers": [{{"driver": "count", "forever": "yes"}}],
                "pipeline": [
                {{"processor": "toflat", "in": "s sysflowchan", "out": "f flattenerchan"}},
                {{"processor": "sink", "in": "f flattenerchan", "file": "{d}/f"}}]}}"#
        ),
        &[],
        &stop,
    );
    stopper.join().expect("stopper");
    assert_eq!(code, 0);
    let produced = FOREVER_PRODUCED.load(Ordering::SeqCst);
    assert!(produced > 0);
    assert_eq!(count_in(&dir.path().join("f")), produced);
}

#[test]
fn constructor_error_fails_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let pipeline = format!(
        r#"{{"drivers": [{{"driver": "count", "count": "10"}}],
            "pipeline": [
            {{"processor": "toflat", "in": "s sysflowchan", "out": "f flattenerchan", "fail": "yes"}},
            {{"processor": "sink", "in": "f flattenerchan", "file": "{d}/f"}}]}}"#
    );
    assert_eq!(run_pipeline(dir.path(), &pipeline, &[], &StopFlag::new()), 1);
    assert!(!dir.path().join("f").exists(), "nothing ran");
    // `-test` builds the plugins too, so it reports the same failure.
    assert_eq!(run_pipeline(dir.path(), &pipeline, &["-test"], &StopFlag::new()), 1);
}

fn validate(pipeline: &str) -> Diagnostics {
    let raw = pipeline_config::parse_str(pipeline).expect("json");
    let mut diag = Diagnostics::default();
    let cfg = pipeline_config::interpret(&raw, "", &mut diag);
    let choice = DriverChoice { driver: Some("count".into()), path: Some("x".into()) };
    graph::build(&cfg, &test_registry(), &choice, &mut diag);
    diag
}

#[test]
fn cycle_is_refused() {
    let diag = validate(
        r#"{"pipeline": [
            {"processor": "toflat", "in": "s sysflowchan", "out": "a flattenerchan"},
            {"processor": "pass", "in": "a flattenerchan", "out": "b flattenerchan"},
            {"processor": "pass", "in": "b flattenerchan", "out": "a flattenerchan"}]}"#,
    );
    assert_eq!(diag.errors.len(), 1, "{:?}", diag.errors);
    assert!(
        diag.errors[0].contains("the pipeline has a cycle: pipeline[1] (pass) -> pipeline[2] (pass) -> pipeline[1] (pass)"),
        "{}",
        diag.errors[0]
    );
}

#[test]
fn handler_needs_a_flat_producer_and_outputs_need_an_output_type() {
    let diag = validate(
        r#"{"pipeline": [
            {"processor": "toflat", "in": "s sysflowchan", "out": "a flattenerchan"},
            {"processor": "sink", "handler": "dup", "in": "a flattenerchan", "out": "z flattenerchan"},
            {"processor": "sink", "in": "z flattenerchan"}]}"#,
    );
    let all = diag.errors.join("\n");
    assert!(all.contains("pipeline[1] (sink): key 'handler': processor 'sink' does not produce flat records"), "{all}");
    assert!(all.contains("pipeline[1] (sink): key 'out': processor 'sink' produces no output"), "{all}");
}

#[test]
fn duplicate_plugin_names_name_both_origins() {
    let mut r = test_registry();
    let err = r
        .register(
            PluginDescriptor::processor::<Pass>("pass", "again", "0", &[], FLAT, Some(ChannelType::Flat)),
            Origin::Library("/plugins/libpass.so".into()),
        )
        .expect_err("duplicate must be refused");
    assert!(err.contains("built-in (test)") && err.contains("/plugins/libpass.so") && err.contains("'pass'"), "{err}");
    // Same name, other kind: separate namespace.
    r.register(PluginDescriptor::driver::<CountDriver>("pass", "d", "0", &[]), Origin::Builtin("test"))
        .expect("a driver may share a processor's name");
}

#[test]
fn plugin_errors_lose_only_their_batch_and_fail_the_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    // 4096 records arrive as 4 batches of 1024; batches 2 and 4 fail.
    let code = run_pipeline(
        dir.path(),
        &format!(
            r#"{{"drivers": [{{"driver": "count", "count": "4096"}}],
                "pipeline": [
                {{"processor": "toflat", "in": "s sysflowchan", "out": "f flattenerchan"}},
                {{"processor": "flaky", "in": "f flattenerchan", "out": "g flattenerchan"}},
                {{"processor": "sink", "in": "g flattenerchan", "file": "{d}/g"}}]}}"#
        ),
        &[],
        &StopFlag::new(),
    );
    assert_eq!(code, 1, "lost records make the exit status non-zero");
    assert_eq!(count_in(&dir.path().join("g")), 2048, "the node keeps going after an ordinary error");
}

#[test]
fn idle_processor_is_flushed_before_end_of_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let cfg = dir.path().join("p.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"pipeline": [
                {{"processor": "toflat", "in": "s sysflowchan", "out": "f flattenerchan"}},
                {{"processor": "timedhold", "in": "f flattenerchan", "out": "h flattenerchan"}},
                {{"processor": "sink", "in": "h flattenerchan", "file": "{d}/h"}}]}}"#
        ),
    )
    .expect("write");
    let cfg = cfg.to_string_lossy().into_owned();
    let CliOutcome::Run(c) = cli::parse(["sfprocessor", "-config", cfg.as_str(), "-driver", "pause", "x"]) else {
        panic!("flags")
    };
    assert_eq!(app::run(&c, &test_registry(), Vec::new(), &StopFlag::new()), 0);
    assert_eq!(count_in(&dir.path().join("h")), 10);
    let flushed = HOLD_FLUSHED_NONEMPTY.lock().unwrap_or_else(|e| e.into_inner()).expect("flushed");
    let ended = PAUSE_ENDED.lock().unwrap_or_else(|e| e.into_inner()).expect("ended");
    assert!(flushed < ended, "the idle flush came before the input ended");
}

/// GET on the metrics listener: status and body (`None` when nothing answers).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent.get(&format!("http://127.0.0.1:{port}{path}")).call().ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.body_mut().read_to_string().ok()?))
}

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_count_panics_restarts_and_drops_of_a_restarting_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let stop = StopFlag::new();
    let runner = {
        let (stop, dir) = (stop.clone(), dir.path().to_path_buf());
        let pipeline = format!(
            r#"{{"pipeline": [
                {{"processor": "toflat", "in": "s sysflowchan", "out": "f flattenerchan"}},
                {{"processor": "panicker", "on.error": "restart", "in": "f flattenerchan", "out": "p flattenerchan"}},
                {{"processor": "sink", "in": "p flattenerchan", "file": "{d}/p"}}]}}"#
        );
        std::thread::spawn(move || {
            let cfg = dir.join("p.json");
            std::fs::write(&cfg, pipeline).expect("write");
            let cfg = cfg.to_string_lossy().into_owned();
            let addr = format!("127.0.0.1:{port}");
            let args = ["sfprocessor", "-config", cfg.as_str(), "-driver", "untilstop", "-metrics", addr.as_str(), "x"];
            let CliOutcome::Run(c) = cli::parse(args) else { panic!("flags") };
            app::run(&c, &test_registry(), Vec::new(), &stop)
        })
    };
    let node = r#"node="pipeline[1] (panicker)""#;
    let start = Instant::now();
    let text = loop {
        let text = http_get(port, "/metrics").map(|(_, t)| t).unwrap_or_default();
        // Each of the 10 batches panics: 5 restarts, then the 6th panic stops the branch.
        if sample(&text, "sfprocessor_node_records_dropped_total", node) == Some(1000.0) {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the panicker did not drop all 1000 records:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(http_get(port, "/readyz").map(|(s, _)| s), Some(200), "the driver still reads");
    stop.request();
    let code = runner.join().expect("pipeline thread");
    assert_eq!(sample(&text, "sfprocessor_node_panics_total", node), Some(6.0), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_restarts_total", node), Some(5.0), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_errors_total", node), Some(6.0), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_failed", node), Some(1.0), "{text}");
    assert_eq!(sample(&text, "sfprocessor_node_records_in_total", node), Some(1000.0), "{text}");
    assert_eq!(code, 1, "lost records fail the run");
    assert_eq!(count_in(&dir.path().join("p")), 0);
}
