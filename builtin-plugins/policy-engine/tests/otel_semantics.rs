//! The OTel backend's attribute semantics (upstream sf-processor 0.7 `source/otel`): which
//! attribute a key finds, typed comparisons, key-value lists, and where results are written;
//! and the processor on OTel batches (modes, counters, order kept over parallel workers).

use opentelemetry_proto::tonic::{
    common::v1::{
        any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    },
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use sysflow_policy_engine::{
    falco,
    otel::{OtelRuleSet, OtelVerdict, RULES_KEY, SCOPE_NAME, TAGS_KEY},
};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// A record with the given resource, scope and log-record attributes (one scope, one log record).
fn record(resource: Vec<KeyValue>, scope: Vec<KeyValue>, log: Vec<KeyValue>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "io.k8s.audit".into(),
                attributes: scope,
                ..Default::default()
            }),
            log_records: vec![LogRecord {
                attributes: log,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Compiles Falco-syntax rules `(name, condition)` over OTel attributes.
fn rules(conditions: &[(&str, &str)], extra: &str) -> OtelRuleSet {
    let mut text = String::from(extra);
    for (name, cond) in conditions {
        text.push_str(&format!(
            "- rule: {name}\n  desc: d\n  condition: {cond}\n  output: o\n  priority: high\n  tags: [t-{name}, shared]\n"
        ));
    }
    let set = falco::load_sources(&[("otel.yaml".into(), text)]).expect("policies parse");
    OtelRuleSet::compile(&set)
}

/// Names of the rules among `conditions` that match `r`.
fn matching(conditions: &[(&str, &str)], r: &ResourceLogs) -> Vec<String> {
    let set = rules(conditions, "");
    match set.evaluate(r) {
        OtelVerdict::Pass(idx) => idx
            .into_iter()
            .map(|i| conditions[i].0.to_string())
            .collect(),
        OtelVerdict::Drop => panic!("no filter was declared"),
    }
}

#[test]
fn the_first_attribute_with_the_key_decides_resource_then_scope_then_log_record() {
    let r = record(
        vec![kv("k8s.namespace.name", s("prod"))],
        vec![
            kv("k8s.namespace.name", s("scope-ns")),
            kv("user.name", s("scope-user")),
        ],
        vec![
            kv("k8s.namespace.name", s("log-ns")),
            kv("user.name", s("log-user")),
            kv("verb", s("create")),
        ],
    );
    let got = matching(
        &[
            ("ns_prod", "k8s.namespace.name = prod"),
            ("ns_log", "k8s.namespace.name = log-ns"),
            ("user_scope", "user.name = scope-user"),
            ("user_log", "user.name = log-user"),
            ("verb_log", "verb = create"),
            // `!=` is the negation of the first attribute's `=`: a later log-ns does not count.
            ("ns_not_log", "k8s.namespace.name != log-ns"),
        ],
        &r,
    );
    assert_eq!(got, ["ns_prod", "user_scope", "verb_log", "ns_not_log"]);
}

#[test]
fn comparisons_follow_the_attribute_type() {
    let r = record(
        vec![
            kv("process.pid", Value::IntValue(4242)),
            kv("cpu.ratio", Value::DoubleValue(0.75)),
        ],
        vec![],
        vec![
            kv("privileged", Value::BoolValue(false)),
            kv("payload", Value::BytesValue(b"GET /etc/shadow".to_vec())),
            kv("image", s("docker.io/library/nginx:1.25")),
        ],
    );
    let got = matching(
        &[
            ("int_gt", "process.pid > 4000"),
            ("int_eq", "process.pid = 4242"),
            ("int_le_false", "process.pid <= 100"),
            ("int_not_a_number", "process.pid = abc"),
            ("dbl_lt", "cpu.ratio < 0.8"),
            ("dbl_ge_false", "cpu.ratio >= 1.5"),
            ("bool_false", "privileged = false"),
            ("bool_true_false", "privileged = true"),
            ("bytes_contains", "payload contains /etc/shadow"),
            ("str_lexical_lt", "image < docker.io/m"),
            ("str_startswith", "image startswith docker.io/"),
            ("str_icontains", "image icontains NGINX"),
            ("str_int_op", "image > zzz"),
        ],
        &r,
    );
    assert_eq!(
        got,
        [
            "int_gt",
            "int_eq",
            "dbl_lt",
            "bool_false",
            "bytes_contains",
            "str_lexical_lt",
            "str_startswith",
            "str_icontains"
        ]
    );
}

#[test]
fn arrays_and_key_value_lists() {
    let array = Value::ArrayValue(ArrayValue {
        values: vec![
            AnyValue {
                value: Some(s("system:masters")),
            },
            AnyValue {
                value: Some(s("system:authenticated")),
            },
        ],
    });
    // Upstream searches a key-value list again for the same key.
    let nested = Value::KvlistValue(KeyValueList {
        values: vec![kv("app", s("web")), kv("labels", s("inner"))],
    });
    let other = Value::KvlistValue(KeyValueList {
        values: vec![kv("app", s("web"))],
    });
    let r = record(
        vec![],
        vec![],
        vec![
            kv("user.groups", array),
            kv("labels", nested),
            kv("selector", other),
        ],
    );
    let got = matching(
        &[
            ("arr_contains", "user.groups contains masters"),
            ("arr_startswith", "user.groups startswith system:masters"),
            ("arr_endswith", "user.groups endswith system:authenticated"),
            ("arr_eq_never", "user.groups = system:masters"),
            ("kvlist_same_key", "labels = inner"),
            ("kvlist_other_key", "selector = web"),
            ("exists_top", "selector exists"),
            ("exists_nested_no", "app exists"),
        ],
        &r,
    );
    assert_eq!(
        got,
        [
            "arr_contains",
            "arr_startswith",
            "arr_endswith",
            "kvlist_same_key",
            "exists_top"
        ]
    );
}

#[test]
fn macros_lists_in_and_filters_resolve_as_for_sysflow() {
    let extra = "- list: sensitive_namespaces\n  items: [kube-system, prod]\n\
                 - macro: is_exec\n  condition: (verb = create and subresource = exec)\n\
                 - filter: ignore_health\n  condition: user.name = healthcheck\n";
    let set = rules(
        &[(
            "exec_in_sensitive",
            "is_exec and k8s.namespace.name in (sensitive_namespaces)",
        )],
        extra,
    );
    let hit = record(
        vec![kv("k8s.namespace.name", s("kube-system"))],
        vec![],
        vec![kv("verb", s("create")), kv("subresource", s("exec"))],
    );
    assert_eq!(set.evaluate(&hit), OtelVerdict::Pass(vec![0]));
    let other_ns = record(
        vec![kv("k8s.namespace.name", s("dev"))],
        vec![],
        vec![kv("verb", s("create")), kv("subresource", s("exec"))],
    );
    assert_eq!(set.evaluate(&other_ns), OtelVerdict::Pass(vec![]));
    let health = record(
        vec![kv("k8s.namespace.name", s("prod"))],
        vec![],
        vec![
            kv("user.name", s("healthcheck")),
            kv("verb", s("create")),
            kv("subresource", s("exec")),
        ],
    );
    assert_eq!(set.evaluate(&health), OtelVerdict::Drop);
}

fn scope_strings(r: &ResourceLogs, key: &str) -> Vec<Vec<String>> {
    r.scope_logs
        .iter()
        .filter_map(|sl| sl.scope.as_ref())
        .filter(|sc| sc.name == SCOPE_NAME)
        .map(|sc| {
            sc.attributes
                .iter()
                .filter(|kv| kv.key == key)
                .flat_map(
                    |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::ArrayValue(a)) => a
                            .values
                            .iter()
                            .filter_map(|v| match &v.value {
                                Some(Value::StringValue(s)) => Some(s.clone()),
                                _ => None,
                            })
                            .collect::<Vec<_>>(),
                        _ => Vec::new(),
                    },
                )
                .collect()
        })
        .collect()
}

