//! Logging in upstream's shape: `[Info] 2024-05-01 10:00:00 message`, errors to stderr,
//! everything else to stdout, filtered by `-log` (trace, info, warn, error, health, quiet).
//!
//! Host code logs with `tracing` macros; health messages use `target: "health"` and
//! performance lines `target: "perf"`. Plugins log through [`plugin_log`], the
//! callback in their [`Host`].

use std::{
    fmt::Write as _,
    io::Write as _,
    sync::atomic::{AtomicBool, Ordering},
};

use abi_stable::std_types::RStr;
use sysflow_plugin_api::{Host, LogLevel};
use tracing::{field::Field, Event, Level, Metadata, Subscriber};
use tracing_subscriber::{layer::Context, prelude::*, Layer};

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

struct UpstreamLayer {
    threshold: Threshold,
    perf: bool,
}

impl UpstreamLayer {
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

impl<S: Subscriber> Layer<S> for UpstreamLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.shows(Tag::of(metadata))
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let tag = Tag::of(event.metadata());
        if !self.shows(tag) {
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
        if tag == Tag::Error {
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

/// Installs the global logger (once per process; later calls are ignored).
pub fn init(threshold: Threshold, perf: bool) {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = tracing_subscriber::registry().with(UpstreamLayer { threshold, perf }).try_init();
}

/// The log callback handed to plugins: forwards into `tracing` with the instance name.
pub extern "C" fn plugin_log(level: LogLevel, instance: RStr<'_>, message: RStr<'_>) {
    let instance = instance.as_str();
    let message = message.as_str();
    match level {
        LogLevel::Trace => tracing::trace!(instance, "{message}"),
        LogLevel::Info => tracing::info!(instance, "{message}"),
        LogLevel::Warn => tracing::warn!(instance, "{message}"),
        LogLevel::Error => tracing::error!(instance, "{message}"),
        LogLevel::Health => tracing::info!(target: "health", instance, "{message}"),
    }
}

/// Host services for the plugin instance named `instance` (the name is kept for the
/// life of the process, as plugins may hold their `Host` that long).
pub fn host_for(instance: &str) -> Host {
    let name: &'static str = Box::leak(instance.to_string().into_boxed_str());
    Host::new(plugin_log, name).with_stop_signal(crate::signals::stop_signalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(parse_threshold("TRACE"), Some(Threshold::Trace));
        assert_eq!(parse_threshold("Quiet"), Some(Threshold::Quiet));
        assert_eq!(parse_threshold("verbose"), None);
        let l = UpstreamLayer { threshold: Threshold::Error, perf: false };
        assert!(l.shows(Tag::Error) && l.shows(Tag::Health));
        assert!(!l.shows(Tag::Warn) && !l.shows(Tag::Perf));
        let q = UpstreamLayer { threshold: Threshold::Quiet, perf: false };
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
