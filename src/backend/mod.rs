//! How bottles are made real. The CLI speaks only to the [`Backend`] trait,
//! through [`AnyBackend`], which dispatches to the backend that
//! `CLAUDE_BOTTLE_BACKEND` names. Everything Docker-specific lives under
//! [`docker`]; `docs/backends.md` shows the seam holding a remote engine.

pub mod docker;
mod doctor;
mod error;
mod inventory;
mod select;

use std::fmt;

use futures_util::stream::BoxStream;

pub use doctor::{Check, CheckStatus, DoctorRequest};
pub use error::{BackendError, BackendErrorKind};
pub use inventory::{
    ActiveBottle, CleanupItem, CleanupPlan, CleanupReport, Resource, ResourceKind, SessionState,
};
pub use select::{AnyBackend, AnyBottle, AnyPlan, BACKEND_ENV, DEFAULT_BACKEND, UnknownBackend};

use crate::core::spec::BottleSpec;
use crate::core::work_home::refs::{BottleWork, ObjectId};

/// A proxy's log, line by line.
pub type LogLines = BoxStream<'static, Result<String, BackendError>>;

/// A bottle session. It exists before any resource does: [`BottleHandle::start`]
/// creates them and records each in the handle, so dropping an in-flight
/// `start` (on a signal) still leaves [`BottleHandle::close`] able to remove
/// everything. Dropping the handle without `close` tears down as a backstop.
pub trait BottleHandle {
    /// Creates, provisions and starts the bottle.
    fn start(&mut self) -> impl Future<Output = Result<(), BackendError>>;
    /// Runs Claude (or `claude remote-control` when the plan asked for it)
    /// with `args`, attached to a terminal when `tty`, and returns its exit
    /// code. The prompt file, when there is one, is added to the arguments.
    fn exec_claude(
        &mut self,
        args: &[String],
        tty: bool,
    ) -> impl Future<Output = Result<i32, BackendError>>;
    /// Tears down everything the session created. Idempotent; each call to
    /// the engine is bounded, so it ends even when the engine does not answer.
    fn close(&mut self) -> impl Future<Output = Result<(), BackendError>>;
    /// The proxy's log so far, read before teardown for the denial summary.
    fn proxy_log(&mut self) -> impl Future<Output = Result<Vec<String>, BackendError>>;
    /// Gives up on teardown (the user insisted, with a second signal): the
    /// handle then removes nothing when dropped, and whatever is left is
    /// `cleanup`'s to find.
    fn abandon(&mut self);
    /// The git repositories under the workspace, as paths relative to it
    /// (`.` for the workspace itself), at most
    /// `core::work_home::saved::REPO_DEPTH` levels down; empty when the
    /// bottle never ran. Bounded in time and size, and checked: see
    /// `core::work_home::saved::parse_repos`.
    fn work_repos(&mut self) -> impl Future<Output = Result<Vec<String>, BackendError>>;
    /// Records the uncommitted work of the git repository `repo` (relative
    /// to the workspace, `.` for the workspace itself; of a sparse checkout,
    /// that of the directory it holds) as a commit (leaving the bottle's
    /// index and files as they are) and lists its branches;
    /// `None` when `repo` is not the top of a git work tree or the bottle
    /// never ran. What it returns was checked, but came from the agent: see
    /// `core::work_home`.
    fn work_listing(
        &mut self,
        repo: &str,
    ) -> impl Future<Output = Result<Option<WorkListing>, BackendError>>;
    /// Copies to `dest` on this host a git bundle of the `refs` (full names
    /// there) of the bottle's repository `repo`, without the history
    /// `bases` reach (the host has it). Bounded in time and size.
    fn work_bundle(
        &mut self,
        repo: &str,
        refs: &[String],
        bases: &[ObjectId],
        dest: &std::path::Path,
    ) -> impl Future<Output = Result<(), BackendError>>;
    /// Copies to `dest` on this host a tar of the files (and symlinks) in
    /// the workspace changed or created since the session started: the
    /// work of a workspace that is no git repository. Bounded in time and
    /// size; its entries came from the agent.
    fn changed_files(
        &mut self,
        dest: &std::path::Path,
    ) -> impl Future<Output = Result<(), BackendError>>;
    /// Keeps the agent's container when the session closes: off the
    /// session's networks, stopped unless its files would go with that (see
    /// [`KeptBottle::running`]), and not removed, because its work did not
    /// come home. `None` when there is no container (it never started).
    fn keep_agent(&mut self) -> Option<KeptBottle>;
}

/// What [`BottleHandle::work_listing`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkListing {
    /// The bottle's name (its agent container's).
    pub bottle: String,
    pub work: BottleWork,
}

/// An agent container kept after its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBottle {
    pub name: String,
    /// The engine's handle for it.
    pub id: String,
    /// Where the agent's work is inside it.
    pub workspace: String,
    /// Left running (with no network) rather than stopped: its runtime
    /// keeps the container's files only while it runs.
    pub running: bool,
}

pub trait Backend {
    /// A prepared session: plain data, printable, and nothing has happened yet.
    type Plan: fmt::Display;
    type Bottle: BottleHandle;

    /// Host-side only: resolves names, checks skills and identity files, and
    /// decides what the bottle is made of. May query the engine, never
    /// changes it.
    fn prepare(&self, spec: BottleSpec) -> impl Future<Output = Result<Self::Plan, BackendError>>;
    /// Makes `count` warm bottles for `spec`: each whole and running, with
    /// nothing of a session in it, for a later `start` whose plan fits to
    /// claim. Returns their names; when one fails, removes them all.
    fn prewarm(
        &self,
        spec: BottleSpec,
        count: usize,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>>;
    /// Opens a session for `plan`. Creates nothing: see [`BottleHandle::start`].
    fn launch(&self, plan: Self::Plan) -> Self::Bottle;
    /// Every bottle the engine holds, running or left behind, oldest first.
    fn list_active(&self) -> impl Future<Output = Result<Vec<ActiveBottle>, BackendError>>;
    /// Everything this tool made on the engine, to show before removing it.
    fn prepare_cleanup(&self) -> impl Future<Output = Result<CleanupPlan, BackendError>>;
    /// Removes what `plan` lists, and nothing else.
    fn cleanup(
        &self,
        plan: CleanupPlan,
    ) -> impl Future<Output = Result<CleanupReport, BackendError>>;
    /// The log of the proxy of the running bottle `name` (see
    /// [`ActiveBottle::name`]): what it wrote so far, then, with `follow`,
    /// every later line until the bottle ends.
    fn proxy_log(
        &self,
        name: &str,
        follow: bool,
    ) -> impl Future<Output = Result<LogLines, BackendError>>;
    /// The proxy config the running bottle `name` uses now.
    fn proxy_config(&self, name: &str) -> impl Future<Output = Result<String, BackendError>>;
    /// Makes `yaml` the proxy config of the running bottle `name` without
    /// restarting its proxy, and returns once the proxy reported the reload.
    /// A reload the proxy refused is an error with its reason.
    fn reload_proxy(
        &self,
        name: &str,
        yaml: &str,
    ) -> impl Future<Output = Result<(), BackendError>>;
    /// Checks what a bottle needs from this host and engine, changing
    /// nothing that outlives the call. Never fails: what cannot be checked
    /// is a failed check.
    fn doctor(&self, request: &DoctorRequest) -> impl Future<Output = Vec<Check>>;
}
