//! The rate limiter on the shared traces: within one TTL window exactly one record per
//! semantic hash is forwarded (the first), Kubernetes events all pass, order is kept.

mod common;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use abi_stable::std_types::RVec;
use sysflow_plugin_api::Event;
use sysflow_reader::{semantic_hash, Flattener};

#[test]
fn one_record_per_semantic_hash_per_window() {
    let Some(dir) = common::data_dir() else { return };
    let (mut total_in, mut total_out) = (0usize, 0usize);
    for trace in common::traces(&dir) {
        let records = common::read_trace(&trace).records;
        let mut expected = Vec::new();
        let mut seen = HashSet::new();
        for r in &records {
            if matches!(r.event, Event::K8s(_)) || seen.insert(semantic_hash(r)) {
                expected.push((r.event.clone(), r.proc_oid()));
            }
        }
        let mut flattener = Flattener::with_filter(Some(Duration::from_secs(86_400)));
        let now = Instant::now();
        let mut forwarded = Vec::new();
        // Feed in batches of 500 so the window spans batches, as in a pipeline.
        for chunk in records.chunks(500) {
            let out = flattener.handle_at(RVec::from(chunk.to_vec()), now);
            forwarded.extend(out.iter().map(|r| (r.event.clone(), r.proc_oid())));
        }
        assert_eq!(forwarded, expected, "{}", trace.display());
        assert_eq!(flattener.rate_limited() as usize, records.len() - forwarded.len());
        total_in += records.len();
        total_out += forwarded.len();
    }
    eprintln!("rate limiter: {total_in} records in, {total_out} forwarded");
    assert!(
        total_out < total_in / 2,
        "the shared traces are highly repetitive; {total_out} of {total_in} forwarded"
    );
}
