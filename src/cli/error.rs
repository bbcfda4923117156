//! The CLI's error type. Each error carries its hints as data beside its
//! message, and its exit code follows from its kind (SPEC §2).

use std::path::PathBuf;

use crate::backend::{BackendError, BackendErrorKind, UnknownBackend};
use crate::core::egress::EgressError;
use crate::core::env::EnvError;
use crate::core::pipelock::PipelockConfigError;
use crate::diagnostic::Diagnostic;
use crate::manifest::ManifestError;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    UnknownBackend(#[from] UnknownBackend),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error(transparent)]
    Pipelock(#[from] PipelockConfigError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("agent `{name}` is not in the manifest ({source_label})")]
    UnknownAgent {
        name: String,
        known: String,
        source_label: String,
    },
    #[error("the manifest ({source_label}) defines {count} agents, so `{command}` needs one named")]
    AgentRequired {
        command: &'static str,
        count: usize,
        known: String,
        source_label: String,
    },
    #[error("not confirmed: stdin is not a terminal, so there is no one to answer y/N")]
    NoTerminalToConfirm,
    #[error("not confirmed; nothing was done")]
    NotConfirmed,
    #[error("could not read the answer from the terminal: {0}")]
    Prompt(#[source] std::io::Error),
    #[error("`{}` already exists", path.display())]
    InitExists { path: PathBuf },
    #[error("could not write `{}`: {source}", path.display())]
    InitWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not determine the current directory: {0}")]
    CurrentDir(#[source] std::io::Error),
    #[error("could not determine the home directory")]
    NoHome,
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("could not write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("could not install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("interrupted by {name}; everything the session created was removed")]
    Interrupted { signal: i32, name: &'static str },
    /// A signal arrived, and the teardown that followed it failed.
    #[error("interrupted by {name}; {teardown}")]
    InterruptedTeardownFailed {
        signal: i32,
        name: &'static str,
        teardown: BackendError,
    },
    #[error("no bottle is running")]
    NoRunningBottle,
    #[error("several bottles are running, so one must be named")]
    BottleRequired { candidates: Vec<String> },
    #[error("no running bottle is called `{name}`, and no agent named so has one")]
    UnknownBottle {
        name: String,
        candidates: Vec<String>,
    },
    #[error("agent `{name}` has several running bottles")]
    AmbiguousBottle {
        name: String,
        candidates: Vec<String>,
    },
    #[error(transparent)]
    InvalidHost(#[from] crate::manifest::InvalidHost),
    #[error("`{host}` cannot be allowed while the bottle runs: {why}")]
    NeedsDowngrade {
        host: String,
        why: String,
        key: &'static str,
        /// What to write under `key` in the manifest.
        entry: String,
        bottle: String,
    },
    #[error("no host to allow was given")]
    NoHostsGiven,
    #[error(
        "that would leave `{bottle}`'s allowlist empty, and pipelock's strict mode refuses a config without one"
    )]
    WouldEmptyAllowlist { bottle: String },
    #[error(
        "bottle `{name}` was started on another host, so its manifest file is not here to `--save` to"
    )]
    SaveFromAnotherHost { name: String },
    #[error("the running bottle has the change, but `{}` was not updated: {source}", path.display())]
    ManifestNotSaved {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not lock `{}` for the change: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "`--save` needs the manifest file the session was started from, and it was started from the embedded default"
    )]
    SaveWithoutManifest,
    #[error(transparent)]
    ManifestEdit(#[from] crate::manifest::EditError),
    #[error("could not read the manifest `{}`: {source}", path.display())]
    ManifestRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not write the manifest `{}`: {source}", path.display())]
    ManifestWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A second signal arrived while the session was being torn down.
    #[error(
        "interrupted by {name} during teardown; teardown was abandoned, so some of the session's resources may be left"
    )]
    TeardownAbandoned { signal: i32, name: &'static str },
    /// Bringing the agent's work home failed; its container is kept.
    #[error(
        "the agent's work did not come home: {reason}; {}",
        match kept {
            Some(kept) => format!(
                "its container `{}` is kept, {}, with the work in `{}`",
                kept.name,
                if kept.running { "running with no network" } else { "stopped" },
                kept.workspace
            ),
            None => "there was no container to keep".to_owned(),
        }
    )]
    WorkNotHome {
        reason: String,
        kept: Option<Box<crate::backend::KeptBottle>>,
        /// Why the record that `list` and `cleanup` read could not be written.
        unrecorded: Option<String>,
        /// The signal that ended the session, when one did.
        signal: Option<i32>,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn code(&self) -> u8 {
        match self {
            // The live config of a running proxy that cannot be read back
            // or written is not the user's input.
            Self::Pipelock(
                PipelockConfigError::Parse(_) | PipelockConfigError::Serialize { .. },
            ) => EXIT_FAILURE,
            Self::Manifest(_)
            | Self::UnknownBackend(_)
            | Self::Env(_)
            | Self::Egress(_)
            | Self::Pipelock(_)
            | Self::UnknownAgent { .. }
            | Self::AgentRequired { .. }
            | Self::InitExists { .. }
            | Self::NoRunningBottle
            | Self::BottleRequired { .. }
            | Self::UnknownBottle { .. }
            | Self::AmbiguousBottle { .. }
            | Self::InvalidHost(_)
            | Self::NeedsDowngrade { .. }
            | Self::SaveWithoutManifest
            | Self::NoHostsGiven
            | Self::WouldEmptyAllowlist { .. }
            | Self::SaveFromAnotherHost { .. } => EXIT_USAGE,
            Self::ManifestNotSaved { .. } | Self::Lock { .. } => EXIT_FAILURE,
            Self::ManifestEdit(_) | Self::ManifestRead { .. } | Self::ManifestWrite { .. } => {
                EXIT_FAILURE
            }
            Self::Backend(e) => match e.kind {
                BackendErrorKind::Usage => EXIT_USAGE,
                BackendErrorKind::Failure => EXIT_FAILURE,
            },
            Self::Interrupted { signal, .. }
            | Self::InterruptedTeardownFailed { signal, .. }
            | Self::TeardownAbandoned { signal, .. } => signal_exit_code(*signal),
            Self::WorkNotHome { signal, .. } => signal.map_or(EXIT_FAILURE, signal_exit_code),
            Self::NoTerminalToConfirm
            | Self::NotConfirmed
            | Self::Prompt(_)
            | Self::InitWrite { .. }
            | Self::CurrentDir(_)
            | Self::NoHome
            | Self::Runtime(_)
            | Self::Stdout(_)
            | Self::Signals(_) => EXIT_FAILURE,
        }
    }
}

