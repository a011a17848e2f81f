//! Every example pipeline in `config/` passes `sfprocessor -test` (which builds every
//! processor: a syslog exporter connects, so its example is checked against a real rsyslog
//! with the host, port and CA overridden through upstream's environment variables).

use sysflow_e2e_tests::{
    output_text, run_sfprocessor_in,
    syslog_server::{make_certificates, Rsyslog},
    workspace_root,
};

#[test]
fn every_example_pipeline_passes_test() {
    let root = workspace_root();
    let mut examples: Vec<String> = std::fs::read_dir(root.join("config"))
        .expect("read config/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pipeline") && n.ends_with(".json"))
        .collect();
    examples.sort();
    for wanted in ["pipeline.es.json", "pipeline.http.json", "pipeline.syslog.json"] {
        assert!(examples.iter().any(|n| n == wanted), "config/{wanted} is missing");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certificates(dir.path());
    let rsyslog = Rsyslog::start("every_example_pipeline_passes_test", dir.path(), Some(&certs));
    for name in &examples {
        let config = format!("config/{name}");
        let text = std::fs::read_to_string(root.join(&config)).expect("read example");
        let mut envs: Vec<(&str, String)> = Vec::new();
        if text.contains("\"syslog\"") {
            let Some(server) = &rsyslog else { continue };
            envs.push(("EXPORTER_SYSLOG_HOST", "127.0.0.1".into()));
            envs.push(("EXPORTER_SYSLOG_PORT", server.tls_port.to_string()));
            envs.push(("EXPORTER_SYSLOG_TLS_CAFILE", certs.ca.to_string_lossy().into_owned()));
        }
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run_sfprocessor_in(&root, &["-test", "-config", &config], &envs);
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{config} fails -test:\n{stdout}{stderr}");
    }
}
