//! The `-metrics ADDR` listener: Prometheus text (format 0.0.4) at `/metrics`, liveness at
//! `/healthz`, readiness at `/readyz`. It runs on its own thread and reads the counters the
//! nodes keep anyway ([`crate::metrics::NodeMetrics`]) at scrape time, so the pipeline does
//! no extra work for it and never waits on it.

use std::{
    fmt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use prometheus::{
    core::Metric as _,
    proto::{self, LabelPair, MetricFamily, MetricType},
    TextEncoder,
};

use crate::{
    cli,
    hot_reload, pipeline_reload,
    metrics::NodeMetrics,
    signals::StopFlag,
};

/// Content type of `/metrics`: Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Where the `-metrics` address came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// The `-metrics` flag.
    Flag,
    /// The top-level `metrics` key of the pipeline file.
    ConfigKey,
}

impl fmt::Display for AddressSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressSource::Flag => f.write_str("-metrics"),
            AddressSource::ConfigKey => f.write_str("pipeline key 'metrics'"),
        }
    }
}

/// The address to listen on: the flag wins over the pipeline key; an empty value means off.
pub fn choose_address(flag: Option<&str>, config_key: Option<&str>) -> Option<(String, AddressSource)> {
    match (flag, config_key) {
        (Some(f), _) if !f.is_empty() => Some((f.to_string(), AddressSource::Flag)),
        (Some(_), _) => None,
        (None, Some(k)) if !k.is_empty() => Some((k.to_string(), AddressSource::ConfigKey)),
        _ => None,
    }
}

/// What the listener thread and the pipeline share.
struct Shared {
    /// Every node of the running pipeline (empty until it starts).
    nodes: Mutex<Vec<Arc<NodeMetrics>>>,
    /// Driver threads still reading input.
    drivers_running: AtomicUsize,
    stop: StopFlag,
}

impl Shared {
    fn nodes(&self) -> Vec<Arc<NodeMetrics>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `None` when ready, else why not.
    fn not_ready(&self) -> Option<&'static str> {
        if self.stop.requested() {
            Some("stopping")
        } else if self.drivers_running.load(Ordering::SeqCst) == 0 {
            Some("no driver is reading input")
        } else {
            None
        }
    }
}

/// The running listener; dropping it stops the listener thread.
pub struct MetricsEndpoint {
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    /// The bound address (the actual port when 0 was asked for).
    pub address: String,
}

/// Marks one driver as reading input until dropped (also when its thread unwinds).
pub struct DriverRunning(Arc<Shared>);

