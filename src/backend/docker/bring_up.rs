//! The bring-up of one session, in the order of SPEC §6, as a task of its own.
//!
//! The task records every resource in the session's ledger as soon as the
//! daemon confirms it, and stops at its next step once the session asks it
//! to, so dropping the future of `start` (on a signal) loses nothing. The
//! steps live beside it: `images`, `network_create`, `proxy_start` and
//! `agent_start`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::{ContainerSpec, Engine, EngineError, ErrorKind};
use super::ledger::{Created, SharedLedger};
use super::names::{MAX_SUFFIX, Names};
use super::plan::{PIPELOCK_IMAGE_ENV, RUNSC, runsc_fix, runsc_leftover_hint};
use super::plan::{SessionPlan, WarmChoice};
use super::pull::ProxyPullError;
use crate::backend::BackendError;
use crate::core::provision::archive::ArchiveError;
use crate::core::provision::{self, ProvisionError};
use crate::diagnostic::Diagnostic;
use crate::printer::Printer;

/// How long the proxy may take to report healthy.
pub(crate) const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The limits of bring-up; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub proxy_ready: Duration,
    /// How long starting the agent container may take before its runtime is
    /// deemed stuck (a registered runtime that cannot run containers).
    pub agent_start: Duration,
    /// How long `close` waits for an interrupted bring-up to finish its
    /// request in flight.
    pub drain: Duration,
    /// How long a creation still in flight when the bring-up was aborted
    /// may take to land, before `close` sweeps for it once more.
    pub late_creation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            proxy_ready: PROXY_READY_TIMEOUT,
            agent_start: Duration::from_secs(60),
            drain: Duration::from_secs(10),
            late_creation: Duration::from_secs(2),
        }
    }
}

/// The running bottle, once bring-up succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    pub names: Names,
    pub agent_id: String,
    /// `--append-system-prompt-file` for Claude, when the prompt is not empty.
    pub prompt_file: Option<String>,
    /// Where Claude's launcher finds its secrets; `None` when it has none.
    pub handoff_dir: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    ProxyPull(#[from] ProxyPullError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("no free name for agent `{agent}` up to suffix -{MAX_SUFFIX}")]
    NoFreeName { agent: String },
    #[error("container name `{name}` (from `--name`) is already in use")]
    PinnedNameTaken { name: String },
    #[error(
        "the proxy `{name}` stopped before it was ready ({state}, exit code {exit_code}){logs}"
    )]
    ProxyExited {
        name: String,
        state: String,
        exit_code: i64,
        logs: String,
    },
    #[error("the proxy `{name}` was not ready within {seconds} s{logs}")]
    ProxyTimeout {
        name: String,
        seconds: u64,
        logs: String,
    },
    #[error("the proxy `{name}` has no address on network `{network}`")]
    ProxyNoAddress { name: String, network: String },
    #[error("could not start the agent container `{name}` with runtime `{runtime}`: {detail}")]
    RuntimeFailed {
        name: String,
        /// The container's ID: what its leftover processes are named by.
        id: String,
        runtime: String,
        detail: String,
    },
    #[error(
        "the agent container `{name}` stopped right after it started ({state}, exit code {exit_code}){logs}"
    )]
    AgentExited {
        name: String,
        state: String,
        exit_code: i64,
        logs: String,
    },
    #[error(transparent)]
    Addresses(#[from] super::plan::AddressesExhausted),
    #[error(
        "could not give network `{network}` a subnet: {attempts} were taken by other networks as they were tried, the last with `{detail}`"
    )]
    AddressesContended {
        network: String,
        attempts: u32,
        detail: String,
    },
    #[error(
        "could not fence the network of the agent container `{agent}`: the fence `{name}` ({image}) failed: {detail}{logs}"
    )]
    FenceFailed {
        name: String,
        agent: String,
        image: String,
        detail: String,
        logs: String,
    },
    #[error("could not hand Claude's secret environment to the agent container `{name}`: {detail}")]
    HandoffFailed { name: String, detail: String },
    #[error("interrupted")]
    Cancelled,
    #[error("the launch task failed: {0}")]
    Task(String),
    #[error("could not remove what a name attempt created before the next one: {0}")]
    Release(String),
}

