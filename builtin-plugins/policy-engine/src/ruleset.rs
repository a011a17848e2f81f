//! Compiling a [`PolicySet`] into a [`RuleSet`] and evaluating it on flat records.
//!
//! Rules are bucketed by record type: a rule's bucket set comes from its `prefilter` and
//! from `sf.type` tests in its condition (each bucket holds the condition specialised for
//! that type, with type tests folded to constants), so a record only meets rules that
//! can match it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use abi_stable::std_types::{RArc, RString, RVec};
use sysflow_plugin_api::{opflags, FlatRecord, RecordType, RuleMatch};

use crate::{
    dialect::{self, Dialect},
    output_template::OutputTemplate,
    actions::{ActionRegistry, RuleAction},
    attributes::{self, Attr},
    error::PolicyWarning,
    eval::{literal_int, literal_pieces, set_bit, type_bit, IntVal, Matcher, Pred, RuleIndex, Scratch, TypeMask, Val},
    ir::{Cond, Op, Operand, PolicySet},
    position::SourcePos,
    jsonpath::JsonPath,
    limits,
};

/// The record types a flat record can have.
pub const EVENT_TYPES: [RecordType; 7] = [
    RecordType::ProcessEvent,
    RecordType::NetworkFlow,
    RecordType::FileFlow,
    RecordType::FileEvent,
    RecordType::NetworkEvent,
    RecordType::ProcessFlow,
    RecordType::K8sEvent,
];

/// What to do with names written like attributes that the attribute table does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownAttributes {
    /// Disable the rule (or filter) with one warning (default).
    #[default]
    Disable,
    /// Compare the name as a string literal, as upstream does.
    Literal,
}

/// Compiler settings.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Handling of unknown attributes.
    pub unknown_attributes: UnknownAttributes,
    /// Actions rules may name.
    pub actions: ActionRegistry,
    /// What Falco names mean (`dialect` key).
    pub dialect: Dialect,
    /// Benchmarking (`bench.rulesetsize`): keep only the first N rules (`None`: off).
    pub bench_ruleset_size: Option<usize>,
    /// Benchmarking (`bench.ruleindex`): keep only rule #i, counted from 0 in load
    /// order; takes precedence over `bench_ruleset_size` (`None`: off).
    pub bench_rule_index: Option<usize>,
}

/// A compiled rule.
pub struct CompiledRule {
    /// The match record attached to records (name, desc, priority, tags).
    pub matched: RArc<RuleMatch>,
    /// The output template rendered for each alert (only under `"dialect": "falco"`).
    pub output: Option<OutputTemplate>,
    /// Enabled (by the policy, and not disabled by the compiler).
    pub enabled: bool,
    /// Why the compiler disabled the rule.
    pub disabled_reason: Option<String>,
    /// Attribute-like names the attribute table does not know (they disable the rule).
    pub unknown_attributes: Vec<String>,
    /// Record types the rule applies to.
    pub types: TypeMask,
    /// Where it was written.
    pub pos: SourcePos,
    actions: Vec<Arc<dyn RuleAction>>,
}

struct CompiledFilter {
    name: String,
    enabled: bool,
    disabled_reason: Option<String>,
    types: TypeMask,
    pos: SourcePos,
}

/// Below this many rules keyed on one attribute, a bucket does not index them.
const MIN_INDEXED_RULES: usize = 8;
/// At most this many attribute indexes per bucket.
const MAX_INDEXES: usize = 3;

/// A rule needs only this many rules sharing a guard conjunct to form a guard group.
const MIN_GUARDED_RULES: usize = 2;

/// A set of rule positions in a bucket, one bit per rule.
type RuleBits = Vec<u64>;

/// Rules of a bucket that share a necessary conjunct (a shared sub-condition such as a
/// macro used by many rules, or an op-flag test): when the conjunct is false, none of
/// them is tested.
struct GuardGroup {
    guard: Pred,
    rules: RuleBits,
}

#[derive(Default)]
struct Bucket {
    filters: Vec<Pred>,
    rules: Vec<(u32, Pred)>,
    /// Dispatch indexes over `rules`.
    indexes: Vec<RuleIndex>,
    /// Guard groups over the rules no index covers.
    groups: Vec<GuardGroup>,
    /// The rules neither an index nor a group covers: tested on every record.
    always: RuleBits,
}

/// The necessary conjuncts of a rule condition that can guard a group, with a key that
/// is equal for identical conjuncts.
fn guard_candidates(p: &Pred) -> Vec<(String, &Pred)> {
    let conjuncts: Vec<&Pred> = match p {
        Pred::And(v) => v.iter().collect(),
        p => vec![p],
    };
    conjuncts
        .into_iter()
        .filter_map(|c| {
            let key = match c {
                Pred::Memo(slot, _) => format!("memo {slot}"),
                Pred::EntityMemo { entity, slot, .. } => format!("entity {entity:?} {slot}"),
                Pred::OpFlags { .. } | Pred::OpenFlags { .. } => format!("{c:?}"),
                _ => return None,
            };
            Some((key, c))
        })
        .collect()
}

