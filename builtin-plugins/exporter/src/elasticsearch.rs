//! `export: es`: records indexed into Elasticsearch/OpenSearch with the bulk API
//! (export-formats.md §5.2), through the [`delivery`](crate::delivery) layer.
//!
//! Each bulk request is NDJSON of `create` actions with upstream's document ids, so a
//! request retried after an outage creates no duplicates (the copies answer 409, counted
//! as delivered). Per-item results are read: 429 and 5xx items are retried with backoff,
//! other rejections (mapping conflicts, malformed documents) are counted as failed and
//! logged once per cause with the first document's id.

use std::{io::Write, time::Duration};

use base64::Engine;
use sysflow_plugin_api::PluginConfig;

use crate::{
    delivery::{Item, Outcome, SendError, Sink},
    go_duration::parse_go_duration,
    http_tls::tls_config,
    vault::Vault,
};

/// Bulk request size in bytes unless `es.bulk.flushBuffer` says otherwise (upstream's 5e6).
pub const DEFAULT_FLUSH_BYTES: usize = 5_000_000;
/// `es.bulk.flushTimeout` unless set (upstream's 30 s).
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to a node gives up after this long (upstream's 1 s dial timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A whole bulk request (send and response) gives up after this long and is retried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest bulk response read (about 200 bytes per item of a 5 MB request is far less).
const MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// How much of an error response body a message quotes.
const QUOTED_BODY_CHARS: usize = 300;

/// The `es.*` settings.
#[derive(Debug, Clone)]
pub struct EsSettings {
    /// Node base URLs (`http://host:9200`), tried in turn when one fails.
    pub addresses: Vec<String>,
    /// Target index.
    pub index: String,
    /// The `Authorization` header value, if any.
    authorization: Option<String>,
    /// Sender threads (`es.bulk.numWorkers`; 0 = number of CPUs).
    pub workers: usize,
    /// Most payload bytes per bulk request.
    pub flush_bytes: usize,
    /// `es.bulk.flushTimeout` (validated; bulks are sent as soon as a sender is free).
    pub flush_timeout: Duration,
    /// Compress request bodies (`es.gzip: "true"`).
    pub gzip: bool,
    /// `es.tls.*`, for https addresses.
    tls: ureq::tls::TlsConfig,
}

impl EsSettings {
    /// Reads and checks the `es.*` and `vault.*` keys.
    pub fn from_config(config: &PluginConfig) -> Result<EsSettings, String> {
        let key = |k: &str| -> Result<Option<String>, String> {
            Ok(config.str(k).map_err(|e| e.to_string())?.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string))
        };
        let addresses: Vec<String> = key("es.addresses")?
            .ok_or("key 'es.addresses' is required for export es (comma-separated node URLs, e.g. http://localhost:9200)")?
            .split(',')
            .map(|a| a.trim().trim_end_matches('/').to_string())
            .filter(|a| !a.is_empty())
            .collect();
        for a in &addresses {
            if !a.starts_with("http://") && !a.starts_with("https://") {
                return Err(format!("key 'es.addresses': '{a}' is not an http:// or https:// URL"));
            }
        }
        if addresses.is_empty() {
            return Err("key 'es.addresses': no address given".into());
        }
        let index = key("es.index")?.ok_or("key 'es.index' is required for export es")?;
        let vault = Vault::from_config(config)?;
        let mut username = key("es.username")?;
        let mut password = key("es.password")?;
        if let Some(v) = &vault {
            if username.is_none() {
                username = Some(v.read("es.username")?);
            }
            if password.is_none() {
                password = Some(v.read("es.password")?);
            }
        }
        let authorization = match (key("es.apikey")?, username, password) {
            (Some(apikey), _, _) => Some(format!("ApiKey {apikey}")),
            (None, Some(user), password) => {
                let pair = format!("{user}:{}", password.unwrap_or_default());
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            (None, None, Some(_)) => return Err("key 'es.password' is set but 'es.username' is not".into()),
            (None, None, None) => None,
        };
        let workers = match config.parse::<usize>("es.bulk.numWorkers").map_err(|e| e.to_string())?.unwrap_or(0) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let flush_bytes = match config.parse::<usize>("es.bulk.flushBuffer").map_err(|e| e.to_string())? {
            Some(0) => return Err("key 'es.bulk.flushBuffer': must be at least 1 byte".into()),
            Some(n) => n,
            None => DEFAULT_FLUSH_BYTES,
        };
        let flush_timeout = match key("es.bulk.flushTimeout")? {
            Some(t) => parse_go_duration(&t).map_err(|e| format!("key 'es.bulk.flushTimeout': {e}"))?,
            None => DEFAULT_FLUSH_TIMEOUT,
        };
        let gzip = match key("es.gzip")?.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("key 'es.gzip': '{other}' is not true or false")),
        };
        let tls = tls_config(config, "es")?;
        Ok(EsSettings { addresses, index, authorization, workers, flush_bytes, flush_timeout, gzip, tls })
    }

    /// Names the destination in messages.
    pub fn describe(&self) -> String {
        format!("es {}/{}", self.addresses.join(","), self.index)
    }
}

