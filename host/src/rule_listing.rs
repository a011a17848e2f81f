//! `-listrules`: the compiled rules of every policy engine, with their record-type buckets,
//! so policy authors see what runs and on which records.

use std::path::Path;

use sysflow_plugin_api::{Payload, INPUT_PAYLOAD_KEY};
use sysflow_policy_engine::{
    compile_policies_in, dialect::Dialect, limits, otel, ActionRegistry, CompileOptions, PolicyLanguage,
    UnknownAttributes,
};

use crate::{graph::Graph, pipeline_config::PipelineConfig};

/// Prints the rules of each `policyengine` block; returns the exit status. A block whose
/// input carries OTel records (from `graph`) lists its rules as the OTel backend runs them.
pub fn print(cfg: &PipelineConfig, graph: &Graph) -> i32 {
    let mut status = 0;
    for block in cfg.blocks.iter().filter(|b| b.processor == "policyengine") {
        let otel_input = graph.processors.iter().any(|n| {
            n.block.index == block.index
                && n.block.map.get(INPUT_PAYLOAD_KEY).and_then(|v| v.as_str()) == Some(Payload::Otel.name())
        });
        let Some(policies) = block.map.get("policies").and_then(|v| v.as_str()) else {
            println!("# pipeline[{}] (policyengine): no policies (records pass through)", block.index);
            continue;
        };
        let unknown_attributes = match block.map.get("unknown.attributes").and_then(|v| v.as_str()) {
            Some("literal") => UnknownAttributes::Literal,
            _ => UnknownAttributes::Disable,
        };
        let key = |k: &str| block.map.get(k).and_then(|v| v.as_str());
        let dialect = match Dialect::from_key(key("dialect")) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("pipeline[{}] (policyengine): {e}", block.index);
                status = 1;
                continue;
            }
        };
        let opts =
            CompileOptions { unknown_attributes, dialect, actions: ActionRegistry::with_builtins(), ..Default::default() };
        // The same reading of `language`/`config` as the engine's, so the listing shows
        // what the engine runs.
        let language = match PolicyLanguage::from_keys(key("language"), key("config")) {
            Ok((language, warning)) => {
                if let Some(w) = warning {
                    tracing::warn!("pipeline[{}] (policyengine): {w}", block.index);
                }
                language
            }
            Err(e) => {
                tracing::error!("pipeline[{}] (policyengine): {e}", block.index);
                status = 1;
                continue;
            }
        };
        if otel_input {
            match limits::on_compile_thread(|| language.load(Path::new(policies))) {
                Ok(set) => {
                    println!("# pipeline[{}] (policyengine, {}, OTel attributes): {policies}", block.index, language.name());
                    println!("# kind\tname\t[record types]\tdetails");
                    for info in otel::describe(&set) {
                        println!("{info}");
                    }
                }
                Err(e) => {
                    tracing::error!("pipeline[{}] (policyengine): key 'policies': {e}", block.index);
                    status = 1;
                }
            }
            continue;
        }
        match compile_policies_in(&language, Path::new(policies), &opts) {
            Ok(rules) => {
                println!("# pipeline[{}] (policyengine, {}): {policies}", block.index, language.name());
                println!("# kind\tname\t[record types]\tdetails");
                for info in rules.describe() {
                    println!("{info}");
                }
            }
            Err(e) => {
                tracing::error!("pipeline[{}] (policyengine): {e}", block.index);
                status = 1;
            }
        }
    }
    status
}
