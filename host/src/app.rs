//! The start-up sequence: flags → logging → signals → config (+ environment, injected keys)
//! → registry → graph validation → plugin construction → run → summary.

use std::path::Path;

use crate::{
    cli::{self, Cli, CliOutcome},
    diagnostics::Diagnostics,
    env_overrides,
    graph::{self, DriverChoice},
    key_listing,
    logging::{self, Threshold},
    metrics_endpoint::{self, MetricsEndpoint},
    pipeline_config, plugins, record_explainer,
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
    let cli = match cli::parse(args) {
        CliOutcome::Run(c) => c,
        CliOutcome::Exit(text, code) => {
            print!("{text}");
            return code;
        }
        CliOutcome::Usage(text) => {
            eprint!("{text}");
            return 1;
        }
    };
    if cli.version {
        println!("{}", cli::version_line());
        return 0;
    }
    let threshold = logging::parse_threshold(&cli.log);
    logging::init(threshold.unwrap_or(Threshold::Info), cli.perflog);
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
    if !(cli.test || cli.listrules) {
        if let Err(e) = signals::install(stop.clone()) {
            tracing::error!("cannot install the SIGINT/SIGTERM handler: {e}");
            return 1;
        }
    }
    run(&cli, &registry, env_overrides::process_env(), &stop)
}

/// Runs with parsed flags, a registry and an environment (the testable core).
pub fn run<E>(cli: &Cli, registry: &Registry, env: E, stop: &StopFlag) -> i32
where
    E: IntoIterator<Item = (String, String)>,
{
    for (flag, value) in [("cpuprofile", &cli.cpuprofile), ("memprofile", &cli.memprofile), ("traceprofile", &cli.traceprofile)] {
        if value.is_some() {
            tracing::warn!("-{flag} is accepted for compatibility but ignored: Go profiles do not apply to this implementation");
        }
    }
    let opts = plugins::options(cli.allowinsecureplugins);
    let mut registry = registry.clone();
    if let Err(errors) = plugins::load_driver_dir(&mut registry, Path::new(&cli.driverdir), &opts) {
        for e in errors {
            tracing::error!("{e}");
        }
        return 1;
    }
    let mut diag = Diagnostics::default();
    let mut raw = match pipeline_config::read_file(Path::new(&cli.config)) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("Unable to load pipeline error: {e}");
            return 1;
        }
    };
    for a in env_overrides::apply(&mut raw, env) {
        tracing::info!(
            "pipeline[{}] ({}): key '{}' set from environment variable {}",
            a.index,
            a.processor,
            a.key,
            a.variable
        );
    }
    let cluster_id = std::env::var("CLUSTER_ID").unwrap_or_default();
    let cfg = pipeline_config::interpret(&raw, &cluster_id, &mut diag);
    let choice = DriverChoice { driver: cli.driver.clone(), path: cli.path.clone() };
    plugins::load_pipeline_plugins(&mut registry, &cfg, Path::new(&cli.plugdir), &opts);
    let graph = graph::build(&cfg, &registry, &choice, &mut diag);
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
    let metrics_address = metrics_endpoint::choose_address(cli.metrics.as_deref(), raw.metrics.as_deref());
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
        return rule_listing::print(&cfg);
    }
    if cli.test {
        return 0;
    }
    tracing::info!("Starting the processing pipeline");
    tracing::info!("Initializing {} drivers", graph.drivers.len());
    let options = runtime::RunOptions { perflog: cli.perflog, strict: cli.strict };
    runtime::run_reloading(&graph, instances, stop, options, Some(&opts), endpoint.as_ref())
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
