//! Cross-checks the hand-written encoder and OCF writer against `apache-avro`, an
//! independent Avro implementation.

// The datum-level helpers are deprecated in 0.22 in favour of builder types; they are
// still the shortest way to encode/decode one datum against a schema.
#![allow(deprecated)]

use std::collections::HashMap;

use apache_avro::types::Value;
use apache_avro::Schema;
use sysflow_plugin_api::abi_stable::std_types::{ROption, RString};
use sysflow_plugin_api::records::*;
use sysflow_tracegen::{
    encode_datum, write_trace, GenConfig, Generator, Scenario, WriterOptions, SCHEMA_V5,
};

const CONTAINER_TYPES: [&str; 10] = [
    "CT_DOCKER", "CT_LXC", "CT_LIBVIRT_LXC", "CT_MESOS", "CT_RKT", "CT_CUSTOM", "CT_CRI",
    "CT_CONTAINERD", "CT_CRIO", "CT_BPM",
];
const STATES: [&str; 3] = ["CREATED", "MODIFIED", "REUP"];
const K8S_COMPONENTS: [&str; 10] = [
    "K8S_NODES", "K8S_NAMESPACES", "K8S_PODS", "K8S_REPLICATIONCONTROLLERS", "K8S_SERVICES",
    "K8S_EVENTS", "K8S_REPLICASETS", "K8S_DAEMONSETS", "K8S_DEPLOYMENTS", "K8S_UNKNOWN",
];
const K8S_ACTIONS: [&str; 6] = [
    "K8S_COMPONENT_ADDED", "K8S_COMPONENT_MODIFIED", "K8S_COMPONENT_DELETED",
    "K8S_COMPONENT_ERROR", "K8S_COMPONENT_NONEXISTENT", "K8S_COMPONENT_UNKNOWN",
];

fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}
fn s(x: &str) -> Value {
    Value::String(x.to_string())
}
fn opt_s(x: &ROption<RString>) -> Value {
    match x {
        ROption::RNone => Value::Union(0, Box::new(Value::Null)),
        ROption::RSome(v) => Value::Union(1, Box::new(s(v))),
    }
}
fn oid(o: &Oid) -> Value {
    rec(vec![("createTS", Value::Long(o.create_ts)), ("hpid", Value::Long(o.hpid))])
}
fn foid(f: &Foid) -> Value {
    Value::Fixed(20, f.to_vec())
}
fn longs(v: &[i64]) -> Value {
    Value::Array(v.iter().map(|x| Value::Long(*x)).collect())
}
fn strs(v: &[RString]) -> Value {
    Value::Array(v.iter().map(|x| s(x)).collect())
}
fn map(v: &[KeyValue]) -> Value {
    Value::Map(v.iter().map(|kv| (kv.key.to_string(), s(&kv.value))).collect::<HashMap<_, _>>())
}
fn en(idx: i32, syms: &[&str]) -> Value {
    Value::Enum(idx as u32, syms[idx as usize].to_string())
}

