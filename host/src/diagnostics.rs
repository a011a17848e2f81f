//! Errors and warnings collected while loading a pipeline, so the user sees all of them at once.

/// Collected start-up problems; errors stop the start, warnings are logged.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// Problems that prevent the pipeline from starting.
    pub errors: Vec<String>,
    /// Problems worth telling (unknown keys, ignored flags).
    pub warnings: Vec<String>,
}

impl Diagnostics {
    /// Records an error.
    pub fn error(&mut self, msg: impl Into<String>) {
        self.errors.push(msg.into());
    }

    /// Records a warning.
    pub fn warn(&mut self, msg: impl Into<String>) {
        self.warnings.push(msg.into());
    }

    /// True when no error was recorded.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}