/// One sender's connection to the cluster.
pub struct EsSink {
    settings: EsSettings,
    agent: ureq::Agent,
    /// The address tried next; moves on after a failed request.
    next_address: usize,
    action_prefix: Vec<u8>,
    body: Vec<u8>,
}

impl EsSink {
    /// A sink for `settings`; `worker` spreads workers over the addresses.
    pub fn new(settings: &EsSettings, worker: usize) -> EsSink {
        let agent = crate::http_tls::http_agent(&settings.tls, CONNECT_TIMEOUT, REQUEST_TIMEOUT);
        let index = serde_json::Value::String(settings.index.clone()).to_string();
        EsSink {
            action_prefix: format!("{{\"create\":{{\"_index\":{index},\"_id\":").into_bytes(),
            settings: settings.clone(),
            agent,
            next_address: worker % settings.addresses.len().max(1),
            body: Vec::new(),
        }
    }

    /// Writes the NDJSON bulk body of `items` into `self.body`.
    fn build_body(&mut self, items: &[Item]) {
        self.body.clear();
        for item in items {
            self.body.extend_from_slice(&self.action_prefix);
            match &item.id {
                Some(id) => self.body.extend_from_slice(serde_json::Value::String(id.clone()).to_string().as_bytes()),
                None => self.body.extend_from_slice(b"null"),
            }
            self.body.extend_from_slice(b"}}\n");
            self.body.extend_from_slice(&item.body);
            self.body.push(b'\n');
        }
    }
}

fn gzip(body: &[u8]) -> Result<Vec<u8>, SendError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body)
        .and_then(|()| gz.finish())
        .map_err(|e| SendError { message: format!("gzip of a bulk request: {e}"), retryable: false })
}

impl Sink for EsSink {
    fn send(&mut self, items: &[Item]) -> Result<Vec<Outcome>, SendError> {
        self.build_body(items);
        let compressed;
        let body: &[u8] = if self.settings.gzip {
            compressed = gzip(&self.body)?;
            &compressed
        } else {
            &self.body
        };
        let address = &self.settings.addresses[self.next_address % self.settings.addresses.len()];
        let url = format!("{address}/_bulk");
        let mut request = self.agent.post(&url).header("Content-Type", "application/x-ndjson");
        if self.settings.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(auth) = &self.settings.authorization {
            request = request.header("Authorization", auth);
        }
        let failed = |next: &mut usize, message: String| {
            *next = next.wrapping_add(1);
            SendError { message, retryable: true }
        };
        let response = match request.send(body) {
            Ok(r) => r,
            Err(e) => return Err(failed(&mut self.next_address, format!("POST {url}: {e}"))),
        };
        let status = response.status().as_u16();
        let text = match response.into_body().with_config().limit(MAX_RESPONSE_BYTES).read_to_vec() {
            Ok(t) => t,
            Err(e) => return Err(failed(&mut self.next_address, format!("POST {url}: reading the response: {e}"))),
        };
        if status == 429 || status >= 500 || status == 408 {
            return Err(failed(&mut self.next_address, format!("POST {url}: HTTP {status}: {}", quote(&text))));
        }
        if !(200..300).contains(&status) {
            // "HTTP 401 from …: body": one log line per status (see the sender's rejection log).
            return Err(SendError { message: format!("HTTP {status} from POST {url}: {}", quote(&text)), retryable: false });
        }
        parse_bulk_response(&text, items.len())
            .map_err(|e| failed(&mut self.next_address, format!("POST {url}: unreadable bulk response: {e}")))
    }
}

/// The start of a response body for a message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut quoted: String = text.chars().take(QUOTED_BODY_CHARS).collect();
    if text.chars().count() > QUOTED_BODY_CHARS {
        quoted.push('…');
    }
    quoted
}

