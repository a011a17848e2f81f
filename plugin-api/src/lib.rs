#![warn(missing_docs)]
//! The contract between `sfprocessor` and its plugins.
//!
//! A plugin is a `cdylib` crate that depends on this crate only. It implements one of the
//! four plugin kinds — [`Driver`] (a data source), [`Processor`] (a pipeline stage),
//! [`Handler`] (what the SysFlow reader hands resolved records to) or [`Action`] (called
//! by the policy engine on matched records) — and lists them with [`export_plugins!`].
//!
//! Data crosses the boundary in batches ([`Batch`]) of ABI-stable records:
//! [`SysFlowRecord`] (decoded Avro), and [`FlatRecord`] (an event with its process,
//! ancestry, container, pod and files resolved, plus policy results), and [`OtelRecord`]
//! (one OTLP `ResourceLogs`, protobuf bytes).
//!
//! ```
//! use sysflow_plugin_api::{Batch, Host, PluginConfig, PluginError, Processor};
//!
//! /// Passes every batch through unchanged.
//! struct PassThrough;
//!
//! impl Processor for PassThrough {
//!     fn new(_config: &PluginConfig, _host: Host) -> Result<Self, PluginError> {
//!         Ok(PassThrough)
//!     }
//!     fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
//!         Ok(Some(batch))
//!     }
//! }
//! ```
//!
//! A driver that sets [`Driver::HANDOFF`] can be replaced while it runs (a new build of its
//! library, a changed pipeline block): it hands its live input to the successor with
//! [`Driver::handoff`] (descriptors and state in a [`DriverHandoff`]), and the successor
//! goes on from there in [`Driver::resume`], so the collector notices nothing and no record
//! is read twice or skipped.
//!
//! The crate's version is the ABI version: the host refuses a plugin built against an
//! incompatible version (a different minor version while at 0.x) before running its code.

pub mod action_object;
pub mod batch;
pub mod config;
pub mod enums;
pub mod error;
pub mod ffi;
pub mod flat;
pub mod opflags;
pub mod openflags;
pub mod plugin;
pub mod records;

pub use abi_stable;
pub use action_object::{LoadedAction, LoadedActions};
pub use batch::{Batch, ChannelType, OtelRecord, Payload, INPUT_PAYLOAD_KEY};
pub use config::PluginConfig;
pub use ffi::{ConfigKey, PluginDescriptor, PluginFactory, PluginLibrary, PluginLibraryRef};
pub use flat::{FlatRecord, PolicyContext, RuleMatch};
pub use plugin::{Action, Counter, CounterKind, Driver, DriverHandoff, DriverPoll, Handler, Host, LogLevel, PluginError, Processor};
pub use records::*;

/// Exports a plugin library's root module listing the given [`PluginDescriptor`]s.
///
/// Use it once per library, at the crate root. The descriptors are evaluated in a `const`
/// item, so configuration keys can be declared inline (`&[ConfigKey::new(..)]`):
///
/// ```
/// use sysflow_plugin_api::{
///     export_plugins, Batch, ChannelType, ConfigKey, Host, PluginConfig, PluginDescriptor, PluginError, Processor,
/// };
///
/// struct PassThrough;
/// impl Processor for PassThrough {
///     fn new(_config: &PluginConfig, _host: Host) -> Result<Self, PluginError> {
///         Ok(PassThrough)
///     }
///     fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
///         Ok(Some(batch))
///     }
/// }
///
/// export_plugins![PluginDescriptor::processor::<PassThrough>(
///     "passthrough",
///     "passes batches",
///     env!("CARGO_PKG_VERSION"),
///     &[ConfigKey::new("passthrough.note", "free text, ignored (default empty)")],
///     &[ChannelType::Flat],
///     Some(ChannelType::Flat),
/// )];
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugins {
    ($($descriptor:expr),* $(,)?) => {
        // What `#[abi_stable::export_root_module]` generates, spelled with `$crate` paths so
        // a plugin needs no direct `abi_stable` dependency (the attribute names `::abi_stable`).
        // The symbol is abi_stable's ROOT_MODULE_LOADER_NAME (checked by a plugin-api test).
        #[doc(hidden)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static SYSFLOW_PLUGIN_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            fn root_module() -> $crate::PluginLibraryRef {
                use $crate::abi_stable::prefix_type::PrefixTypeTrait;
                // A `const` item: temporaries such as an inline `&[ConfigKey::new(..)]` are
                // `'static` there, while in the function body they would not be (E0716).
                const DESCRIPTORS: &[$crate::PluginDescriptor] = &[$($descriptor),*];
                extern "C" fn plugins() -> $crate::abi_stable::std_types::RVec<$crate::PluginDescriptor> {
                    DESCRIPTORS.to_vec().into()
                }
                $crate::PluginLibrary { plugins }.leak_into_prefix()
            }
            extern "C" fn erased_root_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(root_module)
            }
            // SAFETY: the constructor returns a `PluginLibraryRef`, the module type named here.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::PluginLibraryRef>(
                    erased_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod export_symbol_tests {
    #[test]
    fn export_plugins_uses_abi_stables_root_module_symbol() {
        // Keep in sync with the `export_name` in `export_plugins!`.
        assert_eq!(abi_stable::library::ROOT_MODULE_LOADER_NAME, "_1as_0lib_1header_0root_bmodule_bloader");
    }
}
