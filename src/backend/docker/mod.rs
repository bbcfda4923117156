//! The Docker backend (SPEC §6): bottles as two containers (the agent and its
//! pipelock proxy) on two networks, made through the Engine API.
//!
//! One operation per file:
//! - `plan`: `prepare`, host-side, the daemon only queried;
//! - `session`: a session from `launch` to `close`;
//! - `bring_up`: the bring-up task and its name retry, with its steps in
//!   `images`, `network_create`, `proxy_start`, `agent_start` and `claim`
//!   (taking a warm bottle instead);
//! - `warm`, `prewarm`: what makes a warm bottle fit a plan, and making them;
//! - `specs`: what each container and network is made of;
//! - `exec_claude`: the `docker exec` that runs Claude;
//! - `handoff`: Claude's secrets, handed to the bottle over an exec's stdin;
//! - `fence`: the agent's network namespace closed to all but its proxy;
//! - `teardown`: removing one session; `remove`: the one removal routine,
//!   which `cleanup` uses too;
//! - `list`, `cleanup`: `list` and `cleanup` by label;
//! - `doctor`: what a bottle needs from the daemon and host, checked;
//! - `find`, `proxy_log`, `proxy_reload`: a running bottle by name, its
//!   proxy's log, and a new proxy config taken up without a restart;
//! - `ledger`: what a session has created so far;
//! - `work_export`: the agent's work, out of its container before teardown;
//! - `client`: the Engine API behind a narrow trait;
//! - `endpoint`: the one daemon both the Engine API and the docker CLI reach;
//! - `names`: resource names and labels;
//! - `image`, `pull`: the built-in agent image, and pulling the proxy image.

mod agent_start;
mod bring_up;
mod claim;
mod cleanup;
mod client;
pub(crate) mod doctor;
mod endpoint;
mod exec_claude;
mod fence;
mod find;
mod handoff;
pub mod image;
mod images;
mod ledger;
mod list;
mod names;
mod network_create;
mod plan;
mod prewarm;
mod proxy_log;
mod proxy_reload;
mod proxy_start;
mod pull;
mod remove;
mod seccomp;
mod session;
mod specs;
mod teardown;
mod warm;
mod work_export;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod warm_tests;

use std::fmt;

use tokio::sync::OnceCell;

use futures_util::{StreamExt, TryStreamExt};

use super::{
    ActiveBottle, Backend, BackendError, BottleHandle, Check, CleanupPlan, CleanupReport,
    DoctorRequest, KeptBottle, LogLines, ResourceKind, WorkListing,
};
use crate::core::provision::{CONTAINER_HOME_ENV, DEFAULT_CONTAINER_HOME};
use crate::core::spec::BottleSpec;
use crate::core::work_home::refs::ObjectId;
use crate::diagnostic::Diagnostic;
use crate::printer::Printer;
use client::{BollardEngine, Engine};
pub use endpoint::docker_endpoint;
use image::DEFAULT_CLAUDE_CODE_VERSION;
use plan::{CLAUDE_CODE_VERSION_ENV, DEFAULT_PIPELOCK_IMAGE, FENCE_IMAGE_ENV, PIPELOCK_IMAGE_ENV};

pub(crate) const CONTAINER: ResourceKind = ResourceKind {
    one: "container",
    many: "containers",
};
pub(crate) const NETWORK: ResourceKind = ResourceKind {
    one: "network",
    many: "networks",
};

/// The Docker backend. Connects to the daemon (honouring `DOCKER_HOST`) on
/// first use.
#[derive(Debug)]
pub struct DockerBackend {
    engine: OnceCell<BollardEngine>,
    printer: Printer,
}

impl DockerBackend {
    pub fn new(printer: Printer) -> Self {
        Self {
            engine: OnceCell::new(),
            printer,
        }
    }

    /// The variables this backend reads, with their meaning and default.
    pub fn environment() -> Vec<(&'static str, String)> {
        vec![
            (
                PIPELOCK_IMAGE_ENV,
                format!("proxy image (default: {DEFAULT_PIPELOCK_IMAGE})"),
            ),
            (
                CONTAINER_HOME_ENV,
                format!("home directory inside the bottle (default: {DEFAULT_CONTAINER_HOME})"),
            ),
            (
                CLAUDE_CODE_VERSION_ENV,
                format!(
                    "Claude Code version in the built-in image (default: {DEFAULT_CLAUDE_CODE_VERSION})"
                ),
            ),
            (
                crate::core::subnet::ADDRESS_POOL_ENV,
                format!(
                    "IPv4 range for the bottles' networks (default: {})",
                    crate::core::subnet::DEFAULT_ADDRESS_POOL
                ),
            ),
            (
                FENCE_IMAGE_ENV,
                "image of the network fence, with `sh`, `iptables` and `ip6tables` (default: the built-in agent image)".to_owned(),
            ),
            ("DOCKER_HOST", "Docker daemon to use".to_owned()),
        ]
    }

