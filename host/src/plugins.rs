//! Third-party plugin libraries: drivers from `-driverdir` at start-up, processors from
//! `-plugdir` and handlers from a block's `handlerlibpath` when a pipeline names one the
//! registry does not know (upstream's lookup rule: `<dir>/<name>.so`).

use std::path::{Path, PathBuf};

use sfprocessor_plugin_loader::{self as loader, LoadOptions, LoadedLibrary};
use serde_json::Value;

use crate::{
    pipeline_config::PipelineConfig,
    registry::{Kind, Origin, Registry},
};

/// Load options from the command line.
pub fn options(allow_insecure: bool) -> LoadOptions {
    LoadOptions { allow_insecure_permissions: allow_insecure, ..LoadOptions::default() }
}

/// Registers every plugin of `lib`; a name already taken is an error naming both files.
fn register_library(registry: &mut Registry, lib: &LoadedLibrary) -> Vec<String> {
    let offered: Vec<String> =
        lib.descriptors.iter().map(|d| format!("{} '{}'", loader::plugin_kind(&d.factory), d.name)).collect();
    tracing::info!("loaded plugin library {} (sha256 {}): {}", lib.path.display(), &lib.sha256[..12.min(lib.sha256.len())], offered.join(", "));
    let mut errors = Vec::new();
    for d in &lib.descriptors {
        if let Err(e) = registry.register(d.clone(), Origin::Library(lib.path.clone())) {
            errors.push(e);
        }
    }
    errors
}

/// Loads every library in the driver directory (a missing directory is ignored, as upstream
/// does); any load or registration error aborts start-up, as upstream's does.
pub fn load_driver_dir(registry: &mut Registry, dir: &Path, opts: &LoadOptions) -> Result<(), Vec<String>> {
    let (libs, errors) = loader::load_dir(dir, opts);
    let mut messages: Vec<String> = errors.iter().map(|e| format!("-driverdir {}: {e}", dir.display())).collect();
    for lib in &libs {
        messages.extend(register_library(registry, lib));
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(messages)
    }
}

/// Loads `<dir>/<name>.so` for a plugin of `kind` the registry lacks; failures are noted in
/// the registry so that validation reports them against the block that named the plugin.
fn load_on_demand(registry: &mut Registry, kind: Kind, name: &str, dir: &Path, opts: &LoadOptions) {
    if registry.get(kind, name).is_some() || registry.load_failure(kind, name).is_some() {
        return;
    }
    let path: PathBuf = dir.join(format!("{name}.so"));
    match loader::load_named(dir, name, opts) {
        Ok(Some(lib)) => {
            let errors = register_library(registry, &lib);
            if registry.get(kind, name).is_none() {
                let why = if errors.is_empty() {
                    let offered: Vec<String> = lib
                        .descriptors
                        .iter()
                        .map(|d| format!("{} '{}'", loader::plugin_kind(&d.factory), d.name))
                        .collect();
                    format!(
                        "error trying load plugin at: {}: it offers no {} named '{name}' (it offers: {})",
                        path.display(),
                        kind.name(),
                        if offered.is_empty() { "nothing".to_string() } else { offered.join(", ") }
                    )
                } else {
                    format!("error trying load plugin at: {}: {}", path.display(), errors.join("; "))
                };
                registry.note_load_failure(kind, name, why);
            } else {
                for e in errors {
                    tracing::warn!("{e}");
                }
            }
        }
        Ok(None) => {
            let why = format!(
                "unknown {} '{name}' {}: plugin '{name}' not found in plugin cache (no {})",
                kind.name(),
                registry.known_hint(kind),
                path.display()
            );
            registry.note_load_failure(kind, name, why);
        }
        Err(e) => registry.note_load_failure(kind, name, format!("error trying load plugin at: {}: {e}", path.display())),
    }
}

/// Loads the processors (from `plugdir`) and handlers (from each block's `handlerlibpath`)
/// the pipeline names but the registry lacks.
pub fn load_pipeline_plugins(registry: &mut Registry, cfg: &PipelineConfig, plugdir: &Path, opts: &LoadOptions) {
    for block in &cfg.blocks {
        if registry.get(Kind::Processor, &block.processor).is_none() {
            load_on_demand(registry, Kind::Processor, &block.processor, plugdir, opts);
        }
        if let (Some(h), Some(Value::String(dir))) = (&block.handler, block.map.get("handlerlibpath")) {
            if registry.get(Kind::Handler, h).is_none() {
                load_on_demand(registry, Kind::Handler, h, Path::new(dir), opts);
            }
        }
    }
}