impl Drop for DriverRunning {
    fn drop(&mut self) {
        self.0.drivers_running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl MetricsEndpoint {
    /// Binds `address` and starts serving; the error names the address and where it came from.
    pub fn start(address: &str, source: AddressSource, stop: StopFlag) -> Result<MetricsEndpoint, String> {
        let server = tiny_http::Server::http(address)
            .map_err(|e| format!("{source} '{address}': cannot listen for metrics on this address: {e}"))?;
        let server = Arc::new(server);
        let bound = server.server_addr().to_string();
        let shared = Arc::new(Shared { nodes: Mutex::new(Vec::new()), drivers_running: AtomicUsize::new(0), stop });
        let thread = {
            let (server, shared) = (server.clone(), shared.clone());
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve(&server, &shared))
                .map_err(|e| format!("{source} '{address}': cannot start the metrics thread: {e}"))?
        };
        tracing::info!("serving /metrics, /healthz and /readyz on http://{bound}");
        Ok(MetricsEndpoint { shared, server, thread: Some(thread), address: bound })
    }

    /// Makes the nodes of the running pipeline visible at `/metrics`, in place of those of
    /// a pipeline a reload replaced.
    pub fn set_nodes(&self, nodes: &[Arc<NodeMetrics>]) {
        *self.shared.nodes.lock().unwrap_or_else(|e| e.into_inner()) = nodes.to_vec();
    }

    /// Counts a driver as reading until the returned guard is dropped (`/readyz` is 200
    /// while at least one is, and no stop was requested).
    pub fn driver_running(&self) -> DriverRunning {
        self.shared.drivers_running.fetch_add(1, Ordering::SeqCst);
        DriverRunning(self.shared.clone())
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers requests one at a time until the server is unblocked.
fn serve(server: &tiny_http::Server, shared: &Shared) {
    for request in server.incoming_requests() {
        let (status, content_type, body) = answer(request.method(), request.url(), shared);
        let response = tiny_http::Response::from_string(body).with_status_code(status);
        let response = match tiny_http::Header::from_bytes("Content-Type", content_type) {
            Ok(h) => response.with_header(h),
            Err(()) => response,
        };
        // A client that went away is its own problem, never the pipeline's.
        if let Err(e) = request.respond(response) {
            tracing::debug!("metrics: cannot answer a request: {e}");
        }
    }
}

/// Status, content type and body for a request.
fn answer(method: &tiny_http::Method, url: &str, shared: &Shared) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return (405, TEXT, "only GET and HEAD are served\n".to_string());
    }
    let path = url.split('?').next().unwrap_or(url);
    match path {
        "/metrics" => {
            let mut body = String::new();
            match TextEncoder::new().encode_utf8(&families(&shared.nodes()), &mut body) {
                Ok(()) => (200, METRICS_CONTENT_TYPE, body),
                Err(e) => (500, TEXT, format!("cannot encode the metrics: {e}\n")),
            }
        }
        "/healthz" => (200, TEXT, "ok\n".to_string()),
        "/readyz" => match shared.not_ready() {
            None => (200, TEXT, "ready\n".to_string()),
            Some(why) => (503, TEXT, format!("not ready: {why}\n")),
        },
        _ => (404, TEXT, "not found: try /metrics, /healthz or /readyz\n".to_string()),
    }
}

/// A per-node counter family: name, help, and how to read it (`None`: not for this node).
type NodeCounter = (&'static str, &'static str, fn(&NodeMetrics) -> Option<u64>);

/// The per-node counters, in exposition order.
const NODE_COUNTERS: &[NodeCounter] = &[
    ("sfprocessor_node_records_in_total", "Records a node received (processors) or read (drivers).", |n| {
        Some(NodeMetrics::get(&n.records_in))
    }),
    (
        "sfprocessor_node_records_out_total",
        "Records a node emitted, each counted once however many outputs it feeds (not for exporters).",
        |n| (!n.sink).then(|| NodeMetrics::get(&n.records_out)),
    ),
    (
        "sfprocessor_node_records_dropped_total",
        "Records the host discarded at a node (batch lost to an error, or input of a failed branch).",
        |n| Some(NodeMetrics::get(&n.dropped)),
    ),
    ("sfprocessor_node_errors_total", "Errors a node's plugin returned.", |n| Some(NodeMetrics::get(&n.errors))),
    ("sfprocessor_node_panics_total", "Plugin panics the host caught at a node.", |n| Some(NodeMetrics::get(&n.panics))),
    ("sfprocessor_node_restarts_total", "Plugin instances rebuilt after a panic (on.error: restart).", |n| {
        Some(NodeMetrics::get(&n.restarts))
    }),
    ("sfprocessor_plugin_reloads_total", "New builds of a node's plugin libraries swapped in (hot reload).", |n| {
        Some(NodeMetrics::get(&n.reloads))
    }),
    (
        "sfprocessor_plugin_reload_failures_total",
        "New builds of a node's plugin libraries that could not be built for it; the running instance was kept.",
        |n| Some(NodeMetrics::get(&n.reload_failures)),
    ),
];

/// Every metric family, read from the nodes' counters now.
pub fn families(nodes: &[Arc<NodeMetrics>]) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let build = [
        ("version", cli::VERSION),
        ("build", cli::BUILD_NUMBER),
        ("avro_schema", cli::AVRO_SCHEMA_VERSION),
        ("export_schema", cli::JSON_SCHEMA_VERSION),
        ("ecs", cli::ECS_VERSION),
    ];
    out.push(family(
        "sfprocessor_build_info",
        "Version of this build in its labels (the value is always 1).",
        MetricType::GAUGE,
        vec![gauge(&build, 1.0)],
    ));
    for (name, help, read) in NODE_COUNTERS {
        let metrics = nodes.iter().filter_map(|n| read(n).map(|v| counter(&[("node", &n.label)], v))).collect();
        out.push(family(name, help, MetricType::COUNTER, metrics));
    }
    out.push(family(
        "sfprocessor_node_failed",
        "1 when a node's branch is stopped (plugin panic, or a driver given up), else 0.",
        MetricType::GAUGE,
        nodes.iter().map(|n| gauge(&[("node", &n.label)], f64::from(u8::from(n.failed.load(Ordering::Relaxed))))).collect(),
    ));
    let depths: Vec<(&str, (usize, usize))> =
        nodes.iter().filter_map(|n| n.queue_depth().map(|d| (n.label.as_str(), d))).collect();
    out.push(family(
        "sfprocessor_queue_depth_batches",
        "Batches waiting in a node's input channel.",
        MetricType::GAUGE,
        depths.iter().map(|(node, (depth, _))| gauge(&[("node", node)], *depth as f64)).collect(),
    ));
    out.push(family(
        "sfprocessor_queue_capacity_batches",
        "Capacity of a node's input channel, in batches.",
        MetricType::GAUGE,
        depths.iter().map(|(node, (_, cap))| gauge(&[("node", node)], *cap as f64)).collect(),
    ));
    out.push(family(
        "sfprocessor_node_batch_seconds",
        "Time a node took per batch (processor: plugin, handler and sending on; driver: a poll that returned records).",
        MetricType::HISTOGRAM,
        nodes
            .iter()
            .map(|n| {
                let mut m = n.batch_seconds.metric();
                m.set_label(labels(&[("node", &n.label)]));
                m
            })
            .collect(),
    ));
    let mut plugin = Vec::new();
    for n in nodes {
        for (owner, counters) in n.plugin_counters() {
            for c in counters {
                let name = format!("{owner}{}", c.name.as_str());
                plugin.push(gauge(&[("node", &n.label), ("name", &name)], c.value as f64));
            }
        }
    }
    out.push(family(
        "sfprocessor_plugin_value",
        "A counter a node's plugin reports (handler counters prefixed with the handler's name), as last published (about once a second).",
        MetricType::GAUGE,
        plugin,
    ));
    out.push(family(
        "sfprocessor_reloads_total",
        "Pipeline reloads (SIGHUP) applied since start.",
        MetricType::COUNTER,
        vec![counter(&[], pipeline_reload::reloads())],
    ));
    out.push(family(
        "sfprocessor_reload_failures_total",
        "Pipeline reloads (SIGHUP) refused since start; the running pipeline was kept.",
        MetricType::COUNTER,
        vec![counter(&[], pipeline_reload::reload_failures())],
    ));
    out.push(family(
        "sfprocessor_plugin_library_reload_failures_total",
        "New builds of plugin libraries the watcher refused (not loadable, plugin missing, channel types changed).",
        MetricType::COUNTER,
        vec![counter(&[], hot_reload::library_reload_failures())],
    ));
    // The text encoder refuses a family without samples (e.g. no plugin counter published yet).
    out.retain(|f| !f.get_metric().is_empty());
    out
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(stop: StopFlag) -> Arc<Shared> {
        Arc::new(Shared { nodes: Mutex::new(Vec::new()), drivers_running: AtomicUsize::new(0), stop })
    }

