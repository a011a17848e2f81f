//! The JSON encoder (`format: json`): one compact object per flat record, byte-compatible
//! with upstream's hand-written streaming writer (export-formats.md §2).
//!
//! Key order is fixed: `version`, the record-level keys, then the sections in alphabetical
//! order (`container`, `file`, `flow`, `k8s`, `meta`, `net`, `node`, `pod`, `pproc`,
//! `proc`), then `policies` and `tags`. Deliberate differences from upstream are listed in
//! [`crate`]'s documentation.
//!
//! Fragments that depend only on a shared entity (header, container, pod, process with
//! its ancestry) are encoded once and copied afterwards (a small cache keyed by the
//! entities' shared references).

use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, RVec},
    enums,
    flat::{go_base, go_clean, parse_file_path},
    openflags, opflags, Container, Event, File, FlatRecord, Header, Oid, Pod, Process, RecordType,
};

use crate::{
    fragment_cache::FragmentCache,
    json_text::{write_bool, write_escaped_str, write_hex_bytes, write_hex_u64, write_int, write_ip_array, write_ipv4, write_str},
};

/// The JSON export schema version upstream 0.7 writes (`"version"`).
pub const JSON_SCHEMA_VERSION: u32 = 5;

/// Encodes flat records as upstream's JSON lines (without the trailing newline).
pub struct JsonEncoder {
    headers: FragmentCache<Header>,
    containers: FragmentCache<Container>,
    pods: FragmentCache<Pod>,
    ancestries: FragmentCache<RVec<RArc<Process>>>,
}

impl Default for JsonEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for JsonEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonEncoder").field("cache_stats", &self.cache_stats()).finish()
    }
}

impl JsonEncoder {
    /// A new encoder with empty fragment caches.
    pub fn new() -> JsonEncoder {
        JsonEncoder {
            headers: FragmentCache::new(1),
            containers: FragmentCache::new(6),
            pods: FragmentCache::new(6),
            ancestries: FragmentCache::new(10),
        }
    }

