//! Direct Avro binary encoder for the SysFlow v5 schema.
//!
//! Hand-written rather than going through `apache-avro`'s `Value` tree: building a
//! `Value` per record costs several allocations, which made 5M-record generation
//! several times slower. Tests check every generated datum byte-for-byte against
//! `apache_avro::to_avro_datum`, so the two stay interchangeable.

use sysflow_plugin_api::records::{
    Container, Event, File, FileEvent, FileFlow, Header, K8sEvent, KeyValue, NetworkEvent,
    NetworkFlow, Oid, Pod, Process, ProcessEvent, ProcessFlow, RecordType, Service, SysFlowRecord,
};

/// The SysFlow v5 Avro schema (JSON) written into every generated file.
pub const SCHEMA_V5: &str = include_str!("../../avro-drivers/src/sysflow_v5.avsc");

/// Appends one Avro-binary v5 `SysFlow` datum (union branch index, then the record):
/// exactly what the collector sends in one `SOCK_SEQPACKET` message.
pub fn encode_datum(record: &SysFlowRecord, out: &mut Vec<u8>) {
    match record {
        SysFlowRecord::Header(h) => encode_header(h, out),
        SysFlowRecord::Container(c) => encode_container(c, out),
        SysFlowRecord::Process(p) => encode_process(p, out),
        SysFlowRecord::File(f) => encode_file(f, out),
        SysFlowRecord::Pod(p) => encode_pod(p, out),
        SysFlowRecord::Event(e) => encode_event(e, out),
    }
}

/// Appends a v5 datum holding a header (borrowed: entities shared by reference encode without a copy).
pub fn encode_header(h: &Header, out: &mut Vec<u8>) {
    put_long(out, RecordType::Header as i64);
    header(out, h);
}

/// Appends a v5 datum holding a container.
pub fn encode_container(c: &Container, out: &mut Vec<u8>) {
    put_long(out, RecordType::Container as i64);
    container(out, c);
}

/// Appends a v5 datum holding a process.
pub fn encode_process(p: &Process, out: &mut Vec<u8>) {
    put_long(out, RecordType::Process as i64);
    process(out, p);
}

/// Appends a v5 datum holding a file.
pub fn encode_file(f: &File, out: &mut Vec<u8>) {
    put_long(out, RecordType::File as i64);
    file(out, f);
}

/// Appends a v5 datum holding a pod.
pub fn encode_pod(p: &Pod, out: &mut Vec<u8>) {
    put_long(out, RecordType::Pod as i64);
    pod(out, p);
}

/// Appends a v5 datum holding an event or flow.
pub fn encode_event(e: &Event, out: &mut Vec<u8>) {
    put_long(out, e.record_type() as i64);
    match e {
        Event::Process(e) => process_event(out, e),
        Event::NetworkFlow(e) => network_flow(out, e),
        Event::FileFlow(e) => file_flow(out, e),
        Event::File(e) => file_event(out, e),
        Event::Network(e) => network_event(out, e),
        Event::ProcessFlow(e) => process_flow(out, e),
        Event::K8s(e) => k8s_event(out, e),
    }
}

/// Avro `long`/`int`: zig-zag, then base-128 varint.
#[inline]
pub(crate) fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[inline]
fn put_int(out: &mut Vec<u8>, v: i32) {
    put_long(out, v as i64);
}

#[inline]
fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(v as u8);
}

#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

#[inline]
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

#[inline]
fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(2); // union branch 1, zig-zag encoded
            put_str(out, s);
        }
    }
}

#[inline]
fn put_oid(out: &mut Vec<u8>, oid: &Oid) {
    put_long(out, oid.create_ts);
    put_long(out, oid.hpid);
}

/// Arrays are written as one block followed by the zero terminator (as avro-c does).
fn put_array<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    if !items.is_empty() {
        put_long(out, items.len() as i64);
        for item in items {
            each(out, item);
        }
    }
    out.push(0);
}

fn put_map(out: &mut Vec<u8>, kvs: &[KeyValue]) {
    put_array(out, kvs, |out, kv| {
        put_str(out, &kv.key);
        put_str(out, &kv.value);
    });
}

fn header(out: &mut Vec<u8>, h: &Header) {
    put_long(out, h.version);
    put_str(out, &h.exporter);
    put_str(out, &h.ip);
    put_str(out, &h.filename);
}

fn container(out: &mut Vec<u8>, c: &Container) {
    put_str(out, &c.id);
    put_str(out, &c.name);
    put_str(out, &c.image);
    put_str(out, &c.imageid);
    put_int(out, c.container_type);
    put_bool(out, c.privileged);
    put_opt_str(out, c.pod_id.as_ref().map(|s| s.as_str()).into_option());
}

