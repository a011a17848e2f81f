//! Where something is in a policy file (file:line:column), shared by the policy
//! representation ([`crate::ir`]) and the errors and warnings about it ([`crate::error`]),
//! so that neither of those modules needs the other's items to name a place.

use std::{path::PathBuf, sync::Arc};

/// A position in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourcePos {
    /// The file.
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

impl std::fmt::Display for SourcePos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}
