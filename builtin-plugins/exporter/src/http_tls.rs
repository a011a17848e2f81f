//! TLS settings of the HTTP-based exporters (`es.tls.*`, `http.tls.*`): the server
//! certificate is verified against a CA file or the system roots unless explicitly
//! disabled; a client certificate is presented when configured.

use std::time::Duration;

use sysflow_plugin_api::PluginConfig;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// The TLS configuration of keys `{prefix}.tls.cafile`, `.certfile`, `.keyfile`, `.insecure`
/// (system OpenSSL through native-tls; system roots unless a CA file is given).
pub fn tls_config(config: &PluginConfig, prefix: &str) -> Result<TlsConfig, String> {
    let key = |k: &str| -> Result<Option<String>, String> {
        let name = format!("{prefix}.tls.{k}");
        Ok(config.str(&name).map_err(|e| e.to_string())?.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
    };
    let read = |k: &str, path: &str| std::fs::read(path).map_err(|e| format!("key '{prefix}.tls.{k}': {path}: {e}"));
    let mut builder = TlsConfig::builder().provider(TlsProvider::NativeTls);
    builder = match key("cafile")? {
        Some(path) => {
            let pem = read("cafile", &path)?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<Certificate<'static>>, _>>()
                .map_err(|e| format!("key '{prefix}.tls.cafile': {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("key '{prefix}.tls.cafile': {path}: no PEM certificate in it"));
            }
            builder.root_certs(RootCerts::new_with_certs(&certs))
        }
        None => builder.root_certs(RootCerts::PlatformVerifier),
    };
    match (key("certfile")?, key("keyfile")?) {
        (Some(cert), Some(keyfile)) => {
            let chain = Certificate::from_pem(&read("certfile", &cert)?)
                .map_err(|e| format!("key '{prefix}.tls.certfile': {cert}: {e}"))?;
            let private = PrivateKey::from_pem(&read("keyfile", &keyfile)?)
                .map_err(|e| format!("key '{prefix}.tls.keyfile': {keyfile}: {e}"))?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&[chain], private)));
        }
        (None, None) => {}
        _ => return Err(format!("keys '{prefix}.tls.certfile' and '{prefix}.tls.keyfile' go together")),
    }
    match key("insecure")?.as_deref() {
        None | Some("false") => {}
        Some("true") => builder = builder.disable_verification(true),
        Some(other) => return Err(format!("key '{prefix}.tls.insecure': '{other}' is not true or false")),
    }
    Ok(builder.build())
}

/// The HTTP client of one sender of `es` or `http`: `tls` verification, bounded connect and
/// request times, and statuses as data (the sinks read 4xx/5xx bodies themselves).
pub fn http_agent(tls: &TlsConfig, connect_timeout: Duration, request_timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect_timeout))
        .timeout_global(Some(request_timeout))
        .http_status_as_error(false)
        .tls_config(tls.clone())
        .build()
        .into()
}
