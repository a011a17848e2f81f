//! The Falco-syntax front end: rule files read as YAML ([`yaml_reader`]), or, for a file
//! YAML refuses (upstream's own files are not all YAML), with the upstream-compatible
//! lexer and parser; both give one syntax tree, lowered to the language-neutral [`crate::ir`].
//!
//! Lists and macros share one namespace across files; a rule sees the definitions of
//! earlier files and of its own file (each file is pre-scanned), never of later files.

pub mod ast;
pub mod lexer;
pub mod parser;
pub mod yaml_reader;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    error::{did_you_mean, PolicyError, PolicyErrors, PolicyWarning},
    ir::{Cond, FilterDef, Op, Operand, PolicySet, RuleDef},
    limits::{
        self, MAX_CONDITION_DEPTH, MAX_ERRORS_PER_FILE, MAX_EXPANDED_ELEMENTS, MAX_EXPANDED_NODES, MAX_LIST_ITEMS,
        MAX_REFERENCE_DEPTH,
    },
    position::SourcePos,
};

use ast::{Atom, Exception, Expr, Item, ItemKind, RuleItem};
use lexer::Tok;

/// Collects the policy files under `path`: the file itself, or every `.yaml`/`.yml`
/// file below the directory, recursively, in sorted path order.
pub fn collect_files(path: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let io_err = |p: &Path, e: std::io::Error| PolicyError {
        pos: SourcePos { file: Arc::new(p.to_path_buf()), line: 0, col: 0 },
        message: format!("cannot read policies: {e}"),
        text: String::new(),
    };
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    // A file reached twice through symlinks loads once; a directory reached twice (a
    // symlink loop) is walked once.
    let mut seen_files = std::collections::HashSet::new();
    let mut seen_dirs = std::collections::HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if !seen_dirs.insert(std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone())) {
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io_err(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        // Depth-first in sorted order: push subdirectories reversed after handling files.
        let mut subdirs = Vec::new();
        for p in entries {
            // Kubernetes mounts a ConfigMap as `..<timestamp>/` plus a `..data` symlink, with
            // each file linked from the top: only the top-level links are the policies.
            if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("..")) {
                continue;
            }
            if p.is_dir() {
                subdirs.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml") | Some("yml"))
                && seen_files.insert(std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone()))
            {
                out.push(p);
            }
        }
        for d in subdirs.into_iter().rev() {
            stack.push(d);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(PolicyError {
            pos: SourcePos { file: Arc::new(path.to_path_buf()), line: 0, col: 0 },
            message: format!("no policy files with extension .yaml or .yml found in path: {}", path.display()),
            text: String::new(),
        });
    }
    Ok(out)
}

