//! Schema-resolving Avro decoder for SysFlow datums.
//!
//! A writer schema is compiled once into a plan: for each union branch (resolved by record
//! name), the writer's fields in order, each bound by name to a field of our record types
//! or marked to be skipped by its writer type. Decoding then walks the plan over the bytes
//! and fills the `SysFlowRecord` structs directly, without an intermediate value tree.

use std::sync::atomic::{AtomicU64, Ordering};

use sysflow_plugin_api::{
    abi_stable::std_types::{ROption, RString, RVec},
    Container, Event, File, FileEvent, FileFlow, Header, K8sEvent, KeyValue, NetworkEvent, NetworkFlow, ObjectState,
    Oid, Pod, Port, Process, ProcessEvent, ProcessFlow, Service, SysFlowRecord,
};

use crate::{
    cursor::{Cursor, DResult, DatumError},
    error::{DecodeError, ErrorKind},
    schema::{self, WRecord, WType},
};

/// The SysFlow Avro schema v5 (the reader schema, and the writer schema of socket streams).
pub const SCHEMA_V5: &str = include_str!("sysflow_v5.avsc");

/// Marks an op whose writer field has no target: the value is skipped.
const SKIP: u8 = u8::MAX;

/// What shape of value a target field holds; decides which writer types may feed it.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Long,
    Int,
    Bool,
    Str,
    OptStr,
    Oid,
    OptOid,
    Foid,
    OptFoid,
    Enum(&'static [&'static str]),
    StrList,
    LongList,
    StrMap,
    Services,
    Ports,
}

const CONTAINER_TYPE_SYMBOLS: &[&str] = &[
    "CT_DOCKER",
    "CT_LXC",
    "CT_LIBVIRT_LXC",
    "CT_MESOS",
    "CT_RKT",
    "CT_CUSTOM",
    "CT_CRI",
    "CT_CONTAINERD",
    "CT_CRIO",
    "CT_BPM",
];
const STATE_SYMBOLS: &[&str] = &["CREATED", "MODIFIED", "REUP"];

use sysflow_plugin_api::enums::{K8S_ACTIONS, K8S_COMPONENTS};

type Table = &'static [(&'static str, Shape)];

// Field tables: the index of an entry is the target id used in the decode functions below.
const HEADER: Table = &[("version", Shape::Long), ("exporter", Shape::Str), ("ip", Shape::Str), ("filename", Shape::Str)];
const CONTAINER: Table = &[
    ("id", Shape::Str),
    ("name", Shape::Str),
    ("image", Shape::Str),
    ("imageid", Shape::Str),
    ("type", Shape::Enum(CONTAINER_TYPE_SYMBOLS)),
    ("privileged", Shape::Bool),
    ("podId", Shape::OptStr),
];
const PROCESS: Table = &[
    ("state", Shape::Enum(STATE_SYMBOLS)),
    ("oid", Shape::Oid),
    ("poid", Shape::OptOid),
    ("ts", Shape::Long),
    ("exe", Shape::Str),
    ("exeArgs", Shape::Str),
    ("uid", Shape::Int),
    ("userName", Shape::Str),
    ("gid", Shape::Int),
    ("groupName", Shape::Str),
    ("tty", Shape::Bool),
    ("containerId", Shape::OptStr),
    ("entry", Shape::Bool),
    ("cwd", Shape::Str),
    ("env", Shape::StrList),
];
const FILE: Table = &[
    ("state", Shape::Enum(STATE_SYMBOLS)),
    ("oid", Shape::Foid),
    ("ts", Shape::Long),
    ("restype", Shape::Int),
    ("path", Shape::Str),
    ("containerId", Shape::OptStr),
];
const POD: Table = &[
    ("ts", Shape::Long),
    ("id", Shape::Str),
    ("name", Shape::Str),
    ("nodeName", Shape::Str),
    ("hostIP", Shape::LongList),
    ("internalIP", Shape::LongList),
    ("namespace", Shape::Str),
    ("restartCount", Shape::Long),
    ("labels", Shape::StrMap),
    ("selectors", Shape::StrMap),
    ("services", Shape::Services),
];
const SERVICE: Table = &[
    ("name", Shape::Str),
    ("id", Shape::Str),
    ("namespace", Shape::Str),
    ("portList", Shape::Ports),
    ("clusterIP", Shape::LongList),
];
const PORT: Table = &[("port", Shape::Int), ("targetPort", Shape::Int), ("nodePort", Shape::Int), ("proto", Shape::Str)];
const OID: Table = &[("createTS", Shape::Long), ("hpid", Shape::Long)];
const PROCESS_EVENT: Table = &[
    ("procOID", Shape::Oid),
    ("ts", Shape::Long),
    ("tid", Shape::Long),
    ("opFlags", Shape::Int),
    ("args", Shape::StrList),
    ("ret", Shape::Int),
];
const NETWORK_FLOW: Table = &[
    ("procOID", Shape::Oid),
    ("ts", Shape::Long),
    ("tid", Shape::Long),
    ("opFlags", Shape::Int),
    ("endTs", Shape::Long),
    ("sip", Shape::Int),
    ("sport", Shape::Int),
    ("dip", Shape::Int),
    ("dport", Shape::Int),
    ("proto", Shape::Int),
    ("fd", Shape::Int),
    ("numRRecvOps", Shape::Long),
    ("numWSendOps", Shape::Long),
    ("numRRecvBytes", Shape::Long),
    ("numWSendBytes", Shape::Long),
];
const FILE_FLOW: Table = &[
    ("procOID", Shape::Oid),
    ("ts", Shape::Long),
    ("tid", Shape::Long),
    ("opFlags", Shape::Int),
    ("openFlags", Shape::Int),
    ("endTs", Shape::Long),
    ("fileOID", Shape::Foid),
    ("fd", Shape::Int),
    ("numRRecvOps", Shape::Long),
    ("numWSendOps", Shape::Long),
    ("numRRecvBytes", Shape::Long),
    ("numWSendBytes", Shape::Long),
];
const FILE_EVENT: Table = &[
    ("procOID", Shape::Oid),
    ("ts", Shape::Long),
    ("tid", Shape::Long),
    ("opFlags", Shape::Int),
    ("fileOID", Shape::Foid),
    ("ret", Shape::Int),
    ("newFileOID", Shape::OptFoid),
];
const NETWORK_EVENT: Table = &[
    ("procOID", Shape::Oid),
    ("ts", Shape::Long),
    ("tid", Shape::Long),
    ("opFlags", Shape::Int),
    ("sip", Shape::Int),
    ("sport", Shape::Int),
    ("dip", Shape::Int),
    ("dport", Shape::Int),
    ("proto", Shape::Int),
    ("ret", Shape::Int),
];
const PROCESS_FLOW: Table = &[
    ("procOID", Shape::Oid),
    ("ts", Shape::Long),
    ("numThreadsCloned", Shape::Long),
    ("opFlags", Shape::Int),
    ("endTs", Shape::Long),
    ("numThreadsExited", Shape::Long),
    ("numCloneErrors", Shape::Long),
];
const K8S_EVENT: Table = &[
    ("kind", Shape::Enum(&K8S_COMPONENTS)),
    ("action", Shape::Enum(&K8S_ACTIONS)),
    ("ts", Shape::Long),
    ("message", Shape::Str),
];

