//! Recursive-descent parser for upstream's policy grammar (policy-language.md §3),
//! plus current Falco rule-file keys (`append`, `exceptions`, `source`, `override`,
//! `required_plugin_versions`, block scalar indicators).

use std::{path::PathBuf, sync::Arc};

use crate::{
    error::PolicyError,
    ir::Op,
    position::SourcePos,
    limits::{MAX_CONDITION_NESTING, MAX_LIST_ITEMS},
};

use super::{
    ast::{Atom, Exception, Expr, Item, ItemKind, RuleItem},
    lexer::{tokenize, tokenize_condition, Tok, Token},
};

/// Words that end free text (rule names, descriptions, outputs).
const TEXT_STOP: &[&str] = &[
    "desc",
    "condition",
    "actions",
    "output",
    "priority",
    "tags",
    "prefilter",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "append",
];

/// Item kinds after `-`.
const ITEM_KEYWORDS: &[&str] = &["rule", "filter", "drop", "macro", "list", "required_engine_version"];

/// Falco field transformers (`tolower(proc.name)`), refused by name.
const TRANSFORMERS: &[&str] = &["tolower", "toupper", "basename", "len", "b64", "val"];

/// Falco operators this engine does not evaluate, refused by name.
const UNSUPPORTED_OPERATORS: &[&str] = &["bcontains", "bstartswith", "bendswith", "iglob"];

/// Current Falco keys that upstream's grammar lacks; recognised when followed by `:`.
const EXT_KEYS: &[&str] = &["source", "exceptions", "override", "required_plugin_versions"];

/// Parses one file into items. All syntax errors found are returned (parsing resumes at
/// the next item after an error).
pub fn parse_file(src: &str, file: Arc<PathBuf>) -> Result<Vec<Item>, Vec<PolicyError>> {
    let (items, errors) = parse_file_recovering(src, file);
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(errors)
    }
}

/// Parses one file into the items that parse, an [`Item::Broken`] for each named item
/// that does not, and all syntax errors found.
pub fn parse_file_recovering(src: &str, file: Arc<PathBuf>) -> (Vec<Item>, Vec<PolicyError>) {
    let toks = tokenize(src);
    let mut p = Parser { src, toks, i: 0, file, errors: Vec::new(), nesting: 0, item: String::new(), naming: None };
    let items = p.file();
    (items, p.errors)
}

/// Parses one condition written as a YAML value (`text` is the decoded scalar) for
/// `item` (`rule 'X'`, named in limit errors). Positions are within `text`: the YAML
/// reader maps them back into the file.
pub fn parse_condition(text: &str, file: Arc<PathBuf>, item: &str) -> Result<(Option<bool>, Expr), PolicyError> {
    let toks = tokenize_condition(text);
    let mut p = Parser { src: text, toks, i: 0, file, errors: Vec::new(), nesting: 0, item: item.to_string(), naming: None };
    let (cont, mut e) = p.condition()?;
    unescape_strings(&mut e);
    let t = p.peek();
    if t.kind != Tok::Eof {
        return Err(p.err(t, "expected 'and', 'or' or the end of the condition"));
    }
    Ok((cont, e))
}

/// Resolves the backslash escapes of every `"…"` string in a condition read from YAML.
fn unescape_strings(e: &mut Expr) {
    fn atom(a: &mut Atom) {
        if a.kind == Tok::Str && a.text.starts_with('"') && a.text.contains('\\') {
            let mut out = String::with_capacity(a.text.len());
            let mut chars = a.text.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            a.text = out;
        }
    }
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(v) | Expr::Or(v) => stack.extend(v.iter_mut()),
            Expr::Not(x) => stack.push(x),
            Expr::Ref { .. } => {}
            Expr::Exists(a) => atom(a),
            Expr::Cmp { lhs, rhs, .. } => {
                atom(lhs);
                atom(rhs);
            }
            Expr::List { lhs, elems, .. } => {
                atom(lhs);
                elems.iter_mut().for_each(atom);
            }
        }
    }
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    file: Arc<PathBuf>,
    errors: Vec<PolicyError>,
    /// Parentheses and `not`s open at the cursor in the current condition.
    nesting: usize,
    /// The item being parsed (`rule 'X'`), named in limit errors.
    item: String,
    /// Kind and name of the item being parsed, once its name is read (for [`Item::Broken`]).
    naming: Option<(ItemKind, String)>,
}

