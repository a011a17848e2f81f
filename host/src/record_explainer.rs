//! `sfprocessor explain`: one record of a trace as the policy engine sees it — every
//! attribute's string and integer form — and the rules that hold on it, so a policy author
//! can see why a rule did or did not fire without the source tree.

use std::{ffi::OsString, path::PathBuf};

use clap::Parser;
use sysflow_avro_drivers::TraceReader;
use sysflow_plugin_api::{
    abi_stable::std_types::RStr, Batch, FlatRecord, Host, LogLevel, Processor, SysFlowRecord,
};
use sysflow_policy_engine::{
    attributes::Attr, compile_policies_in, ActionRegistry, CompileOptions, EvalState, PolicyLanguage,
    UnknownAttributes,
};
use sysflow_reader::SysFlowReader;

/// The first argument that selects this command instead of a pipeline run.
pub const SUBCOMMAND: &str = "explain";

/// SysFlow records handed to the reader at a time while looking for the record (the
/// pipeline's own batching does not change what the reader resolves).
pub const EXPLAIN_BATCH_RECORDS: usize = 1024;

/// `sfprocessor explain`: a record as the policy engine sees it.
#[derive(Parser, Debug)]
#[command(
    name = "sfprocessor explain",
    about = "Print one record of a trace as the policy engine sees it (every attribute) and the rules that hold on it",
    override_usage = "sfprocessor explain --policies PATH (--record N | --ts NANOS) [--language falco|sigma] [--unknown-attributes disable|literal] TRACE"
)]
struct ExplainArgs {
    /// Policy file or directory (as the policy engine's `policies` key).
    #[arg(long, value_name = "PATH")]
    policies: PathBuf,
    /// The N-th record (from 1) the reader hands the policy engine.
    #[arg(long, value_name = "N", conflicts_with = "ts", required_unless_present = "ts")]
    record: Option<u64>,
    /// Every record with this timestamp (nanoseconds, the exported `ts`).
    #[arg(long, value_name = "NANOS")]
    ts: Option<i64>,
    /// Policy language (the policy engine's `language` key): falco (default) or sigma.
    #[arg(long, value_name = "LANGUAGE")]
    language: Option<String>,
    /// The policy engine's `unknown.attributes` key: disable (default) or literal.
    #[arg(long, value_name = "MODE", default_value = "disable")]
    unknown_attributes: String,
    /// The trace file.
    #[arg(value_name = "TRACE")]
    trace: PathBuf,
}

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

/// Runs `sfprocessor explain …` (`args`: program name, then the words after `explain`);
/// returns the exit status: 0 when the record was found, 1 otherwise or on bad input.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = match ExplainArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match explain(&args) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("[Error] {e}");
            1
        }
    }
}

fn explain(args: &ExplainArgs) -> Result<String, String> {
    let unknown_attributes = match args.unknown_attributes.as_str() {
        "disable" => UnknownAttributes::Disable,
        "literal" => UnknownAttributes::Literal,
        other => return Err(format!("--unknown-attributes: expected disable or literal, found '{other}'")),
    };
    let (language, warning) = PolicyLanguage::from_keys(args.language.as_deref(), None).map_err(|e| format!("--language: {e}"))?;
    if let Some(w) = warning {
        eprintln!("[Warn] {w}");
    }
    let opts = CompileOptions { unknown_attributes, actions: ActionRegistry::with_builtins(), ..Default::default() };
    let rules = compile_policies_in(&language, &args.policies, &opts).map_err(|e| e.to_string())?;
    let trace = TraceReader::open(&args.trace).map_err(|e| format!("{}: {e}", args.trace.display()))?;

    let mut reader = SysFlowReader::with_host(Host::new(quiet, "reader"));
    let mut state = EvalState::default();
    let mut out = String::new();
    let mut seen: u64 = 0;
    let mut found = 0usize;
    let mut chunk: Vec<SysFlowRecord> = Vec::with_capacity(EXPLAIN_BATCH_RECORDS);
    let mut records = trace.into_iter();
    loop {
        chunk.clear();
        for r in records.by_ref().take(EXPLAIN_BATCH_RECORDS) {
            chunk.push(r.map_err(|e| format!("{}: {e}", args.trace.display()))?);
        }
        let end = chunk.len() < EXPLAIN_BATCH_RECORDS;
        let mut flat: Vec<FlatRecord> = Vec::new();
        if !chunk.is_empty() {
            collect_flat(reader.process(Batch::sysflow(chunk.clone())), &mut flat)?;
        }
        if end {
            collect_flat(reader.flush(), &mut flat)?;
        }
        for record in flat {
            seen += 1;
            let wanted = match (args.record, args.ts) {
                (Some(n), _) => seen == n,
                (None, Some(ts)) => record.event.ts() == ts,
                (None, None) => false,
            };
            if wanted {
                found += 1;
                describe(&mut out, seen, record, &rules, &mut state);
                if args.record.is_some() {
                    return Ok(out);
                }
            }
        }
        if end {
            break;
        }
    }
    if found == 0 {
        let which = match (args.record, args.ts) {
            (Some(n), _) => format!("record {n}"),
            (_, Some(ts)) => format!("a record with ts {ts}"),
            _ => "the record".to_string(),
        };
        return Err(format!("{}: no {which} (the reader produced {seen} records)", args.trace.display()));
    }
    Ok(out)
}

fn collect_flat(
    result: Result<Option<Batch>, sysflow_plugin_api::PluginError>,
    into: &mut Vec<FlatRecord>,
) -> Result<(), String> {
    match result {
        Ok(Some(Batch::Flat(records))) => into.extend(records.iter().cloned()),
        Ok(_) => {}
        Err(e) => return Err(format!("reader: {e}")),
    }
    Ok(())
}

fn describe(out: &mut String, number: u64, mut record: FlatRecord, rules: &sysflow_policy_engine::RuleSet, state: &mut EvalState) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "--- record {number}: {} ts {}", record.record_type().short_name(), record.event.ts());
    let mut buf = String::new();
    for a in Attr::ALL {
        let _ = writeln!(out, "  {:28} {:?}  int={}", a.name(), a.str_form(&record, &mut buf), a.int_form(&record));
    }
    let verdict = rules.evaluate(&mut record, state);
    let _ = writeln!(out, "  verdict: {verdict:?}");
    if record.context.matched.is_empty() {
        let _ = writeln!(out, "  rules that hold: none");
    }
    for m in record.context.matched.iter() {
        let _ = writeln!(out, "  rule holds: {}", m.name);
    }
}
