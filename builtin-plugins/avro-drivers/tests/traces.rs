//! Decoding every shared trace: per-type counts, header versions and field spot checks
//! against the reference outputs.

mod common;

use std::{collections::HashMap, io::Read, path::Path};

use sysflow_avro_drivers::{ReadBuffers, TraceReader};
use sysflow_plugin_api::{Event, RecordType, SysFlowRecord};

/// Column names of counts.tsv for each record type.
fn column(t: RecordType) -> &'static str {
    match t {
        RecordType::Header => "H",
        RecordType::Container => "C",
        RecordType::Process => "P",
        RecordType::File => "F",
        RecordType::Pod => "POD",
        RecordType::K8sEvent => "KE",
        RecordType::ProcessEvent => "PE",
        RecordType::ProcessFlow => "PF",
        RecordType::FileFlow => "FF",
        RecordType::FileEvent => "FE",
        RecordType::NetworkFlow => "NF",
        RecordType::NetworkEvent => "NE",
    }
}

fn decode_all(path: &Path) -> Vec<SysFlowRecord> {
    let reader = TraceReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut out = Vec::new();
    for item in reader {
        match item {
            Ok(r) => out.push(r),
            Err(e) => panic!("{}: unexpected error: {e}", path.display()),
        }
    }
    out
}

#[test]
fn every_trace_matches_expected_counts() {
    let Some(dir) = common::data_dir() else { return };
    let tsv = std::fs::read_to_string(dir.join("expected/counts.tsv")).expect("counts.tsv");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().expect("tsv header").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("column {name}"));
    let mut checked = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split('\t').collect();
        let trace = cells[col("trace")];
        let path = dir.join("traces").join(trace);
        let mut reader = TraceReader::open(&path).unwrap_or_else(|e| panic!("open {trace}: {e}"));
        // Every layout resolves with only the expected defaults (ip, entry, podId, fd, ...).
        assert!(reader.schema_warnings().is_empty(), "{trace}: {:?}", reader.schema_warnings());
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let mut version = None;
        for item in reader.by_ref() {
            let rec = item.unwrap_or_else(|e| panic!("{trace}: {e}"));
            if let SysFlowRecord::Header(h) = &rec {
                version.get_or_insert(h.version);
            }
            *counts.entry(column(rec.record_type())).or_default() += 1;
        }
        for t in RecordType::ALL {
            let c = column(t);
            let want: u64 = cells[col(c)].parse().expect("count");
            assert_eq!(counts.get(c).copied().unwrap_or(0), want, "{trace}: {c} count");
        }
        let want_version: i64 = cells[col("header_version")].parse().expect("version");
        assert_eq!(version, Some(want_version), "{trace}: header version");
        let stats = reader.stats();
        assert_eq!(stats.errors, 0, "{trace}");
        assert_eq!(stats.blocks_skipped + stats.records_skipped, 0, "{trace}");
        let total: u64 = cells[col("total_records")].parse().expect("total");
        assert_eq!(stats.records, total, "{trace}");
        checked += 1;
    }
    assert_eq!(checked, 34, "all traces of counts.tsv checked");
}

fn expected_lines(dir: &Path, trace: &str) -> Vec<serde_json::Value> {
    let f = std::fs::File::open(dir.join("expected").join(format!("{trace}.sysprint.json.gz"))).expect("expected file");
    let mut s = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut s).expect("gunzip");
    s.lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// The events/flows of a trace in file order (what sysprint prints).
