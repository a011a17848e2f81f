//! The OTel backend: the same language-neutral [`ir`](crate::ir) compiled a second time, into
//! predicates over OTLP `ResourceLogs` (the records of an `otelchan`), with upstream's
//! attribute semantics (sf-processor 0.7, `source/otel`):
//!
//! * a condition's left side is an attribute key; its right side is always a literal (bounding
//!   quotes trimmed, not split at commas);
//! * the attributes searched are the resource's, then for each scope in order its scope's
//!   attributes followed by its log records' attributes; the FIRST attribute with the key
//!   decides the comparison (a later one with the same key is never looked at);
//! * the comparison follows the attribute's value type: strings compare as text
//!   (`<`/`>` lexically), integers and doubles parse the literal as a number (a literal that
//!   does not parse is false), booleans are false only for a literal `false` (any case),
//!   bytes compare as bytes, arrays answer `contains` for any string element and
//!   `startswith`/`endswith` with their first/last element, and a key-value list is searched
//!   again for the same key;
//! * `exists` holds when any attribute in the list has the key;
//! * `!=` is the negation of `=`, `in` any `=`, `pmatch` any `contains`.
//!
//! A record that matched gets the rule names and their distinct tags in the `sf-processor`
//! scope (`sf.processor.rules`, `sf.processor.tags`), appended to that scope when the record
//! has one, else in a new scope at the end (upstream's contextualiser).

use std::path::PathBuf;

use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue},
    logs::v1::{ResourceLogs, ScopeLogs},
};

use crate::{
    attributes::trim_bounding_quotes,
    error::PolicyWarning,
    eval::Glob,
    ir::{Cond, Op, Operand, PolicySet},
    ruleset::RuleInfo,
};

/// What `-listrules` shows for a policy set run over OTel records: every rule and filter,
/// on every record (no record types, no attribute table: nothing is disabled for its names).
pub fn describe(set: &PolicySet) -> Vec<RuleInfo> {
    let rules = set.rules.iter().map(|r| RuleInfo {
        kind: "rule",
        name: r.name.clone(),
        priority: r.priority,
        tags: r.tags.clone(),
        enabled: r.enabled,
        disabled_reason: None,
        record_types: vec!["otel"],
        position: r.pos.to_string(),
    });
    let filters = set.filters.iter().map(|f| RuleInfo {
        kind: "filter",
        name: f.name.clone(),
        priority: 0,
        tags: Vec::new(),
        enabled: f.enabled,
        disabled_reason: None,
        record_types: vec!["otel"],
        position: f.pos.to_string(),
    });
    filters.chain(rules).collect()
}

/// The scope holding the processor's policy results (upstream's `SF_PROCESSOR_SCOPE_NAME`).
pub const SCOPE_NAME: &str = "sf-processor";
/// Scope attribute listing the matched rule names.
pub const RULES_KEY: &str = "sf.processor.rules";
/// Scope attribute listing the matched rules' distinct tags.
pub const TAGS_KEY: &str = "sf.processor.tags";

/// A compiled condition over OTel attributes.
#[derive(Debug)]
enum Pred {
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    Const(bool),
    /// `key op literal` for any of the literals (one for plain operators, the list for `in`/`pmatch`).
    Cmp {
        key: String,
        op: Op,
        literals: Vec<String>,
    },
    /// `key regex pattern` (string values only); an invalid pattern never matches.
    Regex {
        key: String,
        re: Option<regex::Regex>,
    },
    Exists(String),
}

/// A rule compiled for OTel records.
#[derive(Debug)]
struct OtelRule {
    name: String,
    tags: Vec<String>,
    pred: Pred,
}

/// Rules and drop filters compiled over OTel attributes.
#[derive(Debug, Default)]
pub struct OtelRuleSet {
    rules: Vec<OtelRule>,
    filters: Vec<Pred>,
    /// Rules present but disabled.
    disabled: usize,
    /// The policy files the set was compiled from.
    files: Vec<PathBuf>,
    /// Warnings from loading the policies.
    warnings: Vec<PolicyWarning>,
}

/// What evaluating one record decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtelVerdict {
    /// A drop filter held: the record goes no further.
    Drop,
    /// Indexes of the matched rules, in evaluation order (empty: none matched).
    Pass(Vec<usize>),
}

impl OtelRuleSet {
    /// Compiles a front end's policy set (Falco or Sigma, macros and lists already resolved).
    pub fn compile(set: &PolicySet) -> OtelRuleSet {
        let mut out = OtelRuleSet { files: set.files.clone(), warnings: set.warnings.clone(), ..OtelRuleSet::default() };
        for rule in &set.rules {
            if !rule.enabled {
                out.disabled += 1;
                continue;
            }
            out.rules.push(OtelRule {
                name: rule.name.clone(),
                tags: rule.tags.clone(),
                pred: compile(&rule.condition),
            });
        }
        out.filters = set
            .filters
            .iter()
            .filter(|f| f.enabled)
            .map(|f| compile(&f.condition))
            .collect();
        out
    }

