//! Every shared trace through decoder → reader → JSON encoder, compared line by line with
//! upstream's output (`expected-upstream/<trace>.bypass.json.gz`, sf-processor 0.7.0).
//!
//! A line counts as identical when it equals upstream's byte for byte once our flow
//! counters are doubled (upstream's counter bug). Other lines are compared key by key;
//! a difference is accepted only if it is one of the documented fixes (see
//! [`classify`]); anything else fails the test with a summary per key.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use serde_json::Value;
use sysflow_avro_drivers::TraceReader;
use prost::Message;
use sysflow_exporter::{opentelemetry_proto::tonic::logs::v1::LogsData, EcsEncoder, JsonEncoder, OtelEncoder, OtelEncoding};
use sysflow_plugin_api::{abi_stable::std_types::RStr, Batch, FlatRecord, Host, LogLevel, Processor, SysFlowRecord};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SYSFLOW_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join("traces").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data not found at {}", dir.display());
    }
    eprintln!("skipping: test data not found at {}", dir.display());
    None
}

/// Our JSON lines for a trace: decode, read in batches of 1000 as the pipeline does, encode.
fn our_lines(path: &Path) -> Vec<String> {
    let mut json = JsonEncoder::new();
    encode_trace(path, &mut |r, out| json.encode(r, out))
}

/// Decodes, reads and encodes a trace with `encode`.
fn encode_trace(path: &Path, encode: &mut dyn FnMut(&FlatRecord, &mut Vec<u8>)) -> Vec<String> {
    let trace = TraceReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "upstream-compare"));
    let mut encoder = encode;
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let mut emit = |out: Option<Batch>, encoder: &mut &mut dyn FnMut(&FlatRecord, &mut Vec<u8>)| {
        if let Some(Batch::Flat(records)) = out {
            for r in records.iter() {
                buf.clear();
                encoder(r, &mut buf);
                lines.push(String::from_utf8(buf.clone()).expect("encoder output is UTF-8"));
            }
        }
    };
    let mut batch: Vec<SysFlowRecord> = Vec::with_capacity(1000);
    for rec in trace {
        batch.push(rec.unwrap_or_else(|e| panic!("{}: decode error: {e}", path.display())));
        if batch.len() == 1000 {
            let out = reader.process(Batch::sysflow(std::mem::take(&mut batch))).expect("reader");
            emit(out, &mut encoder);
        }
    }
    let out = reader.process(Batch::sysflow(batch)).expect("reader");
    emit(out, &mut encoder);
    let out = reader.flush().expect("reader flush");
    emit(out, &mut encoder);
    lines
}

