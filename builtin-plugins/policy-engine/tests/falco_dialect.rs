//! `"dialect": "falco"`: Falco names mean what Falco's documentation says (`evt.type`
//! system call names, `fd.name` the full path). A Falco-style rule file run on every shared
//! trace gives exactly the alerts counted independently from the reference outputs
//! (`expected/<trace>.sysprint.json.gz`); in the default dialect the same rules never
//! match and say why.

mod common;
use common::data_dir;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use abi_stable::std_types::RStr;
use sysflow_avro_drivers::TraceReader;
use sysflow_plugin_api::{Batch, Host, LogLevel, PluginConfig, Processor, SysFlowRecord};
use sysflow_policy_engine::{compile_policies_with, dialect::Dialect, CompileOptions, PolicyEngine};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn rules_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/falco_style/dialect.yaml")
}

/// Alerts per rule name for one trace, through reader and policy engine in alert mode.
fn run(trace: &Path, dialect: &str) -> BTreeMap<String, usize> {
    let config = format!(
        r#"{{"mode":"alert","policies":"{}","dialect":"{dialect}","actiondir":"/nonexistent"}}"#,
        rules_file().display()
    );
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "reader"));
    let mut engine = PolicyEngine::new(&PluginConfig::from_json(&config).expect("config"), Host::new(quiet, "pe"))
        .expect("engine");
    let mut counts = BTreeMap::new();
    let mut batch: Vec<SysFlowRecord> = Vec::new();
    let mut flush = |batch: &mut Vec<SysFlowRecord>, counts: &mut BTreeMap<String, usize>| {
        let flat = reader.process(Batch::sysflow(std::mem::take(batch))).expect("reader");
        if let Some(Batch::Flat(recs)) = flat.map(|b| engine.process(b).expect("engine")).flatten() {
            for r in recs.iter() {
                for m in r.context.matched.iter() {
                    *counts.entry(m.name.to_string()).or_insert(0) += 1;
                }
            }
        }
    };
    for rec in TraceReader::open(trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display())).flatten() {
        batch.push(rec);
        if batch.len() == 1000 {
            flush(&mut batch, &mut counts);
        }
    }
    flush(&mut batch, &mut counts);
    counts
}

/// The same rules counted from the reference output: an exec (`opflags_bitmap` bit 1) of
/// a shell; an open (bit 7) of a path under `/etc/` (on file records).
fn expected(data: &Path, trace: &str) -> BTreeMap<String, usize> {
    let path = data.join("expected").join(format!("{trace}.sysprint.json.gz"));
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut counts = BTreeMap::new();
    for line in BufReader::new(flate2::read::GzDecoder::new(f)).lines() {
        let line = line.expect("gzip");
        let j: serde_json::Value = match serde_json::from_str(&line) {
            Ok(j) => j,
            // Upstream's sysprint writes invalid JSON in some pod arrays.
            Err(_) => serde_json::from_str(&line.replace("\"\"", "\",\"").replace("}{", "},{")).expect("json"),
        };
        let ops = j["opflags_bitmap"].as_i64().unwrap_or(0);
        let kind = j["type"].as_str().unwrap_or("");
        let exe = j["proc.exe"].as_str().unwrap_or("");
        let name = exe.rsplit('/').next().unwrap_or("");
        if kind == "PE" && ops & 2 != 0 && ["bash", "sh", "dash"].contains(&name) {
            *counts.entry("Shell spawned".to_string()).or_insert(0) += 1;
        }
        let file = j["file.path"].as_str().unwrap_or("");
        if matches!(kind, "FF" | "FE") && ops & 128 != 0 && file.starts_with("/etc/") {
            *counts.entry("Etc opened".to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn falco_dialect_rules_fire_where_falcos_would_on_every_shared_trace() {
    let Some(data) = data_dir() else { return };
    let mut traces: Vec<PathBuf> =
        std::fs::read_dir(data.join("traces")).expect("traces").filter_map(|e| e.ok().map(|e| e.path())).collect();
    traces.sort();
    let mut total = BTreeMap::new();
    for t in &traces {
        let name = t.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let ours = run(t, "falco");
        assert_eq!(ours, expected(&data, &name), "{name}");
        for (k, v) in ours {
            *total.entry(k).or_insert(0) += v;
        }
    }
    // Both rules fire somewhere, so the comparison above is not between two empty maps.
    assert!(total.get("Shell spawned").copied().unwrap_or(0) > 0 && total.get("Etc opened").copied().unwrap_or(0) > 0, "{total:?}");
    eprintln!("falco dialect alerts on {} traces: {total:?}", traces.len());
}

#[test]
fn default_dialect_keeps_upstreams_meanings_and_warns_about_system_call_names() {
    let Some(data) = data_dir() else { return };
    let trace = data.join("traces").join("sf-apis_files.sf");
    assert!(run(&trace, "sysflow").is_empty());
    let rs = compile_policies_with(&rules_file(), &CompileOptions::default()).expect("loads");
    let warnings: Vec<String> = rs.warnings().iter().map(|w| w.message.clone()).collect();
    // One warning for the file, not one per rule.
    assert_eq!(warnings.iter().filter(|w| w.contains("system call names")).count(), 1, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "2 condition(s) compare evt.type with system call names, which never match in the default dialect \
             (SysFlow operation names such as EXEC, OPEN): rule 'Shell spawned' (execve, execveat), \
             rule 'Etc opened' (open, openat, openat2, creat); set \"dialect\": \"falco\""
        )),
        "{warnings:?}"
    );
    let falco = CompileOptions { dialect: Dialect::Falco, ..Default::default() };
    let rs = compile_policies_with(&rules_file(), &falco).expect("loads");
    assert!(rs.warnings().is_empty(), "{:?}", rs.warnings());
}
