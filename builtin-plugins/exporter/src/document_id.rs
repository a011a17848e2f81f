//! The Elasticsearch document id of a record (export-formats.md §3): the same record
//! always gets the same id, so a bulk request retried after an outage (`create` action)
//! cannot index a record twice — the receiver answers 409 for the copy.

use sysflow_plugin_api::{flat::foid_hex, Event, FlatRecord};
use xxhash_rust::xxh64::Xxh64;

/// Upstream's document id: xxHash64 (seed 0) over node id, container id, then as 8-byte
/// little-endian integers ts, tid, process create time, op flags, then per type: the file
/// oid (hex text) for file flows/events; sip, sport, dip, dport, proto for network flows;
/// action, kind and the message for Kubernetes events. 16 lowercase hex characters.
pub fn document_id(record: &FlatRecord) -> String {
    let mut h = Xxh64::new(0);
    h.update(record.header.exporter.as_bytes());
    h.update(record.container().map_or("", |c| c.id.as_str()).as_bytes());
    let mut int = |v: i64| h.update(&v.to_le_bytes());
    int(record.event.ts());
    int(record.tid());
    int(record.proc_oid().create_ts);
    int(i64::from(record.event.op_flags()));
    match &record.event {
        Event::FileFlow(_) | Event::File(_) => {
            let oid = record.file().map(|f| foid_hex(&f.oid)).unwrap_or_default();
            h.update(oid.as_bytes());
        }
        Event::NetworkFlow(nf) => {
            for v in [nf.sip, nf.sport, nf.dip, nf.dport, nf.proto] {
                h.update(&i64::from(v).to_le_bytes());
            }
        }
        Event::K8s(ke) => {
            h.update(&i64::from(ke.action).to_le_bytes());
            h.update(&i64::from(ke.kind).to_le_bytes());
            h.update(ke.message.as_bytes());
        }
        _ => {}
    }
    format!("{:016x}", h.digest())
}
