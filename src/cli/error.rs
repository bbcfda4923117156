//! The CLI's error type and its mapping to exit codes (SPEC §2).

use std::path::PathBuf;

use crate::backend::{BackendError, UnknownBackend};
use crate::core::egress::EgressError;
use crate::core::env::EnvError;
use crate::core::pipelock::PipelockConfigError;
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
    #[error(
        "agent `{name}` is not in the manifest ({source_label})\n  hint: defined agents: {known}"
    )]
    UnknownAgent {
        name: String,
        known: String,
        source_label: String,
    },
    #[error(
        "the manifest ({source_label}) defines {count} agents, so `{command}` needs one named\n  hint: run `claude-bottle {command} AGENT` with one of: {known}"
    )]
    AgentRequired {
        command: &'static str,
        count: usize,
        known: String,
        source_label: String,
    },
    #[error(
        "not confirmed: stdin is not a terminal, so there is no one to answer y/N\n  hint: pass `--yes` to proceed without asking"
    )]
    NoTerminalToConfirm,
    #[error("not confirmed; nothing was done")]
    NotConfirmed,
    #[error("could not read the answer from the terminal: {0}")]
    Prompt(#[source] std::io::Error),
    #[error("`{}` already exists\n  hint: pass `--force` to overwrite it, or edit it in place", path.display())]
    InitExists { path: PathBuf },
    #[error("could not write `{}`: {source}", path.display())]
    InitWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not determine the current directory: {0}")]
    CurrentDir(#[source] std::io::Error),
    #[error("could not determine the home directory\n  hint: set `HOME`")]
    NoHome,
    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("could not write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("could not install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("interrupted by {name}; everything the session created was removed")]
    Interrupted { signal: i32, name: &'static str },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Manifest(_)
            | Self::UnknownBackend(_)
            | Self::Env(_)
            | Self::Egress(_)
            | Self::Pipelock(_)
            | Self::UnknownAgent { .. }
            | Self::AgentRequired { .. } => EXIT_USAGE,
            Self::Backend(e) => match e.signal {
                Some(sig) => signal_exit_code(sig),
                None if e.usage => EXIT_USAGE,
                None => EXIT_FAILURE,
            },
            Self::Interrupted { signal, .. } => signal_exit_code(*signal),
            Self::InitExists { .. } => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

fn signal_exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(EXIT_FAILURE)
}
