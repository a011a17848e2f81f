//! The services each plugin instance gets through its [`Host`]: the host's logger, the
//! operator's stop signal, and action loading, with which a processor (the policy engine)
//! has the host load the action libraries of a directory instead of loading them itself.

use abi_stable::std_types::{RStr, RString, RVec};
use sfprocessor_plugin_loader as loader;
use sysflow_plugin_api::{Host, LoadedAction, LoadedActions, PluginFactory};

use crate::{logging, plugins, signals};

/// Host services for the plugin instance named `instance` (the name is kept for the
/// life of the process, as plugins may hold their `Host` that long).
pub fn host_for(instance: &str) -> Host {
    host_named(Box::leak(instance.to_string().into_boxed_str()))
}

fn host_named(instance: &'static str) -> Host {
    Host::new(logging::plugin_log, instance)
        .with_stop_signal(signals::stop_signalled)
        .with_action_loader(load_actions)
}

/// [`Host::load_actions`]: loads every library of `dir` through the plugin loader, with the
/// checks every plugin library gets (`-allowinsecureplugins` does not cover action
/// libraries: docs/plugins.md, Permissions), and starts each action it offers with a `Host`
/// named `instance`, so the action's log lines name the block that uses it.
pub extern "C" fn load_actions(dir: RStr<'_>, instance: RStr<'static>) -> LoadedActions {
    // A panic must not unwind out of an `extern "C"` function: it becomes an error entry.
    std::panic::catch_unwind(|| load_actions_in(dir.as_str(), instance.as_str())).unwrap_or_else(|_| LoadedActions {
        actions: RVec::new(),
        errors: RVec::from(vec![RString::from(format!("{dir}: loading action libraries panicked"))]),
    })
}

fn load_actions_in(dir: &str, instance: &'static str) -> LoadedActions {
    let (libs, errors) = loader::load_dir(std::path::Path::new(dir), &plugins::options(false));
    let mut loaded = LoadedActions { errors: errors.iter().map(|e| RString::from(e.to_string())).collect(), ..Default::default() };
    for lib in libs {
        let library = lib.path.display().to_string();
        for d in lib.descriptors {
            let PluginFactory::Action { new } = d.factory else { continue };
            match new(host_named(instance)).into_result() {
                Ok(action) => loaded.actions.push(LoadedAction { name: d.name.into(), library: library.as_str().into(), action }),
                Err(e) => loaded.errors.push(format!("action '{}' from {library} failed to start: {e}", d.name).into()),
            }
        }
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_loads_nothing_and_a_refused_library_is_named() {
        let loaded = load_actions(RStr::from_str("/nonexistent/actions"), RStr::from_str("test"));
        assert!(loaded.actions.is_empty() && loaded.errors.is_empty());

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("broken.so"), b"not an ELF file").expect("write");
        let path = dir.path().to_string_lossy().into_owned();
        let loaded = host_for("pipeline[1] (policyengine)").load_actions(&path);
        assert!(loaded.actions.is_empty());
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert!(loaded.errors[0].contains("broken.so") && loaded.errors[0].contains("not an ELF file"), "{}", loaded.errors[0]);
    }
}