/// Fields older writers lack, whose reader-schema defaults are expected (no warning).
const EXPECTED_MISSING: &[(&str, &str)] = &[
    ("SFHeader", "ip"),
    ("SFHeader", "filename"),
    ("Container", "podId"),
    ("Process", "entry"),
    ("Process", "cwd"),
    ("Process", "env"),
    ("Process", "poid"),
    ("Process", "containerId"),
    ("File", "containerId"),
    ("FileEvent", "newFileOID"),
    ("NetworkFlow", "fd"),
];

/// How to read one writer value (and, for records and enums, where its parts go).
#[derive(Debug)]
enum Read {
    Null,
    Bool,
    Varint,
    Float,
    Double,
    Str,
    Fixed(usize),
    /// Writer ordinal → target ordinal (-1: symbol unknown to us). Empty when skipping.
    Enum(Box<[i32]>),
    Array(Box<Read>),
    Map(Box<Read>),
    Union(Box<[Read]>),
    Record(Box<[Op]>),
    /// A union branch whose type cannot feed the target: an error if it occurs.
    Incompatible(Box<str>),
}

/// One writer field: its target id (or [`SKIP`]) and how to read it.
#[derive(Debug)]
struct Op {
    target: u8,
    read: Read,
}

/// The plan of one union branch.
#[derive(Debug)]
enum Branch {
    Header { ops: Box<[Op]>, has_ip: bool, has_version: bool },
    Container(Box<[Op]>),
    Process(Box<[Op]>),
    File(Box<[Op]>),
    Pod(Box<[Op]>),
    ProcessEvent(Box<[Op]>),
    NetworkFlow(Box<[Op]>),
    FileFlow(Box<[Op]>),
    FileEvent(Box<[Op]>),
    NetworkEvent(Box<[Op]>),
    ProcessFlow(Box<[Op]>),
    K8sEvent(Box<[Op]>),
    /// A branch that is not one of our record types: skipped, reported per datum.
    Unsupported { name: Box<str>, skip: Read },
}

/// Decodes binary SysFlow datums written with a given writer schema.
#[derive(Debug)]
pub struct DatumDecoder {
    /// Writer fields of the top-level record before the `rec` union (skipped).
    before: Vec<Read>,
    branches: Vec<Branch>,
    /// Writer fields after the `rec` union (skipped).
    after: Vec<Read>,
    warnings: Vec<String>,
    unknown_symbols: AtomicU64,
    /// Accept Process datums that end before `cwd` (v4 collectors on the socket).
    v4_process_tail: bool,
}

