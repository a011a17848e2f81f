//! The smallest useful plugin: a processor that hands every batch on unchanged.
//!
//! Copy this crate to start a plugin: keep `crate-type = ["cdylib"]` in `Cargo.toml`,
//! implement one of the plugin traits, and list the plugin in `export_plugins!`.
//! In a pipeline: `{"processor": "passthrough", "in": "flat flattenerchan", "out": "out flattenerchan"}`.

use sysflow_plugin_api::{export_plugins, Batch, ChannelType, Host, PluginConfig, PluginDescriptor, PluginError, Processor};

/// Passes batches through. Batches are shared (`RArc`), so this copies nothing.
pub struct Passthrough;

impl Processor for Passthrough {
    fn new(_config: &PluginConfig, _host: Host) -> Result<Self, PluginError> {
        Ok(Passthrough)
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        Ok(Some(batch))
    }
}

export_plugins![PluginDescriptor::processor::<Passthrough>(
    "passthrough",
    "passes batches through unchanged",
    env!("CARGO_PKG_VERSION"),
    &[],
    &[ChannelType::Flat, ChannelType::Event],
    Some(ChannelType::Flat),
)];
