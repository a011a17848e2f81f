//! Starting rsyslog as a test receiver (`../shared/servers.md` §3): plain TCP, TLS
//! (openssl driver) and RELP (imrelp) inputs writing each message's MSG part, one per
//! line, to a file; and a throw-away CA with a server certificate for the TLS input.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::servers::{self, ServerProcess};

/// How long rsyslog may take to listen (the openssl driver is ready in well under 1 s).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Files of a CA and a server certificate for `localhost`/`127.0.0.1`.
pub struct TestCertificates {
    /// The CA certificate (PEM): what clients verify against.
    pub ca: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub server_cert: PathBuf,
    /// The server key (PEM).
    pub server_key: PathBuf,
}

/// Makes a CA and a server certificate in `dir` with the `openssl` command.
pub fn make_certificates(dir: &Path) -> TestCertificates {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write san.ext");
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=sfprocessor test CA", "-days", "2"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem", "-out", "server.csr", "-subj", "/CN=localhost"]);
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "server-cert.pem", "-days", "2", "-extfile", "san.ext"]);
    TestCertificates { ca: dir.join("ca.pem"), server_cert: dir.join("server-cert.pem"), server_key: dir.join("server-key.pem") }
}

/// An rsyslogd with a plain TCP input on `tcp_port` and, with certificates, a TLS input on
/// `tls_port`, appending each message's MSG to `out`.
pub struct Rsyslog {
    /// The running rsyslogd (killed when dropped).
    pub process: ServerProcess,
    config: PathBuf,
    dir: PathBuf,
    /// The plain TCP port.
    pub tcp_port: u16,
    /// The TLS port (0 without certificates).
    pub tls_port: u16,
    /// The RELP port (0 unless started with [`Rsyslog::start_relp`]).
    pub relp_port: u16,
    /// Where the messages go, one per line.
    pub out: PathBuf,
}

impl Rsyslog {
    /// Writes the configuration into `dir` and starts rsyslogd; `None` (after a skip notice)
    /// when rsyslogd (or its openssl driver, for TLS) is not installed.
    pub fn start(test: &str, dir: &Path, certs: Option<&TestCertificates>) -> Option<Rsyslog> {
        Self::start_with(test, dir, certs, false)
    }

    /// An rsyslogd with a plain TCP input and a RELP input (imrelp) on `relp_port`; `None`
    /// (after a skip notice) when rsyslogd or its RELP module is not installed.
    pub fn start_relp(test: &str, dir: &Path) -> Option<Rsyslog> {
        Self::start_with(test, dir, None, true)
    }

    fn start_with(test: &str, dir: &Path, certs: Option<&TestCertificates>, relp: bool) -> Option<Rsyslog> {
        if servers::system_bin("rsyslogd").is_none() {
            servers::skip(test, "rsyslogd (apt rsyslog)");
            return None;
        }
        if certs.is_some() && !Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so").exists()
            && !Path::new("/usr/lib/rsyslog/lmnsd_ossl.so").exists()
        {
            servers::skip(test, "rsyslog's openssl driver (apt rsyslog-openssl)");
            return None;
        }
        if relp
            && !Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so").exists()
            && !Path::new("/usr/lib/rsyslog/imrelp.so").exists()
        {
            servers::skip(test, "rsyslog's RELP input (apt rsyslog-relp)");
            return None;
        }
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).expect("create the rsyslog work directory");
        let out = dir.join("received.log");
        let (tcp_port, tls_port) = (servers::free_port(), if certs.is_some() { servers::free_port() } else { 0 });
        let relp_port = if relp { servers::free_port() } else { 0 };
        let mut conf = String::new();
        match certs {
            Some(c) => conf.push_str(&format!(
                "global(workDirectory=\"{}\" maxMessageSize=\"256k\" DefaultNetstreamDriverCAFile=\"{}\" \
                 DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\")\n",
                work.display(),
                c.ca.display(),
                c.server_cert.display(),
                c.server_key.display()
            )),
            None => conf.push_str(&format!("global(workDirectory=\"{}\" maxMessageSize=\"256k\")\n", work.display())),
        }
        conf.push_str("module(load=\"imtcp\")\n");
        conf.push_str(&format!("input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp_port}\")\n"));
        if certs.is_some() {
            conf.push_str(&format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tls_port}\" name=\"tls\" \
                 streamDriver.name=\"ossl\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")\n"
            ));
        }
        if relp {
            conf.push_str("module(load=\"imrelp\")\n");
            conf.push_str(&format!("input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{relp_port}\")\n"));
        }
        conf.push_str("template(name=\"msgonly\" type=\"string\" string=\"%msg%\\n\")\n");
        conf.push_str(&format!("*.* action(type=\"omfile\" file=\"{}\" template=\"msgonly\")\n", out.display()));
        let config = dir.join("rsyslog.conf");
        std::fs::write(&config, conf).expect("write rsyslog.conf");
        let ports = [tcp_port, tls_port, relp_port];
        let process = Self::spawn(&config, dir, &ports);
        Some(Rsyslog { process, config, dir: dir.to_path_buf(), tcp_port, tls_port, relp_port, out })
    }

    fn spawn(config: &Path, dir: &Path, ports: &[u16]) -> ServerProcess {
        let log = dir.join("rsyslogd.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open the rsyslogd log");
        let err = out.try_clone().expect("clone the log handle");
        let pidfile = dir.join("rsyslog-work/rsyslogd.pid");
        let _ = std::fs::remove_file(&pidfile);
        let child = Command::new(servers::system_bin("rsyslogd").expect("rsyslogd"))
            .arg("-n")
            .arg("-f")
            .arg(config)
            .arg("-i")
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn rsyslogd");
        let process = ServerProcess::new(child, &log);
        for port in ports.iter().copied().filter(|p| *p != 0) {
            assert!(servers::wait_for_port(port, READY_TIMEOUT), "rsyslogd not listening on {port}: {}", process.log_text());
        }
        process
    }

    /// Stops rsyslogd as an operator would (SIGTERM: it writes out what it has read) and
    /// waits for it to exit.
    pub fn stop(&mut self) {
        let pid = self.process.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().map(|s| s.success()).unwrap_or(false);
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        while sent && std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process.kill();
    }

    /// Starts rsyslogd again with the same configuration (same ports, same output file).
    pub fn restart(&mut self) {
        self.process = Self::spawn(&self.config, &self.dir, &[self.tcp_port, self.tls_port, self.relp_port]);
    }

    /// The messages received so far, one per line.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
    }
}
