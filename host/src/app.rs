//! The start-up sequence: flags → logging → signals → config (+ environment, injected keys)
//! → registry → graph validation → plugin construction → run → summary.

use std::path::Path;

use crossbeam_channel::{Receiver, Sender};

use crate::{
    cli::{self, Cli},
    diagnostics::Diagnostics,
    env_overrides,
    graph::{self, DriverChoice, Graph},
    key_listing,
    logging::{self, Threshold},
    metrics_endpoint::{self, MetricsEndpoint},
    pipeline_config::{self, OutputMode, PipelineConfig},
    pipeline_reload::{self, ReloadSource},
    plugins, record_explainer,
    rule_listing,
    registry::Registry,
    runtime,
    signals::{self, StopFlag},
};

/// Runs `sfprocessor` with `args` (program name first) and the builtin plugins; returns the exit status.
pub fn main_with_args<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    // Subcommands come first; any other first word is upstream's flags and path.
    if args.get(1).is_some_and(|a| a == key_listing::SUBCOMMAND) {
        let rest = args.iter().take(1).chain(args.iter().skip(2)).cloned().collect();
        return key_listing::main(rest);
    }
    if args.get(1).is_some_and(|a| a == record_explainer::SUBCOMMAND) {
        let rest = args.iter().take(1).chain(args.iter().skip(2)).cloned().collect();
        return record_explainer::main(rest);
    }
    let cli = match cli::parse_or_exit(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cli.version {
        println!("{}", cli::version_line());
        return 0;
    }
    let threshold = logging::parse_threshold(&cli.log);
    logging::init(logging::Settings {
        threshold: threshold.unwrap_or(Threshold::Info),
        perf: cli.perflog,
        format: cli.logformat,
        streams: if cli.logstdout { logging::Streams::UpstreamSplit } else { logging::Streams::Stderr },
    });
    if threshold.is_none() {
        tracing::warn!("unknown log level '{}' (use trace, info, warn, error, health or quiet): using info", cli.log);
    }
    let registry = match Registry::with_builtins() {
        Ok(r) => r,
        Err(errors) => {
            for e in errors {
                tracing::error!("{e}");
            }
            return 1;
        }
    };
    let stop = StopFlag::new();
    let mut hangups = None;
    if !(cli.test || cli.listrules) {
        match signals::install(stop.clone()) {
            Ok(queue) => hangups = Some(queue),
            Err(e) => {
                tracing::error!("cannot install the SIGINT/SIGTERM/SIGHUP handler: {e}");
                return 1;
            }
        }
    }
    run_with_hangups(&cli, &registry, env_overrides::process_env(), &stop, hangups)
}

/// Runs with parsed flags, a registry and an environment (the testable core).
pub fn run<E>(cli: &Cli, registry: &Registry, env: E, stop: &StopFlag) -> i32
where
    E: IntoIterator<Item = (String, String)>,
{
    run_with_hangups(cli, registry, env, stop, None)
}

/// A pipeline read from its file and validated, before any plugin is constructed.
struct Loaded {
    /// The top-level `metrics` key.
    metrics: Option<String>,
    cfg: PipelineConfig,
    graph: Graph,
    diag: Diagnostics,
}

/// Reads the pipeline file, applies the environment's overrides, loads the plugin
/// libraries the pipeline names and validates the graph. Problems of the pipeline are in
/// the returned diagnostics; an unreadable file or driver directory is the error.
fn load(cli: &Cli, registry: &Registry, env: &[(String, String)], mode: OutputMode) -> Result<Loaded, Vec<String>> {
    let opts = plugins::options(cli.allowinsecureplugins);
    let mut registry = registry.clone();
    plugins::load_driver_dir(&mut registry, Path::new(&cli.driverdir), &opts)?;
    let mut diag = Diagnostics::default();
    let mut raw = pipeline_config::read_file(Path::new(&cli.config))
        .map_err(|e| vec![format!("Unable to load pipeline error: {e}")])?;
    for a in env_overrides::apply(&mut raw, env.iter().cloned()) {
        tracing::info!(
            "pipeline[{}] ({}): key '{}' set from environment variable {}",
            a.index,
            a.processor,
            a.key,
            a.variable
        );
    }
    let cluster_id = std::env::var("CLUSTER_ID").unwrap_or_default();
    let mut cfg = pipeline_config::interpret(&raw, &cluster_id, &mut diag);
    pipeline_config::set_output_mode(&mut cfg, mode);
    let choice = DriverChoice { driver: cli.driver.clone(), path: cli.path.clone() };
    plugins::load_pipeline_plugins(&mut registry, &cfg, Path::new(&cli.plugdir), &opts);
    let graph = graph::build(&cfg, &registry, &choice, &mut diag);
    Ok(Loaded { metrics: raw.metrics, cfg, graph, diag })
}

