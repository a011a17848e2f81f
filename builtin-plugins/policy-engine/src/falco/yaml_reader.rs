//! Reads a Falco rule file as YAML (block and flow sequences, folded and literal scalars,
//! quoted strings with their escapes, comments, `---` documents) into the same
//! [`Item`]s as the upstream-compatible parser, keeping file:line:column positions that
//! point into the original file, also inside a folded condition.
//!
//! A file that is not YAML (upstream's own files may indent one item wrongly) is reported
//! as [`YamlRead::NotYaml`]; the caller then reads it with the upstream-compatible parser.

use std::{path::PathBuf, sync::Arc};

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser as YamlParser},
    scanner::{Marker, ScanError, TScalarStyle},
};

use crate::{
    error::PolicyError,
    position::SourcePos,
    limits::{MAX_LIST_ITEMS, MAX_YAML_NESTING},
};

use super::{
    ast::{Atom, Exception, Expr, Item, ItemKind, RuleItem},
    lexer::{Tok, SEVERITIES},
    parser::{self, parse_bool},
};

/// The outcome of reading one file as YAML.
pub enum YamlRead {
    /// The file's items (possibly with errors in some of them).
    Items(Vec<Item>, Vec<PolicyError>),
    /// YAML refuses the file: the scanner's message and where it stopped.
    NotYaml(PolicyError),
}

/// One YAML node with where it starts.
#[derive(Debug)]
enum Node {
    Scalar { text: String, style: TScalarStyle, at: Marker },
    Seq { items: Vec<Node>, at: Marker },
    Map { entries: Vec<(Node, Node)>, at: Marker },
}