#[test]
fn results_go_into_a_new_sf_processor_scope_or_the_existing_one() {
    let set = rules(&[("a", "verb = create"), ("b", "verb startswith cr")], "");
    let mut r = record(vec![], vec![], vec![kv("verb", s("create"))]);
    let OtelVerdict::Pass(matched) = set.evaluate(&r) else {
        panic!("not dropped")
    };
    set.contextualize(&mut r, &matched);
    assert_eq!(r.scope_logs.len(), 2, "a new scope at the end");
    assert_eq!(
        scope_strings(&r, RULES_KEY),
        [vec!["a".to_string(), "b".to_string()]]
    );
    assert_eq!(
        scope_strings(&r, TAGS_KEY),
        [vec![
            "t-a".to_string(),
            "shared".to_string(),
            "t-b".to_string()
        ]]
    );
    // A second engine down the line appends to the same scope and attributes.
    let second = rules(&[("c", "verb exists")], "");
    let OtelVerdict::Pass(m2) = second.evaluate(&r) else {
        panic!("not dropped")
    };
    second.contextualize(&mut r, &m2);
    assert_eq!(r.scope_logs.len(), 2, "the sf-processor scope is reused");
    assert_eq!(
        scope_strings(&r, RULES_KEY),
        [vec!["a".to_string(), "b".to_string(), "c".to_string()]]
    );
    assert_eq!(
        scope_strings(&r, TAGS_KEY),
        [vec![
            "t-a".to_string(),
            "shared".to_string(),
            "t-b".to_string(),
            "t-c".to_string(),
            "shared".to_string()
        ]]
    );
}

