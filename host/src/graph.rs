//! The pipeline graph: which plugin runs each block, which channels join them, and the
//! checks that must all pass before anything starts.
//!
//! The graph is a forest of trees rooted at drivers: every processor reads exactly one
//! channel, every channel has exactly one consumer, and a channel may have several
//! producers (fan-in by sharing a channel; upstream only allowed that between drivers).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use sysflow_plugin_api::{ChannelType, Payload, INPUT_PAYLOAD_KEY};

use crate::{
    diagnostics::Diagnostics,
    pipeline_config::{Block, PipelineConfig, HOST_BLOCK_KEYS, HOST_DRIVER_KEYS, INJECTED_KEYS},
    registry::{Kind, Registered, Registry},
};

/// Who writes or reads a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A driver (index into [`Graph::drivers`]).
    Driver(usize),
    /// A processor (index into [`Graph::processors`]).
    Processor(usize),
}

/// A channel of the graph.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Name from the pipeline file.
    pub name: String,
    /// Type from the pipeline file.
    pub kind: ChannelType,
    /// Where it is first mentioned, for messages.
    pub first_mention: String,
    /// Writers.
    pub producers: Vec<Endpoint>,
    /// Readers (exactly one after validation).
    pub consumers: Vec<usize>,
}

/// What the host does when a block's plugin panics (block key `on.error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop the branch; its input is drained and counted as dropped (the default).
    #[default]
    Stop,
    /// Build a new instance with the same configuration and go on with the next batch,
    /// at most [`MAX_RESTARTS`] times; then stop as for [`OnError::Stop`].
    Restart,
}

/// Most restarts of one block under `on.error: restart`.
pub const MAX_RESTARTS: u32 = 5;

/// A processor node.
#[derive(Clone)]
pub struct ProcessorNode {
    /// The block it comes from.
    pub block: Block,
    /// Its plugin.
    pub plugin: Registered,
    /// Its handler's plugin, chained after it on the same thread.
    pub handler: Option<Registered>,
    /// Input channel index.
    pub input: usize,
    /// Output channel indexes.
    pub outputs: Vec<usize>,
    /// Policy after a panic (`on.error`).
    pub on_error: OnError,
}

impl ProcessorNode {
    /// Label for messages and logs.
    pub fn label(&self) -> String {
        self.block.label()
    }
}

/// A driver node.
#[derive(Clone)]
pub struct DriverNode {
    /// Label for messages: `drivers[0] (file)` or `driver (socket)` when chosen on the command line.
    pub label: String,
    /// Its plugin.
    pub plugin: Registered,
    /// Its configuration (the `drivers` entry, if any, plus `path`).
    pub config: Map<String, Value>,
    /// Output channel index.
    pub output: usize,
}

/// A validated pipeline.
#[derive(Clone, Default)]
pub struct Graph {
    /// Channels.
    pub channels: Vec<Channel>,
    /// Processors, in file order.
    pub processors: Vec<ProcessorNode>,
    /// Drivers.
    pub drivers: Vec<DriverNode>,
    /// Labels of drivers that have no input path (neither positional nor `path` key).
    pub drivers_without_path: Vec<String>,
}

/// Driver selection from the command line.
#[derive(Debug, Clone, Default)]
pub struct DriverChoice {
    /// `-driver` value.
    pub driver: Option<String>,
    /// Positional input path.
    pub path: Option<String>,
}

