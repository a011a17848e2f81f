//! `export: es` end to end: the built binary indexes a real trace into real
//! Elasticsearch/OpenSearch-API servers (noida-db, osmem-server), with mapping conflicts,
//! and across a server outage in `block` and `drop` delivery modes.

use std::{
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sysflow_e2e_tests::{
    background_run::{finish, spawn, LOG_FILE},
    output_text, run_sfprocessor_in, search_server, servers, shared_data, write_pipeline,
};

/// The shared trace of the delivery tests: every record type but NE (KE, PE, FF, FE, NF).
const TRACE: &str = "k8s_small.sf";
/// Its flat records (expected/counts.tsv, sysprint records).
const TRACE_RECORDS: u64 = 5247;
/// A small trace with 3 network flows among 408 records (for the slower osmem-server).
const SMALL_TRACE: &str = "sf-apis_setns.sf";
const SMALL_TRACE_RECORDS: u64 = 408;
/// The small trace's network flows (`network.community_id` is a string in each).
const SMALL_TRACE_NETWORK_FLOWS: u64 = 3;

/// Reader + flattener → ECS into `index` at `url`; `extra` adds exporter keys.
fn es_pipeline(dir: &Path, url: &str, index: &str, extra: &[(&str, &str)]) -> String {
    let mut exporter = json!({"processor": "exporter", "in": "flat flattenerchan", "export": "es", "format": "ecs",
        "es.addresses": url, "es.index": index});
    for (k, v) in extra {
        exporter[*k] = Value::String(v.to_string());
    }
    let cfg = json!({"pipeline": [
        {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
        exporter]});
    write_pipeline(dir, &format!("{index}.json"), &cfg).to_string_lossy().into_owned()
}

/// The exporter's counter `name` from the exit summary (`name=value`).
fn counter(log: &str, name: &str) -> u64 {
    let key = format!(" {name}=");
    let line = log
        .lines()
        .find(|l| l.contains("(exporter): records in") && l.contains(&key))
        .unwrap_or_else(|| panic!("no exporter summary with {name} in:\n{log}"));
    let start = line.find(&key).map(|i| i + key.len()).unwrap_or(0);
    line[start..].split(|c: char| !c.is_ascii_digit()).next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} in {line}"))
}

fn all_output(out: &Output) -> String {
    let (stdout, stderr) = output_text(out);
    format!("{stdout}{stderr}")
}


fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}


#[test]
fn every_record_of_a_real_trace_is_indexed_once_even_when_sent_twice() {
    let test = "every_record_of_a_real_trace_is_indexed_once_even_when_sent_twice";
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = search_server::start_noida(test, &dir.path().join("noida"), servers::free_port()) else { return };
    let cfg = es_pipeline(dir.path(), &server.url(), "sysflow", &[]);
    let trace = data.join("traces").join(TRACE).to_string_lossy().into_owned();
    for run in 1..=2 {
        let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
        let log = all_output(&out);
        assert_eq!(out.status.code(), Some(0), "run {run}:\n{log}");
        assert!(log.contains("pipeline finished: all records processed"), "run {run}:\n{log}");
        assert_eq!(counter(&log, "records_exported"), TRACE_RECORDS, "run {run}");
        assert_eq!(counter(&log, "delivery_failed") + counter(&log, "records_dropped"), 0, "run {run}");
        // The second run re-sends every document: upstream's ids make each a 409, not a copy.
        assert_eq!(server.count("sysflow"), TRACE_RECORDS, "run {run}: {}", server.process.log_text());
    }
}

#[test]
fn osmem_indexes_every_record_of_a_trace() {
    let test = "osmem_indexes_every_record_of_a_trace";
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = search_server::start_osmem(test, dir.path()) else { return };
    let cfg = es_pipeline(dir.path(), &server.url(), "sf-osmem", &[("es.gzip", "true"), ("es.bulk.flushBuffer", "100000")]);
    let trace = data.join("traces").join(SMALL_TRACE).to_string_lossy().into_owned();
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    let log = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(counter(&log, "records_exported"), SMALL_TRACE_RECORDS, "{log}");
    assert_eq!(server.count("sf-osmem"), SMALL_TRACE_RECORDS);
}