type PResult<T> = Result<T, PolicyError>;

impl<'s> Parser<'s> {
    fn peek(&self) -> Token {
        self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, k: usize) -> Token {
        self.toks[(self.i + k).min(self.toks.len() - 1)]
    }

    fn text(&self, t: Token) -> &'s str {
        t.text(self.src)
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if t.kind != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn pos(&self, t: Token) -> SourcePos {
        SourcePos { file: self.file.clone(), line: t.line, col: t.col }
    }

    fn err(&self, t: Token, message: impl Into<String>) -> PolicyError {
        let text = if t.kind == Tok::Eof { "end of file".to_string() } else { self.text(t).to_string() };
        PolicyError { pos: self.pos(t), message: message.into(), text }
    }

    fn is_kw(&self, t: Token, kw: &str) -> bool {
        t.kind == Tok::Keyword && self.text(t) == kw
    }

    fn is_punct(&self, t: Token, p: &str) -> bool {
        t.kind == Tok::Punct && self.text(t) == p
    }

    /// `-` followed by an item word and `:`.
    fn at_item_start(&self) -> bool {
        let (a, b, c) = (self.peek(), self.peek_at(1), self.peek_at(2));
        self.is_punct(a, "-")
            && c.kind == Tok::KeySep
            && ((b.kind == Tok::Keyword && ITEM_KEYWORDS.contains(&self.text(b)))
                || (b.kind == Tok::Id && self.text(b) == "required_plugin_versions"))
    }

    /// An extension key (`source:` …) at the cursor.
    fn at_ext_key(&self) -> bool {
        let (a, b) = (self.peek(), self.peek_at(1));
        a.kind == Tok::Id && EXT_KEYS.contains(&self.text(a)) && b.kind == Tok::KeySep
    }

    fn at_text_stop(&self) -> bool {
        let t = self.peek();
        t.kind == Tok::Eof
            || (t.kind == Tok::Keyword && TEXT_STOP.contains(&self.text(t)))
            || self.at_ext_key()
            || self.at_item_start()
    }

    fn expect_keysep(&mut self) -> PResult<Token> {
        let t = self.peek();
        if t.kind != Tok::KeySep {
            return Err(self.err(t, "expected ':'"));
        }
        self.bump();
        // YAML block scalar indicators (`|`, `|-`, `>-`, `>+`): beyond upstream, skipped.
        let sep_has_gt = self.text(t).ends_with('>');
        let mut last = t;
        let n = self.peek();
        if n.kind == Tok::Error && self.text(n) == "|" {
            self.bump();
            last = n;
        }
        if sep_has_gt || last.end != t.end {
            let c = self.peek();
            if c.start == last.end && (self.is_punct(c, "-") || self.text(c) == "+") {
                self.bump();
            }
        }
        Ok(t)
    }

    /// Skips to the next item start after an error.
    fn recover(&mut self) {
        while self.peek().kind != Tok::Eof && !self.at_item_start() {
            self.bump();
        }
    }