/// Builds and validates the graph; every problem is recorded in `diag`.
pub fn build(cfg: &PipelineConfig, registry: &Registry, choice: &DriverChoice, diag: &mut Diagnostics) -> Graph {
    let mut g = Graph::default();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // Channels next to a block or driver that already failed: their dangling-channel
    // errors would only repeat that failure.
    let mut tainted: HashSet<String> = HashSet::new();

    let mut channel = |g: &mut Graph,
                       tainted: &mut HashSet<String>,
                       name: &str,
                       kind: ChannelType,
                       at: String,
                       diag: &mut Diagnostics|
     -> Option<usize> {
        if let Some(&i) = by_name.get(name) {
            let c = &g.channels[i];
            if c.kind != kind {
                diag.error(format!(
                    "{at}: channel '{name}' is declared here as {} but as {} at {}",
                    kind.name(),
                    c.kind.name(),
                    c.first_mention
                ));
                tainted.insert(name.to_string());
                return None;
            }
            return Some(i);
        }
        g.channels.push(Channel {
            name: name.to_string(),
            kind,
            first_mention: at,
            producers: Vec::new(),
            consumers: Vec::new(),
        });
        by_name.insert(name.to_string(), g.channels.len() - 1);
        Some(g.channels.len() - 1)
    };

    for block in &cfg.blocks {
        let label = block.label();
        let Some(plugin) = registry.get(Kind::Processor, &block.processor) else {
            match registry.load_failure(Kind::Processor, &block.processor) {
                Some(why) => diag.error(format!("{label}: key 'processor': {why}")),
                None => diag.error(format!(
                    "{label}: key 'processor': unknown processor '{}' {}",
                    block.processor,
                    registry.known_hint(Kind::Processor)
                )),
            }
            tainted.extend(block.inputs.iter().chain(&block.outputs).map(|c| c.name.clone()));
            continue;
        };
        let mut output_type = plugin.output();
        let mut handler = None;
        if let Some(h) = &block.handler {
            match registry.get(Kind::Handler, h) {
                Some(reg) => {
                    match output_type {
                        Some(t) if t.payload() == sysflow_plugin_api::Payload::Flat => {
                            output_type = Some(ChannelType::Flat);
                        }
                        _ => diag.error(format!(
                            "{label}: key 'handler': processor '{}' does not produce flat records, so it cannot feed handler '{h}'",
                            block.processor
                        )),
                    }
                    handler = Some(reg.clone());
                }
                None => match registry.load_failure(Kind::Handler, h) {
                    Some(why) => diag.error(format!("{label}: key 'handler': {why}")),
                    None => diag.error(format!(
                        "{label}: key 'handler': unknown handler '{h}' {}",
                        registry.known_hint(Kind::Handler)
                    )),
                },
            }
        }
        // Inputs.
        let input = match block.inputs.as_slice() {
            [] => {
                // A missing or malformed `in` was reported already; only an empty list is new.
                if matches!(block.map.get("in"), Some(Value::Array(a)) if a.is_empty()) {
                    diag.error(format!("{label}: key 'in': a processor needs exactly one input channel"));
                }
                None
            }
            [one] => {
                if !plugin.inputs().contains(&one.kind) {
                    let accepted: Vec<&str> = plugin.inputs().iter().map(|t| t.name()).collect();
                    diag.error(format!(
                        "{label}: key 'in': processor '{}' reads {} channels, but channel '{}' is a {}",
                        block.processor,
                        match accepted.split_last() {
                            None => "no".to_string(),
                            Some((last, [])) => last.to_string(),
                            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                        },
                        one.name,
                        one.kind.name()
                    ));
                }
                channel(&mut g, &mut tainted, &one.name, one.kind, format!("{label} key 'in'"), diag)
            }
            many => {
                diag.error(format!(
                    "{label}: key 'in': only a single input channel is supported (found {}); to merge streams, let several blocks write the same channel",
                    many.len()
                ));
                None
            }
        };
        // Outputs.
        let mut outputs = Vec::new();
        for out in &block.outputs {
            match output_type {
                None => diag.error(format!(
                    "{label}: key 'out': processor '{}' produces no output, but 'out' names channel '{}'",
                    block.processor, out.name
                )),
                Some(t) if t != out.kind => diag.error(format!(
                    "{label}: key 'out': {} writes {} channels, but channel '{}' is a {}",
                    if handler.is_some() { "the handler" } else { "the processor" },
                    t.name(),
                    out.name,
                    out.kind.name()
                )),
                Some(_) => {}
            }
            if let Some(i) = channel(&mut g, &mut tainted, &out.name, out.kind, format!("{label} key 'out'"), diag) {
                if outputs.contains(&i) {
                    diag.error(format!("{label}: key 'out': channel '{}' is listed twice", out.name));
                } else {
                    outputs.push(i);
                }
            }
        }
        if block.outputs.is_empty() && output_type.is_some() {
            diag.warn(format!("{label}: no 'out' channel: this block's output records are discarded"));
        }
        let on_error = match block.map.get("on.error") {
            None => OnError::Stop,
            Some(Value::String(v)) if v == "stop" => OnError::Stop,
            Some(Value::String(v)) if v == "restart" => OnError::Restart,
            Some(other) => {
                diag.error(format!("{label}: key 'on.error': expected \"stop\" or \"restart\", found {other}"));
                OnError::Stop
            }
        };
        warn_unknown_keys(&label, &block.map, HOST_BLOCK_KEYS, INJECTED_KEYS, plugin, handler.as_ref(), diag);
        let Some(input) = input else { continue };
        let index = g.processors.len();
        g.channels[input].consumers.push(index);
        for &o in &outputs {
            g.channels[o].producers.push(Endpoint::Processor(index));
        }
        g.processors.push(ProcessorNode { block: block.clone(), plugin: plugin.clone(), handler, input, outputs, on_error });
    }

    // The root channel: the first channel created while loading (upstream's definition).
    let root = cfg.blocks.first().and_then(|b| b.inputs.first()).map(|c| c.name.clone());

    // Driver selection.
    let mut selected: Vec<(String, Option<usize>)> = Vec::new(); // (driver name, drivers entry index)
    match &choice.driver {
        Some(name) => {
            let entry = cfg.drivers.iter().position(|d| &d.driver == name);
            selected.push((name.clone(), entry));
        }
        None if !cfg.drivers.is_empty() => {
            for (i, d) in cfg.drivers.iter().enumerate() {
                selected.push((d.driver.clone(), Some(i)));
            }
        }
        None => selected.push(("file".to_string(), None)),
    }
    for (name, entry) in selected {
        let entry = entry.map(|i| &cfg.drivers[i]);
        let label = match entry {
            Some(e) => e.label(),
            None => format!("driver ({name})"),
        };
        let Some(plugin) = registry.get(Kind::Driver, &name) else {
            diag.error(format!("{label}: unknown driver '{name}' {}", registry.known_hint(Kind::Driver)));
            match entry.and_then(|e| e.output.as_ref()) {
                Some(c) => tainted.insert(c.name.clone()),
                None => root.as_ref().is_some_and(|r| tainted.insert(r.clone())),
            };
            continue;
        };
        let mut config = entry.map(|e| e.map.clone()).unwrap_or_default();
        let has_path = matches!(config.get("path"), Some(Value::String(_)));
        // A driver that declares no `path` key (kafka) reads from the network, not a path.
        if !has_path && plugin.declares_key("path") {
            match &choice.path {
                Some(p) => {
                    config.insert("path".to_string(), Value::String(p.clone()));
                }
                None => g.drivers_without_path.push(label.clone()),
            }
        }
        let out_type = plugin.output().unwrap_or(ChannelType::SysFlow);
        let output = match entry.and_then(|e| e.output.as_ref()) {
            Some(c) => {
                if c.kind != out_type {
                    diag.error(format!(
                        "{label}: key 'out': driver '{name}' writes {} channels, but channel '{}' is a {}",
                        out_type.name(),
                        c.name,
                        c.kind.name()
                    ));
                }
                channel(&mut g, &mut tainted, &c.name, c.kind, format!("{label} key 'out'"), diag)
            }
            None => match &root {
                Some(r) => match by_name_lookup(&g, r) {
                    Some(i) => {
                        if g.channels[i].kind != out_type {
                            diag.error(format!(
                                "{label}: driver '{name}' writes {} records to the root channel '{r}' (the first block's 'in'), which is a {}",
                                out_type.name(),
                                g.channels[i].kind.name()
                            ));
                        }
                        Some(i)
                    }
                    None => None, // the first block failed; its error is already reported
                },
                None => {
                    diag.error(format!("{label}: no output channel: the pipeline has no first block 'in' to write to"));
                    None
                }
            },
        };
        if let Some(entry) = entry {
            warn_driver_keys(&label, &entry.map, plugin, diag);
        }
        let Some(output) = output else { continue };
        let index = g.drivers.len();
        g.channels[output].producers.push(Endpoint::Driver(index));
        g.drivers.push(DriverNode { label, plugin: plugin.clone(), config, output });
    }

    check_channels(&g, &tainted, diag);
    check_cycles(&g, diag);
    track_payloads(&mut g, &tainted, diag);
    g
}