fn events(records: &[SysFlowRecord]) -> Vec<&Event> {
    records
        .iter()
        .filter_map(|r| match r {
            SysFlowRecord::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn httpd_first_file_flow_matches_sysprint() {
    let Some(dir) = common::data_dir() else { return };
    let recs = decode_all(&dir.join("traces/httpd.sf"));
    let exp = expected_lines(&dir, "httpd.sf");
    let evs = events(&recs);
    assert_eq!(evs.len(), exp.len());
    let Event::FileFlow(ff) = evs[0] else { panic!("first event is not a file flow: {:?}", evs[0]) };
    let e = &exp[0];
    assert_eq!(e["type"], "FF");
    assert_eq!(ff.ts, e["ts_uts"].as_i64().unwrap());
    assert_eq!(ff.end_ts, e["endts_uts"].as_i64().unwrap());
    assert_eq!(ff.proc_oid.hpid, e["proc.pid"].as_i64().unwrap());
    assert_eq!(ff.proc_oid.create_ts, e["proc.createts"].as_i64().unwrap());
    assert_eq!(ff.tid, e["proc.tid"].as_i64().unwrap());
    assert_eq!(i64::from(ff.fd), e["file.fd"].as_i64().unwrap());
    assert_eq!(ff.open_flags, 4097);
    assert_eq!(i64::from(ff.open_flags), e["file.openflags"].as_i64().unwrap());
    assert_eq!(i64::from(ff.op_flags), e["opflags_bitmap"].as_i64().unwrap());
    assert_eq!(ff.num_r_recv_bytes, 198);
    assert_eq!(ff.num_r_recv_bytes, e["flow.rbytes"].as_i64().unwrap());
    assert_eq!(ff.num_r_recv_ops, e["flow.rops"].as_i64().unwrap());
    assert_eq!(ff.num_w_send_bytes, e["flow.wbytes"].as_i64().unwrap());
    // Header of a v2 file: ip present, no filename field → "".
    let SysFlowRecord::Header(h) = &recs[0] else { panic!("first record is not a header") };
    assert_eq!(h.version, 2);
    assert_eq!(h.exporter.as_str(), e["node.id"].as_str().unwrap());
    assert_eq!(h.ip.as_str(), e["node.ip"].as_str().unwrap());
    assert_eq!(h.filename.as_str(), "");
}

/// Compares every event's timestamps, pid, op flags and flow counters with sysprint's output.
fn check_events_against_sysprint(dir: &Path, trace: &str) {
    let recs = decode_all(&dir.join("traces").join(trace));
    let exp = expected_lines(dir, trace);
    let evs = events(&recs);
    assert_eq!(evs.len(), exp.len(), "{trace}: event count");
    for (i, (ev, e)) in evs.iter().zip(&exp).enumerate() {
        let ctx = format!("{trace}: event {i}");
        assert_eq!(ev.record_type().short_name(), e["type"].as_str().unwrap(), "{ctx}");
        assert_eq!(ev.ts(), e["ts_uts"].as_i64().unwrap(), "{ctx}: ts");
        assert_eq!(i64::from(ev.op_flags()), e["opflags_bitmap"].as_i64().unwrap_or(0), "{ctx}: opflags");
        if let Some(oid) = ev.proc_oid() {
            assert_eq!(oid.hpid, e["proc.pid"].as_i64().unwrap(), "{ctx}: pid");
        }
        match ev {
            Event::NetworkFlow(nf) => {
                assert_eq!(nf.end_ts, e["endts_uts"].as_i64().unwrap(), "{ctx}: endts");
                assert_eq!(i64::from(nf.sport), e["net.sport"].as_i64().unwrap(), "{ctx}: sport");
                assert_eq!(i64::from(nf.dport), e["net.dport"].as_i64().unwrap(), "{ctx}: dport");
                assert_eq!(nf.num_r_recv_bytes, e["flow.rbytes"].as_i64().unwrap(), "{ctx}: rbytes");
                assert_eq!(nf.num_w_send_bytes, e["flow.wbytes"].as_i64().unwrap(), "{ctx}: wbytes");
                let ip = nf.sip as u32;
                let dotted = format!("{}.{}.{}.{}", ip & 0xff, (ip >> 8) & 0xff, (ip >> 16) & 0xff, ip >> 24);
                assert_eq!(dotted, e["net.sip"].as_str().unwrap(), "{ctx}: sip");
            }
            Event::FileFlow(ff) => {
                assert_eq!(ff.end_ts, e["endts_uts"].as_i64().unwrap(), "{ctx}: endts");
                assert_eq!(i64::from(ff.fd), e["file.fd"].as_i64().unwrap(), "{ctx}: fd");
                assert_eq!(i64::from(ff.open_flags), e["file.openflags"].as_i64().unwrap(), "{ctx}: openflags");
                assert_eq!(ff.num_r_recv_ops, e["flow.rops"].as_i64().unwrap(), "{ctx}: rops");
                assert_eq!(ff.num_w_send_ops, e["flow.wops"].as_i64().unwrap(), "{ctx}: wops");
            }
            Event::Process(pe) => {
                assert_eq!(i64::from(pe.ret), e["ret"].as_i64().unwrap(), "{ctx}: ret");
            }
            Event::File(fe) => {
                assert_eq!(i64::from(fe.ret), e["ret"].as_i64().unwrap(), "{ctx}: ret");
            }
            Event::K8s(ke) => {
                // sysprint shows the raw message; ours has the trailing "\n\0" stripped.
                let raw = e["k8s.msg"].as_str().unwrap();
                assert_eq!(ke.message.as_str(), raw.trim_end_matches(['\n', '\0']), "{ctx}: msg");
                assert!(raw.len() > ke.message.len(), "{ctx}: raw message had a suffix to strip");
                assert!(ke.message.as_str().ends_with('}'), "{ctx}");
            }
            _ => {}
        }
    }
}

#[test]
fn events_match_sysprint_across_layouts() {
    let Some(dir) = common::data_dir() else { return };
    // One trace per writer layout: S1000c, S2, S4 (+K8s), S3, S1000a, S1000b, S5, S1001, S1000d.
    for trace in [
        "tcp.sf",
        "httpd.sf",
        "k8s_small.sf",
        "k8s_1621959914.sf",
        "sf-apis_nginx.sf",
        "sf-apis_mpm-preforked.sf",
        "sf-collector_files.sf",
        "sf-collector_nginx.sf",
        "sf-collector_nodejs_mon.1544763289.sf",
    ] {
        check_events_against_sysprint(&dir, trace);
    }
}

#[test]
fn entity_defaults_for_old_layouts() {
    let Some(dir) = common::data_dir() else { return };
    // S1000a: header without ip, process without entry/cwd/env.
    let recs = decode_all(&dir.join("traces/sf-apis_nginx.sf"));
    let SysFlowRecord::Header(h) = &recs[0] else { panic!() };
    assert_eq!((h.version, h.ip.as_str(), h.filename.as_str()), (1000, "NA", ""));
    let p = recs.iter().find_map(|r| if let SysFlowRecord::Process(p) = r { Some(p) } else { None }).unwrap();
    assert!(!p.entry && p.cwd.is_empty() && p.env.is_empty());
    // S1001: imagerepo ignored, container fields still right.
    let recs = decode_all(&dir.join("traces/sf-collector_nginx.sf"));
    let exp = expected_lines(&dir, "sf-collector_nginx.sf");
    let c = recs.iter().find_map(|r| if let SysFlowRecord::Container(c) = r { Some(c) } else { None }).unwrap();
    let with_container = exp.iter().find(|e| e["container.id"] == c.id.as_str()).expect("an event in that container");
    assert_eq!(c.name.as_str(), with_container["container.name"].as_str().unwrap());
    assert_eq!(c.image.as_str(), with_container["container.image"].as_str().unwrap());
    assert!(c.pod_id.is_none());
    // S5: cwd/env decoded.
    let recs = decode_all(&dir.join("traces/sf-collector_alpine.sf"));
    assert!(recs.iter().any(|r| matches!(r, SysFlowRecord::Process(p) if !p.cwd.is_empty())));
    // S4 pods with services.
    let recs = decode_all(&dir.join("traces/k8s_small.sf"));
    let pods: Vec<_> = recs.iter().filter_map(|r| if let SysFlowRecord::Pod(p) = r { Some(p) } else { None }).collect();
    assert_eq!(pods.len(), 19);
    assert!(pods.iter().all(|p| !p.name.is_empty() && !p.host_ip.is_empty()));
    assert!(pods.iter().any(|p| !p.services.is_empty() && !p.services[0].port_list.is_empty()));
    assert!(recs.iter().any(|r| matches!(r, SysFlowRecord::Container(c) if c.pod_id.is_some())));
}

/// Buffers handed from reader to reader (as the file driver does) must not leak one
/// file's bytes or schema into the next: every trace, read after a larger one (of another
/// layout, or of the same schema, whose decoder is reused) and after a failed open, decodes
/// with the same records and counters as with fresh buffers.
#[test]
fn reused_buffers_decode_like_fresh_ones() {
    let Some(dir) = common::data_dir() else { return };
    let mut traces = common::traces(&dir);
    traces.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    assert!(traces.len() >= 2);
    let mut buffers = ReadBuffers::new();
    for (i, path) in traces.iter().enumerate() {
        if i == 1 {
            let garbage = std::io::Cursor::new(b"Obj\x01 cut".to_vec());
            assert!(TraceReader::from_reader_with("garbage", garbage, &mut buffers).is_err());
        }
        let mut reader = TraceReader::open_with(path, &mut buffers).expect("open");
        let mut recs = Vec::new();
        for item in reader.by_ref() {
            recs.push(item.unwrap_or_else(|e| panic!("{}: unexpected error with reused buffers: {e}", path.display())));
        }
        assert_eq!(recs, decode_all(path), "{}", path.display());
        let mut fresh = TraceReader::open(path).expect("open");
        fresh.by_ref().for_each(drop);
        assert_eq!(reader.stats(), fresh.stats(), "{}", path.display());
        assert_eq!(reader.schema_warnings(), fresh.schema_warnings(), "{}", path.display());
        buffers = reader.into_buffers();
    }
}
