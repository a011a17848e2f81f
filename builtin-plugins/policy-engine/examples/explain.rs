//! Explains policy decisions for the records of a trace with a given timestamp:
//! `cargo run --example explain -- <policies> <trace.sf> <ts> [literal]` prints every
//! attribute's string form and each rule's and filter's result.

use std::path::Path;

use abi_stable::std_types::RStr;
use sysflow_avro_drivers::TraceReader;
use sysflow_plugin_api::{Batch, Host, LogLevel, Processor, SysFlowRecord};
use sysflow_policy_engine::{
    attributes::Attr, compile_policies_with, ActionRegistry, CompileOptions, EvalState, UnknownAttributes,
};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: explain <policies> <trace.sf> <ts> [literal]");
        std::process::exit(2);
    }
    let ts: i64 = args[3].parse().unwrap_or(0);
    let opts = CompileOptions {
        actions: ActionRegistry::with_builtins(),
        unknown_attributes: if args.get(4).map(String::as_str) == Some("literal") {
            UnknownAttributes::Literal
        } else {
            UnknownAttributes::Disable
        },
        ..Default::default()
    };
    let rs = match compile_policies_with(Path::new(&args[1]), &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let trace = match TraceReader::open(Path::new(&args[2])) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "reader"));
    let recs: Vec<SysFlowRecord> = trace.filter_map(Result::ok).collect();
    let batch: usize = std::env::var("BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(usize::MAX);
    let mut flat = Vec::new();
    for chunk in recs.chunks(batch.min(recs.len().max(1))) {
        if let Ok(Some(Batch::Flat(f))) = reader.process(Batch::sysflow(chunk.to_vec())) {
            flat.extend(f.iter().cloned());
        }
    }
    let mut st = EvalState::default();
    for r in flat.iter().filter(|r| r.event.ts() == ts) {
        let mut buf = String::new();
        println!("--- {} ts {}", r.record_type().short_name(), ts);
        for a in Attr::ALL {
            println!("  {:28} {:?}  int={}", a.name(), a.str_form(r, &mut buf), a.int_form(r));
        }
        let mut rec = r.clone();
        println!("  verdict: {:?}", rs.evaluate(&mut rec, &mut st));
        for m in rec.context.matched.iter() {
            println!("  matched: {}", m.name);
        }
    }
}