    /// The policy files the set was compiled from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Warnings from loading the policies.
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }

    /// Enabled rules.
    pub fn enabled_rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every rule, enabled or not.
    pub fn rule_count(&self) -> usize {
        self.rules.len() + self.disabled
    }

    /// Enabled drop filters.
    pub fn filter_count(&self) -> usize {
        self.filters.len()
    }

    /// Evaluates the filters, then every rule, over `record`'s attributes.
    pub fn evaluate(&self, record: &ResourceLogs) -> OtelVerdict {
        let attrs = attributes(record);
        if self.filters.iter().any(|f| holds(f, &attrs)) {
            return OtelVerdict::Drop;
        }
        OtelVerdict::Pass(
            self.rules
                .iter()
                .enumerate()
                .filter(|(_, r)| holds(&r.pred, &attrs))
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// Writes the names and distinct tags of `matched` (indexes from [`OtelRuleSet::evaluate`])
    /// into `record`'s `sf-processor` scope.
    pub fn contextualize(&self, record: &mut ResourceLogs, matched: &[usize]) {
        let rules: Vec<&OtelRule> = matched.iter().filter_map(|&i| self.rules.get(i)).collect();
        if rules.is_empty() {
            return;
        }
        let scope = processor_scope(record);
        append_strings(
            &mut scope.attributes,
            RULES_KEY,
            rules.iter().map(|r| r.name.as_str()),
        );
        let mut tags: Vec<&str> = Vec::new();
        for tag in rules.iter().flat_map(|r| r.tags.iter()) {
            if !tags.contains(&tag.as_str()) {
                tags.push(tag);
            }
        }
        append_strings(&mut scope.attributes, TAGS_KEY, tags.into_iter());
    }
}

/// The attribute list conditions look keys up in, in upstream's order.
fn attributes(record: &ResourceLogs) -> Vec<&KeyValue> {
    let mut all: Vec<&KeyValue> = record
        .resource
        .iter()
        .flat_map(|r| r.attributes.iter())
        .collect();
    for sl in &record.scope_logs {
        all.extend(sl.scope.iter().flat_map(|s| s.attributes.iter()));
        all.extend(sl.log_records.iter().flat_map(|l| l.attributes.iter()));
    }
    all
}

/// The record's `sf-processor` scope, created at the end when it has none.
fn processor_scope(record: &mut ResourceLogs) -> &mut InstrumentationScope {
    let at = record
        .scope_logs
        .iter()
        .position(|sl| sl.scope.as_ref().is_some_and(|s| s.name == SCOPE_NAME));
    let at = match at {
        Some(i) => i,
        None => {
            record.scope_logs.push(ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    ..InstrumentationScope::default()
                }),
                ..ScopeLogs::default()
            });
            record.scope_logs.len() - 1
        }
    };
    record.scope_logs[at]
        .scope
        .get_or_insert_with(InstrumentationScope::default)
}

/// Appends `values` to the string array attribute `key`, creating it (or replacing a value
/// of another type) as needed.
fn append_strings<'a>(attrs: &mut Vec<KeyValue>, key: &str, values: impl Iterator<Item = &'a str>) {
    let string = |s: &str| AnyValue {
        value: Some(Value::StringValue(s.to_string())),
    };
    let at = match attrs.iter().position(|kv| kv.key == key) {
        Some(i) => i,
        None => {
            attrs.push(KeyValue {
                key: key.to_string(),
                ..KeyValue::default()
            });
            attrs.len() - 1
        }
    };
    let slot = &mut attrs[at].value;
    if !matches!(
        slot,
        Some(AnyValue {
            value: Some(Value::ArrayValue(_))
        })
    ) {
        *slot = Some(AnyValue {
            value: Some(Value::ArrayValue(ArrayValue::default())),
        });
    }
    if let Some(AnyValue {
        value: Some(Value::ArrayValue(array)),
    }) = slot
    {
        array.values.extend(values.map(string));
    }
}

fn key_of(operand: &Operand) -> String {
    trim_bounding_quotes(operand.text()).to_string()
}

fn compile(cond: &Cond) -> Pred {
    match cond {
        Cond::And(v) => Pred::And(v.iter().map(compile).collect()),
        Cond::Or(v) => Pred::Or(v.iter().map(compile).collect()),
        Cond::Not(c) => Pred::Not(Box::new(compile(c))),
        Cond::Const(b) => Pred::Const(*b),
        Cond::Exists(o) => Pred::Exists(key_of(o)),
        Cond::Cmp { lhs, op, rhs } => {
            let key = key_of(lhs);
            let literals: Vec<String> = rhs.iter().map(key_of).collect();
            match op {
                Op::Ne => Pred::Not(Box::new(Pred::Cmp {
                    key,
                    op: Op::Eq,
                    literals,
                })),
                Op::In => Pred::Cmp {
                    key,
                    op: Op::Eq,
                    literals,
                },
                Op::Pmatch => Pred::Cmp {
                    key,
                    op: Op::Contains,
                    literals,
                },
                Op::Regex => Pred::Regex {
                    key,
                    re: literals.first().and_then(|p| regex::Regex::new(p).ok()),
                },
                op => Pred::Cmp {
                    key,
                    op: *op,
                    literals,
                },
            }
        }
    }
}

