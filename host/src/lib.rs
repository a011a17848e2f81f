//! `sfprocessor`, the SysFlow processor host: reads upstream's `pipeline.json`, validates the
//! whole plugin graph, then runs every node on its own thread with bounded batch channels
//! between them, draining in order at end of input or on SIGINT/SIGTERM.
//!
//! The binary is a thin wrapper around [`app::main_with_args`].

#![warn(missing_docs)]

pub mod action_watch;
pub mod app;
pub mod cli;
pub mod diagnostics;
pub mod env_overrides;
pub mod graph;
pub mod hot_reload;
pub mod key_listing;
pub mod key_suggestion;
pub mod logging;
pub mod metrics;
pub mod metrics_endpoint;
pub mod pipeline_config;
pub mod pipeline_reload;
pub mod plugin_services;
pub mod record_explainer;
pub mod plugins;
pub mod registry;
pub mod rule_listing;
pub mod runtime;
pub mod service_notify;
pub mod signals;
