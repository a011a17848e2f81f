//! The ECS encoder (`format: ecs`): one Elastic Common Schema document per flat record,
//! laid out as upstream's marshalled `ECSRecord` (export-formats.md §3): top-level keys in
//! struct order, nested object keys sorted, HTML-safe escaping.

use sysflow_plugin_api::{
    enums,
    flat::{go_base, parse_file_path},
    opflags::*,
    Event, FlatRecord, Oid, Pod, Process, RecordType,
};

use crate::json_text::{write_bool, write_int, write_ip_array, write_ipv4, write_str};

/// The processor version upstream reports as `agent.version`.
pub const AGENT_VERSION: &str = "0.7.0";
/// The ECS version upstream reports as `ecs.version`.
pub const ECS_VERSION: &str = "8.2";

/// Encodes flat records as ECS JSON documents (without the trailing newline).
#[derive(Debug, Default)]
pub struct EcsEncoder {
    scratch: String,
}

impl EcsEncoder {
    /// A new encoder.
    pub fn new() -> EcsEncoder {
        EcsEncoder::default()
    }

    /// Appends the ECS document of `record` to `out`.
    pub fn encode(&mut self, record: &FlatRecord, out: &mut Vec<u8>) {
        let rtype = record.record_type();
        let ts = record.event.ts();
        out.extend_from_slice(b"{\"@timestamp\":");
        write_iso_time(out, ts);
        out.extend_from_slice(b",\"agent\":{\"type\":\"SysFlow\",\"version\":\"");
        out.extend_from_slice(AGENT_VERSION.as_bytes());
        out.extend_from_slice(b"\"},\"ecs\":{\"version\":\"");
        out.extend_from_slice(ECS_VERSION.as_bytes());
        out.extend_from_slice(b"\"},\"event\":");
        write_event(out, record);
        out.extend_from_slice(b",\"host\":{\"id\":");
        write_str(out, &record.header.exporter);
        out.extend_from_slice(b",\"ip\":");
        write_str(out, &record.header.ip);
        out.push(b'}');
        write_rendered_outputs(out, record);

        if let Event::K8s(ke) = &record.event {
            write_k8s_orchestrator(out, &ke.message);
        } else {
            if let Some(c) = record.container().filter(|c| !c.id.is_empty()) {
                out.extend_from_slice(b",\"container\":{\"id\":");
                write_str(out, &c.id);
                if !c.imageid.is_empty() {
                    out.extend_from_slice(b",\"image\":{\"id\":");
                    write_str(out, &c.imageid);
                    out.extend_from_slice(b",\"name\":");
                    write_str(out, &c.image);
                    out.push(b'}');
                }
                out.extend_from_slice(b",\"name\":");
                write_str(out, &c.name);
                out.extend_from_slice(b",\"runtime\":");
                write_str(out, enums::container_type_name(c.container_type));
                out.extend_from_slice(b",\"sf_privileged\":");
                write_bool(out, c.privileged);
                out.push(b'}');
            }
            if let Some(p) = record.pod().filter(|p| !p.id.is_empty()) {
                write_pod(out, p);
            }
            match rtype {
                RecordType::FileFlow | RecordType::FileEvent => self.write_file(out, record),
                RecordType::NetworkFlow => write_network(out, record),
                _ => {}
            }
            write_process(out, record);
            write_user(out, record.process());
        }

        let ctx = &record.context;
        let mut tags = ctx.all_tags().peekable();
        if tags.peek().is_some() {
            out.extend_from_slice(b",\"tags\":[");
            for (i, tag) in tags.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, tag);
            }
            out.push(b']');
        }
        out.push(b'}');
    }

    fn write_file(&mut self, out: &mut Vec<u8>, record: &FlatRecord) {
        let op_flags = record.event.op_flags();
        let raw = record.file().map_or("", |f| f.path.as_str());
        let path = parse_file_path(raw).path;
        let file_type = if op_flags & OP_SYMLINK != 0 {
            "symlink"
        } else {
            match record.file().map_or(0, |f| f.restype) {
                0x66 => "file",
                0x64 => "dir",
                0x75 => "socket",
                0x70 => "pipe",
                _ => "unknown",
            }
        };
        let fd_text;
        let (path, name): (&str, &str) = if path.is_empty() {
            use std::fmt::Write;
            self.scratch.clear();
            let _ = write!(self.scratch, "/proc/{}/fd/{}", process_oid(record).hpid, record.fd());
            fd_text = record.fd().to_string();
            (&self.scratch, &fd_text)
        } else {
            (path, go_base(path))
        };
        out.extend_from_slice(b",\"file\":{\"directory\":");
        if file_type == "dir" {
            write_str(out, path);
        } else {
            crate::json_encoder::write_dir(out, path);
            out.extend_from_slice(b",\"name\":");
            write_str(out, name);
            if path != name {
                out.extend_from_slice(b",\"path\":");
                write_str(out, path);
            }
        }
        if rtype_is_link_or_rename(record) {
            out.extend_from_slice(b",\"target_path\":");
            write_str(out, record.new_file().map_or("", |f| f.path.as_str()));
        }
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(file_type.as_bytes());
        out.extend_from_slice(b"\"}");

        if record.record_type() == RecordType::FileFlow {
            let (rops, wops, rbytes, wbytes) = record.flow_counters();
            if rops > 0 || wops > 0 || rbytes > 0 || wbytes > 0 {
                out.extend_from_slice(b",\"sf_file_action\":{\"bytes_read\":");
                write_int(out, rbytes);
                out.extend_from_slice(b",\"bytes_written\":");
                write_int(out, wbytes);
                out.extend_from_slice(b",\"read_ops\":");
                write_int(out, rops);
                out.extend_from_slice(b",\"write_ops\":");
                write_int(out, wops);
                out.push(b'}');
            }
        }
    }
}

