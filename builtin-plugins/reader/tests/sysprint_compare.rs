//! Every shared trace, decoded and run through the reader, compared field by field with
//! the reference reader output (`expected/<trace>.sysprint.json.gz`, sysprint 0.6.1).
//!
//! Differences that come from the reference tool rather than from us are listed in
//! [`known_difference`] with the reason; anything else fails the test, with a summary of
//! every mismatch class (key, count, first example).

mod common;

use std::{collections::BTreeMap, time::Duration};

use serde_json::{json, Map, Value};
use sysflow_plugin_api::{
    enums::{container_type_name, k8s_action_name, k8s_component_name},
    flat::ipv4_string,
    Event, FlatRecord,
};

/// Our record in sysprint's conventions ("" or null for fields that do not apply).
fn sysprint_view(r: &FlatRecord) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    let ev = &r.event;
    let is_ke = matches!(ev, Event::K8s(_));
    put("type", json!(r.record_type().short_name()));
    put("ts_uts", json!(ev.ts()));
    put(
        "endts_uts",
        match ev {
            Event::FileFlow(e) => json!(e.end_ts),
            Event::NetworkFlow(e) => json!(e.end_ts),
            _ => Value::Null,
        },
    );
    put(
        "ret",
        match ev {
            Event::Process(e) => json!(e.ret),
            Event::File(e) => json!(e.ret),
            Event::Network(e) => json!(e.ret),
            _ => Value::Null,
        },
    );
    put("opflags_bitmap", if is_ke { json!("") } else { json!(ev.op_flags()) });

    match r.process() {
        Some(p) => {
            put("proc.pid", json!(p.oid.hpid));
            put("proc.tid", json!(r.tid()));
            put("proc.uid", json!(p.uid));
            put("proc.user", json!(p.user_name.as_str()));
            put("proc.gid", json!(p.gid));
            put("proc.group", json!(p.group_name.as_str()));
            put("proc.exe", json!(p.exe.as_str()));
            put("proc.args", json!(p.exe_args.as_str()));
            put("proc.tty", json!(p.tty));
            put("proc.entry", json!(p.entry));
            put("proc.createts", json!(p.oid.create_ts));
        }
        None => {
            for k in ["proc.pid", "proc.tid", "proc.uid", "proc.gid", "proc.createts"] {
                put(k, Value::Null);
            }
            for k in [
                "proc.user",
                "proc.group",
                "proc.exe",
                "proc.args",
                "proc.tty",
                "proc.entry",
            ] {
                put(k, json!(""));
            }
        }
    }
    match r.parent() {
        Some(p) => {
            put("pproc.pid", json!(p.oid.hpid));
            put("pproc.uid", json!(p.uid));
            put("pproc.gid", json!(p.gid));
            put("pproc.user", json!(p.user_name.as_str()));
            put("pproc.group", json!(p.group_name.as_str()));
            put("pproc.exe", json!(p.exe.as_str()));
            put("pproc.args", json!(p.exe_args.as_str()));
            put("pproc.tty", json!(p.tty));
            put("pproc.entry", json!(p.entry));
            put("pproc.createts", json!(p.oid.create_ts));
        }
        None => {
            for k in ["pproc.pid", "pproc.uid", "pproc.gid"] {
                put(k, Value::Null);
            }
            for k in [
                "pproc.user",
                "pproc.group",
                "pproc.exe",
                "pproc.args",
                "pproc.tty",
                "pproc.entry",
                "pproc.createts",
            ] {
                put(k, json!(""));
            }
        }
    }

    let path_of = |f: Option<&sysflow_plugin_api::File>| json!(f.map(|f| f.path.as_str()).unwrap_or(""));
    let (fd, path, newpath, ftype, openflags) = match ev {
        Event::FileFlow(e) => (
            json!(e.fd),
            path_of(r.file()),
            json!(""),
            r.file().map_or(json!(""), |f| {
                json!(char::from_u32(f.restype as u32).unwrap_or('?').to_string())
            }),
            json!(e.open_flags),
        ),
        Event::File(_) => (
            json!(""),
            path_of(r.file()),
            path_of(r.new_file()),
            r.file().map_or(json!(""), |f| {
                json!(char::from_u32(f.restype as u32).unwrap_or('?').to_string())
            }),
            json!(""),
        ),
        Event::NetworkFlow(e) => (json!(e.fd), json!(""), json!(""), json!(""), json!("")),
        _ => (json!(""), json!(""), json!(""), json!(""), json!("")),
    };
    put("file.fd", fd);
    put("file.path", path);
    put("file.newpath", newpath);
    put("file.type", ftype);
    put("file.openflags", openflags);

    let net = match ev {
        Event::NetworkFlow(e) => Some((e.proto, e.sport, e.dport, e.sip, e.dip)),
        Event::Network(e) => Some((e.proto, e.sport, e.dport, e.sip, e.dip)),
        _ => None,
    };
    match net {
        Some((proto, sport, dport, sip, dip)) => {
            put("net.proto", json!(proto));
            put("net.sport", json!(sport));
            put("net.dport", json!(dport));
            put("net.sip", json!(ipv4_string(sip as i64)));
            put("net.dip", json!(ipv4_string(dip as i64)));
        }
        None => {
            put("net.proto", json!(""));
            put("net.sport", Value::Null);
            put("net.dport", Value::Null);
            put("net.sip", json!(""));
            put("net.dip", json!(""));
        }
    }
    let (rops, wops, rbytes, wbytes) = r.flow_counters();
    let is_flow = matches!(ev, Event::FileFlow(_) | Event::NetworkFlow(_));
    for (k, v) in [
        ("flow.rbytes", rbytes),
        ("flow.rops", rops),
        ("flow.wbytes", wbytes),
        ("flow.wops", wops),
    ] {
        put(k, if is_flow { json!(v) } else { Value::Null });
    }

    match r.container() {
        Some(c) => {
            put("container.id", json!(c.id.as_str()));
            put("container.name", json!(c.name.as_str()));
            put("container.imageid", json!(c.imageid.as_str()));
            put("container.image", json!(c.image.as_str()));
            put(
                "container.type",
                json!(format!("CT_{}", container_type_name(c.container_type))),
            );
            put("container.privileged", json!(c.privileged));
        }
        None => {
            for k in ["id", "name", "imageid", "image", "type", "privileged"] {
                put(&format!("container.{k}"), json!(""));
            }
        }
    }
    let ips = |v: &[i64]| Value::Array(v.iter().map(|ip| json!(ipv4_string(*ip))).collect());
    match r.pod() {
        Some(p) => {
            put("pod.id", json!(p.id.as_str()));
            put("pod.name", json!(p.name.as_str()));
            put("pod.nname", json!(p.node_name.as_str()));
            put("pod.hostip", ips(&p.host_ip));
            put("pod.internalip", ips(&p.internal_ip));
            put("pod.ns", json!(p.namespace.as_str()));
            put("pod.rstrtcnt", json!(p.restart_count));
            let services: Vec<Value> = p
                .services
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name.as_str(),
                        "id": s.id.as_str(),
                        "namespace": s.namespace.as_str(),
                        "portList": s.port_list.iter().map(|p| json!({
                            "port": p.port, "targetPort": p.target_port, "nodePort": p.node_port, "proto": p.proto.as_str(),
                        })).collect::<Vec<_>>(),
                        "clusterIP": ips(&s.cluster_ip),
                    })
                })
                .collect();
            put("pod.services", Value::Array(services));
        }
        None => {
            for k in ["id", "name", "nname", "hostip", "internalip", "ns", "services"] {
                put(&format!("pod.{k}"), json!(""));
            }
            put("pod.rstrtcnt", Value::Null);
        }
    }

    put("node.id", json!(r.header.exporter.as_str()));
    put("node.ip", json!(r.header.ip.as_str()));
    put("filename", json!(r.header.filename.as_str()));
    put("schema", json!(r.header.version));
    match ev {
        Event::K8s(k) => {
            put("k8s.action", json!(k8s_action_name(k.action)));
            put("k8s.kind", json!(k8s_component_name(k.kind)));
            put("k8s.msg", json!(k.message.as_str()));
        }
        _ => {
            for k in ["k8s.action", "k8s.kind", "k8s.msg"] {
                put(k, json!(""));
            }
        }
    }
    m
}

