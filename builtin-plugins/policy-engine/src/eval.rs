//! The compiled evaluator: a tree of typed predicates over attribute accessors.
//!
//! String operators use upstream's multi-value matching (policy-language.md §5): both
//! sides' string forms are split on `,` and the operator holds if it holds for any pair.
//! Literal right sides are split at compile time into hash sets (`=`, `in`) or
//! Aho-Corasick automata (`contains`, `pmatch`).

use abi_stable::std_types::{RArc, ROption, RVec};
use aho_corasick::AhoCorasick;
use rustc_hash::{FxHashMap, FxHashSet};
use sysflow_plugin_api::{flat::trim_bounding_quotes, Container, File, FlatRecord, Pod, Process, RecordType};

use crate::{
    attributes::{scope, Attr},
    ir::Op,
    jsonpath::JsonPath,
};

/// Reusable string buffers for one evaluating thread (no per-record allocation).
#[derive(Default, Debug)]
pub struct Scratch {
    lhs: String,
    rhs: String,
    tmp: String,
    low: String,
    /// String forms of cached attributes of the current record (see `Attr::is_cached`).
    arena: String,
    /// Per attribute: (generation, start, end, contains a `,`) of its cached string form
    /// in `arena`; comma-free forms (most) skip the multi-value split.
    cache: Vec<(u32, u32, u32, bool)>,
    /// Current record's generation; memo entries of other generations are stale.
    gen: u32,
    memo_gen: Vec<u32>,
    memo_val: Vec<bool>,
    /// Results of process-scoped tests, per process context.
    processes: EntityResults,
    /// Results of file-scoped tests, per file.
    files: EntityResults,
}

/// The entity an [`Pred::EntityMemo`] result is cached for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// The process context (ancestry, container, pod).
    Process,
    /// The file of a file flow or file event.
    File,
}

/// Most entities cached per thread and kind; when full, the cache starts over (a trace
/// with more live processes or files than this just evaluates more tests again). Each
/// entry keeps its entity alive: 4096 cost 11 MB more peak RSS than 1024 on
/// bench/run.sh's policy-alert, and was slower; 128–1024 measured the same.
const MAX_CACHED_ENTITIES: usize = 1024;

/// What keeps a cached entity's address from being reused by another entity while its
/// results are cached: the cache holds a reference to it.
#[derive(Debug)]
enum EntityHandle {
    Process {
        _ancestry: RArc<RVec<RArc<Process>>>,
        container: ROption<RArc<Container>>,
        pod: ROption<RArc<Pod>>,
    },
    File {
        _file: RArc<File>,
    },
}

/// Entity-scoped test results: per entity, a known bit and a value bit per slot.
#[derive(Default, Debug)]
struct EntityResults {
    /// Entity address → entry number.
    index: FxHashMap<usize, u32>,
    handles: Vec<EntityHandle>,
    /// `words` words per entry.
    known: Vec<u64>,
    vals: Vec<u64>,
    words: usize,
    /// (record generation, entry) of the current record's entity.
    current: (u32, Option<u32>),
}

fn same_arc<T>(a: &ROption<RArc<T>>, b: &ROption<RArc<T>>) -> bool {
    match (a, b) {
        (ROption::RSome(x), ROption::RSome(y)) => std::ptr::eq(&**x, &**y),
        (ROption::RNone, ROption::RNone) => true,
        _ => false,
    }
}

impl EntityResults {
    /// Forgets every entity and sizes entries for `slots` slots.
    fn reset(&mut self, slots: usize) {
        self.index.clear();
        self.handles.clear();
        self.known.clear();
        self.vals.clear();
        self.words = slots.div_ceil(64);
        self.current = (0, None);
    }

    /// The entry of the record's entity (created on first sight); `None` when the record
    /// has no such entity.
    fn entry(&mut self, kind: Entity, r: &FlatRecord, gen: u32) -> Option<u32> {
        if self.current.0 == gen {
            return self.current.1;
        }
        let found = self.lookup(kind, r);
        self.current = (gen, found);
        found
    }

    fn lookup(&mut self, kind: Entity, r: &FlatRecord) -> Option<u32> {
        if self.words == 0 {
            return None;
        }
        let addr = match kind {
            // An unknown process gets a fresh empty list per record: nothing to share.
            Entity::Process if r.ancestry.is_empty() => return None,
            Entity::Process => &*r.ancestry as *const RVec<RArc<Process>> as usize,
            Entity::File => match &r.file {
                ROption::RSome(f) => &**f as *const File as usize,
                ROption::RNone => return None,
            },
        };
        if let Some(&e) = self.index.get(&addr) {
            // A reader may pair one ancestry with another container or pod: start over.
            if let EntityHandle::Process { container, pod, .. } = &self.handles[e as usize] {
                if !same_arc(container, &r.container) || !same_arc(pod, &r.pod) {
                    self.handles[e as usize] = Self::process_handle(r);
                    let w = e as usize * self.words;
                    self.known[w..w + self.words].fill(0);
                }
            }
            return Some(e);
        }
        if self.handles.len() >= MAX_CACHED_ENTITIES {
            let slots = self.words * 64;
            self.reset(slots);
        }
        let e = self.handles.len() as u32;
        self.handles.push(match (kind, &r.file) {
            (Entity::File, ROption::RSome(f)) => EntityHandle::File { _file: f.clone() },
            _ => Self::process_handle(r),
        });
        self.known.resize(self.known.len() + self.words, 0);
        self.vals.resize(self.vals.len() + self.words, 0);
        self.index.insert(addr, e);
        Some(e)
    }