/// FE records whose op makes `file.target_path` appear (link, symlink, rename; not when a
/// directory or unlink op takes precedence).
fn rtype_is_link_or_rename(record: &FlatRecord) -> bool {
    let f = record.event.op_flags();
    record.record_type() == RecordType::FileEvent
        && f & (OP_MKDIR | OP_RMDIR | OP_UNLINK) == 0
        && f & (OP_SYMLINK | OP_LINK | OP_RENAME) != 0
}

/// The OID of the record's process: the cached process's, else the one the event names.
fn process_oid(record: &FlatRecord) -> Oid {
    record.process().map_or_else(|| record.proc_oid(), |p| p.oid)
}

fn write_event(out: &mut Vec<u8>, record: &FlatRecord) {
    let rtype = record.record_type();
    let flags = record.event.op_flags();
    let start = record.event.ts();
    let end = match record.end_ts() {
        0 => start,
        e => e,
    };
    let (category, event_type, action): (&str, &str, &str) = match &record.event {
        Event::NetworkFlow(_) => ("network", "connection", "network-connection-traffic"),
        Event::FileFlow(_) => {
            let (rops, wops, rbytes, wbytes) = record.flow_counters();
            let read = flags & OP_READ_RECV != 0 && (rbytes > 0 || rops > 0);
            let write = flags & OP_WRITE_SEND != 0 && (wbytes > 0 || wops > 0);
            let action = match (read, write) {
                (false, false) => "file-access",
                (true, false) => "file-access-read",
                (false, true) => "file-access-write",
                (true, true) => "file-access-read-write",
            };
            ("file", if write { "change" } else { "access" }, action)
        }
        Event::File(_) => {
            if flags & OP_MKDIR != 0 {
                ("directory", "creation", "directory-create")
            } else if flags & OP_RMDIR != 0 {
                ("directory", "deletion", "directory-delete")
            } else if flags & OP_UNLINK != 0 {
                ("file", "deletion", "file-delete")
            } else if flags & (OP_SYMLINK | OP_LINK) != 0 {
                ("file", "change", "file-link")
            } else if flags & OP_RENAME != 0 {
                ("file", "change", "file-rename")
            } else {
                ("file", "change", "file-change")
            }
        }
        Event::K8s(ke) => {
            let t = match ke.action {
                0 => "creation",
                1 => "change",
                2 => "deletion",
                3 => "error",
                _ => "info",
            };
            ("orchestration", t, enums::k8s_action_name(ke.action))
        }
        _ => {
            let pid = process_oid(record).hpid;
            let threaded = pid != record.tid();
            let (t, action) = if flags & OP_EXIT != 0 {
                if threaded {
                    ("thread-exit", "process-thread-exit")
                } else {
                    ("exit", "process-exit")
                }
            } else if flags & (OP_CLONE | OP_EXEC) != 0 {
                if threaded {
                    ("thread-start", "process-thread-start")
                } else {
                    ("start", "process-start")
                }
            } else if flags & OP_SETUID != 0 {
                ("change", "process-change")
            } else {
                ("start", "process-start")
            };
            ("process", t, action)
        }
    };
    out.extend_from_slice(b"{\"action\":");
    write_str(out, action);
    out.extend_from_slice(b",\"category\":\"");
    out.extend_from_slice(category.as_bytes());
    out.extend_from_slice(b"\",\"duration\":");
    write_int(out, end.wrapping_sub(start));
    out.extend_from_slice(b",\"end\":");
    write_iso_time(out, end);
    out.extend_from_slice(b",\"kind\":\"event\"");
    if let Event::K8s(ke) = &record.event {
        out.extend_from_slice(b",\"original\":");
        write_str(out, &ke.message);
    }
    let rules = &record.context.matched;
    if !rules.is_empty() {
        out.extend_from_slice(b",\"reason\":\"");
        for (i, r) in rules.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            crate::json_text::write_escaped_str(out, &r.name);
        }
        out.extend_from_slice(b"\",\"severity\":");
        write_int(out, rules.iter().map(|r| r.priority).fold(1, i32::max));
    }
    if matches!(rtype, RecordType::ProcessEvent | RecordType::FileEvent) {
        out.extend_from_slice(b",\"sf_ret\":");
        write_int(out, record.ret());
    }
    out.extend_from_slice(b",\"sf_type\":\"");
    out.extend_from_slice(rtype.short_name().as_bytes());
    out.extend_from_slice(b"\",\"start\":");
    write_iso_time(out, start);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// KE `orchestrator` from the message's first item (omitted when the message is not JSON).
