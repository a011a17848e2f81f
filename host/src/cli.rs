//! Command line: upstream's Go-style flags (`-config x`, `-config=x`, `--config x`) parsed with clap.

use std::ffi::OsString;

use clap::Parser;

use crate::logging::LogFormat;

/// Host version (the `-version` output and the injected `version` key).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Build number, set at compile time through `SFPROCESSOR_BUILD_NUMBER` (upstream injects `1`).
pub const BUILD_NUMBER: &str = match option_env!("SFPROCESSOR_BUILD_NUMBER") {
    Some(b) => b,
    None => "1",
};

/// Avro schema version the socket/file drivers decode natively.
pub const AVRO_SCHEMA_VERSION: &str = "5";
/// JSON export schema version.
pub const JSON_SCHEMA_VERSION: &str = "5";
/// ECS export version.
pub const ECS_VERSION: &str = "8.2";

/// The `-version` line.
pub fn version_line() -> String {
    format!(
        "Version: {VERSION}+{BUILD_NUMBER}, Avro Schema Version: {AVRO_SCHEMA_VERSION}, \
         Export Schema Version: {JSON_SCHEMA_VERSION} (JSON), {ECS_VERSION} (ECS)"
    )
}

/// Flags of `sfprocessor`, upstream's names and defaults.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "sfprocessor",
    about = "SysFlow processor: reads SysFlow telemetry, applies policies, exports records",
    disable_version_flag = true,
    // Go's `flag` package keeps the last value of a flag given twice (scripts append flags).
    args_override_self = true,
    override_usage = "sfprocessor [flags] <path>\n       sfprocessor keys [flags] [plugin]\n       sfprocessor explain -h\n       (flags may be written -flag value, -flag=value or --flag value)",
    after_help = "Subcommands:\n  keys [plugin]   list every pipeline key of the host and of each built-in and loaded plugin\n                  (-driverdir, -plugdir name the plugin directories), as Markdown\n  explain         print one record of a trace as the policy engine sees it and the rules\n                  that hold on it (sfprocessor explain -h for its arguments)"
)]
pub struct Cli {
    /// Pipeline configuration file.
    #[arg(long, default_value = "pipeline.json", value_name = "FILE", allow_hyphen_values = true)]
    pub config: String,

    /// Driver name (file, socket, kafka, or a plugin driver); default: the file's `drivers`, else `file`.
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub driver: Option<String>,

    /// Log level: trace, info, warn, error, health, quiet.
    #[arg(long, default_value = "info", value_name = "LEVEL", allow_hyphen_values = true)]
    pub log: String,

    /// Log line format: text (upstream's `[Info] date message`) or json (one object per
    /// line, for journald, Loki and other log collectors).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub logformat: LogFormat,

    /// Write logs as upstream 0.7 does: errors to stderr, every other line to stdout, mixed
    /// with `export: terminal` records. Without it every log line goes to stderr.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, value_name = "BOOL")]
    pub logstdout: bool,

    /// Directory of dynamic driver plugins.
    #[arg(long, default_value = "/usr/local/sysflow/resources/drivers", value_name = "DIR", allow_hyphen_values = true)]
    pub driverdir: String,

    /// Directory of dynamic processor plugins.
    #[arg(long, default_value = "/usr/local/sysflow/resources/plugins", value_name = "DIR", allow_hyphen_values = true)]
    pub plugdir: String,

    /// Load and initialise the pipeline, then exit.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, value_name = "BOOL")]
    pub test: bool,

    /// Like -test, then list every policy engine's compiled rules and filters with the
    /// record types each is evaluated on (tab-separated, one per line).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, value_name = "BOOL")]
    pub listrules: bool,

    /// Print the version and exit.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, value_name = "BOOL")]
    pub version: bool,

    /// Log per-node rates and queue depths every 15 s and at exit.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, value_name = "BOOL")]
    pub perflog: bool,

    /// Serve Prometheus metrics at /metrics, liveness at /healthz and readiness at /readyz
    /// on this address (e.g. 127.0.0.1:9977); overrides the pipeline file's `metrics` key.
    #[arg(long, value_name = "ADDR", allow_hyphen_values = true)]
    pub metrics: Option<String>,

