//! Starting the Elasticsearch/OpenSearch-API test servers (osmem-server, noida-db; see
//! `../shared/servers.md` §2) and asking them what they hold.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::servers::{self, ServerProcess};

/// How long a server may take to accept connections (they are ready in well under 1 s).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running search server on `http://127.0.0.1:{port}`.
pub struct SearchServer {
    /// The server process (killed when dropped).
    pub process: ServerProcess,
    /// Its loopback port.
    pub port: u16,
}

impl SearchServer {
    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes `index` searchable, then returns its document count: 0 while the index does
    /// not exist; panics on any other error answer.
    pub fn count(&self, index: &str) -> u64 {
        let base = self.url();
        let (status, body) = request("POST", &format!("{base}/{index}/_refresh"), None);
        if status == 404 {
            return 0;
        }
        assert!(status < 300, "refresh {index}: HTTP {status}: {body}");
        let (status, body) = request("GET", &format!("{base}/{index}/_count"), None);
        assert!(status < 300, "count {index}: HTTP {status}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("_count answer {body}: {e}"));
        v["count"].as_u64().unwrap_or_else(|| panic!("_count answer without a count: {body}"))
    }

    /// Stops the server as an operator would (SIGTERM, so it persists what it acknowledged;
    /// noida-db loses recent writes on SIGKILL) and waits for it to exit.
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

    /// Creates `index` with `mappings` (the `mappings` object of a create-index request).
    pub fn create_index(&self, index: &str, mappings: &serde_json::Value) {
        let body = serde_json::json!({ "mappings": mappings }).to_string();
        let (status, text) = request("PUT", &format!("{}/{index}", self.url()), Some(&body));
        assert!(status < 300, "create index {index}: HTTP {status}: {text}");
    }
}

/// One HTTP request with a JSON body: status and body text.
pub fn request(method: &str, url: &str, json_body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let result = match (method, json_body) {
        ("GET", _) => agent.get(url).call(),
        ("PUT", body) => agent.put(url).header("Content-Type", "application/json").send(body.unwrap_or("")),
        (_, body) => agent.post(url).header("Content-Type", "application/json").send(body.unwrap_or("")),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_else(|e| panic!("{method} {url}: reading: {e}"));
    (status, text)
}

/// osmem-server (OpenSearch 3.8 API, memory only) on a free port; `None` (after a skip
/// notice) when it is not installed.
pub fn start_osmem(test: &str, dir: &Path) -> Option<SearchServer> {
    let Some(bin) = servers::osmem_bin() else {
        servers::skip(test, "osmem-server (PyPI osmem-server in the test venv)");
        return None;
    };
    let port = servers::free_port();
    let log = dir.join(format!("osmem-{port}.log"));
    let out = std::fs::File::create(&log).expect("create the osmem log");
    let err = out.try_clone().expect("clone the log handle");
    let child = Command::new(bin)
        .args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch", "-no-ja"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn osmem-server");
    let process = ServerProcess::new(child, &log);
    assert!(servers::wait_for_port(port, READY_TIMEOUT), "osmem-server not ready: {}", process.log_text());
    Some(SearchServer { process, port })
}

/// noida-db's Elasticsearch (8.15 API) on `port` with its data in `data_dir`, so a server
/// killed and started again on the same directory still holds what it acknowledged.
/// `None` (after a skip notice) when it is not installed.
pub fn start_noida(test: &str, data_dir: &Path, port: u16) -> Option<SearchServer> {
    let Some(bin) = servers::noida_bin() else {
        servers::skip(test, "noida-db (PyPI noida-db in the test venv)");
        return None;
    };
    std::fs::create_dir_all(data_dir).expect("create the noida data directory");
    let log = data_dir.with_extension(format!("{port}.log"));
    let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open the noida log");
    let err = out.try_clone().expect("clone the log handle");
    let child = Command::new(bin)
        .arg("start")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--only", "elasticsearch", "--elasticsearch-port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn noida-db");
    let process = ServerProcess::new(child, &log);
    assert!(servers::wait_for_port(port, READY_TIMEOUT), "noida-db not ready: {}", process.log_text());
    Some(SearchServer { process, port })
}

/// nginx on `port` terminating TLS (with `certs`) and checking basic authentication
/// (`user`, `password`) in front of a search server on `backend_port` (servers.md §2:
/// neither test server has authentication or TLS itself). Called again with the same
/// arguments after [`SearchServer::stop`], it restarts the proxy: an outage the client
/// sees while the search server keeps its documents. `None` (after a skip notice) without nginx.
pub fn start_tls_auth_proxy(
    test: &str,
    dir: &Path,
    port: u16,
    backend_port: u16,
    certs: &crate::syslog_server::TestCertificates,
    user: &str,
    password: &str,
) -> Option<SearchServer> {
    let Some(nginx) = servers::system_bin("nginx") else {
        servers::skip(test, "nginx (apt nginx)");
        return None;
    };
    let root = dir.join("nginx");
    std::fs::create_dir_all(&root).expect("create the nginx directory");
    // nginx workers run as an unprivileged user: they read the password file at each request.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir, root.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let hash = Command::new("openssl").args(["passwd", "-apr1", password]).output().expect("openssl passwd");
    assert!(hash.status.success(), "openssl passwd: {}", String::from_utf8_lossy(&hash.stderr));
    let htpasswd = root.join("htpasswd");
    std::fs::write(&htpasswd, format!("{user}:{}", String::from_utf8_lossy(&hash.stdout))).expect("write htpasswd");
    std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644)).expect("chmod htpasswd");
    let r = root.display();
    let conf = format!(
        "worker_processes 1; pid {r}/nginx.pid; error_log {r}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {r}/access.log; client_body_temp_path {r}/body; proxy_temp_path {r}/proxy;\n  \
         fastcgi_temp_path {r}/fcgi; uwsgi_temp_path {r}/uwsgi; scgi_temp_path {r}/scgi; client_max_body_size 100m;\n  \
         server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {};\n    \
         location / {{ auth_basic \"es\"; auth_basic_user_file {}; proxy_pass http://127.0.0.1:{backend_port}; \
         proxy_set_header Authorization \"\"; }} }}\n}}\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        htpasswd.display()
    );
    let conf_path = root.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let log = root.join("nginx.out");
    let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open the nginx log");
    let err = out.try_clone().expect("clone the log handle");
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn nginx");
    let process = ServerProcess::new(child, &log);
    assert!(servers::wait_for_port(port, READY_TIMEOUT), "nginx not ready: {}", process.log_text());
    Some(SearchServer { process, port })
}
