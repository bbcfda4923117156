//! How bottles are made real. The CLI speaks only to the [`Backend`] trait;
//! everything Docker-specific lives under [`docker`].

pub mod docker;

use std::fmt;
use std::path::PathBuf;

use crate::core::env::ResolvedEnv;
use crate::manifest::{Agent, Bottle};

/// The environment variable that selects the backend.
pub const BACKEND_ENV: &str = "CLAUDE_BOTTLE_BACKEND";
pub const DEFAULT_BACKEND: &str = "docker";
/// Every backend this build knows, by the name `CLAUDE_BOTTLE_BACKEND` takes.
pub const KNOWN_BACKENDS: &[&str] = &["docker"];

/// What the user asked for: intent only, nothing resolved against a backend.
#[derive(Debug, Clone)]
pub struct BottleSpec {
    pub agent_name: String,
    pub agent: Agent,
    pub bottle_name: String,
    pub bottle: Bottle,
    /// The resolved container environment (values are secret).
    pub env: ResolvedEnv,
    /// `--cwd`: the host directory that becomes the workspace.
    pub cwd: Option<PathBuf>,
    /// `--name`: a pinned container name; a conflict is then an error.
    pub pinned_name: Option<String>,
    pub remote_control: bool,
    /// The host user's home, for `~` in identity files, skills and known_hosts.
    pub host_home: PathBuf,
}

/// A prepared session: plain data, printable, and nothing has happened yet.
pub trait Plan: fmt::Display {
    fn agent_name(&self) -> &str;
}

/// A bottle session. It exists before any resource does: [`BottleHandle::start`]
/// creates them and records each in the handle, so dropping an in-flight
/// `start` (on a signal) still leaves [`BottleHandle::close`] able to remove
/// everything. Dropping the handle without `close` tears down as a backstop.
pub trait BottleHandle {
    /// Creates, provisions and starts the bottle.
    fn start(&mut self) -> impl Future<Output = Result<(), BackendError>>;
    /// Runs Claude (or `claude remote-control` when the plan asked for it)
    /// with `args`, attached to a terminal when `tty`, and returns its exit code.
    fn exec_claude(
        &mut self,
        args: &[String],
        tty: bool,
    ) -> impl Future<Output = Result<i32, BackendError>>;
    /// Copies a host file or directory tree into the bottle.
    fn cp_in(
        &mut self,
        host: &std::path::Path,
        container: &str,
    ) -> impl Future<Output = Result<(), BackendError>>;
    /// Tears down everything the session created. Idempotent.
    fn close(&mut self) -> impl Future<Output = Result<(), BackendError>>;
}

/// What `cleanup` would remove. Printable; empty when there is nothing to do.
pub trait CleanupPlan: fmt::Display {
    fn is_empty(&self) -> bool;
}

/// One bottle the backend found running (or left behind).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActiveBottle {
    pub container: String,
    pub agent: String,
    pub state: String,
    pub runtime: String,
    /// Seconds since the container was created.
    pub age_seconds: u64,
    pub session: String,
    /// Whether the claude-bottle process that made it is gone.
    pub orphaned: bool,
}

/// What `cleanup` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
}

pub trait Backend {
    type Plan: Plan;
    type Bottle: BottleHandle;
    type CleanupPlan: CleanupPlan;

    /// Host-side only: resolves names, checks skills and identity files, and
    /// writes scratch files. May query the backend, never changes it.
    fn prepare(&self, spec: BottleSpec) -> impl Future<Output = Result<Self::Plan, BackendError>>;
    /// Opens a session for `plan`. Creates nothing: see [`BottleHandle::start`].
    fn launch(&self, plan: Self::Plan) -> Self::Bottle;
    fn list_active(&self) -> impl Future<Output = Result<Vec<ActiveBottle>, BackendError>>;
    fn prepare_cleanup(&self) -> impl Future<Output = Result<Self::CleanupPlan, BackendError>>;
    fn cleanup(
        &self,
        plan: Self::CleanupPlan,
    ) -> impl Future<Output = Result<CleanupReport, BackendError>>;
}

/// A backend failure, already worded for the user. Backends keep their own
/// detailed error types and convert at this seam.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub message: String,
    /// Whether the failure is the user's input (exit 2) rather than the environment (exit 1).
    pub usage: bool,
    /// Set when a signal interrupted the session: the process exits 128+signal.
    pub signal: Option<i32>,
}

impl BackendError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: false,
            signal: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            usage: true,
            ..Self::new(message)
        }
    }

    pub fn interrupted(signal: i32) -> Self {
        Self {
            signal: Some(signal),
            ..Self::new(format!(
                "interrupted by signal {signal}; the bottle was torn down"
            ))
        }
    }
}

/// The selected backend. Static dispatch: each arm is a concrete backend.
pub enum Selected {
    Docker(docker::DockerBackend),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown backend `{name}` in `{var}`\n  hint: known backends: {known}; unset `{var}` to use `{default}`",
    var = BACKEND_ENV,
    known = KNOWN_BACKENDS.join(", "),
    default = DEFAULT_BACKEND
)]
pub struct UnknownBackend {
    pub name: String,
}

/// Picks the backend named by the process's `CLAUDE_BOTTLE_BACKEND`.
pub fn select_from_env() -> Result<Selected, UnknownBackend> {
    select(std::env::var(BACKEND_ENV).ok().as_deref())
}

/// Picks the backend named by `CLAUDE_BOTTLE_BACKEND` (`value`), default `docker`.
pub fn select(value: Option<&str>) -> Result<Selected, UnknownBackend> {
    match value.unwrap_or(DEFAULT_BACKEND) {
        "docker" => Ok(Selected::Docker(docker::DockerBackend::default())),
        other => Err(UnknownBackend {
            name: other.to_owned(),
        }),
    }
}
