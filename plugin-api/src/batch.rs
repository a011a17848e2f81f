//! Batches: what travels on a pipeline edge, and the channel types of upstream's pipeline files.

use abi_stable::{
    std_types::{RArc, RVec},
    StableAbi,
};

use crate::{flat::FlatRecord, records::SysFlowRecord};

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

    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Batch::SysFlow(b) => b.len(),
            Batch::Flat(b) => b.len(),
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
        }
    }

    /// Takes the flat records out, copying them only if the batch is shared.
    /// Returns `None` for a SysFlow batch.
    pub fn into_flat_records(self) -> Option<RVec<FlatRecord>> {
        match self {
            Batch::Flat(arc) => Some(RArc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
            Batch::SysFlow(_) => None,
        }
    }
}

/// The record kind a batch carries.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// [`SysFlowRecord`]s.
    SysFlow,
    /// [`FlatRecord`]s.
    Flat,
}

/// Channel types as written in pipeline files (`"<name> <type>"`).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelType {
    /// `sysflowchan`: decoded SysFlow records.
    SysFlow,
    /// `flattenerchan`: flat records.
    Flat,
    /// `eventchan`: flat records that passed a policy engine.
    Event,
}

impl ChannelType {
    /// Every channel type.
    pub const ALL: [ChannelType; 3] = [ChannelType::SysFlow, ChannelType::Flat, ChannelType::Event];

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
        }
    }

    /// The batch payload carried on channels of this type.
    pub fn payload(self) -> Payload {
        match self {
            ChannelType::SysFlow => Payload::SysFlow,
            ChannelType::Flat | ChannelType::Event => Payload::Flat,
        }
    }
}