    /// Load plugin libraries even when they or their directory are writable by group or
    /// others, or owned by another user (development only: anyone who can write there can run code here).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, value_name = "BOOL")]
    pub allowinsecureplugins: bool,

    /// Exit with status 1 when a driver skipped or lost input (damaged trace blocks,
    /// undecodable or unread messages, unreadable files); without it such a run exits 0
    /// after warning about what was skipped.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false", value_parser = parse_go_bool, value_name = "BOOL")]
    pub strict: bool,

    /// Seconds after the first SIGINT/SIGTERM by which the drain must be done; then the
    /// process logs what is still queued and exits 1 (0: no bound). Default
    /// `DEFAULT_STOP_TIMEOUT_SECS`, below the packaged unit's TimeoutStopSec=30.
    #[arg(long, default_value_t = DEFAULT_STOP_TIMEOUT_SECS, value_name = "SECONDS")]
    pub stoptimeout: u64,

    /// Accepted for compatibility with upstream; Go profiles are not produced.
    #[arg(long, value_name = "FILE", hide = true, allow_hyphen_values = true)]
    pub cpuprofile: Option<String>,

    /// Accepted for compatibility with upstream; Go profiles are not produced.
    #[arg(long, value_name = "FILE", hide = true, allow_hyphen_values = true)]
    pub memprofile: Option<String>,

    /// Accepted for compatibility with upstream; Go profiles are not produced.
    #[arg(long, value_name = "FILE", hide = true, allow_hyphen_values = true)]
    pub traceprofile: Option<String>,

    /// Input: trace file or directory (file driver) or socket path (socket driver); none for kafka.
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
}

/// Default of `-stoptimeout`: the drain after SIGINT/SIGTERM ends within 25 s, before the
/// packaged unit's `TimeoutStopSec=30` has systemd kill the process.
pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 25;

/// Flags that take a value (so the next word is their value, never a flag).
const VALUE_FLAGS: &[&str] = &[
    "config",
    "driver",
    "log",
    "logformat",
    "driverdir",
    "plugdir",
    "metrics",
    "stoptimeout",
    "cpuprofile",
    "memprofile",
    "traceprofile",
];

/// Go's boolean literals (`strconv.ParseBool`).
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value '{s}'")),
    }
}

/// Rewrites Go-style single-dash long flags (`-config`) into clap's `--config`, leaving
/// flag values, `-h`, `-` and everything after `--` untouched.
pub fn rewrite_go_flags<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut out = Vec::new();
    let mut iter = args.into_iter().map(Into::into);
    if let Some(prog) = iter.next() {
        out.push(prog);
    }
    let mut value_expected = false;
    let mut rest_positional = false;
    for arg in iter {
        if rest_positional || value_expected {
            value_expected = false;
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest_positional = true;
            out.push(arg);
            continue;
        }
        let (dashless, single) = if let Some(r) = s.strip_prefix("--") {
            (r, false)
        } else if let Some(r) = s.strip_prefix('-') {
            (r, true)
        } else {
            out.push(arg);
            continue;
        };
        let name = dashless.split('=').next().unwrap_or("");
        if VALUE_FLAGS.contains(&name) && !dashless.contains('=') {
            value_expected = true;
        }
        if single && dashless.chars().count() > 1 {
            out.push(OsString::from(format!("--{dashless}")));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Outcome of parsing the command line.
#[derive(Debug)]
pub enum CliOutcome {
    /// Run with these flags.
    Run(Cli),
    /// Print this text to stdout and exit with this status (help).
    Exit(String, i32),
    /// Usage error: print to stderr, exit 1.
    Usage(String),
}

/// Parses `argv` (including the program name).
pub fn parse<I, S>(args: I) -> CliOutcome
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    match Cli::try_parse_from(rewrite_go_flags(args)) {
        Ok(cli) => CliOutcome::Run(cli),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                CliOutcome::Exit(e.render().to_string(), 0)
            }
            _ => CliOutcome::Usage(e.render().to_string()),
        },
    }
}

