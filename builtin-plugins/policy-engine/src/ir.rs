//! The language-neutral policy representation every front end produces.
//!
//! Front ends (Falco syntax, Sigma) resolve their own macros and lists and
//! hand over rules and filters whose conditions are [`Cond`] trees. Whether a name is an
//! attribute or a literal is decided by the evaluator's compiler, from the attribute table.

use std::path::PathBuf;

use crate::position::SourcePos;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `contains`
    Contains,
    /// `icontains`
    IContains,
    /// `startswith`
    StartsWith,
    /// `endswith`
    EndsWith,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in (…)`: any element equal.
    In,
    /// `pmatch (…)`: any element contained (upstream's substring semantics).
    Pmatch,
    /// `glob`: shell-style pattern match (`*`, `?`, `[…]`).
    Glob,
    /// Equal, ignoring case (Sigma's default comparison).
    IEq,
    /// Starts with, ignoring case (Sigma `startswith`).
    IStartsWith,
    /// Ends with, ignoring case (Sigma `endswith`).
    IEndsWith,
    /// Matches a regular expression (Rust `regex` syntax) anywhere in the whole value; the
    /// literal is not split at commas.
    Regex,
}

impl Op {
    /// True for the ordering operators, which compare integer forms.
    pub fn is_integer(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    /// Source spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Pmatch => "pmatch",
            Op::Glob => "glob",
            Op::IEq => "iequals",
            Op::IStartsWith => "istartswith",
            Op::IEndsWith => "iendswith",
            Op::Regex => "regex",
        }
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A bare word: an attribute if the attribute table knows it, else a literal.
    Name {
        /// The word as written (may carry a `[path]` suffix).
        text: String,
        /// Where it was written.
        pos: SourcePos,
    },
    /// A value that is always a literal (quoted string, path, number). Raw text, quotes kept.
    Literal(String),
}

impl Operand {
    /// The raw text.
    pub fn text(&self) -> &str {
        match self {
            Operand::Name { text, .. } => text,
            Operand::Literal(t) => t,
        }
    }
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// All hold (evaluated left to right, short-circuit).
    And(Vec<Cond>),
    /// Any holds.
    Or(Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
    /// A constant (e.g. an unresolvable reference under lenient settings).
    Const(bool),
    /// `lhs op rhs`; `in`/`pmatch` carry one right operand per element (lists expanded).
    Cmp {
        /// Left side.
        lhs: Operand,
        /// Operator.
        op: Op,
        /// Right side(s).
        rhs: Vec<Operand>,
    },
    /// `operand exists`.
    Exists(Operand),
}

/// A rule, language-neutral.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// Name (exact text, `policies[].id` in output).
    pub name: String,
    /// Description.
    pub desc: String,
    /// Priority ordinal: informational 0, low 1, medium 2, high 3, critical 4.
    pub priority: i32,
    /// Tags.
    pub tags: Vec<String>,
    /// Action names, in order.
    pub actions: Vec<String>,
    /// Record-type short names the rule is restricted to (empty: all).
    pub prefilter: Vec<String>,
    /// Enabled flag.
    pub enabled: bool,
    /// Condition.
    pub condition: Cond,
    /// Falco output template (`output:`), as written.
    pub output: Option<String>,
    /// The priority word as written (Falco's alert format prints it).
    pub priority_word: Option<String>,
    /// Where the rule was written.
    pub pos: SourcePos,
}

/// A drop filter.
#[derive(Debug, Clone)]
pub struct FilterDef {
    /// Name.
    pub name: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Condition: records for which it holds are discarded.
    pub condition: Cond,
    /// Where it was written.
    pub pos: SourcePos,
}

/// A front end's output: rules and filters in evaluation order, plus warnings.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Rules in file order, then textual order.
    pub rules: Vec<RuleDef>,
    /// Drop filters.
    pub filters: Vec<FilterDef>,
    /// Non-fatal findings.
    pub warnings: Vec<crate::error::PolicyWarning>,
    /// The files read.
    pub files: Vec<PathBuf>,
}
