//! Plugins built outside the workspace with plain `cargo build`: one against our
//! plugin-api (the SDK works for third parties), one against a plugin-api whose version
//! was bumped (the host refuses it before running its code, naming both versions).

mod common;

use common::*;
use sfprocessor_plugin_loader::{host_api_version, load_library, plugin_kind, LoadError};

#[test]
fn a_plugin_crate_outside_the_workspace_builds_and_loads() {
    let plugins = private_dir();
    let work = private_dir();
    let api = workspace_root().join("plugin-api");
    let krate = write_standalone_plugin(&standalone_root(), "sdk-proof-plugin", "sdkproof", &api);
    cargo_build(&krate.join("Cargo.toml"), &[]);
    let installed = plugins.path().join("sdkproof.so");
    std::fs::copy(built_so("sdk-proof-plugin"), &installed).unwrap();

    let lib = load_library(&installed, &options_in(work.path())).unwrap();
    assert_eq!(lib.plugin_api_version, host_api_version());
    let names: Vec<(&str, &str)> = lib.descriptors.iter().map(|d| (plugin_kind(&d.factory), d.name.as_str())).collect();
    assert_eq!(names, [("processor", "sdkproof")]);
}

#[test]
fn a_plugin_built_against_another_plugin_api_version_is_refused() {
    let plugins = private_dir();
    let work = private_dir();
    let api = copy_plugin_api(&standalone_root().join("plugin-api-0.4"), "0.4.0", &[]);
    let krate = write_standalone_plugin(&standalone_root(), "incompatible-plugin", "incompatible", &api);
    cargo_build(&krate.join("Cargo.toml"), &[]);
    let installed = plugins.path().join("incompatible.so");
    std::fs::copy(built_so("incompatible-plugin"), &installed).unwrap();

    let err = load_library(&installed, &options_in(work.path())).unwrap_err();
    let LoadError::Incompatible { plugin_api, host_api, detail, .. } = &err else { panic!("{err:?}") };
    assert_eq!(plugin_api, "0.4.0");
    assert_eq!(host_api, &host_api_version());
    // abi_stable's layout check names the types whose package version differs.
    let differences = sfprocessor_plugin_loader::layout_differences(detail);
    assert!(
        differences.iter().any(|d| d == "`PluginLibrary`: incompatible package versions (expected 0.3.0, found 0.4.0)"),
        "{differences:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("incompatible.so"), "{msg}");
    assert!(msg.contains("built for plugin-api 0.4.0"), "{msg}");
    assert!(msg.contains(&format!("this host speaks plugin-api {}", host_api_version())), "{msg}");
    assert!(msg.contains("layout check: `PluginLibrary`: incompatible package versions"), "{msg}");
    assert!(!msg.contains('\n'), "one line for the log: {msg}");
    eprintln!("refusal message:\n{msg}");
    if let Ok(dump) = std::env::var("DUMP_LAYOUT_REPORT") {
        std::fs::write(dump, detail).unwrap();
    }

    // Refused content is remembered: asking again gives the same answer without mapping it again.
    let before = sfprocessor_plugin_loader::loaded_image_count();
    let again = load_library(&installed, &options_in(work.path())).unwrap_err();
    assert!(matches!(again, LoadError::Incompatible { .. }));
    assert_eq!(sfprocessor_plugin_loader::loaded_image_count(), before);
}

#[test]
fn a_plugin_whose_types_differ_under_the_same_version_is_refused_naming_the_type() {
    let plugins = private_dir();
    let work = private_dir();
    // An edited plugin-api that kept its version: a log level added, so `LogLevel` (and
    // `Host`, whose log function takes it) no longer match the host's.
    let api = copy_plugin_api(
        &standalone_root().join("plugin-api-edited"),
        &host_api_version(),
        &[("plugin.rs", "    Health,\n}", "    Health,\n    /// Added by the test.\n    Debug,\n}")],
    );
    let krate = write_standalone_plugin(&standalone_root(), "edited-api-plugin", "edited", &api);
    cargo_build(&krate.join("Cargo.toml"), &[]);
    let installed = plugins.path().join("edited.so");
    std::fs::copy(built_so("edited-api-plugin"), &installed).unwrap();

    let err = load_library(&installed, &options_in(work.path())).unwrap_err();
    let LoadError::Incompatible { plugin_api, detail, .. } = &err else { panic!("{err:?}") };
    assert_eq!(plugin_api, &host_api_version());
    let differences = sfprocessor_plugin_loader::layout_differences(detail);
    assert!(differences.iter().any(|d| d.starts_with("`LogLevel`")), "{differences:?}\n{err}");
    assert!(err.to_string().contains("`LogLevel`"), "{err}");
    eprintln!("refusal message:\n{err}");
}
