//! The attribute table: every `sf.*` name and Falco alias (flat-record.md §4, §9) mapped to
//! an accessor over [`FlatRecord`], resolved once at compile time.
//!
//! Value forms follow flat-record.md §5. Differences from upstream (documented in
//! docs/compatibility.md): attributes that do not belong to a record type yield zero
//! values instead of reading an overlaid slot; flow counters are the recorded values (not
//! doubled); the parent's uid/gid have real integer forms and its tty/entry read `false`
//! when there is no parent; `sf.container.type` is `""` without a container;
//! `sf.ke.kind`/`sf.ke.action` are `""` on non-KE records; `sf.file.fd` is 0 on FE; pod IP
//! lists are valid JSON arrays; `proc.tty`/`proc.createtime` read the process itself.

use std::fmt::Write;

use sysflow_plugin_api::{
    enums,
    flat::{foid_hex, go_base, go_dir, oid_hash},
    openflags, opflags, Event, FlatRecord, Oid, Process, RecordType,
};

/// How an attribute's value is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer.
    Int,
    /// String.
    Str,
    /// Boolean.
    Bool,
    /// List (comma-joined in string form).
    List,
}

macro_rules! attrs {
    ($( $var:ident => $name:literal, $kind:ident; )*) => {
        /// An attribute accessor.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Attr { $( #[doc = $name] $var, )* }

        impl Attr {
            /// Every attribute.
            pub const ALL: &'static [Attr] = &[$(Attr::$var,)*];

            /// Canonical name.
            pub fn name(self) -> &'static str {
                match self { $( Attr::$var => $name, )* }
            }

            /// Value kind.
            pub fn kind(self) -> Kind {
                match self { $( Attr::$var => Kind::$kind, )* }
            }
        }
    };
}

attrs! {
    Type => "sf.type", Str;
    OpFlags => "sf.opflags", List;
    Ret => "sf.ret", Int;
    Ts => "sf.ts", Int;
    EndTs => "sf.endts", Int;
    ProcOid => "sf.proc.oid", Str;
    ProcPid => "sf.proc.pid", Int;
    ProcTid => "sf.proc.tid", Int;
    ProcName => "sf.proc.name", Str;
    ProcExe => "sf.proc.exe", Str;
    ProcArgs => "sf.proc.args", Str;
    ProcCmdline => "sf.proc.cmdline", Str;
    ProcUid => "sf.proc.uid", Int;
    ProcGid => "sf.proc.gid", Int;
    ProcUser => "sf.proc.user", Str;
    ProcGroup => "sf.proc.group", Str;
    ProcCreateTs => "sf.proc.createts", Int;
    ProcTty => "sf.proc.tty", Bool;
    ProcEntry => "sf.proc.entry", Bool;
    ProcAName => "sf.proc.aname", List;
    ProcAExe => "sf.proc.aexe", List;
    ProcACmdline => "sf.proc.acmdline", List;
    ProcAPid => "sf.proc.apid", List;
    PprocOid => "sf.pproc.oid", Str;
    PprocPid => "sf.pproc.pid", Int;
    PprocCreateTs => "sf.pproc.createts", Int;
    PprocName => "sf.pproc.name", Str;
    PprocExe => "sf.pproc.exe", Str;
    PprocArgs => "sf.pproc.args", Str;
    PprocUser => "sf.pproc.user", Str;
    PprocGroup => "sf.pproc.group", Str;
    PprocCmdline => "sf.pproc.cmdline", Str;
    PprocUid => "sf.pproc.uid", Int;
    PprocGid => "sf.pproc.gid", Int;
    PprocTty => "sf.pproc.tty", Bool;
    PprocEntry => "sf.pproc.entry", Bool;
    ContId => "sf.container.id", Str;
    ContName => "sf.container.name", Str;
    ContImage => "sf.container.image", Str;
    ContImageId => "sf.container.imageid", Str;
    ContType => "sf.container.type", Str;
    ContPrivileged => "sf.container.privileged", Int;
    PodTs => "sf.pod.ts", Int;
    PodRestartCnt => "sf.pod.restartcnt", Int;
    PodId => "sf.pod.id", Str;
    PodName => "sf.pod.name", Str;
    PodNodeName => "sf.pod.nodename", Str;
    PodNamespace => "sf.pod.namespace", Str;
    PodHostIp => "sf.pod.hostip", Str;
    PodInternalIp => "sf.pod.internalip", Str;
    PodServices => "sf.pod.services", Str;
    PodHostIpArr => "sf.pod.hostip+", Str;
    PodInternalIpArr => "sf.pod.internalip+", Str;
    PodServicesArr => "sf.pod.services+", Str;
    FileOid => "sf.file.oid", Str;
    FilePath => "sf.file.path", Str;
    FileSymlink => "sf.file.symlink", Str;
    FileName => "sf.file.name", Str;
    FileDirectory => "sf.file.directory", Str;
    FileType => "sf.file.type", Str;
    FileFd => "sf.file.fd", Int;
    FileOpenFlags => "sf.file.openflags", List;
    FileIsOpenRead => "sf.file.is_open_read", Bool;
    FileIsOpenWrite => "sf.file.is_open_write", Bool;
    FileNewOid => "sf.file.newoid", Str;
    FileNewPath => "sf.file.newpath", Str;
    FileNewSymlink => "sf.file.newsymlink", Str;
    FileNewName => "sf.file.newname", Str;
    FileNewDirectory => "sf.file.newdirectory", Str;
    FlowRBytes => "sf.flow.rbytes", Int;
    FlowROps => "sf.flow.rops", Int;
    FlowWBytes => "sf.flow.wbytes", Int;
    FlowWOps => "sf.flow.wops", Int;
    NetProto => "sf.net.proto", Int;
    NetSport => "sf.net.sport", Int;
    NetDport => "sf.net.dport", Int;
    NetSip => "sf.net.sip", Str;
    NetDip => "sf.net.dip", Str;
    NetIp => "sf.net.ip", List;
    NetPort => "sf.net.port", List;
    KeAction => "sf.ke.action", Str;
    KeKind => "sf.ke.kind", Str;
    KeMessage => "sf.ke.message", Str;
    NodeId => "sf.node.id", Str;
    NodeIp => "sf.node.ip", Str;
    MetaSchema => "sf.meta.schema", Int;
    MetaTracename => "sf.meta.tracename", Str;
    EvtDir => "evt.dir", List;
    EvtNum => "evt.num", Int;
    ProcDuration => "proc.duration", Int;
    ContImageRepository => "container.image.repository", Str;
    FdType => "fd.type", Str;
    ProcCwd => "proc.cwd", Str;
    EvtArgFlags => "evt.arg.flags", Str;
}

