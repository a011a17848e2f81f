//! Properties of the generated stream: header first, referential integrity, monotonic
//! time, exact counts, determinism, and the attack scenario's observable behaviour.

use std::collections::{HashMap, HashSet};

use sysflow_plugin_api::flat::ipv4_string;
use sysflow_plugin_api::opflags::*;
use sysflow_plugin_api::records::*;
use sysflow_tracegen::{foid, write_trace, GenConfig, Generator, Scenario, WriterOptions};

fn config(records: u64, seed: u64, scenario: Scenario) -> GenConfig {
    GenConfig { records, seed, scenario, ..GenConfig::default() }
}

fn records(records: u64, seed: u64, scenario: Scenario) -> Vec<SysFlowRecord> {
    Generator::new(config(records, seed, scenario)).collect()
}

/// Everything the consumer needs to resolve a record exists before the record, within
/// its segment (a header starts a segment and resets the consumer's cache).
fn check_integrity(recs: &[SysFlowRecord]) {
    let starts: Vec<usize> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, SysFlowRecord::Header(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.first(), Some(&0), "header first");
    let mut last_ts = i64::MIN;
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(recs.len());
        last_ts = check_segment(&recs[start + 1..end], start + 1, last_ts);
    }
}

fn check_segment(recs: &[SysFlowRecord], offset: usize, mut last_ts: i64) -> i64 {
    let mut pods = HashSet::new();
    let mut containers = HashSet::new();
    let mut procs: HashSet<Oid> = HashSet::new();
    let mut files: HashSet<Foid> = HashSet::new();
    let need_ctr = |c: &ROptionStr, containers: &HashSet<String>, i: usize| {
        if let Some(id) = c {
            assert!(containers.contains(id), "record {i}: container {id} not yet written");
        }
    };
    for (i, r) in recs.iter().enumerate() {
        let i = i + offset;
        let ts = match r {
            SysFlowRecord::Header(_) => unreachable!("segments exclude headers"),
            SysFlowRecord::Pod(p) => {
                pods.insert(p.id.to_string());
                p.ts
            }
            SysFlowRecord::Container(c) => {
                if let Some(pod) = c.pod_id.as_ref().into_option() {
                    assert!(pods.contains(pod.as_str()), "record {i}: pod {pod} not yet written");
                }
                containers.insert(c.id.to_string());
                continue;
            }
            SysFlowRecord::Process(p) => {
                if let Some(parent) = p.poid.into_option() {
                    assert!(procs.contains(&parent), "record {i}: parent {parent:?} of {} not yet written", p.exe);
                }
                need_ctr(&p.container_id.as_ref().map(|s| s.to_string()).into_option(), &containers, i);
                procs.insert(p.oid);
                p.ts
            }
            SysFlowRecord::File(f) => {
                let cid = f.container_id.as_ref().map(|s| s.to_string()).into_option();
                need_ctr(&cid, &containers, i);
                assert_eq!(f.oid, foid(cid.as_deref(), &f.path), "record {i}: FOID is SHA-1(container id + path)");
                files.insert(f.oid);
                f.ts
            }
            SysFlowRecord::Event(e) => {
                if let Some(oid) = e.proc_oid() {
                    assert!(procs.contains(&oid), "record {i}: process {oid:?} not yet written");
                }
                match e {
                    Event::FileFlow(f) => {
                        assert!(files.contains(&f.file_oid), "record {i}: file not yet written");
                        assert!(f.end_ts >= f.ts);
                    }
                    Event::File(f) => {
                        assert!(files.contains(&f.file_oid), "record {i}: file not yet written");
                        if let Some(n) = f.new_file_oid.into_option() {
                            assert!(files.contains(&n), "record {i}: new file not yet written");
                        }
                        assert_eq!(f.op_flags.count_ones(), 1, "events carry one op bit");
                    }
                    Event::Process(p) => assert_eq!(p.op_flags.count_ones(), 1),
                    Event::NetworkFlow(n) => assert!(n.end_ts >= n.ts),
                    _ => {}
                }
                e.ts()
            }
        };
        assert!(ts > last_ts, "record {i}: time goes backwards ({ts} after {last_ts})");
        last_ts = ts;
    }
    last_ts
}
type ROptionStr = Option<String>;

#[test]
fn header_first_and_exact_counts() {
    for n in [0u64, 1, 2, 7, 1_234, 40_001] {
        let recs = records(n, 9, Scenario::Mixed);
        assert_eq!(recs.len() as u64, n);
        if let Some(first) = recs.first() {
            match first {
                SysFlowRecord::Header(h) => {
                    assert_eq!(h.version, 5);
                    assert_eq!(h.exporter, "k8s-worker-1");
                    assert_eq!(h.ip, "10.0.1.17");
                    assert!(!h.filename.is_empty());
                }
                other => panic!("first record is {other:?}"),
            }
        }
        assert!(recs.iter().skip(1).all(|r| r.record_type() != RecordType::Header));
    }
}