fn process(out: &mut Vec<u8>, p: &Process) {
    put_int(out, p.state as i32);
    put_oid(out, &p.oid);
    match p.poid.as_ref().into_option() {
        None => out.push(0),
        Some(poid) => {
            out.push(2);
            put_oid(out, poid);
        }
    }
    put_long(out, p.ts);
    put_str(out, &p.exe);
    put_str(out, &p.exe_args);
    put_int(out, p.uid);
    put_str(out, &p.user_name);
    put_int(out, p.gid);
    put_str(out, &p.group_name);
    put_bool(out, p.tty);
    put_opt_str(out, p.container_id.as_ref().map(|s| s.as_str()).into_option());
    put_bool(out, p.entry);
    put_str(out, &p.cwd);
    put_array(out, &p.env, |out, s| put_str(out, s));
}

fn file(out: &mut Vec<u8>, f: &File) {
    put_int(out, f.state as i32);
    out.extend_from_slice(&f.oid);
    put_long(out, f.ts);
    put_int(out, f.restype);
    put_str(out, &f.path);
    put_opt_str(out, f.container_id.as_ref().map(|s| s.as_str()).into_option());
}

fn service(out: &mut Vec<u8>, s: &Service) {
    put_str(out, &s.name);
    put_str(out, &s.id);
    put_str(out, &s.namespace);
    put_array(out, &s.port_list, |out, p| {
        put_int(out, p.port);
        put_int(out, p.target_port);
        put_int(out, p.node_port);
        put_str(out, &p.proto);
    });
    put_array(out, &s.cluster_ip, |out, ip| put_long(out, *ip));
}

fn pod(out: &mut Vec<u8>, p: &Pod) {
    put_long(out, p.ts);
    put_str(out, &p.id);
    put_str(out, &p.name);
    put_str(out, &p.node_name);
    put_array(out, &p.host_ip, |out, ip| put_long(out, *ip));
    put_array(out, &p.internal_ip, |out, ip| put_long(out, *ip));
    put_str(out, &p.namespace);
    put_long(out, p.restart_count);
    put_map(out, &p.labels);
    put_map(out, &p.selectors);
    put_array(out, &p.services, service);
}

fn process_event(out: &mut Vec<u8>, e: &ProcessEvent) {
    put_oid(out, &e.proc_oid);
    put_long(out, e.ts);
    put_long(out, e.tid);
    put_int(out, e.op_flags);
    put_array(out, &e.args, |out, s| put_str(out, s));
    put_int(out, e.ret);
}

fn network_flow(out: &mut Vec<u8>, e: &NetworkFlow) {
    put_oid(out, &e.proc_oid);
    put_long(out, e.ts);
    put_long(out, e.tid);
    put_int(out, e.op_flags);
    put_long(out, e.end_ts);
    put_int(out, e.sip);
    put_int(out, e.sport);
    put_int(out, e.dip);
    put_int(out, e.dport);
    put_int(out, e.proto);
    put_int(out, e.fd);
    put_long(out, e.num_r_recv_ops);
    put_long(out, e.num_w_send_ops);
    put_long(out, e.num_r_recv_bytes);
    put_long(out, e.num_w_send_bytes);
}

fn file_flow(out: &mut Vec<u8>, e: &FileFlow) {
    put_oid(out, &e.proc_oid);
    put_long(out, e.ts);
    put_long(out, e.tid);
    put_int(out, e.op_flags);
    put_int(out, e.open_flags);
    put_long(out, e.end_ts);
    out.extend_from_slice(&e.file_oid);
    put_int(out, e.fd);
    put_long(out, e.num_r_recv_ops);
    put_long(out, e.num_w_send_ops);
    put_long(out, e.num_r_recv_bytes);
    put_long(out, e.num_w_send_bytes);
}

fn file_event(out: &mut Vec<u8>, e: &FileEvent) {
    put_oid(out, &e.proc_oid);
    put_long(out, e.ts);
    put_long(out, e.tid);
    put_int(out, e.op_flags);
    out.extend_from_slice(&e.file_oid);
    put_int(out, e.ret);
    match e.new_file_oid.as_ref().into_option() {
        None => out.push(0),
        Some(foid) => {
            out.push(2);
            out.extend_from_slice(foid);
        }
    }
}

fn network_event(out: &mut Vec<u8>, e: &NetworkEvent) {
    put_oid(out, &e.proc_oid);
    put_long(out, e.ts);
    put_long(out, e.tid);
    put_int(out, e.op_flags);
    put_int(out, e.sip);
    put_int(out, e.sport);
    put_int(out, e.dip);
    put_int(out, e.dport);
    put_int(out, e.proto);
    put_int(out, e.ret);
}

fn process_flow(out: &mut Vec<u8>, e: &ProcessFlow) {
    put_oid(out, &e.proc_oid);
    put_long(out, e.ts);
    put_long(out, e.num_threads_cloned);
    put_int(out, e.op_flags);
    put_long(out, e.end_ts);
    put_long(out, e.num_threads_exited);
    put_long(out, e.num_clone_errors);
}

fn k8s_event(out: &mut Vec<u8>, e: &K8sEvent) {
    put_int(out, e.kind);
    put_int(out, e.action);
    put_long(out, e.ts);
    put_str(out, &e.message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_match_the_avro_spec() {
        let cases: [(i64, &[u8]); 6] = [
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i64::MIN, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            put_long(&mut out, v);
            assert_eq!(out, want, "value {v}");
        }
    }
}