/// Falco-only fields: names that resolve only under `"dialect": "falco"` (dialect.rs),
/// so upstream's files keep treating them as unknown.
pub const FALCO_ONLY: &[Attr] = &[
    Attr::EvtNum,
    Attr::ProcDuration,
    Attr::ContImageRepository,
    Attr::FdType,
    Attr::ProcCwd,
    Attr::EvtArgFlags,
];

thread_local! {
    /// The 1-based number of the record being evaluated on this thread (`evt.num`). A
    /// record is evaluated start to end on one thread, and the accessors see only the
    /// record, so the evaluator publishes the number here before each record.
    static RECORD_NUMBER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Publishes the number of the record about to be evaluated on this thread (`evt.num`).
pub fn set_record_number(n: u64) {
    RECORD_NUMBER.with(|c| c.set(n));
}

/// The number of the record being evaluated on this thread (0: none published).
pub fn record_number() -> u64 {
    RECORD_NUMBER.with(|c| c.get())
}

/// Falco's `container.image.repository`: the image reference without its tag or digest
/// (`docker.io/library/nginx:1.25@sha256:…` → `docker.io/library/nginx`); a `:` before
/// the last `/` is a registry port, not a tag.
pub fn image_repository(image: &str) -> &str {
    let image = image.split_once('@').map(|(repo, _)| repo).unwrap_or(image);
    let name_start = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[name_start..].find(':') {
        Some(i) => &image[..name_start + i],
        None => image,
    }
}

/// Falco's `fd.type` for a SysFlow file resource type character (`sf.file.type`).
pub fn fd_type_name(typechar: char) -> &'static str {
    match typechar {
        'f' => "file",
        'd' => "directory",
        '4' => "ipv4",
        '6' => "ipv6",
        'u' => "unix",
        'p' => "pipe",
        'e' => "event",
        's' => "signalfd",
        'l' => "eventpoll",
        'i' => "inotify",
        't' => "timerfd",
        'o' => "netlink",
        _ => "",
    }
}

/// Bit sets naming what part of a record a value depends on ([`Attr::scope`]).
pub mod scope {
    /// The process context: the ancestry list, its container and pod (shared by every
    /// record of one process while its context is unchanged).
    pub const PROCESS: u8 = 1;
    /// The record's file entity (`sf.file.*` except open flags and fd).
    pub const FILE: u8 = 2;
    /// Anything else: the event itself, the header, the second file.
    pub const RECORD: u8 = 4;
}

