//! The `policyengine` processor: modes, filters, ordering under concurrency, reload, config errors.

mod common;
use common::wait_for;

use std::path::Path;

use abi_stable::std_types::{RArc, RStr, RVec};
use sysflow_plugin_api::{Batch, Event, FlatRecord, Header, Host, LogLevel, Oid, PluginConfig, Process, ProcessEvent, Processor};
use sysflow_policy_engine::PolicyEngine;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn host() -> Host {
    Host::new(quiet, "policyengine")
}

fn engine(json: &str) -> Result<PolicyEngine, String> {
    PolicyEngine::new(&PluginConfig::from_json(json).unwrap(), host()).map_err(|e| e.message.to_string())
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
            r.ancestry = RArc::new(RVec::from(vec![RArc::new(Process {
                exe: format!("/bin/p{}", i % 10).into(),
                ..Default::default()
            })]));
            r
        })
        .collect()
}

const POLICY: &str = "- filter: drop9\n  condition: sf.proc.name = p9\n\
- rule: even\n  desc: names p0 p2 p4\n  condition: sf.proc.name in (p0, p2, p4)\n  priority: high\n  tags: [t1]\n";

fn write_policy(dir: &Path, text: &str) -> String {
    let f = dir.join("rules.yaml");
    std::fs::write(&f, text).unwrap();
    dir.display().to_string()
}