/// Works out the records each channel carries and tells every block its input's
/// ([`INPUT_PAYLOAD_KEY`]). A channel's type decides it, except for `eventchan`: a block
/// writing one passes on its own input's records, so after a policy engine reading
/// `otelchan` it carries OTel records (upstream's OTel pipeline writes it so). A block
/// fed OTel records must declare `otelchan` among its inputs.
fn track_payloads(g: &mut Graph, tainted: &HashSet<String>, diag: &mut Diagnostics) {
    let fixed = |c: &Channel| (c.kind != ChannelType::Event).then(|| c.kind.payload());
    let mut payload: Vec<Option<Payload>> = g.channels.iter().map(fixed).collect();
    // Each pass settles at least one more eventchan of an acyclic graph (cycles are refused above).
    for _ in 0..g.channels.len() {
        let mut changed = false;
        for (i, c) in g.channels.iter().enumerate() {
            if payload[i].is_some() || c.kind != ChannelType::Event {
                continue;
            }
            let from: Vec<Option<Payload>> = c
                .producers
                .iter()
                .map(|&e| match e {
                    Endpoint::Processor(p) => payload[g.processors[p].input],
                    Endpoint::Driver(_) => Some(Payload::Flat),
                })
                .collect();
            if from.iter().all(Option::is_some) {
                let otel = from.iter().any(|p| *p == Some(Payload::Otel));
                payload[i] = Some(if otel { Payload::Otel } else { Payload::Flat });
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for c in g.channels.iter().filter(|c| c.kind == ChannelType::Event) {
        if tainted.contains(&c.name) {
            continue;
        }
        let writers: Vec<(String, Option<Payload>)> = c
            .producers
            .iter()
            .filter_map(|&e| match e {
                Endpoint::Processor(p) => Some((g.processors[p].label(), payload[g.processors[p].input])),
                Endpoint::Driver(_) => None,
            })
            .collect();
        let otel: Vec<&str> = writers.iter().filter(|w| w.1 == Some(Payload::Otel)).map(|w| w.0.as_str()).collect();
        let flat: Vec<&str> = writers.iter().filter(|w| w.1 != Some(Payload::Otel)).map(|w| w.0.as_str()).collect();
        if !otel.is_empty() && !flat.is_empty() {
            diag.error(format!(
                "{}: key 'out': channel '{}' would carry OTel records (from {}) and flat records (from {}); give each its own channel",
                flat[0],
                c.name,
                otel.join(", "),
                flat.join(", ")
            ));
        }
    }
    for node in &mut g.processors {
        let carried = payload[node.input].unwrap_or(Payload::Flat);
        let channel = &g.channels[node.input];
        // A channel type the plugin does not read at all was reported when the block was read.
        let inputs = node.plugin.inputs();
        if carried == Payload::Otel
            && inputs.contains(&channel.kind)
            && !inputs.contains(&ChannelType::Otel)
            && !tainted.contains(&channel.name)
        {
            diag.error(format!(
                "{}: key 'in': channel '{}' ({}) carries OTel records, but processor '{}' does not take them (only blocks that read otelchan do, such as policyengine and exporter with format otel)",
                node.label(),
                channel.name,
                channel.kind.name(),
                node.block.processor
            ));
        }
        node.block.map.insert(INPUT_PAYLOAD_KEY.to_string(), Value::String(carried.name().to_string()));
    }
}

fn by_name_lookup(g: &Graph, name: &str) -> Option<usize> {
    g.channels.iter().position(|c| c.name == name)
}

fn endpoint_label(g: &Graph, e: Endpoint) -> String {
    match e {
        Endpoint::Driver(i) => g.drivers[i].label.clone(),
        Endpoint::Processor(i) => g.processors[i].label(),
    }
}

fn check_channels(g: &Graph, tainted: &HashSet<String>, diag: &mut Diagnostics) {
    for c in g.channels.iter().filter(|c| !tainted.contains(&c.name)) {
        let readers: Vec<String> = c.consumers.iter().map(|&i| g.processors[i].label()).collect();
        if c.producers.is_empty() && !c.consumers.is_empty() {
            diag.error(format!(
                "{}: key 'in': channel '{} {}' is dangling: it is read by {} but no driver or block writes it",
                readers[0],
                c.name,
                c.kind.name(),
                readers.join(", ")
            ));
        }
        if c.consumers.is_empty() && !c.producers.is_empty() {
            let writers: Vec<String> = c.producers.iter().map(|&e| endpoint_label(g, e)).collect();
            diag.error(format!(
                "{}: key 'out': channel '{} {}' is dangling: nothing reads it (add a block with \"in\": \"{} {}\" or remove it)",
                writers.join(", "),
                c.name,
                c.kind.name(),
                c.name,
                c.kind.name()
            ));
        }
        if c.consumers.len() > 1 {
            diag.error(format!(
                "{}: key 'in': channel '{}' is read by {}: a channel has exactly one reader (upstream made them compete for records); to give every record to each, list one output channel per reader in the producer's 'out'",
                readers[1],
                c.name,
                readers.join(" and ")
            ));
        }
    }
}

fn check_cycles(g: &Graph, diag: &mut Diagnostics) {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; g.processors.len()];
    let mut reported = false;
    for start in 0..g.processors.len() {
        if state[start] != 0 || reported {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let succ: Vec<usize> =
                g.processors[node].outputs.iter().flat_map(|&c| g.channels[c].consumers.iter().copied()).collect();
            if *next < succ.len() {
                let s = succ[*next];
                *next += 1;
                match state[s] {
                    0 => {
                        state[s] = 1;
                        stack.push((s, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|&(n, _)| n == s).unwrap_or(0);
                        let path: Vec<String> = stack[pos..].iter().map(|&(n, _)| g.processors[n].label()).collect();
                        diag.error(format!(
                            "{}: key 'out': the pipeline has a cycle: {} -> {}",
                            g.processors[node].label(),
                            path.join(" -> "),
                            g.processors[s].label()
                        ));
                        reported = true;
                        break;
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
}

fn warn_unknown_keys(
    label: &str,
    map: &Map<String, Value>,
    host_keys: &[&str],
    injected: &[&str],
    plugin: &Registered,
    handler: Option<&Registered>,
    diag: &mut Diagnostics,
) {
    for key in map.keys() {
        if key.starts_with('_') || host_keys.contains(&key.as_str()) || injected.contains(&key.as_str()) {
            continue;
        }
        if plugin.declares_key(key) || handler.is_some_and(|h| h.declares_key(key)) {
            continue;
        }
        let declared = plugin.descriptor.config_keys.iter().chain(handler.iter().flat_map(|h| h.descriptor.config_keys.iter()));
        let hint = crate::key_suggestion::hint(key, host_keys.iter().copied().chain(declared.map(|k| k.name.as_str())));
        diag.warn(format!(
            "{label}: key '{key}' is not a setting of processor '{}'{}: ignored{hint}",
            plugin.descriptor.name.as_str(),
            handler.map(|h| format!(" or handler '{}'", h.descriptor.name.as_str())).unwrap_or_default()
        ));
    }
}

fn warn_driver_keys(label: &str, map: &Map<String, Value>, plugin: &Registered, diag: &mut Diagnostics) {
    for key in map.keys() {
        if key.starts_with('_') || HOST_DRIVER_KEYS.contains(&key.as_str()) || plugin.declares_key(key) {
            continue;
        }
        let declared = plugin.descriptor.config_keys.iter().map(|k| k.name.as_str());
        let hint = crate::key_suggestion::hint(key, HOST_DRIVER_KEYS.iter().copied().chain(declared));
        diag.warn(format!(
            "{label}: key '{key}' is not a setting of driver '{}': ignored{hint}",
            plugin.descriptor.name.as_str()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline_config::{interpret, parse_str};

    const PIPE: &str = r#"{"pipeline": [
        {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
        {"processor": "exporter", "in": "flat flattenerchan", "export": "null"}]}"#;

    fn plan(text: &str, driver: Option<&str>, path: Option<&str>) -> (Graph, Diagnostics) {
        let registry = Registry::with_builtins().unwrap_or_else(|e| panic!("{e:?}"));
        let mut diag = Diagnostics::default();
        let cfg = interpret(&parse_str(text).expect("json"), "", &mut diag);
        let choice = DriverChoice { driver: driver.map(str::to_string), path: path.map(str::to_string) };
        let g = build(&cfg, &registry, &choice, &mut diag);
        (g, diag)
    }

    fn with_drivers(drivers: &str) -> String {
        PIPE.replacen('{', &format!("{{\"drivers\": {drivers}, "), 1)
    }

    #[test]
    fn default_driver_is_file_on_the_root_channel() {
        let (g, d) = plan(PIPE, None, Some("/t.sf"));
        assert!(d.ok(), "{:?}", d.errors);
        assert_eq!(g.drivers.len(), 1);
        assert_eq!(g.drivers[0].label, "driver (file)");
        assert_eq!(g.channels[g.drivers[0].output].name, "sysflow");
        assert_eq!(g.drivers[0].config["path"], "/t.sf");
    }

    #[test]
    fn socket_flag_selects_socket_even_with_a_drivers_section() {
        let text = with_drivers(r#"[{"driver": "file", "out": "sysflow sysflowchan", "path": "/own.sf"}]"#);
        let (g, d) = plan(&text, Some("socket"), Some("/s.sock"));
        assert!(d.ok(), "{:?}", d.errors);
        assert_eq!(g.drivers.len(), 1);
        assert_eq!(g.drivers[0].label, "driver (socket)");
        assert_eq!(g.drivers[0].config["path"], "/s.sock");
    }

    #[test]
    fn drivers_section_entries_keep_their_own_path() {
        let text = with_drivers(r#"[{"driver": "file", "out": "sysflow sysflowchan", "path": "/own.sf"}]"#);
        let (g, d) = plan(&text, None, Some("/cli.sf"));
        assert!(d.ok(), "{:?}", d.errors);
        assert_eq!(g.drivers[0].label, "drivers[0] (file)");
        assert_eq!(g.drivers[0].config["path"], "/own.sf");
        assert!(g.drivers_without_path.is_empty());
        let (g, _) = plan(&text, Some("file"), None);
        assert_eq!(g.drivers[0].config["path"], "/own.sf", "-driver file uses its entry");
    }

    #[test]
    fn missing_path_is_reported_per_driver() {
        let (g, d) = plan(PIPE, Some("socket"), None);
        assert!(d.ok());
        assert_eq!(g.drivers_without_path, vec!["driver (socket)".to_string()]);
    }

    #[test]
    fn unknown_plugin_does_not_cascade_into_dangling_errors() {
        let text = PIPE.replace("\"exporter\"", "\"exprter\"");
        let (_, d) = plan(&text, None, Some("/t"));
        assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
        assert!(d.errors[0].starts_with("pipeline[1] (exprter): key 'processor': unknown processor 'exprter'"));
    }
}
