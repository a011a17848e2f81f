//! librdkafka's own log lines and client errors, routed to the host's log with a limit.
//!
//! While a broker is down librdkafka reports every failed connect; a long outage would fill
//! the log. The first [`LOGGED_CLIENT_MESSAGES`] are logged, then only the 16th, 32nd, 64th …,
//! and all are counted (`client_errors`).

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::{
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
};
use sysflow_plugin_api::Host;

/// librdkafka messages logged one by one before only powers of two are.
pub const LOGGED_CLIENT_MESSAGES: u64 = 10;

/// Routes librdkafka's logs and errors to a plugin instance's log.
#[derive(Debug)]
pub struct ClientLog {
    host: Host,
    errors: AtomicU64,
}

impl ClientLog {
    /// A router logging as `host`.
    pub fn new(host: Host) -> ClientLog {
        ClientLog { host, errors: AtomicU64::new(0) }
    }

    /// Client errors and warnings reported so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn limited(&self, message: &str) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= LOGGED_CLIENT_MESSAGES || n.is_power_of_two() {
            self.host.warn(&format!("librdkafka ({n} client errors so far): {message}"));
        }
    }

    /// librdkafka's log callback.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Debug | RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => {
                self.host.trace(&format!("librdkafka {facility}: {message}"))
            }
            _ => self.limited(&format!("{facility}: {message}")),
        }
    }

    /// librdkafka's error callback (connection failures, all brokers down, …).
    pub fn error(&self, error: KafkaError, reason: &str) {
        // With `enable.partition.eof` (kafka.stop.at.end) librdkafka reports reaching the end
        // of a partition here as well as to the poll loop, which acts on it: news, not a fault.
        if matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            self.host.trace(&format!("librdkafka: {error}: {reason}"));
            return;
        }
        self.limited(&format!("{error}: {reason}"));
    }
}