    fn file(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while self.peek().kind != Tok::Eof {
            let start = self.i;
            self.naming = None;
            match self.item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {}
                Err(e) => {
                    self.errors.push(e);
                    if let Some((kind, name)) = self.naming.take() {
                        items.push(Item::Broken { kind, name });
                    }
                    // An error found at the next item (an incomplete value) must not cost
                    // that item too.
                    if self.i == start || !self.at_item_start() {
                        self.bump();
                    }
                    self.recover();
                }
            }
        }
        items
    }

    fn item(&mut self) -> PResult<Option<Item>> {
        let dash = self.peek();
        if !self.is_punct(dash, "-") {
            return Err(self.err(dash, "expected '-' starting an item (rule, macro, list, filter)"));
        }
        self.bump();
        let kw = self.peek();
        let word = self.text(kw);
        if kw.kind == Tok::Id && word == "required_plugin_versions" {
            // Beyond upstream: accepted and ignored (plugins do not apply to SysFlow).
            self.bump();
            self.expect_keysep()?;
            self.recover();
            return Ok(None);
        }
        if kw.kind != Tok::Keyword || !ITEM_KEYWORDS.contains(&word) {
            return Err(self.err(kw, "expected rule, macro, list, filter, drop or required_engine_version"));
        }
        self.bump();
        self.expect_keysep()?;
        let pos = self.pos(dash);
        self.nesting = 0;
        self.item = word.to_string();
        match word {
            "rule" => self.rule(pos).map(|r| Some(Item::Rule(Box::new(r)))),
            "macro" => self.macro_item(pos).map(Some),
            "list" => self.list_item(pos).map(Some),
            "filter" | "drop" => self.filter_item(pos).map(Some),
            _ => {
                self.atom()?;
                Ok(None)
            }
        }
    }

    fn text_value(&mut self) -> PResult<String> {
        let first = self.peek();
        if self.at_text_stop() {
            return Err(self.err(first, "expected text"));
        }
        let mut last = first;
        while !self.at_text_stop() {
            last = self.bump();
        }
        Ok(self.src[first.start..last.end].to_string())
    }

    fn name_id(&mut self) -> PResult<String> {
        let t = self.peek();
        if t.kind != Tok::Id {
            return Err(self.err(t, "expected a name"));
        }
        self.bump();
        Ok(self.text(t).to_string())
    }

    fn rule(&mut self, pos: SourcePos) -> PResult<RuleItem> {
        let name = self.text_value()?;
        self.item = format!("rule '{name}'");
        self.naming = Some((ItemKind::Rule, name.clone()));
        let mut r = RuleItem { name, pos, ..Default::default() };
        loop {
            let t = self.peek();
            if t.kind == Tok::Eof || self.at_item_start() {
                break;
            }
            if self.at_ext_key() {
                let key = self.text(t);
                self.bump();
                self.expect_keysep()?;
                match key {
                    "source" => {
                        let v = self.atom()?.text;
                        r.source.get_or_insert(v);
                    }
                    "exceptions" => r.exceptions = self.exceptions()?,
                    "override" => r.overrides = self.overrides()?,
                    _ => return Err(self.err(t, "unexpected key in rule")),
                }
                continue;
            }
            if t.kind != Tok::Keyword {
                return Err(self.err(t, "unexpected text in rule (expected 'and', 'or', or a key such as priority, tags)"));
            }
            let key = self.text(t);
            self.bump();
            self.expect_keysep()?;
            match key {
                "desc" => {
                    let v = self.text_value()?;
                    r.desc.get_or_insert(v);
                }
                "condition" => {
                    let (cont, e) = self.condition()?;
                    if r.condition.is_none() {
                        r.condition = Some(e);
                        r.continuation = cont;
                    }
                }
                "output" => {
                    let v = self.text_value()?;
                    r.output.get_or_insert(v);
                }
                "priority" => {
                    let s = self.peek();
                    if s.kind != Tok::Severity {
                        return Err(self.err(s, "expected a priority (low, medium, high, …)"));
                    }
                    self.bump();
                    let p = self.pos(s);
                    r.priority.get_or_insert((self.text(s).to_ascii_lowercase(), p));
                }
                "tags" => {
                    let v = self.blist()?;
                    r.tags.get_or_insert(v);
                }
                "actions" => {
                    let v = self.blist()?;
                    r.actions.get_or_insert(v);
                }
                "prefilter" => {
                    let v = self.blist()?;
                    r.prefilter.get_or_insert(v);
                }
                "enabled" => {
                    let a = self.atom()?;
                    r.enabled.get_or_insert((a.text, a.pos));
                }
                "append" => {
                    let a = self.atom()?;
                    r.append.get_or_insert(a.text);
                }
                "warn_evttypes" | "skip-if-unknown-filter" => {
                    self.atom()?;
                }
                _ => return Err(self.err(t, format!("'{key}' is not a rule key"))),
            }
        }
        Ok(r)
    }

    /// Parses a condition; a leading `and`/`or` (Falco append continuation) is reported.
    fn condition(&mut self) -> PResult<(Option<bool>, Expr)> {
        let first = self.i;
        let lead = self.peek();
        let mut cont = None;
        if self.is_kw(lead, "and") || self.is_kw(lead, "or") {
            self.bump();
            cont = Some(self.text(lead) == "or");
        }
        let e = self.expr().map_err(|e| self.at_condition_end(e, first))?;
        Ok((cont, e))
    }

    /// A key (`priority:` …), the next item or the end of file: where a value's text ends.
    fn at_value_end(&self) -> bool {
        let t = self.peek();
        t.kind == Tok::Eof
            || self.at_item_start()
            || self.at_ext_key()
            || (t.kind == Tok::Keyword && self.peek_at(1).kind == Tok::KeySep)
    }

    /// Moves an error that the parser hit at the key after a condition (`condition: a =`
    /// then `priority:`) to just after the condition's last token, where the text is
    /// incomplete, and quotes the condition instead of the unrelated key.
    fn at_condition_end(&self, mut e: PolicyError, first: usize) -> PolicyError {
        if !self.at_value_end() || self.i == 0 {
            return e;
        }
        let last = self.toks[self.i - 1];
        let text = self.text(last);
        let (line, col) = match text.rfind('\n') {
            Some(nl) => (last.line + text.matches('\n').count() as u32, text[nl + 1..].chars().count() as u32 + 1),
            None => (last.line, last.col + text.chars().count() as u32),
        };
        e.pos = SourcePos { file: self.file.clone(), line, col };
        if self.i > first {
            let cond = &self.src[self.toks[first].start..last.end];
            let cond = cond.split_whitespace().collect::<Vec<_>>().join(" ");
            const SHOWN: usize = 60;
            let n = cond.chars().count();
            // The end is what is incomplete: keep the tail of a long condition.
            e.text = if n > SHOWN { format!("…{}", cond.chars().skip(n - SHOWN).collect::<String>()) } else { cond };
            e.message.push_str(" at the end of the condition");
        } else {
            e.message = "empty condition".to_string();
            e.text = String::new();
        }
        e
    }

    fn macro_item(&mut self, pos: SourcePos) -> PResult<Item> {
        let name = self.name_id()?;
        self.item = format!("macro '{name}'");
        self.naming = Some((ItemKind::Macro, name.clone()));
        let mut condition = None;
        let mut continuation = None;
        let mut append = None;
        loop {
            let t = self.peek();
            if t.kind == Tok::Eof || self.at_item_start() {
                break;
            }
            if self.is_kw(t, "condition") {
                self.bump();
                self.expect_keysep()?;
                let (cont, e) = self.condition()?;
                continuation = cont;
                condition = Some(e);
            } else if self.is_kw(t, "append") {
                self.bump();
                self.expect_keysep()?;
                append = Some(self.atom()?.text);
            } else {
                return Err(self.err(t, "unexpected text in macro (expected condition or append)"));
            }
        }
        let Some(condition) = condition else {
            return Err(PolicyError { pos, message: format!("macro '{name}' has no condition"), text: name });
        };
        let append = append.as_deref().is_some_and(|a| parse_bool(a) == Some(true));
        Ok(Item::Macro { name, condition, append, continuation, pos })
    }

    fn list_item(&mut self, pos: SourcePos) -> PResult<Item> {
        let name = self.name_id()?;
        self.naming = Some((ItemKind::List, name.clone()));
        let mut items = None;
        let mut append = None;
        loop {
            let t = self.peek();
            if t.kind == Tok::Eof || self.at_item_start() {
                break;
            }
            if self.is_kw(t, "items") {
                self.bump();
                self.expect_keysep()?;
                let list = self.blist()?;
                if list.len() > MAX_LIST_ITEMS {
                    return Err(PolicyError {
                        pos,
                        message: format!("list '{name}' has {} items (limit {MAX_LIST_ITEMS})", list.len()),
                        text: name,
                    });
                }
                items = Some(list);
            } else if self.is_kw(t, "append") {
                self.bump();
                self.expect_keysep()?;
                append = Some(self.atom()?.text);
            } else {
                return Err(self.err(t, "unexpected text in list (expected items)"));
            }
        }
        let Some(items) = items else {
            return Err(PolicyError { pos, message: format!("list '{name}' has no items"), text: name });
        };
        let append = append.as_deref().is_some_and(|a| parse_bool(a) == Some(true));
        Ok(Item::List { name, items, append, pos })
    }

    fn filter_item(&mut self, pos: SourcePos) -> PResult<Item> {
        let name = self.name_id()?;
        self.item = format!("filter '{name}'");
        self.naming = Some((ItemKind::Filter, name.clone()));
        let mut condition = None;
        let mut enabled = None;
        loop {
            let t = self.peek();
            if t.kind == Tok::Eof || self.at_item_start() {
                break;
            }
            if self.is_kw(t, "condition") {
                self.bump();
                self.expect_keysep()?;
                let first = self.i;
                let e = self.expr().map_err(|e| self.at_condition_end(e, first))?;
                condition.get_or_insert(e);
            } else if self.is_kw(t, "enabled") {
                self.bump();
                self.expect_keysep()?;
                let a = self.atom()?;
                enabled.get_or_insert((a.text, a.pos));
            } else {
                return Err(self.err(t, "unexpected text in filter (expected condition or enabled)"));
            }
        }
        let Some(condition) = condition else {
            return Err(PolicyError { pos, message: format!("filter '{name}' has no condition"), text: name });
        };
        Ok(Item::Filter { name, condition, enabled, pos })
    }

    /// `[ a, b, … ]`: elements are the tokens between commas, concatenated, each with
    /// bounding quotes trimmed once. `[]` and a trailing comma add no element.
    fn blist(&mut self) -> PResult<Vec<String>> {
        let open = self.peek();
        if !self.is_punct(open, "[") {
            return Err(self.err(open, "expected '['"));
        }
        self.bump();
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut have = false;
        loop {
            let t = self.peek();
            if t.kind == Tok::Eof {
                return Err(self.err(open, "unclosed '['"));
            }
            if self.is_punct(t, "]") {
                self.bump();
                break;
            }
            if self.is_punct(t, "[") {
                return Err(self.err(t, "nested list not allowed here"));
            }
            self.bump();
            if self.is_punct(t, ",") {
                if !have {
                    return Err(self.err(t, "empty list element"));
                }
                out.push(sysflow_plugin_api::flat::trim_bounding_quotes(&cur).to_string());
                cur.clear();
                have = false;
            } else {
                cur.push_str(self.text(t));
                have = true;
            }
        }
        if have {
            out.push(sysflow_plugin_api::flat::trim_bounding_quotes(&cur).to_string());
        }
        Ok(out)
    }

    fn atom(&mut self) -> PResult<Atom> {
        let t = self.peek();
        // A negative number (`fd.num=-1`): the sign joined to the digits right after it.
        let n = self.peek_at(1);
        if self.is_punct(t, "-")
            && n.kind == Tok::Id
            && n.start == t.end
            && self.text(n).bytes().all(|b| b.is_ascii_digit())
        {
            self.bump();
            self.bump();
            return Ok(Atom { text: self.src[t.start..n.end].to_string(), kind: Tok::Path, pos: self.pos(t) });
        }
        let ok = matches!(t.kind, Tok::Id | Tok::Path | Tok::Str | Tok::Tag)
            || self.is_punct(t, "<")
            || self.is_punct(t, ">");
        if !ok {
            return Err(self.err(t, "expected a value"));
        }
        self.bump();
        Ok(Atom { text: self.text(t).to_string(), kind: t.kind, pos: self.pos(t) })
    }

    fn expr(&mut self) -> PResult<Expr> {
        let mut terms = vec![self.and_expr()?];
        while self.is_kw(self.peek(), "or") {
            self.bump();
            terms.push(self.and_expr()?);
        }
        Ok(if terms.len() == 1 { terms.pop().unwrap_or(Expr::Or(Vec::new())) } else { Expr::Or(terms) })
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut terms = vec![self.term()?];
        while self.is_kw(self.peek(), "and") {
            self.bump();
            terms.push(self.term()?);
        }
        Ok(if terms.len() == 1 { terms.pop().unwrap_or(Expr::And(Vec::new())) } else { Expr::And(terms) })
    }

    fn binop(&self, t: Token) -> Option<Op> {
        let s = self.text(t);
        match t.kind {
            Tok::Punct => match s {
                "=" => Some(Op::Eq),
                "!=" => Some(Op::Ne),
                "<" => Some(Op::Lt),
                "<=" => Some(Op::Le),
                ">" => Some(Op::Gt),
                ">=" => Some(Op::Ge),
                _ => None,
            },
            Tok::Keyword => match s {
                "contains" => Some(Op::Contains),
                "icontains" => Some(Op::IContains),
                "startswith" => Some(Op::StartsWith),
                "endswith" => Some(Op::EndsWith),
                _ => None,
            },
            // Beyond upstream: Falco's `glob` and `regex` operators.
            Tok::Id if s == "glob" => Some(Op::Glob),
            Tok::Id if s == "regex" => Some(Op::Regex),
            _ => None,
        }
    }

    fn term(&mut self) -> PResult<Expr> {
        let t = self.peek();
        let opens = self.is_kw(t, "not") || self.is_punct(t, "(");
        if opens && self.nesting >= MAX_CONDITION_NESTING {
            // Refused here, before the recursion below can exhaust the stack.
            return Err(self.err(
                t,
                format!(
                    "{}: condition nests deeper than {MAX_CONDITION_NESTING} levels of parentheses and 'not'",
                    self.item
                ),
            ));
        }
        if opens {
            self.nesting += 1;
            let e = self.nested_term(t);
            self.nesting -= 1;
            return e;
        }
        self.plain_term()
    }

    /// A `not …` or `( … )` term starting at `t`.
    fn nested_term(&mut self, t: Token) -> PResult<Expr> {
        if self.is_kw(t, "not") {
            self.bump();
            return Ok(Expr::Not(Box::new(self.term()?)));
        }
        self.bump();
        let e = self.expr()?;
        let c = self.peek();
        if !self.is_punct(c, ")") {
            if self.at_value_end() {
                return Err(self.err(c, format!("unclosed '(' (opened at {}:{})", t.line, t.col)));
            }
            return Err(self.err(c, "expected ')' or an operator"));
        }
        self.bump();
        Ok(e)
    }

    /// A comparison, `exists` test or macro reference.
    fn plain_term(&mut self) -> PResult<Expr> {
        let lhs = self.atom()?;
        let n = self.peek();
        if self.is_kw(n, "exists") {
            self.bump();
            return Ok(Expr::Exists(lhs));
        }
        if lhs.kind == Tok::Id && TRANSFORMERS.contains(&lhs.text.as_str()) && self.is_punct(n, "(") {
            return Err(self.err(
                self.toks[self.i - 1],
                format!("field transformer '{}()' is not supported by this engine", lhs.text),
            ));
        }
        if n.kind == Tok::Id && UNSUPPORTED_OPERATORS.contains(&self.text(n)) {
            return Err(self.err(n, format!("operator '{}' is not supported by this engine", self.text(n))));
        }
        // Falco's `intersects`: some value of a multi-valued field is in the set, which is
        // what `in` does here (both sides are split at commas).
        let intersects = n.kind == Tok::Id && self.text(n) == "intersects";
        if self.is_kw(n, "in") || self.is_kw(n, "pmatch") || intersects {
            self.bump();
            let op = if self.text(n) == "pmatch" { Op::Pmatch } else { Op::In };
            let open = self.peek();
            if !self.is_punct(open, "(") {
                return Err(self.err(open, format!("expected '(' after {}", self.text(n))));
            }
            self.bump();
            let mut elems = Vec::new();
            loop {
                let e = self.peek();
                if self.is_punct(e, "[") {
                    // Upstream ignores bracket-list elements (BUG); they are skipped here too.
                    self.blist()?;
                } else {
                    elems.push(self.atom()?);
                }
                let sep = self.peek();
                if self.is_punct(sep, ",") {
                    self.bump();
                    continue;
                }
                if self.is_punct(sep, ")") {
                    self.bump();
                    break;
                }
                return Err(self.err(sep, "expected ',' or ')' in value list"));
            }
            return Ok(Expr::List { lhs, op, elems });
        }
        if let Some(op) = self.binop(n) {
            self.bump();
            let rhs = self.atom()?;
            return Ok(Expr::Cmp { lhs, op, rhs });
        }
        if lhs.kind == Tok::Id {
            return Ok(Expr::Ref { name: lhs.text, pos: lhs.pos });
        }
        Err(self.err(n, format!("expected an operator after '{}'", lhs.text)))
    }

    /// `exceptions:` — a YAML-ish list of `- name: … fields: … comps: … values: …` maps.
    fn exceptions(&mut self) -> PResult<Vec<Exception>> {
        let mut out = Vec::new();
        while self.is_punct(self.peek(), "-") && !self.at_item_start() {
            let dash = self.bump();
            let mut ex = Exception { pos: self.pos(dash), ..Default::default() };
            loop {
                let k = self.peek();
                let key = self.text(k);
                let is_key = matches!(k.kind, Tok::Keyword | Tok::Id) && self.peek_at(1).kind == Tok::KeySep;
                if !is_key || !matches!(key, "name" | "fields" | "comps" | "values") {
                    break;
                }
                self.bump();
                self.expect_keysep()?;
                match key {
                    "name" => ex.name = self.atom()?.text,
                    "fields" => {
                        if self.is_punct(self.peek(), "[") {
                            ex.fields = self.atom_list()?;
                            ex.fields_is_list = true;
                        } else {
                            ex.fields = vec![self.atom()?];
                        }
                    }
                    "comps" => {
                        if self.is_punct(self.peek(), "[") {
                            ex.comps = self.comp_list()?;
                        } else {
                            ex.comps = vec![self.comp_word()?];
                        }
                    }
                    _ => ex.values = self.values_list()?,
                }
            }
            out.push(ex);
        }
        Ok(out)
    }

    fn comp_word(&mut self) -> PResult<String> {
        let t = self.bump();
        let s = self.text(t);
        match t.kind {
            Tok::Punct | Tok::Keyword | Tok::Id => Ok(s.to_string()),
            _ => Err(self.err(t, "expected a comparison operator")),
        }
    }

    fn comp_list(&mut self) -> PResult<Vec<String>> {
        self.bracketed(Self::comp_word)
    }

    fn atom_list(&mut self) -> PResult<Vec<Atom>> {
        self.bracketed(Self::atom)
    }

    /// `[item, item, …]` at the current `[`: commas separate (and may trail), and an
    /// unclosed list is reported at its `[`.
    fn bracketed<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let open = self.bump();
        let mut out = Vec::new();
        loop {
            let t = self.peek();
            if self.is_punct(t, "]") {
                self.bump();
                return Ok(out);
            }
            if self.is_punct(t, ",") {
                self.bump();
                continue;
            }
            if t.kind == Tok::Eof {
                return Err(self.err(open, "unclosed '['"));
            }
            out.push(item(self)?);
        }
    }

    /// `values:` — `[[a, b], [c, d]]`, `[a, b]`, or a YAML block list of `- [a, b]`.
    fn values_list(&mut self) -> PResult<Vec<Vec<Atom>>> {
        let mut out = Vec::new();
        if self.is_punct(self.peek(), "[") {
            return self.bracketed(Self::value_tuple);
        }
        while self.is_punct(self.peek(), "-") && !self.at_item_start() {
            // Only `- [..]` / `- value` entries; a `- name:` starts the next exception.
            if self.peek_at(2).kind == Tok::KeySep {
                break;
            }
            self.bump();
            out.push(self.value_tuple()?);
        }
        Ok(out)
    }

    /// One entry of `values:`: `[a, b]`, or a single value.
    fn value_tuple(&mut self) -> PResult<Vec<Atom>> {
        if self.is_punct(self.peek(), "[") {
            self.atom_list()
        } else {
            Ok(vec![self.atom()?])
        }
    }

    /// `override:` — `key: append|replace` pairs.
    fn overrides(&mut self) -> PResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        loop {
            let k = self.peek();
            if !matches!(k.kind, Tok::Keyword | Tok::Id) || self.peek_at(1).kind != Tok::KeySep || self.at_ext_key() {
                break;
            }
            let v = self.peek_at(2);
            let vt = self.text(v);
            if !(vt == "append" || vt == "replace") {
                break;
            }
            self.bump();
            self.bump();
            self.bump();
            out.push((self.text(k).to_string(), vt.to_string()));
        }
        Ok(out)
    }
}

