//! Why a manifest could not be loaded.
//!
//! Every message says where (the file, then the JSON path such as
//! `bottles.default.egress.allowlist[2]`) and what was expected there. Values
//! from the file are echoed only where they cannot be secrets: never an `env`
//! value, never a string found where another type was expected.
//!
//! Hints are data beside the message (see [`crate::diagnostic`]). A problem
//! carries its own hint; when it is the error's only problem, the hint is the
//! error's. When there are several, each hint is drawn under its problem's
//! line in the list, since a hint such as "did you mean `10.0.0.0/8`?" reads
//! only beside the entry it is about.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::ManifestSource;
use crate::diagnostic::Diagnostic;

/// A value from the file, shown in a message. Only for values that cannot be
/// secrets (hosts, names, paths); control characters are escaped.
pub(super) fn shown(raw: &str) -> String {
    format!("`{}`", raw.escape_debug())
}

/// Loading a manifest failed. The CLI maps every variant to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file exists (or was named explicitly) but could not be read.
    #[error("cannot read manifest `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A path given explicitly (`--manifest`, `$CLAUDE_BOTTLE_MANIFEST`) does
    /// not exist. Never a silent fallback to the next discovery step.
    #[error("manifest `{}` named by {named_by} does not exist", path.display())]
    NotFound { path: PathBuf, named_by: NamedBy },

    /// The text is not JSON.
    #[error("manifest {origin}: invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        origin: ManifestSource,
        line: usize,
        column: usize,
        message: String,
    },

    /// Well-formed JSON that breaks the manifest's rules. A wrong shape (unknown
    /// key, wrong type) stops parsing, so it comes alone; value problems are all
    /// collected, so a file is fixed in one round trip. One problem reads on
    /// the same line as the file, its hint among the error's hints; several
    /// read as an indented list, each with its hint under it.
    #[error("manifest {origin}: {}", Problems(problems))]
    Invalid {
        origin: ManifestSource,
        problems: Vec<Problem>,
    },
}

impl ManifestError {
    /// The problems of an [`ManifestError::Invalid`] error, empty for the others.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Who named a manifest path that must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedBy {
    /// `--manifest PATH`
    Flag,
    /// `$CLAUDE_BOTTLE_MANIFEST`
    EnvVar,
}

impl NamedBy {
    fn hint(self) -> &'static str {
        match self {
            Self::Flag => {
                "check the path given to --manifest, or drop the flag to use the usual search"
            }
            Self::EnvVar => {
                "fix the path in CLAUDE_BOTTLE_MANIFEST, or unset it to use the usual search"
            }
        }
    }
}

impl fmt::Display for NamedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flag => "--manifest",
            Self::EnvVar => "$CLAUDE_BOTTLE_MANIFEST",
        })
    }
}

/// One rule a manifest breaks, at one JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{path}: unknown field, expected {}", one_of(allowed))]
    UnknownField {
        path: JsonPath,
        allowed: Vec<String>,
        /// An allowed field close to the unknown one, likely a typo.
        suggestion: Option<String>,
    },

    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        path: JsonPath,
        expected: String,
        found: String,
    },

    #[error("{path}: required, expected {expected}")]
    Missing { path: JsonPath, expected: String },

    #[error("{path}: defined more than once, expected each key once")]
    Duplicate { path: JsonPath },

    /// A value of the right type that breaks a rule.
    #[error("{path}: {message}, expected {expected}")]
    Invalid {
        path: JsonPath,
        message: String,
        expected: String,
        /// What to do about it, when there is more to say than `expected`.
        hint: Option<String>,
    },

    /// `bottles.<name>.runtime`, which PRD 0003 removed.
    #[error(
        "{path}: the field was removed, so none is expected here: gVisor (`runsc`) is now detected automatically and used whenever the Docker daemon has it registered"
    )]
    RemovedRuntime { path: JsonPath, bottle: String },
}

impl Problem {
    pub fn path(&self) -> &JsonPath {
        match self {
            Self::UnknownField { path, .. }
            | Self::WrongType { path, .. }
            | Self::Missing { path, .. }
            | Self::Duplicate { path }
            | Self::Invalid { path, .. }
            | Self::RemovedRuntime { path, .. } => path,
        }
    }
}

fn one_of(allowed: &[String]) -> String {
    match allowed {
        [] => "no fields here".to_owned(),
        [only] => only.clone(),
        _ => format!("one of {}", allowed.join(", ")),
    }
}