    fn process_handle(r: &FlatRecord) -> EntityHandle {
        EntityHandle::Process { _ancestry: r.ancestry.clone(), container: r.container.clone(), pod: r.pod.clone() }
    }

    #[inline]
    fn get(&self, e: u32, slot: u32) -> Option<bool> {
        let w = e as usize * self.words + (slot / 64) as usize;
        let bit = 1u64 << (slot % 64);
        (self.known[w] & bit != 0).then(|| self.vals[w] & bit != 0)
    }

    #[inline]
    fn set(&mut self, e: u32, slot: u32, v: bool) {
        let w = e as usize * self.words + (slot / 64) as usize;
        let bit = 1u64 << (slot % 64);
        self.known[w] |= bit;
        if v {
            self.vals[w] |= bit;
        } else {
            self.vals[w] &= !bit;
        }
    }
}

impl Scratch {
    /// The cached string form of `a` on the current record `r` (computed on first use):
    /// its range in `arena` and whether it contains a `,`.
    #[inline]
    fn cached_form(&mut self, a: Attr, r: &FlatRecord) -> (usize, usize, bool) {
        let e = &mut self.cache[a as usize];
        if e.0 != self.gen {
            let v = a.str_form(r, &mut self.tmp);
            let start = self.arena.len();
            self.arena.push_str(v);
            let comma = memchr::memchr(b',', v.as_bytes()).is_some();
            *e = (self.gen, start as u32, self.arena.len() as u32, comma);
        }
        (e.1 as usize, e.2 as usize, e.3)
    }

    fn entity_results(&mut self, entity: Entity) -> &mut EntityResults {
        match entity {
            Entity::Process => &mut self.processes,
            Entity::File => &mut self.files,
        }
    }

    /// Forgets all entity-scoped results and sizes the caches for a rule set with
    /// `slots` entity slots (call when the rule set changes).
    pub fn reset_entities(&mut self, slots: usize) {
        self.processes.reset(slots);
        self.files.reset(slots);
    }

    /// Starts a new record: invalidates all memoised sub-results.
    pub fn begin_record(&mut self, memo_slots: usize) {
        if self.memo_gen.len() < memo_slots {
            self.memo_gen.resize(memo_slots, 0);
            self.memo_val.resize(memo_slots, false);
        }
        if self.cache.is_empty() {
            self.cache.resize(Attr::ALL.len(), (0, 0, 0, false));
        }
        self.arena.clear();
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.memo_gen.iter_mut().for_each(|g| *g = 0);
            self.cache.iter_mut().for_each(|c| c.0 = 0);
            self.gen = 1;
        }
    }
}

/// A string-valued operand.
#[derive(Debug, Clone)]
pub enum Val {
    /// An attribute's string form.
    Attr(Attr),
    /// A JSON path applied to an attribute's string form.
    Json(Attr, JsonPath),
    /// The n-th element of a list attribute.
    Index(Attr, usize),
    /// A literal (bounding quotes already trimmed).
    Lit(String),
}

impl Val {
    fn get<'a>(&self, r: &'a FlatRecord, out: &'a mut String, tmp: &mut String) -> &'a str
    where
        Self: 'a,
    {
        match self {
            Val::Attr(a) => a.str_form(r, out),
            Val::Json(a, path) => {
                let src = a.str_form(r, tmp).to_string();
                path.apply(&src, out);
                out
            }
            Val::Index(a, i) => a.element(r, *i, out),
            Val::Lit(s) => {
                out.clear();
                out.push_str(s);
                out
            }
        }
    }
}

/// An integer-valued operand.
#[derive(Debug, Clone)]
pub enum IntVal {
    /// An attribute's integer form.
    Attr(Attr),
    /// A literal's integer form.
    Lit(i64),
}

impl IntVal {
    fn get(&self, r: &FlatRecord) -> i64 {
        match self {
            IntVal::Attr(a) => a.int_form(r),
            IntVal::Lit(v) => *v,
        }
    }
}

/// A shell-style glob (`*`, `?`, `[...]`), as Falco's `glob` operator.
#[derive(Debug, Clone)]
pub struct Glob(Vec<char>);

impl Glob {
    /// Compiles a pattern.
    pub fn new(p: &str) -> Glob {
        Glob(p.chars().collect())
    }

    /// True when `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        glob_match(&self.0, &s)
    }
}

