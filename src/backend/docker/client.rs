//! The Docker Engine API, reduced to the operations a session needs, behind
//! the [`Engine`] trait so the launch sequence can be tested with a recording
//! fake. [`BollardEngine`] is the real implementation.
//!
//! The request and reply types here are our own plain data, not bollard's:
//! they say only what the backend decides (and keep env values secret until
//! the request body is built), and tests compare them directly.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions, KillContainerOptions,
    ListContainersOptions, ListNetworksOptions, LogsOptions, RemoveContainerOptions,
    RenameContainerOptions, UploadToContainerOptions,
};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use secrecy::{ExposeSecret, SecretString};

use super::endpoint::docker_endpoint;
use crate::core::agent_env::EnvPair;
use crate::diagnostic::Diagnostic;
use crate::printer::Printer;

/// A tar archive for [`Engine::upload_archive`], in chunks read as they
/// are sent.
pub(crate) type TarStream = BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// A tar archive already in memory (a small config file) as a [`TarStream`].
pub(crate) fn whole_tar(tar: Vec<u8>) -> TarStream {
    futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) }).boxed()
}

/// What went wrong, by the one distinction callers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// No answer from the daemon at all.
    Unreachable,
    /// The name is taken (HTTP 409 on create).
    Conflict,
    /// The object does not exist (HTTP 404).
    NotFound,
    Other,
}

/// One failed Engine API operation, worded for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineError {
    pub kind: ErrorKind,
    /// What was being done, e.g. "create network `x`".
    pub operation: String,
    /// The daemon's message or the transport error.
    pub detail: String,
    /// The daemon address, for unreachable errors.
    pub endpoint: String,
    /// What the user can do, beyond what the kind of error suggests.
    pub hints: Vec<String>,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Unreachable => write!(
                f,
                "could not reach the Docker daemon at `{}` to {}: {}",
                self.endpoint, self.operation, self.detail
            ),
            _ => write!(f, "could not {}: {}", self.operation, self.detail),
        }
    }
}

impl std::error::Error for EngineError {}

impl Diagnostic for EngineError {
    fn hints(&self) -> Vec<String> {
        match self.kind {
            ErrorKind::Unreachable => {
                let mut hints = vec![
                    "start the Docker daemon, or point `DOCKER_HOST` at a running one".to_owned(),
                ];
                hints.extend(self.hints.iter().cloned());
                hints
            }
            _ => self.hints.clone(),
        }
    }
}

impl EngineError {
    pub fn new(kind: ErrorKind, operation: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            operation: operation.into(),
            detail: detail.into(),
            endpoint: docker_endpoint(),
            hints: Vec::new(),
        }
    }

    /// A call that got no answer within `limit`.
    pub fn timed_out(operation: impl Into<String>, limit: std::time::Duration) -> Self {
        Self::new(
            ErrorKind::Other,
            operation,
            format!("no answer within {} s", limit.as_secs()),
        )
    }
}

pub(crate) type Labels = BTreeMap<String, String>;

/// A network to create. Creation always asks the daemon for a duplicate-name check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkSpec {
    pub name: String,
    /// No route out (`--internal`).
    pub internal: bool,
    /// Driver options, e.g. `com.docker.network.bridge.inhibit_ipv4`.
    pub options: BTreeMap<String, String>,
    pub labels: Labels,
    /// The IPv4 subnet and its gateway, chosen by the tool; none leaves
    /// the choice to the daemon's default address pools.
    pub ipam: Option<Ipam>,
}

/// An explicit IPAM configuration: one IPv4 subnet (CIDR) and its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ipam {
    pub subnet: String,
    pub gateway: String,
}

/// A container to create. `Debug` shows env names only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub user: Option<String>,
    /// Replaces the image's entrypoint (and with it its command) when set.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub env: Vec<EnvPair>,
    pub labels: Labels,
    /// The one network it is created on, or `container:<id>` to share that
    /// container's network namespace (see [`ContainerSpec::shares_network`]).
    pub network: String,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub runtime: Option<String>,
    pub init: bool,
    pub security_opt: Vec<String>,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub pids_limit: Option<i64>,
    /// No new user namespaces for its processes. Docker's default seccomp
    /// profile refuses them already; on Podman it takes a profile of ours
    /// (`seccomp.rs`).
    pub no_user_namespaces: bool,
}

/// The `network` of a container that joins another's network namespace.
pub(crate) const SHARED_NETWORK_PREFIX: &str = "container:";

impl ContainerSpec {
    /// Whether it joins another container's network namespace instead of a network.
    pub fn shares_network(&self) -> bool {
        self.network.starts_with(SHARED_NETWORK_PREFIX)
    }

    /// Whether it gets an endpoint on a network: not in another container's
    /// namespace, nor with no network (Podman refuses an endpoint for `none`).
    fn has_endpoint(&self) -> bool {
        !self.shares_network() && self.network != "none"
    }
}

impl fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("user", &self.user)
            .field("entrypoint", &self.entrypoint)
            .field("cmd", &self.cmd)
            .field("working_dir", &self.working_dir)
            .field("env", &self.env)
            .field("labels", &self.labels)
            .field("network", &self.network)
            .field("extra_hosts", &self.extra_hosts)
            .field("dns", &self.dns)
            .field("runtime", &self.runtime)
            .field("init", &self.init)
            .field("security_opt", &self.security_opt)
            .field("cap_drop", &self.cap_drop)
            .field("cap_add", &self.cap_add)
            .field("pids_limit", &self.pids_limit)
            .field("no_user_namespaces", &self.no_user_namespaces)
            .finish()
    }
}

/// The parts of `inspect` the backend reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerStatus {
    pub running: bool,
    /// `created`, `running`, `exited`, ...
    pub state: String,
    pub exit_code: Option<i64>,
    /// The runtime's own error, e.g. when an OCI runtime failed to start it.
    pub error: Option<String>,
    /// IPv4 address by network name and by network ID.
    pub addresses: BTreeMap<String, String>,
    pub runtime: Option<String>,
}

/// One container found by `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub state: String,
    /// Unix seconds.
    pub created: i64,
    pub labels: Labels,
}

/// One network found by `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub labels: Labels,
    /// When the daemon made it (RFC 3339, as the daemon writes it).
    pub created: String,
    /// Its IPAM subnets (CIDR), IPv4 and IPv6.
    pub subnets: Vec<String>,
}