impl Diagnostic for LaunchError {
    fn hints(&self) -> Vec<String> {
        let hint = match self {
            Self::Engine(e) => return e.hints(),
            Self::Provision(e) => return e.hints(),
            Self::ProxyPull(e) => return e.hints(),
            Self::Archive(e) => return e.hints(),
            Self::Addresses(e) => return e.hints(),
            Self::AddressesContended { .. } => format!(
                "many bottles or networks are being made at once; try again, or set `{}` to a range of its own",
                crate::core::subnet::ADDRESS_POOL_ENV
            ),
            Self::NoFreeName { .. } | Self::Release(_) => {
                "run `claude-bottle cleanup` to remove bottles left behind".to_owned()
            }
            Self::PinnedNameTaken { .. } => {
                "choose another `--name`, or run `claude-bottle cleanup` to remove bottles left behind".to_owned()
            }
            Self::ProxyExited { .. } => format!(
                "check the generated config with `claude-bottle proxy-config AGENT`, and the proxy image (`{PIPELOCK_IMAGE_ENV}`)"
            ),
            Self::ProxyTimeout { .. } => format!(
                "the host may be overloaded; check that the proxy image (`{PIPELOCK_IMAGE_ENV}`) answers `/pipelock healthcheck`"
            ),
            Self::RuntimeFailed {
                id,
                runtime,
                detail,
                ..
            } => {
                let general = format!(
                    "the daemon lists `{runtime}` among its runtimes but it does not run containers; fix or unregister it in the daemon's config (`docker info` shows the runtimes)"
                );
                let runsc = runtime == RUNSC;
                let fix = runsc.then(|| runsc_fix(detail)).flatten();
                let leftover = runsc.then(|| runsc_leftover_hint(id, detail)).flatten();
                return fix.into_iter().chain([general]).chain(leftover).collect();
            }
            Self::FenceFailed { image, .. } => super::fence::fence_hint(image),
            Self::HandoffFailed { .. } => format!(
                "the agent image needs `sh`, `mkdir` and `cat`, and the container a `{}` mount of its own (Docker and Podman give each container one)",
                crate::core::secret_handoff::SHM
            ),
            Self::AgentExited { .. } => {
                "the image must provide `sleep` (a Debian-based image does)".to_owned()
            }
            Self::ProxyNoAddress { .. } | Self::Cancelled | Self::Task(_) => return Vec::new(),
        };
        vec![hint]
    }
}

impl From<LaunchError> for BackendError {
    fn from(err: LaunchError) -> Self {
        match err {
            LaunchError::PinnedNameTaken { .. } => BackendError::from_usage(&err),
            _ => BackendError::from_failure(&err),
        }
    }
}

/// A name was taken between `prepare` and creation: try the next suffix.
pub(crate) enum Attempt {
    NameTaken,
    Failed(LaunchError),
}

impl From<LaunchError> for Attempt {
    fn from(err: LaunchError) -> Self {
        Self::Failed(err)
    }
}

impl From<EngineError> for Attempt {
    fn from(err: EngineError) -> Self {
        Self::Failed(err.into())
    }
}

pub(crate) fn taken_or_failed(err: EngineError) -> Attempt {
    if err.kind == ErrorKind::Conflict {
        Attempt::NameTaken
    } else {
        Attempt::Failed(err.into())
    }
}

/// Everything the bring-up task reads.
pub(crate) struct BringUp<E> {
    pub engine: E,
    pub plan: Arc<SessionPlan>,
    pub ledger: SharedLedger,
    pub cancel: watch::Receiver<bool>,
    pub printer: Printer,
    pub timeouts: Timeouts,
}

