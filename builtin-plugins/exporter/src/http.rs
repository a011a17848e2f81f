//! `export: http`: records POSTed to a webhook (http or https, `http.tls.*`) (Falcosidekick, a SOAR, a chat bridge)
//! through the [`delivery`](crate::delivery) layer: NDJSON batches (`http.mode: batch`,
//! default) or one JSON document per request (`http.mode: record`).
//!
//! 2xx delivers the request's records; 408, 429, 5xx and connection failures are retried
//! with backoff; any other status fails the request's records (counted, logged once per
//! status).

use std::time::Duration;

use base64::Engine;
use sysflow_plugin_api::PluginConfig;

use crate::{
    delivery::{Item, Outcome, SendError, Sink},
    http_tls::tls_config,
};

/// Most payload bytes per NDJSON request.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Connecting gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request (send and response) gives up after this long and is retried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error response a message quotes.
const QUOTED_BODY_CHARS: usize = 200;

/// The `http.*` settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Target URL.
    pub url: String,
    /// One record per request instead of NDJSON batches.
    pub per_record: bool,
    /// Extra headers, `Authorization` included when configured.
    headers: Vec<(String, String)>,
    /// `http.tls.*`, for https URLs.
    tls: ureq::tls::TlsConfig,
}

impl HttpSettings {
    /// Reads and checks `http.url`, `http.mode`, `http.headers`, `http.username`/`http.password`, `http.token`.
    pub fn from_config(config: &PluginConfig) -> Result<HttpSettings, String> {
        let key = |k: &str| -> Result<Option<String>, String> {
            Ok(config.str(k).map_err(|e| e.to_string())?.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
        };
        let url = key("http.url")?.ok_or("key 'http.url' is required for export http")?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!("key 'http.url': '{url}' is not an http:// or https:// URL"));
        }
        let per_record = match key("http.mode")?.as_deref() {
            None | Some("batch") => false,
            Some("record") => true,
            Some(other) => return Err(format!("key 'http.mode': unknown mode '{other}' (use batch or record)")),
        };
        let mut headers = Vec::new();
        match config.as_map().get("http.headers") {
            None => {}
            Some(serde_json::Value::Object(map)) => {
                for (name, value) in map {
                    let value = value
                        .as_str()
                        .ok_or_else(|| format!("key 'http.headers': header '{name}' must be a string, got {value}"))?;
                    headers.push((name.clone(), value.to_string()));
                }
            }
            Some(other) => return Err(format!("key 'http.headers' must be an object of header names to strings, got {other}")),
        }
        match (key("http.token")?, key("http.username")?, key("http.password")?) {
            (Some(token), None, None) => headers.push(("Authorization".into(), format!("Bearer {token}"))),
            (None, Some(user), password) => {
                let pair = format!("{user}:{}", password.unwrap_or_default());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                headers.push(("Authorization".into(), format!("Basic {encoded}")));
            }
            (None, None, None) => {}
            (Some(_), _, _) => return Err("key 'http.token' cannot be combined with 'http.username'/'http.password'".into()),
            (None, None, Some(_)) => return Err("key 'http.password' is set but 'http.username' is not".into()),
        }
        let tls = tls_config(config, "http")?;
        Ok(HttpSettings { url, per_record, headers, tls })
    }

    /// Names the destination in messages.
    pub fn describe(&self) -> String {
        format!("http {}", self.url)
    }

    /// Records per request: 1 in record mode.
    pub fn max_batch_items(&self) -> usize {
        if self.per_record {
            1
        } else {
            usize::MAX
        }
    }
}

/// One sender's client for the webhook.
pub struct HttpSink {
    settings: HttpSettings,
    agent: ureq::Agent,
    body: Vec<u8>,
}

impl HttpSink {
    /// A client for `settings`.
    pub fn new(settings: &HttpSettings) -> HttpSink {
        let agent = crate::http_tls::http_agent(&settings.tls, CONNECT_TIMEOUT, REQUEST_TIMEOUT);
        HttpSink { settings: settings.clone(), agent, body: Vec::new() }
    }
}

impl Sink for HttpSink {
    fn send(&mut self, items: &[Item]) -> Result<Vec<Outcome>, SendError> {
        self.body.clear();
        for item in items {
            self.body.extend_from_slice(&item.body);
            if !self.settings.per_record {
                self.body.push(b'\n');
            }
        }
        let content_type = if self.settings.per_record { "application/json" } else { "application/x-ndjson" };
        let url = &self.settings.url;
        let mut request = self.agent.post(url).header("Content-Type", content_type);
        for (name, value) in &self.settings.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .send(&self.body[..])
            .map_err(|e| SendError { message: format!("POST {url}: {e}"), retryable: true })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(vec![Outcome::Delivered; items.len()]);
        }
        let text = response.into_body().with_config().limit(64 << 10).read_to_string().unwrap_or_default();
        let quoted: String = text.chars().take(QUOTED_BODY_CHARS).collect();
        let retryable = matches!(status, 408 | 429 | 500..=599);
        // "HTTP 400 from …: body": one log line per status when not retryable.
        Err(SendError { message: format!("HTTP {status} from POST {url}: {quoted}"), retryable })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: serde_json::Value) -> PluginConfig {
        match value {
            serde_json::Value::Object(map) => PluginConfig::from_map(map),
            _ => PluginConfig::from_map(serde_json::Map::new()),
        }
    }

    #[test]
    fn settings_from_keys() {
        let s = HttpSettings::from_config(&config(serde_json::json!({
            "http.url": "http://hook:2801/", "http.mode": "record", "http.token": "t0k",
            "http.headers": {"X-Source": "sysflow"}})))
        .expect("settings");
        assert!(s.per_record);
        assert_eq!(s.max_batch_items(), 1);
        assert_eq!(s.headers, vec![("X-Source".into(), "sysflow".into()), ("Authorization".into(), "Bearer t0k".into())]);
        let err = |v: serde_json::Value| HttpSettings::from_config(&config(v)).expect_err("must fail");
        assert!(err(serde_json::json!({})).contains("'http.url' is required"));
        assert!(err(serde_json::json!({"http.url": "ftp://x"})).contains("not an http:// or https:// URL"));
        assert!(err(serde_json::json!({"http.url": "https://x", "http.tls.insecure": "yes"})).contains("'http.tls.insecure'"));
        assert!(err(serde_json::json!({"http.url": "http://x", "http.mode": "bulk"})).contains("'http.mode'"));
        assert!(err(serde_json::json!({"http.url": "http://x", "http.headers": {"A": 1}})).contains("header 'A'"));
        assert!(err(serde_json::json!({"http.url": "http://x", "http.token": "a", "http.username": "u"})).contains("cannot be combined"));
    }
}