/// Loads the policy file or directory `path` into one policy set.
pub fn load(path: &Path) -> Result<PolicySet, PolicyErrors> {
    let files = collect_files(path).map_err(PolicyErrors::one)?;
    let mut sources = Vec::with_capacity(files.len());
    for f in &files {
        match std::fs::read(f) {
            Ok(bytes) => sources.push((f.clone(), String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) => {
                return Err(PolicyErrors::one(PolicyError {
                    pos: SourcePos { file: Arc::new(f.clone()), line: 0, col: 0 },
                    message: format!("cannot read policy file: {e}"),
                    text: String::new(),
                }))
            }
        }
    }
    load_sources(&sources)
}

/// Loads policies from in-memory `(file name, text)` pairs, in order.
///
/// Every error of every file is collected: a file's items that read are lowered even when
/// others did not (so that reference errors are found in the same run), a broken macro or
/// list stands in as defined. Each file's errors are listed in file order, at most
/// [`MAX_ERRORS_PER_FILE`] of them; any error refuses the whole set.
pub fn load_sources(sources: &[(PathBuf, String)]) -> Result<PolicySet, PolicyErrors> {
    let mut lw = Lowering::default();
    let mut omitted = 0;
    let mut seen = std::collections::HashSet::new();
    for (file, src) in sources {
        let file = Arc::new(file.clone());
        let first = lw.errors.len();
        let (items, errors, warning) = read_file(src, file.clone());
        lw.set.warnings.extend(warning);
        lw.errors.extend(errors);
        lw.file(items);
        lw.set.files.push((*file).clone());
        // A mistake in a macro fails every rule using it: reported once.
        let mut this_file = lw.errors.split_off(first);
        this_file.retain(|e| seen.insert(e.to_string()));
        // Reading errors come before lowering errors: sorted into file order (stable, so
        // that two errors at one position keep the order they were found in; an error in
        // an earlier file's macro, met by this file's rule, sorts with its own file).
        this_file.sort_by_key(|e| (e.pos.file.clone(), e.pos.line, e.pos.col));
        lw.errors.extend(this_file);
        let this_file = &lw.errors[first..];
        if this_file.len() > MAX_ERRORS_PER_FILE {
            omitted += this_file.len() - MAX_ERRORS_PER_FILE;
            lw.errors.truncate(first + MAX_ERRORS_PER_FILE);
        }
        lw.hint_undefined_macros(first);
    }
    let mut list_names: Vec<&str> = lw.lists.keys().map(String::as_str).collect();
    // Sorted: a hint must not depend on hash order.
    list_names.sort_unstable();
    for (i, (name, pos)) in lw.undefined_lists.take().into_iter().enumerate() {
        let hint = if i < MAX_LIST_HINTS { did_you_mean(&name, list_names.iter().copied()) } else { String::new() };
        lw.set.warnings.push(PolicyWarning {
            pos,
            message: format!("'{name}' is not a defined list; it is compared as a literal value{hint}"),
        });
    }
    if lw.errors.is_empty() {
        Ok(lw.set)
    } else {
        Err(PolicyErrors(lw.errors, omitted))
    }
}

/// Reads one rule file into its items and errors: as YAML, or, when YAML refuses the
/// file, with the upstream-compatible parser and a warning saying so. Items that do not
/// read are left out (named items as [`Item::Broken`]), each with its error.
pub fn read_file(src: &str, file: Arc<PathBuf>) -> (Vec<Item>, Vec<PolicyError>, Option<PolicyWarning>) {
    match yaml_reader::read(src, file.clone()) {
        yaml_reader::YamlRead::Items(items, errors) => (items, errors, None),
        yaml_reader::YamlRead::NotYaml(why) => {
            let message = format!(
                "not read as YAML ({}); read with the upstream-compatible grammar",
                why.message.trim_start_matches("not YAML: ")
            );
            let (items, errors) = parser::parse_file_recovering(src, file);
            (items, errors, Some(PolicyWarning { pos: why.pos, message }))
        }
    }
}

/// Most undefined-list warnings given a "did you mean" (each searches every list name).
const MAX_LIST_HINTS: usize = 100;

/// The message for a reference to a macro that is not defined.
fn undefined_macro(name: &str) -> String {
    format!("undefined macro '{name}'")
}

#[derive(Default)]
struct Lowering {
    /// Snake-case names used as `in`/`pmatch` elements that name no list (warned once).
    undefined_lists: std::cell::RefCell<Vec<(String, SourcePos)>>,
    lists: HashMap<String, Vec<String>>,
    /// Where each list was (last) defined.
    list_pos: HashMap<String, SourcePos>,
    macros: HashMap<String, Expr>,
    /// Depth of each macro's condition as written (kept up to date through appends, so
    /// that checking it costs no walk of the whole macro per append).
    macro_depth: HashMap<String, usize>,
    set: PolicySet,
    errors: Vec<PolicyError>,
    /// Rules whose definition has an error: appends to them and `enabled` toggles of them
    /// report nothing more.
    broken_rules: std::collections::HashSet<String>,
}

/// Name endings that mark a word in `in (…)` as meant to be a list name.
const LIST_SUFFIXES: &[&str] = &[
    "binaries", "files", "directories", "dirs", "paths", "procs", "processes", "images", "containers", "users",
    "groups", "cmds", "commands", "tools", "list", "lists", "names", "ports", "ipaddrs", "networks", "domains",
    "programs", "scripts", "services", "installer",
];

/// Priority ordinal of a severity word (policy-language.md §7).
pub fn priority_of(word: &str) -> Option<i32> {
    match word {
        "low" | "debug" | "info" | "informational" | "notice" => Some(1),
        "medium" | "warning" => Some(2),
        "high" | "error" | "critical" | "emergency" => Some(3),
        _ => None,
    }
}

/// Falco's capitalisation of a priority word, for Falco's own levels (`None` for
/// upstream's `low`/`medium`/`high`).
pub fn falco_priority_name(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "emergency" => "Emergency",
        "alert" => "Alert",
        "critical" => "Critical",
        "error" => "Error",
        "warning" => "Warning",
        "notice" => "Notice",
        "info" | "informational" => "Informational",
        "debug" => "Debug",
        _ => return None,
    })
}