/// Field classes whose dotted names are taken as attribute references: an unknown name of
/// one of these classes is an unknown attribute, not a literal.
const FIELD_CLASSES: &[&str] = &[
    "sf", "ext", "evt", "proc", "thread", "fd", "fdlist", "user", "group", "container", "k8s", "ka", "fs", "syslog",
    "span", "mesos", "marathon", "jevt", "evtin", "k8smeta", "json", "gcp", "aws", "okta", "github", "cloudtrail",
];

/// True when `name` is written like an attribute (`class.field…`) of a known field class.
pub fn looks_like_attribute(name: &str) -> bool {
    match name.split_once('.') {
        Some((class, rest)) => !rest.is_empty() && FIELD_CLASSES.contains(&class),
        None => false,
    }
}

/// Falco names upstream aliases to SysFlow attributes (flat-record.md §9).
const ALIASES: &[(&str, Attr)] = {
    use Attr::*;
    &[
        ("evt.type", OpFlags),
        ("evt.rawres", Type),
        ("evt.rawtime", Ts),
        ("evt.dir", EvtDir),
        ("evt.is_open_read", FileIsOpenRead),
        ("evt.is_open_write", FileIsOpenWrite),
        ("evt.arg.uid", ProcUid),
        ("fd.typechar", FileType),
        ("fd.directory", FileDirectory),
        ("fd.name", FileName),
        ("fd.filename", FileName),
        ("fd.proto", NetProto),
        ("fd.lproto", NetProto),
        ("fd.l4proto", NetProto),
        ("fd.rproto", NetProto),
        ("fd.sproto", NetProto),
        ("fd.cproto", NetProto),
        ("fd.sport", NetSport),
        ("fd.dport", NetDport),
        ("fd.sip", NetSip),
        ("fd.dip", NetDip),
        ("fd.ip", NetIp),
        ("fd.port", NetPort),
        ("fd.num", FileFd),
        ("user.name", ProcUser),
        ("proc.user", ProcUser),
        ("proc.pid", ProcPid),
        ("proc.tid", ProcTid),
        ("proc.gid", ProcGid),
        ("proc.uid", ProcUid),
        ("proc.group", ProcGroup),
        ("proc.exe", ProcExe),
        ("proc.name", ProcName),
        ("proc.args", ProcArgs),
        ("proc.cmdline", ProcCmdline),
        // Upstream maps these two to the parent's values (a bug); they read the process.
        ("proc.tty", ProcTty),
        ("proc.createtime", ProcCreateTs),
        ("proc.aname", ProcAName),
        ("proc.apid", ProcAPid),
        ("proc.ppid", PprocPid),
        ("proc.pcreatetime", PprocCreateTs),
        ("proc.pgid", PprocGid),
        ("proc.puid", PprocUid),
        ("proc.pgroup", PprocGroup),
        ("proc.ptty", PprocTty),
        ("proc.puser", PprocUser),
        ("proc.pexe", PprocExe),
        ("proc.pargs", PprocArgs),
        ("proc.pname", PprocName),
        ("proc.pcmdline", PprocCmdline),
        ("container.id", ContId),
        ("container.image.id", ContImageId),
        ("container.image", ContImage),
        ("container.name", ContName),
        ("container.type", ContType),
        ("container.privileged", ContPrivileged),
    ]
};

/// Looks up an attribute by `sf.*` name or Falco alias.
pub fn lookup(name: &str) -> Option<Attr> {
    if let Some(&(_, a)) = ALIASES.iter().find(|(n, _)| *n == name) {
        return Some(a);
    }
    Attr::ALL.iter().copied().find(|a| a.name() == name && *a != Attr::EvtDir && !FALCO_ONLY.contains(a))
}

/// Every name [`lookup`] resolves: the `sf.*` names and upstream's Falco aliases.
pub fn names() -> impl Iterator<Item = &'static str> {
    ALIASES.iter().map(|(n, _)| *n).chain(
        Attr::ALL.iter().filter(|a| **a != Attr::EvtDir && !FALCO_ONLY.contains(a)).map(|a| a.name()),
    )
}

/// Upstream's TrimBoundingQuotes (one leading and one trailing `"` or `'`), inlined.
#[inline]
pub fn trim_bounding_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    let start = usize::from(matches!(b.first(), Some(b'"' | b'\''))) ;
    let end = if b.len() > start && matches!(b.last(), Some(b'"' | b'\'')) { b.len() - 1 } else { b.len() };
    &s[start..end]
}

