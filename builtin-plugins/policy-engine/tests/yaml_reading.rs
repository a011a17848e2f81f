//! Rule files are read as YAML; a file YAML refuses is read with the upstream-compatible
//! grammar. Both readings give one syntax tree: on every upstream policy file that YAML
//! accepts, the trees are the same except for the one documented escape (upstream parity
//! does not depend on which reader ran).

mod common;
use common::data_dir;

use std::sync::Arc;

use sysflow_policy_engine::falco::{collect_files, parser, read_file};

#[test]
fn yaml_and_upstream_readings_agree_on_upstream_policy_files() {
    let Some(data) = data_dir() else { return };
    let mut yaml_read = 0;
    let mut fallback = Vec::new();
    let mut differences = Vec::new();
    for set in ["runtimeintegrity", "distribution", "tests"] {
        let files = collect_files(&data.join("policies").join(set)).expect("policy files");
        for f in files {
            let src = std::fs::read_to_string(&f).expect("read");
            let file = Arc::new(f.clone());
            let old = parser::parse_file(&src, file.clone()).expect("upstream grammar reads upstream's files");
            let name = f.strip_prefix(data.join("policies")).unwrap_or(&f).display().to_string();
            match read_file(&src, file) {
                (Ok(items), None) => {
                    yaml_read += 1;
                    assert_eq!(items.len(), old.len(), "{name}");
                    for (a, b) in items.iter().zip(&old) {
                        let (a, b) = (format!("{a:?}"), format!("{b:?}"));
                        if a != b {
                            // The first differing stretch of each item, at a list-element boundary.
                            let i = a.bytes().zip(b.bytes()).position(|(x, y)| x != y).unwrap_or(0);
                            let cut = |s: &str| {
                                let s = &s[i..];
                                s[..s.find(", ").unwrap_or(s.len())].to_string()
                            };
                            differences.push(format!("{name}: YAML {} where upstream reads {}", cut(&a), cut(&b)));
                        }
                    }
                }
                (Ok(_), Some(w)) => fallback.push(name.clone() + ": " + w.message.as_str()),
                (Err(e), _) => panic!("{name}: {e:?}"),
            }
        }
    }
    assert!(yaml_read >= 10, "{yaml_read} files read as YAML");
    // Upstream's files that are not YAML (a wrongly indented `- list:`, tabs in a
    // condition): each is read with the upstream-compatible grammar, with one warning.
    let refused = |what: &str| format!("not read as YAML ({what}); read with the upstream-compatible grammar");
    let (dash, tab) = (refused("while parsing a block collection, did not find expected '-' indicator"), refused("while scanning a plain scalar, found a tab"));
    assert_eq!(
        fallback,
        [
            format!("runtimeintegrity/runtimeintegrity.yaml: {dash}"),
            format!("runtimeintegrity/ttps.yaml: {dash}"),
            format!("tests/falco.yaml: {}", refused("invalid indentation")),
            format!("tests/unit_test_fileflow.yaml: {tab}"),
            format!("tests/unit_test_logic.yaml: {tab}"),
            format!("tests/unit_test_networkflow.yaml: {tab}"),
            format!("tests/unit_test_simple.yaml: {dash}"),
        ]
    );
    // The one difference (docs/compatibility.md): a JSON escape in a double-quoted list
    // element, which upstream compared as its backslash text.
    assert_eq!(differences, [r#"distribution/filter.yaml: YAML <NA>" where upstream reads \\u003cNA\\u003e""#]);
}