    #[test]
    fn flag_wins_over_the_pipeline_key_and_empty_means_off() {
        assert_eq!(choose_address(Some("a:1"), Some("b:2")), Some(("a:1".into(), AddressSource::Flag)));
        assert_eq!(choose_address(None, Some("b:2")), Some(("b:2".into(), AddressSource::ConfigKey)));
        assert_eq!(choose_address(Some(""), Some("b:2")), None);
        assert_eq!(choose_address(None, Some("")), None);
        assert_eq!(choose_address(None, None), None);
    }

    #[test]
    fn readyz_is_503_before_the_drivers_run_and_once_stopping() {
        let stop = StopFlag::new();
        let s = shared(stop.clone());
        let status = |s: &Shared| answer(&tiny_http::Method::Get, "/readyz", s).0;
        assert_eq!(status(&s), 503, "before any driver runs");
        s.drivers_running.fetch_add(1, Ordering::SeqCst);
        let running = DriverRunning(s.clone());
        assert_eq!(status(&s), 200);
        stop.request();
        assert_eq!(status(&s), 503, "stopping");
        drop(running);
        assert_eq!(s.drivers_running.load(Ordering::SeqCst), 0);
        assert_eq!(answer(&tiny_http::Method::Get, "/healthz", &s).0, 200);
    }

    #[test]
    fn fresh_nodes_encode_before_any_plugin_counter_is_published() {
        let s = shared(StopFlag::new());
        let node = NodeMetrics::new("pipeline[0] (x)".into(), None, false);
        s.nodes.lock().unwrap_or_else(|e| e.into_inner()).push(node);
        let (status, _, body) = answer(&tiny_http::Method::Get, "/metrics", &s);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("sfprocessor_node_records_in_total{node=\"pipeline[0] (x)\"} 0"), "{body}");
        assert!(!body.contains("sfprocessor_plugin_value"), "{body}");
    }
}