    /// Appends the JSON object of `record` to `out` (no newline).
    pub fn encode(&mut self, record: &FlatRecord, out: &mut Vec<u8>) {
        let rtype = record.record_type();
        out.extend_from_slice(b"{\"version\":");
        write_int(out, JSON_SCHEMA_VERSION);
        out.extend_from_slice(b",\"endts\":");
        write_int(out, record.end_ts());
        out.extend_from_slice(b",\"opflags\":[");
        if rtype != RecordType::K8sEvent {
            write_names(out, |f| opflags::for_each_name(record.event.op_flags(), rtype == RecordType::NetworkFlow, f));
        }
        out.extend_from_slice(b"],\"ret\":");
        write_int(out, record.ret());
        out.extend_from_slice(b",\"ts\":");
        write_int(out, record.event.ts());
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(rtype.short_name().as_bytes());
        out.extend_from_slice(b"\",");

        // Sections; each ends with a comma, the last one is removed below.
        let (header_bytes, node_at) = self.headers.get(&record.header, write_header_sections);
        let (meta, node) = header_bytes.split_at(node_at);
        if let Event::K8s(ke) = &record.event {
            out.extend_from_slice(b"\"k8s\":{\"action\":");
            write_str(out, enums::k8s_action_name(ke.action));
            out.extend_from_slice(b",\"kind\":");
            write_str(out, enums::k8s_component_name(ke.kind));
            out.extend_from_slice(b",\"message\":");
            write_str(out, &ke.message);
            out.extend_from_slice(b"},");
            out.extend_from_slice(meta);
            out.extend_from_slice(node);
        } else {
            if let Some(c) = record.container.as_ref().into_option().filter(|c| !c.id.is_empty()) {
                out.extend_from_slice(self.containers.get(c, write_container_section).0);
            }
            if matches!(rtype, RecordType::FileFlow | RecordType::FileEvent) {
                write_file_section(out, record);
            }
            if matches!(rtype, RecordType::FileFlow | RecordType::NetworkFlow) {
                let (rops, wops, rbytes, wbytes) = record.flow_counters();
                out.extend_from_slice(b"\"flow\":{\"rbytes\":");
                write_int(out, rbytes);
                out.extend_from_slice(b",\"rops\":");
                write_int(out, rops);
                out.extend_from_slice(b",\"wbytes\":");
                write_int(out, wbytes);
                out.extend_from_slice(b",\"wops\":");
                write_int(out, wops);
                out.extend_from_slice(b"},");
            }
            out.extend_from_slice(meta);
            if let Event::NetworkFlow(nf) = &record.event {
                out.extend_from_slice(b"\"net\":{\"dip\":\"");
                write_ipv4(out, nf.dip as i64);
                out.extend_from_slice(b"\",\"dport\":");
                write_int(out, nf.dport);
                out.extend_from_slice(b",\"ip\":[\"");
                write_ipv4(out, nf.sip as i64);
                out.extend_from_slice(b"\",\"");
                write_ipv4(out, nf.dip as i64);
                out.extend_from_slice(b"\"],\"port\":[");
                write_int(out, nf.sport);
                out.push(b',');
                write_int(out, nf.dport);
                out.extend_from_slice(b"],\"proto\":");
                write_int(out, nf.proto);
                out.extend_from_slice(b",\"sip\":\"");
                write_ipv4(out, nf.sip as i64);
                out.extend_from_slice(b"\",\"sport\":");
                write_int(out, nf.sport);
                out.extend_from_slice(b"},");
            }
            out.extend_from_slice(node);
            if let Some(p) = record.pod.as_ref().into_option().filter(|p| !p.id.is_empty()) {
                out.extend_from_slice(self.pods.get(p, write_pod_section).0);
            }
            if record.ancestry.is_empty() {
                write_unknown_process_section(out, record.proc_oid(), record.tid());
            } else {
                let (bytes, tid_at) = self.ancestries.get(&record.ancestry, write_process_sections);
                out.extend_from_slice(&bytes[..tid_at]);
                write_int(out, record.tid());
                out.extend_from_slice(&bytes[tid_at..]);
            }
        }
        if out.last() == Some(&b',') {
            out.pop();
        }

        let ctx = &record.context;
        if !ctx.matched.is_empty() {
            out.extend_from_slice(b",\"policies\":[");
            for (i, rule) in ctx.matched.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"id\":");
                write_str(out, &rule.name);
                out.extend_from_slice(b",\"desc\":");
                write_str(out, &rule.desc);
                out.extend_from_slice(b",\"priority\":");
                write_int(out, rule.priority);
                // Only rules rendered under "dialect": "falco" have an output; upstream's shape is kept otherwise.
                if !rule.output.is_empty() {
                    out.extend_from_slice(b",\"output\":");
                    write_str(out, &rule.output);
                }
                out.push(b'}');
            }
            out.push(b']');
        }
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

    /// Fragment cache `(hits, misses)` summed over all entity kinds.
    pub fn cache_stats(&self) -> (u64, u64) {
        [self.headers.stats(), self.containers.stats(), self.pods.stats(), self.ancestries.stats()]
            .into_iter()
            .fold((0, 0), |(h, m), (h2, m2)| (h + h2, m + m2))
    }

    /// Releases the cached fragments (and the entities they keep alive).
    pub fn clear_caches(&mut self) {
        self.headers.clear();
        self.containers.clear();
        self.pods.clear();
        self.ancestries.clear();
    }
}