/// The key that the most rules have among their keys (each rule counted once per key),
/// with how many rules have it; ties go to the first seen, which keeps compilation
/// deterministic.
fn most_shared<K: PartialEq>(keys_per_rule: impl Iterator<Item = Vec<K>>) -> Option<(K, usize)> {
    let mut counts: Vec<(K, usize)> = Vec::new();
    for mut keys in keys_per_rule {
        let mut i = 0;
        while i < keys.len() {
            if keys[..i].contains(&keys[i]) {
                keys.swap_remove(i);
                continue;
            }
            i += 1;
        }
        for k in keys {
            match counts.iter_mut().find(|(c, _)| *c == k) {
                Some(c) => c.1 += 1,
                None => counts.push((k, 1)),
            }
        }
    }
    let mut best: Option<(K, usize)> = None;
    for (k, n) in counts {
        if best.as_ref().is_none_or(|(_, b)| n > *b) {
            best = Some((k, n));
        }
    }
    best
}

impl Bucket {
    /// Builds dispatch indexes, then guard groups over the rest: repeatedly picks the
    /// attribute (then the guard conjunct) that the most remaining rules share.
    fn build_dispatch(&mut self) {
        let mut left: Vec<u32> = (0..self.rules.len() as u32).collect();
        while self.indexes.len() < MAX_INDEXES {
            let keys = left.iter().map(|&pos| self.rules[pos as usize].1.eq_keys().into_iter().map(|(a, _)| a).collect());
            let Some((attr, n)) = most_shared(keys) else { break };
            if n < MIN_INDEXED_RULES {
                break;
            }
            let mut ix = RuleIndex::new(attr);
            left.retain(|&pos| {
                let keys = self.rules[pos as usize].1.eq_keys();
                // Several conjuncts on the attribute: any one of them is a valid key.
                match keys.iter().find(|(a, _)| *a == attr) {
                    Some((_, values)) => {
                        ix.insert(values, pos);
                        false
                    }
                    None => true,
                }
            });
            self.indexes.push(ix);
        }
        let words = self.rules.len().div_ceil(64);
        loop {
            let keys = left.iter().map(|&pos| guard_candidates(&self.rules[pos as usize].1).into_iter().map(|(k, _)| k).collect());
            let Some((key, n)) = most_shared(keys) else { break };
            if n < MIN_GUARDED_RULES {
                break;
            }
            let mut guard = None;
            let mut rules = vec![0u64; words];
            let all = &self.rules;
            left.retain(|&pos| {
                let cands = guard_candidates(&all[pos as usize].1);
                match cands.into_iter().find(|(k, _)| *k == key) {
                    Some((_, c)) => {
                        guard.get_or_insert_with(|| c.clone());
                        set_bit(&mut rules, pos);
                        false
                    }
                    None => true,
                }
            });
            match guard {
                Some(guard) => self.groups.push(GuardGroup { guard, rules }),
                None => break,
            }
        }
        self.always = vec![0u64; words];
        for pos in left {
            set_bit(&mut self.always, pos);
        }
    }
}

/// A compiled, immutable rule set: share it between threads with `Arc`.
pub struct RuleSet {
    /// Distinguishes rule sets in per-thread caches (slot numbers differ between sets).
    id: u64,
    entity_slots: usize,
    rules: Vec<CompiledRule>,
    filters: Vec<CompiledFilter>,
    buckets: Vec<Bucket>,
    warnings: Vec<PolicyWarning>,
    files: Vec<PathBuf>,
    memo_slots: usize,
}

/// One rule as listed by [`RuleSet::describe`].
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    /// `rule` or `filter`.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Priority ordinal (filters: 0).
    pub priority: i32,
    /// Tags.
    pub tags: Vec<String>,
    /// Whether it runs.
    pub enabled: bool,
    /// Why it is disabled, when it is.
    pub disabled_reason: Option<String>,
    /// Record types it is evaluated on (short names).
    pub record_types: Vec<&'static str>,
    /// file:line:column.
    pub position: String,
}

impl std::fmt::Display for RuleInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\t{}\t[{}]\t", self.kind, self.name, self.record_types.join(","))?;
        if self.kind == "rule" {
            write!(f, "priority={}\ttags={}\t", self.priority, self.tags.join(","))?;
        }
        match (&self.disabled_reason, self.enabled) {
            (Some(r), _) => write!(f, "disabled ({r})")?,
            (None, false) => write!(f, "disabled")?,
            (None, true) => write!(f, "enabled")?,
        }
        write!(f, "\t{}", self.position)
    }
}

/// The outcome of evaluating one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A drop filter held: discard the record.
    Drop,
    /// The record passes; `matched` rules were appended to its context.
    Pass {
        /// Number of rules that matched.
        matched: u32,
    },
}

/// Per-thread evaluation state (cache-line aligned: workers' states sit side by side).
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct EvalState {
    scratch: Scratch,
    /// The rules to test on the current record (bit per rule position in its bucket).
    candidates: Vec<u64>,
    /// The rule set the scratch caches were filled by (0: none).
    ruleset: u64,
    /// Action errors since the last drain: (action index in rule, message).
    pub action_errors: Vec<String>,
}

