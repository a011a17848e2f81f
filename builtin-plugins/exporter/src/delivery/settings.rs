//! The `delivery.*` keys shared by the network exporters.

use std::time::Duration;

use sysflow_plugin_api::PluginConfig;

use crate::go_duration::parse_go_duration;

/// Records an exporter's queue holds by default (`delivery.queue`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 20_000;
/// How long a stop waits without delivery progress by default (`delivery.stopTimeout`).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a full queue does to the next record (`delivery.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Wait for room: the pipeline slows down, nothing is lost (default).
    Block,
    /// Count the record as dropped and go on.
    Drop,
}

/// How one exporter queues and sends.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `block` or `drop`.
    pub mode: DeliveryMode,
    /// Records the queue holds.
    pub queue_capacity: usize,
    /// How long a stop waits without any delivery progress before giving up the rest.
    pub stop_timeout: Duration,
    /// Most records per request.
    pub max_batch_items: usize,
    /// Most payload bytes per request (a larger single record still goes alone).
    pub max_batch_bytes: usize,
}

impl DeliverySettings {
    /// Reads `delivery.mode`, `delivery.queue` and `delivery.stopTimeout`; batch limits come
    /// from the transport.
    pub fn from_config(config: &PluginConfig, max_batch_items: usize, max_batch_bytes: usize) -> Result<Self, String> {
        let mode = match config.str_or("delivery.mode", "block").map_err(|e| e.to_string())? {
            "block" => DeliveryMode::Block,
            "drop" => DeliveryMode::Drop,
            other => return Err(format!("key 'delivery.mode': unknown mode '{other}' (use block or drop)")),
        };
        let queue_capacity = config
            .parse::<usize>("delivery.queue")
            .map_err(|e| e.to_string())?
            .unwrap_or(DEFAULT_QUEUE_CAPACITY);
        if queue_capacity == 0 {
            return Err("key 'delivery.queue': must be at least 1 record".into());
        }
        let stop_timeout = match config.str("delivery.stopTimeout").map_err(|e| e.to_string())? {
            Some(text) => parse_go_duration(text).map_err(|e| format!("key 'delivery.stopTimeout': {e}"))?,
            None => DEFAULT_STOP_TIMEOUT,
        };
        Ok(DeliverySettings {
            mode,
            queue_capacity,
            stop_timeout,
            max_batch_items: max_batch_items.max(1),
            max_batch_bytes: max_batch_bytes.max(1),
        })
    }
}