/// Writes a comma-separated list of quoted static names (flag names need no escaping).
#[inline]
fn write_names(out: &mut Vec<u8>, each: impl FnOnce(&mut dyn FnMut(&'static str))) {
    let mut first = true;
    each(&mut |name: &'static str| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
    });
}

/// `"meta":{…},` then `"node":{…},`; returns where `node` starts.
fn write_header_sections(h: &Header, out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(b"\"meta\":{\"schema\":");
    write_int(out, h.version);
    out.extend_from_slice(b",\"tracename\":");
    write_str(out, go_base(&h.filename));
    out.extend_from_slice(b"},");
    let node_at = out.len();
    out.extend_from_slice(b"\"node\":{\"id\":");
    write_str(out, &h.exporter);
    out.extend_from_slice(b",\"ip\":");
    write_str(out, &h.ip);
    out.extend_from_slice(b"},");
    node_at
}

fn write_container_section(c: &Container, out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(b"\"container\":{\"id\":");
    write_str(out, &c.id);
    out.extend_from_slice(b",\"image\":");
    write_str(out, &c.image);
    out.extend_from_slice(b",\"imageid\":");
    write_str(out, &c.imageid);
    out.extend_from_slice(b",\"name\":");
    write_str(out, &c.name);
    out.extend_from_slice(b",\"privileged\":");
    write_int(out, c.privileged as u8);
    out.extend_from_slice(b",\"type\":");
    write_str(out, enums::container_type_name(c.container_type));
    out.extend_from_slice(b"},");
    0
}

/// An array of quoted IPs, comma-separated (upstream omits the commas: invalid JSON).
fn write_pod_section(p: &Pod, out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(b"\"pod\":{\"hostip\":");
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
    out.extend_from_slice(b",\"services\":[");
    for (i, s) in p.services.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        write_str(out, &s.id);
        out.extend_from_slice(b",\"name\":");
        write_str(out, &s.name);
        out.extend_from_slice(b",\"namespace\":");
        write_str(out, &s.namespace);
        out.extend_from_slice(b",\"clusterIP\":");
        write_ip_array(out, &s.cluster_ip);
        out.extend_from_slice(b",\"ports\":[");
        for (j, port) in s.port_list.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"port\":");
            write_int(out, port.port);
            out.extend_from_slice(b",\"targetport\":");
            write_int(out, port.target_port);
            out.extend_from_slice(b",\"nodeport\":");
            write_int(out, port.node_port);
            out.extend_from_slice(b",\"proto\":");
            write_str(out, &port.proto);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\"ts\":");
    write_int(out, p.ts);
    out.extend_from_slice(b"},");
    0
}

/// Upstream's process OID hash (see `sysflow_plugin_api::flat::oid_hash`), written
/// without allocating.
fn write_oid_hash(out: &mut Vec<u8>, oid: Oid) {
    let mut text = [0u8; 40];
    let mut a = itoa::Buffer::new();
    let mut b = itoa::Buffer::new();
    let (hpid, create_ts) = (a.format(oid.hpid).as_bytes(), b.format(oid.create_ts).as_bytes());
    text[..hpid.len()].copy_from_slice(hpid);
    text[hpid.len()..hpid.len() + create_ts.len()].copy_from_slice(create_ts);
    let digest = xxhash_rust::xxh64::xxh64(&text[..hpid.len() + create_ts.len()], 0);
    out.push(b'"');
    write_hex_bytes(out, &digest.to_be_bytes());
    out.push(b'"');
}

/// `exe`, then ` args` when args are non-empty, as one JSON string.
fn write_cmdline(out: &mut Vec<u8>, p: &Process, always_space: bool) {
    out.push(b'"');
    write_escaped_str(out, &p.exe);
    if always_space || !p.exe_args.is_empty() {
        out.push(b' ');
        write_escaped_str(out, &p.exe_args);
    }
    out.push(b'"');
}