fn glob_match(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class_match(&p[pi..], s[si]) {
                        if ok {
                            pi += next;
                            si += 1;
                            continue;
                        }
                    } else if s[si] == '[' {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches a `[...]` class at the start of `p`; returns (matched, pattern length).
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut ok = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((ok != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                ok = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                ok = true;
            }
            i += 1;
        }
    }
    None
}

/// A string predicate against literal pieces.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal to one of a few pieces.
    EqSmall(Vec<Box<str>>),
    /// Equal to one of many pieces.
    EqSet(FxHashSet<Box<str>>),
    /// Contains one of a few pieces.
    ContainsSmall(Vec<memchr::memmem::Finder<'static>>),
    /// Contains one of many pieces.
    ContainsAc(AhoCorasick),
    /// Contains one of the pieces, case-insensitively (pieces lower-cased).
    IContains(Vec<Box<str>>),
    /// Starts with one of the pieces.
    StartsWith(Vec<Box<str>>),
    /// Starts with one of many pieces (anchored automaton).
    StartsWithAc(AhoCorasick),
    /// Ends with one of the pieces.
    EndsWith(Vec<Box<str>>),
    /// Matches one of the globs.
    Glob(Vec<Glob>),
    /// Equal to one of the pieces, ignoring case (pieces lower-cased).
    IEq(FxHashSet<Box<str>>),
    /// Starts with one of the pieces, ignoring case (pieces lower-cased).
    IStartsWith(Vec<Box<str>>),
    /// Ends with one of the pieces, ignoring case (pieces lower-cased).
    IEndsWith(Vec<Box<str>>),
    /// Matches one of the regular expressions (checked by the compiler beforehand; a
    /// pattern that does not compile never matches).
    Regex(Vec<regex::Regex>),
}

const SMALL: usize = 6;
/// Up to this many `contains`/`pmatch` pieces, one SIMD substring search per piece
/// beats an automaton on the short strings policies test (names, paths, command lines).
const SMALL_CONTAINS: usize = 16;

impl Matcher {
    /// Builds the matcher for `op` over the literal `pieces` (already split on `,`).
    pub fn new(op: Op, pieces: Vec<String>) -> Matcher {
        let boxed = |v: Vec<String>| v.into_iter().map(String::into_boxed_str).collect::<Vec<_>>();
        match op {
            Op::Eq | Op::Ne | Op::In => {
                if pieces.len() <= SMALL {
                    Matcher::EqSmall(boxed(pieces))
                } else {
                    Matcher::EqSet(pieces.into_iter().map(String::into_boxed_str).collect())
                }
            }
            Op::Contains | Op::Pmatch => {
                let finders = |p: &[String]| {
                    p.iter().map(|x| memchr::memmem::Finder::new(x.as_bytes()).into_owned()).collect::<Vec<_>>()
                };
                if pieces.len() <= SMALL_CONTAINS || pieces.iter().any(|p| p.is_empty()) {
                    Matcher::ContainsSmall(finders(&pieces))
                } else {
                    let ac = AhoCorasick::builder().kind(Some(aho_corasick::AhoCorasickKind::DFA)).build(&pieces);
                    match ac.or_else(|_| AhoCorasick::new(&pieces)) {
                        Ok(ac) => Matcher::ContainsAc(ac),
                        Err(_) => Matcher::ContainsSmall(finders(&pieces)),
                    }
                }
            }
            Op::IContains => Matcher::IContains(pieces.into_iter().map(|p| p.to_lowercase().into_boxed_str()).collect()),
            Op::StartsWith => {
                let ac = (pieces.len() > SMALL)
                    .then(|| {
                        AhoCorasick::builder()
                            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                            .start_kind(aho_corasick::StartKind::Anchored)
                            .build(&pieces)
                            .ok()
                    })
                    .flatten();
                match ac {
                    Some(ac) => Matcher::StartsWithAc(ac),
                    None => Matcher::StartsWith(boxed(pieces)),
                }
            }
            Op::EndsWith => Matcher::EndsWith(boxed(pieces)),
            Op::Glob => Matcher::Glob(pieces.iter().map(|p| Glob::new(p)).collect()),
            Op::IEq => Matcher::IEq(pieces.into_iter().map(|p| p.to_lowercase().into_boxed_str()).collect()),
            Op::IStartsWith => {
                Matcher::IStartsWith(pieces.into_iter().map(|p| p.to_lowercase().into_boxed_str()).collect())
            }
            Op::IEndsWith => Matcher::IEndsWith(pieces.into_iter().map(|p| p.to_lowercase().into_boxed_str()).collect()),
            Op::Regex => Matcher::Regex(pieces.iter().filter_map(|p| regex::Regex::new(p).ok()).collect()),
            Op::Lt | Op::Le | Op::Gt | Op::Ge => Matcher::EqSmall(Vec::new()),
        }
    }

