//! The `sysflow` Kafka message: SysFlow v5 Avro datums that decode on their own.
//!
//! A message is a sequence of frames, each an Avro `long` (zig-zag varint) byte length
//! followed by one binary v5 `SysFlow` datum exactly as the collector sends it on its
//! socket. The first frame is the node's header; then every container, pod, process (root
//! ancestor first) and file the message's events reference, each once; then the events
//! and flows in their original order. A consumer needs no state from earlier messages, so
//! any member of a consumer group can evaluate any message after any rebalance.
//! See `docs/kafka.md`.

use rustc_hash::FxHashMap;
use sysflow_avro_drivers::DatumDecoder;
use sysflow_plugin_api::{FlatRecord, Foid, Header, Oid, SysFlowRecord};
use sysflow_tracegen::{encode_container, encode_event, encode_file, encode_header, encode_pod, encode_process};

/// Most events or flows one message carries; more start a new message (bounds the
/// redelivery unit). A message repeats the entities its events reference, so fewer, larger
/// messages decode fewer datums: at 256 a consumer decoded 1.55 datums per event of the
/// benchmark trace, at 1024 (a whole host batch) far fewer — see docs/kafka.md.
pub const MAX_EVENTS_PER_MESSAGE: usize = 1024;

/// A message this large is closed after its current record, well below librdkafka's
/// default `message.max.bytes` (1,000,000) however long the entities' paths and arguments.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// Largest frame a decoder accepts (a datum is far smaller; a larger length is corruption).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Builds `sysflow` messages for one node from its flat records.
#[derive(Debug, Default)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    datum: Vec<u8>,
    events: usize,
    // Entity id → address of the version last written: the reader replaces an entity
    // (exec updates a process) by a new shared value, which must be written again. The
    // addresses stay valid because a message is built from one batch, whose records keep
    // every version they reference alive until the message is taken.
    containers: FxHashMap<String, usize>,
    pods: FxHashMap<String, usize>,
    processes: FxHashMap<Oid, usize>,
    files: FxHashMap<Foid, usize>,
}

/// True when `entity` is not the version last written under `id` (and records it as written).
fn is_new<K: std::hash::Hash + Eq, T>(written: &mut FxHashMap<K, usize>, id: K, entity: &T) -> bool {
    let address = entity as *const T as usize;
    written.insert(id, address) != Some(address)
}

/// [`is_new`] for string ids, allocating the key only for an id not seen in this message.
fn is_new_named<T>(written: &mut FxHashMap<String, usize>, id: &str, entity: &T) -> bool {
    let address = entity as *const T as usize;
    match written.get_mut(id) {
        Some(last) if *last == address => false,
        Some(last) => {
            *last = address;
            true
        }
        None => {
            written.insert(id.to_string(), address);
            true
        }
    }
}

impl MessageBuilder {
    /// An empty builder.
    pub fn new() -> MessageBuilder {
        MessageBuilder::default()
    }

    /// Events or flows in the message being built.
    pub fn events(&self) -> usize {
        self.events
    }

    /// True when the message is full ([`MAX_EVENTS_PER_MESSAGE`] or [`MAX_MESSAGE_BYTES`]).
    pub fn is_full(&self) -> bool {
        self.events >= MAX_EVENTS_PER_MESSAGE || self.buf.len() >= MAX_MESSAGE_BYTES
    }

    fn frame(buf: &mut Vec<u8>, datum: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
        datum.clear();
        encode(datum);
        put_varint(buf, datum.len() as i64);
        buf.extend_from_slice(datum);
    }

    /// Appends one record; the first record of a message writes its header.
    pub fn push(&mut self, record: &FlatRecord) {
        let (buf, datum) = (&mut self.buf, &mut self.datum);
        if self.events == 0 {
            Self::frame(buf, datum, |d| encode_header(&record.header, d));
        }
        if let Some(pod) = record.pod() {
            if is_new_named(&mut self.pods, &pod.id, pod) {
                Self::frame(buf, datum, |d| encode_pod(pod, d));
            }
        }
        if let Some(c) = record.container() {
            if is_new_named(&mut self.containers, &c.id, c) {
                Self::frame(buf, datum, |d| encode_container(c, d));
            }
        }
        // Root ancestor first: the reader links a child to a parent it already holds.
        for p in record.ancestry.iter().rev() {
            if is_new(&mut self.processes, p.oid, &**p) {
                Self::frame(buf, datum, |d| encode_process(p, d));
            }
        }
        for f in [record.file(), record.new_file()].into_iter().flatten() {
            if is_new(&mut self.files, f.oid, f) {
                Self::frame(buf, datum, |d| encode_file(f, d));
            }
        }
        Self::frame(buf, datum, |d| encode_event(&record.event, d));
        self.events += 1;
    }