impl Node {
    fn at(&self) -> Marker {
        match self {
            Node::Scalar { at, .. } | Node::Seq { at, .. } | Node::Map { at, .. } => *at,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a scalar",
            Node::Seq { .. } => "a sequence",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// Builds the node tree from the parser's events. Nesting is bounded by
/// [`MAX_YAML_NESTING`]: deeper documents are refused before anything recurses over them.
#[derive(Default)]
struct TreeBuilder {
    /// Open containers: their node and, for a mapping, the pending key.
    open: Vec<(Node, Option<Node>)>,
    /// Finished top-level nodes (one per document).
    docs: Vec<Node>,
    /// Set when the document nests too deeply.
    too_deep: Option<Marker>,
}

impl TreeBuilder {
    fn push_node(&mut self, node: Node) {
        match self.open.last_mut() {
            None => self.docs.push(node),
            Some((Node::Seq { items, .. }, _)) => items.push(node),
            Some((Node::Map { entries, .. }, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
            Some((Node::Scalar { .. }, _)) => {}
        }
    }

    fn open(&mut self, node: Node, at: Marker) {
        if self.open.len() >= MAX_YAML_NESTING {
            self.too_deep.get_or_insert(at);
        }
        self.open.push((node, None));
    }

    fn close(&mut self) {
        if let Some((node, _)) = self.open.pop() {
            self.push_node(node);
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, at: Marker) {
        if self.too_deep.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, _, _) => self.push_node(Node::Scalar { text, style, at }),
            // An alias stands for an earlier node; rule files have none, so it reads as an
            // empty scalar (reported where a value is required).
            Event::Alias(_) => self.push_node(Node::Scalar { text: String::new(), style: TScalarStyle::Plain, at }),
            Event::SequenceStart(..) => self.open(Node::Seq { items: Vec::new(), at }, at),
            Event::MappingStart(..) => self.open(Node::Map { entries: Vec::new(), at }, at),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            _ => {}
        }
    }
}

/// Reads `src` (the text of `file`) as a YAML rule file.
pub fn read(src: &str, file: Arc<PathBuf>) -> YamlRead {
    let mut builder = TreeBuilder::default();
    let mut yp = YamlParser::new_from_str(src);
    let lines = LineStarts::new(src);
    if let Err(e) = yp.load(&mut builder, true) {
        return YamlRead::NotYaml(scan_error(&e, &file));
    }
    let mut reader = Reader { src, lines, file, errors: Vec::new() };
    if let Some(at) = builder.too_deep {
        let e = reader.error(at, format!("YAML nests deeper than {MAX_YAML_NESTING} levels"), "");
        return YamlRead::Items(Vec::new(), vec![e]);
    }
    let mut items = Vec::new();
    for doc in builder.docs {
        match doc {
            Node::Seq { items: entries, .. } => {
                for entry in entries {
                    match reader.item(&entry) {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => {}
                        Err(e) => {
                            reader.errors.push(e);
                            items.extend(broken_item(&entry));
                        }
                    }
                }
            }
            // An empty document (only comments) has nothing to read.
            Node::Scalar { ref text, .. } if text.is_empty() || text == "~" || text == "null" => {}
            other => {
                let at = other.at();
                let e = reader.error(at, format!("expected a sequence of items (rule, macro, list), found {}", other.kind()), "");
                return YamlRead::NotYaml(e);
            }
        }
    }
    YamlRead::Items(items, reader.errors)
}

/// The kind and name of an item that did not read (`- macro: m` with a bad condition),
/// when the entry names one.
fn broken_item(entry: &Node) -> Option<Item> {
    let Node::Map { entries, .. } = entry else { return None };
    match entries.first()? {
        (Node::Scalar { text: kind, .. }, Node::Scalar { text: name, .. }) if !name.is_empty() => {
            Some(Item::Broken { kind: ItemKind::of_keyword(kind)?, name: name.clone() })
        }
        _ => None,
    }
}

/// The scanner's refusal as an error at its position.
fn scan_error(e: &ScanError, file: &Arc<PathBuf>) -> PolicyError {
    let m = e.marker();
    let (line, col) = LineStarts::line_col(m);
    PolicyError { pos: SourcePos { file: file.clone(), line, col }, message: format!("not YAML: {}", e.info()), text: String::new() }
}

/// Byte offsets where each line starts, to turn markers into positions.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(src: &str) -> Self {
        let mut v = vec![0];
        v.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(v)
    }

    /// 1-based line and column (in characters) of a marker.
    fn line_col(m: &Marker) -> (u32, u32) {
        (m.line() as u32, m.col() as u32 + 1)
    }

    /// Byte offset of a marker in `src`.
    fn offset(&self, src: &str, m: &Marker) -> usize {
        let start = self.0.get(m.line().saturating_sub(1)).copied().unwrap_or(src.len());
        src[start..].char_indices().nth(m.col()).map(|(i, _)| start + i).unwrap_or(src.len())
    }
}

struct Reader<'s> {
    src: &'s str,
    lines: LineStarts,
    file: Arc<PathBuf>,
    errors: Vec<PolicyError>,
}

type RResult<T> = Result<T, PolicyError>;

impl Reader<'_> {
    fn pos(&self, m: Marker) -> SourcePos {
        let (line, col) = LineStarts::line_col(&m);
        SourcePos { file: self.file.clone(), line, col }
    }

    fn error(&self, m: Marker, message: String, text: &str) -> PolicyError {
        PolicyError { pos: self.pos(m), message, text: text.to_string() }
    }

    /// Where a sequence entry starts: its `-` when it is on the key's line (so that
    /// positions equal the upstream-compatible parser's), else the key.
    fn entry_pos(&self, key: Marker) -> SourcePos {
        let off = self.lines.offset(self.src, &key);
        let before = self.src[..off].trim_end_matches([' ', '\t']);
        let p = self.pos(key);
        if before.ends_with('-') {
            let dash_col = (p.col as usize).saturating_sub(off - before.len() + 1).max(1);
            return SourcePos { col: dash_col as u32, ..p };
        }
        p
    }