/// A rule's condition with an appended one: into the existing disjunction (conjunction)
/// when there is one, so that repeated appends do not nest.
fn combine(old: Cond, new: Cond, or: bool) -> Cond {
    match (old, or) {
        (Cond::Or(mut v), true) => {
            v.push(new);
            Cond::Or(v)
        }
        (Cond::And(mut v), false) => {
            v.push(new);
            Cond::And(v)
        }
        (old, true) => Cond::Or(vec![old, new]),
        (old, false) => Cond::And(vec![old, new]),
    }
}

/// Depth of a condition as written, without recursion (macro `append`s nest one level each).
fn expr_depth(e: &Expr) -> usize {
    let mut depth = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        depth = depth.max(d);
        match e {
            Expr::And(v) | Expr::Or(v) => stack.extend(v.iter().map(|x| (x, d + 1))),
            Expr::Not(x) => stack.push((x, d + 1)),
            _ => {}
        }
    }
    depth
}

/// Appends `new` to a macro's condition with `or` (or `and`): into the existing
/// disjunction (conjunction) when there is one, so that repeated appends do not nest.
fn append_expr(old: Expr, new: Expr, or: bool) -> Expr {
    match (old, or) {
        (Expr::Or(mut v), true) => {
            v.push(new);
            Expr::Or(v)
        }
        (Expr::And(mut v), false) => {
            v.push(new);
            Expr::And(v)
        }
        (old, true) => Expr::Or(vec![old, new]),
        (old, false) => Expr::And(vec![old, new]),
    }
}

/// The expansion of one rule's or filter's condition: what it is (for messages), the
/// macros being expanded, and the nodes and list elements produced so far.
struct Expansion<'a> {
    /// `rule 'X'` / `filter 'Y'`.
    what: &'a str,
    /// Where the rule or filter is written.
    pos: &'a SourcePos,
    /// Macros being expanded, outermost first.
    stack: Vec<String>,
    /// Nodes produced so far (bounded by [`MAX_EXPANDED_NODES`]).
    nodes: usize,
    /// List elements produced so far (bounded by [`MAX_EXPANDED_ELEMENTS`]).
    elements: usize,
    /// References to undefined macros met so far (at most [`MAX_ERRORS_PER_FILE`]): the
    /// expansion goes on past one, so that one run names them all.
    undefined: Vec<PolicyError>,
}

impl Expansion<'_> {
    fn new<'a>(what: &'a str, pos: &'a SourcePos) -> Expansion<'a> {
        Expansion { what, pos, stack: Vec::new(), nodes: 0, elements: 0, undefined: Vec::new() }
    }

    /// Where the expansion is, for messages: ` (in macro a -> b)` or nothing.
    fn via(&self) -> String {
        if self.stack.is_empty() {
            String::new()
        } else if self.stack.len() <= 6 {
            format!(" (in macro {})", self.stack.join(" -> "))
        } else {
            let n = self.stack.len();
            format!(" (in macro {} -> … -> {})", self.stack[..3].join(" -> "), self.stack[n - 3..].join(" -> "))
        }
    }

    fn error(&self, pos: &SourcePos, message: String) -> PolicyError {
        PolicyError { pos: pos.clone(), message: format!("{}: {message}{}", self.what, self.via()), text: String::new() }
    }

    /// Counts one more node; an error once the condition has too many.
    fn node(&mut self) -> Result<(), PolicyError> {
        self.nodes += 1;
        if self.nodes > MAX_EXPANDED_NODES {
            let msg = format!("condition expands to more than {MAX_EXPANDED_NODES} nodes");
            return Err(self.error(self.pos, msg));
        }
        Ok(())
    }

    /// Counts one more list element (`text`); an error once the condition has too many.
    fn element(&mut self, text: &str) -> Result<(), PolicyError> {
        self.elements += 1;
        if self.elements > MAX_EXPANDED_ELEMENTS {
            let msg = format!("condition expands to more than {MAX_EXPANDED_ELEMENTS} list elements (at '{text}')");
            return Err(self.error(self.pos, msg));
        }
        Ok(())
    }
}