/// Parses `argv` for a command that runs: the flags, or — after printing help to stdout or
/// a usage error to stderr — the exit status.
pub fn parse_or_exit(args: Vec<OsString>) -> Result<Cli, i32> {
    match parse(args) {
        CliOutcome::Run(c) => Ok(c),
        CliOutcome::Exit(text, code) => {
            print!("{text}");
            Err(code)
        }
        CliOutcome::Usage(text) => {
            eprint!("{text}");
            Err(1)
        }
    }
}

/// Usage text, for usage errors detected after parsing (e.g. a missing input path).
pub fn usage() -> String {
    use clap::CommandFactory;
    Cli::command().render_usage().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Cli {
        let mut v = vec!["sfprocessor"];
        v.extend_from_slice(args);
        match parse(v) {
            CliOutcome::Run(c) => c,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn go_style_forms() {
        let c = run(&["-config", "a.json", "-log=trace", "--driver", "socket", "-test", "x.sf"]);
        assert_eq!(c.config, "a.json");
        assert_eq!(c.log, "trace");
        assert_eq!(c.driver.as_deref(), Some("socket"));
        assert!(c.test);
        assert_eq!(c.path.as_deref(), Some("x.sf"));
        assert!(!c.strict);
        assert!(run(&["-strict", "x.sf"]).strict);
        assert!(!run(&["-strict=false", "x.sf"]).strict);
    }

    #[test]
    fn bool_with_value_and_dash_value() {
        let c = run(&["-perflog=false", "-test=true", "-config", "-odd.json"]);
        assert!(!c.perflog);
        assert!(c.test);
        assert_eq!(c.config, "-odd.json");
    }

    #[test]
    fn defaults() {
        let c = run(&[]);
        assert_eq!(c.config, "pipeline.json");
        assert_eq!(c.driverdir, "/usr/local/sysflow/resources/drivers");
        assert_eq!(c.plugdir, "/usr/local/sysflow/resources/plugins");
        assert!(c.path.is_none());
    }

    #[test]
    fn rewrite_keeps_values_short_flags_and_positionals() {
        let out: Vec<String> = rewrite_go_flags(["sfprocessor", "-h", "-log", "-x", "-", "--", "-config"])
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(out, ["sfprocessor", "-h", "--log", "-x", "-", "--", "-config"]);
    }

    #[test]
    fn log_format_and_streams() {
        let c = run(&[]);
        assert_eq!(c.logformat, LogFormat::Text);
        assert!(!c.logstdout);
        let c = run(&["-logformat", "json", "-logstdout", "x.sf"]);
        assert_eq!(c.logformat, LogFormat::Json);
        assert!(c.logstdout);
        assert_eq!(run(&["-logformat=text"]).logformat, LogFormat::Text);
        assert!(matches!(parse(["sfprocessor", "-logformat", "yaml"]), CliOutcome::Usage(m) if m.contains("yaml")));
    }

    #[test]
    fn metrics_address_forms() {
        assert_eq!(run(&["-metrics", "127.0.0.1:9977"]).metrics.as_deref(), Some("127.0.0.1:9977"));
        assert_eq!(run(&["-metrics=[::1]:9977", "x.sf"]).metrics.as_deref(), Some("[::1]:9977"));
        assert!(run(&[]).metrics.is_none());
    }

    #[test]
    fn bad_boolean_is_usage_error() {
        assert!(matches!(parse(["sfprocessor", "-test=maybe"]), CliOutcome::Usage(m) if m.contains("maybe")));
        assert!(!run(&["-test=F"]).test);
    }

    #[test]
    fn flag_given_twice_takes_the_last_value_as_in_go() {
        let c = run(&["-log=error", "-config", "a.json", "-log=warn", "--config=b.json", "-strict", "-strict=false", "x.sf"]);
        assert_eq!(c.log, "warn");
        assert_eq!(c.config, "b.json");
        assert!(!c.strict);
        assert!(run(&["-test=false", "-test", "x.sf"]).test);
    }

    #[test]
    fn unknown_flag_is_usage_error() {
        assert!(matches!(parse(["sfprocessor", "-bogus"]), CliOutcome::Usage(_)));
        assert!(matches!(parse(["sfprocessor", "-help"]), CliOutcome::Exit(_, 0)));
    }
}
