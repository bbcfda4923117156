//! One Docker session: bring-up in the order of SPEC §6, running Claude, and
//! teardown.
//!
//! The bring-up runs as a spawned task that records every resource in a
//! ledger shared with the [`Session`] as soon as the daemon confirms it.
//! Dropping the future of [`Session::start`] (on a signal) therefore loses
//! nothing: the task finishes the request in flight and stops at its next
//! step, and [`Session::close`] waits for it, removes what the ledger holds,
//! and sweeps by this session's label for anything whose confirmation never
//! arrived.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::agent_env;
use super::client::{
    ContainerSpec, Engine, EngineError, EnvPair, ErrorKind, LabelFilter, NetworkSpec, created_key,
};
use super::names::{LABEL_SESSION, MAX_SUFFIX, Names, Role};
use super::plan::{AgentImageChoice, SessionPlan};
use super::progress;
use super::pull::ProxyPullError;
use crate::backend::BackendError;
use crate::core::provision::{self, Item, ProvisionError, ProvisionSet, Source};

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
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            proxy_ready: PROXY_READY_TIMEOUT,
            agent_start: Duration::from_secs(60),
            drain: Duration::from_secs(10),
        }
    }
}
const PROXY_POLL_INTERVAL: Duration = Duration::from_millis(50);
const PROXY_LOG_LINES: u32 = 20;

/// Pipelock's own health command (the image's HEALTHCHECK runs it too).
pub(crate) const PROXY_HEALTH_COMMAND: [&str; 2] = ["/pipelock", "healthcheck"];
/// The in-container path of the proxy config; the pipelock command line names it.
pub(crate) const PROXY_CONFIG_PATH: &str = "etc/pipelock/pipelock.yaml";
/// The container user: the agent image's `node`.
pub(crate) const CONTAINER_USER: &str = "1000:1000";
/// `docker exec --detach-keys`: a sequence nobody types, so no keystroke
/// meant for Claude detaches the terminal.
pub(crate) const DETACH_KEYS: &str = "ctrl-_,ctrl-^,ctrl-_";
pub(crate) const PIDS_LIMIT: i64 = 4096;
/// The agent's resolver: Docker's embedded DNS forwards to it, and nothing
/// listens there, so no query leaves (CVE-2024-29018 closed by design).
pub(crate) const AGENT_DNS: &str = "127.0.0.1";
/// The driver option that leaves the host without an address on the internal
/// bridge: with it, an internal network has no layer-3 path to the host.
pub(crate) const INHIBIT_IPV4: &str = "com.docker.network.bridge.inhibit_ipv4";

/// One resource this session created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    pub id: String,
    pub name: String,
}

/// What exists on the daemon for this session, in creation order.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub containers: Vec<Resource>,
    pub networks: Vec<Resource>,
}

type SharedLedger = Arc<Mutex<Ledger>>;

fn record(ledger: &SharedLedger, add: impl FnOnce(&mut Ledger)) {
    add(&mut ledger.lock().unwrap_or_else(PoisonError::into_inner));
}

/// The running bottle, once bring-up succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    pub names: Names,
    pub agent_id: String,
    /// `--append-system-prompt-file` for Claude, when the prompt is not empty.
    pub prompt_file: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    ProxyPull(#[from] ProxyPullError),
    #[error("could not package the files for the bottle: {0}")]
    Archive(String),
    #[error(
        "no free name for agent `{agent}` up to suffix -{MAX_SUFFIX}\n  hint: run `claude-bottle cleanup` to remove bottles left behind"
    )]
    NoFreeName { agent: String },
    #[error(
        "container name `{name}` (from `--name`) is already in use\n  hint: choose another `--name`, or run `claude-bottle cleanup` to remove bottles left behind"
    )]
    PinnedNameTaken { name: String },
    #[error(
        "the proxy `{name}` stopped before it was ready ({state}, exit code {exit_code}){logs}\n  hint: check the generated config with `claude-bottle proxy-config AGENT`, and the proxy image (`CLAUDE_BOTTLE_PIPELOCK_IMAGE`)"
    )]
    ProxyExited {
        name: String,
        state: String,
        exit_code: i64,
        logs: String,
    },
    #[error(
        "the proxy `{name}` was not ready within {seconds} s{logs}\n  hint: the host may be overloaded; check the proxy image (`CLAUDE_BOTTLE_PIPELOCK_IMAGE`) answers `/pipelock healthcheck`"
    )]
    ProxyTimeout {
        name: String,
        seconds: u64,
        logs: String,
    },
    #[error("the proxy `{name}` has no address on network `{network}`")]
    ProxyNoAddress { name: String, network: String },
    #[error(
        "could not start the agent container `{name}` with runtime `{runtime}`: {detail}\n  hint: the daemon lists `{runtime}` among its runtimes but it does not run containers; fix or unregister it in the daemon's config (`docker info` shows the runtimes)"
    )]
    RuntimeFailed {
        name: String,
        runtime: String,
        detail: String,
    },
    #[error(
        "the agent container `{name}` stopped right after it started ({state}, exit code {exit_code}){logs}\n  hint: the image must provide `sleep` (a Debian-based image does)"
    )]
    AgentExited {
        name: String,
        state: String,
        exit_code: i64,
        logs: String,
    },
    #[error("interrupted")]
    Cancelled,
    #[error("the launch task failed: {0}")]
    Task(String),
}

