//! Logging in upstream's shape: `[Info] 2024-05-01 10:00:00 message`, filtered by `-log`
//! (trace, info, warn, error, health, quiet), or one JSON object per line with
//! `-logformat json` (for journald, Loki and other collectors that parse fields).
//!
//! Every line goes to stderr, so that stdout carries only what the pipeline exports
//! (`export: terminal`). `-logstdout` restores upstream 0.7's split for those who read its
//! logs from stdout: errors on stderr, everything else on stdout.
//!
//! Host code logs with `tracing` macros; health messages use `target: "health"` and
//! performance lines `target: "perf"`. Plugins log through [`plugin_log`], the
//! callback in their `Host` ([`crate::plugin_services`]).

use std::{
    fmt::Write as _,
    io::Write as _,
    sync::atomic::{AtomicBool, Ordering},
};

use abi_stable::std_types::RStr;
use sysflow_plugin_api::LogLevel;
use tracing::{field::Field, Event, Level, Metadata, Subscriber};
use tracing_subscriber::{
    filter::filter_fn,
    fmt::writer::{BoxMakeWriter, MakeWriterExt},
    layer::Context,
    prelude::*,
    Layer, Registry,
};

/// Upstream's levels in increasing severity; `-log X` shows X and everything above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Threshold {
    /// Everything.
    Trace,
    /// Info and above.
    Info,
    /// Warnings and above.
    Warn,
    /// Errors and health.
    Error,
    /// Health only.
    Health,
    /// Nothing.
    Quiet,
}

/// Parses `-log` (case-insensitive); `None` for an unknown name.
pub fn parse_threshold(s: &str) -> Option<Threshold> {
    Some(match s.to_ascii_lowercase().as_str() {
        "trace" => Threshold::Trace,
        "info" => Threshold::Info,
        "warn" => Threshold::Warn,
        "error" => Threshold::Error,
        "health" => Threshold::Health,
        "quiet" => Threshold::Quiet,
        _ => return None,
    })
}

/// How each log line is written (`-logformat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Upstream's text lines: `[Info] 2024-05-01 10:00:00 message`.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, `instance`, `target`),
    /// written by tracing-subscriber's JSON formatter.
    Json,
}

/// Which standard streams log lines go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Streams {
    /// Every line on stderr: stdout carries only exported records.
    #[default]
    Stderr,
    /// Upstream 0.7's split (`-logstdout`): errors on stderr, every other line on stdout,
    /// interleaved with `export: terminal` records.
    UpstreamSplit,
}

/// What [`init`] installs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Lowest level shown.
    pub threshold: Threshold,
    /// Whether `[Perf]` lines (`-perflog`) are shown.
    pub perf: bool,
    /// Line format.
    pub format: LogFormat,
    /// Where lines go.
    pub streams: Streams,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tag {
    Trace,
    Info,
    Warn,
    Error,
    Health,
    Perf,
}

impl Tag {
    fn of(meta: &Metadata<'_>) -> Tag {
        match meta.target() {
            "health" => return Tag::Health,
            "perf" => return Tag::Perf,
            _ => {}
        }
        match *meta.level() {
            Level::ERROR => Tag::Error,
            Level::WARN => Tag::Warn,
            Level::INFO => Tag::Info,
            _ => Tag::Trace,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Tag::Trace => "[Trace]",
            Tag::Info => "[Info]",
            Tag::Warn => "[Warn]",
            Tag::Error => "[Error]",
            Tag::Health => "[Health]",
            Tag::Perf => "[Perf]",
        }
    }
}

/// Which lines `-log` and `-perflog` let through, in either format.
#[derive(Clone, Copy)]
struct Filter {
    threshold: Threshold,
    perf: bool,
}

