//! Behaviour of the reader and the flattener on hand-built records.

use std::{
    cell::RefCell,
    time::{Duration, Instant},
};

use abi_stable::std_types::{RArc, ROption, RStr, RVec};
use sysflow_plugin_api::{
    Batch, Container, Event, File, FileEvent, FileFlow, FlatRecord, Handler, Header, Host, K8sEvent, LogLevel,
    NetworkEvent, NetworkFlow, ObjectState, Oid, PluginConfig, Pod, Process, ProcessEvent, ProcessFlow, Processor,
    SysFlowRecord,
};
use sysflow_reader::{semantic_hash, Flattener, SysFlowReader};

thread_local! {
    static LOGS: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn capture_log(level: LogLevel, _instance: RStr<'_>, message: RStr<'_>) {
    LOGS.with(|l| l.borrow_mut().push((level, message.as_str().to_string())));
}

fn host() -> Host {
    Host::new(capture_log, "test")
}

fn take_logs() -> Vec<(LogLevel, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

fn oid(hpid: i64) -> Oid {
    Oid {
        create_ts: 5_000 + hpid,
        hpid,
    }
}

fn header(exporter: &str) -> SysFlowRecord {
    SysFlowRecord::Header(Header {
        version: 5,
        exporter: exporter.into(),
        ip: "10.0.0.1".into(),
        filename: "f.sf".into(),
    })
}

fn process(hpid: i64, parent: Option<i64>, state: ObjectState, exe: &str, container: Option<&str>) -> SysFlowRecord {
    SysFlowRecord::Process(Process {
        state,
        oid: oid(hpid),
        poid: parent.map(oid).into(),
        exe: exe.into(),
        exe_args: "-x".into(),
        uid: 1000,
        container_id: container.map(Into::into).into(),
        ..Process::default()
    })
}

fn file(id: u8, path: &str) -> SysFlowRecord {
    SysFlowRecord::File(File {
        oid: [id; 20],
        path: path.into(),
        restype: b'f' as i32,
        ..File::default()
    })
}

fn pe(hpid: i64, ts: i64) -> SysFlowRecord {
    SysFlowRecord::Event(Event::Process(ProcessEvent {
        proc_oid: oid(hpid),
        ts,
        tid: hpid,
        op_flags: 2,
        ..ProcessEvent::default()
    }))
}

fn ff(hpid: i64, file: u8, ts: i64) -> SysFlowRecord {
    SysFlowRecord::Event(Event::FileFlow(FileFlow {
        proc_oid: oid(hpid),
        ts,
        file_oid: [file; 20],
        op_flags: 1408,
        ..FileFlow::default()
    }))
}

fn nf(hpid: i64, sport: i32, dport: i32) -> SysFlowRecord {
    SysFlowRecord::Event(Event::NetworkFlow(NetworkFlow {
        proc_oid: oid(hpid),
        sip: 16777343,
        dip: 16777343,
        sport,
        dport,
        proto: 6,
        op_flags: 1856,
        ..NetworkFlow::default()
    }))
}

fn ke(msg: &str) -> SysFlowRecord {
    SysFlowRecord::Event(Event::K8s(K8sEvent {
        kind: 2,
        action: 1,
        ts: 9,
        message: msg.into(),
    }))
}

fn run(reader: &mut SysFlowReader, records: Vec<SysFlowRecord>) -> Vec<FlatRecord> {
    match reader
        .process(Batch::sysflow(records))
        .expect("reader accepts SysFlow batches")
    {
        Some(Batch::Flat(b)) => b.iter().cloned().collect(),
        Some(Batch::SysFlow(_) | Batch::Otel(_)) => panic!("reader must emit flat batches"),
        None => Vec::new(),
    }
}

fn counter(reader: &SysFlowReader, name: &str) -> u64 {
    reader
        .counters()
        .into_iter()
        .find(|c| c.name.as_str() == name)
        .map(|c| c.value)
        .unwrap_or(u64::MAX)
}

fn exes(r: &FlatRecord) -> Vec<String> {
    r.ancestry.iter().map(|p| p.exe.to_string()).collect()
}

fn full_scene() -> Vec<SysFlowRecord> {
    vec![
        header("node-a"),
        SysFlowRecord::Pod(Pod {
            id: "pod1".into(),
            name: " web-0 ".into(),
            ..Pod::default()
        }),
        SysFlowRecord::Container(Container {
            id: "c1".into(),
            name: "web".into(),
            pod_id: ROption::RSome("pod1".into()),
            ..Container::default()
        }),
        process(1, None, ObjectState::Reup, "/sbin/init", None),
        process(2, Some(1), ObjectState::Created, "/bin/sh", Some("c1")),
        process(3, Some(2), ObjectState::Created, " /usr/bin/cat ", Some("c1")),
        file(1, "/etc/passwd "),
        file(2, "/tmp/new"),
    ]
}

#[test]
fn resolves_process_ancestry_container_pod_and_files() {
    let mut reader = SysFlowReader::with_host(host());
    let mut recs = full_scene();
    recs.push(pe(3, 10));
    recs.push(ff(3, 1, 11));
    recs.push(SysFlowRecord::Event(Event::File(FileEvent {
        proc_oid: oid(3),
        file_oid: [1; 20],
        new_file_oid: ROption::RSome([2; 20]),
        op_flags: 1 << 20,
        ..FileEvent::default()
    })));
    recs.push(nf(2, 40000, 80));
    recs.push(ke("{}"));
    let out = run(&mut reader, recs);
    assert_eq!(out.len(), 5);
    assert_eq!(
        out.iter().map(|r| r.record_type().short_name()).collect::<Vec<_>>(),
        ["PE", "FF", "FE", "NF", "KE"]
    );
    for r in &out {
        assert_eq!(r.header.exporter.as_str(), "node-a");
    }
    let (pe, ff, fe, nf, ke) = (&out[0], &out[1], &out[2], &out[3], &out[4]);
    assert_eq!(exes(pe), ["/usr/bin/cat", "/bin/sh", "/sbin/init"]);
    assert_eq!(pe.process().map(|p| p.exe_args.as_str()), Some("-x"));
    assert_eq!(pe.container().map(|c| c.name.as_str()), Some("web"));
    assert_eq!(pe.pod().map(|p| p.name.as_str()), Some("web-0"), "pod name trimmed");
    assert!(pe.file().is_none());
    assert_eq!(
        ff.file().map(|f| f.path.as_str()),
        Some("/etc/passwd"),
        "file path trimmed"
    );
    assert!(ff.new_file().is_none());
    assert_eq!(fe.file().map(|f| f.path.as_str()), Some("/etc/passwd"));
    assert_eq!(fe.new_file().map(|f| f.path.as_str()), Some("/tmp/new"));
    assert_eq!(exes(nf), ["/bin/sh", "/sbin/init"]);
    assert_eq!(nf.container().map(|c| c.id.as_str()), Some("c1"));
    assert!(ke.process().is_none() && ke.container().is_none() && ke.pod().is_none());
    // Records of the same process share one ancestry list and one container.
    assert!(std::ptr::eq(&*pe.ancestry, &*ff.ancestry));
    assert!(std::ptr::eq(pe.container().unwrap(), fe.container().unwrap()));
    for name in ["missing_process", "missing_file", "missing_container", "missing_pod"] {
        assert_eq!(counter(&reader, name), 0, "{name}");
    }
    assert_eq!(counter(&reader, "flat_records_out"), 5);
    assert!(take_logs().is_empty());
}

#[test]
fn header_is_the_one_current_before_the_record_and_resets_the_cache() {
    let mut reader = SysFlowReader::with_host(host());
    let mut recs = full_scene();
    recs.push(pe(3, 1));
    recs.push(header("node-b"));
    recs.push(pe(3, 2));
    recs.push(ff(3, 1, 3));
    let out = run(&mut reader, recs);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].header.exporter.as_str(), "node-a");
    assert_eq!(out[1].header.exporter.as_str(), "node-b");
    assert!(out[1].process().is_none(), "processes cleared by the header");
    assert!(out[2].file().is_none(), "files cleared by the header");
    assert_eq!(reader.cache().sizes(), (0, 0, 0, 0));
    assert_eq!(counter(&reader, "missing_process"), 2);
    assert_eq!(counter(&reader, "missing_file"), 1);
    assert_eq!(counter(&reader, "headers"), 2);
    take_logs();
}

