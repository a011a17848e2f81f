//! Example handler plugin `printer`: logs the records of the selected types that the
//! SysFlow reader resolved, and passes every record on.
//!
//! Reader block: `{"processor": "sysflowreader", "handler": "printer",
//! "printer.types": "PE,NF", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}`.
//! `printer.types` is a comma-separated list of record types (`PE`, `FE`, `FF`, `NF`,
//! `NE`, `PF`, `KE`); absent or empty means every type.

use sysflow_plugin_api::{
    export_plugins, flat::oid_hash, ConfigKey, Counter, FlatRecord, Handler, Host, PluginConfig, PluginDescriptor,
    PluginError, RecordType,
};
use sysflow_plugin_api::abi_stable::std_types::RVec;

const TYPES_KEY: &str = "printer.types";

/// Configuration keys the printer understands.
const CONFIG_KEYS: &[ConfigKey] =
    &[ConfigKey::new(TYPES_KEY, "comma-separated record types to log, e.g. \"PE,NF\" (default: all)")];

/// Logs selected records.
pub struct Printer {
    host: Host,
    /// Indexed by `RecordType as usize`.
    selected: [bool; RecordType::ALL.len()],
    printed: u64,
}

fn parse_types(list: &str) -> Result<[bool; RecordType::ALL.len()], PluginError> {
    let mut selected = [list.trim().is_empty(); RecordType::ALL.len()];
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let t = RecordType::from_short_name(name).ok_or_else(|| {
            PluginError::new(format!("key '{TYPES_KEY}': unknown record type '{name}' (expected PE, FE, FF, NF, NE, PF or KE)"))
        })?;
        selected[t as usize] = true;
    }
    Ok(selected)
}

impl Handler for Printer {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let selected = parse_types(config.str_or(TYPES_KEY, "")?)?;
        Ok(Printer { host, selected, printed: 0 })
    }

    fn handle(&mut self, records: RVec<FlatRecord>) -> Result<Option<RVec<FlatRecord>>, PluginError> {
        for r in records.iter().filter(|r| self.selected[r.record_type() as usize]) {
            self.printed += 1;
            let exe = r.process().map_or("", |p| p.exe.as_str());
            self.host.info(&format!(
                "{} ts={} proc={} exe={exe} opflags={}",
                r.record_type().short_name(),
                r.event.ts(),
                oid_hash(r.proc_oid()),
                r.event.op_flags()
            ));
        }
        Ok(Some(records))
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::new("printed", self.printed)]
    }
}

export_plugins![PluginDescriptor::handler::<Printer>(
    "printer",
    "logs records of the selected types and passes all records on",
    env!("CARGO_PKG_VERSION"),
    CONFIG_KEYS,
)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_unknown_types_are_named() {
        let sel = parse_types("PE, NF").unwrap();
        assert!(sel[RecordType::ProcessEvent as usize] && sel[RecordType::NetworkFlow as usize]);
        assert!(!sel[RecordType::FileFlow as usize]);
        assert!(parse_types("").unwrap().iter().all(|s| *s));
        let err = parse_types("PE,XX").unwrap_err();
        assert!(err.message.contains("'XX'") && err.message.contains(TYPES_KEY), "{err}");
    }
}