fn write_k8s_orchestrator(out: &mut Vec<u8>, message: &str) {
    let Ok(msg) = serde_json::from_str::<serde_json::Value>(message) else {
        return;
    };
    let item = &msg["items"][0];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    out.extend_from_slice(b",\"orchestrator\":{\"namespace\":");
    write_str(out, &text(&item["namespace"]));
    out.extend_from_slice(b",\"resource\":{\"name\":");
    write_str(out, &text(&item["name"]));
    out.extend_from_slice(b",\"type\":");
    write_str(out, &text(&msg["kind"]).to_lowercase());
    out.extend_from_slice(b"},\"type\":\"kubernetes\"}");
}

fn write_pod(out: &mut Vec<u8>, p: &Pod) {
    out.extend_from_slice(b",\"orchestrator\":{\"namespace\":");
    write_str(out, &p.namespace);
    out.extend_from_slice(b",\"resource\":{\"name\":");
    write_str(out, &p.name);
    out.extend_from_slice(b",\"type\":\"pod\"},\"type\":\"kubernetes\"},\"pod\":{\"hostip\":");
    write_ip_array(out, &p.host_ip);
    out.extend_from_slice(b",\"id\":");
    write_str(out, &p.id);
    out.extend_from_slice(b",\"internalip\":");
    write_ip_array(out, &p.internal_ip);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &p.name);
    out.extend_from_slice(b",\"namespace\":");
    write_str(out, &p.namespace);
    out.extend_from_slice(b",\"nodename\":");
    write_str(out, &p.node_name);
    out.extend_from_slice(b",\"restartcnt\":");
    write_int(out, p.restart_count);
    out.extend_from_slice(b",\"ts\":");
    write_iso_time(out, p.ts);
    out.push(b'}');
    if !p.services.is_empty() {
        out.extend_from_slice(b",\"service\":[");
        for (i, s) in p.services.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"clusterip\":");
            write_ip_array(out, &s.cluster_ip);
            out.extend_from_slice(b",\"id\":");
            write_str(out, &s.id);
            out.extend_from_slice(b",\"name\":");
            write_str(out, &s.name);
            out.extend_from_slice(b",\"namespace\":");
            write_str(out, &s.namespace);
            out.extend_from_slice(b",\"ports\":[");
            for (j, port) in s.port_list.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"nodeport\":");
                write_int(out, port.node_port);
                out.extend_from_slice(b",\"port\":");
                write_int(out, port.port);
                out.extend_from_slice(b",\"proto\":");
                write_str(out, &port.proto);
                out.extend_from_slice(b",\"targetport\":");
                write_int(out, port.target_port);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b']');
    }
}

