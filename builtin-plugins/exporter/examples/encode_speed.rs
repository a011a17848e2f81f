//! Measures JSON encoding speed on synthetic records shaped like real container traces
//! (~2.5 KB per line: container, pod, five-level ancestry with long command lines).
//!
//! `cargo run --release -p sysflow-exporter --example encode_speed [records] [distinct-processes]`

use std::time::Instant;

use sysflow_exporter::JsonEncoder;
use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, ROption, RVec},
    Container, Event, File, FileFlow, FlatRecord, Header, Oid, Pod, Process,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let distinct: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);

    let header = RArc::new(Header {
        version: 4,
        exporter: "minikube".into(),
        ip: "192.168.59.100".into(),
        filename: "/mnt/data/1647544455".into(),
    });
    let container = RArc::new(Container {
        id: "4269f06be75a".into(),
        name: "k8s_mongodb_mongodb-67c5456f4-ddhnf_robot-shop_4233549f-7458-4880-831f-468570fd386b_0".into(),
        image: "sha256:621ddd7848a2327f471de8541d8b020d65a58a18a01429c0cc829f840917aba7:latest".into(),
        imageid: "621ddd7848a2327f471de8541d8b020d65a58a18a01429c0cc829f840917aba7".into(),
        ..Container::default()
    });
    let pod = RArc::new(Pod {
        id: "4233549f-7458-4880-831f-468570fd386b".into(),
        name: "mongodb-67c5456f4-ddhnf".into(),
        node_name: "minikube".into(),
        namespace: "robot-shop".into(),
        host_ip: vec![1681631424].into(),
        internal_ip: vec![268439980].into(),
        ..Pod::default()
    });
    let ancestries: Vec<RArc<RVec<RArc<Process>>>> = (0..distinct)
        .map(|d| {
            let chain: Vec<RArc<Process>> = (0..5)
                .map(|level| {
                    RArc::new(Process {
                        oid: Oid { create_ts: 1647543894672412244 + level, hpid: 57312 + d as i64 * 10 + level },
                        poid: ROption::RSome(Oid { create_ts: 1647543894672412244 + level + 1, hpid: 57312 + d as i64 * 10 + level + 1 }),
                        exe: "/usr/local/lib/erlang/erts-10.7.2.3/bin/beam.smp".into(),
                        exe_args: "-W w -A 64 -MBas ageffcbf -MHas ageffcbf -MBlmbcs 512 -MHlmbcs 512 -MMmcs 30 -P 1048576 -t 5000000 -stbt db -zdbbl 128000 -K true -B i -- -root /usr/local/lib/erlang -progname erl -home /var/lib/rabbitmq".into(),
                        user_name: "systemd-coredump".into(),
                        group_name: "input".into(),
                        ..Process::default()
                    })
                })
                .collect();
            RArc::new(RVec::from(chain))
        })
        .collect();
    let files: Vec<RArc<File>> = (0..1000)
        .map(|i| {
            RArc::new(File {
                oid: [i as u8; 20],
                restype: 'f' as i32,
                path: format!("/proc/{i}/task/{i}/stat").into(),
                ..File::default()
            })
        })
        .collect();
    let records: Vec<FlatRecord> = (0..10_000)
        .map(|i| {
            let ev = FileFlow {
                ts: 1647544455002529691 + i as i64,
                end_ts: 1647544455003116372 + i as i64,
                tid: 57587,
                op_flags: 1408,
                open_flags: 1,
                fd: 49,
                num_r_recv_ops: 1,
                num_r_recv_bytes: 324,
                ..FileFlow::default()
            };
            let mut r = FlatRecord::new(header.clone(), Event::FileFlow(ev));
            r.ancestry = ancestries[i % distinct].clone();
            r.container = ROption::RSome(container.clone());
            r.pod = ROption::RSome(pod.clone());
            r.file = ROption::RSome(files[i % files.len()].clone());
            r
        })
        .collect();

    let chunk: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256 << 10);
    let mut encoder = JsonEncoder::new();
    let mut out = Vec::with_capacity(8 << 20);
    let mut bytes = 0usize;
    let start = Instant::now();
    let cpu_start = cpu_ns();
    let mut done = 0;
    while done < n {
        for r in records.iter().take(n - done) {
            encoder.encode(r, &mut out);
            out.push(b'\n');
            done += 1;
            if out.len() > chunk {
                bytes += out.len();
                out.clear();
            }
        }
    }
    bytes += out.len();
    // The machine may be shared: report per CPU-second when the OS tells us CPU time.
    let secs = match (cpu_start, cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => start.elapsed().as_secs_f64(),
    };
    println!(
        "{done} records, {:.0} bytes/record, {:.2} M records per CPU-second, {:.2} GB/s, cache (hits, misses) {:?}",
        bytes as f64 / done as f64,
        done as f64 / secs / 1e6,
        bytes as f64 / secs / 1e9,
        encoder.cache_stats()
    );
}

/// CPU time of this thread in ns (Linux `schedstat`), if available.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