impl Filter {
    fn shows(&self, tag: Tag) -> bool {
        match tag {
            Tag::Perf => self.perf,
            Tag::Health => self.threshold != Threshold::Quiet,
            Tag::Trace => self.threshold <= Threshold::Trace,
            Tag::Info => self.threshold <= Threshold::Info,
            Tag::Warn => self.threshold <= Threshold::Warn,
            Tag::Error => self.threshold <= Threshold::Error,
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    instance: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "instance" => self.instance.push_str(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "instance" => {
                let _ = write!(self.instance, "{value:?}");
            }
            _ => {}
        }
    }
}

/// Writes upstream's text lines.
struct TextLayer {
    filter: Filter,
    streams: Streams,
}

impl<S: Subscriber> Layer<S> for TextLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.filter.shows(Tag::of(metadata))
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let tag = Tag::of(event.metadata());
        if !self.filter.shows(tag) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(64 + fields.message.len());
        line.push_str(tag.text());
        line.push(' ');
        local_timestamp(&mut line);
        line.push(' ');
        if !fields.instance.is_empty() {
            line.push_str(&fields.instance);
            line.push_str(": ");
        }
        line.push_str(&fields.message);
        line.push('\n');
        // A closed stdout/stderr must not take the pipeline down: the write error is ignored.
        if tag == Tag::Error || self.streams == Streams::Stderr {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        } else {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
    }
}

/// Appends `YYYY-MM-DD HH:MM:SS` in local time.
fn local_timestamp(out: &mut String) {
    // SAFETY: time(NULL) has no preconditions; localtime_r writes only into `tm`, which
    // is a properly sized, zero-initialised struct owned by this frame.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            out.push_str("0000-00-00 00:00:00");
            return;
        }
        tm
    };
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The layer writing JSON lines through tracing-subscriber's formatter: the event's
/// fields (`message`, and `instance` for a plugin's line) at the top level beside
/// `timestamp` (RFC 3339, UTC), `level` and `target` (`health` and `perf` name those lines).
fn json_layer(filter: Filter, streams: Streams) -> Box<dyn Layer<Registry> + Send + Sync> {
    let writer = match streams {
        Streams::Stderr => BoxMakeWriter::new(std::io::stderr),
        Streams::UpstreamSplit => {
            BoxMakeWriter::new(std::io::stderr.with_max_level(Level::ERROR).or_else(std::io::stdout))
        }
    };
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(filter_fn(move |meta| filter.shows(Tag::of(meta))))
        .boxed()
}

/// Installs the global logger (once per process; later calls are ignored).
pub fn init(settings: Settings) {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let filter = Filter { threshold: settings.threshold, perf: settings.perf };
    let layer = match settings.format {
        LogFormat::Text => TextLayer { filter, streams: settings.streams }.boxed(),
        LogFormat::Json => json_layer(filter, settings.streams),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The log callback handed to plugins: forwards into `tracing` with the instance name.
pub extern "C" fn plugin_log(level: LogLevel, instance: RStr<'_>, message: RStr<'_>) {
    let instance = instance.as_str();
    let message = message.as_str();
    // The `plugin` target tells a JSON log's reader where the line came from (the host's
    // own lines carry their module path).
    match level {
        LogLevel::Trace => tracing::trace!(target: "plugin", instance, "{message}"),
        LogLevel::Info => tracing::info!(target: "plugin", instance, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "plugin", instance, "{message}"),
        LogLevel::Error => tracing::error!(target: "plugin", instance, "{message}"),
        LogLevel::Health => tracing::info!(target: "health", instance, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(parse_threshold("TRACE"), Some(Threshold::Trace));
        assert_eq!(parse_threshold("Quiet"), Some(Threshold::Quiet));
        assert_eq!(parse_threshold("verbose"), None);
        let l = Filter { threshold: Threshold::Error, perf: false };
        assert!(l.shows(Tag::Error) && l.shows(Tag::Health));
        assert!(!l.shows(Tag::Warn) && !l.shows(Tag::Perf));
        let q = Filter { threshold: Threshold::Quiet, perf: false };
        assert!(!q.shows(Tag::Health) && !q.shows(Tag::Error));
    }

    #[test]
    fn timestamp_shape() {
        let mut s = String::new();
        local_timestamp(&mut s);
        assert_eq!(s.len(), 19, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], " ");
    }
}
