//! Policy loading errors and warnings, each with file:line:column.

use std::fmt;

use crate::position::SourcePos;

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

/// All fatal problems found while compiling a policy set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in policies", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
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