impl Lowering {
    /// Adds "did you mean" to the undefined-macro errors from `first` on (one file's
    /// listed errors), naming the closest macro visible to that file.
    fn hint_undefined_macros(&mut self, first: usize) {
        let mut known: Option<Vec<&str>> = None;
        for e in &mut self.errors[first..] {
            if e.message != undefined_macro(&e.text) {
                continue;
            }
            let known = known.get_or_insert_with(|| {
                // Sorted: the hint must not depend on hash order.
                let mut v: Vec<&str> = self.macros.keys().map(String::as_str).collect();
                v.sort_unstable();
                v
            });
            e.message.push_str(&did_you_mean(&e.text, known.iter().copied()));
        }
    }

    /// A lowered condition, or `None` after recording its errors: the one that stopped the
    /// expansion, if any, and every undefined macro it met.
    fn checked(&mut self, lowered: Result<Cond, PolicyError>, x: &mut Expansion) -> Option<Cond> {
        let undefined = std::mem::take(&mut x.undefined);
        let ok = lowered.is_ok() && undefined.is_empty();
        self.errors.extend(undefined);
        match lowered {
            Ok(c) if ok => Some(c),
            Ok(_) => None,
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn warn(&mut self, pos: &SourcePos, message: String) {
        self.set.warnings.push(PolicyWarning { pos: pos.clone(), message });
    }

    fn file(&mut self, items: Vec<Item>) {
        // Pre-scan: this file's definitions are visible to all of its rules.
        for item in &items {
            match item {
                Item::List { name, items, append, pos } => {
                    self.list_pos.insert(name.clone(), pos.clone());
                    if *append {
                        let list = self.lists.entry(name.clone()).or_default();
                        if list.len() + items.len() > MAX_LIST_ITEMS {
                            let message = format!(
                                "list '{name}' would have {} items after this append (limit {MAX_LIST_ITEMS})",
                                list.len() + items.len()
                            );
                            self.errors.push(PolicyError { pos: pos.clone(), message, text: name.clone() });
                            continue;
                        }
                        list.extend(items.iter().cloned());
                    } else {
                        self.lists.insert(name.clone(), items.clone());
                    }
                }
                Item::Macro { name, condition, append, continuation, pos } => {
                    let added = expr_depth(condition);
                    let (new, depth) = match (append, self.macros.remove(name)) {
                        (true, Some(old)) => {
                            let or = continuation.unwrap_or(true);
                            let old_depth = self.macro_depth.get(name).copied().unwrap_or_else(|| expr_depth(&old));
                            // Appended into the old disjunction (conjunction): one level below it.
                            let flat = matches!((&old, or), (Expr::Or(_), true) | (Expr::And(_), false));
                            let depth = if flat { old_depth.max(added + 1) } else { old_depth.max(added) + 1 };
                            (append_expr(old, condition.clone(), or), depth)
                        }
                        _ => (condition.clone(), added),
                    };
                    // Each `and`/`or` alternation of appends nests one level: bounded here,
                    // before anything recurses over the macro.
                    if depth > MAX_CONDITION_DEPTH {
                        let message = format!(
                            "macro '{name}': condition nests {depth} levels deep after its appends (limit {MAX_CONDITION_DEPTH})"
                        );
                        self.errors.push(PolicyError { pos: pos.clone(), message, text: name.clone() });
                        // An empty stand-in: rules using the macro report no second,
                        // misleading "undefined macro" error (the load fails anyway).
                        self.macros.insert(name.clone(), Expr::Or(Vec::new()));
                        self.macro_depth.insert(name.clone(), 1);
                        continue;
                    }
                    self.macros.insert(name.clone(), new);
                    self.macro_depth.insert(name.clone(), depth);
                }
                // Stand-ins for definitions with errors (the load fails anyway): rules
                // using them report no second, misleading "undefined" error.
                Item::Broken { kind: ItemKind::Macro, name } => {
                    if !self.macros.contains_key(name) {
                        self.macros.insert(name.clone(), Expr::Or(Vec::new()));
                        self.macro_depth.insert(name.clone(), 1);
                    }
                }
                Item::Broken { kind: ItemKind::List, name } => {
                    self.lists.entry(name.clone()).or_default();
                }
                Item::Broken { kind: ItemKind::Rule, name } => {
                    self.broken_rules.insert(name.clone());
                }
                _ => {}
            }
        }
        for item in items {
            match item {
                Item::Rule(r) => self.rule(*r),
                Item::Filter { name, condition, enabled, pos } => {
                    let enabled = self.enabled_flag(enabled.as_ref());
                    let what = format!("filter '{name}'");
                    let mut expansion = Expansion::new(&what, &pos);
                    let lowered = self.lower(&condition, &mut expansion, 1);
                    if let Some(condition) = self.checked(lowered, &mut expansion) {
                        self.set.filters.push(FilterDef { name, enabled, condition, pos });
                    }
                }
                Item::List { .. } | Item::Macro { .. } | Item::Broken { .. } => {}
            }
        }
    }

    fn enabled_flag(&mut self, raw: Option<&(String, SourcePos)>) -> bool {
        match raw {
            None => true,
            Some((text, pos)) => match parser::parse_bool(text) {
                Some(b) => b,
                None => {
                    self.warn(pos, format!("Unrecognized enabled flag: {text}"));
                    true
                }
            },
        }
    }

    fn find_rule(&self, name: &str) -> Option<usize> {
        self.set.rules.iter().rposition(|r| r.name == name)
    }

    fn rule(&mut self, r: RuleItem) {
        if let Some(src) = &r.source {
            let s = sysflow_plugin_api::flat::trim_bounding_quotes(src);
            if !matches!(s, "syscall" | "sysflow") {
                let msg = format!("rule '{}' skipped: source '{s}' is not evaluated by this engine", r.name);
                self.warn(&r.pos, msg);
                return;
            }
        }
        let append = r.append.as_deref().is_some_and(|a| parser::parse_bool(a) == Some(true));
        let what = format!("rule '{}'", r.name);
        let mut expansion = Expansion::new(&what, &r.pos);
        let exceptions = match self.exceptions(&r.exceptions, &mut expansion) {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(e);
                return;
            }
        };
        let cond = match &r.condition {
            Some(c) => {
                let lowered = self.lower(c, &mut expansion, 1);
                match self.checked(lowered, &mut expansion) {
                    Some(c) => Some(c),
                    None => return,
                }
            }
            None => None,
        };
        let overrides: HashMap<&str, &str> = r.overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if append || !overrides.is_empty() {
            let Some(idx) = self.find_rule(&r.name) else {
                if self.broken_rules.contains(&r.name) {
                    return;
                }
                self.errors.push(PolicyError {
                    pos: r.pos.clone(),
                    message: format!("rule '{}' appends to or overrides a rule that is not defined", r.name),
                    text: r.name.clone(),
                });
                return;
            };
            let mode = |key: &str| if append { Some("append") } else { overrides.get(key).copied() };
            // Moved out, not cloned: cloning the condition per append is quadratic in
            // the number of appends (on an error the load fails, so nothing is restored).
            let condition = std::mem::replace(&mut self.set.rules[idx].condition, Cond::Const(false));
            let mut rule = self.set.rules[idx].clone();
            rule.condition = condition;
            if let Some(c) = cond {
                rule.condition = match mode("condition") {
                    Some("replace") => c,
                    _ => combine(rule.condition, c, r.continuation.unwrap_or(false)),
                };
            }
            if let Some(ex) = exceptions {
                rule.condition = Cond::And(vec![rule.condition, Cond::Not(Box::new(ex))]);
            }
            // Appends nest the condition one level each: checked before the rule is kept.
            if let Some(why) = limits::Shape::of(&rule.condition).exceeded() {
                self.errors.push(PolicyError {
                    pos: r.pos.clone(),
                    message: format!("rule '{}': {why} (with its appends)", r.name),
                    text: r.name.clone(),
                });
                return;
            }
            if let Some(t) = r.tags {
                match mode("tags") {
                    Some("replace") => rule.tags = t,
                    _ => rule.tags.extend(t),
                }
            }
            if let Some(d) = r.desc {
                match mode("desc") {
                    Some("replace") => rule.desc = d,
                    _ => {
                        rule.desc.push(' ');
                        rule.desc.push_str(&d);
                    }
                }
            }
            if let Some((p, pos)) = &r.priority {
                rule.priority = self.priority(p, pos);
            }
            if r.enabled.is_some() {
                rule.enabled = self.enabled_flag(r.enabled.as_ref());
            }
            self.set.rules[idx] = rule;
            return;
        }
        let Some(cond) = cond else {
            // Falco idiom: `- rule: X` with only `enabled:` toggles an existing rule.
            if let (Some(idx), Some(_)) = (self.find_rule(&r.name), &r.enabled) {
                let en = self.enabled_flag(r.enabled.as_ref());
                self.set.rules[idx].enabled = en;
                return;
            }
            if r.enabled.is_some() && self.broken_rules.contains(&r.name) {
                return;
            }
            self.errors.push(PolicyError {
                pos: r.pos.clone(),
                message: format!("rule '{}' has no condition", r.name),
                text: r.name.clone(),
            });
            return;
        };
        let Some(desc) = r.desc else {
            self.errors.push(PolicyError {
                pos: r.pos.clone(),
                message: format!("rule '{}' has no desc", r.name),
                text: r.name.clone(),
            });
            return;
        };
        let priority = match &r.priority {
            Some((p, pos)) => self.priority(p, pos),
            None => 1,
        };
        let enabled = self.enabled_flag(r.enabled.as_ref());
        let condition = match exceptions {
            Some(ex) => Cond::And(vec![cond, Cond::Not(Box::new(ex))]),
            None => cond,
        };
        self.set.rules.push(RuleDef {
            name: r.name,
            desc,
            priority,
            tags: r.tags.unwrap_or_default(),
            actions: r.actions.unwrap_or_default(),
            prefilter: r.prefilter.unwrap_or_default(),
            enabled,
            condition,
            output: r.output,
            priority_word: r.priority.as_ref().and_then(|(p, _)| falco_priority_name(p)).map(str::to_string),
            pos: r.pos,
        });
    }

    fn priority(&mut self, word: &str, pos: &SourcePos) -> i32 {
        match priority_of(word) {
            Some(p) => p,
            None => {
                // Upstream maps `alert` to low with this warning (kept for compatibility).
                self.warn(pos, format!("Unrecognized priority value {word}. Deferring to low"));
                1
            }
        }
    }

    fn operand(a: &Atom) -> Operand {
        if a.kind == Tok::Id {
            Operand::Name { text: a.text.clone(), pos: a.pos.clone() }
        } else {
            Operand::Literal(a.text.clone())
        }
    }

    /// Warns (once per name) about a word that looks like a list name but names no list:
    /// an undefined list cannot be told from a literal value, so it is compared as one.
    fn check_list_name(&self, t: &str, bare: bool, pos: &SourcePos) {
        let listy = bare
            && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && t.rsplit_once('_').is_some_and(|(_, suffix)| LIST_SUFFIXES.contains(&suffix));
        if listy && !self.lists.contains_key(t) {
            let mut u = self.undefined_lists.borrow_mut();
            if !u.iter().any(|(n, _)| n == t) {
                u.push((t.to_string(), pos.clone()));
            }
        }
    }

    /// Expands list names (recursively, [`MAX_REFERENCE_DEPTH`] deep) into literal operands,
    /// counting each element against the expansion's size limit.
    fn expand_elem(&self, text: &str, out: &mut Vec<Operand>, depth: usize, x: &mut Expansion) -> Result<(), PolicyError> {
        match self.lists.get(text) {
            Some(items) if depth < MAX_REFERENCE_DEPTH => {
                for it in items {
                    if !self.lists.contains_key(it.as_str()) {
                        if let Some(pos) = self.list_pos.get(text) {
                            self.check_list_name(it, true, pos);
                        }
                    }
                    self.expand_elem(it, out, depth + 1, x)?;
                }
            }
            _ => {
                x.element(text)?;
                out.push(Operand::Literal(text.to_string()));
            }
        }
        Ok(())
    }

    /// Lowers a condition at tree depth `depth`, expanding macros and lists within the
    /// limits (depth, macro chain, size), so that the recursion here is bounded too.
    fn lower(&self, e: &Expr, x: &mut Expansion, depth: usize) -> Result<Cond, PolicyError> {
        if depth > MAX_CONDITION_DEPTH {
            let msg = format!("condition nests deeper than {MAX_CONDITION_DEPTH} levels after macro expansion");
            return Err(x.error(x.pos, msg));
        }
        if !matches!(e, Expr::Ref { .. }) {
            x.node()?;
        }
        Ok(match e {
            Expr::And(v) => Cond::And(v.iter().map(|e| self.lower(e, x, depth + 1)).collect::<Result<_, _>>()?),
            Expr::Or(v) => Cond::Or(v.iter().map(|e| self.lower(e, x, depth + 1)).collect::<Result<_, _>>()?),
            Expr::Not(e) => Cond::Not(Box::new(self.lower(e, x, depth + 1)?)),
            Expr::Ref { name, pos } => {
                let stack = &x.stack;
                let Some(m) = self.macros.get(name) else {
                    // The "did you mean" is added once the file's errors are counted: only
                    // listed errors pay for the search.
                    if x.undefined.len() < MAX_ERRORS_PER_FILE && !x.undefined.iter().any(|e| e.pos == *pos) {
                        x.undefined.push(PolicyError { pos: pos.clone(), message: undefined_macro(name), text: name.clone() });
                    }
                    return Ok(Cond::Const(false));
                };
                if stack.iter().any(|s| s == name) {
                    return Err(PolicyError {
                        pos: pos.clone(),
                        message: format!("macro '{name}' refers to itself ({} -> {name})", stack.join(" -> ")),
                        text: name.clone(),
                    });
                }
                if stack.len() >= MAX_REFERENCE_DEPTH {
                    let msg = format!("macro references nest deeper than {MAX_REFERENCE_DEPTH} levels at '{name}'");
                    return Err(x.error(pos, msg));
                }
                x.stack.push(name.clone());
                let c = self.lower(m, x, depth);
                x.stack.pop();
                c?
            }
            Expr::Exists(a) => Cond::Exists(Self::operand(a)),
            Expr::Cmp { lhs, op, rhs } => Cond::Cmp { lhs: Self::operand(lhs), op: *op, rhs: vec![Self::operand(rhs)] },
            Expr::List { lhs, op, elems } => {
                let mut rhs = Vec::new();
                for el in elems {
                    self.check_list_name(&el.text, el.kind == Tok::Id, &el.pos);
                    self.expand_elem(&el.text, &mut rhs, 0, x)?;
                }
                Cond::Cmp { lhs: Self::operand(lhs), op: *op, rhs }
            }
        })
    }

    /// Falco exceptions: the rule holds unless one exception's value tuple matches.
    fn exceptions(&self, exs: &[Exception], x: &mut Expansion) -> Result<Option<Cond>, PolicyError> {
        let mut alts = Vec::new();
        for ex in exs {
            if ex.fields.is_empty() {
                continue;
            }
            let comp_op = |c: &str| -> Result<Op, PolicyError> {
                Ok(match c {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    ">" => Op::Gt,
                    ">=" => Op::Ge,
                    "contains" => Op::Contains,
                    "icontains" => Op::IContains,
                    "startswith" => Op::StartsWith,
                    "endswith" => Op::EndsWith,
                    "in" | "intersects" => Op::In,
                    "pmatch" => Op::Pmatch,
                    "glob" => Op::Glob,
                    other => {
                        return Err(PolicyError {
                            pos: ex.pos.clone(),
                            message: format!("exception '{}': unknown comparison '{other}'", ex.name),
                            text: other.to_string(),
                        })
                    }
                })
            };
            if !ex.fields_is_list {
                let op = comp_op(ex.comps.first().map(String::as_str).unwrap_or("in"))?;
                let mut rhs = Vec::new();
                for tuple in &ex.values {
                    for v in tuple {
                        self.expand_elem(&v.text, &mut rhs, 0, x)?;
                    }
                }
                if !rhs.is_empty() {
                    alts.push(Cond::Cmp { lhs: Self::operand(&ex.fields[0]), op, rhs });
                }
                continue;
            }
            for tuple in &ex.values {
                let mut conj = Vec::new();
                for (i, field) in ex.fields.iter().enumerate() {
                    let Some(v) = tuple.get(i) else { break };
                    let op = comp_op(ex.comps.get(i).map(String::as_str).unwrap_or("="))?;
                    let mut rhs = Vec::new();
                    if matches!(op, Op::In | Op::Pmatch) {
                        self.expand_elem(&v.text, &mut rhs, 0, x)?;
                    } else {
                        x.element(&v.text)?;
                        rhs.push(Operand::Literal(v.text.clone()));
                    }
                    conj.push(Cond::Cmp { lhs: Self::operand(field), op, rhs });
                }
                if !conj.is_empty() {
                    alts.push(Cond::And(conj));
                }
            }
        }
        Ok(if alts.is_empty() { None } else { Some(Cond::Or(alts)) })
    }
}
