//! The `policyengine` processor: configuration, modes, batch evaluation.

use sysflow_plugin_api::{ffi::ConfigKey, Batch, Counter, Host, PluginConfig, PluginError, Processor};

/// Configuration keys the processor understands.
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new("policies", "policy file or directory (walked recursively for .yaml/.yml)"),
    ConfigKey::new("mode", "alert (default: forward matched records only) or enrich (forward all)"),
    ConfigKey::new("language", "policy language: falco (default) or sigma"),
    ConfigKey::new("config", "sigma backend configuration file (field mappings)"),
    ConfigKey::new("monitor", "policy hot reload: none (default) or local"),
    ConfigKey::new("monitor.interval", "seconds between checks for a reloaded rule set (default 30)"),
    ConfigKey::new("concurrency", "worker threads evaluating a batch (default 5)"),
    ConfigKey::new("actiondir", "directory of action plugins (.so)"),
    ConfigKey::new("bench.rulesetsize", "benchmarking: number of rules to keep"),
    ConfigKey::new("bench.ruleindex", "benchmarking: index of the first rule to keep"),
];

/// Whether unmatched records are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward only records that matched at least one rule.
    Alert,
    /// Forward every record not dropped by a filter.
    Enrich,
}

/// The policy engine processor.
pub struct PolicyEngine {
    host: Host,
    mode: Mode,
    bypass: bool,
    records_in: u64,
    records_out: u64,
}

impl Processor for PolicyEngine {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let mode = match config.str("mode")? {
            None | Some("alert") => Mode::Alert,
            Some("enrich") => Mode::Enrich,
            Some(other) => {
                host.warn(&format!("key 'mode': unknown value '{other}', using enrich (as upstream)"));
                Mode::Enrich
            }
        };
        let policies = config.str("policies")?;
        if policies.is_none() && mode == Mode::Alert {
            return Err(PluginError::new(
                "configuration attribute 'policies' missing from policy engine plugin settings",
            ));
        }
        let concurrency: usize = config.parse_or("concurrency", 5)?;
        let _ = concurrency;
        let bypass = policies.is_none();
        if !bypass {
            return Err(PluginError::new("key 'policies': policy compilation is not available yet in this build"));
        }
        Ok(PolicyEngine { host, mode, bypass, records_in: 0, records_out: 0 })
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        let n = batch.len() as u64;
        self.records_in += n;
        if self.bypass {
            self.records_out += n;
            return Ok(Some(batch));
        }
        let _ = (&self.host, self.mode);
        Ok(Some(batch))
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::new("records_in", self.records_in), Counter::new("records_out", self.records_out)]
    }
}
