//! SysFlow Avro decoding and the `file` and `socket` drivers.
//!
//! - [`DatumDecoder`]: compiles a writer schema once, then decodes binary SysFlow datums
//!   straight into [`sysflow_plugin_api::SysFlowRecord`]s (fields resolved by name, enums
//!   by symbol, older layouts defaulted).
//! - [`ocf::TraceReader`]: reads Avro object container files (`*.sf`), recovering from
//!   damaged blocks.
//! - [`FileDriver`] / [`SocketDriver`]: the data sources registered by [`descriptors`]; a
//!   FIFO given to the file driver is read on a thread of its own (`fifo_input`).

#![warn(missing_docs)]

mod cursor;
mod decode;
pub mod error;
mod fifo_input;
pub mod file_driver;
pub mod ocf;
mod schema;
mod seqpacket_batch;
pub mod socket_driver;

pub use decode::{DatumDecoder, SCHEMA_V5};
pub use error::{DecodeError, ErrorKind};
pub use file_driver::FileDriver;
pub use ocf::{DecodeStats, ReadBuffers, TraceReader};
pub use socket_driver::SocketDriver;

use sysflow_plugin_api::{ConfigKey, PluginDescriptor};

const FILE_KEYS: &[ConfigKey] = &[ConfigKey::new(
    "path",
    "trace file, directory whose regular files (not subdirectories) are read in name order, or FIFO",
)];
const SOCKET_KEYS: &[ConfigKey] =
    &[ConfigKey::new("path", "path of the AF_UNIX SOCK_SEQPACKET socket the collector connects to")];

/// The plugins this crate provides: the `file` and `socket` drivers.
pub fn descriptors() -> Vec<PluginDescriptor> {
    vec![
        PluginDescriptor::driver::<FileDriver>(
            "file",
            "reads SysFlow Avro object container files (a file or a directory of files)",
            env!("CARGO_PKG_VERSION"),
            FILE_KEYS,
        ),
        PluginDescriptor::driver::<SocketDriver>(
            "socket",
            "receives SysFlow datums from a live collector over a unix seqpacket socket",
            env!("CARGO_PKG_VERSION"),
            SOCKET_KEYS,
        ),
    ]
}