#[test]
fn missing_entities_are_forwarded_counted_and_logged_once() {
    let mut reader = SysFlowReader::with_host(host());
    let recs = vec![
        header("n"),
        process(7, Some(6), ObjectState::Created, "/bin/x", Some("ghost")),
        pe(42, 1),
        pe(42, 2),
        ff(7, 9, 3),
        ff(7, 9, 4),
    ];
    let out = run(&mut reader, recs);
    assert_eq!(out.len(), 4, "records are forwarded despite missing entities");
    assert!(out[0].process().is_none() && out[0].ancestry.is_empty());
    assert_eq!(out[0].proc_oid(), oid(42));
    assert_eq!(exes(&out[2]), ["/bin/x"], "a missing parent ends the ancestry");
    assert!(out[2].container().is_none());
    assert_eq!(counter(&reader, "missing_process"), 2);
    assert_eq!(counter(&reader, "missing_file"), 2);
    assert_eq!(counter(&reader, "missing_container"), 2);
    let logs = take_logs();
    let warn = |needle: &str| {
        logs.iter()
            .filter(|(l, m)| *l == LogLevel::Warn && m.contains(needle))
            .count()
    };
    assert_eq!(warn("No process object for ID: {5042 42}"), 1, "{logs:?}");
    assert_eq!(warn("No file object for FOID: 0909090909"), 1, "{logs:?}");
    assert_eq!(warn("No container object for ID: ghost"), 1, "{logs:?}");
    assert_eq!(logs.len(), 3, "{logs:?}");
}

