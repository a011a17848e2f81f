//! Bad pipelines are refused before anything starts: exit 1, every error listed, each
//! naming the block (index and processor) and the key.

mod common;

use common::{run_in, text, write_pipeline};

/// Runs `-test` on `pipeline` (plus `extra` flags) and returns (exit code, stderr, stdout).
fn check(pipeline: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", pipeline);
    let mut args = vec!["-config", cfg.as_str(), "-test"];
    args.extend_from_slice(extra);
    let out = run_in(dir.path(), &args, &[]);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stderr, stdout)
}

fn assert_refused(pipeline: &str, extra: &[&str], expected: &[&str]) -> String {
    let (code, stderr, stdout) = check(pipeline, extra);
    assert_eq!(code, Some(1), "expected exit 1\nstderr: {stderr}\nstdout: {stdout}");
    for e in expected {
        assert!(stderr.contains(e), "stderr lacks {e:?}:\n{stderr}");
    }
    assert!(!stderr.contains("Successfully loaded"), "{stderr}");
    stderr
}

const READER: &str =
    r#"{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}"#;

#[test]
fn unknown_processor() {
    assert_refused(
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "nosuch", "in": "flat flattenerchan"}}]}}"#),
        &[],
        &["pipeline[1] (nosuch): key 'processor': unknown processor 'nosuch'", "exporter"],
    );
}

#[test]
fn unknown_handler_and_driver() {
    let stderr = assert_refused(
        r#"{"pipeline": [{"processor": "sysflowreader", "handler": "nope", "in": "sysflow sysflowchan"}]}"#,
        &["-driver", "mqtt"],
        &["pipeline[0] (sysflowreader): key 'handler': unknown handler 'nope'", "driver (mqtt): unknown driver 'mqtt'"],
    );
    assert!(stderr.contains("known: file, kafka, otelfile, otelkafka, socket"), "{stderr}");
}

#[test]
fn dangling_channels() {
    assert_refused(
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "other flattenerchan"}}]}}"#),
        &[],
        &[
            "pipeline[1] (exporter): key 'in': channel 'other flattenerchan' is dangling: it is read by pipeline[1] (exporter) but no driver or block writes it",
            "pipeline[0] (sysflowreader): key 'out': channel 'flat flattenerchan' is dangling: nothing reads it",
        ],
    );
}

#[test]
fn type_mismatch_exporter_on_sysflowchan() {
    assert_refused(
        r#"{"pipeline": [{"processor": "exporter", "in": "sysflow sysflowchan"}]}"#,
        &[],
        &["pipeline[0] (exporter): key 'in': processor 'exporter' reads flattenerchan, eventchan or otelchan channels, but channel 'sysflow' is a sysflowchan"],
    );
}

#[test]
fn type_mismatch_on_output_and_between_mentions() {
    assert_refused(
        r#"{"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat eventchan"},
            {"processor": "exporter", "in": "flat flattenerchan"}]}"#,
        &[],
        &[
            "pipeline[0] (sysflowreader): key 'out': the handler writes flattenerchan channels, but channel 'flat' is a eventchan",
            "pipeline[1] (exporter) key 'in': channel 'flat' is declared here as flattenerchan but as eventchan at pipeline[0] (sysflowreader) key 'out'",
        ],
    );
}

#[test]
fn non_string_value_names_block_and_key() {
    assert_refused(
        &format!(
            r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "buffer": 1000, "export": true}}]}}"#
        ),
        &[],
        &[
            "pipeline[1] (exporter): key 'buffer': expected a string value",
            "write \"1000\"",
            "pipeline[1] (exporter): key 'export': expected a string value",
            "2 errors",
        ],
    );
}

#[test]
fn malformed_channel_references() {
    assert_refused(
        r#"{"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow", "out": "flat flattenerchan extra"},
            {"processor": "exporter", "in": "flat flatchan"}]}"#,
        &[],
        &[
            "pipeline[0] (sysflowreader): key 'in': channel 'sysflow' must be of the form '<identifier> <type>'",
            "pipeline[0] (sysflowreader): key 'out': channel 'flat flattenerchan extra' must be of the form",
            "pipeline[1] (exporter): key 'in': channel 'flat flatchan': unknown channel type 'flatchan'",
        ],
    );
}

#[test]
fn two_readers_on_one_channel() {
    assert_refused(
        &format!(
            r#"{{"pipeline": [{READER},
                {{"processor": "exporter", "in": "flat flattenerchan", "export": "null"}},
                {{"processor": "exporter", "in": "flat flattenerchan", "export": "null"}}]}}"#
        ),
        &[],
        &["pipeline[2] (exporter): key 'in': channel 'flat' is read by pipeline[1] (exporter) and pipeline[2] (exporter)"],
    );
}

#[test]
fn missing_in_and_processor() {
    assert_refused(
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "exporter"}}, {{"in": "x eventchan"}}]}}"#),
        &[],
        &[
            "pipeline[1] (exporter): key 'in': in tag must exist in plugin config",
            "pipeline[2]: key 'processor': processor tag must exist in plugin config",
        ],
    );
}

#[test]
fn driver_entry_type_mismatch() {
    assert_refused(
        &format!(
            r#"{{"drivers": [{{"driver": "file", "out": "flat flattenerchan"}}],
                "pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan"}}]}}"#
        ),
        &[],
        &["drivers[0] (file): key 'out': driver 'file' writes sysflowchan channels, but channel 'flat' is a flattenerchan"],
    );
}

#[test]
fn invalid_json_names_line() {
    assert_refused(r#"{"pipeline": [ {"processor": "exporter",, } ]}"#, &[], &["p.json", "line 1"]);
}

#[test]
fn unknown_keys_warn_but_load() {
    let (code, stderr, stdout) = check(
        &format!(
            r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "export": "null",
               "exprot": "file", "_comment": "ignored"}}]}}"#
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}{stdout}");
    assert!(stderr.contains("[Warn]") && stderr.contains("pipeline[1] (exporter): key 'exprot' is not a setting"), "{stderr}");
    assert!(stderr.contains("key 'exprot' is not a setting of processor 'exporter': ignored (did you mean 'export'?)"), "{stderr}");
    assert!(!stderr.contains("_comment"), "{stderr}");
}

#[test]
fn a_misspelt_key_gets_the_nearest_declared_one_and_a_far_one_none() {
    let (code, stderr, stdout) = check(
        &format!(
            r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "export": "file",
               "file.pth": "x.out", "kafka.brokers": "b:9092"}}]}}"#
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}{stdout}");
    assert!(stderr.contains("key 'file.pth' is not a setting of processor 'exporter': ignored (did you mean 'file.path'?)"), "{stderr}");
    let far = stderr.lines().find(|l| l.contains("key 'kafka.brokers'")).unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(!far.contains("did you mean"), "{far}");
}

#[test]
fn constructor_error_names_block() {
    assert_refused(
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "buffer": "lots"}}]}}"#),
        &[],
        &["pipeline[1] (exporter): cannot initialise processor 'exporter'", "buffer"],
    );
}