mod processor {
    use abi_stable::std_types::RStr;
    use prost::Message;
    use sysflow_plugin_api::{Batch, Host, LogLevel, OtelRecord, PluginConfig, Processor};
    use sysflow_policy_engine::PolicyEngine;

    use super::*;

    extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

    const POLICY: &str = "- filter: drop9\n  condition: n = 9\n\
- rule: even\n  desc: d\n  condition: n in (0, 2, 4)\n  priority: high\n  tags: [t1]\n";

    /// Record `i`: log attribute `i` = i, `n` = i % 10 (as a string).
    fn batch(count: usize) -> Vec<OtelRecord> {
        (0..count)
            .map(|i| {
                let r = record(vec![], vec![], vec![kv("i", Value::IntValue(i as i64)), kv("n", s(&(i % 10).to_string()))]);
                OtelRecord::from_proto(r.encode_to_vec())
            })
            .collect()
    }

    fn run(mode: &str, records: Vec<OtelRecord>) -> (Vec<(i64, Vec<String>)>, Vec<(String, u64)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("rules.yaml");
        std::fs::write(&policy, POLICY).expect("write policy");
        let json = serde_json::json!({"policies": policy.to_string_lossy(), "mode": mode, "input.payload": "otel", "concurrency": "2"});
        let config = PluginConfig::from_json(&json.to_string()).expect("config");
        let mut engine = PolicyEngine::new(&config, Host::new(quiet, "policyengine")).expect("engine");
        let out = match engine.process(Batch::otel(records)).expect("process") {
            Some(Batch::Otel(out)) => out.iter().cloned().collect::<Vec<_>>(),
            None => Vec::new(),
            Some(other) => panic!("not OTel: {other:?}"),
        };
        let summary = out
            .iter()
            .map(|r| {
                let rl = ResourceLogs::decode(r.resource_logs.as_slice()).expect("decodes");
                let i = rl.scope_logs[0].log_records[0].attributes.iter().find(|kv| kv.key == "i").and_then(|kv| kv.value.clone()).and_then(|v| v.value);
                let Some(Value::IntValue(i)) = i else { panic!("i: {i:?}") };
                (i, scope_strings(&rl, RULES_KEY).concat())
            })
            .collect();
        let counters = engine.counters().iter().map(|c| (c.name.to_string(), c.value)).collect();
        (summary, counters)
    }

    fn counter(counters: &[(String, u64)], name: &str) -> u64 {
        counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or_else(|| panic!("no counter {name}"))
    }

