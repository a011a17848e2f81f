//! The SysFlow reader: the `sysflowreader` processor and the `flattener` handler.
//!
//! The reader keeps upstream's entity cache (containers, pods, processes with three state
//! slots, files, memoised process context; all reset at each header, and bounded between
//! headers, see [`eviction`]) and turns every
//! event and flow into a [`sysflow_plugin_api::FlatRecord`] that shares the cached
//! entities by reference. The flattener forwards those records, optionally through
//! upstream's time-decay rate limiter.
//!
//! Where this differs from upstream sfprocessor 0.7 (each a deliberate fix):
//! * the memoised ancestry/container/pod of a process is dropped when a process, container
//!   or pod record it was built from arrives (upstream keeps it until the next header, so
//!   ancestry attributes go stale after an exec and miss late parents);
//! * a `poid` cycle ends the ancestry (upstream loops forever), and ancestries are capped
//!   at [`MAX_ANCESTRY_DEPTH`]; both are counted;
//! * network events (`NE`) are flattened like network flows (upstream ignores them);
//!   process flows (`PF`) are still ignored, and counted;
//! * missing entities are logged once per distinct id (capped), not once per record;
//! * between headers the cache is bounded (upstream keeps everything until the next
//!   header): exited processes and unowned idle files are evicted in stream time, under an
//!   LRU cap, and references to evicted entities are counted apart from missing ones;
//! * the rate limiter measures its TTL on the monotonic clock, not on the wall clock.

pub mod entity_cache;
pub mod eviction;
pub mod flattener;
pub mod reader;

use sysflow_plugin_api::{ChannelType, PluginDescriptor};

pub use entity_cache::{EntityCache, ProcessContext, MAX_ANCESTRY_DEPTH};
pub use eviction::{CacheLimits, EvictionStats};
pub use flattener::{semantic_hash, Flattener, RateLimiter};
pub use reader::{ReaderCounters, SysFlowReader};

/// The plugins this crate provides.
pub fn descriptors() -> Vec<PluginDescriptor> {
    vec![
        PluginDescriptor::processor::<SysFlowReader>(
            "sysflowreader",
            "resolves SysFlow records against an entity cache into flat records",
            env!("CARGO_PKG_VERSION"),
            reader::CONFIG_KEYS,
            &[ChannelType::SysFlow],
            Some(ChannelType::Flat),
        ),
        PluginDescriptor::handler::<Flattener>(
            "flattener",
            "forwards the reader's flat records, optionally rate-limited (filter.enabled)",
            env!("CARGO_PKG_VERSION"),
            flattener::CONFIG_KEYS,
        ),
    ]
}