impl From<LaunchError> for BackendError {
    fn from(err: LaunchError) -> Self {
        match err {
            LaunchError::PinnedNameTaken { .. } => BackendError::usage(err.to_string()),
            _ => BackendError::new(err.to_string()),
        }
    }
}

/// A name was taken between `prepare` and creation: try the next suffix.
enum Attempt {
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

fn taken_or_failed(err: EngineError) -> Attempt {
    if err.kind == ErrorKind::Conflict {
        Attempt::NameTaken
    } else {
        Attempt::Failed(err.into())
    }
}

/// Everything the bring-up task reads.
struct BringUp<E> {
    engine: E,
    plan: Arc<SessionPlan>,
    ledger: SharedLedger,
    cancel: watch::Receiver<bool>,
    progress: bool,
    timeouts: Timeouts,
}

impl<E: Engine> BringUp<E> {
    fn check_cancelled(&self) -> Result<(), LaunchError> {
        if *self.cancel.borrow() {
            Err(LaunchError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when `close` asks the bring-up to stop.
    async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        // An error means the session is gone: stop as well.
        let _ = cancel.wait_for(|stop| *stop).await;
    }

    async fn run(self) -> Result<Started, LaunchError> {
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
            tracing::info!(
                "a name of `{}` is taken; trying `{}`",
                names.agent,
                next.agent
            );
            names = next;
            attempt = match self.create_networks(&names).await {
                Ok(ids) => self.start_bottle(&names, ids).await,
                Err(e) => Err(e),
            };
        }
    }

    /// The agent image is built and the proxy image pulled at once: neither
    /// needs the other. The first failure drops the other step.
    async fn ensure_images(&self) -> Result<(), LaunchError> {
        futures_util::try_join!(self.ensure_agent_image(), self.ensure_proxy_image())?;
        Ok(())
    }

    async fn ensure_agent_image(&self) -> Result<(), LaunchError> {
        let AgentImageChoice::BuiltIn {
            tag,
            present: false,
        } = &self.plan.image
        else {
            return Ok(());
        };
        self.check_cancelled()?;
        // Another session may have built it since `prepare`.
        if self.engine.image_exists(tag).await? {
            return Ok(());
        }
        tokio::select! {
            built = self.engine.build_image(tag, self.progress) => Ok(built?),
            () = self.cancelled() => Err(LaunchError::Cancelled),
        }
    }

    /// Pulls the proxy image when `prepare` did not find it. A pull creates
    /// no container or network, so an interrupted one leaves nothing to
    /// remove: it is simply dropped.
    async fn ensure_proxy_image(&self) -> Result<(), LaunchError> {
        if self.plan.proxy_image_present {
            return Ok(());
        }
        self.check_cancelled()?;
        let image = &self.plan.proxy_image;
        // Another session may have pulled it since `prepare`.
        if self.engine.image_exists(image).await? {
            return Ok(());
        }
        progress::log_above(|| tracing::info!("pulling the proxy image `{image}`"));
        let clock = Instant::now();
        tokio::select! {
            pulled = self.engine.pull_image(image, self.progress) => {
                pulled.map_err(|err| match ProxyPullError::classify(image, err) {
                    Ok(pull) => LaunchError::ProxyPull(pull),
                    Err(daemon) => LaunchError::Engine(daemon),
                })?;
            }
            () = self.cancelled() => return Err(LaunchError::Cancelled),
        }
        progress::log_above(|| {
            tracing::info!(
                "pulled the proxy image `{image}` in {:.1} s",
                clock.elapsed().as_secs_f64()
            );
        });
        Ok(())
    }

    /// Creates the internal network, makes sure this session owns its name,
    /// then creates the egress network; returns (internal ID, egress ID).
    ///
    /// The daemon's duplicate check (API 1.41) is not atomic: two sessions
    /// starting at once can both create `claude-bottle-internal-<slug>`, and
    /// a container on a network whose name is ambiguous cannot start. So the
    /// oldest network of that name wins its suffix and any younger twin
    /// backs off to the next one. The egress network is created only by the
    /// winner, so the two networks never split between sessions.
    async fn create_networks(&self, names: &Names) -> Result<(String, String), Attempt> {
        self.check_cancelled()?;
        let labels = self.plan.owner.labels(Role::Network);
        let internal = NetworkSpec {
            name: names.internal_network.clone(),
            internal: true,
            options: [(INHIBIT_IPV4.to_owned(), "true".to_owned())].into(),
            labels: labels.clone(),
        };
        let egress = NetworkSpec {
            name: names.egress_network.clone(),
            internal: false,
            options: Default::default(),
            labels,
        };
        let internal_id = self.create_network(&internal).await?;
        let twins = self.engine.networks_named(&internal.name).await?;
        let oldest = twins
            .iter()
            .min_by_key(|n| (created_key(&n.created), n.id.clone()));
        if oldest.is_some_and(|n| n.id != internal_id) {
            tracing::debug!(
                "another session made `{}` at the same moment; it keeps the name",
                internal.name
            );
            return Err(Attempt::NameTaken);
        }
        self.check_cancelled()?;
        let egress_id = self.create_network(&egress).await?;
        Ok((internal_id, egress_id))
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, Attempt> {
        let id = self
            .engine
            .create_network(spec)
            .await
            .map_err(taken_or_failed)?;
        record(&self.ledger, |l| {
            l.networks.push(Resource {
                id: id.clone(),
                name: spec.name.clone(),
            });
        });
        Ok(id)
    }

    /// Removes what a failed name attempt created, so the next suffix starts clean.
    async fn release_attempt(&self) -> Result<(), LaunchError> {
        let (containers, networks) = {
            let ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
            (ledger.containers.clone(), ledger.networks.clone())
        };
        for c in &containers {
            self.engine.remove_container(&c.id).await?;
            record(&self.ledger, |l| l.containers.retain(|r| r.id != c.id));
        }
        for n in &networks {
            remove_network_when_free(&self.engine, &n.id).await?;
            record(&self.ledger, |l| l.networks.retain(|r| r.id != n.id));
        }
        Ok(())
    }

    /// Proxy, then agent, on networks that exist (SPEC §6 Order, steps 4-5).
    /// The agent container is created and provisioned while the proxy gets
    /// ready (it needs only the proxy's address), and started once it is.
    async fn start_bottle(
        &self,
        names: &Names,
        (internal_id, egress_id): (String, String),
    ) -> Result<Started, Attempt> {
        let provision = if names.proxy == self.plan.names.proxy {
            self.plan.provision.clone()
        } else {
            provision::build(&self.plan.spec, &names.proxy, &self.plan.container_home)
                .map_err(LaunchError::from)?
        };
        let prompt_file = provision.prompt_file.clone();
        // Reading the host files (a workspace can be large) overlaps the proxy's start.
        let archive = tokio::task::spawn_blocking(move || {
            super::archive::tar_archive(&provision).map_err(|e| LaunchError::Archive(e.to_string()))
        });
        let clock = Instant::now();
        let proxy_id = self.launch_proxy(names, &internal_id, &egress_id).await?;
        let proxy_address = self.proxy_address(names, &proxy_id, &internal_id).await?;
        let agent = async {
            let archive = archive
                .await
                .map_err(|e| LaunchError::Task(e.to_string()))??;
            self.create_agent(names, &internal_id, &proxy_address, archive)
                .await
        };
        let (ready, agent_id) =
            futures_util::join!(self.wait_until_ready(&names.proxy, &proxy_id), agent);
        ready?;
        let agent_id = agent_id?;
        tracing::debug!("proxy `{}` ready in {:?}", names.proxy, clock.elapsed());
        self.start_agent(names, &agent_id).await?;
        tracing::debug!("agent `{}` started in {:?}", names.agent, clock.elapsed());
        Ok(Started {
            names: names.clone(),
            agent_id,
            prompt_file,
        })
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, Attempt> {
        self.check_cancelled()?;
        let id = self
            .engine
            .create_container(spec)
            .await
            .map_err(taken_or_failed)?;
        record(&self.ledger, |l| {
            l.containers.push(Resource {
                id: id.clone(),
                name: spec.name.clone(),
            });
        });
        Ok(id)
    }

    /// Creates the proxy on the internal network, puts its config in place,
    /// connects it to the egress network and starts it; returns its ID.
    async fn launch_proxy(
        &self,
        names: &Names,
        internal_id: &str,
        egress_id: &str,
    ) -> Result<String, Attempt> {
        let spec = proxy_container_spec(&self.plan, names, internal_id);
        let id = self.create_container(&spec).await?;
        self.check_cancelled()?;
        let config = proxy_config_archive(&self.plan.pipelock_yaml)?;
        self.engine.upload_archive(&id, "/", config).await?;
        self.check_cancelled()?;
        self.engine.connect_network(egress_id, &id).await?;
        self.check_cancelled()?;
        self.engine.start_container(&id).await?;
        Ok(id)
    }

    /// The proxy's address on the internal network, assigned when it started.
    async fn proxy_address(
        &self,
        names: &Names,
        id: &str,
        internal_id: &str,
    ) -> Result<String, LaunchError> {
        let status = self.engine.inspect_container(id).await?;
        status
            .addresses
            .get(internal_id)
            .or_else(|| status.addresses.get(&names.internal_network))
            .cloned()
            .ok_or_else(|| LaunchError::ProxyNoAddress {
                name: names.proxy.clone(),
                network: names.internal_network.clone(),
            })
    }

    async fn wait_until_ready(&self, name: &str, id: &str) -> Result<(), LaunchError> {
        let spinner = self.progress.then(|| {
            let bar = indicatif::ProgressBar::new_spinner()
                .with_message(format!("waiting for the proxy `{name}`"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        let result = tokio::select! {
            ready = self.probe_until_ready(name, id) => ready,
            () = self.cancelled() => Err(LaunchError::Cancelled),
        };
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        result
    }

    /// Runs the image's own health command until it passes. Probing on
    /// demand costs nothing once the proxy is up, where a short health-check
    /// interval would run it several times a second for the whole session.
    async fn probe_until_ready(&self, name: &str, id: &str) -> Result<(), LaunchError> {
        let started = Instant::now();
        loop {
            let status = self.engine.inspect_container(id).await?;
            if !status.running {
                return Err(LaunchError::ProxyExited {
                    name: name.to_owned(),
                    state: status.state.clone(),
                    exit_code: status.exit_code.unwrap_or(-1),
                    logs: self.log_tail(id).await,
                });
            }
            let probe = self
                .engine
                .exec(id, PROXY_HEALTH_COMMAND.map(str::to_owned).to_vec())
                .await;
            match probe {
                Ok(out) if out.exit_code == 0 => return Ok(()),
                Ok(out) => tracing::debug!(exit = out.exit_code, "proxy not ready yet"),
                // Exiting between the inspect and the exec: the next inspect says so.
                Err(e) => tracing::debug!("proxy probe failed: {e}"),
            }
            if started.elapsed() >= self.timeouts.proxy_ready {
                return Err(LaunchError::ProxyTimeout {
                    name: name.to_owned(),
                    seconds: self.timeouts.proxy_ready.as_secs(),
                    logs: self.log_tail(id).await,
                });
            }
            tokio::time::sleep(PROXY_POLL_INTERVAL).await;
        }
    }

    /// The container's last log lines, indented under an error; empty when there are none.
    async fn log_tail(&self, id: &str) -> String {
        match self.engine.logs_tail(id, PROXY_LOG_LINES).await {
            Ok(text) if !text.trim().is_empty() => {
                let mut out = String::from("; its last log lines:");
                for line in text.lines() {
                    out.push_str("\n    | ");
                    out.push_str(line);
                }
                out
            }
            Ok(_) => String::new(),
            Err(e) => format!("; its logs could not be read: {e}"),
        }
    }

    /// Creates the agent container on the internal network only and
    /// provisions it; returns its ID.
    async fn create_agent(
        &self,
        names: &Names,
        internal_id: &str,
        proxy_address: &str,
        archive: Vec<u8>,
    ) -> Result<String, Attempt> {
        let spec = agent_container_spec(&self.plan, names, internal_id, proxy_address);
        let id = match self.create_container(&spec).await {
            Err(Attempt::NameTaken) if names.pinned => {
                return Err(Attempt::Failed(LaunchError::PinnedNameTaken {
                    name: names.agent.clone(),
                }));
            }
            other => other?,
        };
        self.check_cancelled()?;
        self.engine.upload_archive(&id, "/", archive).await?;
        Ok(id)
    }

    async fn start_agent(&self, names: &Names, id: &str) -> Result<(), Attempt> {
        self.check_cancelled()?;
        let runtime_failed = |detail: String| {
            Attempt::Failed(match self.plan.runtime.name() {
                Some(runtime) => LaunchError::RuntimeFailed {
                    name: names.agent.clone(),
                    runtime: runtime.to_owned(),
                    detail,
                },
                None => LaunchError::Engine(EngineError::new(
                    ErrorKind::Other,
                    format!("start container `{}`", names.agent),
                    detail,
                )),
            })
        };
        match tokio::time::timeout(self.timeouts.agent_start, self.engine.start_container(id)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(runtime_failed(e.detail)),
            Err(_) => {
                return Err(runtime_failed(format!(
                    "no answer within {} s",
                    self.timeouts.agent_start.as_secs()
                )));
            }
        }
        let status = self.engine.inspect_container(id).await?;
        if !status.running {
            if let Some(error) = status.error.clone() {
                return Err(runtime_failed(error));
            }
            return Err(Attempt::Failed(LaunchError::AgentExited {
                name: names.agent.clone(),
                state: status.state.clone(),
                exit_code: status.exit_code.unwrap_or(-1),
                logs: self.log_tail(id).await,
            }));
        }
        Ok(())
    }
}

fn proxy_url(names: &Names) -> String {
    format!("http://{}:{}", names.proxy, provision::PROXY_PORT)
}

pub(crate) fn proxy_container_spec(
    plan: &SessionPlan,
    names: &Names,
    internal_id: &str,
) -> ContainerSpec {
    ContainerSpec {
        name: names.proxy.clone(),
        image: plan.proxy_image.clone(),
        user: None,
        entrypoint: None,
        cmd: Some(vec![
            "run".to_owned(),
            "--config".to_owned(),
            format!("/{PROXY_CONFIG_PATH}"),
        ]),
        working_dir: None,
        env: Vec::new(),
        labels: plan.owner.labels(Role::Proxy),
        network: internal_id.to_owned(),
        extra_hosts: Vec::new(),
        dns: Vec::new(),
        // The proxy never runs under runsc: it is ours, not the agent's.
        runtime: None,
        init: false,
        security_opt: vec!["no-new-privileges".to_owned()],
        cap_drop: vec!["ALL".to_owned()],
        pids_limit: Some(PIDS_LIMIT),
    }
}

pub(crate) fn agent_container_spec(
    plan: &SessionPlan,
    names: &Names,
    internal_id: &str,
    proxy_address: &str,
) -> ContainerSpec {
    let env = agent_env::container_env(&plan.spec.env, &plan.container_home, &proxy_url(names));
    ContainerSpec {
        name: names.agent.clone(),
        image: plan.image.reference().to_owned(),
        user: Some(CONTAINER_USER.to_owned()),
        // Keeps the container alive for `docker exec`, whatever the image's
        // own entrypoint would do.
        entrypoint: Some(vec!["sleep".to_owned(), "infinity".to_owned()]),
        cmd: None,
        working_dir: None,
        env,
        labels: plan.owner.labels(Role::Agent),
        network: internal_id.to_owned(),
        // The proxy by address from /etc/hosts: no resolver is needed to find it.
        extra_hosts: vec![format!("{}:{proxy_address}", names.proxy)],
        dns: vec![AGENT_DNS.to_owned()],
        runtime: plan.runtime.name().map(str::to_owned),
        init: true,
        security_opt: vec!["no-new-privileges".to_owned()],
        cap_drop: vec!["ALL".to_owned()],
        pids_limit: Some(PIDS_LIMIT),
    }
}

/// The proxy config as a tar rooted at `/`, readable by the proxy's user.
pub(crate) fn proxy_config_archive(yaml: &str) -> Result<Vec<u8>, LaunchError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, PROXY_CONFIG_PATH, yaml.as_bytes())
        .and_then(|()| builder.into_inner())
        .map_err(|e| LaunchError::Archive(e.to_string()))
}

/// The `docker exec` argument list that runs Claude (SPEC §6 "Running
/// Claude"). Each of `exec_env` is passed as `-e NAME` alone: its value
/// reaches the CLI through its environment ([`claude_command`]).
pub(crate) fn exec_args(
    container: &str,
    container_home: &str,
    prompt_file: Option<&str>,
    remote_control: bool,
    claude_args: &[String],
    tty: bool,
    exec_env: &[EnvPair],
) -> Vec<String> {
    // `-i` always: piped stdin reaches Claude; `-t` only on a real terminal.
    let mut argv: Vec<String> = vec!["exec".into(), "-i".into()];
    if tty {
        argv.push("-t".into());
    }
    argv.extend([
        "--detach-keys".into(),
        DETACH_KEYS.into(),
        "-u".into(),
        CONTAINER_USER.into(),
        "-w".into(),
        format!("{}/workspace", container_home.trim_end_matches('/')),
    ]);
    for pair in exec_env {
        argv.push("-e".into());
        argv.push(pair.name.clone());
    }
    argv.extend([container.into(), "claude".into()]);
    if remote_control {
        argv.push("remote-control".into());
    }
    if let Some(prompt) = prompt_file {
        argv.push("--append-system-prompt-file".into());
        argv.push(prompt.into());
    }
    argv.extend(claude_args.iter().cloned());
    argv
}

/// The docker CLI running `argv` (from [`exec_args`]) on the daemon at
/// `endpoint`, with the values of `exec_env` in its environment for its
/// `-e NAME` arguments to pick up.
pub(crate) fn claude_command(
    endpoint: &str,
    argv: &[String],
    exec_env: &[EnvPair],
) -> tokio::process::Command {
    let mut command = super::endpoint::docker_command(endpoint);
    command.args(argv).envs(agent_env::exposed(exec_env));
    command
}

#[derive(Debug, thiserror::Error)]
#[error(
    "teardown left resources behind:{}\n  hint: run `claude-bottle cleanup` to remove them",
    failures.iter().map(|f| format!("\n  - {f}")).collect::<String>()
)]
pub(crate) struct TeardownError {
    pub failures: Vec<String>,
}

/// Removes every resource of the session: the ledger's and any carrying the
/// session's label. Containers first (they hold the network attachments),
/// then networks by ID.
pub(crate) async fn teardown<E: Engine>(
    engine: &E,
    ledger: &SharedLedger,
    session: &str,
) -> Result<(), TeardownError> {
    let filter: LabelFilter = vec![(LABEL_SESSION.to_owned(), session.to_owned())];
    let mut failures = Vec::new();
    let (containers, networks) = {
        let ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
        (ledger.containers.clone(), ledger.networks.clone())
    };
    let (found_containers, found_networks) = futures_util::join!(
        engine.list_containers(filter.clone()),
        engine.list_networks(filter)
    );

    let mut doomed: Vec<Resource> = containers.into_iter().rev().collect();
    match found_containers {
        Ok(found) => {
            for c in found {
                if !doomed.iter().any(|d| d.id == c.id) {
                    doomed.push(Resource {
                        id: c.id,
                        name: c.name,
                    });
                }
            }
        }
        Err(e) => failures.push(e.to_string()),
    }
    let removals = doomed
        .iter()
        .map(|c| async move { (c, engine.remove_container(&c.id).await) });
    for (c, result) in futures_util::future::join_all(removals).await {
        match result {
            Ok(()) => {
                tracing::debug!("removed container `{}`", c.name);
                record(ledger, |l| l.containers.retain(|r| r.id != c.id));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }

    let mut doomed: Vec<Resource> = networks;
    match found_networks {
        Ok(found) => {
            for n in found {
                if !doomed.iter().any(|d| d.id == n.id) {
                    doomed.push(Resource {
                        id: n.id,
                        name: n.name,
                    });
                }
            }
        }
        Err(e) => failures.push(e.to_string()),
    }
    let removals = doomed
        .iter()
        .map(|n| async move { (n, remove_network_when_free(engine, &n.id).await) });
    for (n, result) in futures_util::future::join_all(removals).await {
        match result {
            Ok(()) => {
                tracing::debug!("removed network `{}`", n.name);
                record(ledger, |l| l.networks.retain(|r| r.id != n.id));
            }
            Err(e) => failures.push(format!("{e} (network `{}`)", n.name)),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(TeardownError { failures })
    }
}

/// A network still lists an endpoint for a moment after its container is
/// force-removed on some daemons; a few short retries absorb that. A
/// container this session did not attach keeps it busy, and that is reported.
async fn remove_network_when_free<E: Engine>(engine: &E, id: &str) -> Result<(), EngineError> {
    let mut tries = 0;
    loop {
        match engine.remove_network(id).await {
            Err(e) if e.detail.contains("active endpoints") && tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A session from `launch` to `close`.
pub(crate) struct Session<E: Engine> {
    engine: E,
    plan: Arc<SessionPlan>,
    ledger: SharedLedger,
    cancel: watch::Sender<bool>,
    task: Option<JoinHandle<Result<Started, LaunchError>>>,
    started: Option<Started>,
    /// Why bring-up failed, kept so a second `start` reports it again.
    failed: Option<String>,
    scratch: Option<tempfile::TempDir>,
    progress: bool,
    timeouts: Timeouts,
    closed: bool,
}

impl<E: Engine> Session<E> {
    pub fn new(engine: E, mut plan: SessionPlan, progress: bool) -> Self {
        let scratch = plan.scratch.take();
        let (cancel, _) = watch::channel(false);
        Self {
            engine,
            plan: Arc::new(plan),
            ledger: SharedLedger::default(),
            cancel,
            task: None,
            started: None,
            failed: None,
            scratch,
            progress,
            timeouts: Timeouts::default(),
            closed: false,
        }
    }

    #[cfg(test)]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub fn plan(&self) -> &SessionPlan {
        &self.plan
    }

    #[cfg(test)]
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn started(&self) -> Option<&Started> {
        self.started.as_ref()
    }

    /// Creates, provisions and starts the bottle. Safe to drop at any await.
    pub async fn start(&mut self) -> Result<(), BackendError> {
        if self.started.is_some() {
            return Ok(());
        }
        if self.closed {
            return Err(BackendError::new("the bottle was already torn down"));
        }
        if let Some(message) = &self.failed {
            return Err(BackendError::new(message.clone()));
        }
        let task = self.task.get_or_insert_with(|| {
            let bring_up = BringUp {
                engine: self.engine.clone(),
                plan: Arc::clone(&self.plan),
                ledger: Arc::clone(&self.ledger),
                cancel: self.cancel.subscribe(),
                progress: self.progress,
                timeouts: self.timeouts,
            };
            tokio::spawn(bring_up.run())
        });
        let outcome = task.await;
        self.task = None;
        match outcome {
            Ok(Ok(started)) => {
                tracing::debug!(container = %started.names.agent, "bottle started");
                self.started = Some(started);
                Ok(())
            }
            Ok(Err(err)) => {
                let err = BackendError::from(err);
                self.failed = Some(err.message.clone());
                Err(err)
            }
            Err(join) => {
                let err = BackendError::new(LaunchError::Task(join.to_string()).to_string());
                self.failed = Some(err.message.clone());
                Err(err)
            }
        }
    }

    fn require_started(&self) -> Result<&Started, BackendError> {
        self.started
            .as_ref()
            .ok_or_else(|| BackendError::new("the bottle is not running"))
    }

    pub async fn exec_claude(&mut self, args: &[String], tty: bool) -> Result<i32, BackendError> {
        let started = self.require_started()?;
        let exec_env = agent_env::exec_env(&self.plan.spec.env);
        let argv = exec_args(
            &started.names.agent,
            &self.plan.container_home,
            started.prompt_file.as_deref(),
            self.plan.spec.remote_control,
            args,
            tty,
            &exec_env,
        );
        tracing::debug!(?argv, "running Claude");
        // `docker exec -t` puts the terminal in raw mode; if this future is
        // dropped on a signal, the CLI is killed before it can restore it.
        let _terminal = tty.then(crate::term::TerminalModeGuard::save).flatten();
        // The CLI must talk to the daemon the session was made on.
        let status = claude_command(self.engine.endpoint(), &argv, &exec_env)
            .stdin(std::process::Stdio::inherit())
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| {
                BackendError::new(format!(
                    "could not run `docker exec`: {e}\n  hint: claude-bottle runs Claude through the docker CLI; install it and put it on PATH"
                ))
            })?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    pub async fn cp_in(&mut self, host: &Path, container: &str) -> Result<(), BackendError> {
        let agent_id = self.require_started()?.agent_id.clone();
        let metadata = std::fs::metadata(host)
            .map_err(|e| BackendError::new(format!("could not read `{}`: {e}", host.display())))?;
        let source = if metadata.is_dir() {
            Source::HostTree(host.to_path_buf())
        } else {
            Source::HostFile(host.to_path_buf())
        };
        let mode = if metadata.is_dir() {
            0o755
        } else {
            std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777
        };
        let set = ProvisionSet {
            items: vec![Item {
                dest: container.to_owned(),
                mode,
                source,
            }],
            dirs: Vec::new(),
            prompt_file: None,
        };
        let archive = tokio::task::spawn_blocking(move || super::archive::tar_archive(&set))
            .await
            .map_err(|e| BackendError::new(e.to_string()))?
            .map_err(|e| {
                BackendError::new(format!("could not package `{}`: {e}", host.display()))
            })?;
        self.engine
            .upload_archive(&agent_id, "/", archive)
            .await
            .map_err(|e| BackendError::new(e.to_string()))
    }

    /// Stops an unfinished bring-up and removes everything. Idempotent.
    pub async fn close(&mut self) -> Result<(), BackendError> {
        if self.closed {
            return Ok(());
        }
        let _ = self.cancel.send(true);
        if let Some(mut task) = self.task.take() {
            // The task stops at its next step; give its request in flight
            // time to be answered and recorded.
            if tokio::time::timeout(self.timeouts.drain, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let clock = Instant::now();
        teardown(&self.engine, &self.ledger, &self.plan.owner.session)
            .await
            .map_err(|e| BackendError::new(e.to_string()))?;
        tracing::debug!("torn down in {:?}", clock.elapsed());
        if let Some(scratch) = self.scratch.take() {
            let path = scratch.path().to_path_buf();
            scratch.close().map_err(|e| {
                BackendError::new(format!(
                    "could not remove the scratch directory `{}`: {e}",
                    path.display()
                ))
            })?;
        }
        self.started = None;
        self.closed = true;
        Ok(())
    }
}

impl<E: Engine> Drop for Session<E> {
    /// The backstop when `close` was not called: the same teardown, on a
    /// thread of its own with a fresh connection, since this may run inside
    /// (or after) the async runtime that made the session.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let _ = self.cancel.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let engine = self.engine.clone();
        let ledger = Arc::clone(&self.ledger);
        let session = self.plan.owner.session.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("claude-bottle-teardown".into())
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            let engine = engine.reconnect().await.map_err(|e| e.to_string())?;
                            teardown(&engine, &ledger, &session)
                                .await
                                .map_err(|e| e.to_string())
                        })
                    });
                let _ = done_tx.send(outcome);
            });
        if let Err(e) = spawned {
            tracing::error!(
                "could not tear the bottle down: {e}\n  hint: run `claude-bottle cleanup`"
            );
            return;
        }
        match done_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(_) => tracing::error!(
                "teardown did not finish within 60 s\n  hint: run `claude-bottle cleanup`"
            ),
        }
    }
}