#[test]
fn missing_entity_logs_are_capped() {
    let mut reader = SysFlowReader::with_host(host());
    let mut recs = vec![header("n")];
    recs.extend((0..1000).map(|i| pe(100 + i, i)));
    let out = run(&mut reader, recs);
    assert_eq!(out.len(), 1000);
    assert_eq!(counter(&reader, "missing_process"), 1000);
    let logs = take_logs();
    assert!(logs.len() <= 102, "log flood: {} lines", logs.len());
    assert!(logs.iter().any(|(_, m)| m.contains("only counted")));
}

#[test]
fn records_before_any_header_get_an_empty_header() {
    let mut reader = SysFlowReader::with_host(host());
    let out = run(
        &mut reader,
        vec![process(1, None, ObjectState::Created, "/a", None), pe(1, 1), ke("m")],
    );
    assert_eq!(out.len(), 2);
    assert_eq!(*out[0].header, Header::default());
    assert_eq!(exes(&out[0]), ["/a"]);
    assert_eq!(counter(&reader, "records_before_header"), 2);
}

#[test]
fn process_flows_are_ignored_and_network_events_flattened() {
    let mut reader = SysFlowReader::with_host(host());
    let out = run(
        &mut reader,
        vec![
            header("n"),
            process(1, None, ObjectState::Created, "/a", None),
            SysFlowRecord::Event(Event::ProcessFlow(ProcessFlow {
                proc_oid: oid(1),
                ..ProcessFlow::default()
            })),
            SysFlowRecord::Event(Event::Network(NetworkEvent {
                proc_oid: oid(1),
                dport: 53,
                ..NetworkEvent::default()
            })),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].record_type().short_name(), "NE");
    assert_eq!(exes(&out[0]), ["/a"]);
    assert_eq!(counter(&reader, "ignored_process_flows"), 1);
    assert_eq!(counter(&reader, "network_events"), 1);
}

#[test]
fn modified_process_wins_and_ancestry_follows_it() {
    let mut reader = SysFlowReader::with_host(host());
    let out = run(
        &mut reader,
        vec![
            header("n"),
            process(1, None, ObjectState::Created, "/bin/bash", None),
            process(2, Some(1), ObjectState::Created, "/bin/child", None),
            pe(2, 1),
            process(1, None, ObjectState::Modified, "/usr/bin/python", None),
            pe(2, 2),
            process(1, None, ObjectState::Reup, "/bin/reup", None),
            pe(2, 3),
        ],
    );
    assert_eq!(exes(&out[0]), ["/bin/child", "/bin/bash"]);
    assert_eq!(exes(&out[1]), ["/bin/child", "/usr/bin/python"]);
    assert_eq!(
        exes(&out[2]),
        ["/bin/child", "/usr/bin/python"],
        "REUP does not displace MODIFIED"
    );
}

