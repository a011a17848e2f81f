//! Placeholder: the real implementation is being written.

use sysflow_plugin_api::PluginDescriptor;

/// The plugins this crate provides.
pub fn descriptors() -> Vec<PluginDescriptor> {
    Vec::new()
}
