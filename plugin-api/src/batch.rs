//! Batches: what travels on a pipeline edge, and the channel types of upstream's pipeline files.

use abi_stable::{
    std_types::{RArc, RVec},
    StableAbi,
};

use crate::{flat::FlatRecord, records::SysFlowRecord};

/// One OpenTelemetry record: an OTLP `ResourceLogs` message (a resource, its scopes and
/// their log records), protobuf-encoded. Kept as bytes so that no protobuf library's types
/// cross the plugin boundary; decode it with the `opentelemetry-proto` crate (or any OTLP
/// protobuf binding).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Default)]
pub struct OtelRecord {
    /// The protobuf encoding of one `opentelemetry.proto.logs.v1.ResourceLogs`.
    pub resource_logs: RVec<u8>,
}

impl OtelRecord {
    /// A record holding the given protobuf bytes.
    pub fn from_proto(bytes: Vec<u8>) -> OtelRecord {
        OtelRecord { resource_logs: bytes.into() }
    }
}

/// A batch of records. Batches are shared (`RArc`): fan-out hands the same batch to
/// every output; a stage that changes records makes its own copy
/// (see [`Batch::into_flat_records`]).
#[repr(C, u8)]
#[derive(StableAbi, Clone, Debug)]
pub enum Batch {
    /// Decoded SysFlow records (`sysflowchan`).
    SysFlow(RArc<RVec<SysFlowRecord>>),
    /// Flat records, with or without policy context (`flattenerchan`, `eventchan`).
    Flat(RArc<RVec<FlatRecord>>),
    /// OpenTelemetry log records (`otelchan`, and `eventchan` after a policy engine reading `otelchan`).
    Otel(RArc<RVec<OtelRecord>>),
}

impl Batch {
    /// A batch of SysFlow records.
    pub fn sysflow(records: Vec<SysFlowRecord>) -> Batch {
        Batch::SysFlow(RArc::new(records.into()))
    }

    /// A batch of flat records.
    pub fn flat(records: Vec<FlatRecord>) -> Batch {
        Batch::Flat(RArc::new(records.into()))
    }

    /// A batch of OpenTelemetry records.
    pub fn otel(records: Vec<OtelRecord>) -> Batch {
        Batch::Otel(RArc::new(records.into()))
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Batch::SysFlow(b) => b.len(),
            Batch::Flat(b) => b.len(),
            Batch::Otel(b) => b.len(),
        }
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind of records this batch carries.
    pub fn payload(&self) -> Payload {
        match self {
            Batch::SysFlow(_) => Payload::SysFlow,
            Batch::Flat(_) => Payload::Flat,
            Batch::Otel(_) => Payload::Otel,
        }
    }

    /// Takes the flat records out, copying them only if the batch is shared.
    /// Returns `None` for a SysFlow or OTel batch.
    pub fn into_flat_records(self) -> Option<RVec<FlatRecord>> {
        match self {
            Batch::Flat(arc) => Some(RArc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
            Batch::SysFlow(_) | Batch::Otel(_) => None,
        }
    }
}

/// Key the host sets in every processor block's configuration: the [`Payload::name`] of the
/// records its input channel carries, so a plugin taking several payloads (an `eventchan`
/// may carry flat or OTel records) can set itself up for the right one when constructed.
pub const INPUT_PAYLOAD_KEY: &str = "input.payload";

/// The record kind a batch carries.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// [`SysFlowRecord`]s.
    SysFlow,
    /// [`FlatRecord`]s.
    Flat,
    /// [`OtelRecord`]s.
    Otel,
}

impl Payload {
    /// Every payload.
    pub const ALL: [Payload; 3] = [Payload::SysFlow, Payload::Flat, Payload::Otel];

    /// Parses [`Payload::name`].
    pub fn from_name(name: &str) -> Option<Payload> {
        Payload::ALL.into_iter().find(|p| p.name() == name)
    }

    /// A short name for messages and the host's `input.payload` key: `sysflow`, `flat`, `otel`.
    pub fn name(self) -> &'static str {
        match self {
            Payload::SysFlow => "sysflow",
            Payload::Flat => "flat",
            Payload::Otel => "otel",
        }
    }
}

/// Channel types as written in pipeline files (`"<name> <type>"`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelType {
    /// `sysflowchan`: decoded SysFlow records.
    SysFlow,
    /// `flattenerchan`: flat records.
    Flat,
    /// `eventchan`: records that passed a policy engine (flat records, or OTel records when
    /// the engine reads `otelchan`: the host tracks which through the pipeline).
    Event,
    /// `otelchan`: OpenTelemetry log records.
    Otel,
}

impl ChannelType {
    /// Every channel type.
    pub const ALL: [ChannelType; 4] = [ChannelType::SysFlow, ChannelType::Flat, ChannelType::Event, ChannelType::Otel];

    /// Parses upstream's type name.
    pub fn from_name(name: &str) -> Option<ChannelType> {
        ChannelType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Upstream's type name.
    pub fn name(self) -> &'static str {
        match self {
            ChannelType::SysFlow => "sysflowchan",
            ChannelType::Flat => "flattenerchan",
            ChannelType::Event => "eventchan",
            ChannelType::Otel => "otelchan",
        }
    }

    /// The batch payload carried on channels of this type when a pipeline's records are
    /// SysFlow's; an `eventchan` after a policy engine reading `otelchan` carries
    /// [`Payload::Otel`] instead (the host works that out from the pipeline).
    pub fn payload(self) -> Payload {
        match self {
            ChannelType::SysFlow => Payload::SysFlow,
            ChannelType::Flat | ChannelType::Event => Payload::Flat,
            ChannelType::Otel => Payload::Otel,
        }
    }
}
