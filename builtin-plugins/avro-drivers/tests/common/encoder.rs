//! Test-only Avro binary encoder for SysFlow records in schema v5 (what a live collector
//! sends over the socket, one datum per message).

use sysflow_plugin_api::{
    abi_stable::std_types::{ROption, RString, RVec},
    Event, KeyValue, Oid, SysFlowRecord,
};

fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn int(out: &mut Vec<u8>, v: i32) {
    long(out, i64::from(v));
}

fn string(out: &mut Vec<u8>, s: &RString) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

fn oid(out: &mut Vec<u8>, o: &Oid) {
    long(out, o.create_ts);
    long(out, o.hpid);
}

fn opt_string(out: &mut Vec<u8>, s: &ROption<RString>) {
    match s {
        ROption::RNone => long(out, 0),
        ROption::RSome(s) => {
            long(out, 1);
            string(out, s);
        }
    }
}

fn array<T>(out: &mut Vec<u8>, items: &RVec<T>, mut f: impl FnMut(&mut Vec<u8>, &T)) {
    if !items.is_empty() {
        long(out, items.len() as i64);
        for i in items.iter() {
            f(out, i);
        }
    }
    long(out, 0);
}

fn string_map(out: &mut Vec<u8>, kv: &RVec<KeyValue>) {
    array(out, kv, |o, e| {
        string(o, &e.key);
        string(o, &e.value);
    });
}

/// Appends the v5 binary encoding of `rec` to `out`.
pub fn encode_v5(rec: &SysFlowRecord, out: &mut Vec<u8>) {
    match rec {
        SysFlowRecord::Header(h) => {
            long(out, 0);
            long(out, h.version);
            string(out, &h.exporter);
            string(out, &h.ip);
            string(out, &h.filename);
        }
        SysFlowRecord::Container(c) => {
            long(out, 1);
            string(out, &c.id);
            string(out, &c.name);
            string(out, &c.image);
            string(out, &c.imageid);
            int(out, c.container_type);
            boolean(out, c.privileged);
            opt_string(out, &c.pod_id);
        }
        SysFlowRecord::Process(p) => {
            long(out, 2);
            int(out, p.state as i32);
            oid(out, &p.oid);
            match &p.poid {
                ROption::RNone => long(out, 0),
                ROption::RSome(o) => {
                    long(out, 1);
                    oid(out, o);
                }
            }
            long(out, p.ts);
            string(out, &p.exe);
            string(out, &p.exe_args);
            int(out, p.uid);
            string(out, &p.user_name);
            int(out, p.gid);
            string(out, &p.group_name);
            boolean(out, p.tty);
            opt_string(out, &p.container_id);
            boolean(out, p.entry);
            string(out, &p.cwd);
            array(out, &p.env, string);
        }
        SysFlowRecord::File(f) => {
            long(out, 3);
            int(out, f.state as i32);
            out.extend_from_slice(&f.oid);
            long(out, f.ts);
            int(out, f.restype);
            string(out, &f.path);
            opt_string(out, &f.container_id);
        }
        SysFlowRecord::Pod(p) => {
            long(out, 10);
            long(out, p.ts);
            string(out, &p.id);
            string(out, &p.name);
            string(out, &p.node_name);
            array(out, &p.host_ip, |o, v| long(o, *v));
            array(out, &p.internal_ip, |o, v| long(o, *v));
            string(out, &p.namespace);
            long(out, p.restart_count);
            string_map(out, &p.labels);
            string_map(out, &p.selectors);
            array(out, &p.services, |o, s| {
                string(o, &s.name);
                string(o, &s.id);
                string(o, &s.namespace);
                array(o, &s.port_list, |o, p| {
                    int(o, p.port);
                    int(o, p.target_port);
                    int(o, p.node_port);
                    string(o, &p.proto);
                });
                array(o, &s.cluster_ip, |o, v| long(o, *v));
            });
        }
        SysFlowRecord::Event(e) => match e {
            Event::Process(pe) => {
                long(out, 4);
                oid(out, &pe.proc_oid);
                long(out, pe.ts);
                long(out, pe.tid);
                int(out, pe.op_flags);
                array(out, &pe.args, string);
                int(out, pe.ret);
            }
            Event::NetworkFlow(nf) => {
                long(out, 5);
                oid(out, &nf.proc_oid);
                long(out, nf.ts);
                long(out, nf.tid);
                int(out, nf.op_flags);
                long(out, nf.end_ts);
                for v in [nf.sip, nf.sport, nf.dip, nf.dport, nf.proto, nf.fd] {
                    int(out, v);
                }
                for v in [nf.num_r_recv_ops, nf.num_w_send_ops, nf.num_r_recv_bytes, nf.num_w_send_bytes] {
                    long(out, v);
                }
            }
            Event::FileFlow(ff) => {
                long(out, 6);
                oid(out, &ff.proc_oid);
                long(out, ff.ts);
                long(out, ff.tid);
                int(out, ff.op_flags);
                int(out, ff.open_flags);
                long(out, ff.end_ts);
                out.extend_from_slice(&ff.file_oid);
                int(out, ff.fd);
                for v in [ff.num_r_recv_ops, ff.num_w_send_ops, ff.num_r_recv_bytes, ff.num_w_send_bytes] {
                    long(out, v);
                }
            }
            Event::File(fe) => {
                long(out, 7);
                oid(out, &fe.proc_oid);
                long(out, fe.ts);
                long(out, fe.tid);
                int(out, fe.op_flags);
                out.extend_from_slice(&fe.file_oid);
                int(out, fe.ret);
                match &fe.new_file_oid {
                    ROption::RNone => long(out, 0),
                    ROption::RSome(f) => {
                        long(out, 1);
                        out.extend_from_slice(f);
                    }
                }
            }
            Event::Network(ne) => {
                long(out, 8);
                oid(out, &ne.proc_oid);
                long(out, ne.ts);
                long(out, ne.tid);
                int(out, ne.op_flags);
                for v in [ne.sip, ne.sport, ne.dip, ne.dport, ne.proto, ne.ret] {
                    int(out, v);
                }
            }
            Event::ProcessFlow(pf) => {
                long(out, 9);
                oid(out, &pf.proc_oid);
                long(out, pf.ts);
                long(out, pf.num_threads_cloned);
                int(out, pf.op_flags);
                long(out, pf.end_ts);
                long(out, pf.num_threads_exited);
                long(out, pf.num_clone_errors);
            }
            Event::K8s(ke) => {
                long(out, 11);
                int(out, ke.kind);
                int(out, ke.action);
                long(out, ke.ts);
                string(out, &ke.message);
            }
        },
    }
}