fn holds(pred: &Pred, attrs: &[&KeyValue]) -> bool {
    match pred {
        Pred::And(v) => v.iter().all(|p| holds(p, attrs)),
        Pred::Or(v) => v.iter().any(|p| holds(p, attrs)),
        Pred::Not(p) => !holds(p, attrs),
        Pred::Const(b) => *b,
        Pred::Exists(key) => attrs.iter().any(|kv| kv.key == *key),
        Pred::Cmp { key, op, literals } => literals
            .iter()
            .any(|lit| compare(attrs.iter().copied(), key, *op, lit)),
        Pred::Regex { key, re } => match (first(attrs.iter().copied(), key), re) {
            (Some(Value::StringValue(s)), Some(re)) => re.is_match(s),
            _ => false,
        },
    }
}

/// The value of the first attribute named `key`.
fn first<'a>(mut attrs: impl Iterator<Item = &'a KeyValue>, key: &str) -> Option<&'a Value> {
    attrs
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// `first(key) op literal`, typed by the attribute's value.
fn compare<'a>(
    mut attrs: impl Iterator<Item = &'a KeyValue>,
    key: &str,
    op: Op,
    literal: &str,
) -> bool {
    let Some(kv) = attrs.find(|kv| kv.key == key) else {
        return false;
    };
    let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
        return false;
    };
    match value {
        Value::StringValue(s) => compare_str(s, op, literal),
        Value::BoolValue(b) => {
            matches!(op, Op::Eq | Op::IEq) && *b == !literal.eq_ignore_ascii_case("false")
        }
        Value::IntValue(i) => literal
            .trim()
            .parse::<i64>()
            .is_ok_and(|l| compare_ord(i.cmp(&l), op)),
        Value::DoubleValue(d) => literal
            .trim()
            .parse::<f64>()
            .is_ok_and(|l| d.partial_cmp(&l).is_some_and(|o| compare_ord(o, op))),
        Value::BytesValue(b) => compare_bytes(b, op, literal.as_bytes()),
        Value::ArrayValue(a) => compare_array(&a.values, op, literal),
        Value::KvlistValue(list) => compare(list.values.iter(), key, op, literal),
        // A string-table reference (profiles signal): there is no table to resolve it with here.
        Value::StringValueStrindex(_) => false,
    }
}

fn compare_ord(o: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => o == Equal,
        Op::Lt => o == Less,
        Op::Le => o != Greater,
        Op::Gt => o == Greater,
        Op::Ge => o != Less,
        _ => false,
    }
}

fn compare_str(s: &str, op: Op, l: &str) -> bool {
    match op {
        Op::Eq => s == l,
        Op::IEq => s.to_lowercase() == l.to_lowercase(),
        Op::Contains => s.contains(l),
        Op::IContains => s.to_lowercase().contains(&l.to_lowercase()),
        Op::StartsWith => s.starts_with(l),
        Op::IStartsWith => s.to_lowercase().starts_with(&l.to_lowercase()),
        Op::EndsWith => s.ends_with(l),
        Op::IEndsWith => s.to_lowercase().ends_with(&l.to_lowercase()),
        Op::Glob => Glob::new(l).matches(s),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => compare_ord(s.cmp(l), op),
        Op::Ne | Op::In | Op::Pmatch | Op::Regex => false,
    }
}

fn compare_bytes(b: &[u8], op: Op, l: &[u8]) -> bool {
    match op {
        Op::Eq => b == l,
        Op::IEq => b.eq_ignore_ascii_case(l),
        Op::Contains => l.is_empty() || b.windows(l.len()).any(|w| w == l),
        Op::StartsWith => b.starts_with(l),
        Op::EndsWith => b.ends_with(l),
        _ => false,
    }
}

/// Upstream's array semantics: `contains` over string elements, `startswith`/`endswith`
/// equal to the first/last element; no other operator holds.
fn compare_array(values: &[AnyValue], op: Op, l: &str) -> bool {
    fn string(v: &AnyValue) -> Option<&str> {
        match &v.value {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    }
    match op {
        Op::Contains | Op::IContains => values
            .iter()
            .filter_map(string)
            .any(|s| compare_str(s, op, l)),
        Op::StartsWith => values.first().and_then(string).is_some_and(|s| s == l),
        Op::IStartsWith => values
            .first()
            .and_then(string)
            .is_some_and(|s| s.to_lowercase() == l.to_lowercase()),
        Op::EndsWith => values.last().and_then(string).is_some_and(|s| s == l),
        Op::IEndsWith => values
            .last()
            .and_then(string)
            .is_some_and(|s| s.to_lowercase() == l.to_lowercase()),
        _ => false,
    }
}
