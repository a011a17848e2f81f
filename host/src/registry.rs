//! The plugin registry: every driver, processor, handler and action the host can build,
//! whether linked in (builtins) or, later, loaded from a `.so` (register with an
//! [`Origin::Library`] origin through the same [`Registry::register`] seam).

use std::{collections::HashMap, fmt, path::PathBuf};

use sysflow_plugin_api::{ChannelType, PluginDescriptor, PluginFactory};

/// Where a plugin came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Linked into the binary, from the named crate.
    Builtin(&'static str),
    /// Loaded from a shared library.
    Library(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin(krate) => write!(f, "built-in ({krate})"),
            Origin::Library(path) => write!(f, "library {}", path.display()),
        }
    }
}

/// Plugin kinds, each its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Data source.
    Driver,
    /// Pipeline stage.
    Processor,
    /// Reader handler.
    Handler,
    /// Policy action.
    Action,
}

impl Kind {
    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Driver => "driver",
            Kind::Processor => "processor",
            Kind::Handler => "handler",
            Kind::Action => "action",
        }
    }

    fn of(factory: &PluginFactory) -> Kind {
        match factory {
            PluginFactory::Driver { .. } => Kind::Driver,
            PluginFactory::Processor { .. } => Kind::Processor,
            PluginFactory::Handler { .. } => Kind::Handler,
            PluginFactory::Action { .. } => Kind::Action,
        }
    }
}

/// A registered plugin.
#[derive(Clone)]
pub struct Registered {
    /// What the plugin library declared.
    pub descriptor: PluginDescriptor,
    /// Where it came from.
    pub origin: Origin,
}

impl Registered {
    /// Whether the plugin declares `key` among its configuration keys.
    pub fn declares_key(&self, key: &str) -> bool {
        self.descriptor.config_keys.iter().any(|k| k.name.as_str() == key)
    }

    /// Accepted input channel types (processors only).
    pub fn inputs(&self) -> &[ChannelType] {
        match &self.descriptor.factory {
            PluginFactory::Processor { inputs, .. } => inputs.as_slice(),
            _ => &[],
        }
    }

    /// Output channel type (drivers and processors).
    pub fn output(&self) -> Option<ChannelType> {
        match &self.descriptor.factory {
            PluginFactory::Processor { output, .. } => (*output).into_option(),
            PluginFactory::Driver { output, .. } => Some(*output),
            _ => None,
        }
    }
}

/// Every plugin the host knows, by kind and name.
#[derive(Default, Clone)]
pub struct Registry {
    plugins: HashMap<(Kind, String), Registered>,
    /// Why a plugin could not be loaded on demand, so validation reports that instead of "unknown".
    load_failures: HashMap<(Kind, String), String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The registry of the plugins linked into this binary.
    pub fn with_builtins() -> Result<Registry, Vec<String>> {
        let mut reg = Registry::new();
        let mut errors = Vec::new();
        let sets: [(&'static str, Vec<PluginDescriptor>); 4] = [
            ("sysflow-avro-drivers", sysflow_avro_drivers::descriptors()),
            ("sysflow-reader", sysflow_reader::descriptors()),
            ("sysflow-policy-engine", sysflow_policy_engine::descriptors()),
            // sysflow-kafka's `exporter` wraps sysflow-exporter's and adds the kafka transport.
            ("sysflow-kafka", sysflow_kafka::descriptors()),
        ];
        for (krate, descriptors) in sets {
            for d in descriptors {
                if let Err(e) = reg.register(d, Origin::Builtin(krate)) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(reg)
        } else {
            Err(errors)
        }
    }

    /// Adds a plugin; a second plugin of the same kind and name is refused, naming both origins.
    pub fn register(&mut self, descriptor: PluginDescriptor, origin: Origin) -> Result<(), String> {
        let kind = Kind::of(&descriptor.factory);
        let name = descriptor.name.as_str().to_string();
        if let Some(existing) = self.plugins.get(&(kind, name.clone())) {
            return Err(format!(
                "two {} plugins are named '{name}': one from {}, one from {origin}",
                kind.name(),
                existing.origin
            ));
        }
        self.plugins.insert((kind, name), Registered { descriptor, origin });
        Ok(())
    }

    /// Records why plugin `name` could not be loaded (shown instead of "unknown").
    pub fn note_load_failure(&mut self, kind: Kind, name: &str, why: String) {
        self.load_failures.insert((kind, name.to_string()), why);
    }

    /// Why plugin `name` could not be loaded, if a load was tried and failed.
    pub fn load_failure(&self, kind: Kind, name: &str) -> Option<&str> {
        self.load_failures.get(&(kind, name.to_string())).map(String::as_str)
    }

    /// Looks a plugin up.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Registered> {
        self.plugins.get(&(kind, name.to_string()))
    }

    /// Sorted names of the plugins of one kind, for "known: …" hints.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        let mut v: Vec<String> = self.plugins.keys().filter(|(k, _)| *k == kind).map(|(_, n)| n.clone()).collect();
        v.sort();
        v
    }

    /// `(known: a, b)` or `(none registered)`.
    pub fn known_hint(&self, kind: Kind) -> String {
        let names = self.names(kind);
        if names.is_empty() {
            format!("(no {} plugins are registered)", kind.name())
        } else {
            format!("(known: {})", names.join(", "))
        }
    }
}