/// Rules (and filters) named in full in the system-call-name warning of a file.
const SYSCALL_WARNING_NAMES: usize = 5;

/// One warning per file for its conditions that compare `evt.type` with system call names
/// in the default dialect, at the first of them.
fn syscall_name_warnings(uses: Vec<(SourcePos, String, Vec<String>)>) -> Vec<PolicyWarning> {
    let mut by_file: Vec<(SourcePos, Vec<String>)> = Vec::new();
    for (pos, what, names) in uses {
        let entry = format!("{what} ({})", names.join(", "));
        match by_file.iter_mut().find(|(p, _)| p.file == pos.file) {
            Some((_, v)) => v.push(entry),
            None => by_file.push((pos, vec![entry])),
        }
    }
    by_file
        .into_iter()
        .map(|(pos, entries)| {
            let n = entries.len();
            let mut listed = entries.into_iter().take(SYSCALL_WARNING_NAMES).collect::<Vec<_>>().join(", ");
            if n > SYSCALL_WARNING_NAMES {
                listed.push_str(&format!(" and {} more", n - SYSCALL_WARNING_NAMES));
            }
            let message = format!(
                "{n} condition(s) compare evt.type with system call names, which never match in the default dialect \
                 (SysFlow operation names such as EXEC, OPEN): {listed}; set \"dialect\": \"falco\" on the policy engine"
            );
            PolicyWarning { pos, message }
        })
        .collect()
}

