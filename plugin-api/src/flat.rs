//! Flat records: an event or flow resolved against the entity cache, plus its policy context.
//!
//! Entities are shared references (`RArc`), so resolving a record copies no strings.
//! The derived values of the `sf.*` attribute catalogue that more than one plugin needs
//! (process names, parsed file paths, flag names) are methods here, so every consumer
//! computes them the same way.

use abi_stable::{
    std_types::{RArc, ROption, RString, RVec, Tuple2},
    StableAbi,
};

use crate::records::{Container, Event, File, Header, Oid, Pod, Process, RecordType};

/// A rule that matched a record, as the policy engine attaches it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct RuleMatch {
    /// Rule name (`policies[].id` in JSON).
    pub name: RString,
    /// Rule description.
    pub desc: RString,
    /// Priority ordinal: informational 0, low 1, medium 2, high 3, critical 4.
    pub priority: i32,
    /// The rule's tags, in rule order.
    pub tags: RVec<RString>,
    /// The rule's Falco `output:` rendered for this record (`""`: none, or not the falco dialect).
    pub output: RString,
    /// The fields the output template names with their values as JSON text (`"bash"`, `0`, `null`).
    pub output_fields: RVec<Tuple2<RString, RString>>,
    /// The priority as Falco writes it (`Warning`, `Critical`, …; `""`: not one of Falco's).
    pub priority_name: RString,
}

/// What the policy engine adds to a record.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct PolicyContext {
    /// Matched rules, in evaluation order (shared: one allocation per rule, not per match).
    pub matched: RVec<RArc<RuleMatch>>,
    /// Tags added by actions; exporters write these before the rules' tags.
    pub tags: RVec<RString>,
}

impl PolicyContext {
    /// True when no rule matched and no action added anything.
    pub fn is_empty(&self) -> bool {
        self.matched.is_empty() && self.tags.is_empty()
    }

    /// All tags in export order: action tags first, then each matched rule's tags.
    pub fn all_tags(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .map(|t| t.as_str())
            .chain(self.matched.iter().flat_map(|m| m.tags.iter().map(|t| t.as_str())))
    }
}

/// An event or flow with everything it refers to resolved.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FlatRecord {
    /// The trace header current when the record was read.
    pub header: RArc<Header>,
    /// The event or flow itself.
    pub event: Event,
    /// Process ancestry, the process itself first, then parent, grandparent, …
    /// Empty when the process is not known.
    pub ancestry: RArc<RVec<RArc<Process>>>,
    /// Container of the process.
    pub container: ROption<RArc<Container>>,
    /// Pod of the container.
    pub pod: ROption<RArc<Pod>>,
    /// File of a file flow or file event.
    pub file: ROption<RArc<File>>,
    /// Second file of a file event (link, symlink, rename).
    pub new_file: ROption<RArc<File>>,
    /// Policy results; empty until a policy engine ran.
    pub context: PolicyContext,
}

impl FlatRecord {
    /// Builds a record with no entities resolved.
    pub fn new(header: RArc<Header>, event: Event) -> FlatRecord {
        FlatRecord {
            header,
            event,
            ancestry: RArc::new(RVec::new()),
            container: ROption::RNone,
            pod: ROption::RNone,
            file: ROption::RNone,
            new_file: ROption::RNone,
            context: PolicyContext::default(),
        }
    }

    /// Record type (`sf.type`).
    pub fn record_type(&self) -> RecordType {
        self.event.record_type()
    }

    /// The record's process, if it was in the cache.
    pub fn process(&self) -> Option<&Process> {
        self.ancestry.first().map(|p| &**p)
    }

    /// The parent process, if it was in the cache.
    pub fn parent(&self) -> Option<&Process> {
        self.ancestry.get(1).map(|p| &**p)
    }

    /// The process OID the event names (also when the process is unknown).
    pub fn proc_oid(&self) -> Oid {
        self.event.proc_oid().unwrap_or_default()
    }

    /// The parent OID as the process names it (`poid`), if any.
    pub fn parent_oid(&self) -> Option<Oid> {
        self.process().and_then(|p| p.poid.into_option())
    }

    /// The container, if resolved.
    pub fn container(&self) -> Option<&Container> {
        self.container.as_ref().map(|c| &**c).into_option()
    }

    /// The pod, if resolved.
    pub fn pod(&self) -> Option<&Pod> {
        self.pod.as_ref().map(|p| &**p).into_option()
    }