    /// Matches a whole string form: true if any of its `,` pieces matches. Substring
    /// tests run once over the whole text (literal pieces never contain `,`, so a match
    /// cannot span two pieces).
    fn matches_form(&self, v: &str, low: &mut String) -> bool {
        match self {
            Matcher::ContainsSmall(_) | Matcher::ContainsAc(_) | Matcher::IContains(_) | Matcher::Regex(_) => {
                self.matches(v, low)
            }
            _ => any_piece(v, |p| self.matches(p, low)),
        }
    }

    fn matches(&self, piece: &str, low: &mut String) -> bool {
        match self {
            Matcher::EqSmall(v) => v.iter().any(|x| &**x == piece),
            Matcher::EqSet(s) => s.contains(piece),
            Matcher::ContainsSmall(v) => v.iter().any(|x| x.find(piece.as_bytes()).is_some()),
            Matcher::ContainsAc(ac) => ac.is_match(piece),
            Matcher::IContains(v) => {
                low.clear();
                low.extend(piece.chars().flat_map(char::to_lowercase));
                v.iter().any(|x| low.contains(&**x))
            }
            Matcher::StartsWith(v) => v.iter().any(|x| piece.starts_with(&**x)),
            Matcher::StartsWithAc(ac) => {
                ac.is_match(aho_corasick::Input::new(piece).anchored(aho_corasick::Anchored::Yes))
            }
            Matcher::EndsWith(v) => v.iter().any(|x| piece.ends_with(&**x)),
            Matcher::Glob(v) => v.iter().any(|g| g.matches(piece)),
            Matcher::IEq(v) => v.contains(lowered(piece, low)),
            Matcher::IStartsWith(v) => {
                let l = lowered(piece, low);
                v.iter().any(|x| l.starts_with(&**x))
            }
            Matcher::IEndsWith(v) => {
                let l = lowered(piece, low);
                v.iter().any(|x| l.ends_with(&**x))
            }
            Matcher::Regex(v) => v.iter().any(|re| re.is_match(piece)),
        }
    }
}

/// `s` lower-cased into `buf` (Unicode case folding as `str::to_lowercase`).
fn lowered<'a>(s: &str, buf: &'a mut String) -> &'a str {
    buf.clear();
    buf.extend(s.chars().flat_map(char::to_lowercase));
    buf
}

/// Applies a string operator to one pair of pieces.
fn pair(op: Op, l: &str, r: &str) -> bool {
    match op {
        Op::Eq | Op::Ne | Op::In => l == r,
        Op::Contains | Op::Pmatch => l.contains(r),
        Op::IContains => l.to_lowercase().contains(&r.to_lowercase()),
        Op::StartsWith => l.starts_with(r),
        Op::EndsWith => l.ends_with(r),
        Op::Glob => Glob::new(r).matches(l),
        Op::IEq => l.to_lowercase() == r.to_lowercase(),
        Op::IStartsWith => l.to_lowercase().starts_with(&r.to_lowercase()),
        Op::IEndsWith => l.to_lowercase().ends_with(&r.to_lowercase()),
        Op::Regex => regex::Regex::new(r).is_ok_and(|re| re.is_match(l)),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => false,
    }
}

/// Set of record types as a bit mask over [`RecordType`] ordinals.
pub type TypeMask = u16;

/// The bit of a record type.
pub fn type_bit(t: RecordType) -> TypeMask {
    1 << (t as u8)
}

/// A compiled predicate.
#[derive(Debug, Clone)]
pub enum Pred {
    /// A constant.
    Const(bool),
    /// All hold.
    And(Box<[Pred]>),
    /// Any holds.
    Or(Box<[Pred]>),
    /// Negation.
    Not(Box<Pred>),
    /// `sf.type` is one of the types in the mask.
    TypeIn(TypeMask),
    /// `sf.opflags` `=`/`in` literal op names: a bit test (masks for non-network and
    /// network records, which render bits 8/9 as READ/WRITE resp. RECV/SEND).
    OpFlags {
        /// Bits whose name matches, for non-network records.
        other: i32,
        /// Bits whose name matches, for network records.
        net: i32,
        /// True when the literal set contains `""` (matches records with no op flag).
        empty: bool,
    },
    /// String operand against literal pieces.
    Str {
        /// Left side.
        lhs: Val,
        /// Operator (`Ne` compiles as a negated `Eq`).
        op: Op,
        /// The literal pieces (kept so that disjunctions can be merged).
        pieces: Vec<String>,
        /// Literal matcher built from `op` and `pieces`.
        m: Matcher,
    },
    /// `sf.file.openflags` `=`/`in` literal flag names: true if all bits of one of the
    /// masks are set (`NONE` matches records whose open flags are 0).
    OpenFlags {
        /// Masks of the matching names.
        masks: Vec<i32>,
        /// The literal set contains `NONE`.
        none: bool,
    },
    /// String operand against another non-literal operand.
    StrDyn {
        /// Left side.
        lhs: Val,
        /// Operator.
        op: Op,
        /// Right side.
        rhs: Val,
    },
    /// Integer comparison.
    Int {
        /// Left side.
        lhs: IntVal,
        /// Operator (`<`, `<=`, `>`, `>=`).
        op: Op,
        /// Right side.
        rhs: IntVal,
    },
    /// `attr exists`.
    Exists(Attr),
    /// A sub-condition shared by several rules: evaluated once per record.
    Memo(u32, Box<Pred>),
    /// A sub-condition that reads only one entity (the process context, or the file):
    /// evaluated once per entity and cached across records.
    EntityMemo {
        /// The entity its value depends on.
        entity: Entity,
        /// Cache slot (shared by structurally identical sub-conditions).
        slot: u32,
        /// The sub-condition.
        pred: Box<Pred>,
    },
}

