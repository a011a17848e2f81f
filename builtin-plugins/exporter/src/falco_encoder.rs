//! `format: falco`: Falco's JSON alert shape, so that Falcosidekick and other consumers of
//! Falco alerts read ours unchanged: `time` (RFC 3339, nanoseconds), `rule`, `priority`
//! (Falco's capitalisation), `source` (`syscall`), `tags`, `hostname`, `output`,
//! `output_fields`.
//!
//! One alert per record, for the first rule it matched: Falco's default
//! (`rule_matching: first`). Records no rule matched are not alerts; the exporter counts
//! them (`records_not_alerts`).

use sysflow_plugin_api::{FlatRecord, RuleMatch};

use crate::{
    ecs_encoder::write_iso_time,
    json_text::{write_int, write_str},
};

/// Falco's `source` for system call events.
pub const SOURCE: &str = "syscall";

/// Encodes alerts in Falco's JSON shape.
#[derive(Debug, Default)]
pub struct FalcoEncoder {
    time: Vec<u8>,
}

/// Falco's name of a rule priority: the word the rule was written with when it is one of
/// Falco's, else the nearest Falco level of the ordinal (informational 0 … critical 4).
pub fn priority_name(m: &RuleMatch) -> &str {
    if !m.priority_name.is_empty() {
        return m.priority_name.as_str();
    }
    match m.priority {
        i32::MIN..=0 => "Informational",
        1 => "Notice",
        2 => "Warning",
        3 => "Error",
        _ => "Critical",
    }
}

impl FalcoEncoder {
    /// A new encoder.
    pub fn new() -> FalcoEncoder {
        FalcoEncoder::default()
    }

    /// Writes the record's alert; false (nothing written) when no rule matched it.
    pub fn encode(&mut self, record: &FlatRecord, out: &mut Vec<u8>) -> bool {
        let Some(m) = record.context.matched.first() else {
            return false;
        };
        out.extend_from_slice(b"{\"time\":");
        self.write_time(out, record.event.ts());
        out.extend_from_slice(b",\"rule\":");
        write_str(out, &m.name);
        out.extend_from_slice(b",\"priority\":");
        write_str(out, priority_name(m));
        out.extend_from_slice(b",\"source\":");
        write_str(out, SOURCE);
        out.extend_from_slice(b",\"tags\":[");
        let tags = record.context.tags.iter().chain(m.tags.iter());
        for (i, t) in tags.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, t);
        }
        out.extend_from_slice(b"],\"hostname\":");
        write_str(out, &record.header.exporter);
        out.extend_from_slice(b",\"output\":");
        // A rule without a template (or outside the falco dialect) says what it is.
        let output = if m.output.is_empty() { m.desc.as_str() } else { m.output.as_str() };
        write_str(out, output);
        out.extend_from_slice(b",\"output_fields\":{");
        let mut first = true;
        if !m.output_fields.iter().any(|f| f.0.as_str() == "evt.time") {
            out.extend_from_slice(b"\"evt.time\":");
            write_int(out, record.event.ts());
            first = false;
        }
        for f in m.output_fields.iter() {
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, &f.0);
            out.push(b':');
            // Already JSON text (the policy engine renders numbers, strings and null).
            if f.0.as_str() == "evt.time" {
                write_int(out, record.event.ts());
            } else {
                out.extend_from_slice(f.1.as_bytes());
            }
        }
        out.extend_from_slice(b"}}");
        true
    }

    /// Falco's `time`: RFC 3339 in UTC with all nine fraction digits.
    fn write_time(&mut self, out: &mut Vec<u8>, ns: i64) {
        self.time.clear();
        write_iso_time(&mut self.time, ns);
        // write_iso_time trims trailing fraction zeros (Go's RFC3339Nano); Falco keeps nine.
        let body = self.time.strip_prefix(b"\"").and_then(|t| t.strip_suffix(b"Z\"")).unwrap_or(&self.time);
        let (secs, frac) = match body.iter().position(|b| *b == b'.') {
            Some(dot) => (&body[..dot], &body[dot + 1..]),
            None => (body, &b""[..]),
        };
        out.push(b'"');
        out.extend_from_slice(secs);
        out.push(b'.');
        out.extend_from_slice(frac);
        out.extend(std::iter::repeat(b'0').take(9usize.saturating_sub(frac.len())));
        out.extend_from_slice(b"Z\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(ns: i64) -> String {
        let mut out = Vec::new();
        FalcoEncoder::new().write_time(&mut out, ns);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn time_keeps_nine_fraction_digits() {
        assert_eq!(time(1_669_702_299_671_000_026), "\"2022-11-29T06:11:39.671000026Z\"");
        assert_eq!(time(1_669_702_299_000_000_000), "\"2022-11-29T06:11:39.000000000Z\"");
        assert_eq!(time(1_669_702_299_100_000_000), "\"2022-11-29T06:11:39.100000000Z\"");
    }
}
