//! Policy actions: what runs on a record when a rule naming the action matched.
//!
//! The registry maps action names to implementations: built-in Rust actions and action
//! plugins (`ActionBox`, from `.so` libraries the host loads).

use std::{collections::HashMap, sync::Arc};

use abi_stable::std_types::RString;
use sysflow_plugin_api::{ffi::ActionBox, FlatRecord};

/// An action the engine can run on a matched record.
pub trait RuleAction: Send + Sync {
    /// Acts on the record (typically adds tags to `record.context.tags`).
    fn apply(&self, record: &mut FlatRecord) -> Result<(), String>;
}

/// Upstream's example action: tags the record with the current time.
#[derive(Debug, Default)]
pub struct NowAction;

impl RuleAction for NowAction {
    fn apply(&self, record: &mut FlatRecord) -> Result<(), String> {
        let ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        record.context.tags.push(RString::from(format!("now_in_nanos:{ns}")));
        Ok(())
    }
}

/// An action provided by a plugin library.
pub struct PluginAction(pub ActionBox);

impl RuleAction for PluginAction {
    fn apply(&self, record: &mut FlatRecord) -> Result<(), String> {
        self.0.apply(record).into_result().map_err(|e| e.message.to_string())
    }
}

/// Action names and their implementations.
#[derive(Clone, Default)]
pub struct ActionRegistry {
    map: HashMap<String, Arc<dyn RuleAction>>,
}

impl std::fmt::Debug for ActionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        f.debug_struct("ActionRegistry").field("actions", &names).finish()
    }
}

impl ActionRegistry {
    /// A registry with the built-in actions (`now`).
    pub fn with_builtins() -> ActionRegistry {
        let mut r = ActionRegistry::default();
        r.register("now", Arc::new(NowAction));
        r
    }

    /// Adds or replaces an action; returns true when a previous one was replaced.
    pub fn register(&mut self, name: &str, action: Arc<dyn RuleAction>) -> bool {
        self.map.insert(name.to_string(), action).is_some()
    }

    /// Adds or replaces an action plugin instance.
    pub fn register_plugin(&mut self, name: &str, action: ActionBox) -> bool {
        self.register(name, Arc::new(PluginAction(action)))
    }

    /// The action called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn RuleAction>> {
        self.map.get(name).cloned()
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.keys().cloned().collect();
        v.sort();
        v
    }
}
