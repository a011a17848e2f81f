//! The engine in enrich mode without policies forwards batches untouched.

use abi_stable::{pointer_trait::AsPtr, std_types::{RArc, RStr}};
use sysflow_plugin_api::{Batch, Event, FlatRecord, Header, Host, LogLevel, PluginConfig, Processor, ProcessEvent};
use sysflow_policy_engine::PolicyEngine;

extern "C" fn log(_l: LogLevel, _i: RStr<'_>, _m: RStr<'_>) {}

fn config(json: &str) -> PluginConfig {
    PluginConfig::from_json(json).unwrap()
}

#[test]
fn enrich_without_policies_is_a_bypass() {
    let host = Host::new(log, "policyengine");
    let mut pe = PolicyEngine::new(&config(r#"{"mode":"enrich","concurrency":"1"}"#), host).unwrap();
    let header = RArc::new(Header::default());
    let recs: Vec<FlatRecord> = (0..3)
        .map(|i| FlatRecord::new(header.clone(), Event::Process(ProcessEvent { ts: i, ..Default::default() })))
        .collect();
    let batch = Batch::flat(recs);
    let Batch::Flat(inner) = &batch else { unreachable!() };
    let ptr = inner.as_ptr();
    let out = pe.process(batch.clone()).unwrap().unwrap();
    let Batch::Flat(out_inner) = &out else { panic!("flat expected") };
    assert_eq!(out_inner.as_ptr(), ptr, "bypass must forward the same batch");
    assert_eq!(out.len(), 3);
}

#[test]
fn alert_without_policies_fails() {
    let host = Host::new(log, "policyengine");
    let err = PolicyEngine::new(&config(r#"{"mode":"alert"}"#), host).err().unwrap();
    assert!(err.message.contains("policies"), "{}", err.message);
}

#[test]
fn bad_concurrency_names_key() {
    let host = Host::new(log, "policyengine");
    let err = PolicyEngine::new(&config(r#"{"mode":"enrich","concurrency":"x"}"#), host).err().unwrap();
    assert!(err.message.contains("concurrency"), "{}", err.message);
}
