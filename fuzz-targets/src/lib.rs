//! Fuzz target bodies: one function per input format the processor parses, each driving
//! the public API the way the `sfprocessor` binary does and asserting its invariants
//! (no panic, problems reported as values, counters consistent).
//!
//! `fuzz/` wraps each function in a libFuzzer target (`cargo +nightly fuzz run <target>`);
//! `tests/corpus.rs` replays the checked-in regression corpus `corpus/<target>/` through
//! the same functions under `cargo test`. See `docs/fuzzing.md`.

#![warn(missing_docs)]

mod avro_trace;
mod compiled_policy;
mod falco_policy;
mod pipeline_config;
mod sample_records;
mod sigma_policy;

pub use avro_trace::avro_trace;
pub use falco_policy::falco_policy;
pub use pipeline_config::pipeline_config;
pub use sigma_policy::{sigma_policy, SIGMA_FIELD_MAPPINGS};

/// A fuzz target body: takes the raw input, panics only on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name (the name is also its corpus directory and its cargo-fuzz target).
pub const TARGETS: &[(&str, Target)] = &[
    ("avro_trace", avro_trace),
    ("falco_policy", falco_policy),
    ("sigma_policy", sigma_policy),
    ("pipeline_config", pipeline_config),
];