/// Differences explained by the reference tool, not by the reader. Returns the reason.
fn known_difference(key: &str, ours: &Value, theirs: &Value, rec: &FlatRecord) -> Option<&'static str> {
    // The first sysflow generation (header version 1000) has no SFHeader.ip, Process.entry
    // and (layout S1000d) NetworkFlow.fd; sysprint prints "" where the processor takes the
    // schema defaults ("NA", false, 0).
    let v1000 = rec.header.version == 1000;
    match (key, ours, theirs) {
        ("node.ip", Value::String(o), Value::String(t)) if v1000 && o == "NA" && t.is_empty() => {
            Some("v1000 has no header ip: upstream's default \"NA\", sysprint \"\"")
        }
        ("proc.entry" | "pproc.entry", Value::Bool(false), Value::String(t)) if v1000 && t.is_empty() => {
            Some("v1000 has no Process.entry: default false, sysprint \"\"")
        }
        ("file.fd", Value::Number(n), Value::String(t))
            if v1000 && n.as_i64() == Some(0) && t.is_empty() && matches!(rec.event, Event::NetworkFlow(_)) =>
        {
            Some("S1000d NetworkFlow has no fd: default 0, sysprint \"\"")
        }
        // Upstream trims exe, args and file paths (strings.TrimSpace); sysprint prints them raw.
        (
            "proc.exe" | "proc.args" | "pproc.exe" | "pproc.args" | "file.path" | "file.newpath",
            Value::String(o),
            Value::String(t),
        ) if o != t && t.trim() == o => Some("upstream trims whitespace, sysprint keeps it"),
        _ => None,
    }
}

