//! The OTel backend's attribute semantics (upstream sf-processor 0.7 `source/otel`): which
//! attribute a key finds, typed comparisons, key-value lists, and where results are written.

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