impl Diagnostic for Error {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::Manifest(e) => e.hints(),
            Self::UnknownBackend(e) => e.hints(),
            Self::Env(e) => e.hints(),
            Self::Egress(e) => e.hints(),
            Self::Pipelock(e) => e.hints(),
            Self::Backend(e) => e.hints(),
            Self::InterruptedTeardownFailed { teardown, .. } => teardown.hints(),
            Self::UnknownAgent { known, .. } => vec![format!("defined agents: {known}")],
            Self::AgentRequired { command, known, .. } => vec![format!(
                "run `claude-bottle {command} AGENT` with one of: {known}"
            )],
            Self::NoTerminalToConfirm => vec!["pass `--yes` to proceed without asking".to_owned()],
            Self::InitExists { .. } => {
                vec!["pass `--force` to overwrite it, or edit it in place".to_owned()]
            }
            Self::NoHome => vec!["set `HOME`".to_owned()],
            Self::NoRunningBottle => {
                vec!["start one with `claude-bottle start AGENT`".to_owned()]
            }
            Self::BottleRequired { candidates }
            | Self::UnknownBottle { candidates, .. }
            | Self::AmbiguousBottle { candidates, .. } => {
                if candidates.is_empty() {
                    vec!["no bottle is running".to_owned()]
                } else {
                    vec![format!("running bottles: {}", candidates.join(", "))]
                }
            }
            Self::InvalidHost(e) => e.hints(),
            Self::NeedsDowngrade {
                host,
                key,
                entry,
                bottle,
                ..
            } => {
                // A bottle started by an older claude-bottle has no name label.
                let bottle = if bottle.is_empty() { "<bottle>" } else { bottle };
                vec![format!(
                    "for the next session, add `{entry}` to `bottles.{bottle}.egress.{key}` and `{host}` to its allowlist in the manifest"
                )]
            }
            Self::NoHostsGiven => vec!["run `claude-bottle allow [NAME] HOST...`".to_owned()],
            Self::WouldEmptyAllowlist { .. } => {
                vec!["end the session instead, or allow another host first".to_owned()]
            }
            Self::SaveFromAnotherHost { .. } => {
                vec!["run `allow --save` on the host that started it, or edit its manifest there".to_owned()]
            }
            Self::ManifestNotSaved { path, .. } => vec![format!(
                "add the hosts to the bottle's `egress.allowlist` in `{}` by hand",
                path.display()
            )],
            Self::Lock { .. } => Vec::new(),
            Self::SaveWithoutManifest => vec![
                "run `claude-bottle init` to write the default manifest to a file, edit it there, and start from it".to_owned(),
            ],
            Self::ManifestEdit(e) => e.hints(),
            Self::ManifestRead { .. } => vec![
                "nothing was changed; `allow` without `--save` changes only the running bottle".to_owned(),
            ],
            Self::ManifestWrite { .. } => Vec::new(),
            Self::TeardownAbandoned { .. } => {
                vec!["run `claude-bottle cleanup` to remove what is left".to_owned()]
            }
            Self::WorkNotHome {
                kept, unrecorded, ..
            } => match kept {
                Some(kept) => {
                    let copy = if kept.running {
                        // gVisor keeps the files in its sandbox: only a
                        // process inside sees them.
                        format!(
                            "copy the work out, repository and all: `docker exec {0} tar -C {1} -cf - . > {0}-work.tar`",
                            kept.name, kept.workspace
                        )
                    } else {
                        format!(
                            "copy the work out, repository and all: `docker cp {0}:{1} ./{0}-work`",
                            kept.name, kept.workspace
                        )
                    };
                    let mut hints = vec![
                        copy,
                        format!(
                            "then remove the container: `docker rm -f {}`, or `claude-bottle cleanup --force` (plain `cleanup` leaves it alone)",
                            kept.name
                        ),
                    ];
                    if let Some(why) = unrecorded {
                        hints.push(format!(
                            "`list` and `cleanup` will not know it holds work: its record could not be written ({why})"
                        ));
                    }
                    hints
                }
                None => Vec::new(),
            },
            Self::NotConfirmed
            | Self::Prompt(_)
            | Self::InitWrite { .. }
            | Self::CurrentDir(_)
            | Self::Runtime(_)
            | Self::Stdout(_)
            | Self::Signals(_)
            | Self::Interrupted { .. } => Vec::new(),
        }
    }
}

fn signal_exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(EXIT_FAILURE)
}