/// Go's `strconv.ParseBool` after trimming bounding quotes.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match sysflow_plugin_api::flat::trim_bounding_quotes(raw) {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        match parse_file(src, Arc::new(PathBuf::from("p.yaml"))) {
            Ok(items) => panic!("expected syntax errors, parsed {} items", items.len()),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn incomplete_comparison_is_reported_at_the_end_of_the_condition() {
        let src = "- rule: r1\n  desc: d\n  condition: sf.proc.name =\n  priority: high\n";
        assert_eq!(
            errors(src),
            ["p.yaml:3:28: expected a value at the end of the condition (at 'sf.proc.name =')"]
        );
        // Same when the condition ends the file, and in a filter.
        let src = "- filter: f\n  condition: sf.proc.name in (bash, sh";
        assert_eq!(
            errors(src),
            ["p.yaml:2:39: expected ',' or ')' in value list at the end of the condition (at 'sf.proc.name in (bash, sh')"]
        );
    }

    #[test]
    fn unclosed_parenthesis_is_reported_at_the_end_of_a_multiline_condition() {
        let src = "- macro: m\n  condition: (sf.proc.name = bash and\n    sf.proc.exe = /bin/x\n\n- rule: r2\n  desc: d\n  condition: m and\n  priority: low\n";
        assert_eq!(
            errors(src),
            [
                "p.yaml:3:25: unclosed '(' (opened at 2:14) at the end of the condition (at '(sf.proc.name = bash and sf.proc.exe = /bin/x')",
                "p.yaml:7:19: expected a value at the end of the condition (at 'm and')",
            ]
        );
    }

    #[test]
    fn empty_condition_is_reported_after_its_key() {
        let src = "- rule: r1\n  desc: d\n  condition:\n  priority: high\n";
        assert_eq!(errors(src), ["p.yaml:3:13: empty condition"]);
    }

    #[test]
    fn errors_inside_a_condition_keep_their_position() {
        let src = "- rule: r1\n  desc: d\n  condition: sf.proc.name = = x\n  priority: high\n";
        assert_eq!(errors(src), ["p.yaml:3:29: expected a value (at '=')"]);
    }
}
