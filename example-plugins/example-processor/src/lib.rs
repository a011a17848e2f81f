//! Example processor plugin `example`: logs every process event it sees and passes each
//! batch on unchanged, like upstream's example plugin.
//!
//! Pipeline block:
//! `{"processor": "example", "in": "flat flattenerchan", "out": "out flattenerchan"}`.
//! Build with `cargo build --release -p example-processor` and install
//! `target/release/libexample_processor.so` as `example.so` in the plugin directory.

use sysflow_plugin_api::{
    export_plugins, Batch, ChannelType, Counter, Event, Host, PluginConfig, PluginDescriptor, PluginError, Processor,
};

/// Logs process events (`PE`) through the host's logger.
pub struct Example {
    host: Host,
    process_events: u64,
}

impl Processor for Example {
    fn new(_config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        host.info("example plugin ready");
        Ok(Example { host, process_events: 0 })
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        // Reading through the shared batch copies nothing; the same batch goes on.
        if let Batch::Flat(records) = &batch {
            for record in records.iter() {
                if let Event::Process(pe) = &record.event {
                    self.process_events += 1;
                    let exe = record.process().map_or("<unknown process>", |p| p.exe.as_str());
                    self.host.info(&format!("Process Event: {exe}, {}", pe.tid));
                }
            }
        }
        Ok(Some(batch))
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::new("process_events", self.process_events)]
    }
}

export_plugins![PluginDescriptor::processor::<Example>(
    "example",
    "logs process events and passes records through",
    env!("CARGO_PKG_VERSION"),
    &[],
    &[ChannelType::Flat, ChannelType::Event],
    Some(ChannelType::Flat),
)];
