//! The Docker backend (SPEC §6): bottles as two containers (the agent and its
//! pipelock proxy) on two networks, made through the Engine API.
//!
//! - `plan`: `prepare`, host-side, the daemon only queried;
//! - `session`: bring-up, running Claude, teardown;
//! - `cleanup`: `list` and `cleanup` by label;
//! - `agent_env`: which variables go in the container's config, which only on Claude's exec;
//! - `client`: the Engine API behind a narrow trait;
//! - `endpoint`: the one daemon both the Engine API and the docker CLI reach;
//! - `names`: resource names and labels;
//! - `archive`, `image`: provisioning archives and the built-in agent image;
//! - `pull`: pulling the proxy image when it is absent;
//! - `progress`: the image step's progress views, sharing stderr.

mod agent_env;
pub mod archive;
mod cleanup;
mod client;
mod endpoint;
pub mod image;
mod names;
mod plan;
mod progress;
mod pull;
mod session;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::IsTerminal;

use tokio::sync::OnceCell;

use super::{
    ActiveBottle, Backend, BackendError, BottleHandle, BottleSpec, CleanupPlan, CleanupReport, Plan,
};
pub use cleanup::DockerCleanupPlan;
use client::BollardEngine;
pub use endpoint::docker_endpoint;

/// The Docker backend. Connects to the daemon (honouring `DOCKER_HOST`) on
/// first use.
#[derive(Debug, Default)]
pub struct DockerBackend {
    engine: OnceCell<BollardEngine>,
}

impl DockerBackend {
    async fn engine(&self) -> Result<&BollardEngine, BackendError> {
        self.engine
            .get_or_try_init(BollardEngine::connect)
            .await
            .map_err(|e| BackendError::new(e.to_string()))
    }
}

/// A prepared Docker session; printing it gives the plan of SPEC §2.
pub struct DockerPlan {
    session: plan::SessionPlan,
    engine: BollardEngine,
}

impl fmt::Display for DockerPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.session.fmt(f)
    }
}

impl fmt::Debug for DockerPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerPlan")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Plan for DockerPlan {
    fn agent_name(&self) -> &str {
        &self.session.spec.agent_name
    }
}

/// One Docker bottle session. Dropping it without [`BottleHandle::close`]
/// still tears it down.
pub struct DockerBottle {
    session: session::Session<BollardEngine>,
}

impl DockerBottle {
    /// The agent container's name once started.
    pub fn container(&self) -> Option<&str> {
        self.session.started().map(|s| s.names.agent.as_str())
    }

    /// This session's `claude-bottle.session` label value.
    pub fn session_id(&self) -> &str {
        &self.session.plan().owner.session
    }
}

impl BottleHandle for DockerBottle {
    async fn start(&mut self) -> Result<(), BackendError> {
        self.session.start().await
    }

    async fn exec_claude(&mut self, args: &[String], tty: bool) -> Result<i32, BackendError> {
        self.session.exec_claude(args, tty).await
    }

    async fn cp_in(&mut self, host: &std::path::Path, container: &str) -> Result<(), BackendError> {
        self.session.cp_in(host, container).await
    }

    async fn close(&mut self) -> Result<(), BackendError> {
        self.session.close().await
    }
}

impl CleanupPlan for DockerCleanupPlan {
    fn is_empty(&self) -> bool {
        DockerCleanupPlan::is_empty(self)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Backend for DockerBackend {
    type Plan = DockerPlan;
    type Bottle = DockerBottle;
    type CleanupPlan = DockerCleanupPlan;

    async fn prepare(&self, spec: BottleSpec) -> Result<DockerPlan, BackendError> {
        let engine = self.engine().await?;
        let settings = plan::Settings::from_env();
        let session = plan::prepare(engine, spec, &settings, image::built_in_tag()).await?;
        Ok(DockerPlan {
            session,
            engine: engine.clone(),
        })
    }

    fn launch(&self, plan: DockerPlan) -> DockerBottle {
        let progress = std::io::stderr().is_terminal();
        DockerBottle {
            session: session::Session::new(plan.engine, plan.session, progress),
        }
    }

    async fn list_active(&self) -> Result<Vec<ActiveBottle>, BackendError> {
        cleanup::list_active(self.engine().await?, unix_now())
            .await
            .map_err(|e| BackendError::new(e.to_string()))
    }

    async fn prepare_cleanup(&self) -> Result<DockerCleanupPlan, BackendError> {
        cleanup::prepare_cleanup(self.engine().await?, &std::env::temp_dir())
            .await
            .map_err(|e| BackendError::new(e.to_string()))
    }

    async fn cleanup(&self, plan: DockerCleanupPlan) -> Result<CleanupReport, BackendError> {
        cleanup::cleanup(self.engine().await?, plan)
            .await
            .map_err(|e| BackendError::new(e.to_string()))
    }
}
