//! The SysFlow policy engine (`policyengine` processor).
//!
//! Policies are written in upstream's Falco-like language; a front end turns them into an
//! AST and one compiled evaluator runs them against flat records.

pub mod processor;

use sysflow_plugin_api::{ChannelType, PluginDescriptor};

pub use processor::PolicyEngine;

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