/// `sf.file.path` of a raw path: the path part of `<hex>-><hex> <path>` socket texts.
#[inline]
pub fn parsed_path(raw: &str) -> &str {
    // Only texts containing '>' can be socket endpoints; skip the full parse otherwise.
    if memchr::memchr(b'>', raw.as_bytes()).is_none() {
        return raw;
    }
    sysflow_plugin_api::flat::parse_file_path(raw).path
}

fn symlink_of(raw: &str) -> String {
    sysflow_plugin_api::flat::parse_file_path(raw).symlink()
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn proc_of(r: &FlatRecord) -> Option<&Process> {
    r.process()
}

fn cmdline_into(p: &Process, buf: &mut String, always_space: bool) {
    buf.push_str(&p.exe);
    if always_space || !p.exe_args.is_empty() {
        buf.push(' ');
        buf.push_str(&p.exe_args);
    }
}

fn push_ip(buf: &mut String, ip: i64) {
    let b = (ip as u32).to_le_bytes();
    let _ = write!(buf, "{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
}

fn push_oid_hash(buf: &mut String, oid: Oid) {
    buf.push_str(&oid_hash(oid));
}

/// Go's `filepath.Dir` without allocating when the path is already clean.
pub fn dir_of<'a>(path: &'a str, buf: &'a mut String) -> &'a str {
    let d = match path.rfind('/') {
        None => return ".",
        Some(0) => return "/",
        Some(i) => &path[..i],
    };
    let rooted = d.starts_with('/');
    let body = if rooted { &d[1..] } else { d };
    if body.split('/').all(|s| !s.is_empty() && s != "." && s != "..") {
        return d;
    }
    buf.clear();
    buf.push_str(&go_dir(path));
    buf
}

fn net_flow(r: &FlatRecord) -> Option<(i32, i32, i32, i32, i32)> {
    match &r.event {
        Event::NetworkFlow(n) => Some((n.sip, n.sport, n.dip, n.dport, n.proto)),
        _ => None,
    }
}

fn is_network(t: RecordType) -> bool {
    matches!(t, RecordType::NetworkFlow | RecordType::NetworkEvent)
}

fn pod_ips_into(buf: &mut String, ips: &[i64]) {
    // A JSON array (upstream omits the commas, which makes the text invalid JSON).
    buf.push('[');
    for (i, ip) in ips.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push('"');
        push_ip(buf, *ip);
        buf.push('"');
    }
    buf.push(']');
}

fn services_into(buf: &mut String, r: &FlatRecord) {
    let Some(pod) = r.pod() else {
        buf.push_str("[]");
        return;
    };
    let v: Vec<serde_json::Value> = pod
        .services
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name.as_str(),
                "id": s.id.as_str(),
                "namespace": s.namespace.as_str(),
                "portList": s.port_list.iter().map(|p| serde_json::json!({
                    "port": p.port, "targetPort": p.target_port, "nodePort": p.node_port, "proto": p.proto.as_str(),
                })).collect::<Vec<_>>(),
                "clusterIP": s.cluster_ip.iter().copied().collect::<Vec<i64>>(),
            })
        })
        .collect();
    buf.push_str(&serde_json::Value::Array(v).to_string());
}