#[test]
fn a_mapping_conflict_is_reported_once_and_the_rest_is_indexed() {
    let test = "a_mapping_conflict_is_reported_once_and_the_rest_is_indexed";
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = search_server::start_osmem(test, dir.path()) else { return };
    // A community id is text ("1:agP7…="): a long mapping refuses the network flows only.
    server.create_index("conflict", &json!({"properties": {"network": {"properties": {"community_id": {"type": "long"}}}}}));
    let cfg = es_pipeline(dir.path(), &server.url(), "conflict", &[]);
    let trace = data.join("traces").join(SMALL_TRACE).to_string_lossy().into_owned();
    let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
    let log = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "a record was not delivered: exit status 1\n{log}");
    assert!(!log.contains("all records processed"), "{log}");
    let indexed = SMALL_TRACE_RECORDS - SMALL_TRACE_NETWORK_FLOWS;
    assert_eq!(counter(&log, "records_exported"), indexed, "{log}");
    assert_eq!(counter(&log, "delivery_failed"), SMALL_TRACE_NETWORK_FLOWS, "{log}");
    assert_eq!(server.count("conflict"), indexed);
    let reports: Vec<&str> = log.lines().filter(|l| l.contains("record rejected, not retried")).collect();
    assert_eq!(reports.len(), 1, "one report per cause:\n{log}");
    assert!(reports[0].contains("mapper_parsing_exception") && reports[0].contains("network.community_id"), "{}", reports[0]);
    assert!(reports[0].contains("first record with this cause: id "), "{}", reports[0]);
}

/// Runs the shared trace into osmem-server through an nginx TLS + basic-auth proxy, stops
/// the proxy once `kill_after` documents are in, keeps it down for `down`, starts it again;
/// returns the search server, exit status and output. (The outage is the proxy's so that the
/// store itself never restarts: with noida-db stopped and restarted on its data directory,
/// 2 runs in 6 counted 4–6 documents fewer than the exporter saw acknowledged.)
fn run_across_an_outage(
    test: &str,
    dir: &Path,
    extra: &[(&str, &str)],
    kill_after: u64,
    down: Duration,
) -> Option<(search_server::SearchServer, i32, String)> {
    let data = shared_data()?;
    let server = search_server::start_osmem(test, dir)?;
    let certs = sysflow_e2e_tests::syslog_server::make_certificates(dir);
    let port = servers::free_port();
    let start_proxy = || search_server::start_tls_auth_proxy(test, dir, port, server.port, &certs, "elastic", "changeme");
    let mut proxy = start_proxy()?;
    let ca = certs.ca.to_string_lossy().into_owned();
    let mut keys = vec![("es.tls.cafile", ca.as_str()), ("es.username", "elastic"), ("es.password", "changeme")];
    keys.extend_from_slice(extra);
    let cfg = es_pipeline(dir, &format!("https://127.0.0.1:{port}"), "outage", &keys);
    let mut child = spawn(dir, &cfg, &data.join("traces").join(TRACE));
    wait_for("the first documents", Duration::from_secs(120), || server.count("outage") >= kill_after);
    proxy.stop();
    assert!(child.try_wait().expect("wait").is_none(), "the run ended before the outage: pace it slower");
    std::thread::sleep(down);
    let restarted = start_proxy()?;
    let (status, log) = finish(child, dir, Duration::from_secs(300));
    drop(restarted);
    Some((server, status, log))
}

/// Keys that keep the run slow enough to be mid-run at the kill: small bulks, one sender.
const PACED: [(&str, &str); 3] = [("es.bulk.numWorkers", "1"), ("es.bulk.flushBuffer", "20000"), ("delivery.queue", "200")];

#[test]
fn block_mode_delivers_every_record_exactly_once_across_a_server_outage() {
    let test = "block_mode_delivers_every_record_exactly_once_across_a_server_outage";
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((server, status, log)) = run_across_an_outage(test, dir.path(), &PACED, 300, Duration::from_secs(4)) else {
        return;
    };
    assert_eq!(status, 0, "{log}");
    assert!(log.contains("retrying with backoff"), "the outage is logged:\n{log}");
    assert!(counter(&log, "delivery_retried") > 0, "{log}");
    assert_eq!(counter(&log, "records_exported"), TRACE_RECORDS, "{log}");
    assert_eq!(server.count("outage"), TRACE_RECORDS, "every document once");
}

#[test]
fn drop_mode_accounts_for_every_record_across_a_server_outage() {
    let test = "drop_mode_accounts_for_every_record_across_a_server_outage";
    let dir = tempfile::tempdir().expect("tempdir");
    let mut keys = PACED.to_vec();
    keys.extend([("delivery.mode", "drop"), ("delivery.stopTimeout", "60s")]);
    // The reader outruns the server at once: the queue fills and drops start before the outage.
    let Some((server, status, log)) = run_across_an_outage(test, dir.path(), &keys, 50, Duration::from_secs(4)) else {
        return;
    };
    let (sent, dropped, failed) =
        (counter(&log, "records_exported"), counter(&log, "records_dropped"), counter(&log, "delivery_failed"));
    assert!(dropped > 0, "the queue filled while the server was down:\n{log}");
    assert_eq!(failed, 0, "{log}");
    assert_eq!(sent + dropped, TRACE_RECORDS, "{log}");
    assert_eq!(server.count("outage"), sent);
    assert_eq!(status, 1, "records were dropped:\n{log}");
    assert!(log.contains("queue full"), "{log}");
}