/// Writes the `pproc` section (when the parent pid is known) and the `proc` section of a
/// known process, leaving out the `tid` value: returns where it goes.
fn write_process_sections(ancestry: &RVec<RArc<Process>>, out: &mut Vec<u8>) -> usize {
    let Some(proc) = ancestry.first() else {
        return 0;
    };
    let poid = proc.poid.into_option().unwrap_or_default();
    if poid.hpid != 0 {
        let parent = ancestry.get(1);
        let text = |out: &mut Vec<u8>, f: fn(&Process) -> &str| write_str(out, parent.map_or("", |p| f(p)));
        out.extend_from_slice(b"\"pproc\":{\"args\":");
        text(out, |p| &p.exe_args);
        out.extend_from_slice(b",\"cmdline\":");
        match parent {
            Some(p) => write_cmdline(out, p, false),
            None => out.extend_from_slice(b"\"\""),
        }
        out.extend_from_slice(b",\"createts\":");
        write_int(out, poid.create_ts);
        out.extend_from_slice(b",\"entry\":");
        write_bool(out, parent.is_some_and(|p| p.entry));
        out.extend_from_slice(b",\"exe\":");
        text(out, |p| &p.exe);
        out.extend_from_slice(b",\"gid\":");
        write_int(out, parent.map_or(0, |p| p.gid));
        out.extend_from_slice(b",\"group\":");
        text(out, |p| &p.group_name);
        out.extend_from_slice(b",\"name\":");
        text(out, |p| go_base(&p.exe));
        out.extend_from_slice(b",\"oid\":");
        write_oid_hash(out, poid);
        out.extend_from_slice(b",\"pid\":");
        write_int(out, poid.hpid);
        out.extend_from_slice(b",\"tty\":");
        write_bool(out, parent.is_some_and(|p| p.tty));
        out.extend_from_slice(b",\"uid\":");
        write_int(out, parent.map_or(0, |p| p.uid));
        out.extend_from_slice(b",\"user\":");
        text(out, |p| &p.user_name);
        out.extend_from_slice(b"},");
    }

    out.extend_from_slice(b"\"proc\":{\"acmdline\":[");
    for (i, p) in ancestry.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_cmdline(out, p, false);
    }
    out.extend_from_slice(b"],\"aexe\":[");
    for (i, p) in ancestry.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, &p.exe);
    }
    out.extend_from_slice(b"],\"aname\":[");
    for (i, p) in ancestry.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, go_base(&p.exe));
    }
    out.extend_from_slice(b"],\"apid\":[");
    for (i, p) in ancestry.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_int(out, p.oid.hpid);
    }
    out.extend_from_slice(b"],\"args\":");
    write_str(out, &proc.exe_args);
    out.extend_from_slice(b",\"cmdline\":");
    write_cmdline(out, proc, true);
    out.extend_from_slice(b",\"createts\":");
    write_int(out, proc.oid.create_ts);
    out.extend_from_slice(b",\"entry\":");
    write_bool(out, proc.entry);
    out.extend_from_slice(b",\"exe\":");
    write_str(out, &proc.exe);
    out.extend_from_slice(b",\"gid\":");
    write_int(out, proc.gid);
    out.extend_from_slice(b",\"group\":");
    write_str(out, &proc.group_name);
    out.extend_from_slice(b",\"name\":");
    write_str(out, go_base(&proc.exe));
    out.extend_from_slice(b",\"oid\":");
    write_oid_hash(out, proc.oid);
    out.extend_from_slice(b",\"pid\":");
    write_int(out, proc.oid.hpid);
    out.extend_from_slice(b",\"tid\":");
    let tid_at = out.len();
    out.extend_from_slice(b",\"tty\":");
    write_bool(out, proc.tty);
    out.extend_from_slice(b",\"uid\":");
    write_int(out, proc.uid);
    out.extend_from_slice(b",\"user\":");
    write_str(out, &proc.user_name);
    out.extend_from_slice(b"},");
    tid_at
}

/// The `proc` section of a process that was not in the cache: the ids the event names,
/// empty ancestry arrays (upstream writes no value at all there: invalid JSON).
fn write_unknown_process_section(out: &mut Vec<u8>, oid: Oid, tid: i64) {
    out.extend_from_slice(
        b"\"proc\":{\"acmdline\":[],\"aexe\":[],\"aname\":[],\"apid\":[],\"args\":\"\",\"cmdline\":\" \",\"createts\":",
    );
    write_int(out, oid.create_ts);
    out.extend_from_slice(b",\"entry\":false,\"exe\":\"\",\"gid\":0,\"group\":\"\",\"name\":\".\",\"oid\":");
    write_oid_hash(out, oid);
    out.extend_from_slice(b",\"pid\":");
    write_int(out, oid.hpid);
    out.extend_from_slice(b",\"tid\":");
    write_int(out, tid);
    out.extend_from_slice(b",\"tty\":false,\"uid\":0,\"user\":\"\"},");
}

