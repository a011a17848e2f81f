//! Syntax tree of one Falco-syntax policy file.

use crate::{ir::Op, position::SourcePos};

use super::lexer::Tok;

/// A value token in a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Atom {
    /// Raw text (quotes kept).
    pub text: String,
    /// Token kind (an `Id` may name an attribute; other kinds are literals).
    pub kind: Tok,
    /// Position.
    pub pos: SourcePos,
}

/// A condition expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `a and b and …`
    And(Vec<Expr>),
    /// `a or b or …`
    Or(Vec<Expr>),
    /// `not a`
    Not(Box<Expr>),
    /// A bare identifier: macro reference.
    Ref {
        /// Macro name.
        name: String,
        /// Position.
        pos: SourcePos,
    },
    /// `atom exists`
    Exists(Atom),
    /// `atom op atom`
    Cmp {
        /// Left side.
        lhs: Atom,
        /// Operator.
        op: Op,
        /// Right side.
        rhs: Atom,
    },
    /// `atom in (…)` / `atom pmatch (…)`
    List {
        /// Left side.
        lhs: Atom,
        /// `In` or `Pmatch`.
        op: Op,
        /// Elements (list names or literals).
        elems: Vec<Atom>,
    },
}

/// A Falco exception block entry (`exceptions:` of a rule).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exception {
    /// Exception name.
    pub name: String,
    /// Field names (one, or several as a list).
    pub fields: Vec<Atom>,
    /// True when `fields` was written as a list.
    pub fields_is_list: bool,
    /// Comparison operators, one per field (default `=`; `in` for a single field).
    pub comps: Vec<String>,
    /// Value tuples (each a list of raw values, one per field; or single values for one field).
    pub values: Vec<Vec<Atom>>,
    /// Position.
    pub pos: SourcePos,
}

/// A rule item as written.
#[derive(Debug, Clone, Default)]
pub struct RuleItem {
    /// Exact name text.
    pub name: String,
    /// Description text.
    pub desc: Option<String>,
    /// Condition.
    pub condition: Option<Expr>,
    /// The condition started with `and` (false) / `or` (true): Falco append continuation.
    pub continuation: Option<bool>,
    /// Output template (`output:`), as written.
    pub output: Option<String>,
    /// Severity word, if given.
    pub priority: Option<(String, SourcePos)>,
    /// Tags.
    pub tags: Option<Vec<String>>,
    /// Actions.
    pub actions: Option<Vec<String>>,
    /// Prefilter record types.
    pub prefilter: Option<Vec<String>>,
    /// Raw `enabled` value.
    pub enabled: Option<(String, SourcePos)>,
    /// Raw `append` value.
    pub append: Option<String>,
    /// `source:` value.
    pub source: Option<String>,
    /// `exceptions:` entries.
    pub exceptions: Vec<Exception>,
    /// `override:` keys and their mode (`append` / `replace`).
    pub overrides: Vec<(String, String)>,
    /// Position of the item.
    pub pos: SourcePos,
}

/// A top-level item.
#[derive(Debug, Clone)]
pub enum Item {
    /// `- rule:`
    Rule(Box<RuleItem>),
    /// `- macro:`
    Macro {
        /// Name.
        name: String,
        /// Condition.
        condition: Expr,
        /// Falco append semantics requested.
        append: bool,
        /// The appended condition started with `and`/`or` (continuation form).
        continuation: Option<bool>,
        /// Position.
        pos: SourcePos,
    },
    /// `- list:`
    List {
        /// Name.
        name: String,
        /// Items (bounding quotes trimmed once).
        items: Vec<String>,
        /// Falco append semantics requested.
        append: bool,
        /// Position.
        pos: SourcePos,
    },
    /// An item whose definition has an error (reported by the reader): its kind and name,
    /// so that references to it report no second, misleading "undefined" error.
    Broken {
        /// What it was.
        kind: ItemKind,
        /// Name.
        name: String,
    },
    /// `- filter:` / `- drop:`
    Filter {
        /// Name.
        name: String,
        /// Condition.
        condition: Expr,
        /// Raw `enabled` value.
        enabled: Option<(String, SourcePos)>,
        /// Position.
        pos: SourcePos,
    },
}

/// The kind of a top-level item, for [`Item::Broken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// `- rule:`
    Rule,
    /// `- macro:`
    Macro,
    /// `- list:`
    List,
    /// `- filter:` / `- drop:`
    Filter,
}

impl ItemKind {
    /// The kind for an item keyword (`rule`, `macro`, `list`, `filter`, `drop`).
    pub fn of_keyword(word: &str) -> Option<ItemKind> {
        Some(match word {
            "rule" => ItemKind::Rule,
            "macro" => ItemKind::Macro,
            "list" => ItemKind::List,
            "filter" | "drop" => ItemKind::Filter,
            _ => return None,
        })
    }
}
