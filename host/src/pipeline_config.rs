//! Upstream's `pipeline.json`: reading it, checking value types, and the keys the host injects.

use std::path::Path;

use serde_json::{Map, Value};
use sysflow_plugin_api::ChannelType;

use crate::{cli, diagnostics::Diagnostics};

/// The file as read: the raw entries of `pipeline` and `drivers`, before interpretation
/// (environment overrides work on this form, as upstream's do).
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    /// Entries of the `pipeline` array.
    pub pipeline: Vec<Value>,
    /// Entries of the `drivers` array.
    pub drivers: Vec<Value>,
    /// The top-level `metrics` key: address of the metrics listener (the `-metrics` flag wins).
    pub metrics: Option<String>,
}

/// Reads and parses the file; the error names the file.
pub fn read_file(path: &Path) -> Result<RawConfig, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!("config file {} is a directory", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
    parse_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// Parses the JSON text; top-level keys match case-insensitively, as upstream's config library does.
pub fn parse_str(text: &str) -> Result<RawConfig, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()))?;
    let Value::Object(top) = value else {
        return Err("the top level must be a JSON object with a 'pipeline' array".to_string());
    };
    let mut cfg = RawConfig::default();
    let mut seen_pipeline = false;
    for (key, value) in top {
        let slot = match key.to_ascii_lowercase().as_str() {
            "pipeline" => {
                seen_pipeline = true;
                &mut cfg.pipeline
            }
            "drivers" => &mut cfg.drivers,
            "metrics" => {
                match value {
                    Value::String(addr) => cfg.metrics = Some(addr),
                    other => {
                        return Err(format!(
                            "top-level key '{key}' must be a string \"host:port\", found {}",
                            json_kind(&other)
                        ))
                    }
                }
                continue;
            }
            _ => continue,
        };
        match value {
            Value::Array(items) => *slot = items,
            other => return Err(format!("top-level key '{key}' must be an array, found {}", json_kind(&other))),
        }
    }
    if !seen_pipeline {
        return Err("missing top-level 'pipeline' array".to_string());
    }
    Ok(cfg)
}

/// A channel reference `"<name> <type>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRef {
    /// Channel name (the key that joins producers and consumers).
    pub name: String,
    /// Declared type.
    pub kind: ChannelType,
}

/// A processor block of `pipeline`.
#[derive(Debug, Clone)]
pub struct Block {
    /// Position in the `pipeline` array.
    pub index: usize,
    /// `processor` value.
    pub processor: String,
    /// `handler` value, if any.
    pub handler: Option<String>,
    /// Input channels (`in`).
    pub inputs: Vec<ChannelRef>,
    /// Output channels (`out`).
    pub outputs: Vec<ChannelRef>,
    /// Every key, after overrides and injection: what the plugin's constructor receives.
    pub map: Map<String, Value>,
}

impl Block {
    /// How messages name this block: `pipeline[1] (policyengine)`.
    pub fn label(&self) -> String {
        block_label(self.index, &self.processor)
    }
}

/// How messages name a pipeline block.
pub fn block_label(index: usize, processor: &str) -> String {
    format!("pipeline[{index}] ({processor})")
}

/// An entry of `drivers`.
#[derive(Debug, Clone)]
pub struct DriverEntry {
    /// Position in the `drivers` array.
    pub index: usize,
    /// `driver` value.
    pub driver: String,
    /// Output channel (`out`), if given.
    pub output: Option<ChannelRef>,
    /// Every key: what the driver's constructor receives (plus `path`).
    pub map: Map<String, Value>,
}

impl DriverEntry {
    /// How messages name this entry: `drivers[0] (file)`.
    pub fn label(&self) -> String {
        format!("drivers[{}] ({})", self.index, self.driver)
    }
}

/// The interpreted configuration.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    /// Processor blocks, in file order.
    pub blocks: Vec<Block>,
    /// Driver entries, in file order.
    pub drivers: Vec<DriverEntry>,
}

/// Keys the host injects into every processor block (upstream's set, and how outputs open).
pub const INJECTED_KEYS: &[&str] = &[
    "version",
    "jsonschemaversion",
    "ecsversion",
    "buildnumber",
    "cluster.id",
    OUTPUT_MODE_KEY,
    sysflow_plugin_api::INPUT_PAYLOAD_KEY,
];

/// Injected key saying how exporters open their outputs (see [`OutputMode`]).
pub use sysflow_exporter::transport::OUTPUT_MODE_KEY;

/// How the pipeline's exporters open their outputs, told them in [`OUTPUT_MODE_KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// A plain start: an output file is replaced (upstream's behaviour).
    Replace,
    /// A SIGHUP reload: output files are appended to, never truncated.
    Append,
    /// `-test` and `-listrules`: outputs are checked, nothing is created or truncated.
    Check,
}