#[derive(Default)]
struct MismatchClass {
    count: usize,
    example: String,
}

#[test]
fn every_trace_matches_the_reference_reader() {
    let Some(dir) = common::data_dir() else { return };
    let traces = common::traces(&dir);
    assert!(
        traces.len() >= 30,
        "expected the 34 shared traces, found {}",
        traces.len()
    );

    let mut unexplained: BTreeMap<String, MismatchClass> = BTreeMap::new();
    let mut explained: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut compared = 0usize;
    let mut count_errors = Vec::new();
    let mut total_time = Duration::ZERO;
    let mut totals = [("", 0u64); 6];
    for trace in &traces {
        let name = trace
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let run = common::read_trace(trace);
        let (ours, stats) = (run.records, run.stats);
        // The bounded cache must never let go of an entity a real trace still refers to.
        assert_eq!(
            (stats.evicted_process, stats.evicted_file, stats.evicted_container, stats.evicted_pod),
            (0, 0, 0, 0),
            "{name}: references to evicted entities"
        );
        total_time += run.reader_time;
        for (i, (k, v)) in [
            ("records_in", stats.records_in),
            ("missing_process", stats.missing_process),
            ("missing_file", stats.missing_file),
            ("missing_container", stats.missing_container),
            ("missing_pod", stats.missing_pod),
            ("ignored_process_flows", stats.ignored_process_flows),
        ]
        .into_iter()
        .enumerate()
        {
            totals[i].0 = k;
            totals[i].1 += v;
        }
        let theirs = common::json_lines(&dir.join("expected").join(format!("{name}.sysprint.json.gz")));
        if ours.len() != theirs.len() {
            count_errors.push(format!(
                "{name}: {} records, reference has {} ({stats:?})",
                ours.len(),
                theirs.len()
            ));
            continue;
        }
        for (i, (rec, exp)) in ours.iter().zip(&theirs).enumerate() {
            compared += 1;
            let view = sysprint_view(rec);
            for (key, mine) in &view {
                let Some(want) = exp.get(key) else {
                    unexplained
                        .entry(format!("{key} (absent in reference)"))
                        .or_default()
                        .count += 1;
                    continue;
                };
                let want = match (key.as_str(), want) {
                    // sysprint keeps the file driver's raw message; our driver strips "\n\0".
                    ("k8s.msg", Value::String(s)) => json!(s.trim_end_matches(['\n', '\0'])),
                    _ => want.clone(),
                };
                if *mine == want {
                    continue;
                }
                if let Some(reason) = known_difference(key, mine, &want, rec) {
                    *explained.entry((key.clone(), reason)).or_default() += 1;
                    continue;
                }
                let class = unexplained.entry(key.clone()).or_default();
                class.count += 1;
                if class.example.is_empty() {
                    class.example = format!("{name} record {i} ({}): ours {mine} reference {want}", exp["type"]);
                }
            }
        }
    }
    eprintln!("compared {compared} records of {} traces", traces.len());
    eprintln!(
        "reader: {} records in {:.1} ms ({:.2} M records/s); counters {totals:?}",
        totals[0].1,
        total_time.as_secs_f64() * 1e3,
        totals[0].1 as f64 / total_time.as_secs_f64() / 1e6
    );
    for ((key, reason), n) in &explained {
        eprintln!("known difference  {key:<22} {n:>6}  {reason}");
    }
    for (key, c) in &unexplained {
        eprintln!("MISMATCH          {key:<22} {:>6}  e.g. {}", c.count, c.example);
    }
    for e in &count_errors {
        eprintln!("COUNT             {e}");
    }
    assert!(count_errors.is_empty(), "record counts differ: {count_errors:#?}");
    // Every shared trace is self-contained: each event's entities precede it.
    for (name, value) in &totals[1..] {
        assert_eq!(*value, 0, "{name} on the shared traces");
    }
    assert!(
        unexplained.is_empty(),
        "{} unexplained mismatch classes (see stderr)",
        unexplained.len()
    );
    assert!(compared > 60_000, "only {compared} records compared");
}