#[test]
fn flat_input_is_rejected_and_shared_batches_are_read() {
    let mut reader = SysFlowReader::with_host(host());
    let err = reader
        .process(Batch::flat(Vec::new()))
        .expect_err("flat input must fail");
    assert!(
        err.message.contains("sysflowchan") && err.message.contains("flattenerchan"),
        "{}",
        err.message
    );

    let batch = Batch::sysflow(vec![
        header("n"),
        process(1, None, ObjectState::Created, "/a", None),
        pe(1, 1),
    ]);
    let keep = batch.clone(); // a second consumer holds the batch: the reader must copy, not steal
    let out = match reader.process(batch).unwrap() {
        Some(Batch::Flat(b)) => b,
        _ => panic!("expected a flat batch"),
    };
    assert_eq!(out.len(), 1);
    assert_eq!(keep.len(), 3);
    assert_eq!(exes(&out[0]), ["/a"]);
    // A batch with no event yields no output batch.
    assert!(reader.process(Batch::sysflow(vec![file(1, "/x")])).unwrap().is_none());
}

#[test]
fn descriptors_name_both_plugins() {
    let d = sysflow_reader::descriptors();
    let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["sysflowreader", "flattener"]);
    let keys: Vec<_> = d[0].config_keys.iter().map(|k| k.name.as_str()).collect();
    assert!(keys.contains(&"handler") && keys.contains(&"filter.maxage"));
}

// ---------------------------------------------------------------- flattener

fn config(pairs: &[(&str, &str)]) -> PluginConfig {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    PluginConfig::from_map(map)
}

fn flats(records: Vec<SysFlowRecord>) -> RVec<FlatRecord> {
    let mut reader = SysFlowReader::with_host(host());
    let mut recs = full_scene();
    recs.push(process(4, Some(2), ObjectState::Created, "/usr/bin/curl", Some("c1")));
    recs.extend(records);
    let mut out = RVec::new();
    reader.read_records(recs, &mut out);
    out
}

#[test]
fn flattener_without_filter_passes_batches_through_untouched() {
    let mut f = Flattener::new(&config(&[]), host()).unwrap();
    let recs = flats(vec![pe(3, 1), pe(3, 1), pe(3, 1)]);
    let ptr = recs.as_ptr();
    let out = f.handle(recs).unwrap().expect("records forwarded");
    assert_eq!(out.len(), 3);
    assert_eq!(out.as_ptr(), ptr, "no copy when the filter is off");
    let mut off = Flattener::new(&config(&[("filter.enabled", "yes")]), host()).unwrap();
    assert_eq!(
        off.handle(flats(vec![pe(3, 1), pe(3, 1)])).unwrap().map(|v| v.len()),
        Some(2)
    );
    take_logs();
}

#[test]
fn rate_limiter_drops_semantic_repeats_but_not_k8s_events() {
    let mut f = Flattener::new(&config(&[("filter.enabled", "on")]), host()).unwrap();
    let recs = flats(vec![
        pe(3, 1),
        pe(3, 2),          // same activity, other time: dropped
        pe(4, 3),          // other exe: kept
        ff(3, 1, 4),       // file flow on /etc/passwd: kept
        ff(3, 1, 5),       // repeat: dropped
        ff(3, 2, 6),       // other path: kept
        nf(3, 40000, 80),  // kept
        nf(3, 40001, 80),  // only the source port differs: dropped
        nf(3, 40000, 443), // other destination port: kept
        ke("same"),
        ke("same"), // KE bypasses the filter
    ]);
    let out = f.handle(recs).unwrap().unwrap();
    let kinds: Vec<_> = out
        .iter()
        .map(|r| (r.record_type().short_name(), r.event.ts()))
        .collect();
    assert_eq!(out.len(), 8, "{kinds:?}");
    assert_eq!(f.rate_limited(), 3);
    let counters = f.counters();
    assert!(counters
        .iter()
        .any(|c| c.name.as_str() == "rate_limited" && c.value == 3));
}

#[test]
fn rate_limiter_entries_expire_from_their_first_sighting() {
    let mut f = Flattener::with_filter(Some(Duration::from_secs(10)));
    let t0 = Instant::now();
    let batch = || flats(vec![pe(3, 1)]);
    assert_eq!(f.handle_at(batch(), t0).len(), 1);
    assert_eq!(f.handle_at(batch(), t0 + Duration::from_secs(9)).len(), 0);
    // A sighting at 9 s does not extend the window: at 10 s the entry expires.
    assert_eq!(f.handle_at(batch(), t0 + Duration::from_secs(10)).len(), 1);
    assert_eq!(f.handle_at(batch(), t0 + Duration::from_secs(15)).len(), 0);
    assert_eq!(f.rate_limited(), 2);
}