impl DatumDecoder {
    /// Compiles a decoder for the given writer schema (JSON text).
    pub fn new(writer_schema_json: &str) -> Result<Self, DecodeError> {
        let top = schema::parse(writer_schema_json)?;
        let mut warnings = Vec::new();
        let (before, union, after) = match top {
            WType::Union(branches) => (Vec::new(), branches, Vec::new()),
            WType::Record(rec) => {
                let mut before = Vec::new();
                let mut after = Vec::new();
                let mut union = None;
                for (name, t) in rec.fields {
                    match t {
                        WType::Union(b) if union.is_none() && name == "rec" => union = Some(b),
                        other if union.is_none() => before.push(skip_read(&other)),
                        other => after.push(skip_read(&other)),
                    }
                }
                let union = union.ok_or_else(|| {
                    DecodeError::new(
                        ErrorKind::Schema,
                        format!("writer schema record '{}' has no union field 'rec'", rec.full_name),
                    )
                })?;
                (before, union, after)
            }
            _ => {
                return Err(DecodeError::new(
                    ErrorKind::Schema,
                    "writer schema is neither the SysFlow record nor a union of SysFlow records",
                ))
            }
        };
        let mut branches = Vec::with_capacity(union.len());
        for b in &union {
            branches.push(compile_branch(b, &mut warnings)?);
        }
        Ok(DatumDecoder { before, branches, after, warnings, unknown_symbols: AtomicU64::new(0), v4_process_tail: false })
    }

    /// A decoder for schema v5 (what live collectors send over the socket).
    ///
    /// It also accepts datums of v4 collectors: their Process records end before the
    /// v5 fields `cwd`/`env` (the only v4→v5 difference), which then stay empty.
    pub fn v5() -> Self {
        match DatumDecoder::new(SCHEMA_V5) {
            Ok(mut d) => {
                d.v4_process_tail = true;
                d
            }
            // The embedded schema is a compile-time constant covered by tests.
            Err(e) => unreachable!("embedded v5 schema does not compile: {e}"),
        }
    }

    /// Schema resolution warnings (e.g. a field our records have but the writer lacks).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How many enum values had a symbol we do not know (decoded as ordinal 0).
    pub fn unknown_enum_symbols(&self) -> u64 {
        self.unknown_symbols.load(Ordering::Relaxed)
    }

    /// Decodes one binary datum; bytes after the datum are ignored.
    pub fn decode(&self, bytes: &[u8]) -> Result<SysFlowRecord, DecodeError> {
        let mut c = Cursor::new(bytes);
        self.decode_next(&mut c).map_err(|e| {
            let kind = if e.skippable { ErrorKind::UnsupportedRecord } else { ErrorKind::Datum };
            DecodeError::new(kind, format!("{} (at byte {} of the datum)", e.msg, e.pos))
        })
    }

    /// Decodes the datum at the cursor, leaving the cursor after it.
    pub(crate) fn decode_next(&self, c: &mut Cursor<'_>) -> DResult<SysFlowRecord> {
        for r in &self.before {
            c.skip(r)?;
        }
        let idx = c.varint()?;
        let branch = usize::try_from(idx)
            .ok()
            .and_then(|i| self.branches.get(i))
            .ok_or_else(|| c.err(format!("union branch index {idx} out of range (writer has {})", self.branches.len())))?;
        let rec = match branch {
            Branch::Header { ops, has_ip, has_version } => SysFlowRecord::Header(self.header(ops, *has_ip, *has_version, c)?),
            Branch::Container(ops) => SysFlowRecord::Container(self.container(ops, c)?),
            Branch::Process(ops) => SysFlowRecord::Process(self.process(ops, c)?),
            Branch::File(ops) => SysFlowRecord::File(self.file(ops, c)?),
            Branch::Pod(ops) => SysFlowRecord::Pod(self.pod(ops, c)?),
            Branch::ProcessEvent(ops) => SysFlowRecord::Event(Event::Process(self.process_event(ops, c)?)),
            Branch::NetworkFlow(ops) => SysFlowRecord::Event(Event::NetworkFlow(self.network_flow(ops, c)?)),
            Branch::FileFlow(ops) => SysFlowRecord::Event(Event::FileFlow(self.file_flow(ops, c)?)),
            Branch::FileEvent(ops) => SysFlowRecord::Event(Event::File(self.file_event(ops, c)?)),
            Branch::NetworkEvent(ops) => SysFlowRecord::Event(Event::Network(self.network_event(ops, c)?)),
            Branch::ProcessFlow(ops) => SysFlowRecord::Event(Event::ProcessFlow(self.process_flow(ops, c)?)),
            Branch::K8sEvent(ops) => SysFlowRecord::Event(Event::K8s(self.k8s_event(ops, c)?)),
            Branch::Unsupported { name, skip } => {
                c.skip(skip)?;
                for r in &self.after {
                    c.skip(r)?;
                }
                let mut e = c.err(format!("unsupported record type '{name}' (union branch {idx}); record skipped"));
                e.skippable = true;
                return Err(e);
            }
        };
        for r in &self.after {
            c.skip(r)?;
        }
        Ok(rec)
    }

    fn enum_ord(&self, c: &mut Cursor<'_>, rd: &Read) -> DResult<i32> {
        match rd {
            Read::Enum(table) => {
                let i = c.varint()?;
                match usize::try_from(i).ok().and_then(|i| table.get(i)) {
                    Some(&t) if t >= 0 => Ok(t),
                    Some(_) => {
                        self.unknown_symbols.fetch_add(1, Ordering::Relaxed);
                        Ok(0)
                    }
                    None => Err(c.err(format!("enum ordinal {i} out of range"))),
                }
            }
            Read::Union(bs) => match c.branch(bs)? {
                Read::Null => Ok(0),
                b => self.enum_ord(c, b),
            },
            other => Err(c.incompatible(other)),
        }
    }