impl Attr {
    /// The string form (flat-record.md §5): borrowed from the record, or written into `buf`.
    pub fn str_form<'a>(self, r: &'a FlatRecord, buf: &'a mut String) -> &'a str {
        use Attr::*;
        buf.clear();
        let p = proc_of(r);
        let trimmed = |s: &'a str| trim_bounding_quotes(s);
        match self {
            Type => r.record_type().short_name(),
            OpFlags => {
                let net = is_network(r.record_type());
                opflags::for_each_name(r.event.op_flags(), net, |n| {
                    if !buf.is_empty() {
                        buf.push(',');
                    }
                    buf.push_str(n);
                });
                buf
            }
            ProcName => go_base(p.map(|p| p.exe.as_str()).unwrap_or("")),
            ProcExe => trimmed(p.map(|p| p.exe.as_str()).unwrap_or("")),
            ProcArgs => trimmed(p.map(|p| p.exe_args.as_str()).unwrap_or("")),
            ProcCmdline => {
                match p {
                    Some(p) => cmdline_into(p, buf, true),
                    None => buf.push(' '),
                }
                trim_bounding_quotes(buf)
            }
            ProcUser => trimmed(p.map(|p| p.user_name.as_str()).unwrap_or("")),
            ProcGroup => trimmed(p.map(|p| p.group_name.as_str()).unwrap_or("")),
            ProcTty => bool_str(p.is_some_and(|p| p.tty)),
            ProcEntry => bool_str(p.is_some_and(|p| p.entry)),
            ProcAName | ProcAExe | ProcACmdline | ProcAPid => {
                for (i, a) in r.ancestry.iter().enumerate() {
                    if i > 0 {
                        buf.push(',');
                    }
                    match self {
                        ProcAName => buf.push_str(go_base(&a.exe)),
                        ProcAExe => buf.push_str(&a.exe),
                        ProcACmdline => cmdline_into(a, buf, false),
                        _ => {
                            let _ = write!(buf, "{}", a.oid.hpid);
                        }
                    }
                }
                buf
            }
            ProcOid => {
                push_oid_hash(buf, p.map(|p| p.oid).unwrap_or_default());
                buf
            }
            PprocOid => {
                push_oid_hash(buf, r.parent_oid().unwrap_or_default());
                buf
            }
            PprocName => r.parent().map(|pp| go_base(&pp.exe)).unwrap_or(""),
            PprocExe => trimmed(r.parent().map(|pp| pp.exe.as_str()).unwrap_or("")),
            PprocArgs => trimmed(r.parent().map(|pp| pp.exe_args.as_str()).unwrap_or("")),
            PprocUser => trimmed(r.parent().map(|pp| pp.user_name.as_str()).unwrap_or("")),
            PprocGroup => trimmed(r.parent().map(|pp| pp.group_name.as_str()).unwrap_or("")),
            PprocCmdline => {
                if let Some(pp) = r.parent() {
                    cmdline_into(pp, buf, false);
                }
                trim_bounding_quotes(buf)
            }
            PprocTty => bool_str(r.parent().is_some_and(|pp| pp.tty)),
            PprocEntry => bool_str(r.parent().is_some_and(|pp| pp.entry)),
            ContId => trimmed(r.container().map(|c| c.id.as_str()).unwrap_or("")),
            ContName => trimmed(r.container().map(|c| c.name.as_str()).unwrap_or("")),
            ContImage => trimmed(r.container().map(|c| c.image.as_str()).unwrap_or("")),
            ContImageId => trimmed(r.container().map(|c| c.imageid.as_str()).unwrap_or("")),
            ContType => r.container().map(|c| enums::container_type_name(c.container_type)).unwrap_or(""),
            PodId => trimmed(r.pod().map(|x| x.id.as_str()).unwrap_or("")),
            PodName => trimmed(r.pod().map(|x| x.name.as_str()).unwrap_or("")),
            PodNodeName => trimmed(r.pod().map(|x| x.node_name.as_str()).unwrap_or("")),
            PodNamespace => trimmed(r.pod().map(|x| x.namespace.as_str()).unwrap_or("")),
            PodHostIp => {
                pod_ips_into(buf, r.pod().map(|x| x.host_ip.as_slice()).unwrap_or(&[]));
                buf
            }
            PodInternalIp => {
                pod_ips_into(buf, r.pod().map(|x| x.internal_ip.as_slice()).unwrap_or(&[]));
                buf
            }
            PodServices => {
                services_into(buf, r);
                buf
            }
            PodHostIpArr | PodInternalIpArr | PodServicesArr => "",
            FileOid => {
                if let Some(f) = r.file() {
                    buf.push_str(&foid_hex(&f.oid));
                }
                buf
            }
            FileNewOid => {
                if let Some(f) = r.new_file() {
                    buf.push_str(&foid_hex(&f.oid));
                }
                buf
            }
            FilePath => trimmed(r.file().map(|f| parsed_path(&f.path)).unwrap_or("")),
            FileNewPath => trimmed(r.new_file().map(|f| parsed_path(&f.path)).unwrap_or("")),
            FileSymlink => {
                if let Some(f) = r.file() {
                    buf.push_str(&symlink_of(&f.path));
                }
                buf
            }
            FileNewSymlink => {
                if let Some(f) = r.new_file() {
                    buf.push_str(&symlink_of(&f.path));
                }
                buf
            }
            FileName => trimmed(go_base(r.file().map(|f| f.path.as_str()).unwrap_or(""))),
            FileNewName => trimmed(go_base(r.new_file().map(|f| f.path.as_str()).unwrap_or(""))),
            FileDirectory => trimmed(dir_of(r.file().map(|f| parsed_path(&f.path)).unwrap_or(""), buf)),
            FileNewDirectory => {
                trimmed(dir_of(r.new_file().map(|f| parsed_path(&f.path)).unwrap_or(""), buf))
            }
            FileType => {
                if let Some(f) = r.file() {
                    if let Some(c) = u32::try_from(f.restype).ok().and_then(char::from_u32) {
                        buf.push(c);
                    }
                }
                buf
            }
            FileOpenFlags => {
                openflags::for_each_name(r.open_flags(), |n| {
                    if !buf.is_empty() {
                        buf.push(',');
                    }
                    buf.push_str(n);
                });
                buf
            }
            FileIsOpenRead => bool_str(openflags::is_open_read(r.open_flags())),
            FileIsOpenWrite => bool_str(openflags::is_open_write(r.open_flags())),
            NetSip | NetDip => {
                let (sip, _, dip, _, _) = net_flow(r).unwrap_or_default();
                push_ip(buf, if self == NetSip { sip } else { dip } as i64);
                buf
            }
            NetIp => {
                let (sip, _, dip, _, _) = net_flow(r).unwrap_or_default();
                push_ip(buf, sip as i64);
                buf.push(',');
                push_ip(buf, dip as i64);
                buf
            }
            NetPort => {
                let (_, sport, _, dport, _) = net_flow(r).unwrap_or_default();
                let _ = write!(buf, "{sport},{dport}");
                buf
            }
            KeAction => match &r.event {
                Event::K8s(k) => enums::k8s_action_name(k.action),
                _ => "",
            },
            KeKind => match &r.event {
                Event::K8s(k) => enums::k8s_component_name(k.kind),
                _ => "",
            },
            KeMessage => match &r.event {
                Event::K8s(k) => trimmed(k.message.as_str()),
                _ => "",
            },
            NodeId => trimmed(r.header.exporter.as_str()),
            NodeIp => trimmed(r.header.ip.as_str()),
            MetaTracename => trimmed(go_base(r.header.filename.as_str())),
            EvtDir => ">,<",
            ContImageRepository => trimmed(image_repository(r.container().map(|c| c.image.as_str()).unwrap_or(""))),
            FdType => match r.file().and_then(|f| u32::try_from(f.restype).ok()).and_then(char::from_u32) {
                Some(c) => fd_type_name(c),
                None => "",
            },
            // Falco writes the working directory with a trailing `/`.
            ProcCwd => match p.map(|p| p.cwd.as_str()).unwrap_or("") {
                "" => "",
                cwd if cwd.ends_with('/') => cwd,
                cwd => {
                    buf.push_str(cwd);
                    buf.push('/');
                    buf
                }
            },
            // Falco's form of an open's flags: `O_`-prefixed names joined by `|`.
            EvtArgFlags => {
                if r.record_type() != RecordType::FileFlow {
                    return buf;
                }
                openflags::for_each_name(r.open_flags(), |n| {
                    if !buf.is_empty() {
                        buf.push('|');
                    }
                    buf.push_str("O_");
                    buf.push_str(n);
                });
                buf
            }
            ContPrivileged => {
                if r.container().is_some_and(|c| c.privileged) {
                    "1"
                } else {
                    "0"
                }
            }
            Ret | Ts | EndTs | ProcPid | ProcTid | ProcUid | ProcGid | ProcCreateTs | PprocPid | PprocCreateTs
            | PprocUid | PprocGid | PodTs | PodRestartCnt | FileFd | FlowRBytes | FlowROps | FlowWBytes | FlowWOps
            | NetProto | NetSport | NetDport | MetaSchema | EvtNum | ProcDuration => {
                let _ = write!(buf, "{}", self.int_form(r));
                buf
            }
        }
    }

