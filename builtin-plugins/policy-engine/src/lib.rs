//! The SysFlow policy engine (`policyengine` processor).
//!
//! Architecture: a language front end ([`falco`]: lexer, parser, macro/list resolution;
//! [`sigma`]: Sigma rules and field mappings; chosen by [`PolicyLanguage`]) produces the
//! language-neutral [`ir`]; [`ruleset`] compiles it once into typed
//! predicates over attribute accessors ([`attributes`], [`eval`]), bucketed by record
//! type; the [`processor`] runs the compiled [`RuleSet`] over batches in parallel and
//! swaps in reloaded rule sets ([`monitor`]) between batches. Fed OTel records (`otelchan`),
//! the engine compiles the same IR over OTLP attributes instead ([`otel`]).
//!
//! Every entry point below parses and compiles on a thread with a known stack
//! ([`limits::on_compile_thread`]) within the documented [`limits`], so that no policy
//! file can exhaust a stack or the memory: it is refused with an error instead.

pub mod actions;
pub mod attributes;
pub mod dialect;
pub mod error;
pub mod eval;
pub mod falco;
pub mod ir;
pub mod jsonpath;
pub mod language;
pub mod limits;
pub mod monitor;
pub mod otel;
pub mod output_template;
pub mod position;
pub mod processor;
pub mod ruleset;
pub mod sigma;

use std::path::Path;

use sysflow_plugin_api::{ChannelType, PluginDescriptor};

pub use actions::{ActionRegistry, RuleAction};
pub use language::PolicyLanguage;
pub use error::{PolicyError, PolicyErrors, PolicyWarning};
pub use processor::PolicyEngine;
pub use ruleset::{CompileOptions, EvalState, RuleInfo, RuleSet, UnknownAttributes, Verdict};

/// The plugins this crate provides.
pub fn descriptors() -> Vec<PluginDescriptor> {
    vec![PluginDescriptor::processor::<PolicyEngine>(
        "policyengine",
        "evaluates Falco-syntax or Sigma policies on flat records or OTel logs (alert or enrich mode)",
        env!("CARGO_PKG_VERSION"),
        processor::CONFIG_KEYS,
        &[ChannelType::Flat, ChannelType::Otel],
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
    compile_policies_in(&PolicyLanguage::Falco, path, opts)
}

/// Compiles policy text held in memory (`name` is used in messages).
pub fn compile_policy_text(name: &str, text: &str, opts: &CompileOptions) -> Result<RuleSet, PolicyErrors> {
    limits::on_compile_thread(|| {
        let set = falco::load_sources(&[(name.into(), text.to_string())])?;
        Ok(RuleSet::compile(set, opts))
    })
}

/// Compiles the policy file or directory at `path` written in `language`.
pub fn compile_policies_in(language: &PolicyLanguage, path: &Path, opts: &CompileOptions) -> Result<RuleSet, PolicyErrors> {
    limits::on_compile_thread(|| Ok(RuleSet::compile(language.load(path)?, opts)))
}

/// Compiles the Sigma rule file or directory at `path`, mapping field names with the
/// backend config file `config` (`None`: field names are used verbatim). A missing or
/// unreadable config, or a path with no rule files, is an error; a rule file that does
/// not parse is skipped with a warning.
pub fn compile_sigma_policies(path: &Path, config: Option<&Path>, opts: &CompileOptions) -> Result<RuleSet, PolicyErrors> {
    compile_policies_in(&PolicyLanguage::sigma(config)?, path, opts)
}

/// Compiles one Sigma rule held in memory (`name` is used in messages).
pub fn compile_sigma_text(name: &str, text: &str, config: &sigma::SigmaConfig, opts: &CompileOptions) -> RuleSet {
    limits::on_compile_thread(|| RuleSet::compile(sigma::load_sources(&[(name.into(), text.to_string())], config), opts))
}
