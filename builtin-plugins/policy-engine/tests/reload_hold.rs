//! Live reload under hostile edits: a policy beyond the limits written into the watched
//! directory is refused and the running rules stay; a reload that loses a policy file or
//! all enabled rules is held back (`monitor.hold`); an empty policy set at start-up is an
//! error in alert mode and a warning in enrich mode.

mod common;
use common::wait_for;

use std::path::Path;

use abi_stable::std_types::{RArc, RStr, RVec};
use parking_lot::Mutex;
use sysflow_plugin_api::{Batch, Event, FlatRecord, Header, Host, LogLevel, Oid, PluginConfig, Process, ProcessEvent, Processor};
use sysflow_policy_engine::PolicyEngine;

/// Every message logged by the engines of this test binary (tests tell theirs apart by
/// the temporary directory in the message).
static LOG: Mutex<Vec<(LogLevel, String)>> = Mutex::new(Vec::new());

extern "C" fn capture(level: LogLevel, _: RStr<'_>, msg: RStr<'_>) {
    LOG.lock().push((level, msg.to_string()));
}

fn logged(level: LogLevel, needle: &str) -> Vec<String> {
    LOG.lock().iter().filter(|(l, m)| *l == level && m.contains(needle)).map(|(_, m)| m.clone()).collect()
}

fn engine(json: &str) -> Result<PolicyEngine, String> {
    PolicyEngine::new(&PluginConfig::from_json(json).unwrap(), Host::new(capture, "policyengine")).map_err(|e| e.message.to_string())
}

/// Record `i`: process `/bin/p<i % 10>`, ts = i.
fn records(n: usize) -> Vec<FlatRecord> {
    let header = RArc::new(Header::default());
    (0..n)
        .map(|i| {
            let mut r = FlatRecord::new(
                header.clone(),
                Event::Process(ProcessEvent { ts: i as i64, op_flags: 2, proc_oid: Oid { create_ts: 1, hpid: 1 }, ..Default::default() }),
            );
            r.ancestry = RArc::new(RVec::from(vec![RArc::new(Process { exe: format!("/bin/p{}", i % 10).into(), ..Default::default() })]));
            r
        })
        .collect()
}

fn matched(pe: &mut PolicyEngine) -> Vec<i64> {
    match pe.process(Batch::flat(records(10))).unwrap() {
        Some(Batch::Flat(r)) => r.iter().map(|r| r.event.ts()).collect(),
        _ => Vec::new(),
    }
}

fn counter(pe: &PolicyEngine, name: &str) -> u64 {
    pe.counters().iter().find(|c| c.name.as_str() == name).map(|c| c.value).unwrap_or(0)
}

const EVEN: &str = "- rule: even\n  desc: d\n  condition: sf.proc.name in (p0, p2, p4)\n  priority: high\n";
const ODD: &str = "- rule: odd\n  desc: d\n  condition: sf.proc.name in (p1, p3)\n  priority: high\n";
/// A file with no rules (lists and macros that other files use).
const LISTS: &str = "- list: shells\n  items: [sh, bash]\n";

fn watched(dir: &Path, mode: &str, hold: &str) -> PolicyEngine {
    engine(&format!(
        r#"{{"policies":"{}","mode":"{mode}","monitor":"local","monitor.interval":"0","monitor.hold":"{hold}"}}"#,
        dir.display()
    ))
    .unwrap()
}

/// Writes `text` to `dir/name` through a temporary file and a rename, as deploy tools do.
fn deploy(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn reload_with_1500_nested_parentheses_is_refused_and_the_rules_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path(), "rules.yaml", EVEN);
    let mut pe = watched(dir.path(), "alert", "5");
    assert_eq!(matched(&mut pe), [0, 2, 4]);
    let deep = format!("{}sf.ts > 0{}", "(".repeat(1500), ")".repeat(1500));
    deploy(dir.path(), "rules.yaml", &format!("- rule: deep\n  desc: d\n  condition: {deep}\n"));
    assert!(wait_for(|| counter(&pe, "policy_reload_failures") == 1), "refused reload not counted");
    let err = pe.last_reload_error().unwrap_or_default();
    assert!(err.contains("rules.yaml:3:") && err.contains("rule 'deep'") && err.contains("nests deeper than"), "{err}");
    assert_eq!(counter(&pe, "policy_reloads"), 0);
    assert_eq!(matched(&mut pe), [0, 2, 4]);
}