impl Pred {
    /// Evaluates the predicate on a record.
    pub fn eval(&self, r: &FlatRecord, s: &mut Scratch) -> bool {
        match self {
            Pred::Const(b) => *b,
            Pred::And(v) => v.iter().all(|p| p.eval(r, s)),
            Pred::Or(v) => v.iter().any(|p| p.eval(r, s)),
            Pred::Not(p) => !p.eval(r, s),
            Pred::TypeIn(mask) => mask & type_bit(r.record_type()) != 0,
            Pred::OpFlags { other, net, empty } => {
                let flags = r.event.op_flags();
                if flags == 0 {
                    return *empty;
                }
                let mask = if matches!(r.record_type(), RecordType::NetworkFlow | RecordType::NetworkEvent) {
                    net
                } else {
                    other
                };
                flags & mask != 0
            }
            Pred::Str { lhs, m, .. } => {
                if let Val::Attr(a) = lhs {
                    if a.is_cached() {
                        let (start, end, comma) = s.cached_form(*a, r);
                        let v = &s.arena[start..end];
                        return if comma { m.matches_form(v, &mut s.low) } else { m.matches(v, &mut s.low) };
                    }
                }
                let Scratch { lhs: lb, tmp, low, .. } = s;
                let v = lhs.get(r, lb, tmp);
                m.matches_form(v, low)
            }
            Pred::OpenFlags { masks, none } => {
                let flags = r.open_flags();
                if flags == 0 {
                    *none
                } else {
                    masks.iter().any(|m| flags & m == *m)
                }
            }
            Pred::StrDyn { lhs, op, rhs } => {
                let Scratch { lhs: lb, rhs: rb, tmp, .. } = s;
                let l = lhs.get(r, lb, tmp);
                let rv = rhs.get(r, rb, tmp);
                any_piece(l, |a| any_piece(rv, |b| pair(*op, a, b)))
            }
            Pred::Int { lhs, op, rhs } => {
                let (a, b) = (lhs.get(r), rhs.get(r));
                match op {
                    Op::Lt => a < b,
                    Op::Le => a <= b,
                    Op::Gt => a > b,
                    Op::Ge => a >= b,
                    _ => false,
                }
            }
            Pred::Exists(a) => a.exists(r, &mut s.tmp),
            Pred::EntityMemo { entity, slot, pred } => {
                let gen = s.gen;
                let cache = s.entity_results(*entity);
                let Some(e) = cache.entry(*entity, r, gen) else { return pred.eval(r, s) };
                if let Some(v) = cache.get(e, *slot) {
                    return v;
                }
                let v = pred.eval(r, s);
                s.entity_results(*entity).set(e, *slot, v);
                v
            }
            Pred::Memo(slot, p) => {
                let i = *slot as usize;
                if s.memo_gen.get(i) == Some(&s.gen) {
                    return s.memo_val[i];
                }
                let v = p.eval(r, s);
                if i < s.memo_gen.len() {
                    s.memo_gen[i] = s.gen;
                    s.memo_val[i] = v;
                }
                v
            }
        }
    }

    /// What the predicate's value depends on: a set of [`scope`] bits (0: constant).
    pub fn scope(&self) -> u8 {
        let val = |v: &Val| match v {
            Val::Attr(a) | Val::Json(a, _) | Val::Index(a, _) => a.scope(),
            Val::Lit(_) => 0,
        };
        let int = |v: &IntVal| match v {
            IntVal::Attr(a) => a.scope(),
            IntVal::Lit(_) => 0,
        };
        match self {
            Pred::Const(_) => 0,
            Pred::TypeIn(_) | Pred::OpFlags { .. } | Pred::OpenFlags { .. } => scope::RECORD,
            Pred::Str { lhs, .. } => val(lhs),
            Pred::StrDyn { lhs, rhs, .. } => val(lhs) | val(rhs),
            Pred::Int { lhs, rhs, .. } => int(lhs) | int(rhs),
            Pred::Exists(a) => a.scope(),
            Pred::Not(p) | Pred::Memo(_, p) => p.scope(),
            Pred::EntityMemo { entity: Entity::Process, .. } => scope::PROCESS,
            Pred::EntityMemo { entity: Entity::File, .. } => scope::FILE,
            Pred::And(v) | Pred::Or(v) => v.iter().fold(0, |m, p| m | p.scope()),
        }
    }