#[test]
fn https_with_basic_auth_verifies_the_server_and_reports_refusals() {
    let test = "https_with_basic_auth_verifies_the_server_and_reports_refusals";
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(server) = search_server::start_osmem(test, dir.path()) else { return };
    let certs = sysflow_e2e_tests::syslog_server::make_certificates(dir.path());
    let proxy_port = servers::free_port();
    let Some(proxy) =
        search_server::start_tls_auth_proxy(test, dir.path(), proxy_port, server.port, &certs, "elastic", "changeme")
    else {
        return;
    };
    let url = format!("https://127.0.0.1:{}", proxy.port);
    let ca = certs.ca.to_string_lossy().into_owned();
    let trace = data.join("traces").join(SMALL_TRACE).to_string_lossy().into_owned();
    let run = |index: &str, keys: &[(&str, &str)]| {
        let mut all = vec![("delivery.stopTimeout", "1s")];
        all.extend_from_slice(keys);
        let cfg = es_pipeline(dir.path(), &url, index, &all);
        let out = run_sfprocessor_in(dir.path(), &["-config", &cfg, &trace], &[]);
        (out.status.code(), all_output(&out))
    };

    let (status, log) = run("tls-ok", &[("es.tls.cafile", &ca), ("es.username", "elastic"), ("es.password", "changeme")]);
    assert_eq!(status, Some(0), "{log}");
    assert_eq!(counter(&log, "records_exported"), SMALL_TRACE_RECORDS, "{log}");
    assert_eq!(server.count("tls-ok"), SMALL_TRACE_RECORDS);

    // Wrong password: 401 is not retried; every record is failed and the run says so.
    let (status, log) = run("tls-401", &[("es.tls.cafile", &ca), ("es.username", "elastic"), ("es.password", "wrong")]);
    assert_eq!(status, Some(1), "{log}");
    assert!(log.contains("HTTP 401"), "{log}");
    assert_eq!(counter(&log, "delivery_failed"), SMALL_TRACE_RECORDS, "{log}");
    assert_eq!(server.count("tls-401"), 0);

    // No CA file: the test CA is not among the system roots, so the server is not trusted.
    let (status, log) = run("tls-untrusted", &[("es.username", "elastic"), ("es.password", "changeme")]);
    assert_eq!(status, Some(1), "{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    assert_eq!(counter(&log, "records_exported"), 0, "{log}");
    assert_eq!(server.count("tls-untrusted"), 0);
}

/// The exporter's "records in N" from the exit summary.
fn exporter_records_in(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("(exporter): records in"))
        .unwrap_or_else(|| panic!("no exporter summary in:\n{log}"));
    let rest = &line[line.find("records in ").map(|i| i + "records in ".len()).unwrap_or(0)..];
    rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// SIGTERM while the receiver is down and the queue is full (block mode): the exporter stops
/// waiting for room, the run ends well within the stop timeouts, and every record that
/// reached the exporter is accounted for as failed and named in the log. (Before, the push
/// waited for ever and only the host's -stoptimeout ended the run, without a record count.)
#[test]
fn sigterm_while_the_receiver_is_down_ends_the_run_and_counts_what_was_not_delivered() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on this port: every bulk fails and is retried with backoff.
    let url = format!("http://127.0.0.1:{}", servers::free_port());
    let keys = [("es.bulk.numWorkers", "1"), ("delivery.queue", "100"), ("delivery.stopTimeout", "2s")];
    let cfg = es_pipeline(dir.path(), &url, "down", &keys);
    let child = spawn(dir.path(), &cfg, &data.join("traces").join(TRACE));
    let log_path = dir.path().join(LOG_FILE);
    wait_for("the failing bulks to be logged", Duration::from_secs(60), || {
        std::fs::read_to_string(&log_path).unwrap_or_default().contains("retrying with backoff")
    });
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let stopped = Instant::now();
    // -stoptimeout defaults to 25 s: ending well before it shows the exporter stopped waiting.
    let (status, log) = finish(child, dir.path(), Duration::from_secs(60));
    assert!(stopped.elapsed() < Duration::from_secs(15), "the stop took {:?}:\n{log}", stopped.elapsed());
    assert_eq!(status, 1, "undelivered records make the run fail:\n{log}");
    assert!(log.contains("the stop came while the queue was full"), "{log}");
    let (exported, failed, dropped) =
        (counter(&log, "records_exported"), counter(&log, "delivery_failed"), counter(&log, "records_dropped"));
    assert_eq!((exported, dropped), (0, 0), "{log}");
    assert_eq!(failed, exporter_records_in(&log), "every record that reached the exporter is counted failed:\n{log}");
    assert!(failed > 0, "{log}");
}