impl OutputMode {
    /// The value injected.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputMode::Replace => "replace",
            OutputMode::Append => "append",
            OutputMode::Check => "check",
        }
    }
}

/// Tells every block how to open its outputs (overwriting a user value, as for upstream's keys).
pub fn set_output_mode(cfg: &mut PipelineConfig, mode: OutputMode) {
    for block in &mut cfg.blocks {
        block.map.insert(OUTPUT_MODE_KEY.to_string(), Value::String(mode.as_str().to_string()));
    }
}

/// Keys the host itself interprets in processor blocks.
pub const HOST_BLOCK_KEYS: &[&str] = &["processor", "handler", "handlerlibpath", "in", "out", "on.error"];

/// Keys the host itself interprets in driver entries.
pub const HOST_DRIVER_KEYS: &[&str] = &["driver", "out", "path"];

/// Interprets the raw entries, checking every value's type; problems go to `diag`, and
/// blocks that cannot be interpreted at all are left out.
pub fn interpret(raw: &RawConfig, cluster_id: &str, diag: &mut Diagnostics) -> PipelineConfig {
    let mut cfg = PipelineConfig::default();
    if raw.pipeline.is_empty() {
        diag.error("the 'pipeline' array is empty: nothing to run");
    }
    for (index, entry) in raw.pipeline.iter().enumerate() {
        let Value::Object(map) = entry else {
            diag.error(format!("pipeline[{index}]: each entry must be a JSON object, found {}", json_kind(entry)));
            continue;
        };
        let processor = match map.get("processor") {
            Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
            Some(Value::String(_)) | None => {
                diag.error(format!("pipeline[{index}]: key 'processor': processor tag must exist in plugin config"));
                continue;
            }
            Some(other) => {
                diag.error(format!(
                    "pipeline[{index}]: key 'processor': expected a string, found {}",
                    json_kind(other)
                ));
                continue;
            }
        };
        let label = block_label(index, &processor);
        check_value_types(&label, map, diag);
        let handler = match map.get("handler") {
            Some(Value::String(h)) => Some(h.clone()),
            _ => None,
        };
        let inputs = match map.get("in") {
            None => {
                diag.error(format!("{label}: key 'in': in tag must exist in plugin config"));
                Vec::new()
            }
            Some(v) => channel_list(&label, "in", v, diag),
        };
        let outputs = match map.get("out") {
            None => Vec::new(),
            Some(v) => channel_list(&label, "out", v, diag),
        };
        let mut map = map.clone();
        inject_keys(&mut map, cluster_id);
        cfg.blocks.push(Block { index, processor, handler, inputs, outputs, map });
    }
    for (index, entry) in raw.drivers.iter().enumerate() {
        let Value::Object(map) = entry else {
            diag.error(format!("drivers[{index}]: each entry must be a JSON object, found {}", json_kind(entry)));
            continue;
        };
        let driver = match map.get("driver") {
            Some(Value::String(d)) if !d.trim().is_empty() => d.clone(),
            Some(other @ (Value::Array(_) | Value::Object(_) | Value::Number(_) | Value::Bool(_))) => {
                diag.error(format!("drivers[{index}]: key 'driver': expected a string, found {}", json_kind(other)));
                continue;
            }
            _ => {
                diag.error(format!("drivers[{index}]: key 'driver': every drivers entry needs a driver name"));
                continue;
            }
        };
        let entry_label = format!("drivers[{index}] ({driver})");
        check_value_types(&entry_label, map, diag);
        let output = match map.get("out") {
            None => None,
            Some(v) => {
                let mut list = channel_list(&entry_label, "out", v, diag);
                if list.len() > 1 {
                    diag.error(format!("{entry_label}: key 'out': a driver writes to exactly one channel"));
                }
                if list.is_empty() {
                    None
                } else {
                    Some(list.swap_remove(0))
                }
            }
        };
        cfg.drivers.push(DriverEntry { index, driver, output, map: map.clone() });
    }
    cfg
}

/// Upstream silently ignores a non-string option value (the default is used instead);
/// we refuse it, naming the block and key, because the user's setting would be lost.
fn check_value_types(label: &str, map: &Map<String, Value>, diag: &mut Diagnostics) {
    for (key, value) in map {
        if key.starts_with('_') {
            continue;
        }
        match (key.as_str(), value) {
            (_, Value::String(_)) => {}
            ("in" | "out", _) => {} // checked by channel_list
            ("kafka.config", Value::Object(_)) => {}
            // The exporter checks that each header value is a string, naming the header.
            ("http.headers", Value::Object(_)) => {}
            ("kafka.topics", Value::Array(items)) if items.iter().all(Value::is_string) => {}
            ("kafka.topics", _) => diag.error(format!(
                "{label}: key 'kafka.topics': expected an array of strings, found {}",
                short_json(value)
            )),
            ("kafka.config", _) => diag.error(format!(
                "{label}: key 'kafka.config': expected a JSON object, found {}",
                short_json(value)
            )),
            (key, _) => diag.error(format!(
                "{label}: key '{key}': expected a string value (pipeline option values are strings, write \"{}\"), found {}",
                suggest_string(value),
                short_json(value)
            )),
        }
    }
}