#[test]
fn bad_maxage_names_key_and_value() {
    let err = match Flattener::new(&config(&[("filter.enabled", "on"), ("filter.maxage", "1h")]), host()) {
        Err(e) => e,
        Ok(_) => panic!("'1h' must be rejected"),
    };
    assert!(
        err.message.contains("filter.maxage") && err.message.contains("1h"),
        "{}",
        err.message
    );
    let ok = Flattener::new(&config(&[("filter.enabled", "on"), ("filter.maxage", "60")]), host());
    assert!(ok.is_ok());
}

#[test]
fn semantic_hash_follows_upstream_field_order() {
    let recs = flats(vec![ff(3, 1, 1), nf(3, 1, 80)]);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"/usr/bin/cat-x");
    for v in [1000i64, 0, 1408, 0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(b"/etc/passwd");
    assert_eq!(semantic_hash(&recs[0]), xxhash_rust_reference(&bytes));

    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"/usr/bin/cat-x");
    for v in [1000i64, 0, 1856, 0, 16777343, 16777343, 80, 6] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(semantic_hash(&recs[1]), xxhash_rust_reference(&bytes));
}

/// Reference XXH64 (seed 0), written out from the algorithm's definition so the test does
/// not merely repeat the implementation's library call.
fn xxhash_rust_reference(input: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    let round = |acc: u64, lane: u64| acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1);
    let merge = |acc: u64, v: u64| (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4);
    let u64_at = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap());
    let u32_at = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap()) as u64;
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, u64_at(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        h = (h ^ round(0, u64_at(rest)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h = (h ^ u32_at(rest).wrapping_mul(P1))
            .rotate_left(23)
            .wrapping_mul(P2)
            .wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h = (h ^ (b as u64).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[test]
fn reference_xxh64_matches_known_vectors() {
    assert_eq!(xxhash_rust_reference(b""), 0xEF46_DB37_51D8_E999);
    assert_eq!(xxhash_rust_reference(b"a"), 0xD24E_C4F1_A98C_6E5B);
    assert_eq!(xxhash_rust_reference(b"abc"), 0x44BC_2CF5_AD77_0999);
}

// ---------------------------------------------------------------- through the plugin ABI

#[test]
fn descriptors_build_working_abi_objects() {
    use abi_stable::std_types::RResult;
    use sysflow_plugin_api::PluginFactory;

    let d = sysflow_reader::descriptors();
    let PluginFactory::Processor { inputs, output, new } = d[0].factory else {
        panic!("sysflowreader is a processor")
    };
    assert_eq!(inputs.as_slice(), &[sysflow_plugin_api::ChannelType::SysFlow]);
    assert_eq!(output.into_option(), Some(sysflow_plugin_api::ChannelType::Flat));
    let mut reader = match new(
        RStr::from_str(r#"{"handler":"flattener","filter.enabled":"on"}"#),
        host(),
    ) {
        RResult::ROk(r) => r,
        RResult::RErr(e) => panic!("reader constructor: {e}"),
    };
    let flat = match reader.process(Batch::sysflow(vec![
        header("n"),
        process(1, None, ObjectState::Created, "/a", None),
        pe(1, 1),
        pe(1, 2),
    ])) {
        RResult::ROk(ROption::RSome(Batch::Flat(b))) => b,
        other => panic!("expected a flat batch, got {other:?}"),
    };
    assert_eq!(flat.len(), 2);
    assert!(reader
        .counters()
        .iter()
        .any(|c| c.name.as_str() == "flat_records_out" && c.value == 2));

    let PluginFactory::Handler { new } = d[1].factory else {
        panic!("flattener is a handler")
    };
    match new(
        RStr::from_str(r#"{"filter.enabled":"on","filter.maxage":"-5"}"#),
        host(),
    ) {
        RResult::RErr(e) => assert!(e.message.contains("filter.maxage") && e.message.contains("-5"), "{e}"),
        RResult::ROk(_) => panic!("negative maxage must be rejected"),
    }
    let mut flattener = match new(
        RStr::from_str(r#"{"filter.enabled":"on","filter.maxage":"60"}"#),
        host(),
    ) {
        RResult::ROk(h) => h,
        RResult::RErr(e) => panic!("flattener constructor: {e}"),
    };
    let records = RArc::try_unwrap(flat).unwrap_or_else(|shared| (*shared).clone());
    match flattener.handle(records) {
        RResult::ROk(ROption::RSome(out)) => assert_eq!(out.len(), 1, "the repeat is rate-limited"),
        other => panic!("expected records, got {other:?}"),
    }
    assert!(flattener
        .counters()
        .iter()
        .any(|c| c.name.as_str() == "rate_limited" && c.value == 1));
}

// ---------------------------------------------------------------- bounded entity cache

const SEC: i64 = 1_000_000_000;

/// A reader built from pipeline keys, as the host builds it.
fn configured_reader(pairs: &[(&str, &str)]) -> SysFlowReader {
    <SysFlowReader as Processor>::new(&config(pairs), host()).expect("valid cache keys")
}

/// The main thread's exit event of `hpid`.
fn exit_event(hpid: i64, ts: i64) -> SysFlowRecord {
    SysFlowRecord::Event(Event::Process(ProcessEvent {
        proc_oid: oid(hpid),
        ts,
        tid: hpid,
        op_flags: sysflow_plugin_api::opflags::OP_EXIT,
        ..ProcessEvent::default()
    }))
}

/// A file entity with a FOID built from `n` (more ids than [`file`] offers).
fn numbered_file(n: u32, path: &str) -> SysFlowRecord {
    let mut oid = [0xf0; 20];
    oid[..4].copy_from_slice(&n.to_le_bytes());
    SysFlowRecord::File(File {
        oid,
        path: path.into(),
        restype: b'f' as i32,
        ..File::default()
    })
}

/// A file flow of `hpid` on the file of [`numbered_file`] `n`.
fn numbered_ff(hpid: i64, n: u32, ts: i64) -> SysFlowRecord {
    let mut file_oid = [0xf0; 20];
    file_oid[..4].copy_from_slice(&n.to_le_bytes());
    SysFlowRecord::Event(Event::FileFlow(FileFlow {
        proc_oid: oid(hpid),
        ts,
        file_oid,
        op_flags: 1408,
        ..FileFlow::default()
    }))
}

fn cached_entities(reader: &SysFlowReader) -> usize {
    let (p, c, pd, f) = reader.cache().sizes();
    p + c + pd + f
}

#[test]
fn short_lived_processes_keep_the_cache_bounded() {
    let mut reader = configured_reader(&[("cache.filemaxage", "10")]);
    let mut out = RVec::new();
    reader.read_records(
        vec![
            header("node"),
            process(1, None, ObjectState::Created, "/bin/bash", None),
            pe(1, SEC),
        ],
        &mut out,
    );
    let mut peak = 0;
    // 20,000 tools, one per second of stream time, each reading its own file then exiting.
    for i in 0..20_000u32 {
        let hpid = 100 + i as i64;
        let t = (2 + i as i64) * SEC;
        reader.read_records(
            vec![
                process(hpid, Some(1), ObjectState::Created, "/usr/bin/tool", None),
                numbered_file(i, &format!("/tmp/tool-{i}")),
                numbered_ff(hpid, i, t),
                exit_event(hpid, t + SEC / 2),
            ],
            &mut out,
        );
        peak = peak.max(cached_entities(&reader));
    }
    assert_eq!(out.len(), 1 + 2 * 20_000, "every event is still forwarded");
    assert!(out.iter().all(|r| r.process().is_some()), "every record resolved its process");
    assert_eq!(counter(&reader, "missing_process"), 0);
    assert_eq!(counter(&reader, "missing_file"), 0);
    assert_eq!(counter(&reader, "evicted_process"), 0);
    assert_eq!(counter(&reader, "evicted_file"), 0);
    // Default grace (60 s) + the 10 s file age at one tool per second: ~60 tools and ~70
    // files at a time, not 40,000 entities.
    assert!(peak <= 200, "cache peaked at {peak} entities");
    assert!(counter(&reader, "cache_peak_entities") <= 200);
    assert!(counter(&reader, "cache_evictions_exited") >= 19_900);
    assert!(reader.cache().process(&oid(1)).is_some(), "the live shell stays");
}

#[test]
fn exited_process_resolves_within_the_grace_window_and_its_children_keep_it() {
    let mut reader = configured_reader(&[("cache.exitgrace", "60")]);
    let out = run(
        &mut reader,
        vec![
            header("node"),
            process(1, None, ObjectState::Created, "/bin/sh", None),
            process(2, Some(1), ObjectState::Created, "/usr/bin/daemon", None),
            file(7, "/etc/passwd"),
            exit_event(1, SEC),
            // Flows exported after the exit, inside the grace window.
            ff(1, 7, 50 * SEC),
            // The parent is long past its grace window, but its live child still names it.
            pe(2, 1_000 * SEC),
        ],
    );
    assert_eq!(out.len(), 3);
    assert_eq!(exes(&out[1]), ["/bin/sh"]);
    assert_eq!(out[1].file.as_ref().map(|f| f.path.to_string()).into_option().as_deref(), Some("/etc/passwd"));
    assert_eq!(exes(&out[2]), ["/usr/bin/daemon", "/bin/sh"]);
    assert_eq!(counter(&reader, "evicted_process"), 0);
    assert_eq!(counter(&reader, "missing_process"), 0);

    // Once the child exits too, both go after the grace window.
    run(&mut reader, vec![exit_event(2, 1_001 * SEC), pe(3, 2_000 * SEC)]);
    assert_eq!(reader.cache().sizes().0, 0, "parent and child evicted");
}

#[test]
fn thread_exit_does_not_end_the_process() {
    let mut reader = configured_reader(&[("cache.exitgrace", "1")]);
    let thread_exit = SysFlowRecord::Event(Event::Process(ProcessEvent {
        proc_oid: oid(1),
        ts: SEC,
        tid: 4242,
        op_flags: sysflow_plugin_api::opflags::OP_EXIT,
        ..ProcessEvent::default()
    }));
    let out = run(
        &mut reader,
        vec![header("node"), process(1, None, ObjectState::Created, "/usr/bin/java", None), thread_exit, pe(1, 100 * SEC)],
    );
    assert_eq!(exes(&out[1]), ["/usr/bin/java"]);
    assert_eq!(counter(&reader, "evicted_process"), 0);
}

#[test]
fn reference_after_the_grace_window_counts_as_evicted_not_missing() {
    let mut reader = configured_reader(&[("cache.exitgrace", "5")]);
    take_logs();
    let out = run(
        &mut reader,
        vec![
            header("node"),
            process(1, None, ObjectState::Created, "/usr/bin/curl", None),
            process(2, None, ObjectState::Created, "/usr/bin/sleep", None),
            pe(1, SEC),
            exit_event(1, 2 * SEC),
            pe(2, 10 * SEC),
            // Process 1 exited 9 s ago (grace 5 s): it has been evicted.
            pe(1, 11 * SEC),
            pe(1, 12 * SEC),
            // Never seen at all.
            pe(99, 13 * SEC),
        ],
    );
    assert_eq!(out.len(), 6, "records of evicted processes are still forwarded");
    assert!(out[4].process().is_none());
    assert_eq!(counter(&reader, "evicted_process"), 2);
    assert_eq!(counter(&reader, "missing_process"), 1);
    let logs = take_logs();
    let evicted: Vec<_> = logs.iter().filter(|(_, m)| m.contains("evicted")).collect();
    assert_eq!(evicted.len(), 1, "logged once per id: {logs:?}");
    assert!(evicted[0].1.contains("{5001 1}") && evicted[0].1.contains("cache.exitgrace"), "{logs:?}");
}

#[test]
fn entity_cap_evicts_least_recently_used_and_counts_it() {
    let mut reader = configured_reader(&[("cache.maxentities", "8")]);
    let mut records = vec![header("node")];
    for hpid in 1..=8 {
        records.push(process(hpid, None, ObjectState::Created, "/bin/x", None));
    }
    // Process 1 is used again: 2 and 3 are now the least recently used.
    records.push(pe(1, SEC));
    records.push(process(9, None, ObjectState::Created, "/bin/y", None));
    records.push(process(10, None, ObjectState::Created, "/bin/y", None));
    records.extend([pe(1, 2 * SEC), pe(2, 3 * SEC), pe(10, 4 * SEC)]);
    let out = run(&mut reader, records);
    assert!(cached_entities(&reader) <= 8);
    assert_eq!(exes(&out[1]), ["/bin/x"], "the recently used process stays");
    assert!(out[2].process().is_none(), "the least recently used one went");
    assert_eq!(exes(&out[3]), ["/bin/y"], "the newest stays");
    assert_eq!(counter(&reader, "evicted_process"), 1);
    assert_eq!(counter(&reader, "missing_process"), 0);
    assert!(counter(&reader, "cache_evictions_over_cap") >= 2);
}

#[test]
fn a_file_goes_with_its_last_owner_and_owned_files_stay() {
    let mut reader = configured_reader(&[("cache.exitgrace", "5"), ("cache.filemaxage", "10")]);
    let out = run(
        &mut reader,
        vec![
            header("node"),
            process(1, None, ObjectState::Created, "/usr/bin/vim", None),
            process(2, None, ObjectState::Created, "/usr/sbin/nginx", None),
            file(7, "/tmp/edit.swp"),
            file(8, "/var/log/nginx/access.log"),
            ff(1, 7, SEC),
            ff(2, 8, SEC),
            exit_event(1, 2 * SEC),
            // Stream time moves on: vim goes, and its file with it; nginx's file stays.
            pe(2, 100 * SEC),
            // 10 s later (the file max age) the file vim owned is gone too; nginx's stays.
            pe(2, 150 * SEC),
            ff(2, 8, 10_000 * SEC),
            ff(2, 7, 10_001 * SEC),
        ],
    );
    assert_eq!(out.len(), 7);
    assert_eq!(reader.cache().sizes().3, 1, "only nginx's file is cached");
    assert!(out[5].file.is_some(), "a file owned by a live process stays, however idle");
    assert!(out[6].file.is_none(), "the exited owner's file went with it");
    assert_eq!(counter(&reader, "evicted_file"), 1);
    assert_eq!(counter(&reader, "missing_file"), 0);
}

#[test]
fn bad_cache_keys_name_the_key() {
    for (key, value) in [("cache.maxentities", "0"), ("cache.exitgrace", "soon"), ("cache.filemaxage", "-5")] {
        let err = <SysFlowReader as Processor>::new(&config(&[(key, value)]), host())
            .err()
            .unwrap_or_else(|| panic!("{key}={value} must be refused"));
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn files_sent_before_the_first_event_are_aged_from_it() {
    // Stream time starts at the segment's first event: entities re-sent after a header
    // are not aged by the gap since the previous segment (nor from time 0).
    let mut reader = configured_reader(&[("cache.filemaxage", "60")]);
    let t0 = 1_600_000_000 * SEC;
    let mut records = vec![
        header("node"),
        process(1, None, ObjectState::Reup, "/usr/sbin/sshd", None),
        file(7, "/etc/ssh/sshd_config"),
        file(8, "/var/log/auth.log"),
        ff(1, 7, t0),
        ff(1, 8, t0 + 30 * SEC),
        header("node"),
        process(1, None, ObjectState::Reup, "/usr/sbin/sshd", None),
        file(7, "/etc/ssh/sshd_config"),
        file(8, "/var/log/auth.log"),
    ];
    records.extend([ff(1, 7, t0 + 86_400 * SEC), ff(1, 8, t0 + 86_430 * SEC)]);
    let out = run(&mut reader, records);
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(|r| r.file.is_some()), "every file resolved");
    assert_eq!((counter(&reader, "evicted_file"), counter(&reader, "missing_file")), (0, 0));
}

#[test]
fn a_long_lived_process_keeps_hundreds_of_idle_files() {
    // Like postgres cycling through its WAL segments or a kubelet reading /proc: the
    // collector sends each file once, and the live process comes back to it hours later.
    let mut reader = configured_reader(&[("cache.filemaxage", "3600")]);
    let mut records = vec![header("node"), process(1, None, ObjectState::Created, "/usr/lib/postgresql/bin/postgres", None)];
    for n in 0..300u32 {
        records.push(numbered_file(n, &format!("/var/lib/postgresql/data/pg_wal/{n:08X}")));
        records.push(numbered_ff(1, n, (1 + n as i64) * SEC));
    }
    records.extend([pe(1, 20_000 * SEC), numbered_ff(1, 0, 20_001 * SEC), numbered_ff(1, 299, 20_002 * SEC)]);
    let out = run(&mut reader, records);
    assert_eq!(out.len(), 303);
    assert!(out.iter().all(|r| r.event.record_type() != sysflow_plugin_api::RecordType::FileFlow || r.file.is_some()));
    assert_eq!((counter(&reader, "evicted_file"), counter(&reader, "missing_file")), (0, 0));
}
