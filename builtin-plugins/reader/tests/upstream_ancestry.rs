//! Process ancestry against upstream sfprocessor 0.7's own output
//! (`expected-upstream/<trace>.bypass.json.gz`, every record forwarded in input order).
//!
//! Upstream memoises each process's ancestry at its first use and never refreshes it
//! until the next header; we rebuild it when a process it depends on changes. So for
//! every record: upstream's `proc.apid`/`proc.aexe` must equal the ancestry *we* built
//! for that process's first record (proving we compute the same ancestry from the same
//! cache state), and the records where our current ancestry differs are exactly the
//! ones the stale memo affects (counted and printed: the impact of the fix).

mod common;

use std::collections::HashMap;

use serde_json::{json, Value};
use sysflow_plugin_api::{FlatRecord, Oid};

fn apid(r: &FlatRecord) -> Value {
    json!(r.ancestry.iter().map(|p| p.oid.hpid).collect::<Vec<_>>())
}

fn aexe(r: &FlatRecord) -> Value {
    json!(r.ancestry.iter().map(|p| p.exe.as_str()).collect::<Vec<_>>())
}

#[test]
fn ancestry_equals_upstream_except_where_upstream_memo_is_stale() {
    let Some(dir) = common::data_dir() else { return };
    let mut compared = 0usize;
    let mut refreshed = 0usize;
    let mut traces_compared = 0usize;
    let mut failures = Vec::new();
    for trace in common::traces(&dir) {
        let name = trace
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let upstream_path = dir.join("expected-upstream").join(format!("{name}.bypass.json.gz"));
        if !upstream_path.is_file() {
            continue;
        }
        let upstream = common::json_lines(&upstream_path);
        if upstream.is_empty() {
            // Upstream crashed on this trace (the nodejs_mon network-flow converter panic).
            continue;
        }
        let ours = common::read_trace(&trace).records;
        if ours.len() != upstream.len() {
            failures.push(format!(
                "{name}: {} records, upstream wrote {}",
                ours.len(),
                upstream.len()
            ));
            continue;
        }
        traces_compared += 1;
        // Each shared trace has a single header, so upstream's memo lives for the whole file.
        let mut first_use: HashMap<Oid, (Value, Value)> = HashMap::new();
        for (i, (rec, up)) in ours.iter().zip(&upstream).enumerate() {
            let Some(proc_section) = up.get("proc") else { continue };
            if rec.process().is_none() {
                continue;
            }
            compared += 1;
            let frozen = first_use
                .entry(rec.proc_oid())
                .or_insert_with(|| (apid(rec), aexe(rec)))
                .clone();
            let (up_apid, up_aexe) = (proc_section["apid"].clone(), proc_section["aexe"].clone());
            if (up_apid.clone(), up_aexe.clone()) != frozen {
                failures.push(format!(
                    "{name} record {i}: upstream ancestry {up_apid} {up_aexe}, first-use ancestry {} {}",
                    frozen.0, frozen.1
                ));
            }
            if (apid(rec), aexe(rec)) != frozen {
                refreshed += 1;
            }
        }
    }
    eprintln!(
        "compared the ancestry of {compared} records of {traces_compared} traces with upstream; \
         {refreshed} carry a refreshed ancestry where upstream's memo is stale"
    );
    assert!(
        failures.is_empty(),
        "{} differences, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        traces_compared >= 25 && compared > 50_000,
        "too little compared: {traces_compared} traces, {compared} records"
    );
}