fn write_network(out: &mut Vec<u8>, record: &FlatRecord) {
    let Event::NetworkFlow(nf) = &record.event else { return };
    let (rops, wops, rbytes, wbytes) = record.flow_counters();
    out.extend_from_slice(b",\"network\":{\"bytes\":");
    write_int(out, rbytes.wrapping_add(wbytes));
    out.extend_from_slice(b",\"community_id\":\"");
    write_community_id(out, nf.sip, nf.dip, nf.sport, nf.dport, nf.proto);
    out.extend_from_slice(b"\",\"iana_number\":\"");
    write_int(out, nf.proto);
    out.extend_from_slice(b"\",\"protocol\":\"");
    out.extend_from_slice(match nf.proto {
        6 => b"tcp".as_slice(),
        17 => b"udp",
        1 => b"icmp",
        254 => b"raw",
        _ => b"",
    });
    out.extend_from_slice(b"\"}");
    for (key, ip, port, bytes, packets) in
        [(&b"source"[..], nf.sip, nf.sport, wbytes, wops), (&b"destination"[..], nf.dip, nf.dport, rbytes, rops)]
    {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":{\"address\":\"");
        write_ipv4(out, ip as i64);
        out.extend_from_slice(b"\",\"bytes\":");
        write_int(out, bytes);
        out.extend_from_slice(b",\"ip\":\"");
        write_ipv4(out, ip as i64);
        out.extend_from_slice(b"\",\"packets\":");
        write_int(out, packets);
        out.extend_from_slice(b",\"port\":");
        write_int(out, port);
        out.push(b'}');
    }
}

/// Community ID v1 (seed 0), base64 with the `1:` prefix, of an IPv4 flow.
fn write_community_id(out: &mut Vec<u8>, sip: i32, dip: i32, sport: i32, dport: i32, proto: i32) {
    use sha1::{Digest, Sha1};
    let (mut a, mut b) = ((sip as u32).to_le_bytes(), (dip as u32).to_le_bytes());
    let (mut pa, mut pb) = (sport as u16, dport as u16);
    if (a, pa) > (b, pb) {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut pa, &mut pb);
    }
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(a);
    h.update(b);
    h.update([proto as u8, 0]);
    // gommunityid hashes the ports for every protocol (ICMP type/code mapping is not
    // applied either: SysFlow records carry no ICMP types).
    h.update(pa.to_be_bytes());
    h.update(pb.to_be_bytes());
    out.extend_from_slice(b"1:");
    write_base64(out, &h.finalize());
}

