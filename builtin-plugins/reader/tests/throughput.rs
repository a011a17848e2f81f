//! Reader throughput on a synthetic stream shaped like a busy node: 200 processes in
//! 20 containers, 2000 files, 1% process re-exports (which invalidate the context memo).
//! The assertion only applies to optimised builds (CI runs `cargo test --release`), with a
//! floor well below the 2 M records/s target so a loaded machine does not make it flaky.

use std::time::Instant;

use abi_stable::std_types::{ROption, RStr};
use sysflow_plugin_api::{
    Batch, Container, Event, File, FileFlow, Header, Host, LogLevel, NetworkFlow, ObjectState, Oid, Process,
    ProcessEvent, Processor, SysFlowRecord,
};
use sysflow_reader::SysFlowReader;

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn oid(i: i64) -> Oid {
    Oid {
        create_ts: 1_600_000_000_000_000_000 + i,
        hpid: i,
    }
}

fn process(i: i64, state: ObjectState) -> SysFlowRecord {
    SysFlowRecord::Process(Process {
        state,
        oid: oid(i),
        poid: if i > 10 {
            ROption::RSome(oid(i / 10))
        } else {
            ROption::RNone
        },
        exe: format!("/usr/bin/tool{i}").into(),
        exe_args: "--flag value".into(),
        container_id: ROption::RSome(format!("container{:02}", i % 20).into()),
        ..Process::default()
    })
}

fn foid(i: u32) -> [u8; 20] {
    let mut f = [0u8; 20];
    f[..4].copy_from_slice(&i.to_le_bytes());
    f[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
    f
}

fn stream(events: usize) -> Vec<Vec<SysFlowRecord>> {
    let mut recs = vec![SysFlowRecord::Header(Header {
        version: 5,
        ..Header::default()
    })];
    for c in 0..20 {
        recs.push(SysFlowRecord::Container(Container {
            id: format!("container{c:02}").into(),
            ..Container::default()
        }));
    }
    for i in 1..=200 {
        recs.push(process(i, ObjectState::Reup));
    }
    for f in 0..2000u32 {
        recs.push(SysFlowRecord::File(File {
            oid: foid(f),
            path: format!("/var/lib/f{f}").into(),
            ..File::default()
        }));
    }
    for n in 0..events {
        let p = (n % 200) as i64 + 1;
        let e = match n % 10 {
            0 => Event::Process(ProcessEvent {
                proc_oid: oid(p),
                ts: n as i64,
                op_flags: 2,
                ..ProcessEvent::default()
            }),
            1 | 2 => Event::NetworkFlow(NetworkFlow {
                proc_oid: oid(p),
                ts: n as i64,
                ..NetworkFlow::default()
            }),
            _ => Event::FileFlow(FileFlow {
                proc_oid: oid(p),
                ts: n as i64,
                file_oid: foid((n % 2000) as u32),
                ..FileFlow::default()
            }),
        };
        recs.push(SysFlowRecord::Event(e));
        if n % 100 == 99 {
            recs.push(process(p, ObjectState::Modified));
        }
    }
    let mut batches = Vec::new();
    let mut it = recs.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(it.by_ref().take(1024).collect());
    }
    batches
}

#[test]
fn reader_resolves_millions_of_records_per_second() {
    let events = if cfg!(debug_assertions) { 50_000 } else { 300_000 };
    let batches = stream(events);
    let total: usize = batches.iter().map(Vec::len).sum();
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "bench"));
    let start = Instant::now();
    let mut out = 0usize;
    for b in batches {
        if let Some(Batch::Flat(flat)) = reader.process(Batch::sysflow(b)).unwrap() {
            out += flat.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    eprintln!("reader: {total} records in {secs:.3} s = {:.2} M records/s", rate / 1e6);
    assert_eq!(out, events);
    let c = reader.stats();
    assert_eq!((c.missing_process, c.missing_file, c.missing_container), (0, 0, 0));
    if !cfg!(debug_assertions) {
        assert!(rate > 500_000.0, "reader throughput collapsed: {rate:.0} records/s");
    }
}
