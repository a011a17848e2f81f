//! A `pipeline.json`: parsed, environment overrides applied, interpreted and validated as
//! a graph against the built-in plugins — what `-test` checks before it constructs plugins.

use std::sync::OnceLock;

use sfprocessor::{
    diagnostics::Diagnostics,
    env_overrides,
    graph::{self, DriverChoice},
    pipeline_config,
    registry::Registry,
};

/// Overrides applied to every input, so the override path runs too (upstream's examples).
const ENVIRONMENT: &[(&str, &str)] = &[("POLICYENGINE_MODE", "enrich"), ("EXPORTER_FORMAT", "ecs")];

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| match Registry::with_builtins() {
        Ok(r) => r,
        Err(errors) => panic!("the built-in plugins do not register: {errors:?}"),
    })
}

/// Loads `data` as a pipeline config (non-UTF-8 input is refused, as reading the file
/// refuses it) and validates the graph; an accepted graph must be runnable: at least one
/// driver and one block, every channel written by someone and read by exactly one block.
pub fn pipeline_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut raw = match pipeline_config::parse_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            assert!(!e.is_empty(), "empty parse error");
            return;
        }
    };
    let env = ENVIRONMENT.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    for applied in env_overrides::apply(&mut raw, env) {
        assert!(applied.index < raw.pipeline.len(), "override applied to a block that does not exist: {applied:?}");
    }
    let mut diag = Diagnostics::default();
    let cfg = pipeline_config::interpret(&raw, "fuzz-cluster", &mut diag);
    let choice = DriverChoice { driver: None, path: Some("trace.sf".to_string()) };
    let g = graph::build(&cfg, registry(), &choice, &mut diag);
    for m in diag.errors.iter().chain(&diag.warnings) {
        assert!(!m.trim().is_empty(), "empty diagnostic");
    }
    if !diag.ok() {
        return;
    }
    assert!(!g.processors.is_empty(), "accepted a pipeline without blocks");
    assert!(!g.drivers.is_empty(), "accepted a pipeline without drivers");
    for c in &g.channels {
        assert!(!c.producers.is_empty(), "accepted channel '{}' that nothing writes", c.name);
        assert_eq!(c.consumers.len(), 1, "accepted channel '{}' with {} readers", c.name, c.consumers.len());
    }
}
