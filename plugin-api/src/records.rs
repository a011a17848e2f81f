//! SysFlow records of Avro schema v5, as they cross the ABI.
//!
//! Field names follow the Avro schema (snake-cased); integer widths follow the Avro
//! types (`int` → `i32`, `long` → `i64`). Older schema generations decode into these
//! same types with defaults for absent fields.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

/// Process object id: creation time (ns) and host pid.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Oid {
    /// Process creation time in ns since the epoch (0 if it predates the capture).
    pub create_ts: i64,
    /// Host pid.
    pub hpid: i64,
}

/// File object id: SHA-1 over container id + path, computed by the collector.
pub type Foid = [u8; 20];

/// Why an entity was exported (`SFObjectState`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ObjectState {
    /// Newly created on the host.
    #[default]
    Created = 0,
    /// Attributes changed since the last export.
    Modified = 1,
    /// Re-exported unchanged so a file or stream segment is self-contained.
    Reup = 2,
}

/// The trace header: first record of every file and stream segment.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Header {
    /// Schema version of the producer (1000, 1001, 2..5 seen in the wild).
    pub version: i64,
    /// Exporter id (node name).
    pub exporter: RString,
    /// Node IP as dotted text (`"NA"` when the writer schema had no ip).
    pub ip: RString,
    /// Path of the trace file on the collector side (`""` before schema 3).
    pub filename: RString,
}

/// A container entity.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Container {
    /// Runtime container id.
    pub id: RString,
    /// Container name.
    pub name: RString,
    /// Image name.
    pub image: RString,
    /// Image id.
    pub imageid: RString,
    /// `ContainerType` ordinal (0 = DOCKER … 9 = BPM).
    pub container_type: i32,
    /// Privileged container.
    pub privileged: bool,
    /// Owning pod id (schema ≥ 4).
    pub pod_id: ROption<RString>,
}

/// A process entity.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Process {
    /// Why it was exported.
    pub state: ObjectState,
    /// This process.
    pub oid: Oid,
    /// Parent process, if known.
    pub poid: ROption<Oid>,
    /// Export time (ns).
    pub ts: i64,
    /// Executable path.
    pub exe: RString,
    /// Arguments joined by spaces.
    pub exe_args: RString,
    /// User id.
    pub uid: i32,
    /// User name.
    pub user_name: RString,
    /// Group id.
    pub gid: i32,
    /// Group name.
    pub group_name: RString,
    /// Attached to a terminal.
    pub tty: bool,
    /// Container the process runs in (`None` on the host).
    pub container_id: ROption<RString>,
    /// Container or system entry point.
    pub entry: bool,
    /// Current working directory (schema 5).
    pub cwd: RString,
    /// Environment (schema 5).
    pub env: RVec<RString>,
}

/// A file entity.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct File {
    /// Why it was exported.
    pub state: ObjectState,
    /// File object id.
    pub oid: Foid,
    /// Export time (ns).
    pub ts: i64,
    /// Resource type as an ASCII code: `'f'`, `'d'`, `'4'`, `'6'`, `'u'`, `'p'`, `'?'`.
    pub restype: i32,
    /// Path or descriptor text.
    pub path: RString,
    /// Container id (`None` on the host).
    pub container_id: ROption<RString>,
}

/// A port of a Kubernetes service.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Port {
    /// Service port.
    pub port: i32,
    /// Target port.
    pub target_port: i32,
    /// Node port.
    pub node_port: i32,
    /// Protocol name.
    pub proto: RString,
}

/// A Kubernetes service attached to a pod.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Service {
    /// Service name.
    pub name: RString,
    /// Service id.
    pub id: RString,
    /// Namespace.
    pub namespace: RString,
    /// Ports.
    pub port_list: RVec<Port>,
    /// Cluster IPs (little-endian IPv4 integers).
    pub cluster_ip: RVec<i64>,
}

/// A pod entity (schema ≥ 4).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Pod {
    /// Export time (ns).
    pub ts: i64,
    /// Pod UID.
    pub id: RString,
    /// Pod name.
    pub name: RString,
    /// Node name.
    pub node_name: RString,
    /// Host IPs (little-endian IPv4 integers).
    pub host_ip: RVec<i64>,
    /// Internal IPs (little-endian IPv4 integers).
    pub internal_ip: RVec<i64>,
    /// Namespace.
    pub namespace: RString,
    /// Restart count.
    pub restart_count: i64,
    /// Labels as (key, value) pairs in Avro map order.
    pub labels: RVec<KeyValue>,
    /// Selectors as (key, value) pairs.
    pub selectors: RVec<KeyValue>,
    /// Services.
    pub services: RVec<Service>,
}

/// One entry of an Avro string map.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct KeyValue {
    /// Key.
    pub key: RString,
    /// Value.
    pub value: RString,
}