/// Go's `filepath.Dir`, written as a JSON string; allocates only for unclean paths.
pub(crate) fn write_dir(out: &mut Vec<u8>, path: &str) {
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "",
    };
    let fast = match dir {
        "" => Some("."),
        "/" => Some("/"),
        _ => {
            let body = &dir[..dir.len() - 1];
            let rest = body.strip_prefix('/').unwrap_or(body);
            rest.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..").then_some(body)
        }
    };
    match fast {
        Some(d) => write_str(out, d),
        None => write_str(out, &go_clean(dir)),
    }
}

/// The socket-endpoint text `<hex>-><hex>` of a parsed path (`""` for ordinary paths).
fn write_endpoints(out: &mut Vec<u8>, endpoints: Option<(u64, u64)>) {
    out.push(b'"');
    if let Some((a, b)) = endpoints {
        write_hex_u64(out, a);
        out.extend_from_slice(b"-\\u003e");
        write_hex_u64(out, b);
    }
    out.push(b'"');
}

fn write_file_section(out: &mut Vec<u8>, record: &FlatRecord) {
    let file = record.file();
    let new_file = record.new_file();
    let raw = file.map_or("", |f| f.path.as_str());
    let parsed = parse_file_path(raw);
    let new_raw = new_file.map_or("", |f| f.path.as_str());
    let new_parsed = parse_file_path(new_raw);
    let open_flags = record.open_flags();

    out.extend_from_slice(b"\"file\":{\"directory\":");
    write_dir(out, parsed.path);
    out.extend_from_slice(b",\"fd\":");
    write_int(out, record.fd());
    out.extend_from_slice(b",\"is_open_read\":");
    write_bool(out, openflags::is_open_read(open_flags));
    out.extend_from_slice(b",\"is_open_write\":");
    write_bool(out, openflags::is_open_write(open_flags));
    out.extend_from_slice(b",\"name\":");
    write_str(out, go_base(raw));
    out.extend_from_slice(b",\"newdirectory\":");
    write_dir(out, new_parsed.path);
    out.extend_from_slice(b",\"newname\":");
    write_str(out, go_base(new_raw));
    out.extend_from_slice(b",\"newoid\":\"");
    if let Some(f) = new_file {
        write_hex_bytes(out, &f.oid);
    }
    out.extend_from_slice(b"\",\"newpath\":");
    write_str(out, new_raw);
    out.extend_from_slice(b",\"newsymlink\":");
    write_endpoints(out, new_parsed.endpoints);
    out.extend_from_slice(b",\"oid\":\"");
    if let Some(f) = file {
        write_hex_bytes(out, &f.oid);
    }
    out.extend_from_slice(b"\",\"openflags\":[");
    write_names(out, |f| openflags::for_each_name(open_flags, f));
    out.extend_from_slice(b"],\"path\":");
    write_str(out, parsed.path);
    out.extend_from_slice(b",\"symlink\":");
    write_endpoints(out, parsed.endpoints);
    out.extend_from_slice(b",\"type\":");
    write_restype(out, file);
    out.extend_from_slice(b"},");
}

/// `sf.file.type`: the character whose code is `restype` (NUL without a file).
fn write_restype(out: &mut Vec<u8>, file: Option<&File>) {
    let code = file.map_or(0, |f| f.restype);
    let c = u32::try_from(code).ok().and_then(char::from_u32).unwrap_or('\u{fffd}');
    let mut buf = [0u8; 4];
    write_str(out, c.encode_utf8(&mut buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_fast_path_equals_go_dir() {
        let paths = [
            "", "/", "//", "a", "a/", "/a", "/a/", "/a/b", "/a//b", "a/b/c", "./a", "../a", "a/../b", "/a/./b",
            "/a/../../b", "/.hidden/x", "/x/.hidden", "/x/..y/z", "/x/y../z", "pipe:[40140]", "/a/b/", "///a",
            "/proc/1/task/2/stat", "..", ".", "a/./", "/..", "/a/...", "/a/.../b",
        ];
        for p in paths {
            let mut fast = Vec::new();
            write_dir(&mut fast, p);
            let mut slow = Vec::new();
            write_str(&mut slow, &sysflow_plugin_api::flat::go_dir(p));
            assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow), "path {p:?}");
        }
    }
}
