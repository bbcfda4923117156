//! What `doctor` reports: one [`Check`] per thing that can stand in the way
//! of a bottle, each with its status, a detail and hints, as plain data the
//! CLI renders.

use std::fmt;

use serde::Serialize;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short and stable, e.g. `engine`, `runsc`.
    pub name: String,
    pub status: CheckStatus,
    /// What was found, in one line.
    pub detail: String,
    /// What the user can do about it.
    pub hints: Vec<String>,
}

impl Check {
    pub fn new(name: &str, status: CheckStatus, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            status,
            detail: detail.into(),
            hints: Vec::new(),
        }
    }

    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Ok, detail)
    }

    pub fn warn(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Warn, detail)
    }

    pub fn fail(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Fail, detail)
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

/// What `doctor` needs from the manifest: the bottles that bring their own
/// agent image, by bottle name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorRequest {
    pub bottle_images: Vec<(String, String)>,
}
