//! Real flat records to evaluate compiled policies on: a few of each record type from the
//! demo trace `config/demo.sf`, resolved by the `sysflowreader` processor once per process.

use std::{io::Cursor, sync::OnceLock};

use abi_stable::std_types::RStr;
use sysflow_avro_drivers::TraceReader;
use sysflow_plugin_api::{Batch, FlatRecord, Host, LogLevel, Processor, SysFlowRecord};
use sysflow_reader::SysFlowReader;

/// The demo trace, compiled in so the targets need no files at run time.
const DEMO_TRACE: &[u8] = include_bytes!("../../config/demo.sf");
/// Records kept per record type: enough to reach each type's attributes, few enough to
/// keep an execution fast.
const PER_TYPE: usize = 6;

extern "C" fn discard_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

/// A few resolved records of each record type in the demo trace.
pub fn sample_records() -> &'static [FlatRecord] {
    static SAMPLE: OnceLock<Vec<FlatRecord>> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let trace = match TraceReader::from_reader("config/demo.sf", Cursor::new(DEMO_TRACE)) {
            Ok(t) => t,
            Err(e) => panic!("the demo trace compiled into the fuzz targets does not open: {e}"),
        };
        let records: Vec<SysFlowRecord> = trace.filter_map(Result::ok).collect();
        let mut reader = SysFlowReader::with_host(Host::new(discard_log, "reader"));
        let flat = match reader.process(Batch::sysflow(records)) {
            Ok(Some(Batch::Flat(flat))) => flat,
            other => panic!("the reader did not flatten the demo trace: {:?}", other.err()),
        };
        let mut per_type = std::collections::HashMap::new();
        flat.iter()
            .filter(|r| {
                let n = per_type.entry(r.record_type() as usize).or_insert(0usize);
                *n += 1;
                *n <= PER_TYPE
            })
            .cloned()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_covers_several_record_types() {
        let types: std::collections::HashSet<_> = sample_records().iter().map(|r| r.record_type() as usize).collect();
        assert!(types.len() >= 4, "record types in the sample: {types:?}");
    }
}