    /// The entity whose cache should hold this predicate's value, if it reads one entity
    /// only and costs more than the cache lookup.
    pub fn cacheable_entity(&self) -> Option<Entity> {
        let entity = match self.scope() {
            scope::PROCESS => Entity::Process,
            scope::FILE => Entity::File,
            _ => return None,
        };
        (self.cost() > 4).then_some(entity)
    }

    /// Removes [`Pred::EntityMemo`] wrappers below this node (the node itself is cached,
    /// so caching its parts as well only costs lookups).
    pub fn without_entity_memos(self) -> Pred {
        match self {
            Pred::EntityMemo { pred, .. } => pred.without_entity_memos(),
            Pred::And(v) => Pred::And(v.into_vec().into_iter().map(Pred::without_entity_memos).collect()),
            Pred::Or(v) => Pred::Or(v.into_vec().into_iter().map(Pred::without_entity_memos).collect()),
            Pred::Not(p) => Pred::Not(Box::new(p.without_entity_memos())),
            Pred::Memo(s, p) => Pred::Memo(s, Box::new(p.without_entity_memos())),
            other => other,
        }
    }

    /// A rough evaluation cost, used to test cheap conjuncts first.
    pub fn cost(&self) -> u32 {
        match self {
            Pred::Const(_) => 0,
            Pred::TypeIn(_) | Pred::OpFlags { .. } | Pred::OpenFlags { .. } => 1,
            Pred::Int { .. } => 2,
            Pred::Exists(_) => 4,
            Pred::Str { lhs, m, .. } => {
                let base = match lhs {
                    Val::Attr(a) if a.is_computed() => 12,
                    Val::Attr(_) | Val::Lit(_) => 5,
                    Val::Index(..) => 8,
                    Val::Json(..) => 200,
                };
                base + match m {
                    Matcher::EqSmall(v) => v.len() as u32 / 2,
                    Matcher::EqSet(_) => 2,
                    Matcher::ContainsSmall(v) => 3 * v.len() as u32,
                    Matcher::ContainsAc(_) | Matcher::StartsWithAc(_) => 6,
                    Matcher::IContains(v) => 10 + 3 * v.len() as u32,
                    Matcher::StartsWith(v) | Matcher::EndsWith(v) => v.len() as u32,
                    Matcher::Glob(v) => 10 * v.len() as u32,
                    Matcher::IEq(_) => 10,
                    Matcher::IStartsWith(v) | Matcher::IEndsWith(v) => 10 + v.len() as u32,
                    Matcher::Regex(v) => 20 * v.len() as u32,
                }
            }
            Pred::StrDyn { .. } => 30,
            Pred::Memo(_, p) => p.cost().min(6),
            // Almost always a cache hit: a bit test once the entity is looked up.
            Pred::EntityMemo { pred, .. } => pred.cost().min(3),
            Pred::Not(p) => p.cost(),
            Pred::And(v) | Pred::Or(v) => v.iter().map(Pred::cost).sum(),
        }
    }

    /// Orders the operands of every conjunction and disjunction by cost (evaluation has
    /// no side effects, so only speed changes).
    pub fn order_by_cost(self) -> Pred {
        match self {
            Pred::And(v) => {
                let mut v: Vec<Pred> = v.into_vec().into_iter().map(Pred::order_by_cost).collect();
                v.sort_by_key(Pred::cost);
                Pred::And(v.into_boxed_slice())
            }
            Pred::Or(v) => {
                let mut v: Vec<Pred> = v.into_vec().into_iter().map(Pred::order_by_cost).collect();
                v.sort_by_key(Pred::cost);
                Pred::Or(v.into_boxed_slice())
            }
            Pred::Not(p) => Pred::Not(Box::new(p.order_by_cost())),
            Pred::Memo(s, p) => Pred::Memo(s, Box::new(p.order_by_cost())),
            Pred::EntityMemo { entity, slot, pred } => {
                Pred::EntityMemo { entity, slot, pred: Box::new(pred.order_by_cost()) }
            }
            other => other,
        }
    }