fn suggest_string(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "...".to_string(),
    }
}

/// Parses `in`/`out`: a string or an array of strings, each `"<name> <type>"`.
fn channel_list(label: &str, key: &str, value: &Value, diag: &mut Diagnostics) -> Vec<ChannelRef> {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let Value::String(s) = item else {
            diag.error(format!(
                "{label}: key '{key}': expected a channel \"<name> <type>\" (or an array of them), found {}",
                short_json(item)
            ));
            continue;
        };
        match parse_channel_ref(s) {
            Ok(c) => out.push(c),
            Err(e) => diag.error(format!("{label}: key '{key}': {e}")),
        }
    }
    out
}

/// Parses `"<name> <type>"`.
pub fn parse_channel_ref(s: &str) -> Result<ChannelRef, String> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let [name, kind] = fields.as_slice() else {
        return Err(format!("channel '{s}' must be of the form '<identifier> <type>' (e.g. 'flat flattenerchan')"));
    };
    let Some(kind) = ChannelType::from_name(kind) else {
        let known: Vec<&str> = ChannelType::ALL.iter().map(|t| t.name()).collect();
        return Err(format!("channel '{s}': unknown channel type '{kind}' (known: {})", known.join(", ")));
    };
    Ok(ChannelRef { name: (*name).to_string(), kind })
}

/// Sets upstream's injected keys, overwriting user values as upstream does.
fn inject_keys(map: &mut Map<String, Value>, cluster_id: &str) {
    let values = [
        ("version", cli::VERSION),
        ("jsonschemaversion", cli::JSON_SCHEMA_VERSION),
        ("ecsversion", cli::ECS_VERSION),
        ("buildnumber", cli::BUILD_NUMBER),
        ("cluster.id", cluster_id),
    ];
    for (k, v) in values {
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
}

/// A JSON value's kind, for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value shortened for messages.
fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(text: &str) -> (PipelineConfig, Diagnostics) {
        let raw = parse_str(text).expect("parse");
        let mut d = Diagnostics::default();
        let cfg = interpret(&raw, "", &mut d);
        (cfg, d)
    }

    #[test]
    fn case_insensitive_top_level_and_lists() {
        let (cfg, d) = interp(
            r#"{"PIPELINE":[{"processor":"sysflowreader","handler":"flattener","in":"sysflow sysflowchan",
               "out":["a flattenerchan","b flattenerchan"]}], "Drivers":[{"driver":"file","out":"sysflow sysflowchan"}]}"#,
        );
        assert!(d.ok(), "{:?}", d.errors);
        assert_eq!(cfg.blocks[0].outputs.len(), 2);
        assert_eq!(cfg.blocks[0].map["jsonschemaversion"], "5");
        assert_eq!(cfg.drivers[0].output.as_ref().map(|c| c.kind), Some(ChannelType::SysFlow));
    }

    #[test]
    fn non_string_value_names_block_and_key() {
        let (_, d) = interp(r#"{"pipeline":[{"processor":"exporter","in":"e eventchan","buffer":1000}]}"#);
        assert_eq!(d.errors.len(), 1);
        assert!(d.errors[0].contains("pipeline[0] (exporter): key 'buffer'"), "{}", d.errors[0]);
    }

    #[test]
    fn malformed_channels() {
        let (_, d) = interp(r#"{"pipeline":[{"processor":"x","in":"flat","out":"a b c"},{"processor":"y","in":"q wrongchan"}]}"#);
        assert_eq!(d.errors.len(), 3, "{:?}", d.errors);
        assert!(d.errors[0].contains("pipeline[0] (x): key 'in'"));
        assert!(d.errors[1].contains("key 'out'"));
        assert!(d.errors[2].contains("unknown channel type 'wrongchan'"));
    }

    #[test]
    fn missing_processor_and_in() {
        let (_, d) = interp(r#"{"pipeline":[{"in":"a sysflowchan"},{"processor":"x"}]}"#);
        assert!(d.errors[0].contains("pipeline[0]: key 'processor'"));
        assert!(d.errors[1].contains("pipeline[1] (x): key 'in'"));
    }
}
