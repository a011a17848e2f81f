//! Policy loading errors and warnings, each with file:line:column.

use std::fmt;

use crate::{limits::MAX_ERRORS_PER_FILE, position::SourcePos};

/// A fatal problem in a policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyError {
    /// Where (file may be the policy path itself for I/O problems; line 0 then).
    pub pos: SourcePos,
    /// What is wrong.
    pub message: String,
    /// The offending text, if any.
    pub text: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line == 0 {
            write!(f, "{}: {}", self.pos.file.display(), self.message)?;
        } else {
            write!(f, "{}: {}", self.pos, self.message)?;
        }
        if !self.text.is_empty() {
            write!(f, " (at '{}')", self.text)?;
        }
        Ok(())
    }
}

/// All fatal problems found while compiling a policy set: the listed errors (at most
/// [`MAX_ERRORS_PER_FILE`] per file, each file's in file order) and how many more were
/// found but not listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyErrors(pub Vec<PolicyError>, pub(crate) usize);

impl PolicyErrors {
    /// One error.
    pub fn one(e: PolicyError) -> PolicyErrors {
        PolicyErrors(vec![e], 0)
    }

    /// How many errors were found beyond the listed ones.
    pub fn omitted(&self) -> usize {
        self.1
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in policies", self.0.len() + self.1)?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        if self.1 > 0 {
            write!(f, "\n  ... and {} more (only the first {MAX_ERRORS_PER_FILE} errors of a file are listed)", self.1)?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// A non-fatal finding (unknown attribute, unknown action, odd flag value).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyWarning {
    /// Where.
    pub pos: SourcePos,
    /// What.
    pub message: String,
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// Most edits (insertions, deletions, substitutions, swaps of neighbours) between an
/// unknown name and a known one for the known one to be suggested (as for pipeline
/// keys): beyond it a suggestion would more often mislead than help.
pub const MAX_NAME_EDITS: usize = 2;

/// The candidate closest to `name` within [`MAX_NAME_EDITS`] edits (ties: the first
/// given), if any.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        // Lengths further apart than the bound cannot be within it: skipped without the
        // quadratic distance computation (a hostile file may hold many names).
        .filter(|c| *c != name && c.len().abs_diff(name.len()) <= MAX_NAME_EDITS * 4)
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        // Two edits turn any two-letter name into any other: only longer names qualify.
        .filter(|(d, c)| *d <= MAX_NAME_EDITS && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean 'x'?)` for the closest candidate, or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates).map(|c| format!(" (did you mean '{c}'?)")).unwrap_or_default()
}
