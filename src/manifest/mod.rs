//! The manifest: discovery (`discover`), strict decoding into wire structs
//! (`wire`), and validation (`validate`, with the host rules in `hosts`)
//! into the domain types below. Validation happens once, at load, for the
//! whole file; nothing downstream re-checks a field. `edit` changes a
//! bottle's allowlist in the file's text, leaving the rest as written.

mod discover;
mod edit;
mod error;
mod hosts;
mod schema;
mod validate;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

pub use discover::{
    DEFAULT_MANIFEST_JSON, Discovery, MANIFEST_ENV_VAR, MANIFEST_FILE_NAME, ManifestSource, load,
    load_from_str,
};
pub use edit::{EditError, Edited, add_to_allowlist, remove_from_allowlist, write_atomically};
pub use error::{JsonPath, ManifestError, NamedBy, Problem, Segment};
pub use schema::{LOADER_ONLY_RULES, json_schema, json_schema_text};
pub use validate::DEFAULT_SSH_PORT;

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bottles: BTreeMap<String, Bottle>,
    pub agents: BTreeMap<String, Agent>,
    /// Where the manifest came from, for messages.
    pub source: ManifestSource,
}

impl Manifest {
    /// The bottle an agent runs in. Validation guarantees it exists.
    pub fn bottle_of(&self, agent: &Agent) -> &Bottle {
        &self.bottles[&agent.bottle]
    }
}

/// An isolation and egress policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bottle {
    pub env: BTreeMap<EnvName, EnvValue>,
    pub ssh: Vec<SshEntry>,
    pub egress: Egress,
    /// A prebuilt image used as it is, instead of the built-in agent image.
    pub image: Option<String>,
}

/// A name matching `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

impl EnvName {
    pub fn parse(name: &str) -> Option<Self> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `env` value as written in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// Passed into the container as it is (`$$` already unescaped to `$`).
    Literal(String),
    /// A whole-value `${VAR}` or `$VAR` reference to the host environment.
    HostVar(EnvName),
}

/// A lowercase DNS hostname without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(String);

impl Hostname {
    /// Accepts letters, digits, `-` and `_` in dot-separated labels of 1..=63
    /// characters, 253 characters at most. Case is folded, a trailing dot dropped.
    pub fn parse(raw: &str) -> Option<Self> {
        let lower = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        (!lower.is_empty() && lower.len() <= 253 && lower.split('.').all(label_ok))
            .then_some(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn label_count(&self) -> usize {
        self.0.split('.').count()
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `egress.allowlist` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AllowRule {
    /// Matches exactly this host.
    Exact(Hostname),
    /// `*.suffix`: matches `suffix` itself and every subdomain. The suffix has
    /// at least two labels.
    Wildcard(Hostname),
    /// An IP literal, matched exactly.
    Ip(IpAddr),
}

impl AllowRule {
    /// One allowlist entry, checked with the manifest's rules.
    pub fn parse(raw: &str) -> Result<Self, InvalidHost> {
        hosts::parse_allow_rule(raw).map_err(|refusal| InvalidHost {
            message: refusal.message,
            hint: refusal.hint,
        })
    }
}

/// A host the allowlist rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidHost {
    pub message: String,
    pub hint: Option<String>,
}

impl crate::diagnostic::Diagnostic for InvalidHost {
    fn hints(&self) -> Vec<String> {
        self.hint.iter().cloned().collect()
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => write!(f, "{h}"),
            Self::Wildcard(h) => write!(f, "*.{h}"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// One `egress.trusted_domains` entry: a host whose addresses may be private.
/// The patterns pipelock's `ValidateTrustedDomains` accepts, with DNS-like
/// labels and without IP literals, which its matcher never trusts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustedDomain {
    /// Matches exactly this host.
    Exact(Hostname),
    /// `*.suffix`: matches `suffix` itself and every subdomain. The suffix has
    /// at least two labels.
    Wildcard(Hostname),
}

impl fmt::Display for TrustedDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => write!(f, "{h}"),
            Self::Wildcard(h) => write!(f, "*.{h}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Egress {
    pub allowlist: Vec<AllowRule>,
    pub trusted_domains: Vec<TrustedDomain>,
    pub ip_cidrs: Vec<IpNet>,
}

/// Where an SSH entry connects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SshHostName {
    Dns(Hostname),
    Ip(IpAddr),
}

impl fmt::Display for SshHostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(h) => write!(f, "{h}"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEntry {
    /// The alias used in `ssh HOST` and git remotes.
    pub host: String,
    pub host_name: SshHostName,
    pub user: Option<String>,
    pub port: u16,
    /// As written in the manifest; `~` is expanded when `start` prepares.
    pub identity_file: String,
}

/// A skill directory name under `~/.claude/skills/`: no `/`, no `..`, not empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkillName(String);

impl SkillName {
    pub fn parse(name: &str) -> Option<Self> {
        (!name.is_empty() && name != "." && !name.contains('/') && !name.contains(".."))
            .then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SkillName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Names a bottle of the same manifest (checked at load).
    pub bottle: String,
    pub skills: Vec<SkillName>,
    pub prompt: String,
}

/// Expands a leading `~` or `~/` against `home`.
pub fn expand_tilde(path: &str, home: &std::path::Path) -> PathBuf {
    if path == "~" {
        home.to_path_buf()
    } else if let Some(rest) = path.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(path)
    }
}
