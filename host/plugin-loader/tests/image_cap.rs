//! The cap on mapped library images. Its own test binary: the image table is per process.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use sfprocessor_plugin_loader::{load_library, loaded_image_count, LoadError, LoadOptions};

#[test]
fn new_images_beyond_the_cap_are_refused_but_known_content_still_loads() {
    let plugins = private_dir();
    let work = private_dir();
    let first = install_example("passthrough", plugins.path(), "passthrough.so");
    let second = install_example("now-action", plugins.path(), "now.so");
    let capped = LoadOptions { max_loaded_images: 1, ..options_in(work.path()) };

    assert_eq!(loaded_image_count(), 0);
    let lib = load_library(&first, &capped).unwrap();
    assert!(lib.new_image);
    assert_eq!(lib.image_path, work.path().join("run").join(format!("{}.so", lib.sha256)));
    let mode = std::fs::metadata(&lib.image_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o500, "the mapped copy must be read-only");
    assert_eq!(loaded_image_count(), 1);

    let err = load_library(&second, &capped).unwrap_err();
    assert!(matches!(err, LoadError::TooManyImages { loaded: 1, max: 1, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("now.so") && msg.contains("max_loaded_images = 1"), "{msg}");
    assert_eq!(loaded_image_count(), 1);

    // The same content again maps nothing new, so the cap does not apply.
    let again = load_library(&first, &capped).unwrap();
    assert!(!again.new_image);
    assert_eq!(again.sha256, lib.sha256);
    assert_eq!(loaded_image_count(), 1);
}
