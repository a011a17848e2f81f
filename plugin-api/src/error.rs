//! The error a plugin entry point returns. Its own module so that `config` and `plugin`
//! both use it without depending on each other.

use abi_stable::{std_types::RString, StableAbi};

/// An error returned by a plugin entry point.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PluginError {
    /// What went wrong, with context (file, key, line …).
    pub message: RString,
    /// True when the error is a caught panic: the instance must not be used again.
    pub panicked: bool,
}

impl PluginError {
    /// An ordinary error.
    pub fn new(message: impl Into<String>) -> PluginError {
        PluginError { message: RString::from(message.into()), panicked: false }
    }

    /// A caught panic.
    pub fn panic(message: impl Into<String>) -> PluginError {
        PluginError { message: RString::from(message.into()), panicked: true }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}