/// A process event: clone, exec, exit or setuid.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ProcessEvent {
    /// Process.
    pub proc_oid: Oid,
    /// Event time (ns).
    pub ts: i64,
    /// Thread id.
    pub tid: i64,
    /// One op bit (see [`crate::opflags`]).
    pub op_flags: i32,
    /// Syscall arguments (rarely filled).
    pub args: RVec<RString>,
    /// Syscall return value.
    pub ret: i32,
}

/// A network flow (IPv4).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct NetworkFlow {
    /// Process.
    pub proc_oid: Oid,
    /// Flow start (ns).
    pub ts: i64,
    /// Thread id.
    pub tid: i64,
    /// Union of op bits.
    pub op_flags: i32,
    /// Flow end (ns).
    pub end_ts: i64,
    /// Source IP (little-endian IPv4).
    pub sip: i32,
    /// Source port.
    pub sport: i32,
    /// Destination IP (little-endian IPv4).
    pub dip: i32,
    /// Destination port.
    pub dport: i32,
    /// IANA protocol number.
    pub proto: i32,
    /// File descriptor (0 in the oldest layout).
    pub fd: i32,
    /// Receive operations.
    pub num_r_recv_ops: i64,
    /// Send operations.
    pub num_w_send_ops: i64,
    /// Bytes received.
    pub num_r_recv_bytes: i64,
    /// Bytes sent.
    pub num_w_send_bytes: i64,
}

/// A file flow.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct FileFlow {
    /// Process.
    pub proc_oid: Oid,
    /// Flow start (ns).
    pub ts: i64,
    /// Thread id.
    pub tid: i64,
    /// Union of op bits.
    pub op_flags: i32,
    /// Open flags (portable encoding, see [`crate::openflags`]).
    pub open_flags: i32,
    /// Flow end (ns).
    pub end_ts: i64,
    /// File.
    pub file_oid: Foid,
    /// File descriptor.
    pub fd: i32,
    /// Read operations.
    pub num_r_recv_ops: i64,
    /// Write operations.
    pub num_w_send_ops: i64,
    /// Bytes read.
    pub num_r_recv_bytes: i64,
    /// Bytes written.
    pub num_w_send_bytes: i64,
}

/// A file event: mkdir, rmdir, link, unlink, symlink, rename.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct FileEvent {
    /// Process.
    pub proc_oid: Oid,
    /// Event time (ns).
    pub ts: i64,
    /// Thread id.
    pub tid: i64,
    /// One op bit.
    pub op_flags: i32,
    /// File.
    pub file_oid: Foid,
    /// Syscall return value.
    pub ret: i32,
    /// Second file (link, symlink, rename target).
    pub new_file_oid: ROption<Foid>,
}

/// A network event (defined by the schema, never produced by the collector).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct NetworkEvent {
    /// Process.
    pub proc_oid: Oid,
    /// Event time (ns).
    pub ts: i64,
    /// Thread id.
    pub tid: i64,
    /// One op bit.
    pub op_flags: i32,
    /// Source IP.
    pub sip: i32,
    /// Source port.
    pub sport: i32,
    /// Destination IP.
    pub dip: i32,
    /// Destination port.
    pub dport: i32,
    /// IANA protocol number.
    pub proto: i32,
    /// Syscall return value.
    pub ret: i32,
}

/// A process flow (thread activity summary, schema ≥ 2).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ProcessFlow {
    /// Process.
    pub proc_oid: Oid,
    /// Flow start (ns).
    pub ts: i64,
    /// Threads cloned.
    pub num_threads_cloned: i64,
    /// Union of op bits.
    pub op_flags: i32,
    /// Flow end (ns).
    pub end_ts: i64,
    /// Threads exited.
    pub num_threads_exited: i64,
    /// Clone errors.
    pub num_clone_errors: i64,
}

/// A Kubernetes event (schema ≥ 4).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct K8sEvent {
    /// `K8sComponent` ordinal.
    pub kind: i32,
    /// `K8sAction` ordinal.
    pub action: i32,
    /// Event time (ns).
    pub ts: i64,
    /// Raw Kubernetes watch JSON.
    pub message: RString,
}

/// An event or flow record: what a flat record is built around.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum Event {
    /// `PE`
    Process(ProcessEvent),
    /// `NF`
    NetworkFlow(NetworkFlow),
    /// `FF`
    FileFlow(FileFlow),
    /// `FE`
    File(FileEvent),
    /// `NE`
    Network(NetworkEvent),
    /// `PF`
    ProcessFlow(ProcessFlow),
    /// `KE`
    K8s(K8sEvent),
}