fn write_base64(out: &mut Vec<u8>, data: &[u8]) {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// `process`: the record's process and its parent (always present on non-KE records).
fn write_process(out: &mut Vec<u8>, record: &FlatRecord) {
    let proc = record.process();
    let oid = process_oid(record);
    let exe = proc.map_or("", |p| p.exe.as_str());
    let args = proc.map_or("", |p| p.exe_args.as_str());
    out.extend_from_slice(b",\"process\":{\"args\":");
    write_str(out, args);
    out.extend_from_slice(b",\"command_line\":\"");
    crate::json_text::write_escaped_str(out, exe);
    out.push(b' ');
    crate::json_text::write_escaped_str(out, args);
    out.extend_from_slice(b"\",\"executable\":");
    write_str(out, exe);
    out.extend_from_slice(b",\"name\":");
    write_str(out, go_base(exe));
    let parent: Option<&Process> = record.parent();
    let poid = record.parent_oid().unwrap_or_default();
    let pexe = parent.map_or("", |p| p.exe.as_str());
    let pargs = parent.map_or("", |p| p.exe_args.as_str());
    out.extend_from_slice(b",\"parent\":{\"args\":");
    write_str(out, pargs);
    out.extend_from_slice(b",\"command_line\":\"");
    crate::json_text::write_escaped_str(out, pexe);
    if !pargs.is_empty() {
        out.push(b' ');
        crate::json_text::write_escaped_str(out, pargs);
    }
    out.extend_from_slice(b"\",\"executable\":");
    write_str(out, pexe);
    out.extend_from_slice(b",\"name\":");
    write_str(out, go_base(pexe));
    out.extend_from_slice(b",\"pid\":");
    write_int(out, poid.hpid);
    out.extend_from_slice(b",\"start\":");
    write_iso_time(out, poid.create_ts);
    out.extend_from_slice(b"},\"pid\":");
    write_int(out, oid.hpid);
    out.extend_from_slice(b",\"start\":");
    write_iso_time(out, oid.create_ts);
    out.extend_from_slice(b",\"thread\":{\"id\":");
    write_int(out, record.tid());
    out.extend_from_slice(b"}}");
}

fn write_user(out: &mut Vec<u8>, proc: Option<&Process>) {
    out.extend_from_slice(b",\"user\":{\"group\":{\"id\":");
    write_int(out, proc.map_or(0, |p| p.gid));
    let group = proc.map_or("", |p| p.group_name.as_str());
    if !group.is_empty() {
        out.extend_from_slice(b",\"name\":");
        write_str(out, group);
    }
    out.extend_from_slice(b"},\"id\":");
    write_int(out, proc.map_or(0, |p| p.uid));
    let user = proc.map_or("", |p| p.user_name.as_str());
    if !user.is_empty() {
        out.extend_from_slice(b",\"name\":");
        write_str(out, user);
    }
    out.push(b'}');
}

/// ECS `message`: the matched rules' rendered Falco outputs joined by `; ` (only rules
/// rendered under `"dialect": "falco"` have one; without any, nothing is written, as upstream).
fn write_rendered_outputs(out: &mut Vec<u8>, record: &FlatRecord) {
    let mut outputs = record.context.matched.iter().map(|m| m.output.as_str()).filter(|o| !o.is_empty());
    let Some(first) = outputs.next() else { return };
    out.extend_from_slice(b",\"message\":\"");
    crate::json_text::write_escaped_str(out, first);
    for o in outputs {
        out.extend_from_slice(b"; ");
        crate::json_text::write_escaped_str(out, o);
    }
    out.push(b'"');
}

/// Go's `time.Unix(0, ns).UTC().Format(time.RFC3339Nano)`, quoted.
pub fn write_iso_time(out: &mut Vec<u8>, ns: i64) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |out: &mut Vec<u8>, v: i64| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    out.push(b'"');
    if (0..10_000).contains(&year) {
        two(out, year / 100);
        two(out, year % 100);
    } else {
        write_int(out, year);
    }
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, sod / 3600);
    out.push(b':');
    two(out, sod / 60 % 60);
    out.push(b':');
    two(out, sod % 60);
    if nanos != 0 {
        out.push(b'.');
        let mut digits = [0u8; 9];
        let mut v = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let len = 9 - digits.iter().rev().take_while(|d| **d == b'0').count();
        out.extend_from_slice(&digits[..len]);
    }
    out.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ns: i64) -> String {
        let mut out = Vec::new();
        write_iso_time(&mut out, ns);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn times_follow_go_rfc3339nano() {
        assert_eq!(iso(0), "\"1970-01-01T00:00:00Z\"");
        assert_eq!(iso(1647544455002529691), "\"2022-03-17T19:14:15.002529691Z\"");
        assert_eq!(iso(1647543915026917000), "\"2022-03-17T19:05:15.026917Z\"");
        assert_eq!(iso(951782400_000000000), "\"2000-02-29T00:00:00Z\"");
        assert_eq!(iso(-1), "\"1969-12-31T23:59:59.999999999Z\"");
    }

    #[test]
    fn base64_pads() {
        let mut out = Vec::new();
        write_base64(&mut out, b"ab");
        out.push(b' ');
        write_base64(&mut out, b"abcd");
        assert_eq!(out, b"YWI= YWJjZA==");
    }
}