impl Diagnostic for Problem {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::UnknownField {
                suggestion: Some(suggestion),
                ..
            } => vec![format!("did you mean `{suggestion}`?")],
            Self::Invalid {
                hint: Some(hint), ..
            } => vec![hint.clone()],
            Self::RemovedRuntime { bottle, .. } => {
                vec![format!("delete `runtime` from bottle `{bottle}`")]
            }
            Self::UnknownField { .. }
            | Self::WrongType { .. }
            | Self::Missing { .. }
            | Self::Duplicate { .. }
            | Self::Invalid { .. } => Vec::new(),
        }
    }
}

/// One problem on the same line as the file (its hints are the error's);
/// several as an indented list, each problem's hints indented under it.
struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [only] => write!(f, "{only}"),
            problems => {
                write!(f, "{} problems:", problems.len())?;
                for problem in problems {
                    for line in problem.to_string().lines() {
                        write!(f, "\n  {line}")?;
                    }
                    for hint in problem.hints() {
                        write!(f, "\n    hint: {hint}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A location in the manifest's JSON, displayed as `bottles.default.ssh[0].Port`.
/// Keys that are not plain words are quoted: `env["1BAD"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JsonPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl JsonPath {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path serde_path_to_error tracked, up to the first segment it could
    /// not name (it cannot name the place of a syntax error inside a value).
    pub(super) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let segments = path
            .iter()
            .map_while(|segment| match segment {
                S::Map { key } => Some(Segment::Key(key.clone())),
                S::Seq { index } => Some(Segment::Index(*index)),
                S::Enum { .. } | S::Unknown => None,
            })
            .collect();
        Self(segments)
    }

    pub(super) fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(key)) => Some(key),
            _ => None,
        }
    }

    pub(super) fn parent(&self) -> Self {
        let mut segments = self.0.clone();
        segments.pop();
        Self(segments)
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("top level");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if is_plain_key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => {
                    let quoted = serde_json::to_string(key).map_err(|_| fmt::Error)?;
                    write!(f, "[{quoted}]")?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Diagnostic for ManifestError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::NotFound { named_by, .. } => vec![named_by.hint().to_owned()],
            Self::Invalid { problems, .. } => match problems.as_slice() {
                [only] => only.hints(),
                // Each hint is drawn under its problem in the message.
                _ => Vec::new(),
            },
            Self::Read { .. } | Self::Syntax { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_the_json_they_point_into() {
        let path = JsonPath::root()
            .key("bottles")
            .key("default")
            .key("egress")
            .key("allowlist")
            .index(2);
        assert_eq!(path.to_string(), "bottles.default.egress.allowlist[2]");
        assert_eq!(JsonPath::root().to_string(), "top level");
        let odd = JsonPath::root()
            .key("bottles")
            .key("my bottle")
            .key("env")
            .key("");
        assert_eq!(odd.to_string(), r#"bottles["my bottle"].env[""]"#);
        assert_eq!(JsonPath::root().key("a\nb").to_string(), r#"["a\nb"]"#);
    }

    #[test]
    fn several_problems_are_listed_with_their_hints_indented() {
        let err = ManifestError::Invalid {
            origin: ManifestSource::Embedded,
            problems: vec![
                Problem::Missing {
                    path: JsonPath::root().key("bottles"),
                    expected: "an object".into(),
                },
                Problem::Invalid {
                    path: JsonPath::root().key("agents"),
                    message: "empty".into(),
                    expected: "at least one agent".into(),
                    hint: Some("add one".into()),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "manifest embedded default: 2 problems:\n  bottles: required, expected an object\n  agents: empty, expected at least one agent\n    hint: add one"
        );
        assert!(err.hints().is_empty(), "{:?}", err.hints());
    }

    #[test]
    fn a_lone_problem_lends_its_hint_to_the_error() {
        let err = ManifestError::Invalid {
            origin: ManifestSource::Embedded,
            problems: vec![Problem::UnknownField {
                path: JsonPath::root().key("agent"),
                allowed: vec!["bottles".into(), "agents".into()],
                suggestion: Some("agents".into()),
            }],
        };
        assert_eq!(
            err.to_string(),
            "manifest embedded default: agent: unknown field, expected one of bottles, agents"
        );
        assert_eq!(err.hints(), ["did you mean `agents`?"]);
        assert_eq!(
            crate::diagnostic::with_hints(&err),
            "manifest embedded default: agent: unknown field, expected one of bottles, agents\n  hint: did you mean `agents`?"
        );
    }

    #[test]
    fn a_missing_explicit_path_hints_at_who_named_it() {
        let err = ManifestError::NotFound {
            path: PathBuf::from("/x.json"),
            named_by: NamedBy::EnvVar,
        };
        assert_eq!(
            err.to_string(),
            "manifest `/x.json` named by $CLAUDE_BOTTLE_MANIFEST does not exist"
        );
        assert_eq!(
            err.hints(),
            ["fix the path in CLAUDE_BOTTLE_MANIFEST, or unset it to use the usual search"]
        );
    }
}