impl<E: Engine> BringUp<E> {
    pub fn check_cancelled(&self) -> Result<(), LaunchError> {
        if *self.cancel.borrow() {
            Err(LaunchError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when `close` asks the bring-up to stop.
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        // An error means the session is gone: stop as well.
        let _ = cancel.wait_for(|stop| *stop).await;
    }

    pub async fn run(self) -> Result<Started, LaunchError> {
        if let WarmChoice::Claim(found) = &self.plan.warm
            && self.plan.owner.warm.is_none()
        {
            if let Some(started) = self.claim_warm(found).await? {
                return Ok(started);
            }
            self.printer.status(format_args!(
                "other sessions claimed every warm bottle that fits; starting cold"
            ));
        }
        let first = self.plan.names.clone();
        let clock = Instant::now();
        let (images, networks) =
            futures_util::join!(self.ensure_images(), self.create_networks(&first));
        images?;
        tracing::debug!("images and networks ready in {:?}", clock.elapsed());
        let mut names = first;
        let mut attempt = match networks {
            Ok(ids) => self.start_bottle(&names, ids).await,
            Err(taken_or_failure) => Err(taken_or_failure),
        };
        loop {
            match attempt {
                Ok(started) => return Ok(started),
                Err(Attempt::Failed(err)) => return Err(err),
                Err(Attempt::NameTaken) => {}
            }
            self.check_cancelled()?;
            self.release_attempt().await?;
            if names.suffix >= MAX_SUFFIX {
                return Err(LaunchError::NoFreeName {
                    agent: self.plan.spec.agent_name.clone(),
                });
            }
            let next = Names::new(
                &self.plan.slug,
                names.suffix + 1,
                self.plan.spec.pinned_name.as_deref(),
            );
            self.printer.status(format_args!(
                "a name of `{}` is taken; trying `{}`",
                names.agent, next.agent
            ));
            names = next;
            attempt = match self.create_networks(&names).await {
                Ok(ids) => self.start_bottle(&names, ids).await,
                Err(e) => Err(e),
            };
        }
    }

    /// Proxy, then agent, on networks that exist (SPEC §6 Order, steps 4-5).
    /// The agent container is created and provisioned while the proxy gets
    /// ready (it needs only the proxy's address), and started once it is.
    /// A warm bottle is not provisioned: the session that claims it is.
    async fn start_bottle(
        &self,
        names: &Names,
        (internal_id, egress_id): (String, String),
    ) -> Result<Started, Attempt> {
        let warm = self.plan.owner.warm.is_some();
        let provision = if warm {
            None
        } else if names.proxy == self.plan.names.proxy {
            Some(self.plan.provision.clone())
        } else {
            Some(
                provision::build(&self.plan.spec, &names.proxy, &self.plan.container_home)
                    .map_err(LaunchError::from)?,
            )
        };
        let prompt_file = provision.as_ref().and_then(|p| p.prompt_file.clone());
        let clock = Instant::now();
        let proxy_id = self.launch_proxy(names, &internal_id, &egress_id).await?;
        let proxy_address = self.proxy_address(names, &proxy_id, &internal_id).await?;
        let agent = self.create_agent(names, &internal_id, &proxy_address, provision);
        let (ready, agent_id) =
            futures_util::join!(self.wait_until_ready(&names.proxy, &proxy_id), agent);
        ready?;
        let agent_id = agent_id?;
        tracing::debug!("proxy `{}` ready in {:?}", names.proxy, clock.elapsed());
        self.start_agent(names, &agent_id).await?;
        tracing::debug!("agent `{}` started in {:?}", names.agent, clock.elapsed());
        self.fence_agent(names, &agent_id, &proxy_address).await?;
        tracing::debug!("agent `{}` fenced in {:?}", names.agent, clock.elapsed());
        let handoff_dir = self.hand_over(&agent_id, &names.agent).await?;
        Ok(Started {
            names: names.clone(),
            agent_id,
            prompt_file,
            handoff_dir,
        })
    }

    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String, Attempt> {
        self.check_cancelled()?;
        let id = self
            .engine
            .create_container(spec)
            .await
            .map_err(taken_or_failed)?;
        self.ledger.update(|l| {
            l.containers.push(Created {
                id: id.clone(),
                name: spec.name.clone(),
            });
        });
        Ok(id)
    }
}
