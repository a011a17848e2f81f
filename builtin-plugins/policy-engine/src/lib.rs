//! The SysFlow policy engine (`policyengine` processor).
//!
//! Architecture: a language front end ([`falco`]: lexer, parser, macro/list resolution)
//! produces the language-neutral [`ir`]; [`ruleset`] compiles it once into typed
//! predicates over attribute accessors ([`attributes`], [`eval`]), bucketed by record
//! type; the [`processor`] runs the compiled [`RuleSet`] over batches in parallel and
//! swaps in reloaded rule sets ([`monitor`]) between batches.

pub mod actions;
pub mod attributes;
pub mod error;
pub mod eval;
pub mod falco;
pub mod ir;
pub mod jsonpath;
pub mod monitor;
pub mod processor;
pub mod ruleset;

use std::path::Path;

use sysflow_plugin_api::{ChannelType, PluginDescriptor};

pub use actions::{ActionRegistry, RuleAction};
pub use error::{PolicyError, PolicyErrors, PolicyWarning};
pub use processor::PolicyEngine;
pub use ruleset::{CompileOptions, EvalState, RuleInfo, RuleSet, UnknownAttributes, Verdict};

/// The plugins this crate provides.
pub fn descriptors() -> Vec<PluginDescriptor> {
    vec![PluginDescriptor::processor::<PolicyEngine>(
        "policyengine",
        "evaluates Falco-syntax policies on flat records (alert or enrich mode)",
        env!("CARGO_PKG_VERSION"),
        processor::CONFIG_KEYS,
        &[ChannelType::Flat],
        Some(ChannelType::Event),
    )]
}

/// Compiles the Falco-syntax policy file or directory at `path` with default options
/// (built-in actions, unknown attributes disable their rule).
pub fn compile_policies(path: &Path) -> Result<RuleSet, PolicyErrors> {
    compile_policies_with(path, &CompileOptions { actions: ActionRegistry::with_builtins(), ..Default::default() })
}

/// Compiles the Falco-syntax policy file or directory at `path`.
pub fn compile_policies_with(path: &Path, opts: &CompileOptions) -> Result<RuleSet, PolicyErrors> {
    let set = falco::load(path)?;
    Ok(RuleSet::compile(set, opts))
}

/// Compiles policy text held in memory (`name` is used in messages).
pub fn compile_policy_text(name: &str, text: &str, opts: &CompileOptions) -> Result<RuleSet, PolicyErrors> {
    let set = falco::load_sources(&[(name.into(), text.to_string())])?;
    Ok(RuleSet::compile(set, opts))
}