    /// The integer form used by `<`, `<=`, `>`, `>=`: the value of integer attributes
    /// (booleans `sf.proc.tty`/`entry` and the parent's as 0/1), 0 for everything else.
    pub fn int_form(self, r: &FlatRecord) -> i64 {
        use Attr::*;
        let p = proc_of(r);
        match self {
            Ret => r.ret(),
            Ts => r.event.ts(),
            EndTs => r.end_ts(),
            ProcPid => p.map(|p| p.oid.hpid).unwrap_or(0),
            ProcTid => r.tid(),
            ProcUid => p.map(|p| p.uid as i64).unwrap_or(0),
            ProcGid => p.map(|p| p.gid as i64).unwrap_or(0),
            ProcCreateTs => p.map(|p| p.oid.create_ts).unwrap_or(0),
            ProcTty => p.is_some_and(|p| p.tty) as i64,
            ProcEntry => p.is_some_and(|p| p.entry) as i64,
            PprocPid => r.parent_oid().map(|o| o.hpid).unwrap_or(0),
            PprocCreateTs => r.parent_oid().map(|o| o.create_ts).unwrap_or(0),
            PprocUid => r.parent().map(|pp| pp.uid as i64).unwrap_or(0),
            PprocGid => r.parent().map(|pp| pp.gid as i64).unwrap_or(0),
            PprocTty => r.parent().is_some_and(|pp| pp.tty) as i64,
            PprocEntry => r.parent().is_some_and(|pp| pp.entry) as i64,
            ContPrivileged => r.container().is_some_and(|c| c.privileged) as i64,
            PodTs => r.pod().map(|x| x.ts).unwrap_or(0),
            PodRestartCnt => r.pod().map(|x| x.restart_count).unwrap_or(0),
            FileFd => match &r.event {
                Event::FileFlow(f) => f.fd as i64,
                Event::NetworkFlow(n) => n.fd as i64,
                _ => 0,
            },
            FlowROps => r.flow_counters().0,
            FlowWOps => r.flow_counters().1,
            FlowRBytes => r.flow_counters().2,
            FlowWBytes => r.flow_counters().3,
            NetProto => net_flow(r).map(|n| n.4 as i64).unwrap_or(0),
            NetSport => net_flow(r).map(|n| n.1 as i64).unwrap_or(0),
            NetDport => net_flow(r).map(|n| n.3 as i64).unwrap_or(0),
            MetaSchema => r.header.version,
            EvtNum => record_number() as i64,
            // Falco: nanoseconds since the process started.
            ProcDuration => match p {
                Some(p) if p.oid.create_ts > 0 => r.event.ts().saturating_sub(p.oid.create_ts).max(0),
                _ => 0,
            },
            _ => 0,
        }
    }