    async fn engine(&self) -> Result<&BollardEngine, BackendError> {
        self.engine
            .get_or_try_init(BollardEngine::connect)
            .await
            .map_err(|e| BackendError::from_failure(&e))
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

/// One Docker bottle session. Dropping it without [`BottleHandle::close`]
/// still tears it down.
pub struct DockerBottle {
    session: session::Session<BollardEngine>,
}

impl BottleHandle for DockerBottle {
    async fn start(&mut self) -> Result<(), BackendError> {
        self.session.start().await
    }

    async fn exec_claude(&mut self, args: &[String], tty: bool) -> Result<i32, BackendError> {
        self.session.exec_claude(args, tty).await
    }

    async fn close(&mut self) -> Result<(), BackendError> {
        self.session.close().await
    }

    async fn proxy_log(&mut self) -> Result<Vec<String>, BackendError> {
        self.session.proxy_log().await
    }

    fn abandon(&mut self) {
        self.session.abandon();
    }

    async fn work_repos(&mut self) -> Result<Vec<String>, BackendError> {
        self.session.work_repos().await
    }

    async fn work_listing(&mut self, repo: &str) -> Result<Option<WorkListing>, BackendError> {
        self.session.work_listing(repo).await
    }

    async fn work_bundle(
        &mut self,
        repo: &str,
        refs: &[String],
        bases: &[ObjectId],
        dest: &std::path::Path,
    ) -> Result<(), BackendError> {
        self.session.work_bundle(repo, refs, bases, dest).await
    }

    async fn changed_files(&mut self, dest: &std::path::Path) -> Result<(), BackendError> {
        self.session.changed_files(dest).await
    }

    fn keep_agent(&mut self) -> Option<KeptBottle> {
        self.session.keep_agent()
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

    async fn prepare(&self, spec: BottleSpec) -> Result<DockerPlan, BackendError> {
        // The environment is checked before the daemon is even reached.
        let settings = plan::Settings::from_env()?;
        let engine = self.engine().await?;
        let built_in_tag = image::built_in_tag(&settings.claude_code_version);
        let session = plan::prepare(engine, spec, &settings, built_in_tag, &self.printer).await?;
        Ok(DockerPlan {
            session,
            engine: engine.clone(),
        })
    }

    async fn prewarm(&self, spec: BottleSpec, count: usize) -> Result<Vec<String>, BackendError> {
        let settings = plan::Settings::from_env()?;
        let engine = self.engine().await?;
        let built_in_tag = image::built_in_tag(&settings.claude_code_version);
        prewarm::prewarm(engine, spec, count, &settings, built_in_tag, &self.printer).await
    }

    fn launch(&self, plan: DockerPlan) -> DockerBottle {
        DockerBottle {
            session: session::Session::new(plan.engine, plan.session, self.printer.clone()),
        }
    }

    async fn list_active(&self) -> Result<Vec<ActiveBottle>, BackendError> {
        list::list_active(self.engine().await?, unix_now())
            .await
            .map_err(|e| BackendError::from_failure(&e))
    }

    async fn prepare_cleanup(&self) -> Result<CleanupPlan, BackendError> {
        cleanup::prepare_cleanup(self.engine().await?)
            .await
            .map_err(|e| BackendError::from_failure(&e))
    }

    async fn cleanup(&self, plan: CleanupPlan) -> Result<CleanupReport, BackendError> {
        cleanup::cleanup(self.engine().await?, &plan)
            .await
            .map_err(|e| BackendError::from_failure(&e))
    }

    async fn proxy_log(&self, name: &str, follow: bool) -> Result<LogLines, BackendError> {
        let lines = proxy_log::proxy_log(self.engine().await?, name, follow)
            .await
            .map_err(|e| BackendError::from_failure(&e))?;
        Ok(lines.map_err(|e| BackendError::from_failure(&e)).boxed())
    }

    async fn proxy_config(&self, name: &str) -> Result<String, BackendError> {
        proxy_reload::proxy_config(self.engine().await?, name)
            .await
            .map_err(|e| BackendError::from_failure(&e))
    }

    async fn reload_proxy(&self, name: &str, yaml: &str) -> Result<(), BackendError> {
        proxy_reload::reload(self.engine().await?, name, yaml)
            .await
            .map_err(|e| BackendError::from_failure(&e))
    }

    async fn doctor(&self, request: &DoctorRequest) -> Vec<Check> {
        let claude_code_version = plan::claude_code_version_from_env();
        let built_in_tag = image::built_in_tag(
            claude_code_version
                .as_deref()
                .unwrap_or(DEFAULT_CLAUDE_CODE_VERSION),
        );
        let inputs = doctor::Inputs {
            proxy_image: plan::proxy_image_from_env(),
            built_in_tag,
            claude_code_version: claude_code_version.map_err(|e| (e.to_string(), e.hints())),
            bottle_images: request.bottle_images.clone(),
            address_pool: crate::core::subnet::AddressPool::from_env()
                .map_err(|e| (e.to_string(), e.hints())),
            host_routes: crate::core::subnet::read_host_routes(),
        };
        let engine = self.engine().await.map_err(|e| (e.message, e.hints));
        let endpoint = engine
            .as_ref()
            .map_or_else(|_| docker_endpoint(), |e| e.endpoint().to_owned());
        doctor::checks(engine, &inputs, async |info| {
            doctor::host_facts(&endpoint, info.and_then(|i| i.root_dir.as_deref())).await
        })
        .await
    }
}