    /// The file, if resolved.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref().map(|f| &**f).into_option()
    }

    /// The new file of a file event, if resolved.
    pub fn new_file(&self) -> Option<&File> {
        self.new_file.as_ref().map(|f| &**f).into_option()
    }

    /// `sf.ret`: return value of PE/FE, else 0.
    pub fn ret(&self) -> i64 {
        match &self.event {
            Event::Process(e) => e.ret as i64,
            Event::File(e) => e.ret as i64,
            Event::Network(e) => e.ret as i64,
            _ => 0,
        }
    }

    /// `sf.endts`: flow end; KE → its ts; events → 0.
    pub fn end_ts(&self) -> i64 {
        match &self.event {
            Event::NetworkFlow(e) => e.end_ts,
            Event::FileFlow(e) => e.end_ts,
            Event::ProcessFlow(e) => e.end_ts,
            Event::K8s(e) => e.ts,
            _ => 0,
        }
    }

    /// `sf.proc.tid`.
    pub fn tid(&self) -> i64 {
        match &self.event {
            Event::Process(e) => e.tid,
            Event::NetworkFlow(e) => e.tid,
            Event::FileFlow(e) => e.tid,
            Event::File(e) => e.tid,
            Event::Network(e) => e.tid,
            _ => 0,
        }
    }

    /// Flow counters `(rops, wops, rbytes, wbytes)` of FF/NF; zeros otherwise.
    /// (Upstream doubles these; we export the recorded values.)
    pub fn flow_counters(&self) -> (i64, i64, i64, i64) {
        match &self.event {
            Event::NetworkFlow(e) => (e.num_r_recv_ops, e.num_w_send_ops, e.num_r_recv_bytes, e.num_w_send_bytes),
            Event::FileFlow(e) => (e.num_r_recv_ops, e.num_w_send_ops, e.num_r_recv_bytes, e.num_w_send_bytes),
            _ => (0, 0, 0, 0),
        }
    }

    /// Open flags of a file flow, else 0.
    pub fn open_flags(&self) -> i32 {
        match &self.event {
            Event::FileFlow(e) => e.open_flags,
            _ => 0,
        }
    }

    /// `sf.file.fd`: fd of FF/NF; on FE the new file's state ordinal (upstream's slot overlay).
    pub fn fd(&self) -> i64 {
        match &self.event {
            Event::FileFlow(e) => e.fd as i64,
            Event::NetworkFlow(e) => e.fd as i64,
            Event::File(_) => self.new_file().map(|f| f.state as i64).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Go's `filepath.Base`: `""` → `"."`, trailing slashes ignored, `"/"` → `"/"`.
pub fn go_base(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Go's `filepath.Dir` (with `Clean` applied to the result).
pub fn go_dir(path: &str) -> String {
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "",
    };
    go_clean(dir)
}

/// Go's `filepath.Clean` (lexical: collapses `//`, `.`, `..`; `""` → `"."`).
pub fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Removes one leading and, independently, one trailing `"` or `'` (upstream's TrimBoundingQuotes).
pub fn trim_bounding_quotes(s: &str) -> &str {
    let s = s.strip_prefix(['"', '\'']).unwrap_or(s);
    s.strip_suffix(['"', '\'']).unwrap_or(s)
}

/// Dotted text of a little-endian IPv4 integer (`16777343` → `127.0.0.1`).
pub fn ipv4_string(ip: i64) -> String {
    let b = (ip as u32).to_le_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// Upstream's process OID hash: xxHash64 (seed 0) of decimal `hpid` then decimal `createTS`,
/// as 16 lowercase hex digits.
pub fn oid_hash(oid: Oid) -> String {
    let mut buf = String::with_capacity(40);
    use std::fmt::Write;
    let _ = write!(buf, "{}{}", oid.hpid, oid.create_ts);
    format!("{:016x}", xxhash_rust::xxh64::xxh64(buf.as_bytes(), 0))
}

/// A FOID as 40 lowercase hex characters.
pub fn foid_hex(oid: &[u8; 20]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(40);
    for b in oid {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// A unix-socket style path split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedPath<'a> {
    /// The path part (`sf.file.path`).
    pub path: &'a str,
    /// The `<hex>-><hex>` endpoint part, if the raw path had one.
    pub endpoints: Option<(u64, u64)>,
}

/// Splits `"<hex>-><hex> <path>"` into endpoints and path; other paths pass unchanged.
pub fn parse_file_path(raw: &str) -> ParsedPath<'_> {
    let plain = ParsedPath { path: raw, endpoints: None };
    let Some(arrow) = raw.find("->") else { return plain };
    let from = &raw[..arrow];
    let rest = &raw[arrow + 2..];
    let Some(space) = rest.find(' ') else { return plain };
    let to = &rest[..space];
    let path = &rest[space + 1..];
    let hex = |s: &str| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    if !(hex(from) && hex(to) && word(path)) {
        return plain;
    }
    match (u64::from_str_radix(from, 16), u64::from_str_radix(to, 16)) {
        (Ok(a), Ok(b)) => ParsedPath { path, endpoints: Some((a, b)) },
        _ => plain,
    }
}

impl ParsedPath<'_> {
    /// `sf.file.symlink`: endpoints re-printed in lowercase hex without leading zeros.
    pub fn symlink(&self) -> String {
        match self.endpoints {
            Some((a, b)) => format!("{a:x}->{b:x}"),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_functions_follow_go() {
        assert_eq!(go_base(""), ".");
        assert_eq!(go_base("/a/b/"), "b");
        assert_eq!(go_base("/"), "/");
        assert_eq!(go_base("ls"), "ls");
        assert_eq!(go_dir(""), ".");
        assert_eq!(go_dir("a"), ".");
        assert_eq!(go_dir("/etc/passwd"), "/etc");
        assert_eq!(go_dir("/x"), "/");
        assert_eq!(go_dir("pipe:[40140]"), ".");
    }

    #[test]
    fn quotes_and_ips() {
        assert_eq!(trim_bounding_quotes("'x\""), "x");
        assert_eq!(trim_bounding_quotes("\"\""), "");
        assert_eq!(ipv4_string(16777343), "127.0.0.1");
        assert_eq!(ipv4_string(1681631424), "192.168.59.100");
    }

    #[test]
    fn socket_paths_split() {
        let p = parse_file_path("ffff9ce02054c800->00ff9ce02054c000 /run/x.sock");
        assert_eq!(p.path, "/run/x.sock");
        assert_eq!(p.symlink(), "ffff9ce02054c800->ff9ce02054c000");
        assert_eq!(parse_file_path("/etc/passwd").endpoints, None);
    }
}