/// The `apache-avro` value of a record, written independently of the encoder.
fn to_value(r: &SysFlowRecord) -> Value {
    let inner = match r {
        SysFlowRecord::Header(h) => rec(vec![
            ("version", Value::Long(h.version)),
            ("exporter", s(&h.exporter)),
            ("ip", s(&h.ip)),
            ("filename", s(&h.filename)),
        ]),
        SysFlowRecord::Container(c) => rec(vec![
            ("id", s(&c.id)),
            ("name", s(&c.name)),
            ("image", s(&c.image)),
            ("imageid", s(&c.imageid)),
            ("type", en(c.container_type, &CONTAINER_TYPES)),
            ("privileged", Value::Boolean(c.privileged)),
            ("podId", opt_s(&c.pod_id)),
        ]),
        SysFlowRecord::Process(p) => rec(vec![
            ("state", en(p.state as i32, &STATES)),
            ("oid", oid(&p.oid)),
            (
                "poid",
                match &p.poid {
                    ROption::RNone => Value::Union(0, Box::new(Value::Null)),
                    ROption::RSome(o) => Value::Union(1, Box::new(oid(o))),
                },
            ),
            ("ts", Value::Long(p.ts)),
            ("exe", s(&p.exe)),
            ("exeArgs", s(&p.exe_args)),
            ("uid", Value::Int(p.uid)),
            ("userName", s(&p.user_name)),
            ("gid", Value::Int(p.gid)),
            ("groupName", s(&p.group_name)),
            ("tty", Value::Boolean(p.tty)),
            ("containerId", opt_s(&p.container_id)),
            ("entry", Value::Boolean(p.entry)),
            ("cwd", s(&p.cwd)),
            ("env", strs(&p.env)),
        ]),
        SysFlowRecord::File(f) => rec(vec![
            ("state", en(f.state as i32, &STATES)),
            ("oid", foid(&f.oid)),
            ("ts", Value::Long(f.ts)),
            ("restype", Value::Int(f.restype)),
            ("path", s(&f.path)),
            ("containerId", opt_s(&f.container_id)),
        ]),
        SysFlowRecord::Pod(p) => rec(vec![
            ("ts", Value::Long(p.ts)),
            ("id", s(&p.id)),
            ("name", s(&p.name)),
            ("nodeName", s(&p.node_name)),
            ("hostIP", longs(&p.host_ip)),
            ("internalIP", longs(&p.internal_ip)),
            ("namespace", s(&p.namespace)),
            ("restartCount", Value::Long(p.restart_count)),
            ("labels", map(&p.labels)),
            ("selectors", map(&p.selectors)),
            (
                "services",
                Value::Array(
                    p.services
                        .iter()
                        .map(|sv| {
                            rec(vec![
                                ("name", s(&sv.name)),
                                ("id", s(&sv.id)),
                                ("namespace", s(&sv.namespace)),
                                (
                                    "portList",
                                    Value::Array(
                                        sv.port_list
                                            .iter()
                                            .map(|pt| {
                                                rec(vec![
                                                    ("port", Value::Int(pt.port)),
                                                    ("targetPort", Value::Int(pt.target_port)),
                                                    ("nodePort", Value::Int(pt.node_port)),
                                                    ("proto", s(&pt.proto)),
                                                ])
                                            })
                                            .collect(),
                                    ),
                                ),
                                ("clusterIP", longs(&sv.cluster_ip)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]),
        SysFlowRecord::Event(e) => match e {
            Event::Process(e) => rec(vec![
                ("procOID", oid(&e.proc_oid)),
                ("ts", Value::Long(e.ts)),
                ("tid", Value::Long(e.tid)),
                ("opFlags", Value::Int(e.op_flags)),
                ("args", strs(&e.args)),
                ("ret", Value::Int(e.ret)),
            ]),
            Event::NetworkFlow(e) => rec(vec![
                ("procOID", oid(&e.proc_oid)),
                ("ts", Value::Long(e.ts)),
                ("tid", Value::Long(e.tid)),
                ("opFlags", Value::Int(e.op_flags)),
                ("endTs", Value::Long(e.end_ts)),
                ("sip", Value::Int(e.sip)),
                ("sport", Value::Int(e.sport)),
                ("dip", Value::Int(e.dip)),
                ("dport", Value::Int(e.dport)),
                ("proto", Value::Int(e.proto)),
                ("fd", Value::Int(e.fd)),
                ("numRRecvOps", Value::Long(e.num_r_recv_ops)),
                ("numWSendOps", Value::Long(e.num_w_send_ops)),
                ("numRRecvBytes", Value::Long(e.num_r_recv_bytes)),
                ("numWSendBytes", Value::Long(e.num_w_send_bytes)),
            ]),
            Event::FileFlow(e) => rec(vec![
                ("procOID", oid(&e.proc_oid)),
                ("ts", Value::Long(e.ts)),
                ("tid", Value::Long(e.tid)),
                ("opFlags", Value::Int(e.op_flags)),
                ("openFlags", Value::Int(e.open_flags)),
                ("endTs", Value::Long(e.end_ts)),
                ("fileOID", foid(&e.file_oid)),
                ("fd", Value::Int(e.fd)),
                ("numRRecvOps", Value::Long(e.num_r_recv_ops)),
                ("numWSendOps", Value::Long(e.num_w_send_ops)),
                ("numRRecvBytes", Value::Long(e.num_r_recv_bytes)),
                ("numWSendBytes", Value::Long(e.num_w_send_bytes)),
            ]),
            Event::File(e) => rec(vec![
                ("procOID", oid(&e.proc_oid)),
                ("ts", Value::Long(e.ts)),
                ("tid", Value::Long(e.tid)),
                ("opFlags", Value::Int(e.op_flags)),
                ("fileOID", foid(&e.file_oid)),
                ("ret", Value::Int(e.ret)),
                (
                    "newFileOID",
                    match &e.new_file_oid {
                        ROption::RNone => Value::Union(0, Box::new(Value::Null)),
                        ROption::RSome(f) => Value::Union(1, Box::new(foid(f))),
                    },
                ),
            ]),
            Event::Network(e) => rec(vec![
                ("procOID", oid(&e.proc_oid)),
                ("ts", Value::Long(e.ts)),
                ("tid", Value::Long(e.tid)),
                ("opFlags", Value::Int(e.op_flags)),
                ("sip", Value::Int(e.sip)),
                ("sport", Value::Int(e.sport)),
                ("dip", Value::Int(e.dip)),
                ("dport", Value::Int(e.dport)),
                ("proto", Value::Int(e.proto)),
                ("ret", Value::Int(e.ret)),
            ]),
            Event::ProcessFlow(e) => rec(vec![
                ("procOID", oid(&e.proc_oid)),
                ("ts", Value::Long(e.ts)),
                ("numThreadsCloned", Value::Long(e.num_threads_cloned)),
                ("opFlags", Value::Int(e.op_flags)),
                ("endTs", Value::Long(e.end_ts)),
                ("numThreadsExited", Value::Long(e.num_threads_exited)),
                ("numCloneErrors", Value::Long(e.num_clone_errors)),
            ]),
            Event::K8s(e) => rec(vec![
                ("kind", en(e.kind, &K8S_COMPONENTS)),
                ("action", en(e.action, &K8S_ACTIONS)),
                ("ts", Value::Long(e.ts)),
                ("message", s(&e.message)),
            ]),
        },
    };
    rec(vec![("rec", Value::Union(r.record_type() as u32, Box::new(inner)))])
}

fn config(records: u64, seed: u64, scenario: Scenario) -> GenConfig {
    GenConfig { records, seed, scenario, ..GenConfig::default() }
}

#[test]
fn every_datum_matches_apache_avro_encoding_byte_for_byte() {
    let schema = Schema::parse_str(SCHEMA_V5).expect("v5 schema parses");
    let mut buf = Vec::new();
    let mut seen = [0u64; 12];
    for r in Generator::new(config(30_000, 11, Scenario::Mixed)) {
        buf.clear();
        encode_datum(&r, &mut buf);
        let want = apache_avro::to_avro_datum(&schema, to_value(&r))
            .unwrap_or_else(|e| panic!("apache-avro rejects {r:?}: {e}"));
        // Map entry order is unspecified (apache-avro goes through a HashMap), so pods
        // with several labels are only compared after decoding.
        let has_multi_map = matches!(&r, SysFlowRecord::Pod(p) if p.labels.len() > 1 || p.selectors.len() > 1);
        if has_multi_map {
            assert_eq!(buf.len(), want.len(), "encoding length differs for {r:?}");
        } else {
            assert_eq!(buf, want, "encoding differs for {r:?}");
        }
        // and apache-avro decodes our bytes back to the same value
        let back = apache_avro::from_avro_datum(&schema, &mut buf.as_slice(), None)
            .expect("apache-avro decodes the datum");
        assert_eq!(back, to_value(&r));
        seen[r.record_type() as usize] += 1;
    }
    for t in RecordType::ALL {
        assert!(seen[t as usize] > 0, "record type {} never generated", t.short_name());
    }
}

#[test]
fn apache_avro_reader_reads_the_container_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.sf");
    let cfg = config(25_000, 3, Scenario::Mixed);
    let n = write_trace(&cfg, &path, WriterOptions::default()).expect("write");
    assert_eq!(n, 25_000);
    let file = std::fs::File::open(&path).expect("open");
    let reader = apache_avro::Reader::new(std::io::BufReader::new(file)).expect("OCF header");
    let expected: Vec<SysFlowRecord> = Generator::new(cfg).collect();
    let mut count = 0usize;
    for (i, v) in reader.enumerate() {
        let v = v.unwrap_or_else(|e| panic!("datum {i}: {e}"));
        assert_eq!(v, to_value(&expected[i]), "datum {i}");
        count += 1;
    }
    assert_eq!(count, expected.len());
}

#[test]
fn small_blocks_and_codec_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("small.sf");
    let cfg = config(2_000, 5, Scenario::Attack);
    let opts = WriterOptions { block_size: 1_000, ..WriterOptions::default() };
    write_trace(&cfg, &path, opts).expect("write");
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(&bytes[..4], b"Obj\x01");
    let sync = &WriterOptions::default().sync;
    let markers = bytes.windows(16).filter(|w| w == sync).count();
    // header marker + one per block; ~1000-byte blocks over ~100 bytes/record on average
    assert!(markers > 100, "only {markers} sync markers");
    let reader = apache_avro::Reader::new(bytes.as_slice()).expect("OCF header");
    assert_eq!(reader.count(), 2_000);
    let text = String::from_utf8_lossy(&bytes[..16_384]).to_string();
    assert!(text.contains("avro.codec") && text.contains("deflate"));
}