    /// `exists`: the raw value is not a zero value (`""`, 0, false, empty list).
    pub fn exists(self, r: &FlatRecord, buf: &mut String) -> bool {
        use Attr::*;
        match self.kind() {
            Kind::Int => self.int_form(r) != 0,
            Kind::Bool => match self {
                FileIsOpenRead => openflags::is_open_read(r.open_flags()),
                FileIsOpenWrite => openflags::is_open_write(r.open_flags()),
                _ => self.int_form(r) != 0,
            },
            Kind::List => match self {
                OpFlags => r.event.op_flags() != 0,
                ProcAName | ProcAExe | ProcACmdline | ProcAPid => !r.ancestry.is_empty(),
                FileOpenFlags => r.record_type() == RecordType::FileFlow,
                NetIp | NetPort => net_flow(r).is_some(),
                _ => true,
            },
            Kind::Str => match self {
                ProcName => p_exists(r),
                FileName | FileDirectory => r.file().is_some(),
                FileNewName | FileNewDirectory => r.new_file().is_some(),
                MetaTracename => !r.header.filename.is_empty(),
                _ => !self.str_form(r, buf).is_empty(),
            },
        }
    }

    /// The `index`-th element of a list attribute (Falco's `proc.aname[2]`), `""` if none.
    pub fn element<'a>(self, r: &'a FlatRecord, index: usize, buf: &'a mut String) -> &'a str {
        buf.clear();
        let Some(a) = r.ancestry.get(index) else { return "" };
        match self {
            Attr::ProcAName => go_base(&a.exe),
            Attr::ProcAExe => &a.exe,
            Attr::ProcACmdline => {
                cmdline_into(a, buf, false);
                buf
            }
            Attr::ProcAPid => {
                let _ = write!(buf, "{}", a.oid.hpid);
                buf
            }
            _ => "",
        }
    }

    /// True when evaluation caches the string form per record: every attribute but
    /// `sf.type` (a static name). Several rules test the same attributes, and the cache
    /// also records whether a form has a `,`, sparing each test the multi-value split and
    /// each base name or number its re-computation.
    #[inline]
    pub fn is_cached(self) -> bool {
        use Attr::*;
        self.is_computed() || !matches!(self, Type)
    }

    /// True when the string form is built (not borrowed from the record), so caching it
    /// for the duration of one record's evaluation pays.
    #[inline]
    pub fn is_computed(self) -> bool {
        use Attr::*;
        matches!(
            self,
            OpFlags
                | ProcCmdline
                | PprocCmdline
                | ProcAName
                | ProcAExe
                | ProcACmdline
                | ProcAPid
                | ProcOid
                | PprocOid
                | PodHostIp
                | PodInternalIp
                | PodServices
                | FileOid
                | FileNewOid
                | FileSymlink
                | FileNewSymlink
                | FileDirectory
                | FileNewDirectory
                | FileOpenFlags
                | NetSip
                | NetDip
                | NetIp
                | NetPort
        )
    }