fn upstream_lines(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .enumerate()
        .map(|(i, l)| l.unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// Our line with the `flow` counters doubled, as upstream writes them.
fn with_upstream_flow(line: &str) -> String {
    let Some(start) = line.find("\"flow\":{") else { return line.to_string() };
    let body_start = start + "\"flow\":{".len();
    let Some(len) = line[body_start..].find('}') else { return line.to_string() };
    let body = &line[body_start..body_start + len];
    let doubled: Vec<String> = body
        .split(',')
        .map(|kv| match kv.split_once(':') {
            Some((k, v)) => match v.parse::<i64>() {
                Ok(n) => format!("{k}:{}", n * 2),
                Err(_) => kv.to_string(),
            },
            None => kv.to_string(),
        })
        .collect();
    format!("{}{}{}", &line[..body_start], doubled.join(","), &line[body_start + len..])
}

/// Upstream's TrimBoundingQuotes: one leading and one trailing `"` or `'` removed.
fn trim_quotes(s: &str) -> &str {
    sysflow_plugin_api::flat::trim_bounding_quotes(s)
}

/// Why a value of ours may differ from upstream's (`None`: unexplained).
fn classify(path: &str, ours: &Value, up: &Value) -> Option<&'static str> {
    if let (Value::String(o), Value::String(u)) = (ours, up) {
        if path.starts_with("pproc.") && o.is_empty() && u == "\"\"" {
            return Some("unknown parent: \"\" instead of \"\\\"\\\"\"");
        }
        // Upstream trims the whole value, or (command lines of the ancestry and the
        // parent) exe and args separately before joining them with a space.
        let split_trimmed = o
            .match_indices(' ')
            .any(|(k, _)| format!("{} {}", trim_quotes(&o[..k]), trim_quotes(&o[k + 1..])) == *u);
        if trim_quotes(o) == u || split_trimmed {
            return Some("bounding quotes kept (upstream TrimBoundingQuotes)");
        }
    }
    let pair = (ours.as_str().unwrap_or(""), up.as_str().unwrap_or(""));
    if path.starts_with("opflags")
        && matches!(pair, ("SEND", "WRITE") | ("RECV", "READ") | ("WRITE", "SEND") | ("READ", "RECV"))
    {
        return Some("op flag names per record type (upstream memoises them per value)");
    }
    None
}

/// Paths the reader's ancestry refresh can change.
fn is_ancestry_path(path: &str) -> bool {
    ["proc.acmdline", "proc.aexe", "proc.aname", "proc.apid"].iter().any(|p| path.starts_with(p))
        || (path.starts_with("pproc.") && !matches!(path, "pproc.pid" | "pproc.createts" | "pproc.oid"))
}

/// True when our ancestry arrays agree with our `proc` and `pproc` sections.
fn ancestry_consistent(v: &Value) -> bool {
    let proc = &v["proc"];
    let cmd = |exe: &Value, args: &Value| -> Value {
        let (e, a) = (exe.as_str().unwrap_or(""), args.as_str().unwrap_or(""));
        Value::String(if a.is_empty() { e.to_string() } else { format!("{e} {a}") })
    };
    let ok_self = proc["aexe"][0] == proc["exe"]
        && proc["aname"][0] == proc["name"]
        && proc["apid"][0] == proc["pid"]
        && proc["acmdline"][0] == cmd(&proc["exe"], &proc["args"]);
    let pproc = &v["pproc"];
    let ok_parent = match (pproc.is_object(), proc["aexe"].as_array().map_or(0, |a| a.len())) {
        (false, _) => true,
        (true, 1) => pproc["exe"] == "",
        (true, _) => {
            proc["aexe"][1] == pproc["exe"]
                && proc["apid"][1] == pproc["pid"]
                && proc["acmdline"][1] == pproc["cmdline"]
        }
    };
    ok_self && ok_parent
}

/// True when every object has its keys in the same order in both values.
fn same_key_order(ours: &Value, up: &Value) -> bool {
    match (ours, up) {
        (Value::Object(o), Value::Object(u)) => {
            o.keys().eq(u.keys()) && o.values().zip(u.values()).all(|(a, b)| same_key_order(a, b))
        }
        (Value::Array(o), Value::Array(u)) => o.iter().zip(u).all(|(a, b)| same_key_order(a, b)),
        _ => true,
    }
}

/// Records every difference between `ours` and `up` below `path`.
fn diff(path: &str, ours: &Value, up: &Value, out: &mut Vec<(String, Option<&'static str>, String)>) {
    match (ours, up) {
        (Value::Object(o), Value::Object(u)) => {
            for (k, uv) in u {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match o.get(k) {
                    Some(ov) => diff(&p, ov, uv, out),
                    None => out.push((p, None, format!("missing in ours; upstream {uv}"))),
                }
            }
            for k in o.keys().filter(|k| !u.contains_key(*k)) {
                out.push((format!("{path}.{k}"), None, format!("extra in ours: {}", o[k])));
            }
        }
        (Value::Array(o), Value::Array(u)) if o.len() == u.len() => {
            for (i, (ov, uv)) in o.iter().zip(u).enumerate() {
                diff(&format!("{path}[{i}]"), ov, uv, out);
            }
        }
        _ if ours == up => {}
        _ => out.push((path.to_string(), classify(path, ours, up), format!("ours {ours} upstream {up}"))),
    }
}

#[derive(Default)]
struct Tally {
    lines: usize,
    identical: usize,
    explained: BTreeMap<&'static str, usize>,
    upstream_invalid: usize,
    unexplained: BTreeMap<String, (usize, String)>,
}

/// The shared traces (`*.sf`), in name order.
fn shared_traces(data: &Path) -> Vec<PathBuf> {
    let mut traces: Vec<PathBuf> = std::fs::read_dir(data.join("traces"))
        .expect("traces dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sf"))
        .collect();
    traces.sort();
    traces
}

#[test]
fn json_output_matches_upstream_bypass() {
    let Some(data) = data_dir() else { return };
    let traces = shared_traces(&data);
    assert!(!traces.is_empty(), "no traces in {}", data.display());
    let mut total = Tally::default();
    let mut per_trace = Vec::new();
    for trace in &traces {
        let name = trace.file_name().and_then(|n| n.to_str()).expect("trace name");
        let ours = our_lines(trace);
        for (i, line) in ours.iter().enumerate() {
            if let Err(e) = serde_json::from_str::<Value>(line) {
                panic!("{name}: our line {} is not valid JSON ({e}): {line}", i + 1);
            }
        }
        let expected = data.join("expected-upstream").join(format!("{name}.bypass.json.gz"));
        if !expected.exists() {
            // Upstream crashes on these traces (nodejs); validity was checked above.
            per_trace.push(format!("{name}: {} lines, no upstream output", ours.len()));
            continue;
        }
        let up = upstream_lines(&expected);
        assert_eq!(ours.len(), up.len(), "{name}: line count differs from upstream");
        let mut t = Tally::default();
        for (i, (o, u)) in ours.iter().zip(&up).enumerate() {
            t.lines += 1;
            let o = with_upstream_flow(o);
            if &o == u {
                t.identical += 1;
                continue;
            }
            let Ok(uv) = serde_json::from_str::<Value>(u) else {
                t.upstream_invalid += 1;
                continue;
            };
            let ov: Value = serde_json::from_str(&o).expect("ours parses");
            let mut diffs = Vec::new();
            diff("", &ov, &uv, &mut diffs);
            if ancestry_consistent(&ov) {
                for d in diffs.iter_mut().filter(|d| d.1.is_none() && is_ancestry_path(&d.0)) {
                    d.1 = Some("ancestry refreshed by the reader (upstream's memoised ptree is stale)");
                }
            }
            if !same_key_order(&ov, &uv) {
                diffs.push(("(key order)".into(), None, format!("ours {o}\nupstream {u}")));
            }
            if diffs.is_empty() {
                let entry = t.unexplained.entry("(raw text: key order or number format)".into()).or_default();
                entry.0 += 1;
                if entry.1.is_empty() {
                    entry.1 = format!("{name}:{}:\nours {o}\nupstream {u}", i + 1);
                }
            }
            for (path, reason, detail) in diffs {
                match reason {
                    Some(r) => {
                        if !t.explained.contains_key(r) {
                            eprintln!("example of '{r}': {name}:{}: {path}: {detail}", i + 1);
                        }
                        *t.explained.entry(r).or_default() += 1
                    }
                    None => {
                        // Group by key without array indices.
                        let key: String = path.split('[').next().unwrap_or(&path).to_string();
                        let entry = t.unexplained.entry(key).or_default();
                        entry.0 += 1;
                        if entry.1.is_empty() {
                            entry.1 = format!("{name}:{}: {detail}", i + 1);
                        }
                    }
                }
            }
        }
        per_trace.push(format!(
            "{name}: {} lines, {} identical, {} upstream-invalid, explained {:?}, unexplained {}",
            t.lines,
            t.identical,
            t.upstream_invalid,
            t.explained,
            t.unexplained.values().map(|v| v.0).sum::<usize>()
        ));
        total.lines += t.lines;
        total.identical += t.identical;
        total.upstream_invalid += t.upstream_invalid;
        for (k, v) in t.explained {
            *total.explained.entry(k).or_default() += v;
        }
        for (k, (n, ex)) in t.unexplained {
            let entry = total.unexplained.entry(k).or_default();
            entry.0 += n;
            if entry.1.is_empty() {
                entry.1 = ex;
            }
        }
    }
    for line in &per_trace {
        eprintln!("{line}");
    }
    eprintln!(
        "TOTAL {} lines, {} byte-identical (flows doubled), {} upstream-invalid, explained {:?}",
        total.lines, total.identical, total.upstream_invalid, total.explained
    );
    let report: Vec<String> =
        total.unexplained.iter().map(|(k, (n, ex))| format!("  {k}: {n} differences, first: {ex}")).collect();
    assert!(report.is_empty(), "unexplained differences from upstream:\n{}", report.join("\n"));
    // Lines without value differences are byte-identical (checked above); the rest differ
    // only by the reader's ancestry refresh and the documented encoder fixes.
    assert!(total.identical > 0);
}

/// Doubles the flow counters of an ECS document, as upstream writes them.
fn ecs_with_upstream_flow(v: &mut Value) {
    let double = |x: &mut Value| {
        if let Some(n) = x.as_i64() {
            *x = Value::from(n * 2);
        }
    };
    for key in ["bytes_read", "bytes_written", "read_ops", "write_ops"] {
        if let Some(x) = v.get_mut("sf_file_action").and_then(|o| o.get_mut(key)) {
            double(x);
        }
    }
    for (section, keys) in [("network", &["bytes"][..]), ("source", &["bytes", "packets"]), ("destination", &["bytes", "packets"])] {
        for key in keys {
            if let Some(x) = v.get_mut(section).and_then(|o| o.get_mut(*key)) {
                double(x);
            }
        }
    }
}

/// Our ECS output against upstream's `enrich-ecs` runs. Those ran the policy engine in
/// enrich mode, which drops some records (filters) and adds `event.reason`,
/// `event.severity` and `tags`: upstream's records are matched to ours in order by
/// timestamp, type and thread, and the policy keys are not compared.
#[test]
fn ecs_output_matches_upstream_enrich_ecs() {
    let Some(data) = data_dir() else { return };
    let mut unexplained: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut explained: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut compared, mut identical, mut raw_checked) = (0usize, 0usize, 0usize);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(data.join("expected-upstream"))
        .expect("expected-upstream dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".enrich-ecs.json.gz"))
        .collect();
    entries.sort();
    for expected in entries {
        let file = expected.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let trace_name = file.trim_end_matches(".enrich-ecs.json.gz");
        let mut ecs = EcsEncoder::new();
        let ours = encode_trace(&data.join("traces").join(trace_name), &mut |r, out| ecs.encode(r, out));
        let key = |v: &Value| (v["@timestamp"].clone(), v["event"]["sf_type"].clone(), v["process"]["thread"]["id"].clone(), v["event"]["action"].clone());
        let mut it = ours.iter().enumerate();
        for (i, u) in upstream_lines(&expected).iter().enumerate() {
            let mut uv: Value = serde_json::from_str(u).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1));
            let ukey = key(&uv);
            let (j, o, raw) = loop {
                match it.next() {
                    Some((j, o)) => {
                        let ov: Value = serde_json::from_str(o).expect("our ECS line parses");
                        if key(&ov) == ukey {
                            break (j, ov, o);
                        }
                    }
                    None => panic!("{file}:{}: no record of ours matches {ukey:?}", i + 1),
                }
            };
            let mut ov = o;
            ecs_with_upstream_flow(&mut ov);
            for v in [&mut ov, &mut uv] {
                if let Some(ev) = v.get_mut("event").and_then(|e| e.as_object_mut()) {
                    ev.shift_remove("reason");
                    ev.shift_remove("severity");
                }
                if let Some(obj) = v.as_object_mut() {
                    obj.shift_remove("tags");
                }
            }
            compared += 1;
            let mut diffs = Vec::new();
            diff("", &ov, &uv, &mut diffs);
            if !same_key_order(&ov, &uv) {
                diffs.push(("(key order)".into(), None, format!("ours {ov}\nupstream {uv}")));
            }
            if diffs.is_empty() {
                identical += 1;
                // Byte-level check where no counter doubling or policy keys intervene.
                let no_flow = !matches!(uv["event"]["sf_type"].as_str(), Some("FF" | "NF"));
                let no_policy = !u.contains("\"reason\":") && !u.contains("\"tags\":");
                raw_checked += usize::from(no_flow && no_policy);
                if no_flow && no_policy && raw != u {
                    diffs.push(("(raw text)".into(), None, format!("ours {raw}\nupstream {u}")));
                }
            }
            for (path, reason, detail) in diffs {
                let reason = reason.or_else(|| {
                    path.starts_with("process.parent.").then_some("parent refreshed by the reader (upstream's memoised ptree is stale)")
                });
                match reason {
                    Some(r) => *explained.entry(r).or_default() += 1,
                    None => {
                        let k: String = path.split('[').next().unwrap_or(&path).to_string();
                        let entry = unexplained.entry(k).or_default();
                        entry.0 += 1;
                        if entry.1.is_empty() {
                            entry.1 = format!("{file}:{} (ours {}): {detail}", i + 1, j + 1);
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "ECS: {compared} records compared, {identical} equal ({raw_checked} of them byte-identical), explained {explained:?}"
    );
    let report: Vec<String> =
        unexplained.iter().map(|(k, (n, ex))| format!("  {k}: {n} differences, first: {ex}")).collect();
    assert!(report.is_empty(), "unexplained ECS differences from upstream:\n{}", report.join("\n"));
    assert!(compared > 0 && raw_checked > 0);
}

/// `format: otel` on every shared trace: the encoders that keep their message between
/// records write, for each record, what serde_json and prost write for the message a fresh
/// encoder builds (so nothing of an earlier record leaks into a later one), and the
/// OTLP/JSON and protobuf forms carry the same message (the protobuf byte for byte as
/// prost encodes it).
#[test]
fn otel_output_is_the_fresh_message_on_every_trace() {
    let Some(data) = data_dir() else { return };
    let traces = shared_traces(&data);
    let mut records = 0usize;
    for trace in &traces {
        let name = trace.display().to_string();
        let (mut json, mut proto) = (OtelEncoder::new(OtelEncoding::Json), OtelEncoder::new(OtelEncoding::Proto));
        let mut proto_bytes = Vec::new();
        encode_trace(trace, &mut |r, out| {
            json.encode(r, out).expect("OTLP/JSON encoding");
            let fresh = OtelEncoder::new(OtelEncoding::Json).logs_data(r).expect("message");
            let reference = serde_json::to_string(&fresh).expect("serde OTLP/JSON");
            assert_eq!(std::str::from_utf8(out).expect("UTF-8"), reference, "{name}: record {}", records + 1);
            proto_bytes.clear();
            proto.encode(r, &mut proto_bytes).expect("protobuf encoding");
            assert_eq!(LogsData::decode(proto_bytes.as_slice()).expect("decodes"), fresh, "{name}: record {}", records + 1);
            assert_eq!(proto_bytes, fresh.encode_to_vec(), "{name}: record {}: prost's own bytes", records + 1);
            records += 1;
        });
    }
    assert!(records > 10_000, "only {records} records compared");
}
