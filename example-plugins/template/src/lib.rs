//! A processor plugin to start from: counts the records it passes on and can tag them.
//!
//! In a pipeline: `{"processor": "mystage", "mystage.tag": "seen", "in": "flat flattenerchan",
//! "out": "out flattenerchan"}`. Rename `mystage` (here and in your keys) to your plugin's name.

use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, RString}, export_plugins, Batch, ChannelType, ConfigKey, Counter, Host, PluginConfig,
    PluginDescriptor, PluginError, Processor,
};

/// Counts records; with `mystage.tag` set, adds that tag to every record it passes on.
pub struct MyStage {
    host: Host,
    tag: Option<RString>,
    records: u64,
}

impl Processor for MyStage {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        // Pipeline values are strings; PluginConfig's errors name the key.
        let tag = config.str("mystage.tag")?.filter(|t| !t.is_empty()).map(RString::from);
        host.info(&format!("tagging with {tag:?}"));
        Ok(MyStage { host, tag, records: 0 })
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        self.records += batch.len() as u64;
        let Some(tag) = &self.tag else {
            // Unchanged batches are passed on without copying (they are shared).
            return Ok(Some(batch));
        };
        // Copies only if another consumer still holds the batch.
        let Some(mut records) = batch.into_flat_records() else {
            return Err(PluginError::new("mystage takes flat records (flattenerchan or eventchan)"));
        };
        for record in records.iter_mut() {
            record.context.tags.push(tag.clone());
        }
        self.host.trace(&format!("tagged {} records", records.len()));
        Ok(Some(Batch::Flat(RArc::new(records))))
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::new("records", self.records)]
    }
}

export_plugins![PluginDescriptor::processor::<MyStage>(
    "mystage",                                      // the name pipeline.json uses
    "counts records and optionally tags them",      // one line, shown by `sfprocessor keys`
    env!("CARGO_PKG_VERSION"),                      // the plugin's own version
    &[ConfigKey::new("mystage.tag", "tag added to every record (default: none, records pass unchanged)")],
    &[ChannelType::Flat, ChannelType::Event],       // accepted input channel types
    Some(ChannelType::Flat),                        // output type (None: a sink)
)];