    /// Which part of a record the value is read from (see [`scope`]): process-context and
    /// file attributes are the same on every record of one process or file, which lets
    /// evaluation cache tests over them per entity instead of per record.
    pub fn scope(self) -> u8 {
        use Attr::*;
        match self {
            ProcOid | ProcPid | ProcName | ProcExe | ProcArgs | ProcCmdline | ProcUid | ProcGid | ProcUser
            | ProcGroup | ProcCreateTs | ProcTty | ProcEntry | ProcAName | ProcAExe | ProcACmdline | ProcAPid
            | PprocOid | PprocPid | PprocCreateTs | PprocName | PprocExe | PprocArgs | PprocUser | PprocGroup
            | PprocCmdline | PprocUid | PprocGid | PprocTty | PprocEntry | ContId | ContName | ContImage
            | ContImageRepository | ProcCwd | ContImageId | ContType | ContPrivileged | PodTs | PodRestartCnt | PodId | PodName | PodNodeName
            | PodNamespace | PodHostIp | PodInternalIp | PodServices | PodHostIpArr | PodInternalIpArr
            | PodServicesArr => scope::PROCESS,
            FileOid | FilePath | FileSymlink | FileName | FileDirectory | FileType | FdType => scope::FILE,
            _ => scope::RECORD,
        }
    }

    /// True for list attributes that support an element index.
    pub fn is_indexable(self) -> bool {
        matches!(self, Attr::ProcAName | Attr::ProcAExe | Attr::ProcACmdline | Attr::ProcAPid)
    }

    /// True when the attribute has the same value on every record of type `t` (it does
    /// not belong to that type, so it reads a zero value).
    pub fn is_constant_for(self, t: RecordType) -> bool {
        let types = self.record_types();
        !types.is_empty() && !types.contains(&t)
    }

    /// Record types on which the attribute can be non-zero (empty: all types).
    pub fn record_types(self) -> &'static [RecordType] {
        use Attr::*;
        use RecordType as T;
        match self {
            FileOid | FilePath | FileSymlink | FileName | FileDirectory | FileType | FdType => {
                &[T::FileFlow, T::FileEvent]
            }
            FileNewOid | FileNewPath | FileNewSymlink | FileNewName | FileNewDirectory => &[T::FileEvent],
            FileOpenFlags | FileIsOpenRead | FileIsOpenWrite | EvtArgFlags => &[T::FileFlow],
            FlowRBytes | FlowROps | FlowWBytes | FlowWOps | FileFd => &[T::FileFlow, T::NetworkFlow],
            NetProto | NetSport | NetDport | NetSip | NetDip | NetIp | NetPort => &[T::NetworkFlow],
            KeAction | KeKind | KeMessage => &[T::K8sEvent],
            _ => &[],
        }
    }
}

fn p_exists(r: &FlatRecord) -> bool {
    r.process().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_resolve() {
        assert_eq!(lookup("sf.proc.exe"), Some(Attr::ProcExe));
        assert_eq!(lookup("proc.pname"), Some(Attr::PprocName));
        assert_eq!(lookup("evt.dir"), Some(Attr::EvtDir));
        assert_eq!(lookup("fd.name"), Some(Attr::FileName));
        assert_eq!(lookup("sf.proc.username"), None);
        assert_eq!(lookup("sf.pod.services+"), Some(Attr::PodServicesArr));
        for a in Attr::ALL {
            if *a != Attr::EvtDir && !FALCO_ONLY.contains(a) {
                assert_eq!(lookup(a.name()), Some(*a), "{}", a.name());
            }
        }
        assert!(looks_like_attribute("proc.vpid"));
        assert!(looks_like_attribute("sf.state"));
        assert!(!looks_like_attribute("cos-write.py"));
        assert!(!looks_like_attribute("node"));
        for n in names() {
            assert!(lookup(n).is_some(), "{n}");
        }
    }

    #[test]
    fn image_repository_drops_tag_and_digest_not_port() {
        for (image, repo) in [
            ("nginx", "nginx"),
            ("nginx:1.25", "nginx"),
            ("docker.io/library/nginx:1.25", "docker.io/library/nginx"),
            ("registry:5000/team/app", "registry:5000/team/app"),
            ("registry:5000/team/app:v2", "registry:5000/team/app"),
            ("quay.io/app@sha256:abcd", "quay.io/app"),
            ("", ""),
        ] {
            assert_eq!(image_repository(image), repo, "{image}");
        }
    }

    #[test]
    fn dir_fast_path_matches_go() {
        let mut b = String::new();
        for p in ["/etc/passwd", "/x", "a", "", "/a//b/c", "/a/./b", "a/b", "/a/../b/c", "pipe:[1]"] {
            let expect = if p.is_empty() { ".".to_string() } else { go_dir(p) };
            assert_eq!(dir_of(p, &mut b), expect, "{p}");
        }
    }
}