#[test]
fn entities_precede_their_use_in_every_scenario() {
    for scenario in [Scenario::Mixed, Scenario::Attack, Scenario::Benign] {
        for seed in [1, 2, 77] {
            check_integrity(&records(60_000, seed, scenario));
        }
    }
}

#[test]
fn rotation_starts_self_contained_segments() {
    for scenario in [Scenario::Mixed, Scenario::Attack, Scenario::Benign] {
        let cfg = GenConfig { rotate_every: 4_000, ..config(40_000, 12, scenario) };
        let recs: Vec<SysFlowRecord> = Generator::new(cfg).collect();
        check_integrity(&recs);
        let headers: Vec<&Header> = recs
            .iter()
            .filter_map(|r| match r {
                SysFlowRecord::Header(h) => Some(h),
                _ => None,
            })
            .collect();
        assert!(headers.len() >= 9, "{scenario:?}: {} segments", headers.len());
        assert!(headers.windows(2).all(|w| w[0].filename < w[1].filename), "segment file names advance");
        let reups = recs
            .iter()
            .filter(|r| match r {
                SysFlowRecord::Process(p) => p.state == ObjectState::Reup,
                SysFlowRecord::File(f) => f.state == ObjectState::Reup,
                _ => false,
            })
            .count();
        assert!(reups > 50, "{scenario:?}: only {reups} REUP re-sends");
    }
    // without rotation nothing is re-sent
    let plain = records(40_000, 12, Scenario::Mixed);
    assert!(!plain.iter().any(|r| matches!(r, SysFlowRecord::Process(p) if p.state == ObjectState::Reup)));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, seed: u64| {
        let p = dir.path().join(name);
        write_trace(&config(20_000, seed, Scenario::Mixed), &p, WriterOptions::default()).expect("write");
        std::fs::read(p).expect("read back")
    };
    let a = write("a.sf", 42);
    let b = write("b.sf", 42);
    let c = write("c.sf", 43);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

struct Index {
    procs: HashMap<Oid, Process>,
    files: HashMap<Foid, String>,
}

fn index(recs: &[SysFlowRecord]) -> Index {
    let mut ix = Index { procs: HashMap::new(), files: HashMap::new() };
    for r in recs {
        match r {
            SysFlowRecord::Process(p) => {
                ix.procs.insert(p.oid, p.clone());
            }
            SysFlowRecord::File(f) => {
                ix.files.insert(f.oid, f.path.to_string());
            }
            _ => {}
        }
    }
    ix
}

/// Observable attack behaviour a policy can alert on (counts per indicator).
fn attack_indicators(recs: &[SysFlowRecord]) -> [usize; 6] {
    let ix = index(recs);
    let mut found = [0usize; 6];
    for r in recs {
        let SysFlowRecord::Event(e) = r else { continue };
        let Some(oid) = e.proc_oid() else { continue };
        let proc_ = &ix.procs[&oid];
        match e {
            Event::Process(pe) if pe.op_flags == OP_EXEC => {
                let parent = proc_.poid.into_option().and_then(|p| ix.procs.get(&p));
                if proc_.exe == "/bin/sh"
                    && proc_.container_id.is_some()
                    && parent.is_some_and(|p| p.exe == "/usr/sbin/nginx")
                {
                    found[0] += 1; // shell spawned by the web server in a container
                }
            }
            Event::FileFlow(ff) => {
                let path = ix.files[&ff.file_oid].as_str();
                if path == "/etc/shadow" && ff.op_flags & OP_READ_RECV != 0 {
                    found[1] += 1;
                }
                if path.starts_with("/bin/") && ff.op_flags & OP_WRITE_SEND != 0 && ff.open_flags & 4 != 0 {
                    found[2] += 1; // created a binary in /bin
                }
            }
            Event::NetworkFlow(nf) => {
                let dip = ipv4_string(nf.dip as i64);
                if dip == "198.51.100.23" && nf.dport == 4444 && nf.op_flags & OP_CONNECT != 0 {
                    found[3] += 1;
                }
                if dip == "45.9.148.99" && nf.dport == 3333 {
                    found[4] += 1;
                }
                if dip == "203.0.113.66" && proc_.exe == "/usr/bin/curl" {
                    found[5] += 1;
                }
            }
            _ => {}
        }
    }
    found
}

#[test]
fn attack_is_observable_and_benign_is_clean() {
    // exactly the content of config/demo.sf
    let mixed = attack_indicators(&records(3_000, 7, Scenario::Mixed));
    assert!(mixed.iter().all(|&n| n > 0), "mixed misses an indicator: {mixed:?}");
    let attack = attack_indicators(&records(5_000, 7, Scenario::Attack));
    assert!(attack.iter().all(|&n| n > 3), "attack repeats every indicator: {attack:?}");
    assert!(attack[0] > mixed[0]);
    let benign = attack_indicators(&records(100_000, 7, Scenario::Benign));
    assert_eq!(benign, [0; 6], "benign has attack indicators");
}

#[test]
fn exec_resends_process_as_modified_and_clone_returns_child_pid() {
    let recs = records(30_000, 5, Scenario::Mixed);
    let mut modified_before_exec = 0;
    let mut clone_parent_rets = HashSet::new();
    let mut child_pids = HashSet::new();
    let mut last_proc: Option<&Process> = None;
    for r in &recs {
        match r {
            SysFlowRecord::Process(p) => last_proc = Some(p),
            SysFlowRecord::Event(Event::Process(pe)) => {
                if pe.op_flags == OP_EXEC {
                    if let Some(p) = last_proc {
                        if p.oid == pe.proc_oid && p.state == ObjectState::Modified {
                            modified_before_exec += 1;
                        }
                    }
                }
                if pe.op_flags == OP_CLONE {
                    if pe.ret > 0 {
                        clone_parent_rets.insert(pe.ret as i64);
                    } else {
                        child_pids.insert(pe.proc_oid.hpid);
                    }
                }
            }
            _ => {}
        }
    }
    assert!(modified_before_exec > 100, "only {modified_before_exec} MODIFIED re-sends before EXEC");
    assert!(!child_pids.is_empty());
    assert!(child_pids.is_subset(&clone_parent_rets), "child CLONE pids match the parent's return values");
}

#[test]
fn ips_are_little_endian_and_pods_carry_services() {
    let recs = records(5_000, 3, Scenario::Mixed);
    let pod = recs
        .iter()
        .find_map(|r| match r {
            SysFlowRecord::Pod(p) if p.name.starts_with("frontend-") => Some(p),
            _ => None,
        })
        .expect("frontend pod");
    assert_eq!(ipv4_string(pod.host_ip[0]), "10.0.1.17");
    assert_eq!(ipv4_string(pod.internal_ip[0]), "10.244.1.10");
    assert_eq!(pod.services[0].port_list[0].port, 80);
    assert!(ipv4_string(pod.services[0].cluster_ip[0]).starts_with("10.96."));
    let ke = recs
        .iter()
        .find_map(|r| match r {
            SysFlowRecord::Event(Event::K8s(k)) => Some(k),
            _ => None,
        })
        .expect("a k8s event");
    let msg: serde_json::Value = serde_json::from_str(&ke.message).expect("message is JSON");
    assert_eq!(msg["kind"], "Pod");
    assert_eq!(msg["items"][0]["kind"], "Pod");
}

/// Reads an Avro long at `*pos`.
fn read_long(b: &[u8], pos: &mut usize) -> i64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*pos];
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The concatenated (inflated) datums of an OCF file and its per-block record counts.
/// Compared instead of file bytes: compressed bytes depend on the deflate backend
/// that feature unification picks for the build.
fn ocf_payload(b: &[u8]) -> (Vec<u8>, Vec<i64>) {
    use std::io::Read;
    assert_eq!(&b[..4], b"Obj\x01");
    let mut pos = 4;
    loop {
        let n = read_long(b, &mut pos);
        if n == 0 {
            break;
        }
        for _ in 0..n.abs() * 2 {
            let len = read_long(b, &mut pos) as usize;
            pos += len;
        }
    }
    let sync = &b[pos..pos + 16];
    pos += 16;
    let (mut payload, mut counts) = (Vec::new(), Vec::new());
    while pos < b.len() {
        counts.push(read_long(b, &mut pos));
        let len = read_long(b, &mut pos) as usize;
        flate2::read::DeflateDecoder::new(&b[pos..pos + len])
            .read_to_end(&mut payload)
            .expect("block inflates");
        pos += len;
        assert_eq!(&b[pos..pos + 16], sync, "sync marker after block");
        pos += 16;
    }
    (payload, counts)
}

#[test]
fn demo_trace_is_what_the_documented_command_writes() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.sf");
    let committed = std::fs::read(demo).expect("config/demo.sf is committed");
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("demo.sf");
    write_trace(&config(3_000, 7, Scenario::Mixed), &fresh, WriterOptions::default()).expect("write");
    let fresh = std::fs::read(fresh).expect("read back");
    let (committed_payload, committed_blocks) = ocf_payload(&committed);
    let (fresh_payload, fresh_blocks) = ocf_payload(&fresh);
    assert!(
        committed_payload == fresh_payload && committed_blocks == fresh_blocks,
        "config/demo.sf is stale: regenerate it with the command in the sysflow-tracegen crate docs"
    );
    assert_eq!(committed_blocks.iter().sum::<i64>(), 3_000);
    assert!(committed_blocks.len() >= 2, "blocks are ~80 KB uncompressed");
    assert!(committed.len() < 300_000);
}