/// One decoded SysFlow datum: the Avro union `sysflow.SysFlow.rec`.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum SysFlowRecord {
    /// `H`
    Header(Header),
    /// `C`
    Container(Container),
    /// `P`
    Process(Process),
    /// `F`
    File(File),
    /// `PD`
    Pod(Pod),
    /// An event or flow.
    Event(Event),
}

/// Record type, with upstream's numbering (the Avro union branch index).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// Header.
    Header = 0,
    /// Container.
    Container = 1,
    /// Process.
    Process = 2,
    /// File.
    File = 3,
    /// Process event.
    ProcessEvent = 4,
    /// Network flow.
    NetworkFlow = 5,
    /// File flow.
    FileFlow = 6,
    /// File event.
    FileEvent = 7,
    /// Network event.
    NetworkEvent = 8,
    /// Process flow.
    ProcessFlow = 9,
    /// Pod.
    Pod = 10,
    /// Kubernetes event.
    K8sEvent = 11,
}

impl RecordType {
    /// Every record type, in union order.
    pub const ALL: [RecordType; 12] = [
        RecordType::Header,
        RecordType::Container,
        RecordType::Process,
        RecordType::File,
        RecordType::ProcessEvent,
        RecordType::NetworkFlow,
        RecordType::FileFlow,
        RecordType::FileEvent,
        RecordType::NetworkEvent,
        RecordType::ProcessFlow,
        RecordType::Pod,
        RecordType::K8sEvent,
    ];

    /// The short name used by `sf.type` (`PE`, `FF`, …).
    pub fn short_name(self) -> &'static str {
        match self {
            RecordType::Header => "H",
            RecordType::Container => "C",
            RecordType::Process => "P",
            RecordType::File => "F",
            RecordType::ProcessEvent => "PE",
            RecordType::NetworkFlow => "NF",
            RecordType::FileFlow => "FF",
            RecordType::FileEvent => "FE",
            RecordType::NetworkEvent => "NE",
            RecordType::ProcessFlow => "PF",
            RecordType::Pod => "PD",
            RecordType::K8sEvent => "KE",
        }
    }

    /// Parses a short name exactly (case-sensitive), as upstream does.
    pub fn from_short_name(name: &str) -> Option<RecordType> {
        RecordType::ALL.into_iter().find(|t| t.short_name() == name)
    }
}

impl Event {
    /// The record type of this event or flow.
    pub fn record_type(&self) -> RecordType {
        match self {
            Event::Process(_) => RecordType::ProcessEvent,
            Event::NetworkFlow(_) => RecordType::NetworkFlow,
            Event::FileFlow(_) => RecordType::FileFlow,
            Event::File(_) => RecordType::FileEvent,
            Event::Network(_) => RecordType::NetworkEvent,
            Event::ProcessFlow(_) => RecordType::ProcessFlow,
            Event::K8s(_) => RecordType::K8sEvent,
        }
    }

    /// The process the event belongs to (`None` for Kubernetes events).
    pub fn proc_oid(&self) -> Option<Oid> {
        match self {
            Event::Process(e) => Some(e.proc_oid),
            Event::NetworkFlow(e) => Some(e.proc_oid),
            Event::FileFlow(e) => Some(e.proc_oid),
            Event::File(e) => Some(e.proc_oid),
            Event::Network(e) => Some(e.proc_oid),
            Event::ProcessFlow(e) => Some(e.proc_oid),
            Event::K8s(_) => None,
        }
    }

    /// Event time, or flow start time (ns).
    pub fn ts(&self) -> i64 {
        match self {
            Event::Process(e) => e.ts,
            Event::NetworkFlow(e) => e.ts,
            Event::FileFlow(e) => e.ts,
            Event::File(e) => e.ts,
            Event::Network(e) => e.ts,
            Event::ProcessFlow(e) => e.ts,
            Event::K8s(e) => e.ts,
        }
    }

    /// Raw op-flag bitmap (0 for Kubernetes events).
    pub fn op_flags(&self) -> i32 {
        match self {
            Event::Process(e) => e.op_flags,
            Event::NetworkFlow(e) => e.op_flags,
            Event::FileFlow(e) => e.op_flags,
            Event::File(e) => e.op_flags,
            Event::Network(e) => e.op_flags,
            Event::ProcessFlow(e) => e.op_flags,
            Event::K8s(_) => 0,
        }
    }
}

impl SysFlowRecord {
    /// The record type of this datum.
    pub fn record_type(&self) -> RecordType {
        match self {
            SysFlowRecord::Header(_) => RecordType::Header,
            SysFlowRecord::Container(_) => RecordType::Container,
            SysFlowRecord::Process(_) => RecordType::Process,
            SysFlowRecord::File(_) => RecordType::File,
            SysFlowRecord::Pod(_) => RecordType::Pod,
            SysFlowRecord::Event(e) => e.record_type(),
        }
    }
}