/// Lists unknown names with a "did you mean" hint where one is close.
fn describe_unknown(names: &[String], dialect: Dialect) -> String {
    names
        .iter()
        .map(|n| match dialect::suggest(n, dialect) {
            Some(s) => format!("{n} (did you mean {s}?)"),
            None => n.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn mask_names(mask: TypeMask) -> Vec<&'static str> {
    EVENT_TYPES.iter().filter(|t| mask & type_bit(**t) != 0).map(|t| t.short_name()).collect()
}

/// An operand resolved against the attribute table.
#[derive(Clone)]
enum Resolved {
    Attr(Attr),
    Json(Attr, JsonPath),
    Index(Attr, usize),
    /// A literal: raw text (quotes kept).
    Lit(String),
}

struct Compiler<'o> {
    opts: &'o CompileOptions,
    unknown: Vec<String>,
    /// Other reasons the condition cannot run (e.g. a regular expression that does not
    /// compile).
    invalid: Vec<String>,
    /// `evt.type` values that are system call names in the default dialect (they never
    /// match; warned about once per file).
    syscall_names: Vec<String>,
    /// Structural numbers of the set's sub-conditions, with their occurrence counts.
    subtrees: &'o mut SubtreeIds,
    /// Memo slots assigned so far, by structural number.
    slots: &'o mut std::collections::HashMap<u32, u32>,
    /// Entity-cache slots assigned so far, by structural number.
    entity_slots: &'o mut std::collections::HashMap<u32, u32>,
}

/// Numbers structurally identical sub-conditions alike (macros expand to identical
/// trees) and counts them. A node's key is its kind and its children's numbers, so the
/// keys of a whole tree take space linear in its size, however deep it is.
#[derive(Default)]
struct SubtreeIds {
    ids: std::collections::HashMap<String, u32>,
    /// Occurrences in the set, by number.
    counts: Vec<u32>,
    /// Policy files by address, numbered for keys (one `Arc` per file read).
    files: std::collections::HashMap<*const PathBuf, u32>,
}

impl SubtreeIds {
    /// The number of the node `c` whose children have the numbers `children`.
    fn id(&mut self, c: &Cond, children: &[u32]) -> u32 {
        use std::fmt::Write;
        let mut key = String::new();
        // Texts are written with their length, so that no text can fake a separator;
        // a name's position stays in the key (as before numbering), with the file by number.
        let _ = match c {
            Cond::And(_) => write!(key, "and{children:?}"),
            Cond::Or(_) => write!(key, "or{children:?}"),
            Cond::Not(_) => write!(key, "not{children:?}"),
            Cond::Const(b) => write!(key, "const {b}"),
            Cond::Exists(o) => {
                key.push_str("exists");
                self.operand_key(o, &mut key)
            }
            Cond::Cmp { lhs, op, rhs } => {
                let _ = write!(key, "{op:?}");
                let _ = self.operand_key(lhs, &mut key);
                rhs.iter().try_for_each(|r| self.operand_key(r, &mut key))
            }
        };
        let next = self.ids.len() as u32;
        *self.ids.entry(key).or_insert(next)
    }

    fn operand_key(&mut self, o: &Operand, key: &mut String) -> std::fmt::Result {
        use std::fmt::Write;
        match o {
            Operand::Literal(t) => write!(key, " L{}:{t}", t.len()),
            Operand::Name { text, pos } => {
                let next = self.files.len() as u32;
                let file = *self.files.entry(Arc::as_ptr(&pos.file)).or_insert(next);
                write!(key, " N{}:{text}@{file}:{}:{}", text.len(), pos.line, pos.col)
            }
        }
    }

    /// Numbers every sub-condition of `c` and counts it; returns the number of `c`.
    fn count(&mut self, c: &Cond) -> u32 {
        let children: Vec<u32> = match c {
            Cond::And(v) | Cond::Or(v) => v.iter().map(|x| self.count(x)).collect(),
            Cond::Not(x) => vec![self.count(x)],
            _ => Vec::new(),
        };
        let id = self.id(c, &children);
        if self.counts.len() <= id as usize {
            self.counts.resize(id as usize + 1, 0);
        }
        self.counts[id as usize] += 1;
        id
    }

    /// How often the sub-condition numbered `id` occurs in the set.
    fn occurrences(&self, id: u32) -> u32 {
        self.counts.get(id as usize).copied().unwrap_or(0)
    }
}

/// Flattens nested disjunctions and merges literal tests of the same attribute and
/// operator family into one matcher (`a = x or a = y` → one set lookup).
fn merge_or(preds: Vec<Pred>) -> Vec<Pred> {
    let family = |op: Op| match op {
        Op::Eq | Op::In => Some(Op::In),
        Op::Contains | Op::Pmatch => Some(Op::Pmatch),
        Op::StartsWith
        | Op::EndsWith
        | Op::IContains
        | Op::Glob
        | Op::IEq
        | Op::IStartsWith
        | Op::IEndsWith
        | Op::Regex => Some(op),
        _ => None,
    };
    let mut flat = Vec::with_capacity(preds.len());
    for p in preds {
        match p {
            Pred::Or(inner) => flat.extend(merge_or(inner.into_vec())),
            p => flat.push(p),
        }
    }
    let mut out: Vec<Pred> = Vec::with_capacity(flat.len());
    // The first test of each attribute and family, which the later ones merge into; its
    // matcher is built once, after all merges (per merge would be quadratic).
    let mut first: std::collections::HashMap<(Attr, Op), usize> = std::collections::HashMap::new();
    let mut merged = std::collections::BTreeSet::new();
    for p in flat {
        if let Pred::Str { lhs: Val::Attr(a), op, pieces, .. } = &p {
            if let Some(fam) = family(*op) {
                match first.get(&(*a, fam)) {
                    Some(&i) => {
                        if let Some(Pred::Str { pieces: qp, op: qop, .. }) = out.get_mut(i) {
                            qp.extend(pieces.iter().cloned());
                            merged.insert(i);
                            *qop = fam;
                            continue;
                        }
                    }
                    None => {
                        first.insert((*a, fam), out.len());
                    }
                }
            }
        }
        out.push(p);
    }
    for i in merged {
        if let Some(Pred::Str { pieces, m, op, .. }) = out.get_mut(i) {
            *m = Matcher::new(*op, pieces.clone());
        }
    }
    out
}

impl Compiler<'_> {
    /// Why the condition just compiled cannot run, if it cannot.
    fn disabled_reason(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if !self.unknown.is_empty() {
            reasons.push(format!("unknown attribute(s) {}", describe_unknown(&self.unknown, self.opts.dialect)));
        }
        reasons.extend(self.invalid.iter().cloned());
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    fn resolve(&mut self, o: &Operand, string_op: bool) -> Resolved {
        let (text, _pos) = match o {
            Operand::Literal(t) => return Resolved::Lit(t.clone()),
            Operand::Name { text, pos } => (text, pos),
        };
        if self.opts.dialect == Dialect::Falco {
            if let Some(a) = dialect::falco_field(text) {
                return Resolved::Attr(a);
            }
        }
        if let Some(a) = attributes::lookup(text) {
            return Resolved::Attr(a);
        }
        if let Some((base, rest)) = text.split_once('[') {
            if let (Some(a), Some(path)) = (attributes::lookup(base), rest.strip_suffix(']')) {
                if !string_op {
                    // Upstream: with integer operators and `exists` the text is a literal.
                    return Resolved::Lit(text.clone());
                }
                if a.is_indexable() && !path.is_empty() && path.bytes().all(|b| b.is_ascii_digit()) {
                    return Resolved::Index(a, path.parse().unwrap_or(usize::MAX));
                }
                return Resolved::Json(a, JsonPath::parse(path));
            }
        }
        let base = text.split_once('[').map(|(b, _)| b).unwrap_or(text);
        if self.opts.unknown_attributes == UnknownAttributes::Disable
            && attributes::looks_like_attribute(base)
            && !self.unknown.contains(text)
        {
            self.unknown.push(text.clone());
        }
        Resolved::Lit(text.clone())
    }

    fn val(r: Resolved) -> Val {
        match r {
            Resolved::Attr(a) => Val::Attr(a),
            Resolved::Json(a, p) => Val::Json(a, p),
            Resolved::Index(a, i) => Val::Index(a, i),
            Resolved::Lit(t) => Val::Lit(sysflow_plugin_api::flat::trim_bounding_quotes(&t).to_string()),
        }
    }

    /// Compiles a sub-condition; returns it with its structural number.
    fn cond(&mut self, c: &Cond) -> (Pred, u32) {
        let mut children = Vec::new();
        let p = self.cond_inner(c, &mut children);
        let key = self.subtrees.id(c, &children);
        if let Some(entity) = p.cacheable_entity() {
            let next = self.entity_slots.len() as u32;
            let slot = *self.entity_slots.entry(key).or_insert(next);
            return (Pred::EntityMemo { entity, slot, pred: Box::new(p.without_entity_memos()) }, key);
        }
        let trivial = matches!(p, Pred::Const(_) | Pred::TypeIn(_) | Pred::OpFlags { .. } | Pred::OpenFlags { .. })
            || matches!(&p, Pred::Not(q) if matches!(**q, Pred::Const(_) | Pred::TypeIn(_) | Pred::OpFlags { .. }));
        if trivial || self.subtrees.occurrences(key) < 2 {
            return (p, key);
        }
        let next = self.slots.len() as u32;
        let slot = *self.slots.entry(key).or_insert(next);
        (Pred::Memo(slot, Box::new(p)), key)
    }

    /// Compiles the node itself; the structural numbers of its children go to `children`.
    fn cond_inner(&mut self, c: &Cond, children: &mut Vec<u32>) -> Pred {
        let mut sub = |this: &mut Self, x: &Cond| {
            let (p, id) = this.cond(x);
            children.push(id);
            p
        };
        match c {
            Cond::And(v) => {
                // `not a and not b` = `not (a or b)`: merge negated literal tests too.
                let preds: Vec<Pred> = v.iter().map(|x| sub(self, x)).collect();
                let (negs, mut rest): (Vec<Pred>, Vec<Pred>) =
                    preds.into_iter().partition(|p| matches!(p, Pred::Not(q) if matches!(**q, Pred::Str { .. })));
                if negs.len() > 1 {
                    let inner: Vec<Pred> = negs
                        .into_iter()
                        .filter_map(|p| match p {
                            Pred::Not(q) => Some(*q),
                            _ => None,
                        })
                        .collect();
                    for m in merge_or(inner) {
                        rest.push(Pred::Not(Box::new(m)));
                    }
                } else {
                    rest.extend(negs);
                }
                if rest.len() == 1 {
                    rest.pop().unwrap_or(Pred::Const(true))
                } else {
                    Pred::And(rest.into_boxed_slice())
                }
            }
            Cond::Or(v) => {
                let preds: Vec<Pred> = v.iter().map(|x| sub(self, x)).collect();
                let mut merged = merge_or(preds);
                if merged.len() == 1 {
                    merged.pop().unwrap_or(Pred::Const(false))
                } else {
                    Pred::Or(merged.into_boxed_slice())
                }
            }
            Cond::Not(x) => Pred::Not(Box::new(sub(self, x))),
            Cond::Const(b) => Pred::Const(*b),
            Cond::Exists(o) => match self.resolve(o, false) {
                Resolved::Attr(a) => Pred::Exists(a),
                _ => Pred::Const(true),
            },
            Cond::Cmp { lhs, op, rhs } => self.cmp(lhs, *op, rhs),
        }
    }

    fn cmp(&mut self, lhs: &Operand, op: Op, rhs: &[Operand]) -> Pred {
        if op.is_integer() {
            let int_val = |r: Resolved| match r {
                Resolved::Attr(a) => IntVal::Attr(a),
                Resolved::Lit(t) => IntVal::Lit(literal_int(&t)),
                Resolved::Json(..) | Resolved::Index(..) => IntVal::Lit(0),
            };
            let l = int_val(self.resolve(lhs, false));
            let Some(r0) = rhs.first() else { return Pred::Const(false) };
            let r = int_val(self.resolve(r0, false));
            if let (IntVal::Lit(a), IntVal::Lit(b)) = (&l, &r) {
                return Pred::Const(match op {
                    Op::Lt => a < b,
                    Op::Le => a <= b,
                    Op::Gt => a > b,
                    _ => a >= b,
                });
            }
            return Pred::Int { lhs: l, op, rhs: r };
        }
        let negate = op == Op::Ne;
        let base_op = if negate { Op::Eq } else { op };
        let l = self.resolve(lhs, true);
        let rs: Vec<Resolved> = rhs.iter().map(|o| self.resolve(o, true)).collect();
        let pred = if rs.iter().all(|r| matches!(r, Resolved::Lit(_))) {
            let mut pieces = Vec::new();
            for r in &rs {
                if let Resolved::Lit(t) = r {
                    if base_op == Op::Regex {
                        // A pattern's commas are part of it (`a{1,3}`).
                        let pattern = sysflow_plugin_api::flat::trim_bounding_quotes(t);
                        if let Err(e) = regex::Regex::new(pattern) {
                            self.invalid.push(format!("invalid regular expression '{pattern}': {e}"));
                        }
                        pieces.push(pattern.to_string());
                    } else {
                        literal_pieces(t, &mut pieces);
                    }
                }
            }
            if base_op == Op::Pmatch && self.opts.dialect == Dialect::Falco {
                // Falco's pmatch: the path is one of the prefixes or lies below one.
                let below: Vec<String> = pieces.iter().map(|p| format!("{}/", p.trim_end_matches('/'))).collect();
                let equal = self.literal_cmp(l.clone(), Op::Eq, pieces);
                let under = self.literal_cmp(l, Op::StartsWith, below);
                Pred::Or(vec![equal, under].into_boxed_slice())
            } else {
                self.literal_cmp(l, base_op, pieces)
            }
        } else {
            // A non-literal right side (e.g. `sf.proc.exe = sf.pproc.exe`): one per element.
            let lv = Self::val(l);
            let alts: Vec<Pred> = rs
                .into_iter()
                .map(|r| Pred::StrDyn { lhs: lv.clone(), op: base_op, rhs: Self::val(r) })
                .collect();
            if alts.len() == 1 {
                alts.into_iter().next().unwrap_or(Pred::Const(false))
            } else {
                Pred::Or(alts.into_boxed_slice())
            }
        };
        if negate {
            match pred {
                Pred::Const(b) => Pred::Const(!b),
                p => Pred::Not(Box::new(p)),
            }
        } else {
            pred
        }
    }

    fn literal_cmp(&mut self, l: Resolved, op: Op, pieces: Vec<String>) -> Pred {
        match (&l, op) {
            (Resolved::Attr(Attr::Type), Op::Eq | Op::In) => {
                let mask = pieces
                    .iter()
                    .filter_map(|p| RecordType::from_short_name(p))
                    .fold(0, |m, t| m | type_bit(t));
                return Pred::TypeIn(mask);
            }
            (Resolved::Attr(Attr::OpFlags), Op::Eq | Op::In) => {
                let pieces: Vec<String> = match self.opts.dialect {
                    // Falco: system call names, each as the SysFlow operation it is recorded as.
                    Dialect::Falco => {
                        pieces.iter().map(|p| dialect::syscall_op(p).map(str::to_string).unwrap_or_else(|| p.clone())).collect()
                    }
                    Dialect::Sysflow => {
                        let foreign: Vec<&str> = pieces
                            .iter()
                            .map(String::as_str)
                            .filter(|p| !p.is_empty() && dialect::syscall_op(p).is_some())
                            .collect();
                        for f in foreign {
                            if !self.syscall_names.iter().any(|n| n == f) {
                                self.syscall_names.push(f.to_string());
                            }
                        }
                        pieces
                    }
                };
                let (mut other, mut net) = (0i32, 0i32);
                for bit in 0..31 {
                    let flag = 1i32 << bit;
                    opflags::for_each_name(flag, false, |n| {
                        if pieces.iter().any(|p| p == n) {
                            other |= flag;
                        }
                    });
                    opflags::for_each_name(flag, true, |n| {
                        if pieces.iter().any(|p| p == n) {
                            net |= flag;
                        }
                    });
                }
                let empty = pieces.iter().any(|p| p.is_empty());
                return Pred::OpFlags { other, net, empty };
            }
            (Resolved::Attr(Attr::FileOpenFlags), Op::Eq | Op::In) => {
                let mut masks = Vec::new();
                for (mask, name) in sysflow_plugin_api::openflags::MASKS {
                    if pieces.iter().any(|p| p == name) {
                        masks.push(mask);
                    }
                }
                return Pred::OpenFlags { masks, none: pieces.iter().any(|p| p == "NONE") };
            }
            _ => {}
        }
        match l {
            Resolved::Lit(t) => {
                // Both sides literal: decide now.
                let lhs = sysflow_plugin_api::flat::trim_bounding_quotes(&t).to_string();
                let m = Matcher::new(op, pieces.clone());
                let folded = Pred::Str { lhs: Val::Lit(lhs), op, pieces, m };
                Pred::Const(folded.eval_literal(&mut Scratch::default()))
            }
            other => Pred::Str { lhs: Self::val(other), op, m: Matcher::new(op, pieces.clone()), pieces },
        }
    }
}

impl Pred {
    /// Evaluates a predicate whose operands are all literals (no record needed).
    fn eval_literal(&self, s: &mut Scratch) -> bool {
        s.begin_record(0);
        let header = RArc::new(sysflow_plugin_api::Header::default());
        let rec = FlatRecord::new(header, sysflow_plugin_api::Event::K8s(Default::default()));
        self.eval(&rec, s)
    }
}

impl RuleSet {
    /// Compiles a front end's policy set.
    pub fn compile(set: PolicySet, opts: &CompileOptions) -> RuleSet {
        let PolicySet { mut rules, filters, mut warnings, files } = set;
        // Upstream's `-perflog` rule-set trimming; drop filters are kept.
        if let Some(i) = opts.bench_rule_index {
            if i >= rules.len() {
                warnings.push(PolicyWarning {
                    pos: SourcePos { file: Arc::new(files.first().cloned().unwrap_or_default()), line: 1, col: 1 },
                    message: format!("bench.ruleindex {i} is out of range ({} rules): no rules kept", rules.len()),
                });
            }
            rules = rules.into_iter().nth(i).into_iter().collect();
        } else if let Some(n) = opts.bench_ruleset_size {
            rules.truncate(n);
        }
        let mut buckets: Vec<Bucket> = (0..RecordType::ALL.len()).map(|_| Bucket::default()).collect();
        let mut subtrees = SubtreeIds::default();
        // Conditions over the limits are not walked (their rule is disabled below).
        let within_limits = |c: &Cond| {
            limits::Shape::of(c).exceeded().is_none()
        };
        for f in filters.iter().filter(|f| f.enabled && within_limits(&f.condition)) {
            subtrees.count(&f.condition);
        }
        for r in rules.iter().filter(|r| r.enabled && within_limits(&r.condition)) {
            subtrees.count(&r.condition);
        }
        let mut slots = std::collections::HashMap::new();
        let mut entity_slots = std::collections::HashMap::new();
        let mut out_filters = Vec::new();
        // One compiler state for the whole set: identical sub-conditions share slots.
        // Conditions comparing `evt.type` with system call names: (where, what, values).
        let mut syscall_uses: Vec<(SourcePos, String, Vec<String>)> = Vec::new();
        let mut compile_condition = |warnings: &mut Vec<PolicyWarning>, kind: &str, name: &str, cond: &Cond, pos: &SourcePos| {
            // The front ends refuse such conditions; a policy set built by other code is
            // held to the same limits before the recursion below.
            if let Some(reason) = limits::Shape::of(cond).exceeded() {
                warnings.push(PolicyWarning { pos: pos.clone(), message: format!("{kind} '{name}' disabled: {reason}") });
                return (Pred::Const(false), Some(reason), Vec::new());
            }
            let mut c = Compiler {
                opts,
                unknown: Vec::new(),
                invalid: Vec::new(),
                syscall_names: Vec::new(),
                subtrees: &mut subtrees,
                slots: &mut slots,
                entity_slots: &mut entity_slots,
            };
            let (pred, _) = c.cond(cond);
            if !c.syscall_names.is_empty() {
                syscall_uses.push((pos.clone(), format!("{kind} '{name}'"), std::mem::take(&mut c.syscall_names)));
            }
            let disabled_reason = c.disabled_reason();
            if let Some(reason) = &disabled_reason {
                warnings.push(PolicyWarning { pos: pos.clone(), message: format!("{kind} '{name}' disabled: {reason}") });
            }
            (pred, disabled_reason, c.unknown)
        };
        for f in filters {
            let (pred, disabled_reason, _) = compile_condition(&mut warnings, "filter", &f.name, &f.condition, &f.pos);
            let mut types = 0;
            if f.enabled && disabled_reason.is_none() {
                for t in EVENT_TYPES {
                    let sp = pred.specialize(t).order_by_cost();
                    if !matches!(sp, Pred::Const(false)) {
                        types |= type_bit(t);
                        buckets[t as usize].filters.push(sp);
                    }
                }
            }
            out_filters.push(CompiledFilter { name: f.name, enabled: f.enabled, disabled_reason, types, pos: f.pos });
        }
        let mut out_rules = Vec::with_capacity(rules.len());
        for (idx, r) in rules.into_iter().enumerate() {
            let (pred, disabled_reason, unknown_attributes) =
                compile_condition(&mut warnings, "rule", &r.name, &r.condition, &r.pos);
            let mut actions = Vec::new();
            for a in &r.actions {
                match opts.actions.get(a) {
                    Some(act) => actions.push(act),
                    None => warnings.push(PolicyWarning {
                        pos: r.pos.clone(),
                        message: format!("Unknown action identifier '{a}' found in rule '{}'", r.name),
                    }),
                }
            }
            let prefilter: TypeMask = if r.prefilter.is_empty() {
                TypeMask::MAX
            } else {
                r.prefilter
                    .iter()
                    .filter_map(|p| RecordType::from_short_name(p))
                    .fold(0, |m, t| m | type_bit(t))
            };
            let mut types = 0;
            let enabled = r.enabled && disabled_reason.is_none();
            if enabled {
                for t in EVENT_TYPES {
                    if prefilter & type_bit(t) == 0 {
                        continue;
                    }
                    let sp = pred.specialize(t).order_by_cost();
                    if !matches!(sp, Pred::Const(false)) {
                        types |= type_bit(t);
                        buckets[t as usize].rules.push((idx as u32, sp));
                    }
                }
            }
            let matched = RArc::new(RuleMatch {
                name: RString::from(r.name.as_str()),
                desc: RString::from(r.desc.as_str()),
                priority: r.priority,
                tags: r.tags.iter().map(|t| RString::from(t.as_str())).collect::<RVec<_>>(),
                priority_name: RString::from(r.priority_word.as_deref().unwrap_or("")),
                ..Default::default()
            });
            // Upstream writes no `output:`; only Falco's dialect renders it (docs/policies.md).
            let output = match (&r.output, opts.dialect) {
                (Some(text), Dialect::Falco) => Some(OutputTemplate::parse(text)),
                _ => None,
            };
            out_rules.push(CompiledRule { matched, output, enabled, disabled_reason, unknown_attributes, types, pos: r.pos, actions });
        }
        warnings.extend(syscall_name_warnings(syscall_uses));
        for b in &mut buckets {
            b.build_dispatch();
        }
        let memo_slots = slots.len();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RuleSet { id, entity_slots: entity_slots.len(), rules: out_rules, filters: out_filters, buckets, warnings, files, memo_slots }
    }

    /// Evaluates one record: drop filters first, then every applicable rule in order;
    /// matches are appended to `record.context.matched` and their actions run.
    pub fn evaluate(&self, record: &mut FlatRecord, st: &mut EvalState) -> Verdict {
        let Some(bucket) = self.buckets.get(record.record_type() as usize) else {
            return Verdict::Pass { matched: 0 };
        };
        if st.ruleset != self.id {
            st.scratch.reset_entities(self.entity_slots);
            st.ruleset = self.id;
        }
        st.scratch.begin_record(self.memo_slots);
        for f in &bucket.filters {
            if f.eval(record, &mut st.scratch) {
                return Verdict::Drop;
            }
        }
        // The rules that can hold: the unguarded ones, the groups whose guard holds and
        // the index hits, as a bit set so that matches come out in rule order.
        let mut cand = std::mem::take(&mut st.candidates);
        cand.clear();
        cand.extend_from_slice(&bucket.always);
        for g in &bucket.groups {
            if g.guard.eval(record, &mut st.scratch) {
                for (c, r) in cand.iter_mut().zip(&g.rules) {
                    *c |= r;
                }
            }
        }
        for ix in &bucket.indexes {
            ix.candidates(record, &mut st.scratch, &mut cand);
        }
        let mut matched = 0;
        for (w, &word) in cand.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let pos = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let (idx, pred) = &bucket.rules[pos];
                if pred.eval(record, &mut st.scratch) {
                    matched += 1;
                    self.on_match(*idx, record, st);
                }
            }
        }
        st.candidates = cand;
        Verdict::Pass { matched }
    }

    /// Records a match of rule `idx` on the record and runs the rule's actions.
    fn on_match(&self, idx: u32, record: &mut FlatRecord, st: &mut EvalState) {
        let rule = &self.rules[idx as usize];
        let matched = match &rule.output {
            Some(template) => RArc::new(template.render(&rule.matched, record)),
            None => rule.matched.clone(),
        };
        record.context.matched.push(matched);
        for a in &rule.actions {
            if let Err(e) = a.apply(record) {
                st.action_errors.push(format!("Error in action of rule '{}': {e}", rule.matched.name));
            }
        }
    }

    /// Rules and filters with their record-type buckets, in evaluation order.
    pub fn describe(&self) -> Vec<RuleInfo> {
        let filters = self.filters.iter().map(|f| RuleInfo {
            kind: "filter",
            name: f.name.clone(),
            priority: 0,
            tags: Vec::new(),
            enabled: f.enabled && f.disabled_reason.is_none(),
            disabled_reason: f.disabled_reason.clone(),
            record_types: mask_names(f.types),
            position: f.pos.to_string(),
        });
        let rules = self.rules.iter().map(|r| RuleInfo {
            kind: "rule",
            name: r.matched.name.to_string(),
            priority: r.matched.priority,
            tags: r.matched.tags.iter().map(|t| t.to_string()).collect(),
            enabled: r.enabled,
            disabled_reason: r.disabled_reason.clone(),
            record_types: mask_names(r.types),
            position: r.pos.to_string(),
        });
        filters.chain(rules).collect()
    }

    /// One line per policy file with rules: `<file>: N rules, C compiled, D disabled
    /// (unknown fields: …)`, in load order.
    pub fn file_summaries(&self) -> Vec<String> {
        let mut out: Vec<(&Path, usize, usize, Vec<&str>)> = Vec::new();
        for r in &self.rules {
            let file = r.pos.file.as_path();
            let i = match out.iter().position(|(f, ..)| *f == file) {
                Some(i) => i,
                None => {
                    out.push((file, 0, 0, Vec::new()));
                    out.len() - 1
                }
            };
            let entry = &mut out[i];
            entry.1 += 1;
            if r.disabled_reason.is_some() {
                entry.2 += 1;
            }
            for u in &r.unknown_attributes {
                if !entry.3.contains(&u.as_str()) {
                    entry.3.push(u);
                }
            }
        }
        out.into_iter()
            .map(|(file, total, disabled, unknown)| {
                let mut line = format!("{}: {total} rules, {} compiled, {disabled} disabled", file.display(), total - disabled);
                if !unknown.is_empty() {
                    line.push_str(&format!(" (unknown fields: {})", unknown.join(", ")));
                }
                line
            })
            .collect()
    }

    /// Number of rules (enabled or not).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Number of rules that will run.
    pub fn enabled_rule_count(&self) -> usize {
        self.rules.iter().filter(|r| r.enabled).count()
    }

    /// Number of drop filters.
    pub fn filter_count(&self) -> usize {
        self.filters.len()
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Warnings from loading and compiling.
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }

    /// The policy files the set was compiled from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}