/// A sort key for the daemon's RFC 3339 timestamps, whose fractions have
/// their trailing zeros cut: `...:20.5Z` must sort after `...:20.123Z`.
pub(crate) fn created_key(created: &str) -> (String, String) {
    let (whole, fraction) = created.split_once('.').unwrap_or((created, ""));
    let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
    let whole = whole
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .to_owned();
    (whole, format!("{digits:0<9}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecOutput {
    pub exit_code: i64,
    /// stdout and stderr interleaved.
    pub output: String,
}

/// What [`Engine::exec_capped`] saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ExecCapture {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// The parts of the daemon's `/version` and `/info` that `doctor` reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DaemonInfo {
    /// Podman's `/version` lists a component named `Podman Engine`.
    pub podman: bool,
    /// Podman runs as an unprivileged user (its storage is not under
    /// `/var/lib`).
    pub rootless: bool,
    /// The engine's own version (Podman's, for Podman).
    pub version: String,
    pub api_version: String,
    /// Names of the runtimes a container can be given (`HostConfig.Runtime`):
    /// the registered ones on Docker, none on Podman.
    pub runtimes: Vec<String>,
    /// `DockerRootDir`, on the daemon's host.
    pub root_dir: Option<String>,
    /// The daemon's containers are under cgroup v1, where rootless Podman
    /// can set no resource limit.
    pub cgroup_v1: bool,
    /// The storage driver (`overlay`, `vfs`, ...), when the daemon says.
    pub storage_driver: Option<String>,
}

/// Filters for `list_*`: every `key=value` label must match.
pub(crate) type LabelFilter = Vec<(String, String)>;

/// The Engine API operations a session uses. `Clone` is cheap (a shared
/// connection) so a bring-up task can own one.
pub(crate) trait Engine: Clone + Send + Sync + 'static {
    /// The daemon address this engine talks to; the docker CLI is pointed at it.
    fn endpoint(&self) -> &str;
    /// A new connection to the same daemon, for use on another async runtime
    /// (the teardown backstop in `Drop` runs on its own thread).
    fn reconnect(&self) -> impl Future<Output = Result<Self, EngineError>> + Send;
    /// What the daemon is and how it is set up.
    fn daemon_info(&self) -> impl Future<Output = Result<DaemonInfo, EngineError>> + Send;
    /// The IPv4 and IPv6 subnets of every network the daemon has.
    fn network_subnets(&self) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
    /// Names of the runtimes a container can be given (see [`DaemonInfo::runtimes`]).
    fn runtimes(&self) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool, EngineError>> + Send;
    /// The image's ID (`sha256:...`), or `None` when it is absent: what a
    /// tag names now, so a rebuilt tag is told from the image it named before.
    fn image_id(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<String>, EngineError>> + Send;
    /// Builds the built-in agent image with Claude Code
    /// `claude_code_version` under `tag`, with a progress view when the
    /// printer shows progress.
    fn build_image(
        &self,
        tag: &str,
        claude_code_version: &str,
        printer: &Printer,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Pulls `image` from its registry, with a progress view when the
    /// printer shows progress (status lines otherwise). Dropping the future
    /// abandons the pull; it creates nothing that would need removing.
    fn pull_image(
        &self,
        image: &str,
        printer: &Printer,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Returns the network's ID. A taken name is [`ErrorKind::Conflict`],
    /// except when two creations race: API 1.41's duplicate check is not
    /// atomic, so both may succeed (see `networks_named`).
    fn create_network(
        &self,
        spec: &NetworkSpec,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Removes a network by ID; one that is already gone is not an error.
    fn remove_network(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Returns the container's ID. A taken name is [`ErrorKind::Conflict`].
    fn create_container(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Extracts `tar` into the container's filesystem at `path`, sending it
    /// as it is read; an error from the stream aborts the upload.
    fn upload_archive(
        &self,
        container: &str,
        path: &str,
        tar: TarStream,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn connect_network(
        &self,
        network: &str,
        container: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn start_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Renames the container called `from` (a name, never an ID) to `to`.
    /// The daemon arbitrates: of several renames of one name, one succeeds
    /// and the others find no container of that name ([`ErrorKind::NotFound`])
    /// or one already called `to`; a `to` held by another container is
    /// [`ErrorKind::Conflict`].
    fn rename_container(
        &self,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn inspect_container(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<ContainerStatus, EngineError>> + Send;
    /// Waits until the container stops; its exit code.
    fn wait_container(&self, id: &str) -> impl Future<Output = Result<i64, EngineError>> + Send;
    /// The last `lines` lines of the container's stdout and stderr.
    fn logs_tail(
        &self,
        id: &str,
        lines: u32,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Runs `cmd` in a running container as its default user and waits for it.
    fn exec(
        &self,
        container: &str,
        cmd: Vec<String>,
    ) -> impl Future<Output = Result<ExecOutput, EngineError>> + Send;
    /// Containers in any state carrying every label of `filter`.
    fn list_containers(
        &self,
        filter: LabelFilter,
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, EngineError>> + Send;
    /// Networks carrying every label of `filter`.
    fn list_networks(
        &self,
        filter: LabelFilter,
    ) -> impl Future<Output = Result<Vec<NetworkInfo>, EngineError>> + Send;
    /// Networks named exactly `name` (there can be several: see `create_network`).
    fn networks_named(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<NetworkInfo>, EngineError>> + Send;
    /// Removes a container in any state (force); one that is already gone is not an error.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Sends `signal` (such as `SIGHUP`) to the container's main process.
    fn signal_container(
        &self,
        id: &str,
        signal: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// The bytes of one regular file in the container, through the archive API.
    fn read_file(
        &self,
        id: &str,
        path: &str,
    ) -> impl Future<Output = Result<Vec<u8>, EngineError>> + Send;
    /// The container's output as lines: what it wrote so far, then, with
    /// `follow`, every later line until the container stops.
    fn log_lines(&self, id: &str, follow: bool) -> BoxStream<'static, Result<String, EngineError>>;
    /// Runs `cmd` in a running container as its default user with `env`
    /// added, and waits for it; stdout and stderr are kept apart, and an
    /// output beyond `limit` bytes is an error.
    fn exec_capped(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        limit: usize,
    ) -> impl Future<Output = Result<ExecCapture, EngineError>> + Send;
    /// Runs `cmd` in a running container as `user`, with `input` on its
    /// stdin (then closed), and waits for it; stdout and stderr are kept
    /// apart, and an output beyond `limit` bytes is an error. The input
    /// travels only over the exec's attached stream, so it is in no
    /// configuration the engine keeps (an exec's environment is: Podman
    /// stores it on disk).
    fn exec_fed(
        &self,
        container: &str,
        cmd: Vec<String>,
        user: &str,
        input: &SecretString,
        limit: usize,
    ) -> impl Future<Output = Result<ExecCapture, EngineError>> + Send;
    /// Runs `cmd` like [`Engine::exec_capped`], but its stdout goes to the
    /// file `dest` on this host as it comes (an output beyond `limit` bytes
    /// is an error) and only its stderr is kept. Unlike the archive API,
    /// this sees what the container wrote under any runtime (gVisor keeps
    /// a container's writes inside its sandbox).
    fn exec_to_file(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        dest: &std::path::Path,
        limit: u64,
    ) -> impl Future<Output = Result<ExecCapture, EngineError>> + Send;
    /// Stops a container (SIGTERM, then SIGKILL after `grace_secs`).
    fn stop_container(
        &self,
        id: &str,
        grace_secs: i32,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Takes a container (running or not) off a network.
    fn disconnect_network(
        &self,
        network: &str,
        container: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// The real daemon, through bollard.
#[derive(Clone)]
pub(crate) struct BollardEngine {
    docker: Docker,
    endpoint: String,
    /// The daemon is Podman's Docker-compatible service: the few requests
    /// whose answers differ are shaped for it (see `list_containers`).
    podman: bool,
}

impl fmt::Debug for BollardEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BollardEngine")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl BollardEngine {
    /// Connects to the daemon named by `DOCKER_HOST` (or the default socket)
    /// and settles on the daemon's API version when it is older than bollard's.
    pub async fn connect() -> Result<Self, EngineError> {
        Self::connect_to(docker_endpoint()).await
    }

    async fn connect_to(endpoint: String) -> Result<Self, EngineError> {
        let docker = Docker::connect_with_host(&endpoint)
            .map_err(|e| classify("connect", e))?
            .with_request_modifier(ask_for_duplicate_check);
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| classify("read its version", e))?;
        let version = docker
            .version()
            .await
            .map_err(|e| classify("read its version", e))?;
        let podman = is_podman(&version);
        tracing::debug!(
            endpoint = %endpoint,
            api = %docker.client_version(),
            podman,
            "connected to the Docker daemon"
        );
        Ok(Self {
            docker,
            endpoint,
            podman,
        })
    }
}

type ExecStream = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<bollard::container::LogOutput, BollardError>> + Send,
    >,
>;

/// An exec that was started attached to its output.
struct AttachedExec {
    /// What it does, worded for errors ("run `sh -c` in container `x`").
    operation: String,
    id: String,
    /// Its stdout and stderr; empty when it could not attach.
    output: ExecStream,
    /// Its stdin, when it was asked for.
    input: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
}

/// What an attached exec gets besides its command.
#[derive(Default)]
struct ExecOptions<'a> {
    /// Added to the container's environment: only what is no secret.
    env: Vec<(String, String)>,
    /// The container's default user when `None`.
    user: Option<&'a str>,
    /// Attach its stdin too.
    stdin: bool,
}

impl BollardEngine {
    /// Starts `cmd` in `container`, attached to its stdout and stderr (and
    /// its stdin when `options` asks).
    async fn exec_attached(
        &self,
        container: &str,
        cmd: Vec<String>,
        options: ExecOptions<'_>,
    ) -> Result<AttachedExec, EngineError> {
        let operation = format!(
            "run `{}` in container `{container}`",
            cmd[..cmd.len().min(2)].join(" ")
        );
        let config = bollard::models::ExecConfig {
            cmd: Some(cmd),
            env: Some(
                options
                    .env
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            user: options.user.map(str::to_owned),
            attach_stdin: Some(options.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..bollard::models::ExecConfig::default()
        };
        let created = self
            .docker
            .create_exec(container, config)
            .await
            .map_err(|e| classify(&operation, e))?;
        let started = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| classify(&operation, e))?;
        let (output, input): (ExecStream, _) = match started {
            bollard::exec::StartExecResults::Attached { output, input } => {
                (output, options.stdin.then_some(input))
            }
            bollard::exec::StartExecResults::Detached => {
                (Box::pin(futures_util::stream::empty()), None)
            }
        };
        Ok(AttachedExec {
            operation,
            id: created.id,
            output,
            input,
        })
    }

    /// The exit code of the finished exec `id` (-1 when the daemon has none).
    async fn exec_exit_code(&self, id: &str, operation: &str) -> Result<i64, EngineError> {
        let inspected = self
            .docker
            .inspect_exec(id)
            .await
            .map_err(|e| classify(operation, e))?;
        Ok(inspected.exit_code.unwrap_or(-1))
    }
}

/// Reads an exec's `output` to its end, stdout and stderr apart; more
/// than `limit` bytes is an error.
async fn capped_output(
    operation: &str,
    mut output: ExecStream,
    limit: usize,
) -> Result<ExecCapture, EngineError> {
    let mut capture = ExecCapture::default();
    let mut seen = 0usize;
    while let Some(chunk) = output.next().await {
        let chunk = chunk.map_err(|e| classify(operation, e))?;
        seen += chunk.as_ref().len();
        if seen > limit {
            return Err(EngineError::new(
                ErrorKind::Other,
                operation,
                format!("it printed more than {limit} bytes"),
            ));
        }
        match chunk {
            bollard::container::LogOutput::StdErr { message } => {
                capture.stderr.push_str(&String::from_utf8_lossy(&message));
            }
            other => capture.stdout.push_str(&other.to_string()),
        }
    }
    Ok(capture)
}

/// API 1.41 creates a second network with a taken name unless the request
/// says `CheckDuplicate`, a field bollard's newer request type no longer has;
/// it is added to the body of network creations here.
fn ask_for_duplicate_check(request: bollard::BollardRequest) -> bollard::BollardRequest {
    if request.method() != http::Method::POST || !request.uri().path().ends_with("/networks/create")
    {
        return request;
    }
    let (parts, body) = request.into_parts();
    let http_body_util::Either::Left(full) = body else {
        return bollard::BollardRequest::from_parts(parts, body);
    };
    use http_body_util::BodyExt;
    // A `Full` body is ready at once; nothing is awaited.
    let Some(Ok(collected)) = full.collect().now_or_never() else {
        return bollard::BollardRequest::from_parts(
            parts,
            http_body_util::Either::Left(http_body_util::Full::new(bytes::Bytes::new())),
        );
    };
    let bytes = collected.to_bytes();
    let patched = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("CheckDuplicate".into(), serde_json::Value::Bool(true));
            serde_json::to_vec(&map)
                .map(bytes::Bytes::from)
                .unwrap_or(bytes)
        }
        _ => bytes,
    };
    bollard::BollardRequest::from_parts(
        parts,
        http_body_util::Either::Left(http_body_util::Full::new(patched)),
    )
}

/// The component of `/version` that names Podman.
const PODMAN_COMPONENT: &str = "Podman Engine";

fn is_podman(version: &bollard::models::SystemVersion) -> bool {
    version
        .components
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.name == PODMAN_COMPONENT))
}

/// Maps a bollard error onto the kinds callers distinguish.
fn classify(operation: &str, error: BollardError) -> EngineError {
    let (kind, detail) = match &error {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                _ => ErrorKind::Other,
            };
            (kind, message.trim().to_owned())
        }
        BollardError::SocketNotFoundError(path) => {
            (ErrorKind::Unreachable, format!("no socket at `{path}`"))
        }
        BollardError::HyperLegacyError { .. }
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError => (ErrorKind::Unreachable, error_chain(&error)),
        BollardError::UnsupportedURISchemeError { uri } => (
            ErrorKind::Unreachable,
            format!("unsupported address `{uri}` (expected unix:// or tcp://)"),
        ),
        _ => (ErrorKind::Other, error_chain(&error)),
    };
    EngineError::new(kind, operation, detail)
}

/// The error and its causes on one line ("connection refused" sits deep in hyper's chain).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `result`'s value, or `absent` when the daemon says the object is not
/// there (a removal that finds nothing to remove has done its job).
fn unless_not_found<T>(
    result: Result<T, BollardError>,
    operation: &str,
    absent: T,
) -> Result<T, EngineError> {
    match result {
        Ok(value) => Ok(value),
        Err(e) => {
            let err = classify(operation, e);
            if err.kind == ErrorKind::NotFound {
                Ok(absent)
            } else {
                Err(err)
            }
        }
    }
}

fn network_info(network: bollard::models::Network) -> NetworkInfo {
    NetworkInfo {
        id: network.id.unwrap_or_default(),
        name: network.name.unwrap_or_default(),
        labels: to_labels(network.labels),
        created: network.created.unwrap_or_default(),
        subnets: network
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .collect(),
    }
}

/// How many times a read that met Podman's network inspection race is made
/// before its error stands.
const INSPECTION_RACE_ATTEMPTS: u32 = 5;

/// Podman 4.3 fails a container listing or inspection with "network
/// inspection mismatch: asked to join 1 network(s) ... but have information
/// on 2 network(s): internal libpod error" when a container joins or leaves
/// a network while it is read. The read is only a snapshot, so it is made
/// again, a bounded number of times and a little later each time.
async fn retry_inspection_race<T, F, Fut>(mut read: F) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut attempt = 1;
    loop {
        match read().await {
            Err(error)
                if attempt < INSPECTION_RACE_ATTEMPTS
                    && error.kind == ErrorKind::Other
                    && error.detail.contains("network inspection mismatch") =>
            {
                tracing::debug!(attempt, %error, "met Podman's network inspection race; reading again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Podman's container list, read again while it meets the network
/// inspection race ([`retry_inspection_race`]).
async fn podman_list_containers(
    endpoint: &str,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Vec<ContainerInfo>, EngineError> {
    retry_inspection_race(|| podman_list_containers_once(endpoint, filters)).await
}

/// `GET /containers/json` of Podman's Docker API, read without bollard.
/// Podman reports a container that exited but is not cleaned up yet as
/// `stopped`, a state the Docker API does not have: bollard refuses the
/// whole list then, and a filter on the state cannot leave it out (Podman's
/// `exited` matches it). So the list is read here, the state as text.
async fn podman_list_containers_once(
    endpoint: &str,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Vec<ContainerInfo>, EngineError> {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Listed {
        id: String,
        #[serde(default)]
        names: Vec<String>,
        #[serde(default)]
        state: String,
        #[serde(default)]
        created: i64,
        #[serde(default)]
        labels: Option<HashMap<String, String>>,
    }

    let operation = "list containers";
    let fail = |kind, detail: String| EngineError::new(kind, operation, detail);
    let filters =
        serde_json::to_string(filters).map_err(|e| fail(ErrorKind::Other, e.to_string()))?;
    let query: String =
        percent_encoding::utf8_percent_encode(&filters, percent_encoding::NON_ALPHANUMERIC)
            .collect();
    let request = http::Request::get(format!("/v1.41/containers/json?all=1&filters={query}"))
        .header(http::header::HOST, "podman")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| fail(ErrorKind::Other, e.to_string()))?;
    let unreachable = |e: std::io::Error| fail(ErrorKind::Unreachable, e.to_string());
    let response = if let Some(path) = endpoint.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(unreachable)?;
        send(TokioIo::new(stream), request).await
    } else {
        let address = endpoint
            .strip_prefix("tcp://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .unwrap_or(endpoint);
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(unreachable)?;
        send(TokioIo::new(stream), request).await
    }
    .map_err(|e| fail(ErrorKind::Unreachable, error_chain(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(ErrorKind::Unreachable, error_chain(&e)))?
        .to_bytes();
    if !status.is_success() {
        return Err(fail(
            ErrorKind::Other,
            format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
        ));
    }
    let listed: Vec<Listed> =
        serde_json::from_slice(&body).map_err(|e| fail(ErrorKind::Other, e.to_string()))?;
    Ok(listed
        .into_iter()
        .map(|c| ContainerInfo {
            id: c.id,
            name: c
                .names
                .into_iter()
                .next()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            state: if c.state == "stopped" {
                "exited".to_owned()
            } else {
                c.state
            },
            created: c.created,
            labels: to_labels(c.labels),
        })
        .collect())
}

/// One HTTP/1 request on a fresh connection.
async fn send<T>(
    io: T,
    request: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    sender.send_request(request).await
}

fn label_filters(filter: &LabelFilter) -> HashMap<String, Vec<String>> {
    let labels = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
    HashMap::from([("label".to_owned(), labels)])
}

fn to_hash_map(labels: &Labels) -> HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn to_labels(labels: Option<HashMap<String, String>>) -> Labels {
    labels.unwrap_or_default().into_iter().collect()
}

pub(crate) fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let env = spec
        .env
        .iter()
        .map(|pair| format!("{}={}", pair.name, pair.value.expose_secret()))
        .collect();
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        user: spec.user.clone(),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        working_dir: spec.working_dir.clone(),
        env: Some(env),
        labels: Some(to_hash_map(&spec.labels)),
        host_config: Some(HostConfig {
            network_mode: Some(spec.network.clone()),
            extra_hosts: non_empty(&spec.extra_hosts),
            dns: non_empty(&spec.dns),
            runtime: spec.runtime.clone(),
            init: Some(spec.init),
            security_opt: non_empty(&spec.security_opt),
            cap_drop: non_empty(&spec.cap_drop),
            cap_add: non_empty(&spec.cap_add),
            pids_limit: spec.pids_limit,
            ..HostConfig::default()
        }),
        networking_config: spec.has_endpoint().then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings::default(),
            )])),
        }),
        ..ContainerCreateBody::default()
    }
}

/// Log chunks as whole lines. The daemon frames output by the writes the
/// process made and splits records over 16 KiB, so a chunk need not end at
/// a newline or a character boundary, and a chunk of one stream can come
/// between two halves of a line of another. Each stream (stdout, stderr,
/// stdin, console) keeps its own bytes; a line is split off at `\n`, loses
/// a `\r` before it and is decoded on its own, lossily. At the end each
/// stream's unfinished last line comes too, stdout's first. An error ends
/// the lines: those completed before it come, then the error, then nothing;
/// an unfinished line is dropped then, as it may be cut short.
fn lines_of(
    chunks: impl futures_util::Stream<Item = Result<bollard::container::LogOutput, EngineError>>
    + Send
    + 'static,
) -> impl futures_util::Stream<Item = Result<String, EngineError>> + Send + 'static {
    use bollard::container::LogOutput;
    use std::collections::VecDeque;

    /// One line's bytes without its `\n`, decoded.
    fn decode(mut line: &[u8]) -> String {
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        String::from_utf8_lossy(line).into_owned()
    }

    struct State {
        chunks: BoxStream<'static, Result<LogOutput, EngineError>>,
        /// The unfinished line of stdout, stderr, stdin and console.
        partial: [Vec<u8>; 4],
        ready: VecDeque<Result<String, EngineError>>,
        done: bool,
    }

    let state = State {
        chunks: chunks.boxed(),
        partial: Default::default(),
        ready: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            if state.done {
                return None;
            }
            match state.chunks.next().await {
                Some(Ok(chunk)) => {
                    let (stream, bytes) = match chunk {
                        LogOutput::StdOut { message } => (0, message),
                        LogOutput::StdErr { message } => (1, message),
                        LogOutput::StdIn { message } => (2, message),
                        LogOutput::Console { message } => (3, message),
                    };
                    let partial = &mut state.partial[stream];
                    // What the stream held had no newline: look in the new bytes only.
                    let mut from = partial.len();
                    partial.extend_from_slice(&bytes);
                    let mut start = 0;
                    while let Some(at) = partial[from..].iter().position(|&b| b == b'\n') {
                        let end = from + at;
                        state.ready.push_back(Ok(decode(&partial[start..end])));
                        start = end + 1;
                        from = start;
                    }
                    partial.drain(..start);
                }
                Some(Err(e)) => {
                    state.ready.push_back(Err(e));
                    state.done = true;
                }
                None => {
                    for partial in &mut state.partial {
                        if !partial.is_empty() {
                            state.ready.push_back(Ok(decode(partial)));
                        }
                    }
                    state.done = true;
                }
            }
        }
    })
}

impl Engine for BollardEngine {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn reconnect(&self) -> Result<Self, EngineError> {
        Self::connect_to(self.endpoint.clone()).await
    }

    async fn build_image(
        &self,
        tag: &str,
        claude_code_version: &str,
        printer: &Printer,
    ) -> Result<(), EngineError> {
        super::image::build(&self.endpoint, tag, claude_code_version, printer)
            .await
            .map_err(|e| {
                let mut err = EngineError::new(
                    ErrorKind::Other,
                    format!("build the agent image `{tag}`"),
                    e.to_string(),
                );
                err.hints = e.hints();
                err
            })
    }

    async fn runtimes(&self) -> Result<Vec<String>, EngineError> {
        Ok(self.daemon_info().await?.runtimes)
    }

    async fn daemon_info(&self) -> Result<DaemonInfo, EngineError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| classify("read the daemon's version", e))?;
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| classify("read the daemon's info", e))?;
        let podman = version
            .components
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.name == PODMAN_COMPONENT));
        // Podman's Docker API lists every runtime Podman knows of, installed
        // or not, and ignores a container's `HostConfig.Runtime`: every
        // container runs under its default runtime, so none can be chosen.
        let mut runtimes: Vec<String> = if podman.is_some() {
            Vec::new()
        } else {
            info.runtimes.unwrap_or_default().into_keys().collect()
        };
        runtimes.sort();
        Ok(DaemonInfo {
            podman: podman.is_some(),
            version: podman
                .map(|c| c.version.clone())
                .or(version.version)
                .unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            // Podman's Docker API does not say whether it runs rootless; its
            // storage root does: /var/lib/containers for root, a home
            // directory for a user.
            rootless: podman.is_some()
                && info
                    .docker_root_dir
                    .as_deref()
                    .is_some_and(|dir| !dir.starts_with("/var/lib/")),
            runtimes,
            root_dir: info.docker_root_dir.filter(|d| !d.is_empty()),
            cgroup_v1: matches!(
                info.cgroup_version,
                Some(bollard::models::SystemInfoCgroupVersionEnum::_1)
            ),
            storage_driver: info.driver.filter(|d| !d.is_empty()),
        })
    }

    async fn network_subnets(&self) -> Result<Vec<String>, EngineError> {
        let all = self.list_networks(LabelFilter::new()).await?;
        Ok(all.into_iter().flat_map(|n| n.subnets).collect())
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        unless_not_found(
            self.docker.inspect_image(image).await.map(|_| true),
            &format!("inspect image `{image}`"),
            false,
        )
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        unless_not_found(
            self.docker
                .inspect_image(image)
                .await
                .map(|inspect| Some(inspect.id.unwrap_or_default())),
            &format!("inspect image `{image}`"),
            None,
        )
    }

    async fn pull_image(&self, image: &str, printer: &Printer) -> Result<(), EngineError> {
        let operation = format!("pull the image `{image}`");
        let (repository, tag) = super::pull::split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(repository),
            tag: Some(tag),
            ..CreateImageOptions::default()
        };
        let mut view = super::pull::PullView::new(image, printer);
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| match e {
                // bollard's 2-minute limit covers the wait for the reply's
                // headers, which the daemon sends once the registry answers.
                BollardError::RequestTimeoutError => EngineError::new(
                    ErrorKind::Other,
                    operation.as_str(),
                    "the daemon did not answer within 2 minutes: i/o timeout waiting for the registry",
                ),
                other => classify(&operation, other),
            })?;
            let progress = info.progress_detail.unwrap_or_default();
            view.update(&super::pull::PullEvent {
                id: info.id,
                status: info.status.unwrap_or_default(),
                current: progress.current,
                total: progress.total,
            });
        }
        Ok(())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        let operation = format!("create network `{}`", spec.name);
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".to_owned()),
            internal: Some(spec.internal),
            options: Some(
                spec.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            labels: Some(to_hash_map(&spec.labels)),
            ipam: spec.ipam.as_ref().map(|ipam| bollard::models::Ipam {
                config: Some(vec![bollard::models::IpamConfig {
                    subnet: Some(ipam.subnet.clone()),
                    gateway: Some(ipam.gateway.clone()),
                    ..bollard::models::IpamConfig::default()
                }]),
                ..bollard::models::Ipam::default()
            }),
            ..NetworkCreateRequest::default()
        };
        let created = self
            .docker
            .create_network(request)
            .await
            .map_err(|e| classify(&operation, e))?;
        Ok(created.id)
    }

    async fn remove_network(&self, id: &str) -> Result<(), EngineError> {
        unless_not_found(
            self.docker.remove_network(id).await,
            &format!("remove network `{id}`"),
            (),
        )
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let operation = format!("create container `{}`", spec.name);
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            platform: String::new(),
        };
        let mut body = create_body(spec);
        // Podman reads the profile while it creates the container: it may
        // go (when this drops) once the create has answered.
        let profile = if self.podman && spec.no_user_namespaces {
            let profile =
                super::seccomp::WrittenProfile::for_podman(&self.endpoint).map_err(|e| {
                    let mut error = EngineError::new(ErrorKind::Other, &operation, e.to_string());
                    error.hints = e.hints();
                    error
                })?;
            if let Some(host) = body.host_config.as_mut() {
                host.security_opt
                    .get_or_insert_with(Vec::new)
                    .push(format!("seccomp={}", profile.path().display()));
            }
            Some(profile)
        } else {
            None
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| classify(&operation, e))?;
        drop(profile);
        Ok(created.id)
    }

    async fn upload_archive(
        &self,
        container: &str,
        path: &str,
        tar: TarStream,
    ) -> Result<(), EngineError> {
        let options = UploadToContainerOptions {
            path: path.to_owned(),
            ..UploadToContainerOptions::default()
        };
        self.docker
            .upload_to_container(container, Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(|e| classify(&format!("copy files into container `{container}`"), e))
    }

    async fn connect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let request = NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(EndpointSettings::default()),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(|e| {
                classify(
                    &format!("connect container `{container}` to network `{network}`"),
                    e,
                )
            })
    }

    async fn rename_container(&self, from: &str, to: &str) -> Result<(), EngineError> {
        let options = RenameContainerOptions {
            name: to.to_owned(),
        };
        self.docker
            .rename_container(from, options)
            .await
            .map_err(|e| classify(&format!("rename container `{from}` to `{to}`"), e))
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| classify(&format!("start container `{id}`"), e))
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerStatus, EngineError> {
        let inspected = retry_inspection_race(|| async {
            self.docker
                .inspect_container(id, None)
                .await
                .map_err(|e| classify(&format!("inspect container `{id}`"), e))
        })
        .await?;
        let state = inspected.state.unwrap_or_default();
        let addresses = inspected
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, endpoint)| {
                let ip = endpoint.ip_address.filter(|ip| !ip.is_empty())?;
                let by_id = endpoint.network_id.map(|id| (id, ip.clone()));
                Some([Some((name, ip)), by_id])
            })
            .flatten()
            .flatten()
            .collect();
        Ok(ContainerStatus {
            running: state.running.unwrap_or(false),
            state: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".to_owned()),
            exit_code: state.exit_code,
            error: state.error.filter(|e| !e.is_empty()),
            addresses,
            runtime: inspected.host_config.and_then(|h| h.runtime),
        })
    }

    async fn wait_container(&self, id: &str) -> Result<i64, EngineError> {
        let operation = format!("wait for container `{id}`");
        let mut waits = self
            .docker
            .wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        match waits.next().await {
            Some(Ok(reply)) => Ok(reply.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(classify(&operation, e)),
            None => Err(EngineError::new(
                ErrorKind::Other,
                operation,
                "the daemon closed the wait without an exit code",
            )),
        }
    }

    async fn logs_tail(&self, id: &str, lines: u32) -> Result<String, EngineError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..LogsOptions::default()
        };
        let chunks: Vec<_> = self
            .docker
            .logs(id, Some(options))
            .try_collect()
            .await
            .map_err(|e| classify(&format!("read the logs of container `{id}`"), e))?;
        Ok(chunks.iter().map(ToString::to_string).collect())
    }

    async fn exec(&self, container: &str, cmd: Vec<String>) -> Result<ExecOutput, EngineError> {
        let mut exec = self
            .exec_attached(container, cmd, ExecOptions::default())
            .await?;
        let mut output = String::new();
        while let Some(chunk) = exec.output.next().await {
            output.push_str(&chunk.map_err(|e| classify(&exec.operation, e))?.to_string());
        }
        Ok(ExecOutput {
            exit_code: self.exec_exit_code(&exec.id, &exec.operation).await?,
            output,
        })
    }

    async fn list_containers(
        &self,
        filter: LabelFilter,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        if self.podman {
            return podman_list_containers(&self.endpoint, &label_filters(&filter)).await;
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(label_filters(&filter)),
            ..ListContainersOptions::default()
        };
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| classify("list containers", e))?;
        Ok(found
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                state: c
                    .state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".to_owned()),
                created: c.created.unwrap_or(0),
                labels: to_labels(c.labels),
            })
            .collect())
    }

    async fn list_networks(&self, filter: LabelFilter) -> Result<Vec<NetworkInfo>, EngineError> {
        // Podman's network list inspects the containers on each network.
        let found = retry_inspection_race(|| async {
            let options = ListNetworksOptions {
                filters: Some(label_filters(&filter)),
            };
            self.docker
                .list_networks(Some(options))
                .await
                .map_err(|e| classify("list networks", e))
        })
        .await?;
        Ok(found.into_iter().map(network_info).collect())
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<NetworkInfo>, EngineError> {
        let found = retry_inspection_race(|| async {
            let options = ListNetworksOptions {
                filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
            };
            self.docker
                .list_networks(Some(options))
                .await
                .map_err(|e| classify(&format!("list networks named `{name}`"), e))
        })
        .await?;
        // The daemon's name filter matches substrings.
        Ok(found
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .map(network_info)
            .collect())
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..RemoveContainerOptions::default()
        };
        unless_not_found(
            self.docker.remove_container(id, Some(options)).await,
            &format!("remove container `{id}`"),
            (),
        )
    }

    async fn signal_container(&self, id: &str, signal: &str) -> Result<(), EngineError> {
        let options = KillContainerOptions {
            signal: signal.to_owned(),
        };
        self.docker
            .kill_container(id, Some(options))
            .await
            .map_err(|e| classify(&format!("send {signal} to container `{id}`"), e))
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, EngineError> {
        let operation = format!("read `{path}` in container `{id}`");
        let options = DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        let chunks: Vec<bytes::Bytes> = self
            .docker
            .download_from_container(id, Some(options))
            .try_collect()
            .await
            .map_err(|e| classify(&operation, e))?;
        let tar = chunks.concat();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries = archive
            .entries()
            .map_err(|e| EngineError::new(ErrorKind::Other, operation.as_str(), e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| {
                EngineError::new(ErrorKind::Other, operation.as_str(), e.to_string())
            })?;
            if entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| {
                    EngineError::new(ErrorKind::Other, operation.as_str(), e.to_string())
                })?;
                return Ok(bytes);
            }
        }
        Err(EngineError::new(
            ErrorKind::NotFound,
            operation,
            "the archive holds no regular file",
        ))
    }

    async fn exec_capped(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        limit: usize,
    ) -> Result<ExecCapture, EngineError> {
        let options = ExecOptions {
            env,
            ..ExecOptions::default()
        };
        let exec = self.exec_attached(container, cmd, options).await?;
        let mut capture = capped_output(&exec.operation, exec.output, limit).await?;
        capture.exit_code = self.exec_exit_code(&exec.id, &exec.operation).await?;
        Ok(capture)
    }

    async fn exec_fed(
        &self,
        container: &str,
        cmd: Vec<String>,
        user: &str,
        input: &SecretString,
        limit: usize,
    ) -> Result<ExecCapture, EngineError> {
        use tokio::io::AsyncWriteExt;
        let options = ExecOptions {
            user: Some(user),
            stdin: true,
            ..ExecOptions::default()
        };
        let exec = self.exec_attached(container, cmd, options).await?;
        let operation = exec.operation.as_str();
        // Fed while the output is read, so neither side waits on the other.
        let feed = async {
            let Some(mut stdin) = exec.input else {
                return Err(std::io::Error::other("the exec did not attach its stdin"));
            };
            let written = stdin.write_all(input.expose_secret().as_bytes()).await;
            // Closing it is the end of the input; it is closed even after a
            // failed write, so the command is not left waiting for more.
            let closed = stdin.shutdown().await;
            written.and(closed)
        };
        let (fed, capture) = tokio::join!(feed, capped_output(operation, exec.output, limit));
        let mut capture = capture?;
        capture.exit_code = self.exec_exit_code(&exec.id, operation).await?;
        if let Err(e) = fed
            && capture.exit_code == 0
        {
            return Err(EngineError::new(
                ErrorKind::Other,
                operation,
                format!("could not write its input: {e}"),
            ));
        }
        Ok(capture)
    }

    async fn exec_to_file(
        &self,
        container: &str,
        cmd: Vec<String>,
        env: Vec<(String, String)>,
        dest: &std::path::Path,
        limit: u64,
    ) -> Result<ExecCapture, EngineError> {
        use tokio::io::AsyncWriteExt;
        let options = ExecOptions {
            env,
            ..ExecOptions::default()
        };
        let AttachedExec {
            operation,
            id,
            output: mut stream,
            ..
        } = self.exec_attached(container, cmd, options).await?;
        let other = |detail: String| EngineError::new(ErrorKind::Other, operation.as_str(), detail);
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| other(e.to_string()))?;
        let mut capture = ExecCapture::default();
        let mut written: u64 = 0;
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(|e| classify(&operation, e))? {
                bollard::container::LogOutput::StdOut { message } => {
                    written += message.len() as u64;
                    if written > limit {
                        return Err(other(format!("its output is larger than {limit} bytes")));
                    }
                    file.write_all(&message)
                        .await
                        .map_err(|e| other(e.to_string()))?;
                }
                other_stream => {
                    if capture.stderr.len() < 64 * 1024 {
                        capture.stderr.push_str(&other_stream.to_string());
                    }
                }
            }
        }
        file.flush().await.map_err(|e| other(e.to_string()))?;
        capture.exit_code = self.exec_exit_code(&id, &operation).await?;
        Ok(capture)
    }

    async fn stop_container(&self, id: &str, grace_secs: i32) -> Result<(), EngineError> {
        let options = bollard::query_parameters::StopContainerOptions {
            t: Some(grace_secs),
            signal: None,
        };
        match self.docker.stop_container(id, Some(options)).await {
            // 304: it was not running.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            other => other.map_err(|e| classify(&format!("stop container `{id}`"), e)),
        }
    }

    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let request = bollard::models::NetworkDisconnectRequest {
            container: container.to_owned(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, request)
            .await
            .map_err(|e| {
                classify(
                    &format!("disconnect container `{container}` from network `{network}`"),
                    e,
                )
            })
    }

    fn log_lines(&self, id: &str, follow: bool) -> BoxStream<'static, Result<String, EngineError>> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            follow,
            tail: "all".to_owned(),
            ..LogsOptions::default()
        };
        let operation = format!("read the logs of container `{id}`");
        let chunks = self
            .docker
            .logs(id, Some(options))
            .map(move |chunk| chunk.map_err(|e| classify(&operation, e)));
        lines_of(chunks).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body of a POST of `body` to `uri` once `ask_for_duplicate_check`
    /// has seen it.
    fn body_after_patch(uri: &str, body: bytes::Bytes) -> bytes::Bytes {
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .body(http_body_util::Either::Left(http_body_util::Full::new(
                body,
            )))
            .unwrap();
        let patched = ask_for_duplicate_check(request);
        let http_body_util::Either::Left(full) = patched.into_body() else {
            panic!("body kind changed");
        };
        use http_body_util::BodyExt;
        full.collect().now_or_never().unwrap().unwrap().to_bytes()
    }

    #[test]
    fn network_creation_asks_for_a_duplicate_check() {
        let body = serde_json::to_vec(&NetworkCreateRequest {
            name: "n".into(),
            ..NetworkCreateRequest::default()
        })
        .unwrap();
        let bytes = body_after_patch(
            "http://localhost/v1.41/networks/create",
            bytes::Bytes::from(body),
        );
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["CheckDuplicate"], serde_json::Value::Bool(true));
        assert_eq!(json["Name"], "n");
    }

    #[test]
    fn other_requests_are_left_alone() {
        let bytes = body_after_patch(
            "http://localhost/v1.41/containers/create",
            bytes::Bytes::from_static(b"{\"Image\":\"x\"}"),
        );
        assert_eq!(&bytes[..], b"{\"Image\":\"x\"}");
    }

    #[test]
    fn only_a_container_on_a_network_gets_an_endpoint() {
        let spec = |network: &str| ContainerSpec {
            name: "c".into(),
            image: "i".into(),
            user: None,
            entrypoint: None,
            cmd: None,
            working_dir: None,
            env: vec![],
            labels: Labels::new(),
            network: network.into(),
            extra_hosts: vec![],
            dns: vec![],
            runtime: None,
            init: false,
            security_opt: vec![],
            cap_drop: vec![],
            cap_add: vec!["NET_ADMIN".into()],
            pids_limit: None,
            no_user_namespaces: false,
        };
        let on_network = create_body(&spec("net1"));
        let endpoints = on_network
            .networking_config
            .unwrap()
            .endpoints_config
            .unwrap();
        assert!(endpoints.contains_key("net1"));
        for mode in ["container:abc", "none"] {
            let body = create_body(&spec(mode));
            assert!(body.networking_config.is_none(), "{mode}");
            let host = body.host_config.unwrap();
            assert_eq!(host.network_mode.as_deref(), Some(mode));
            assert_eq!(host.cap_add.unwrap(), ["NET_ADMIN"]);
        }
    }

    /// A one-connection-per-request HTTP server on a fresh unix socket that
    /// answers with `replies` in turn; it yields the requests it read.
    fn serve_replies(
        replies: Vec<(&'static str, String)>,
    ) -> (
        tempfile::TempDir,
        String,
        tokio::task::JoinHandle<Vec<String>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podman.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut requests = Vec::new();
            for (status, body) in replies {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 4096];
                let n = stream.read(&mut request).await.unwrap();
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await.unwrap();
                requests.push(String::from_utf8_lossy(&request[..n]).into_owned());
            }
            requests
        });
        (dir, format!("unix://{}", socket.display()), server)
    }

    const MANAGED_LIST: &str = r#"[{"Id":"a1","Names":["/claude-bottle-fence-x"],"State":"stopped","Created":7,"Labels":{"claude-bottle.managed":"true"}},{"Id":"b2","Names":["/claude-bottle-x"],"State":"running","Created":8,"Labels":null}]"#;

    /// Podman 4.3's words when a container joins a network while it is listed.
    const INSPECTION_RACE: &str = r#"{"cause":"internal libpod error","message":"network inspection mismatch: asked to join 1 network(s) [n1], but have information on 2 network(s): internal libpod error","response":500}"#;

    fn managed_filter() -> HashMap<String, Vec<String>> {
        label_filters(&vec![("claude-bottle.managed".into(), "true".into())])
    }

    #[tokio::test]
    async fn podmans_list_is_read_with_its_stopped_state() {
        let (_dir, endpoint, server) = serve_replies(vec![("200 OK", MANAGED_LIST.to_owned())]);
        let listed = podman_list_containers(&endpoint, &managed_filter())
            .await
            .unwrap();
        let requests = server.await.unwrap();
        assert!(
            requests[0].starts_with("GET /v1.41/containers/json?all=1&filters=%7B%22label%22"),
            "{requests:?}"
        );
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].name, "claude-bottle-fence-x");
        assert_eq!(listed[0].state, "exited");
        assert_eq!(listed[0].labels["claude-bottle.managed"], "true");
        assert_eq!(listed[1].state, "running");
        assert!(listed[1].labels.is_empty());
        // bollard's own type refuses that list whole.
        assert!(
            serde_json::from_str::<Vec<bollard::models::ContainerSummary>>(MANAGED_LIST).is_err()
        );
    }

    #[tokio::test]
    async fn podmans_list_is_asked_again_when_it_meets_the_network_inspection_race() {
        let race = ("500 Internal Server Error", INSPECTION_RACE.to_owned());
        let (_dir, endpoint, server) = serve_replies(vec![
            race.clone(),
            race,
            ("200 OK", MANAGED_LIST.to_owned()),
        ]);
        let listed = podman_list_containers(&endpoint, &managed_filter())
            .await
            .unwrap();
        assert_eq!(server.await.unwrap().len(), 3);
        assert_eq!(listed.len(), 2);
    }

    #[tokio::test]
    async fn the_network_inspection_race_is_asked_again_a_bounded_number_of_times() {
        let replies = (0..INSPECTION_RACE_ATTEMPTS)
            .map(|_| ("500 Internal Server Error", INSPECTION_RACE.to_owned()))
            .collect();
        let (_dir, endpoint, server) = serve_replies(replies);
        let error = podman_list_containers(&endpoint, &managed_filter())
            .await
            .unwrap_err();
        assert_eq!(
            server.await.unwrap().len(),
            INSPECTION_RACE_ATTEMPTS as usize
        );
        assert!(
            error
                .to_string()
                .starts_with("could not list containers: 500")
                && error.detail.contains("network inspection mismatch"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn other_listing_errors_are_not_asked_again() {
        let (_dir, endpoint, server) = serve_replies(vec![(
            "500 Internal Server Error",
            r#"{"message":"database is locked"}"#.to_owned(),
        )]);
        let error = podman_list_containers(&endpoint, &managed_filter())
            .await
            .unwrap_err();
        assert_eq!(server.await.unwrap().len(), 1);
        assert!(error.detail.contains("database is locked"), "{error}");
    }

    #[test]
    fn container_spec_debug_hides_env_values() {
        let spec = ContainerSpec {
            name: "c".into(),
            image: "i".into(),
            user: None,
            entrypoint: None,
            cmd: None,
            working_dir: None,
            env: vec![EnvPair::new("TOKEN", "hunter2-value")],
            labels: Labels::new(),
            network: "n".into(),
            extra_hosts: vec![],
            dns: vec![],
            runtime: None,
            init: false,
            security_opt: vec![],
            cap_drop: vec![],
            cap_add: vec![],
            pids_limit: None,
            no_user_namespaces: false,
        };
        let debug = format!("{spec:?}");
        assert!(debug.contains("TOKEN"), "{debug}");
        assert!(!debug.contains("hunter2-value"), "{debug}");
        // The value does reach the request body, and only there.
        assert_eq!(create_body(&spec).env.unwrap(), ["TOKEN=hunter2-value"]);
    }

    #[test]
    fn unreachable_error_names_the_endpoint_with_a_hint() {
        let err = EngineError {
            kind: ErrorKind::Unreachable,
            operation: "read its version".into(),
            detail: "connection refused".into(),
            endpoint: "unix:///var/run/docker.sock".into(),
            hints: Vec::new(),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("could not reach the Docker daemon at `unix:///var/run/docker.sock`"),
            "{text}"
        );
        assert!(!text.contains("hint"), "hints are data, not text: {text}");
        assert_eq!(
            err.hints(),
            ["start the Docker daemon, or point `DOCKER_HOST` at a running one"]
        );
    }

    fn out(bytes: &'static [u8]) -> Result<bollard::container::LogOutput, EngineError> {
        Ok(bollard::container::LogOutput::StdOut {
            message: bytes::Bytes::from_static(bytes),
        })
    }

    fn err(bytes: &'static [u8]) -> Result<bollard::container::LogOutput, EngineError> {
        Ok(bollard::container::LogOutput::StdErr {
            message: bytes::Bytes::from_static(bytes),
        })
    }

    /// The lines of `chunks`, an error as `Err` of its detail.
    fn lines(
        chunks: Vec<Result<bollard::container::LogOutput, EngineError>>,
    ) -> Vec<Result<String, String>> {
        lines_of(futures_util::stream::iter(chunks))
            .map(|line| line.map_err(|e| e.detail))
            .collect::<Vec<_>>()
            .now_or_never()
            .expect("a ready stream")
    }

    fn ok(lines: &[&str]) -> Vec<Result<String, String>> {
        lines.iter().map(|l| Ok((*l).to_owned())).collect()
    }

    #[test]
    fn log_lines_join_chunks_split_mid_line() {
        assert_eq!(
            lines(vec![out(b"{\"a\":"), out(b"1}\n{\"b\""), out(b":2}\n")]),
            ok(&["{\"a\":1}", "{\"b\":2}"])
        );
        assert_eq!(
            lines(vec![out(b"one\ntwo\n\nthree\n")]),
            ok(&["one", "two", "", "three"])
        );
    }

    #[test]
    fn log_lines_decode_a_character_split_across_chunks() {
        // `é` is 0xC3 0xA9, `€` 0xE2 0x82 0xAC.
        assert_eq!(
            lines(vec![
                out(b"caf\xc3"),
                out(b"\xa9 \xe2"),
                out(b"\x82"),
                out(b"\xac\n")
            ]),
            ok(&["café €"])
        );
        // Invalid bytes within a line are replaced, the line kept.
        assert_eq!(lines(vec![out(b"a\xffb\n")]), ok(&["a\u{FFFD}b"]));
    }

    #[test]
    fn log_lines_drop_the_carriage_return_of_crlf() {
        assert_eq!(
            lines(vec![out(b"one\r\ntwo\r"), out(b"\nthree\r\n")]),
            ok(&["one", "two", "three"])
        );
        // Only the one before the newline.
        assert_eq!(lines(vec![out(b"a\rb\r\r\n")]), ok(&["a\rb\r"]));
    }

    #[test]
    fn log_lines_end_with_each_streams_unfinished_line() {
        assert_eq!(
            lines(vec![out(b"one\ntw"), err(b"warn"), out(b"o")]),
            ok(&["one", "two", "warn"])
        );
        assert_eq!(lines(vec![]), ok(&[]));
        assert_eq!(lines(vec![out(b"")]), ok(&[]));
    }

    #[test]
    fn log_lines_keep_stdout_and_stderr_apart_mid_line() {
        // Docker splits the long stdout record; stderr lands between its halves.
        assert_eq!(
            lines(vec![
                out(b"{\"event\":\"blocked\","),
                err(b"pipelock: config reload failed: bad\n"),
                out(b"\"target\":\"a.test:443\"}\n"),
                err(b"par"),
                out(b"next"),
                err(b"tial\n"),
                out(b"\n"),
            ]),
            ok(&[
                "pipelock: config reload failed: bad",
                "{\"event\":\"blocked\",\"target\":\"a.test:443\"}",
                "partial",
                "next",
            ])
        );
        let console = Ok(bollard::container::LogOutput::Console {
            message: bytes::Bytes::from_static(b"tty\n"),
        });
        assert_eq!(lines(vec![out(b"o"), console]), ok(&["tty", "o"]));
    }

    #[test]
    fn log_lines_deliver_the_lines_before_an_error_then_the_error() {
        let failure = EngineError::new(ErrorKind::Other, "read the logs", "connection reset");
        assert_eq!(
            lines(vec![
                out(b"one\ntwo\nunfini"),
                err(b"warn\n"),
                Err(failure),
                out(b"shed\nafter\n"),
            ]),
            vec![
                Ok("one".to_owned()),
                Ok("two".to_owned()),
                Ok("warn".to_owned()),
                Err("connection reset".to_owned()),
            ]
        );
    }
}