fn out_ts(b: Option<Batch>) -> Vec<i64> {
    match b {
        Some(Batch::Flat(r)) => r.iter().map(|r| r.event.ts()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn alert_forwards_matches_in_order_with_workers() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_policy(dir.path(), POLICY);
    let mut pe = engine(&format!(r#"{{"policies":"{p}","concurrency":"4"}}"#)).unwrap();
    let out = pe.process(Batch::flat(records(5000))).unwrap();
    let ts = out_ts(out.clone());
    let expect: Vec<i64> = (0..5000).filter(|i| [0, 2, 4].contains(&(i % 10))).collect();
    assert_eq!(ts, expect);
    if let Some(Batch::Flat(r)) = out {
        assert!(r.iter().all(|r| r.context.matched.len() == 1 && r.context.matched[0].priority == 3));
        assert_eq!(r[0].context.all_tags().collect::<Vec<_>>(), vec!["t1"]);
    }
    let c = pe.counters();
    let get = |n: &str| c.iter().find(|x| x.name.as_str() == n).map(|x| x.value).unwrap();
    assert_eq!(get("records_in"), 5000);
    assert_eq!(get("records_out"), 1500);
    assert_eq!(get("filtered"), 500);
    assert_eq!(get("unmatched"), 3000);
    // The host warns at exit about counters named like losses; these are not losses.
    assert!(c.iter().all(|x| !x.name.as_str().contains("drop")));
    // Later batches: the engine learns these rules are cheap and stops splitting batches
    // (the first ones were split); results and order are the same either way.
    for _ in 0..20 {
        assert_eq!(out_ts(pe.process(Batch::flat(records(5000))).unwrap()), expect);
    }
}

#[test]
fn enrich_forwards_everything_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_policy(dir.path(), POLICY);
    let mut pe = engine(&format!(r#"{{"policies":"{p}","mode":"enrich","concurrency":"2"}}"#)).unwrap();
    let ts = out_ts(pe.process(Batch::flat(records(1000))).unwrap());
    assert_eq!(ts, (0..1000).filter(|i| i % 10 != 9).collect::<Vec<i64>>());
    // Unknown modes act as enrich, as upstream.
    let mut pe = engine(&format!(r#"{{"policies":"{p}","mode":"weird"}}"#)).unwrap();
    assert_eq!(out_ts(pe.process(Batch::flat(records(20))).unwrap()).len(), 18);
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_policy(dir.path(), POLICY);
    for (json, key) in [
        (format!(r#"{{"policies":"{p}","concurrency":"x"}}"#), "concurrency"),
        (format!(r#"{{"policies":"{p}","concurrency":"0"}}"#), "concurrency"),
        (format!(r#"{{"policies":"{p}","language":"sigma","config":"/nonexistent/sysflow.yml"}}"#), "key 'config'"),
        (format!(r#"{{"policies":"{p}","language":"sigma","config":"/nonexistent/sysflow.yml"}}"#), "/nonexistent/sysflow.yml"),
        (format!(r#"{{"policies":"{p}","monitor.interval":"soon"}}"#), "monitor.interval"),
        (format!(r#"{{"policies":"{p}","unknown.attributes":"maybe"}}"#), "unknown.attributes"),
        (format!(r#"{{"policies":"{p}","dialect":"falcon"}}"#), "key 'dialect': invalid value 'falcon' (expected sysflow or falco)"),
        (r#"{"policies":"/nonexistent/policies"}"#.to_string(), "/nonexistent/policies"),
    ] {
        let err = engine(&json).err().unwrap_or_default();
        assert!(err.contains(key), "{json}: {err}");
    }
    let empty = tempfile::tempdir().unwrap();
    let err = engine(&format!(r#"{{"policies":"{}"}}"#, empty.path().display())).err().unwrap();
    assert!(err.contains("no policy files with extension .yaml or .yml"), "{err}");
    let bad = tempfile::tempdir().unwrap();
    let p = write_policy(bad.path(), "- rule: r\n  desc: d\n  condition: (sf.ts > 0\n");
    let err = engine(&format!(r#"{{"policies":"{p}"}}"#)).err().unwrap();
    // Reported just after the condition's last token, not at the end of the file.
    assert!(err.contains("rules.yaml:3:24: unclosed '('"), "{err}");
}

const FOUR_RULES: &str = "- filter: drop9\n  condition: sf.proc.name = p9\n\
- rule: r0\n  desc: d\n  condition: sf.proc.name = p0\n  priority: high\n\
- rule: r1\n  desc: d\n  condition: sf.proc.name = p1\n  priority: high\n\
- rule: r2\n  desc: d\n  condition: sf.proc.name = p2\n  priority: high\n\
- rule: r3\n  desc: d\n  condition: sf.proc.name = p3\n  priority: high\n";

#[test]
fn bench_keys_trim_the_rule_set() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_policy(dir.path(), FOUR_RULES);
    let names = |json: String| -> Vec<String> {
        let pe = engine(&json).unwrap();
        pe.rules().unwrap().rules().iter().map(|r| r.matched.name.to_string()).collect()
    };
    let passing = |json: String| -> Vec<i64> {
        let mut pe = engine(&json).unwrap();
        out_ts(pe.process(Batch::flat(records(10))).unwrap())
    };
    // Off (absent or -1): all rules.
    assert_eq!(names(format!(r#"{{"policies":"{p}"}}"#)), ["r0", "r1", "r2", "r3"]);
    assert_eq!(names(format!(r#"{{"policies":"{p}","bench.rulesetsize":"-1","bench.ruleindex":"-1"}}"#)).len(), 4);
    // The first N rules.
    assert_eq!(names(format!(r#"{{"policies":"{p}","bench.rulesetsize":"2"}}"#)), ["r0", "r1"]);
    assert_eq!(passing(format!(r#"{{"policies":"{p}","bench.rulesetsize":"2"}}"#)), [0, 1]);
    assert_eq!(names(format!(r#"{{"policies":"{p}","bench.rulesetsize":"9"}}"#)).len(), 4);
    // Rule #i only, winning over the size.
    assert_eq!(names(format!(r#"{{"policies":"{p}","bench.ruleindex":"2"}}"#)), ["r2"]);
    assert_eq!(names(format!(r#"{{"policies":"{p}","bench.ruleindex":"3","bench.rulesetsize":"1"}}"#)), ["r3"]);
    assert_eq!(passing(format!(r#"{{"policies":"{p}","bench.ruleindex":"3","bench.rulesetsize":"1"}}"#)), [3]);
    // Out of range: no rules, with a warning; drop filters are kept.
    let pe = engine(&format!(r#"{{"policies":"{p}","mode":"enrich","bench.ruleindex":"4"}}"#)).unwrap();
    let rs = pe.rules().unwrap();
    assert_eq!(rs.rule_count(), 0);
    assert_eq!(rs.filter_count(), 1);
    assert!(rs.warnings().iter().any(|w| w.message.contains("bench.ruleindex 4 is out of range")));
    let err = engine(&format!(r#"{{"policies":"{p}","bench.rulesetsize":"many"}}"#)).err().unwrap();
    assert!(err.contains("bench.rulesetsize"), "{err}");
}

#[test]
fn live_reload_swaps_rules_and_keeps_them_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_policy(dir.path(), POLICY);
    let mut pe = engine(&format!(r#"{{"policies":"{p}","monitor":"local","monitor.interval":"0"}}"#)).unwrap();
    assert_eq!(out_ts(pe.process(Batch::flat(records(10))).unwrap()), vec![0, 2, 4]);
    let counter = |pe: &PolicyEngine, n: &str| pe.counters().iter().find(|c| c.name.as_str() == n).map(|c| c.value).unwrap_or(0);

    // A broken edit is rejected; the running rules stay.
    std::fs::write(dir.path().join("rules.yaml"), "- rule: r\n  desc: d\n  condition: (\n").unwrap();
    assert!(wait_for(|| counter(&pe, "policy_reload_failures") == 1), "failed reload not counted");
    assert!(pe.last_reload_error().unwrap_or_default().contains("rules.yaml"));
    assert_eq!(out_ts(pe.process(Batch::flat(records(10))).unwrap()), vec![0, 2, 4]);

    // A good edit (written elsewhere and renamed into place) is swapped in between batches.
    let tmp = dir.path().join("new.tmp");
    std::fs::write(&tmp, "- rule: odd\n  desc: d\n  condition: sf.proc.name in (p1, p3)\n").unwrap();
    std::fs::rename(&tmp, dir.path().join("rules.yaml")).unwrap();
    assert!(wait_for(|| counter(&pe, "policy_reloads") == 1), "reload not counted");
    assert_eq!(out_ts(pe.process(Batch::flat(records(10))).unwrap()), vec![1, 3]);
}

fn sigma_rule(id: &str, names: &str) -> String {
    format!(
        "title: {id}\nid: {id}\ndescription: d\nlevel: high\nlogsource:\n  product: linux\n\
         detection:\n  sel:\n    Image|endswith: [{names}]\n  condition: sel\n"
    )
}

#[test]
fn sigma_language_runs_and_reloads_as_sigma() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let cfg = dir.path().join("sysflow.yml");
    std::fs::write(&cfg, "fieldmappings:\n  Image: sf.proc.exe\n").unwrap();
    std::fs::write(rules.join("even.yml"), sigma_rule("even", "/P0, /p2, /p4")).unwrap();
    let json = format!(
        r#"{{"policies":"{}","language":"sigma","config":"{}","monitor":"local","monitor.interval":"0"}}"#,
        rules.display(),
        cfg.display()
    );
    let mut pe = engine(&json).unwrap();
    assert_eq!(out_ts(pe.process(Batch::flat(records(10))).unwrap()), vec![0, 2, 4]);
    let counter = |pe: &PolicyEngine, n: &str| pe.counters().iter().find(|c| c.name.as_str() == n).map(|c| c.value).unwrap_or(0);
    // The reload reads the new file as Sigma (Falco's parser would reject it).
    let tmp = dir.path().join("new.tmp");
    std::fs::write(&tmp, sigma_rule("odd", "/p1, /p3")).unwrap();
    std::fs::rename(&tmp, rules.join("even.yml")).unwrap();
    assert!(wait_for(|| counter(&pe, "policy_reloads") == 1), "reload not counted: {:?}", pe.last_reload_error());
    assert_eq!(out_ts(pe.process(Batch::flat(records(10))).unwrap()), vec![1, 3]);
    let names: Vec<String> = pe.rules().unwrap().rules().iter().map(|r| r.matched.name.to_string()).collect();
    assert_eq!(names, vec!["odd"]);
    // Without a config, field names are used verbatim: `Image` is a literal, nothing matches.
    let json = format!(r#"{{"policies":"{}","language":"sigma"}}"#, rules.display());
    let mut pe = engine(&json).unwrap();
    assert!(out_ts(pe.process(Batch::flat(records(10))).unwrap()).is_empty());
}