    /// Specialises the predicate for one record type: `sf.type` tests become constants
    /// and constant sub-trees fold away.
    pub fn specialize(&self, t: RecordType) -> Pred {
        match self {
            Pred::TypeIn(mask) => Pred::Const(mask & type_bit(t) != 0),
            Pred::OpFlags { other, net, empty } => {
                let m = if matches!(t, RecordType::NetworkFlow | RecordType::NetworkEvent) { *net } else { *other };
                if m == 0 && !*empty {
                    Pred::Const(false)
                } else {
                    Pred::OpFlags { other: m, net: m, empty: *empty }
                }
            }
            Pred::Memo(slot, p) => match p.specialize(t) {
                Pred::Const(b) => Pred::Const(b),
                q => Pred::Memo(*slot, Box::new(q)),
            },
            // Entity-scoped tests read no type-dependent attribute except file ones, which
            // are constant (folded) exactly on the types without a file: one slot serves
            // every specialisation.
            Pred::EntityMemo { entity, slot, pred } => match pred.specialize(t) {
                Pred::Const(b) => Pred::Const(b),
                q => Pred::EntityMemo { entity: *entity, slot: *slot, pred: Box::new(q) },
            },
            Pred::Not(p) => match p.specialize(t) {
                Pred::Const(b) => Pred::Const(!b),
                q => Pred::Not(Box::new(q)),
            },
            Pred::And(v) => {
                let mut out = Vec::with_capacity(v.len());
                for p in v.iter() {
                    match p.specialize(t) {
                        Pred::Const(true) => {}
                        Pred::Const(false) => return Pred::Const(false),
                        Pred::And(inner) => out.extend(inner.into_vec()),
                        q => out.push(q),
                    }
                }
                match out.len() {
                    0 => Pred::Const(true),
                    1 => out.pop().unwrap_or(Pred::Const(true)),
                    _ => Pred::And(out.into_boxed_slice()),
                }
            }
            Pred::Or(v) => {
                let mut out = Vec::with_capacity(v.len());
                for p in v.iter() {
                    match p.specialize(t) {
                        Pred::Const(false) => {}
                        Pred::Const(true) => return Pred::Const(true),
                        Pred::Or(inner) => out.extend(inner.into_vec()),
                        q => out.push(q),
                    }
                }
                match out.len() {
                    0 => Pred::Const(false),
                    1 => out.pop().unwrap_or(Pred::Const(false)),
                    _ => Pred::Or(out.into_boxed_slice()),
                }
            }
            other => match other.constant_for(t) {
                Some(b) => Pred::Const(b),
                None => other.clone(),
            },
        }
    }

    /// The value of a leaf predicate on every record of type `t`, when all attributes it
    /// reads are constant for that type (e.g. file attributes on a process event).
    fn constant_for(&self, t: RecordType) -> Option<bool> {
        let val_const = |v: &Val| match v {
            Val::Attr(a) | Val::Json(a, _) | Val::Index(a, _) => a.is_constant_for(t),
            Val::Lit(_) => true,
        };
        let konst = match self {
            Pred::Str { lhs, .. } => val_const(lhs),
            Pred::StrDyn { lhs, rhs, .. } => val_const(lhs) && val_const(rhs),
            Pred::Int { lhs, rhs, .. } => [lhs, rhs].iter().all(|v| match v {
                IntVal::Attr(a) => a.is_constant_for(t),
                IntVal::Lit(_) => true,
            }),
            Pred::Exists(a) => a.is_constant_for(t),
            Pred::OpenFlags { .. } => t != RecordType::FileFlow,
            _ => false,
        };
        if !konst {
            return None;
        }
        let header = abi_stable::std_types::RArc::new(sysflow_plugin_api::Header::default());
        use sysflow_plugin_api::Event as E;
        let event = match t {
            RecordType::ProcessEvent => E::Process(Default::default()),
            RecordType::NetworkFlow => E::NetworkFlow(Default::default()),
            RecordType::FileFlow => E::FileFlow(Default::default()),
            RecordType::FileEvent => E::File(Default::default()),
            RecordType::NetworkEvent => E::Network(Default::default()),
            RecordType::ProcessFlow => E::ProcessFlow(Default::default()),
            _ => E::K8s(Default::default()),
        };
        let rec = FlatRecord::new(header, event);
        let mut s = Scratch::default();
        s.begin_record(0);
        Some(self.eval(&rec, &mut s))
    }
}

/// Rules of one bucket dispatched on one attribute: each rule here has a conjunct
/// `attr = x` / `attr in (...)` against literals, so it can only hold when a `,` piece of
/// the attribute's string form is one of its literals. One hash lookup per piece replaces
/// testing every rule, which keeps evaluation cost flat as rule sets grow.
#[derive(Debug, Clone)]
pub struct RuleIndex {
    attr: Attr,
    by_value: rustc_hash::FxHashMap<Box<str>, Vec<u32>>,
}

impl RuleIndex {
    /// An index on `attr` with no rules yet.
    pub fn new(attr: Attr) -> RuleIndex {
        RuleIndex { attr, by_value: Default::default() }
    }

    /// The attribute dispatched on.
    pub fn attr(&self) -> Attr {
        self.attr
    }

    /// Files rule position `pos` under each literal value.
    pub fn insert(&mut self, values: &[String], pos: u32) {
        for v in values {
            let list = self.by_value.entry(v.as_str().into()).or_default();
            if list.last() != Some(&pos) {
                list.push(pos);
            }
        }
    }

