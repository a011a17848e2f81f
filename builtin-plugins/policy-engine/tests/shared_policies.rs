//! Every shared policy file compiles; the rule sets have the expected shape.

mod common;
use common::data_dir;

use sysflow_policy_engine::{compile_policies, RuleSet};

fn compile(rel: &str) -> Option<RuleSet> {
    let dir = data_dir()?;
    let path = dir.join(rel);
    match compile_policies(&path) {
        Ok(rs) => {
            for w in rs.warnings() {
                eprintln!("warning: {w}");
            }
            for i in rs.describe() {
                eprintln!("{i}");
            }
            Some(rs)
        }
        Err(e) => panic!("{rel} failed to compile: {e}"),
    }
}

#[test]
fn runtimeintegrity_compiles() {
    let Some(rs) = compile("policies/runtimeintegrity") else { return };
    assert_eq!(rs.filter_count(), 1);
    assert!(rs.rule_count() > 40, "{}", rs.rule_count());
    let info = rs.describe();
    let spawned = info.iter().find(|r| r.name == "Suspicious process spawned").expect("rule present");
    assert_eq!(spawned.record_types, vec!["PE"]);
    assert_eq!(spawned.priority, 1);
    let setuid = info.iter().find(|r| r.name == "Non sudo setuid").expect("rule present");
    assert!(setuid.disabled_reason.as_deref().unwrap_or("").contains("sf.proc.username"));
}

#[test]
fn distribution_compiles() {
    let Some(rs) = compile("policies/distribution") else { return };
    assert!(rs.rule_count() > 0);
}

#[test]
fn tests_dir_compiles() {
    let Some(rs) = compile("policies/tests") else { return };
    assert!(rs.rule_count() > 60, "{}", rs.rule_count());
}

#[test]
fn each_test_file_compiles_alone() {
    let Some(dir) = data_dir() else { return };
    let mut n = 0;
    for sub in ["policies/tests", "policies/runtimeintegrity", "policies/distribution"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(sub)).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            // Files of a directory may use definitions of earlier files; only self-contained ones alone.
            if sub.ends_with("runtimeintegrity") && !f.ends_with("globals.yaml") && !f.ends_with("path.yaml") {
                continue;
            }
            if let Err(e) = compile_policies(&f) {
                panic!("{} failed: {e}", f.display());
            }
            n += 1;
        }
    }
    assert!(n >= 17);
}

/// Truncated and corrupted policy text never panics the compiler: it compiles or fails
/// with positioned errors.
#[test]
fn damaged_policy_text_never_panics() {
    let Some(dir) = data_dir() else { return };
    let opts = sysflow_policy_engine::CompileOptions::default();
    let mut checked = 0;
    for f in ["policies/runtimeintegrity/globals.yaml", "policies/tests/unit_test_logic.yaml", "policies/runtimeintegrity/path.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        let bytes = text.as_bytes();
        let step = (bytes.len() / 97).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            let truncated = String::from_utf8_lossy(&bytes[..cut]).into_owned();
            if let Err(e) = sysflow_policy_engine::compile_policy_text("cut.yaml", &truncated, &opts) {
                assert!(e.0.iter().all(|x| x.pos.line > 0), "{e}");
            }
            let mut corrupt = bytes.to_vec();
            corrupt[cut] = b"|(]:'\"-#\xc3"[cut % 9];
            let corrupt = String::from_utf8_lossy(&corrupt).into_owned();
            let _ = sysflow_policy_engine::compile_policy_text("bad.yaml", &corrupt, &opts);
            checked += 1;
        }
    }
    assert!(checked > 200);
}
