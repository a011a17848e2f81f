//! Example policy action `now`: tags each record a rule matched with the time the action
//! ran, as `now_in_nanos:<nanoseconds since the epoch>`.
//!
//! In a policy rule: `actions: [now]`; install the library in the policy engine's
//! `actiondir`.

use std::time::{SystemTime, UNIX_EPOCH};

use sysflow_plugin_api::{export_plugins, Action, FlatRecord, Host, PluginDescriptor, PluginError};

/// Adds the `now_in_nanos` tag.
pub struct Now;

impl Action for Now {
    fn new(_host: Host) -> Result<Self, PluginError> {
        Ok(Now)
    }

    fn apply(&self, record: &mut FlatRecord) -> Result<(), PluginError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| PluginError::new(format!("system clock is before the epoch: {e}")))?
            .as_nanos();
        record.context.tags.push(format!("now_in_nanos:{nanos}").into());
        Ok(())
    }
}

export_plugins![PluginDescriptor::action::<Now>(
    "now",
    "tags matched records with now_in_nanos:<ns>",
    env!("CARGO_PKG_VERSION"),
)];
