//! Kafka pipeline configuration, with no broker: the shipped scale-out configs pass `-test`
//! (which builds every processor instance), and each bad key is refused at start-up with a
//! message naming the block and the key.

use serde_json::{json, Value};
use sysflow_e2e_tests::{output_text, run_sfprocessor, run_sfprocessor_in, workspace_root, write_pipeline};

#[test]
fn shipped_scale_out_configs_validate() {
    let root = workspace_root();
    for (cfg, driver) in
        [("config/pipeline.kafka-edge.json", None), ("config/pipeline.kafka-central.json", Some("kafka"))]
    {
        let mut args = vec!["-test", "-config", cfg];
        if let Some(d) = driver {
            args.extend(["-driver", d]);
        }
        let out = run_sfprocessor_in(&root, &args, &[]);
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{cfg}: {stdout}{stderr}");
    }
}

/// `-test` instantiates processors, not drivers: a driver's keys are checked by a real run,
/// which must stop at start-up.
fn refused(pipeline: Value, args: &[&str], expect: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", &pipeline);
    let cfg = cfg.to_string_lossy().into_owned();
    let validate_only = !args.contains(&"kafka");
    let mut all = if validate_only { vec!["-test"] } else { vec![] };
    all.extend(["-config", cfg.as_str()]);
    all.extend(args);
    let out = run_sfprocessor(&all, &[]);
    let (stdout, stderr) = output_text(&out);
    let text = format!("{stdout}{stderr}");
    assert!(!out.status.success(), "accepted: {text}");
    for e in expect {
        assert!(text.contains(e), "message lacks {e:?}:\n{text}");
    }
}

fn exporter(extra: Value) -> Value {
    let mut block = json!({"processor": "exporter", "in": "flat flattenerchan"});
    for (k, v) in extra.as_object().expect("object") {
        block[k] = v.clone();
    }
    json!({"pipeline": [
        {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}, block]})
}

#[test]
fn bad_kafka_exporter_keys_are_refused_by_name() {
    refused(
        exporter(json!({"export": "kafka"})),
        &["x.sf"],
        &["pipeline[1] (exporter)", "kafka.config", "bootstrap.servers"],
    );
    refused(
        exporter(
            json!({"export": "kafka", "kafka.config": {"bootstrap.servers": "127.0.0.1:1"}, "delivery.mode": "spill"}),
        ),
        &["x.sf"],
        &["delivery.mode", "spill"],
    );
    refused(
        exporter(json!({"export": "kafka", "format": "otel", "kafka.encoding": "avro",
                        "kafka.config": {"bootstrap.servers": "127.0.0.1:1"}})),
        &["x.sf"],
        &["kafka.encoding", "avro"],
    );
    refused(
        exporter(json!({"export": "kafka", "format": "json", "kafka.encoding": "proto",
                        "kafka.config": {"bootstrap.servers": "127.0.0.1:1"}})),
        &["x.sf"],
        &["kafka.encoding", "proto"],
    );
    refused(exporter(json!({"export": "file", "format": "sysflow"})), &["x.sf"], &["format", "sysflow", "kafka"]);
}

#[test]
fn bad_kafka_driver_keys_are_refused_by_name_and_no_path_is_needed() {
    let with_driver = |driver: Value| {
        json!({"drivers": [driver], "pipeline": [
            {"processor": "sysflowreader", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "null"}]})
    };
    let base = json!({"driver": "kafka", "out": "sysflow sysflowchan", "kafka.topics": ["t"],
                      "kafka.config": {"bootstrap.servers": "127.0.0.1:1", "group.id": "g"}});
    // Valid without any path argument.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "ok.json", &with_driver(base.clone()));
    let out = run_sfprocessor(&["-test", "-config", &cfg.to_string_lossy(), "-driver", "kafka"], &[]);
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");

    let mut no_group = base.clone();
    no_group["kafka.config"] = json!({"bootstrap.servers": "127.0.0.1:1"});
    refused(with_driver(no_group), &["-driver", "kafka"], &["kafka", "group.id"]);
    let mut no_topics = base.clone();
    no_topics.as_object_mut().expect("object").remove("kafka.topics");
    refused(with_driver(no_topics), &["-driver", "kafka"], &["kafka.topics"]);
    let mut otel = base;
    otel["format"] = json!("otel");
    refused(with_driver(otel), &["-driver", "kafka"], &["format", "otel"]);
}