    #[test]
    fn alert_mode_forwards_only_matches_in_order_over_parallel_workers() {
        let mut records = batch(2000);
        records.insert(5, OtelRecord::from_proto(b"\x0a\xff".to_vec()));
        let (out, counters) = run("alert", records);
        let want: Vec<(i64, Vec<String>)> =
            (0..2000).filter(|i| [0, 2, 4].contains(&(i % 10))).map(|i| (i, vec!["even".to_string()])).collect();
        assert_eq!(out, want);
        assert_eq!(counter(&counters, "records_in"), 2001);
        assert_eq!(counter(&counters, "records_out"), 600);
        assert_eq!(counter(&counters, "filtered"), 200);
        assert_eq!(counter(&counters, "unmatched"), 1200);
        assert_eq!(counter(&counters, "rule_matches"), 600);
        assert_eq!(counter(&counters, "decode_errors"), 1);
    }

    /// `monitor: local` over OTel records: an edited policy file is compiled over OTel
    /// attributes in the background and swapped in between batches; a broken edit is
    /// refused, counted, and the running rules stay.
    #[test]
    fn live_reload_swaps_otel_rules_and_keeps_them_on_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("rules.yaml");
        std::fs::write(&policy, POLICY).expect("write policy");
        let json = serde_json::json!({"policies": dir.path().to_string_lossy(), "input.payload": "otel",
                                      "monitor": "local", "monitor.interval": "0"});
        let config = PluginConfig::from_json(&json.to_string()).expect("config");
        let mut engine = PolicyEngine::new(&config, Host::new(quiet, "policyengine")).expect("engine");
        let matched = |engine: &mut PolicyEngine| -> Vec<i64> {
            match engine.process(Batch::otel(batch(10))).expect("process") {
                Some(Batch::Otel(out)) => out
                    .iter()
                    .map(|r| {
                        let rl = ResourceLogs::decode(r.resource_logs.as_slice()).expect("decodes");
                        match rl.scope_logs[0].log_records[0].attributes.iter().find(|kv| kv.key == "i").and_then(|kv| kv.value.clone()).and_then(|v| v.value) {
                            Some(Value::IntValue(i)) => i,
                            other => panic!("i: {other:?}"),
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let count = |engine: &PolicyEngine, name: &str| {
            engine.counters().iter().find(|c| c.name.as_str() == name).map(|c| c.value).unwrap_or_else(|| panic!("no counter {name}"))
        };
        let wait = |engine: &PolicyEngine, name: &str, want: u64| {
            let start = std::time::Instant::now();
            while count(engine, name) != want {
                assert!(start.elapsed() < std::time::Duration::from_secs(20), "{name} never reached {want}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        assert_eq!(matched(&mut engine), vec![0, 2, 4]);

        std::fs::write(&policy, "- rule: r\n  desc: d\n  condition: (\n").expect("write");
        wait(&engine, "policy_reload_failures", 1);
        assert!(engine.last_reload_error().unwrap_or_default().contains("rules.yaml"));
        assert_eq!(matched(&mut engine), vec![0, 2, 4], "the running rules stay after a broken edit");

        let tmp = dir.path().join("new.tmp");
        std::fs::write(&tmp, "- rule: odd\n  desc: d\n  condition: n in (1, 3)\n  priority: high\n").expect("write");
        std::fs::rename(&tmp, &policy).expect("rename");
        wait(&engine, "policy_reloads", 1);
        assert_eq!(matched(&mut engine), vec![1, 3], "the reloaded rules run over OTel attributes");
    }

    #[test]
    fn enrich_mode_forwards_all_but_filtered_unchanged_or_with_results() {
        let (out, counters) = run("enrich", batch(1000));
        let want: Vec<(i64, Vec<String>)> = (0..1000)
            .filter(|i| i % 10 != 9)
            .map(|i| (i, if [0, 2, 4].contains(&(i % 10)) { vec!["even".to_string()] } else { Vec::new() }))
            .collect();
        assert_eq!(out, want);
        assert_eq!(counter(&counters, "records_out"), 900);
    }
}
