//! Every configuration key the exporter accepts is documented in the README's exporter
//! table and in docs/exporters.md (a new key without documentation fails here).

use std::path::Path;

use sysflow_exporter::exporter::CONFIG_KEYS;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_exporter_key_is_in_the_readme_and_docs() {
    let readme = read("README.md");
    let docs = read("docs/exporters.md");
    let mut undocumented = Vec::new();
    for key in CONFIG_KEYS {
        let quoted = format!("`{}`", key.name.as_str());
        for (file, text) in [("README.md", &readme), ("docs/exporters.md", &docs)] {
            if !text.contains(&quoted) {
                undocumented.push(format!("{quoted} in {file}"));
            }
        }
    }
    assert!(undocumented.is_empty(), "undocumented exporter keys: {undocumented:?}");
}
