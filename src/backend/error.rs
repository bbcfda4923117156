//! The one error type at the backend seam. Backends keep their own detailed
//! errors and convert at the seam, keeping message and hints apart.

use crate::diagnostic::Diagnostic;

/// What kind of failure it is: the CLI derives its exit code from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The engine or the host failed (exit 1).
    Failure,
    /// The user's input cannot work, e.g. a `--name` in use (exit 2).
    Usage,
}

/// A backend failure, worded for the user, with its hints as data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
    pub hints: Vec<String>,
}

impl BackendError {
    /// A failure with a message and no hint.
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            kind: BackendErrorKind::Failure,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// `err`, as a failure of the engine or the host.
    pub fn from_failure(err: &dyn Diagnostic) -> Self {
        Self::of_kind(BackendErrorKind::Failure, err)
    }

    /// `err`, as the user's input that cannot work.
    pub fn from_usage(err: &dyn Diagnostic) -> Self {
        Self::of_kind(BackendErrorKind::Usage, err)
    }

    fn of_kind(kind: BackendErrorKind, err: &dyn Diagnostic) -> Self {
        Self {
            kind,
            message: err.to_string(),
            hints: err.hints(),
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl Diagnostic for BackendError {
    fn hints(&self) -> Vec<String> {
        self.hints.clone()
    }
}