/// One outcome per item of a bulk response (`{"errors":…,"items":[{"create":{"status":…}}]}`).
pub fn parse_bulk_response(body: &[u8], expected: usize) -> Result<Vec<Outcome>, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("{e}: {}", quote(body)))?;
    let items = value.get("items").and_then(|i| i.as_array()).ok_or_else(|| format!("no 'items' array: {}", quote(body)))?;
    if items.len() != expected {
        return Err(format!("{} results for {expected} documents", items.len()));
    }
    Ok(items.iter().map(item_outcome).collect())
}

fn item_outcome(item: &serde_json::Value) -> Outcome {
    // Each item is {"<action>": {...}}; we only send create.
    let Some(result) = item.as_object().and_then(|o| o.values().next()) else {
        return Outcome::Retry(format!("unreadable item result {item}"));
    };
    let status = result.get("status").and_then(|s| s.as_u64()).unwrap_or(0);
    let error = result.get("error");
    let kind = error.and_then(|e| e.get("type")).and_then(|t| t.as_str()).unwrap_or("");
    let reason = error.and_then(|e| e.get("reason")).and_then(|t| t.as_str()).unwrap_or("");
    match status {
        200..=299 => Outcome::Delivered,
        // create of an id the index already has: a retry of a record that did arrive.
        409 if kind == "version_conflict_engine_exception" => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry(format!("status {status} {kind}: {reason}")),
        0 => Outcome::Retry(format!("item result without a status: {item}")),
        _ => Outcome::Rejected(format!("status {status} {kind}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> PluginConfig {
        PluginConfig::from_map(
            pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect(),
        )
    }

    #[test]
    fn item_results_become_outcomes() {
        let body = br#"{"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}},
            {"create":{"_id":"d","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [x]"}}},
            {"create":{"_id":"e","status":503,"error":{"type":"unavailable_shards_exception","reason":"no shard"}}}]}"#;
        let outcomes = parse_bulk_response(body, 5).expect("parse");
        assert_eq!(outcomes[0], Outcome::Delivered);
        assert_eq!(outcomes[1], Outcome::Delivered, "a retried create of an existing id is not a failure");
        assert!(matches!(&outcomes[2], Outcome::Retry(r) if r.contains("429")));
        assert!(matches!(&outcomes[3], Outcome::Rejected(r) if r.starts_with("status 400 mapper_parsing_exception")));
        assert!(matches!(&outcomes[4], Outcome::Retry(r) if r.contains("503")));
        assert!(parse_bulk_response(body, 4).expect_err("count").contains("5 results for 4"));
        assert!(parse_bulk_response(b"<html>", 1).is_err());
    }

    #[test]
    fn settings_from_keys() {
        let s = EsSettings::from_config(&config(&[
            ("es.addresses", "http://a:9200/, http://b:9200"),
            ("es.index", "sysflow"),
            ("es.username", "elastic"),
            ("es.password", "changeme"),
            ("es.bulk.numWorkers", "3"),
            ("es.bulk.flushTimeout", "1m"),
        ]))
        .expect("settings");
        assert_eq!(s.addresses, vec!["http://a:9200", "http://b:9200"]);
        assert_eq!((s.workers, s.flush_bytes, s.flush_timeout), (3, DEFAULT_FLUSH_BYTES, Duration::from_secs(60)));
        assert_eq!(s.authorization.as_deref(), Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="));
        let err = |pairs: &[(&str, &str)]| EsSettings::from_config(&config(pairs)).expect_err("must fail");
        assert!(err(&[("es.index", "i")]).contains("'es.addresses' is required"));
        assert!(err(&[("es.addresses", "http://a")]).contains("'es.index' is required"));
        assert!(err(&[("es.addresses", "ftp://a"), ("es.index", "i")]).contains("not an http:// or https:// URL"));
        assert!(err(&[("es.addresses", "https://a"), ("es.index", "i"), ("es.tls.cafile", "/nonexistent.pem")]).contains("/nonexistent.pem"));
        assert!(err(&[("es.addresses", "https://a"), ("es.index", "i"), ("es.tls.keyfile", "/k.pem")]).contains("go together"));
        assert!(err(&[("es.addresses", "http://a"), ("es.index", "i"), ("es.bulk.flushTimeout", "30")]).contains("flushTimeout"));
    }
}