    fn scalar<'n>(&self, n: &'n Node, what: &str) -> RResult<&'n str> {
        match n {
            Node::Scalar { text, .. } => Ok(text),
            other => Err(self.error(other.at(), format!("{what}: expected a scalar, found {}", other.kind()), "")),
        }
    }

    /// A list value: a block or flow sequence of scalars (a scalar alone is refused).
    fn strings(&self, n: &Node, what: &str) -> RResult<Vec<String>> {
        let Node::Seq { items, .. } = n else {
            // `tags:` with nothing after it is an empty list.
            if let Node::Scalar { text, style: TScalarStyle::Plain, .. } = n {
                if text.is_empty() || text == "~" || text == "null" {
                    return Ok(Vec::new());
                }
            }
            return Err(self.error(n.at(), format!("{what}: expected a sequence, found {}", n.kind()), ""));
        };
        items.iter().map(|i| self.scalar(i, what).map(str::to_string)).collect()
    }

    /// A scalar as an atom of `kind`.
    fn atom(&self, n: &Node, kind: Tok, what: &str) -> RResult<Atom> {
        Ok(Atom { text: self.scalar(n, what)?.to_string(), kind, pos: self.pos(n.at()) })
    }

    fn item(&mut self, entry: &Node) -> RResult<Option<Item>> {
        let Node::Map { entries, at } = entry else {
            return Err(self.error(entry.at(), format!("expected an item (rule, macro, list), found {}", entry.kind()), ""));
        };
        let Some((k0, _)) = entries.first() else {
            return Err(self.error(*at, "empty item".to_string(), ""));
        };
        let kind = self.scalar(k0, "item")?;
        let pos = self.entry_pos(k0.at());
        match kind {
            "rule" => self.rule(entries, pos).map(|r| Some(Item::Rule(Box::new(r)))),
            "macro" => self.macro_item(entries, pos).map(Some),
            "list" => self.list_item(entries, pos).map(Some),
            "filter" | "drop" => self.filter_item(entries, pos).map(Some),
            // Beyond upstream: accepted and ignored (plugins do not apply to SysFlow).
            "required_engine_version" | "required_plugin_versions" => Ok(None),
            other => Err(self.error(
                k0.at(),
                "expected rule, macro, list, filter, drop or required_engine_version".to_string(),
                other,
            )),
        }
    }

    fn name(&self, n: &Node, what: &str) -> RResult<String> {
        let s = self.scalar(n, what)?;
        if s.is_empty() {
            return Err(self.error(n.at(), format!("{what}: expected a name"), ""));
        }
        Ok(s.to_string())
    }

    /// Parses a condition scalar, with positions mapped into the file.
    fn condition(&self, n: &Node, item: &str) -> RResult<(Option<bool>, Expr)> {
        let Node::Scalar { text, at, .. } = n else {
            return Err(self.error(n.at(), format!("{item}: condition: expected a scalar, found {}", n.kind()), ""));
        };
        let map = ScalarMap::new(self.src, self.lines.offset(self.src, at), *at, text);
        if text.trim().is_empty() {
            return Err(PolicyError { pos: self.pos(*at), message: "empty condition".to_string(), text: String::new() });
        }
        match parser::parse_condition(text, self.file.clone(), item) {
            Ok((cont, mut e)) => {
                remap_expr(&mut e, &map);
                Ok((cont, e))
            }
            Err(mut e) => {
                map.remap(&mut e.pos);
                // `unclosed '(' (opened at L:C)` names a second position, also into the file.
                if let Some((head, tail)) = e.message.split_once("(opened at ") {
                    if let Some((lc, rest)) = tail.split_once(')') {
                        if let Some((l, c)) = lc.split_once(':') {
                            let mut p = self.pos(*at);
                            (p.line, p.col) = (l.parse().unwrap_or(1), c.parse().unwrap_or(1));
                            map.remap(&mut p);
                            e.message = format!("{head}(opened at {}:{}){rest}", p.line, p.col);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    fn rule(&mut self, entries: &[(Node, Node)], pos: SourcePos) -> RResult<RuleItem> {
        let name = self.name(&entries[0].1, "rule")?;
        let what = format!("rule '{name}'");
        let mut r = RuleItem { name, pos, ..Default::default() };
        for (k, v) in &entries[1..] {
            let key = self.scalar(k, &what)?;
            match key {
                "desc" => {
                    r.desc.get_or_insert(self.scalar(v, &what)?.trim_end().to_string());
                }
                "condition" => {
                    let (cont, e) = self.condition(v, &what)?;
                    if r.condition.is_none() {
                        r.condition = Some(e);
                        r.continuation = cont;
                    }
                }
                "output" => {
                    r.output.get_or_insert(self.scalar(v, &what)?.trim_end().to_string());
                }
                "priority" => {
                    let p = self.scalar(v, &what)?;
                    if !SEVERITIES.iter().any(|s| s.eq_ignore_ascii_case(p)) {
                        return Err(self.error(v.at(), "expected a priority (low, medium, high, …)".to_string(), p));
                    }
                    r.priority.get_or_insert((p.to_ascii_lowercase(), self.pos(v.at())));
                }
                "tags" => {
                    r.tags.get_or_insert(self.strings(v, &what)?);
                }
                "actions" => {
                    r.actions.get_or_insert(self.strings(v, &what)?);
                }
                "prefilter" => {
                    r.prefilter.get_or_insert(self.strings(v, &what)?);
                }
                "enabled" => {
                    let a = self.atom(v, Tok::Id, &what)?;
                    r.enabled.get_or_insert((a.text, a.pos));
                }
                "append" => {
                    r.append.get_or_insert(self.scalar(v, &what)?.to_string());
                }
                "source" => {
                    r.source.get_or_insert(self.scalar(v, &what)?.to_string());
                }
                "exceptions" => r.exceptions = self.exceptions(v, &what)?,
                "override" => r.overrides = self.overrides(v, &what)?,
                "warn_evttypes" | "skip-if-unknown-filter" => {}
                _ => return Err(self.error(k.at(), format!("'{key}' is not a rule key"), key)),
            }
        }
        Ok(r)
    }

    fn macro_item(&mut self, entries: &[(Node, Node)], pos: SourcePos) -> RResult<Item> {
        let name = self.name(&entries[0].1, "macro")?;
        let what = format!("macro '{name}'");
        let (mut condition, mut continuation, mut append) = (None, None, false);
        for (k, v) in &entries[1..] {
            match self.scalar(k, &what)? {
                "condition" => {
                    let (cont, e) = self.condition(v, &what)?;
                    continuation = cont;
                    condition = Some(e);
                }
                "append" => append = parse_bool(self.scalar(v, &what)?) == Some(true),
                key => {
                    let msg = "unexpected key in macro (expected condition or append)".to_string();
                    return Err(self.error(k.at(), msg, key));
                }
            }
        }
        let Some(condition) = condition else {
            return Err(PolicyError { pos, message: format!("macro '{name}' has no condition"), text: name });
        };
        Ok(Item::Macro { name, condition, append, continuation, pos })
    }

    fn list_item(&mut self, entries: &[(Node, Node)], pos: SourcePos) -> RResult<Item> {
        let name = self.name(&entries[0].1, "list")?;
        let what = format!("list '{name}'");
        let (mut items, mut append) = (None, false);
        for (k, v) in &entries[1..] {
            match self.scalar(k, &what)? {
                "items" => {
                    let list = self.strings(v, &what)?;
                    if list.len() > MAX_LIST_ITEMS {
                        let message = format!("list '{name}' has {} items (limit {MAX_LIST_ITEMS})", list.len());
                        return Err(PolicyError { pos, message, text: name });
                    }
                    items = Some(list);
                }
                "append" => append = parse_bool(self.scalar(v, &what)?) == Some(true),
                key => {
                    return Err(self.error(k.at(), "unexpected key in list (expected items)".to_string(), key));
                }
            }
        }
        let Some(items) = items else {
            return Err(PolicyError { pos, message: format!("list '{name}' has no items"), text: name });
        };
        Ok(Item::List { name, items, append, pos })
    }

    fn filter_item(&mut self, entries: &[(Node, Node)], pos: SourcePos) -> RResult<Item> {
        let name = self.name(&entries[0].1, "filter")?;
        let what = format!("filter '{name}'");
        let (mut condition, mut enabled) = (None, None);
        for (k, v) in &entries[1..] {
            match self.scalar(k, &what)? {
                "condition" => {
                    let (_, e) = self.condition(v, &what)?;
                    condition.get_or_insert(e);
                }
                "enabled" => {
                    let a = self.atom(v, Tok::Id, &what)?;
                    enabled.get_or_insert((a.text, a.pos));
                }
                key => {
                    let msg = "unexpected key in filter (expected condition or enabled)".to_string();
                    return Err(self.error(k.at(), msg, key));
                }
            }
        }
        let Some(condition) = condition else {
            return Err(PolicyError { pos, message: format!("filter '{name}' has no condition"), text: name });
        };
        Ok(Item::Filter { name, condition, enabled, pos })
    }

    /// `exceptions:` — a sequence of `{name, fields, comps, values}` mappings.
    fn exceptions(&self, n: &Node, what: &str) -> RResult<Vec<Exception>> {
        let Node::Seq { items, .. } = n else {
            return Err(self.error(n.at(), format!("{what}: exceptions: expected a sequence, found {}", n.kind()), ""));
        };
        let mut out = Vec::new();
        for ex_node in items {
            let Node::Map { entries, at } = ex_node else {
                let msg = format!("{what}: exception: expected a mapping, found {}", ex_node.kind());
                return Err(self.error(ex_node.at(), msg, ""));
            };
            let mut ex = Exception { pos: self.entry_pos(*at), ..Default::default() };
            for (k, v) in entries {
                match self.scalar(k, what)? {
                    "name" => ex.name = self.scalar(v, what)?.to_string(),
                    "fields" => match v {
                        Node::Seq { items, .. } => {
                            ex.fields = items.iter().map(|f| self.atom(f, Tok::Id, what)).collect::<RResult<_>>()?;
                            ex.fields_is_list = true;
                        }
                        _ => ex.fields = vec![self.atom(v, Tok::Id, what)?],
                    },
                    "comps" => match v {
                        Node::Seq { .. } => ex.comps = self.strings(v, what)?,
                        _ => ex.comps = vec![self.scalar(v, what)?.to_string()],
                    },
                    "values" => {
                        let Node::Seq { items, .. } = v else {
                            return Err(self.error(v.at(), format!("{what}: values: expected a sequence"), ""));
                        };
                        for tuple in items {
                            ex.values.push(match tuple {
                                Node::Seq { items, .. } => {
                                    items.iter().map(|x| self.atom(x, Tok::Str, what)).collect::<RResult<_>>()?
                                }
                                _ => vec![self.atom(tuple, Tok::Str, what)?],
                            });
                        }
                    }
                    key => {
                        let msg = format!("{what}: exception: unknown key (expected name, fields, comps, values)");
                        return Err(self.error(k.at(), msg, key));
                    }
                }
            }
            out.push(ex);
        }
        Ok(out)
    }

    /// `override:` — a mapping of keys to `append` or `replace`.
    fn overrides(&self, n: &Node, what: &str) -> RResult<Vec<(String, String)>> {
        let Node::Map { entries, .. } = n else {
            return Err(self.error(n.at(), format!("{what}: override: expected a mapping, found {}", n.kind()), ""));
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let mode = self.scalar(v, what)?;
            if !matches!(mode, "append" | "replace") {
                return Err(self.error(v.at(), format!("{what}: override: expected append or replace"), mode));
            }
            out.push((self.scalar(k, what)?.to_string(), mode.to_string()));
        }
        Ok(out)
    }
}

/// Maps each byte of a decoded scalar to the line and column of the character it came
/// from in the file, by walking the decoded text and the source side by side: whitespace
/// is folded, and a source character with no decoded counterpart (a quote, an escape's
/// backslash, a block indicator) is skipped.
struct ScalarMap {
    /// `(line, col)` per byte of the decoded text.
    at: Vec<(u32, u32)>,
    /// Byte offset where each line of the decoded text starts.
    decoded_lines: Vec<usize>,
    /// The decoded text (positions within it count characters).
    decoded: String,
    /// The decoded text is ASCII (a column is then a byte offset).
    ascii: bool,
}

/// How many source characters the alignment skips looking for a decoded character
/// before it gives up and keeps the last position (an escape like `\x41` is 4).
const MAX_ESCAPE_SKIP: usize = 8;

impl ScalarMap {
    fn new(src: &str, start: usize, at: Marker, decoded: &str) -> Self {
        let mut raw = Vec::new();
        let (mut line, mut col) = (at.line() as u32, at.col() as u32 + 1);
        for c in src[start.min(src.len())..].chars() {
            raw.push((c, line, col));
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            // Enough source for the decoded text plus its indentation and quoting.
            if raw.len() > decoded.len() * 4 + 1024 {
                break;
            }
        }
        let mut out = Vec::with_capacity(decoded.len());
        let mut r = 0;
        let last = |r: usize| raw.get(r.min(raw.len().saturating_sub(1))).map(|&(_, l, c)| (l, c)).unwrap_or((line, col));
        for c in decoded.chars() {
            if c.is_whitespace() {
                let p = last(r);
                if raw.get(r).is_some_and(|&(rc, _, _)| rc.is_whitespace()) {
                    r += 1;
                }
                out.extend(std::iter::repeat_n(p, c.len_utf8()));
                continue;
            }
            while raw.get(r).is_some_and(|&(rc, _, _)| rc.is_whitespace()) {
                r += 1;
            }
            let mut k = r;
            let mut skipped = 0;
            while let Some(&(rc, _, _)) = raw.get(k) {
                if rc == c || skipped >= MAX_ESCAPE_SKIP {
                    break;
                }
                if !rc.is_whitespace() {
                    skipped += 1;
                }
                k += 1;
            }
            if raw.get(k).is_some_and(|&(rc, _, _)| rc == c) {
                r = k;
            }
            out.extend(std::iter::repeat_n(last(r), c.len_utf8()));
            if raw.get(r).is_some_and(|&(rc, _, _)| rc == c) {
                r += 1;
            }
        }
        let mut decoded_lines = vec![0];
        decoded_lines.extend(decoded.match_indices('\n').map(|(i, _)| i + 1));
        ScalarMap { at: out, decoded_lines, decoded: decoded.to_string(), ascii: decoded.is_ascii() }
    }

    /// Turns a position within the decoded text into one within the file.
    fn remap(&self, pos: &mut SourcePos) {
        let Some(&line_start) = self.decoded_lines.get(pos.line.saturating_sub(1) as usize) else { return };
        let rest = self.decoded.get(line_start..).unwrap_or("");
        let col = pos.col.saturating_sub(1) as usize;
        // Columns count characters: in ASCII text (the usual case) a column is a byte, which
        // keeps mapping every atom of a long one-line condition linear.
        let off = if self.ascii {
            line_start + col.min(rest.len())
        } else {
            line_start + rest.char_indices().nth(col).map(|(i, _)| i).unwrap_or(rest.len())
        };
        let (line, col) = match (self.at.get(off), self.at.last()) {
            (Some(&p), _) => p,
            // Past the end (an error after the last token): one column after it.
            (None, Some(&(l, c))) => (l, c + 1),
            (None, None) => return,
        };
        pos.line = line;
        pos.col = col;
    }
}

/// Maps every position in a condition parsed from a scalar into the file.
fn remap_expr(e: &mut Expr, map: &ScalarMap) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(v) | Expr::Or(v) => stack.extend(v.iter_mut()),
            Expr::Not(x) => stack.push(x),
            Expr::Ref { pos, .. } => map.remap(pos),
            Expr::Exists(a) => map.remap(&mut a.pos),
            Expr::Cmp { lhs, rhs, .. } => {
                map.remap(&mut lhs.pos);
                map.remap(&mut rhs.pos);
            }
            Expr::List { lhs, elems, .. } => {
                map.remap(&mut lhs.pos);
                for a in elems {
                    map.remap(&mut a.pos);
                }
            }
        }
    }
}