/// Builds the next pipeline for a SIGHUP reload: the files as they are now, the same
/// flags and environment, outputs opened to append; drivers are not constructed (the
/// running ones carry over).
fn rebuild(cli: &Cli, registry: &Registry, env: &[(String, String)]) -> Result<(Graph, runtime::Instances), Vec<String>> {
    let loaded = load(cli, registry, env, OutputMode::Append)?;
    for w in &loaded.diag.warnings {
        tracing::warn!("reload: {w}");
    }
    if !loaded.diag.ok() {
        return Err(loaded.diag.errors);
    }
    let mut diag = Diagnostics::default();
    match runtime::construct(&loaded.graph, false, &mut diag) {
        Some(instances) if diag.ok() => Ok((loaded.graph, instances)),
        _ => Err(diag.errors),
    }
}

/// [`run`], and with `hangups` (a sender queueing a reload, and the receiver of each
/// coalesced SIGHUP, see [`signals::install`]) the running pipeline reloads itself from its files.
pub fn run_with_hangups<E>(
    cli: &Cli,
    registry: &Registry,
    env: E,
    stop: &StopFlag,
    hangups: Option<(Sender<()>, Receiver<()>)>,
) -> i32
where
    E: IntoIterator<Item = (String, String)>,
{
    for (flag, value) in [("cpuprofile", &cli.cpuprofile), ("memprofile", &cli.memprofile), ("traceprofile", &cli.traceprofile)] {
        if value.is_some() {
            tracing::warn!("-{flag} is accepted for compatibility but ignored: Go profiles do not apply to this implementation");
        }
    }
    let env: Vec<(String, String)> = env.into_iter().collect();
    let opts = plugins::options(cli.allowinsecureplugins);
    // -test and -listrules touch no output (upstream's -test replaced export files).
    let mode = if cli.test || cli.listrules { OutputMode::Check } else { OutputMode::Replace };
    let loaded = match load(cli, registry, &env, mode) {
        Ok(l) => l,
        Err(errors) => {
            for e in errors {
                tracing::error!("{e}");
            }
            return 1;
        }
    };
    let Loaded { metrics, cfg, graph, diag } = loaded;
    if !report(&diag) {
        return 1;
    }
    if !(cli.test || cli.listrules) && !graph.drivers_without_path.is_empty() {
        eprintln!(
            "[Error] missing input path: {} needs a trace file/directory or socket path (positional argument, or 'path' in its drivers entry)\n{}",
            graph.drivers_without_path.join(", "),
            cli::usage()
        );
        return 1;
    }
    // Bound before the drivers are built, so a bad address fails start-up before any input is opened.
    let metrics_address = metrics_endpoint::choose_address(cli.metrics.as_deref(), metrics.as_deref());
    let endpoint = match metrics_address {
        Some((address, source)) if !(cli.test || cli.listrules) => {
            match MetricsEndpoint::start(&address, source, stop.clone()) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::error!("{e}");
                    return 1;
                }
            }
        }
        _ => None,
    };
    // Drivers open files and sockets when built, so `-test` (like upstream) stops before them.
    let mut diag = Diagnostics::default();
    let instances = runtime::construct(&graph, !(cli.test || cli.listrules), &mut diag);
    let reported_ok = report(&diag);
    let Some(instances) = instances.filter(|_| reported_ok) else {
        return 1;
    };
    tracing::info!(target: "health", "Health checks: passed");
    tracing::info!("Successfully loaded pipeline configuration");
    if cli.listrules {
        return rule_listing::print(&cfg, &graph);
    }
    if cli.test {
        return 0;
    }
    tracing::info!("Starting the processing pipeline");
    tracing::info!("Initializing {} drivers", graph.drivers.len());
    let stop_timeout = (cli.stoptimeout > 0).then(|| std::time::Duration::from_secs(cli.stoptimeout));
    let options = runtime::RunOptions { perflog: cli.perflog, strict: cli.strict, stop_timeout };
    let sighup = hangups.map(|(trigger, hangups)| ReloadSource {
        hangups,
        trigger,
        rebuild: Box::new(|| rebuild(cli, registry, &env)) as pipeline_reload::Rebuild<'_>,
    });
    runtime::run_service(&graph, instances, stop, options, Some(&opts), endpoint.as_ref(), sighup)
}

/// Logs warnings and errors; true when there is no error.
fn report(diag: &Diagnostics) -> bool {
    for w in &diag.warnings {
        tracing::warn!("{w}");
    }
    for e in &diag.errors {
        tracing::error!("{e}");
    }
    if !diag.ok() {
        tracing::error!(
            "Unable to load pipeline: {} error{} (listed above)",
            diag.errors.len(),
            if diag.errors.len() == 1 { "" } else { "s" }
        );
    }
    diag.ok()
}
