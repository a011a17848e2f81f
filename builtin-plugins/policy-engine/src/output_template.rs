//! Falco output templates (a rule's `output:`): parsed once when the rule compiles,
//! rendered for each alert under `"dialect": "falco"` (docs/policies.md, "Output templates").
//!
//! A `%field` (or `%(field)`) is replaced by the field's value as Falco prints it; a field
//! SysFlow cannot fill, or an empty value, prints `<NA>` as Falco does.

use std::fmt::Write;

use abi_stable::std_types::{RString, RVec, Tuple2};
use sysflow_plugin_api::{FlatRecord, RuleMatch};

use crate::{
    attributes::{self, Attr, Kind},
    dialect,
};

/// What Falco prints for a field without a value.
pub const NOT_AVAILABLE: &str = "<NA>";

/// Longest field name read after `%`; a longer run of name characters ends the field there,
/// so a malformed template cannot make one field swallow the rest of the text.
pub const MAX_FIELD_NAME: usize = 128;

#[derive(Debug, Clone)]
enum Source {
    Attr(Attr),
    Index(Attr, usize),
    /// `evt.time`: the event time of day, `HH:MM:SS.nnnnnnnnn` (UTC).
    EvtTime,
    /// `container.info`: `container_id=… container_name=…`.
    ContainerInfo,
    /// `evt.type`: the system call name Falco prints for the record's operation.
    EvtType(Attr),
    Unknown,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Field { name: String, source: Source },
}

/// A parsed output template.
#[derive(Debug, Clone)]
pub struct OutputTemplate {
    pieces: Vec<Piece>,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']')
}

fn source_of(name: &str) -> Source {
    match name {
        "evt.time" => return Source::EvtTime,
        "container.info" => return Source::ContainerInfo,
        _ => {}
    }
    if let Some(a) = dialect::falco_field(name).or_else(|| attributes::lookup(name)) {
        if name == "evt.type" {
            return Source::EvtType(a);
        }
        return Source::Attr(a);
    }
    if let Some((base, rest)) = name.split_once('[') {
        let index = rest.strip_suffix(']').and_then(|i| i.parse::<usize>().ok());
        if let (Some(a), Some(i)) = (dialect::falco_field(base).or_else(|| attributes::lookup(base)), index) {
            if a.is_indexable() {
                return Source::Index(a, i);
            }
        }
    }
    Source::Unknown
}

impl OutputTemplate {
    /// Parses a template; `%` not followed by a field name stays literal text.
    pub fn parse(text: &str) -> OutputTemplate {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, consumed) = if let Some(inner) = after.strip_prefix('(') {
                match inner.find(')') {
                    Some(end) if end <= MAX_FIELD_NAME => (&inner[..end], end + 2),
                    _ => ("", 0),
                }
            } else {
                let len = after.bytes().take(MAX_FIELD_NAME).take_while(|b| is_name_byte(*b)).count();
                // A sentence's full stop after a field is not part of its name.
                let name = after[..len].trim_end_matches('.');
                (name, name.len())
            };
            if name.is_empty() {
                literal.push('%');
                rest = after;
                continue;
            }
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Field { name: name.to_string(), source: source_of(name) });
            rest = &after[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        OutputTemplate { pieces }
    }

    /// The field names the template refers to, in order, without repeats.
    pub fn field_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for p in &self.pieces {
            if let Piece::Field { name, .. } = p {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// The rule's match record for one alert: `base` with the rendered output and the
    /// template's fields (values as JSON text: numbers, strings, `null` for `<NA>`).
    pub fn render(&self, base: &RuleMatch, r: &FlatRecord) -> RuleMatch {
        let mut output = String::new();
        let mut fields: RVec<Tuple2<RString, RString>> = RVec::new();
        let mut buf = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => output.push_str(t),
                Piece::Field { name, source } => {
                    let (value, numeric) = value_of(source, r, &mut buf);
                    let value = if value.is_empty() { NOT_AVAILABLE } else { value };
                    output.push_str(value);
                    if fields.iter().any(|f| f.0.as_str() == name) {
                        continue;
                    }
                    let json = if value == NOT_AVAILABLE {
                        "null".to_string()
                    } else if numeric {
                        value.to_string()
                    } else {
                        serde_json::Value::String(value.to_string()).to_string()
                    };
                    fields.push(Tuple2(RString::from(name.as_str()), RString::from(json)));
                }
            }
        }
        RuleMatch { output: RString::from(output), output_fields: fields, ..base.clone() }
    }
}

/// A field's printed value and whether it is a number.
fn value_of<'a>(source: &Source, r: &'a FlatRecord, buf: &'a mut String) -> (&'a str, bool) {
    match source {
        Source::Attr(a) => {
            let numeric = a.kind() == Kind::Int;
            (a.str_form(r, buf), numeric)
        }
        Source::Index(a, i) => (a.element(r, *i, buf), false),
        Source::EvtTime => {
            buf.clear();
            let ns = r.event.ts();
            let secs = ns.div_euclid(1_000_000_000).rem_euclid(86_400);
            let _ = write!(
                buf,
                "{:02}:{:02}:{:02}.{:09}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                ns.rem_euclid(1_000_000_000)
            );
            (buf, false)
        }
        Source::ContainerInfo => {
            buf.clear();
            // Falco names the host `host` where there is no container.
            let (id, name) = match r.container() {
                Some(c) => (c.id.as_str(), c.name.as_str()),
                None => ("host", "host"),
            };
            let _ = write!(buf, "container_id={id} container_name={name}");
            (buf, false)
        }
        Source::EvtType(a) => {
            // Falco users read system call names (`execve`), not SysFlow's operation names
            // (`EXEC`): the first name of the dialect's table stands for the operation.
            let op = a.str_form(r, buf);
            match dialect::SYSCALL_OPS.iter().find(|(_, o)| *o == op) {
                Some((syscall, _)) => (syscall, false),
                None => (op, false),
            }
        }
        Source::Unknown => ("", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_and_unknown_ones_kept() {
        let t = OutputTemplate::parse(
            "Shell (user=%user.name cmd=%(proc.cmdline) x=%evt.arg.request gp=%proc.aname[2]). 100%",
        );
        assert_eq!(t.field_names(), ["user.name", "proc.cmdline", "evt.arg.request", "proc.aname[2]"]);
        assert!(matches!(t.pieces.last(), Some(Piece::Text(s)) if s == "). 100%"));
        assert!(t
            .pieces
            .iter()
            .any(|p| matches!(p, Piece::Field { source: Source::Unknown, name } if name == "evt.arg.request")));
        assert!(t.pieces.iter().any(|p| matches!(p, Piece::Field { source: Source::Index(Attr::ProcAName, 2), .. })));
    }
}