    /// Takes the finished message (empty if no record was pushed) and starts a new one.
    pub fn take(&mut self) -> Vec<u8> {
        self.events = 0;
        self.containers.clear();
        self.pods.clear();
        self.processes.clear();
        self.files.clear();
        std::mem::take(&mut self.buf)
    }
}

/// Why a message could not be decoded in full; records before the fault were kept.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageError {
    /// Index of the frame that failed.
    pub frame: usize,
    /// What was wrong.
    pub reason: String,
}

/// Decodes every frame of a `sysflow` message, appending its records to `out`.
/// A bad frame ends decoding (frame lengths after it cannot be trusted); the records before
/// it are kept and the error names the frame.
pub fn decode_message(
    decoder: &DatumDecoder,
    message: &[u8],
    out: &mut Vec<SysFlowRecord>,
) -> Result<usize, MessageError> {
    let mut rest = message;
    let mut frame = 0;
    let mut header_seen = false;
    while !rest.is_empty() {
        let (len, used) =
            get_varint(rest).ok_or_else(|| MessageError { frame, reason: "truncated frame length".into() })?;
        let len =
            usize::try_from(len).ok().filter(|l| *l <= MAX_FRAME_BYTES && used + l <= rest.len()).ok_or_else(|| {
                MessageError {
                    frame,
                    reason: format!("frame length {len} exceeds the message or {MAX_FRAME_BYTES} bytes"),
                }
            })?;
        let datum = &rest[used..used + len];
        let record = decoder.decode(datum).map_err(|e| MessageError { frame, reason: e.to_string() })?;
        if frame == 0 && !matches!(record, SysFlowRecord::Header(_)) {
            return Err(MessageError { frame, reason: "first frame is not a SysFlow header".into() });
        }
        header_seen |= matches!(record, SysFlowRecord::Header(_));
        out.push(record);
        rest = &rest[used + len..];
        frame += 1;
    }
    debug_assert!(frame == 0 || header_seen);
    Ok(frame)
}

/// How many frames a message holds (counting a malformed tail as one): what its decode
/// will append at most, read from the length prefixes alone.
pub fn frame_count(message: &[u8]) -> usize {
    let mut rest = message;
    let mut frames = 0;
    while !rest.is_empty() {
        frames += 1;
        match get_varint(rest).and_then(|(len, used)| Some(used + usize::try_from(len).ok()?)) {
            Some(next) if next <= rest.len() => rest = &rest[next..],
            _ => break,
        }
    }
    frames
}

/// The node a record came from: the message key, so one node's records stay in one partition.
pub fn node_key(header: &Header) -> &str {
    header.exporter.as_str()
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Reads a zig-zag varint: (value, bytes used), or `None` when truncated or longer than 10 bytes.
fn get_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut z: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((((z >> 1) as i64) ^ -((z & 1) as i64), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, 64, 300, -300, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), Some((v, b.len())));
        }
        assert_eq!(get_varint(&[0x80]), None);
    }

    #[test]
    fn frame_count_reads_the_length_prefixes() {
        let mut m = Vec::new();
        for len in [3usize, 0, 200] {
            put_varint(&mut m, len as i64);
            m.extend(std::iter::repeat_n(7u8, len));
        }
        assert_eq!(frame_count(&m), 3);
        assert_eq!(frame_count(&m[..m.len() - 1]), 3, "a truncated last frame still counts");
        assert_eq!(frame_count(&[]), 0);
        assert_eq!(frame_count(&[0x80]), 1, "a broken length is one (bad) frame");
    }

    #[test]
    fn garbage_is_an_error_naming_the_frame() {
        let decoder = DatumDecoder::v5();
        let mut out = Vec::new();
        let e = decode_message(&decoder, &[0x7f, 1, 2], &mut out).unwrap_err();
        assert_eq!(e.frame, 0);
        assert!(e.reason.contains("frame length"), "{e:?}");
        assert!(out.is_empty());
    }
}