#[test]
fn delete_then_create_deploy_keeps_detecting() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path(), "lists.yaml", LISTS);
    deploy(dir.path(), "rules.yaml", EVEN);
    let mut pe = watched(dir.path(), "alert", "30");
    std::fs::remove_file(dir.path().join("rules.yaml")).unwrap();
    let rules = dir.path().join("rules.yaml").display().to_string();
    assert!(wait_for(|| !logged(LogLevel::Warn, &rules).is_empty()), "no warning naming the missing file");
    let warning = &logged(LogLevel::Warn, &rules)[0];
    assert!(warning.contains("held back") && warning.contains("missing"), "{warning}");
    // While held, the running rules stay (the old code swapped in lists.yaml's 0 rules).
    assert_eq!(matched(&mut pe), [0, 2, 4]);
    assert_eq!(counter(&pe, "policy_reloads"), 0);
    // The new version arrives: compiled and swapped in normally.
    deploy(dir.path(), "rules.yaml", ODD);
    assert!(wait_for(|| counter(&pe, "policy_reloads") == 1), "reload not counted: {:?}", pe.last_reload_error());
    assert_eq!(matched(&mut pe), [1, 3]);
}

#[test]
fn a_lost_file_is_applied_after_the_hold_time() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path(), "even.yaml", EVEN);
    deploy(dir.path(), "odd.yaml", ODD);
    let mut pe = watched(dir.path(), "alert", "0.5");
    assert_eq!(matched(&mut pe), [0, 1, 2, 3, 4]);
    std::fs::remove_file(dir.path().join("odd.yaml")).unwrap();
    assert!(wait_for(|| counter(&pe, "policy_reloads") == 1), "file-loss reload not applied: {:?}", pe.last_reload_error());
    assert_eq!(matched(&mut pe), [0, 2, 4]);
    let odd = dir.path().join("odd.yaml").display().to_string();
    assert!(logged(LogLevel::Warn, &odd).iter().any(|m| m.contains("applied after holding it back")), "{:?}", logged(LogLevel::Warn, &odd));
}

#[test]
fn alert_mode_never_swaps_in_zero_enabled_rules() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path(), "lists.yaml", LISTS);
    deploy(dir.path(), "rules.yaml", EVEN);
    let mut pe = watched(dir.path(), "alert", "0.3");
    std::fs::remove_file(dir.path().join("rules.yaml")).unwrap();
    // After the hold the directory compiles to 0 enabled rules: refused, as an error.
    assert!(wait_for(|| counter(&pe, "policy_reload_failures") == 1), "empty reload not refused");
    let err = pe.last_reload_error().unwrap_or_default();
    assert!(err.contains("no enabled rules") && err.contains(&dir.path().display().to_string()), "{err}");
    assert_eq!(counter(&pe, "policy_reloads"), 0);
    assert_eq!(matched(&mut pe), [0, 2, 4]);
    // A file with rules again: reloaded.
    deploy(dir.path(), "rules.yaml", ODD);
    assert!(wait_for(|| counter(&pe, "policy_reloads") == 1), "reload not counted");
    assert_eq!(matched(&mut pe), [1, 3]);
}

#[test]
fn enrich_mode_applies_an_empty_set_only_after_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path(), "rules.yaml", EVEN);
    let mut pe = watched(dir.path(), "enrich", "0.5");
    let matches = |pe: &mut PolicyEngine| {
        let before = counter(pe, "rule_matches");
        matched(pe);
        counter(pe, "rule_matches") - before
    };
    assert_eq!(matches(&mut pe), 3);
    deploy(dir.path(), "rules.yaml", LISTS);
    assert!(wait_for(|| counter(&pe, "policy_reloads") == 1), "empty set not applied after the hold");
    assert_eq!(matches(&mut pe), 0);
    let path = dir.path().display().to_string();
    assert!(logged(LogLevel::Warn, &path).iter().any(|m| m.contains("no enabled rules") && m.contains("held back")));
}

#[test]
fn an_empty_policy_set_at_start_up_is_an_error_in_alert_mode_and_a_warning_in_enrich_mode() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path(), "lists.yaml", LISTS);
    let p = dir.path().display().to_string();
    let err = engine(&format!(r#"{{"policies":"{p}"}}"#)).err().expect("alert mode must refuse 0 enabled rules");
    assert!(err.contains("key 'policies'") && err.contains(&p) && err.contains("no enabled rules"), "{err}");
    let disabled = tempfile::tempdir().unwrap();
    deploy(disabled.path(), "rules.yaml", &format!("{EVEN}  enabled: false\n"));
    let d = disabled.path().display().to_string();
    assert!(engine(&format!(r#"{{"policies":"{d}"}}"#)).err().unwrap_or_default().contains("no enabled rules"));

    // Enrich mode: a warning, and records pass.
    let mut pe = engine(&format!(r#"{{"policies":"{p}","mode":"enrich"}}"#)).unwrap();
    assert_eq!(matched(&mut pe).len(), 10);
    assert!(logged(LogLevel::Warn, &p).iter().any(|m| m.contains("no enabled rules")));
    let empty = tempfile::tempdir().unwrap();
    let e = empty.path().display().to_string();
    let mut pe = engine(&format!(r#"{{"policies":"{e}","mode":"enrich"}}"#)).unwrap();
    assert_eq!(matched(&mut pe).len(), 10);
    assert!(logged(LogLevel::Warn, &e).iter().any(|m| m.contains("no policy files")));
    assert!(engine(&format!(r#"{{"policies":"{e}"}}"#)).is_err());
}