    fn state(&self, c: &mut Cursor<'_>, rd: &Read) -> DResult<ObjectState> {
        Ok(match self.enum_ord(c, rd)? {
            1 => ObjectState::Modified,
            2 => ObjectState::Reup,
            _ => ObjectState::Created,
        })
    }

    fn header(&self, ops: &[Op], has_ip: bool, has_version: bool, c: &mut Cursor<'_>) -> DResult<Header> {
        let mut h = Header::default();
        if !has_ip {
            h.ip = RString::from("NA");
        }
        if !has_version {
            h.version = 5;
        }
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => h.version = c.long(rd)?,
                1 => h.exporter = c.string(rd)?,
                2 => h.ip = c.string(rd)?,
                3 => h.filename = c.string(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(h)
    }

    fn container(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<Container> {
        let mut r = Container::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.id = c.string(rd)?,
                1 => r.name = c.string(rd)?,
                2 => r.image = c.string(rd)?,
                3 => r.imageid = c.string(rd)?,
                4 => r.container_type = self.enum_ord(c, rd)?,
                5 => r.privileged = c.boolean_of(rd)?,
                6 => r.pod_id = c.opt_string(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn process(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<Process> {
        let mut r = Process::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.state = self.state(c, rd)?,
                1 => r.oid = c.oid(rd)?,
                2 => r.poid = c.opt_oid(rd)?,
                3 => r.ts = c.long(rd)?,
                4 => r.exe = c.string(rd)?,
                5 => r.exe_args = c.string(rd)?,
                6 => r.uid = c.int(rd)?,
                7 => r.user_name = c.string(rd)?,
                8 => r.gid = c.int(rd)?,
                9 => r.group_name = c.string(rd)?,
                10 => r.tty = c.boolean_of(rd)?,
                11 => r.container_id = c.opt_string(rd)?,
                12 => r.entry = c.boolean_of(rd)?,
                13 if self.v4_process_tail && c.remaining() == 0 => break,
                13 => r.cwd = c.string(rd)?,
                14 => r.env = c.string_list(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn file(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<File> {
        let mut r = File::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.state = self.state(c, rd)?,
                1 => r.oid = c.foid(rd)?,
                2 => r.ts = c.long(rd)?,
                3 => r.restype = c.int(rd)?,
                4 => r.path = c.string(rd)?,
                5 => r.container_id = c.opt_string(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn pod(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<Pod> {
        let mut r = Pod::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.ts = c.long(rd)?,
                1 => r.id = c.string(rd)?,
                2 => r.name = c.string(rd)?,
                3 => r.node_name = c.string(rd)?,
                4 => r.host_ip = c.long_list(rd)?,
                5 => r.internal_ip = c.long_list(rd)?,
                6 => r.namespace = c.string(rd)?,
                7 => r.restart_count = c.long(rd)?,
                8 => r.labels = c.string_map(rd)?,
                9 => r.selectors = c.string_map(rd)?,
                10 => r.services = c.services(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn process_event(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<ProcessEvent> {
        let mut r = ProcessEvent::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.proc_oid = c.oid(rd)?,
                1 => r.ts = c.long(rd)?,
                2 => r.tid = c.long(rd)?,
                3 => r.op_flags = c.int(rd)?,
                4 => r.args = c.string_list(rd)?,
                5 => r.ret = c.int(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn network_flow(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<NetworkFlow> {
        let mut r = NetworkFlow::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.proc_oid = c.oid(rd)?,
                1 => r.ts = c.long(rd)?,
                2 => r.tid = c.long(rd)?,
                3 => r.op_flags = c.int(rd)?,
                4 => r.end_ts = c.long(rd)?,
                5 => r.sip = c.int(rd)?,
                6 => r.sport = c.int(rd)?,
                7 => r.dip = c.int(rd)?,
                8 => r.dport = c.int(rd)?,
                9 => r.proto = c.int(rd)?,
                10 => r.fd = c.int(rd)?,
                11 => r.num_r_recv_ops = c.long(rd)?,
                12 => r.num_w_send_ops = c.long(rd)?,
                13 => r.num_r_recv_bytes = c.long(rd)?,
                14 => r.num_w_send_bytes = c.long(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn file_flow(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<FileFlow> {
        let mut r = FileFlow::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.proc_oid = c.oid(rd)?,
                1 => r.ts = c.long(rd)?,
                2 => r.tid = c.long(rd)?,
                3 => r.op_flags = c.int(rd)?,
                4 => r.open_flags = c.int(rd)?,
                5 => r.end_ts = c.long(rd)?,
                6 => r.file_oid = c.foid(rd)?,
                7 => r.fd = c.int(rd)?,
                8 => r.num_r_recv_ops = c.long(rd)?,
                9 => r.num_w_send_ops = c.long(rd)?,
                10 => r.num_r_recv_bytes = c.long(rd)?,
                11 => r.num_w_send_bytes = c.long(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn file_event(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<FileEvent> {
        let mut r = FileEvent::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.proc_oid = c.oid(rd)?,
                1 => r.ts = c.long(rd)?,
                2 => r.tid = c.long(rd)?,
                3 => r.op_flags = c.int(rd)?,
                4 => r.file_oid = c.foid(rd)?,
                5 => r.ret = c.int(rd)?,
                6 => r.new_file_oid = c.opt_foid(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn network_event(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<NetworkEvent> {
        let mut r = NetworkEvent::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.proc_oid = c.oid(rd)?,
                1 => r.ts = c.long(rd)?,
                2 => r.tid = c.long(rd)?,
                3 => r.op_flags = c.int(rd)?,
                4 => r.sip = c.int(rd)?,
                5 => r.sport = c.int(rd)?,
                6 => r.dip = c.int(rd)?,
                7 => r.dport = c.int(rd)?,
                8 => r.proto = c.int(rd)?,
                9 => r.ret = c.int(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn process_flow(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<ProcessFlow> {
        let mut r = ProcessFlow::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.proc_oid = c.oid(rd)?,
                1 => r.ts = c.long(rd)?,
                2 => r.num_threads_cloned = c.long(rd)?,
                3 => r.op_flags = c.int(rd)?,
                4 => r.end_ts = c.long(rd)?,
                5 => r.num_threads_exited = c.long(rd)?,
                6 => r.num_clone_errors = c.long(rd)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }

    fn k8s_event(&self, ops: &[Op], c: &mut Cursor<'_>) -> DResult<K8sEvent> {
        let mut r = K8sEvent::default();
        for op in ops {
            let rd = &op.read;
            match op.target {
                0 => r.kind = self.enum_ord(c, rd)?,
                1 => r.action = self.enum_ord(c, rd)?,
                2 => r.ts = c.long(rd)?,
                // The collector appends "\n\0" to the watch JSON; upstream's file driver strips
                // it, and we do so for every source so both drivers give the same records.
                3 => r.message = c.string_trimmed(rd, |b| b == b'\n' || b == 0)?,
                _ => c.skip(rd)?,
            }
        }
        Ok(r)
    }
}

fn to_rstring(bytes: &[u8]) -> RString {
    match std::str::from_utf8(bytes) {
        Ok(s) => RString::from(s),
        // Go strings are byte strings; keep the data rather than fail the record.
        Err(_) => RString::from(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// Typed readers driven by a compiled [`Read`]; a union branch `null` yields the default.
impl<'a> Cursor<'a> {
    #[cold]
    fn incompatible(&self, rd: &Read) -> DatumError {
        match rd {
            Read::Incompatible(msg) => self.err(format!("writer union branch does not fit the target field: {msg}")),
            other => self.err(format!("internal: unexpected read plan {other:?}")),
        }
    }

    #[inline]
    fn branch<'r>(&mut self, branches: &'r [Read]) -> DResult<&'r Read> {
        let i = self.varint()?;
        usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or_else(|| self.err(format!("union branch index {i} out of range")))
    }

    #[inline]
    fn long(&mut self, rd: &Read) -> DResult<i64> {
        match rd {
            Read::Varint => self.varint(),
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(0),
                b => self.long(b),
            },
            other => Err(self.incompatible(other)),
        }
    }

    #[inline]
    fn int(&mut self, rd: &Read) -> DResult<i32> {
        match rd {
            Read::Varint => self.int32(),
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(0),
                b => self.int(b),
            },
            other => Err(self.incompatible(other)),
        }
    }

    #[inline]
    fn boolean_of(&mut self, rd: &Read) -> DResult<bool> {
        match rd {
            Read::Bool => self.boolean(),
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(false),
                b => self.boolean_of(b),
            },
            other => Err(self.incompatible(other)),
        }
    }

    #[inline]
    fn string(&mut self, rd: &Read) -> DResult<RString> {
        Ok(self.opt_string(rd)?.unwrap_or_default())
    }

    fn string_trimmed(&mut self, rd: &Read, trim: fn(u8) -> bool) -> DResult<RString> {
        match rd {
            Read::Str => {
                let mut b = self.byte_string()?;
                while let Some((&last, rest)) = b.split_last() {
                    if !trim(last) {
                        break;
                    }
                    b = rest;
                }
                Ok(to_rstring(b))
            }
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(RString::new()),
                b => self.string_trimmed(b, trim),
            },
            other => Err(self.incompatible(other)),
        }
    }

    #[inline]
    fn opt_string(&mut self, rd: &Read) -> DResult<ROption<RString>> {
        match rd {
            Read::Str => Ok(ROption::RSome(to_rstring(self.byte_string()?))),
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(ROption::RNone),
                b => self.opt_string(b),
            },
            other => Err(self.incompatible(other)),
        }
    }

    #[inline]
    fn oid(&mut self, rd: &Read) -> DResult<Oid> {
        Ok(self.opt_oid(rd)?.unwrap_or_default())
    }

    fn opt_oid(&mut self, rd: &Read) -> DResult<ROption<Oid>> {
        match rd {
            Read::Record(ops) => {
                let mut oid = Oid::default();
                for op in ops.iter() {
                    match op.target {
                        0 => oid.create_ts = self.long(&op.read)?,
                        1 => oid.hpid = self.long(&op.read)?,
                        _ => self.skip(&op.read)?,
                    }
                }
                Ok(ROption::RSome(oid))
            }
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(ROption::RNone),
                b => self.opt_oid(b),
            },
            other => Err(self.incompatible(other)),
        }
    }

    #[inline]
    fn foid(&mut self, rd: &Read) -> DResult<[u8; 20]> {
        Ok(self.opt_foid(rd)?.unwrap_or_default())
    }

    fn opt_foid(&mut self, rd: &Read) -> DResult<ROption<[u8; 20]>> {
        match rd {
            Read::Fixed(20) => {
                let b = self.bytes(20)?;
                let mut out = [0u8; 20];
                out.copy_from_slice(b);
                Ok(ROption::RSome(out))
            }
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(ROption::RNone),
                b => self.opt_foid(b),
            },
            other => Err(self.incompatible(other)),
        }
    }

    /// Walks the blocks of an array or map, calling `item` once per element.
    fn each_item(&mut self, mut item: impl FnMut(&mut Self) -> DResult<()>) -> DResult<()> {
        loop {
            let n = self.block_count()?;
            if n == 0 {
                return Ok(());
            }
            for _ in 0..n {
                item(self)?;
            }
        }
    }

    /// Decodes an array (`map` false) or a map (`map` true; `item` reads each key) that may
    /// sit in a nullable union, one element at a time with `item`.
    fn elements<T, F>(&mut self, rd: &Read, map: bool, item: &mut F) -> DResult<RVec<T>>
    where
        F: FnMut(&mut Self, &Read) -> DResult<T>,
    {
        match rd {
            Read::Array(inner) if !map => self.collect_items(inner, item),
            Read::Map(inner) if map => self.collect_items(inner, item),
            Read::Union(bs) => match self.branch(bs)? {
                Read::Null => Ok(RVec::new()),
                b => self.elements(b, map, item),
            },
            other => Err(self.incompatible(other)),
        }
    }

    fn collect_items<T, F>(&mut self, inner: &Read, item: &mut F) -> DResult<RVec<T>>
    where
        F: FnMut(&mut Self, &Read) -> DResult<T>,
    {
        let mut out = RVec::new();
        self.each_item(|c| {
            out.push(item(c, inner)?);
            Ok(())
        })?;
        Ok(out)
    }

    fn string_list(&mut self, rd: &Read) -> DResult<RVec<RString>> {
        self.elements(rd, false, &mut |c, inner| c.string(inner))
    }

    fn long_list(&mut self, rd: &Read) -> DResult<RVec<i64>> {
        self.elements(rd, false, &mut |c, inner| c.long(inner))
    }

    fn string_map(&mut self, rd: &Read) -> DResult<RVec<KeyValue>> {
        self.elements(rd, true, &mut |c, inner| {
            let key = to_rstring(c.byte_string()?);
            Ok(KeyValue { key, value: c.string(inner)? })
        })
    }

    fn services(&mut self, rd: &Read) -> DResult<RVec<Service>> {
        self.elements(rd, false, &mut |c, inner| {
            let Read::Record(ops) = inner else { return Err(c.incompatible(inner)) };
            let mut s = Service::default();
            for op in ops.iter() {
                let rd = &op.read;
                match op.target {
                    0 => s.name = c.string(rd)?,
                    1 => s.id = c.string(rd)?,
                    2 => s.namespace = c.string(rd)?,
                    3 => s.port_list = c.ports(rd)?,
                    4 => s.cluster_ip = c.long_list(rd)?,
                    _ => c.skip(rd)?,
                }
            }
            Ok(s)
        })
    }

    fn ports(&mut self, rd: &Read) -> DResult<RVec<Port>> {
        self.elements(rd, false, &mut |c, inner| {
            let Read::Record(ops) = inner else { return Err(c.incompatible(inner)) };
            let mut p = Port::default();
            for op in ops.iter() {
                let rd = &op.read;
                match op.target {
                    0 => p.port = c.int(rd)?,
                    1 => p.target_port = c.int(rd)?,
                    2 => p.node_port = c.int(rd)?,
                    3 => p.proto = c.string(rd)?,
                    _ => c.skip(rd)?,
                }
            }
            Ok(p)
        })
    }

    /// Skips one value of the given writer shape.
    fn skip(&mut self, rd: &Read) -> DResult<()> {
        match rd {
            Read::Null => Ok(()),
            Read::Bool => self.bytes(1).map(drop),
            Read::Varint | Read::Enum(_) => self.varint().map(drop),
            Read::Float => self.bytes(4).map(drop),
            Read::Double => self.bytes(8).map(drop),
            Read::Str => self.byte_string().map(drop),
            Read::Fixed(n) => self.bytes(*n).map(drop),
            Read::Array(inner) => self.skip_blocks(|c| c.skip(inner)),
            Read::Map(inner) => self.skip_blocks(|c| {
                c.byte_string()?;
                c.skip(inner)
            }),
            Read::Union(bs) => {
                let b = self.branch(bs)?;
                self.skip(b)
            }
            Read::Record(ops) => {
                for op in ops.iter() {
                    self.skip(&op.read)?;
                }
                Ok(())
            }
            Read::Incompatible(_) => Err(self.incompatible(rd)),
        }
    }

    /// Skips array/map blocks, using the byte size of negative-count blocks when given.
    fn skip_blocks(&mut self, mut item: impl FnMut(&mut Self) -> DResult<()>) -> DResult<()> {
        loop {
            let n = self.varint()?;
            if n == 0 {
                return Ok(());
            }
            if n < 0 {
                let size = self.len_prefix()?;
                self.bytes(size)?;
                continue;
            }
            let n = usize::try_from(n).map_err(|_| self.err("invalid block count"))?;
            if n > self.remaining().saturating_add(64) {
                return Err(self.err("array/map block count exceeds the remaining data"));
            }
            for _ in 0..n {
                item(self)?;
            }
        }
    }
}

/// The plan to skip a writer value.
fn skip_read(t: &WType) -> Read {
    match t {
        WType::Null => Read::Null,
        WType::Boolean => Read::Bool,
        WType::Int | WType::Long => Read::Varint,
        WType::Float => Read::Float,
        WType::Double => Read::Double,
        WType::Bytes | WType::String => Read::Str,
        WType::Fixed { size } => Read::Fixed(*size),
        WType::Enum { .. } => Read::Enum(Box::new([])),
        WType::Array(i) => Read::Array(Box::new(skip_read(i))),
        WType::Map(v) => Read::Map(Box::new(skip_read(v))),
        WType::Union(bs) => Read::Union(bs.iter().map(skip_read).collect()),
        WType::Record(r) => Read::Record(r.fields.iter().map(|(_, t)| Op { target: SKIP, read: skip_read(t) }).collect()),
    }
}

/// The plan to read a writer value into a target of the given shape; `Err` names the mismatch.
fn compile_read(t: &WType, shape: Shape, warnings: &mut Vec<String>) -> Result<Read, String> {
    if let WType::Union(bs) = t {
        let mut out = Vec::with_capacity(bs.len());
        for b in bs {
            out.push(match b {
                WType::Null => Read::Null,
                WType::Union(_) => return Err("nested union".to_string()),
                other => compile_read(other, shape, warnings).unwrap_or_else(|e| Read::Incompatible(e.into())),
            });
        }
        if out.iter().all(|r| matches!(r, Read::Incompatible(_) | Read::Null)) && !out.iter().all(|r| matches!(r, Read::Null)) {
            return Err(format!("no branch of union {} fits {shape:?}", describe(t)));
        }
        return Ok(Read::Union(out.into()));
    }
    let mismatch = || format!("writer type {} cannot be read as {shape:?}", describe(t));
    Ok(match (shape, t) {
        (Shape::Long, WType::Int | WType::Long) => Read::Varint,
        (Shape::Int, WType::Int) => Read::Varint,
        (Shape::Bool, WType::Boolean) => Read::Bool,
        (Shape::Str | Shape::OptStr, WType::String | WType::Bytes) => Read::Str,
        (Shape::Oid | Shape::OptOid, WType::Record(r)) => Read::Record(compile_fields(r, OID, warnings)?),
        (Shape::Foid | Shape::OptFoid, WType::Fixed { size: 20 }) => Read::Fixed(20),
        (Shape::Enum(symbols), WType::Enum { symbols: writer }) => {
            let table: Box<[i32]> = writer
                .iter()
                .map(|s| symbols.iter().position(|t| t == s).and_then(|p| i32::try_from(p).ok()).unwrap_or(-1))
                .collect();
            for (s, t) in writer.iter().zip(table.iter()) {
                if *t < 0 {
                    warnings.push(format!("enum symbol '{s}' is unknown; values with it decode as ordinal 0"));
                }
            }
            Read::Enum(table)
        }
        (Shape::StrList, WType::Array(i)) => Read::Array(Box::new(compile_read(i, Shape::Str, warnings)?)),
        (Shape::LongList, WType::Array(i)) => Read::Array(Box::new(compile_read(i, Shape::Long, warnings)?)),
        (Shape::StrMap, WType::Map(v)) => Read::Map(Box::new(compile_read(v, Shape::Str, warnings)?)),
        (Shape::Services, WType::Array(i)) => match i.as_ref() {
            WType::Record(r) => Read::Array(Box::new(Read::Record(compile_fields(r, SERVICE, warnings)?))),
            _ => return Err(mismatch()),
        },
        (Shape::Ports, WType::Array(i)) => match i.as_ref() {
            WType::Record(r) => Read::Array(Box::new(Read::Record(compile_fields(r, PORT, warnings)?))),
            _ => return Err(mismatch()),
        },
        _ => return Err(mismatch()),
    })
}

fn describe(t: &WType) -> String {
    match t {
        WType::Null => "null".into(),
        WType::Boolean => "boolean".into(),
        WType::Int => "int".into(),
        WType::Long => "long".into(),
        WType::Float => "float".into(),
        WType::Double => "double".into(),
        WType::Bytes => "bytes".into(),
        WType::String => "string".into(),
        WType::Fixed { size } => format!("fixed({size})"),
        WType::Enum { .. } => "enum".into(),
        WType::Array(i) => format!("array<{}>", describe(i)),
        WType::Map(v) => format!("map<{}>", describe(v)),
        WType::Union(bs) => format!("[{}]", bs.iter().map(describe).collect::<Vec<_>>().join(", ")),
        WType::Record(r) => format!("record {}", r.full_name),
    }
}

/// Binds a writer record's fields to a target table by name.
fn compile_fields(r: &WRecord, table: Table, warnings: &mut Vec<String>) -> Result<Box<[Op]>, String> {
    let mut ops = Vec::with_capacity(r.fields.len());
    let mut seen = vec![false; table.len()];
    for (name, t) in &r.fields {
        match table.iter().position(|(n, _)| n == name) {
            Some(i) if !seen[i] => {
                seen[i] = true;
                let read = compile_read(t, table[i].1, warnings).map_err(|e| format!("{}.{name}: {e}", r.full_name))?;
                // Table positions are < 20, far below SKIP.
                ops.push(Op { target: i as u8, read });
            }
            _ => ops.push(Op { target: SKIP, read: skip_read(t) }),
        }
    }
    let short = r.short_name();
    for (i, (name, _)) in table.iter().enumerate() {
        if !seen[i] && !EXPECTED_MISSING.contains(&(short, name)) {
            warnings.push(format!("writer record {} has no field '{name}'; it decodes as zero/empty", r.full_name));
        }
    }
    Ok(ops.into())
}

fn compile_branch(t: &WType, warnings: &mut Vec<String>) -> Result<Branch, DecodeError> {
    let WType::Record(r) = t else {
        return Ok(Branch::Unsupported { name: describe(t).into(), skip: skip_read(t) });
    };
    let table = match r.short_name() {
        "SFHeader" => HEADER,
        "Container" => CONTAINER,
        "Process" => PROCESS,
        "File" => FILE,
        "Pod" => POD,
        "ProcessEvent" => PROCESS_EVENT,
        "NetworkFlow" => NETWORK_FLOW,
        "FileFlow" => FILE_FLOW,
        "FileEvent" => FILE_EVENT,
        "NetworkEvent" => NETWORK_EVENT,
        "ProcessFlow" => PROCESS_FLOW,
        "K8sEvent" => K8S_EVENT,
        _ => return Ok(Branch::Unsupported { name: r.full_name.clone().into(), skip: skip_read(t) }),
    };
    let ops = compile_fields(r, table, warnings).map_err(|e| DecodeError::new(ErrorKind::Schema, e))?;
    let has = |f: &str| r.fields.iter().any(|(n, _)| n == f);
    Ok(match r.short_name() {
        "SFHeader" => Branch::Header { has_ip: has("ip"), has_version: has("version"), ops },
        "Container" => Branch::Container(ops),
        "Process" => Branch::Process(ops),
        "File" => Branch::File(ops),
        "Pod" => Branch::Pod(ops),
        "ProcessEvent" => Branch::ProcessEvent(ops),
        "NetworkFlow" => Branch::NetworkFlow(ops),
        "FileFlow" => Branch::FileFlow(ops),
        "FileEvent" => Branch::FileEvent(ops),
        "NetworkEvent" => Branch::NetworkEvent(ops),
        "ProcessFlow" => Branch::ProcessFlow(ops),
        _ => Branch::K8sEvent(ops),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_schema_compiles_without_warnings() {
        let d = DatumDecoder::new(SCHEMA_V5).expect("v5 compiles");
        assert!(d.warnings().is_empty(), "{:?}", d.warnings());
        assert_eq!(d.branches.len(), 12);
        assert!(d.branches.iter().all(|b| !matches!(b, Branch::Unsupported { .. })));
    }

    #[test]
    fn unknown_enum_symbol_decodes_as_zero_and_is_counted() {
        let schema = r#"{"type":"record","name":"SysFlow","namespace":"sysflow","fields":[{"name":"rec","type":[
            {"type":"record","name":"Container","namespace":"sysflow.entity","fields":[
              {"name":"id","type":"string"},{"name":"name","type":"string"},{"name":"image","type":"string"},
              {"name":"imageid","type":"string"},
              {"name":"type","type":{"type":"enum","name":"ContainerType","symbols":["CT_NEW","CT_LXC"]}},
              {"name":"privileged","type":"boolean"}]}]}]}"#;
        let d = DatumDecoder::new(schema).expect("compiles");
        assert_eq!(d.warnings().len(), 1, "{:?}", d.warnings());
        // branch 0, four empty strings, enum ordinal 0 (CT_NEW), privileged true
        let rec = d.decode(&[0, 0, 0, 0, 0, 0, 1]).expect("decodes");
        let SysFlowRecord::Container(c) = rec else { panic!("not a container") };
        assert_eq!(c.container_type, 0);
        assert!(c.privileged);
        assert_eq!(c.pod_id, ROption::RNone);
        assert_eq!(d.unknown_enum_symbols(), 1);
        // CT_LXC resolves by name to ordinal 1
        let SysFlowRecord::Container(c) = d.decode(&[0, 0, 0, 0, 0, 2, 0]).expect("decodes") else { panic!() };
        assert_eq!(c.container_type, 1);
        assert_eq!(d.unknown_enum_symbols(), 1);
    }

    #[test]
    fn bad_branch_index_is_an_error() {
        let d = DatumDecoder::v5();
        let e = d.decode(&[40]).expect_err("branch 20 does not exist");
        assert_eq!(e.kind(), ErrorKind::Datum);
        assert!(e.message().contains("branch index 20"), "{e}");
        assert!(d.decode(&[]).is_err());
    }
}