    /// Sets the bits (rule positions) of the rules whose key test can hold on `r`.
    pub fn candidates(&self, r: &FlatRecord, s: &mut Scratch, out: &mut [u64]) {
        let a = self.attr;
        let mut push = |piece: &str| {
            for &pos in self.by_value.get(piece).map(Vec::as_slice).unwrap_or_default() {
                set_bit(out, pos);
            }
            false
        };
        if a.is_cached() {
            // Through the per-record cache, shared with the rules' own tests.
            let (start, end, comma) = s.cached_form(a, r);
            let v = &s.arena[start..end];
            if comma {
                any_piece(v, &mut push);
            } else {
                push(v);
            }
        } else {
            any_piece(a.str_form(r, &mut s.lhs), push);
        }
    }
}

impl Pred {
    /// The attributes and literal values of this predicate's `attr = literal` /
    /// `attr in (literals)` conjuncts: the predicate can only hold when the attribute
    /// has one of those values.
    pub fn eq_keys(&self) -> Vec<(Attr, &[String])> {
        fn direct(p: &Pred) -> Option<(Attr, &[String])> {
            match p {
                Pred::Str { lhs: Val::Attr(a), op: Op::Eq | Op::In, pieces, .. } => Some((*a, pieces.as_slice())),
                Pred::Memo(_, q) | Pred::EntityMemo { pred: q, .. } => direct(q),
                _ => None,
            }
        }
        match self {
            Pred::And(v) => v.iter().filter_map(direct).collect(),
            Pred::Memo(_, q) | Pred::EntityMemo { pred: q, .. } if matches!(**q, Pred::And(_)) => q.eq_keys(),
            p => direct(p).into_iter().collect(),
        }
    }
}

/// Sets bit `pos` of a bit set of rule positions (out-of-range positions are ignored).
pub fn set_bit(bits: &mut [u64], pos: u32) {
    if let Some(w) = bits.get_mut((pos / 64) as usize) {
        *w |= 1 << (pos % 64);
    }
}

/// True if `f` holds for any `,`-separated piece of `v`.
#[inline]
fn any_piece(v: &str, mut f: impl FnMut(&str) -> bool) -> bool {
    let mut start = 0;
    for i in memchr::memchr_iter(b',', v.as_bytes()) {
        if f(&v[start..i]) {
            return true;
        }
        start = i + 1;
    }
    f(&v[start..])
}

/// Splits a literal's string form (bounding quotes trimmed) into its `,` pieces.
pub fn literal_pieces(raw: &str, out: &mut Vec<String>) {
    for p in trim_bounding_quotes(raw).split(',') {
        out.push(p.to_string());
    }
}

/// A literal's integer form: base-10 parse of the raw text (quotes included), else 0.
pub fn literal_int(raw: &str) -> i64 {
    raw.parse::<i64>().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(Glob::new("/home/*/.ssh/*").matches("/home/u/.ssh/id_rsa"));
        assert!(!Glob::new("/home/*/.ssh/*").matches("/home/u/ssh/id"));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(Glob::new("[a-c]x").matches("bx"));
        assert!(!Glob::new("[!a-c]x").matches("bx"));
        assert!(Glob::new("*").matches(""));
    }

    #[test]
    fn matchers() {
        let mut low = String::new();
        for n in [10, 40] {
            // Below and above SMALL_CONTAINS: substring finders, then an automaton.
            let m = Matcher::new(Op::Pmatch, (0..n).map(|i| format!("tool{i}")).collect());
            assert_eq!(matches!(m, Matcher::ContainsAc(_)), n > SMALL_CONTAINS);
            assert!(m.matches("/opt/tool7/bin", &mut low));
            assert!(m.matches("/opt/tool7", &mut low));
            assert!(!m.matches("/opt/tool/bin", &mut low));
        }
        let m = Matcher::new(Op::In, (0..10).map(|i| format!("b{i}")).collect());
        assert!(m.matches("b3", &mut low));
        assert!(!m.matches("b33", &mut low));
        let m = Matcher::new(Op::IContains, vec!["HeArT".into()]);
        assert!(m.matches("xxheartbeat", &mut low));
        let m = Matcher::new(Op::IEq, vec!["/BIN/Bash".into(), "sh".into()]);
        assert!(m.matches("/bin/BASH", &mut low) && m.matches("SH", &mut low));
        assert!(!m.matches("/bin/bash2", &mut low));
        let m = Matcher::new(Op::IStartsWith, vec!["/TMP/".into()]);
        assert!(m.matches("/tmp/x", &mut low) && !m.matches("/var/tmp/x", &mut low));
        let m = Matcher::new(Op::IEndsWith, vec!["/Java".into()]);
        assert!(m.matches("/usr/bin/JAVA", &mut low) && !m.matches("/usr/bin/javac", &mut low));
        let m = Matcher::new(Op::Regex, vec!["(.){5,}".into(), "^ab+c$".into()]);
        assert!(m.matches("abbbc", &mut low) && m.matches("123456", &mut low));
        assert!(!m.matches("abx", &mut low));
        // Regular expressions see the whole value, commas included.
        assert!(m.matches_form("a,b,c", &mut low));
    }
}
