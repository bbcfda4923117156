//! A recording in-memory [`Engine`] for unit tests: it keeps containers and
//! networks like a daemon would (names unique, labels, health), and records
//! every call by resource *name* so tests read like the sequence they check.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::client::{
    ContainerInfo, ContainerSpec, ContainerStatus, DaemonInfo, Engine, EngineError, ErrorKind,
    ExecCapture, ExecOutput, LabelFilter, Labels, NetworkInfo, NetworkSpec, TarStream,
};
use crate::printer::Printer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    DaemonInfo,
    NetworkSubnets,
    Runtimes,
    ImageExists(String),
    /// The tag and the Claude Code version.
    BuildImage(String, String),
    PullImage(String),
    CreateNetwork(NetworkSpec),
    RemoveNetwork(String),
    CreateContainer(Box<ContainerSpec>),
    Upload {
        container: String,
        path: String,
        tar: Vec<u8>,
    },
    Connect {
        network: String,
        container: String,
    },
    Start(String),
    Wait(String),
    Rename {
        from: String,
        to: String,
    },
    Inspect(String),
    Logs(String),
    Exec {
        container: String,
        cmd: Vec<String>,
    },
    ListContainers(LabelFilter),
    ListNetworks(LabelFilter),
    NetworksNamed(String),
    RemoveContainer(String),
    Signal {
        container: String,
        signal: String,
    },
    ExecCapped {
        container: String,
        cmd: Vec<String>,
    },
    ExecToFile {
        container: String,
        cmd: Vec<String>,
    },
    /// An exec fed `input` on its stdin (kept whole: tests look for
    /// secrets in it).
    ExecFed {
        container: String,
        cmd: Vec<String>,
        user: String,
        input: String,
    },
    Stop(String),
    Disconnect {
        network: String,
        container: String,
    },
}

impl Call {
    /// A one-line summary: the operation and the names it touched.
    pub fn op(&self) -> String {
        match self {
            Self::DaemonInfo => "daemon_info".into(),
            Self::NetworkSubnets => "network_subnets".into(),
            Self::Runtimes => "runtimes".into(),
            Self::ImageExists(i) => format!("image_exists {i}"),
            Self::BuildImage(tag, version) => format!("build_image {tag} (Claude Code {version})"),
            Self::PullImage(i) => format!("pull_image {i}"),
            Self::CreateNetwork(n) => format!("create_network {}", n.name),
            Self::RemoveNetwork(n) => format!("remove_network {n}"),
            Self::CreateContainer(c) => format!("create_container {}", c.name),
            Self::Upload {
                container, path, ..
            } => format!("upload {container} {path}"),
            Self::Connect { network, container } => format!("connect {network} {container}"),
            Self::Start(c) => format!("start {c}"),
            Self::Wait(c) => format!("wait {c}"),
            Self::Rename { from, to } => format!("rename {from} {to}"),
            Self::Inspect(c) => format!("inspect {c}"),
            Self::Logs(c) => format!("logs {c}"),
            Self::Exec { container, cmd } => format!("exec {container} {}", cmd.join(" ")),
            Self::ListContainers(_) => "list_containers".into(),
            Self::ListNetworks(_) => "list_networks".into(),
            Self::NetworksNamed(n) => format!("networks_named {n}"),
            Self::RemoveContainer(c) => format!("remove_container {c}"),
            Self::Signal { container, signal } => format!("signal {container} {signal}"),
            Self::ExecCapped { container, cmd } => {
                format!(
                    "exec_capped {container} {}",
                    cmd.first().map_or("", String::as_str)
                )
            }
            Self::ExecToFile { container, cmd } => {
                format!(
                    "exec_to_file {container} {}",
                    cmd.first().map_or("", String::as_str)
                )
            }
            Self::ExecFed {
                container, user, ..
            } => format!("exec_fed {container} as {user}"),
            Self::Stop(c) => format!("stop {c}"),
            Self::Disconnect { network, container } => {
                format!("disconnect {network} {container}")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FakeContainer {
    pub name: String,
    pub labels: Labels,
    pub state: String,
    pub runtime: Option<String>,
    /// Network IDs.
    pub networks: Vec<String>,
    pub created: i64,
    /// Its command is `true`: it exits 0 as soon as it starts.
    pub exits_at_once: bool,
    /// A fence: it exits as soon as it starts, with this code and output.
    pub fence: Option<(i64, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeNetwork {
    pub name: String,
    pub labels: Labels,
    pub created: String,
    pub subnet: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub calls: Vec<Call>,
    pub runtimes: Vec<String>,
    pub images: BTreeSet<String>,
    /// Image IDs by reference, where they are not `sha256:<reference>`
    /// (a tag rebuilt since).
    pub image_ids: BTreeMap<String, String>,
    pub containers: BTreeMap<String, FakeContainer>,
    pub networks: BTreeMap<String, FakeNetwork>,
    next_id: u32,
    /// Exit codes of successive exec probes; the last repeats. Empty means 0.
    pub probe_exits: VecDeque<i64>,
    /// The proxy exits right after start.
    pub proxy_exits: bool,
    /// Starting a container under this runtime fails with this message.
    pub failing_runtime: Option<(String, String)>,
    /// The IDs of the containers whose start `failing_runtime` failed.
    pub failed_starts: Vec<String>,
    pub build_delay: Option<Duration>,
    pub pull_delay: Option<Duration>,
    /// Pulls fail with this error (no registry has the image).
    pub pull_failure: Option<EngineError>,
    pub logs: String,
    /// Names that a "concurrent session" takes right before they are created.
    pub stolen_names: BTreeSet<String>,
    /// Names whose creation races with another session's: the daemon makes
    /// an older twin of the same name as well.
    pub racing_names: BTreeSet<String>,
    /// Responds to creations, then behaves as if the reply were lost.
    pub lose_create_replies: bool,
    /// The next this many network removals fail with `active endpoints`, as
    /// a daemon still listing a just force-removed container's endpoint does.
    pub busy_network_removals: u32,
    /// Container creations take this long, and land on the "daemon" even
    /// when the caller stops waiting for the reply, as a real daemon's do.
    pub slow_creations: Option<Duration>,
    /// Container removals never answer.
    pub removals_hang: bool,
    /// Container removals take this long, the container attached to its
    /// networks meanwhile, as a daemon deleting a large writable layer.
    pub slow_removals: Option<Duration>,
    /// The line a container appends to `logs` when it gets SIGHUP, as a
    /// proxy reporting its reload.
    pub reload_line: Option<String>,
    /// The files uploaded into each container, by container name and path.
    pub files: BTreeMap<(String, String), Vec<u8>>,
    /// What `daemon_info` reports, `runtimes` aside (those of `runtimes`
    /// are used); `None` is a daemon that does not answer.
    pub daemon: Option<DaemonInfo>,
    /// Subnets of networks other than the fake's own.
    pub subnets: Vec<String>,
    /// Replies of successive `exec_capped` calls; none left is an empty
    /// success.
    pub capped_replies: VecDeque<Result<ExecCapture, EngineError>>,
    /// What successive `exec_to_file` calls print on stdout; none left is
    /// an empty output.
    pub stdout_replies: VecDeque<Vec<u8>>,
    /// The next this many network creations with an explicit subnet find
    /// it just taken by a "concurrent session"'s network, as a real daemon
    /// does when two sessions pick the same subnet at once.
    pub stolen_subnets: u32,
    /// Replies of successive `exec_fed` calls; none left is an empty
    /// success.
    pub fed_replies: VecDeque<Result<ExecCapture, EngineError>>,
    /// The fence's exit code and output instead of a fence that works.
    pub fence_outcome: Option<(i64, String)>,
}

impl FakeState {
    /// Adds a network, created after every earlier one; its ID.
    fn insert_network(&mut self, name: &str, labels: Labels, subnet: Option<String>) -> String {
        self.next_id += 1;
        let id = format!("n{:04}", self.next_id);
        let created = created_at(self.next_id);
        self.networks.insert(
            id.clone(),
            FakeNetwork {
                name: name.to_owned(),
                labels,
                created,
                subnet,
            },
        );
        id
    }

    /// Whether `subnet` overlaps a network's, as the daemon's IPAM checks.
    fn subnet_taken(&self, subnet: &str) -> bool {
        let Ok(wanted) = subnet.parse::<ipnet::Ipv4Net>() else {
            return false;
        };
        self.networks
            .values()
            .filter_map(|n| n.subnet.as_deref())
            .chain(self.subnets.iter().map(String::as_str))
            .filter_map(|s| s.parse::<ipnet::Ipv4Net>().ok())
            .any(|n| n.contains(&wanted.network()) || wanted.contains(&n.network()))
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct FakeEngine {
    state: Arc<Mutex<FakeState>>,
}

/// A daemon-style timestamp that grows with `n` (trailing zeros cut, as Go writes them).
fn created_at(n: u32) -> String {
    let fraction = format!("{n:09}");
    format!("2026-01-01T00:00:00.{}Z", fraction.trim_end_matches('0'))
}

fn network_info((id, network): (&String, &FakeNetwork)) -> NetworkInfo {
    NetworkInfo {
        id: id.clone(),
        name: network.name.clone(),
        labels: network.labels.clone(),
        created: network.created.clone(),
        subnets: network.subnet.iter().cloned().collect(),
    }
}

fn matches(labels: &Labels, filter: &LabelFilter) -> bool {
    filter.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeEngine {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn with_images(self, images: &[&str]) -> Self {
        self.state()
            .images
            .extend(images.iter().map(|i| (*i).to_owned()));
        self
    }

    pub fn ops(&self) -> Vec<String> {
        self.state().calls.iter().map(Call::op).collect()
    }

    /// The recorded calls that change the daemon.
    pub fn mutations(&self) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .filter(|c| {
                !matches!(
                    c,
                    Call::Runtimes
                        | Call::DaemonInfo
                        | Call::NetworkSubnets
                        | Call::ImageExists(_)
                        | Call::Inspect(_)
                        | Call::Logs(_)
                        | Call::Wait(_)
                        | Call::Exec { .. }
                        | Call::ListContainers(_)
                        | Call::ListNetworks(_)
                        | Call::NetworksNamed(_)
                )
            })
            .map(Call::op)
            .collect()
    }

    pub fn created_containers(&self) -> Vec<ContainerSpec> {
        self.state()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::CreateContainer(spec) => Some((**spec).clone()),
                _ => None,
            })
            .collect()
    }

    pub fn created_networks(&self) -> Vec<NetworkSpec> {
        self.state()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::CreateNetwork(spec) => Some(spec.clone()),
                _ => None,
            })
            .collect()
    }

    /// Adds a container as if someone else had made it.
    pub fn add_foreign_container(&self, name: &str, labels: Labels) -> String {
        let mut state = self.state();
        state.next_id += 1;
        let id = format!("c{:04}", state.next_id);
        state.containers.insert(
            id.clone(),
            FakeContainer {
                name: name.to_owned(),
                labels,
                state: "running".into(),
                runtime: None,
                networks: vec![],
                created: 1_000,
                exits_at_once: false,
                fence: None,
            },
        );
        id
    }

    pub fn add_foreign_network(&self, name: &str, labels: Labels) -> String {
        self.state().insert_network(name, labels, None)
    }

    /// A network of someone else's on `subnet`.
    pub fn add_foreign_network_on(&self, name: &str, subnet: &str) -> String {
        self.state()
            .insert_network(name, Labels::new(), Some(subnet.to_owned()))
    }

    fn record(&self, call: Call) {
        self.state().calls.push(call);
    }

    fn container_name(state: &FakeState, id: &str) -> String {
        state
            .containers
            .get(id)
            .map_or_else(|| id.to_owned(), |c| c.name.clone())
    }

    fn network_name(state: &FakeState, id: &str) -> String {
        state
            .networks
            .get(id)
            .map_or_else(|| id.to_owned(), |n| n.name.clone())
    }

    fn name_taken(state: &FakeState, name: &str) -> bool {
        state.containers.values().any(|c| c.name == name)
            || state.networks.values().any(|n| n.name == name)
    }

    fn not_found(op: &str, id: &str) -> EngineError {
        EngineError::new(
            ErrorKind::NotFound,
            format!("{op} `{id}`"),
            "no such object",
        )
    }

    fn conflict(op: &str, name: &str) -> EngineError {
        EngineError::new(
            ErrorKind::Conflict,
            format!("{op} `{name}`"),
            format!("name `{name}` is already in use"),
        )
    }

    fn lost_reply(op: &str) -> EngineError {
        EngineError::new(ErrorKind::Unreachable, op, "connection reset")
    }
}

impl FakeEngine {
    /// A container creation as the daemon carries it out.
    fn create_container_now(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let mut state = self.state();
        state
            .calls
            .push(Call::CreateContainer(Box::new(spec.clone())));
        if state.stolen_names.remove(&spec.name) {
            drop(state);
            self.add_foreign_container(&spec.name, Labels::new());
            state = self.state();
        }
        if state.containers.values().any(|c| c.name == spec.name) {
            return Err(Self::conflict("create container", &spec.name));
        }
        if !state.images.contains(&spec.image) {
            return Err(EngineError::new(
                ErrorKind::NotFound,
                format!("create container `{}`", spec.name),
                format!("No such image: {}", spec.image),
            ));
        }
        state.next_id += 1;
        let id = format!("c{:04}", state.next_id);
        let is_fence = spec
            .labels
            .get(super::names::LABEL_ROLE)
            .map(String::as_str)
            == Some("fence");
        let fence = is_fence.then(|| {
            state
                .fence_outcome
                .clone()
                .unwrap_or_else(|| (0, working_fence_output(spec)))
        });
        state.containers.insert(
            id.clone(),
            FakeContainer {
                name: spec.name.clone(),
                labels: spec.labels.clone(),
                state: "created".into(),
                runtime: spec.runtime.clone(),
                networks: vec![spec.network.clone()],
                created: 2_000,
                exits_at_once: spec.entrypoint.as_deref() == Some(&["true".to_owned()][..]),
                fence,
            },
        );
        if state.lose_create_replies {
            return Err(Self::lost_reply("create container"));
        }
        Ok(id)
    }
}

/// What a fence that works prints, for the proxy address its command names.
fn working_fence_output(spec: &ContainerSpec) -> String {
    let proxy = spec
        .entrypoint
        .as_deref()
        .and_then(|command| command.get(4))
        .cloned()
        .unwrap_or_default();
    format!(
        "fence: ipv6\n-P OUTPUT DROP\n-A OUTPUT -o lo -j ACCEPT\nfence: ipv4\n-P OUTPUT DROP\n-A OUTPUT -o lo -j ACCEPT\n-A OUTPUT -d {proxy}/32 -p tcp -m tcp --dport 8888 -j ACCEPT\n"
    )
}

/// The daemon address the fake reports; no CLI ever runs against it.
pub(crate) const FAKE_ENDPOINT: &str = "unix:///run/fake-docker.sock";

impl Engine for FakeEngine {
    fn endpoint(&self) -> &str {
        FAKE_ENDPOINT
    }

    async fn reconnect(&self) -> Result<Self, EngineError> {
        Ok(self.clone())
    }

    async fn daemon_info(&self) -> Result<DaemonInfo, EngineError> {
        self.record(Call::DaemonInfo);
        let state = self.state();
        let mut info = state.daemon.clone().ok_or_else(|| {
            EngineError::new(
                ErrorKind::Unreachable,
                "read the daemon's version",
                "connection refused",
            )
        })?;
        info.runtimes.clone_from(&state.runtimes);
        Ok(info)
    }

    async fn network_subnets(&self) -> Result<Vec<String>, EngineError> {
        self.record(Call::NetworkSubnets);
        let state = self.state();
        Ok(state
            .subnets
            .iter()
            .cloned()
            .chain(state.networks.values().filter_map(|n| n.subnet.clone()))
            .collect())
    }

    async fn runtimes(&self) -> Result<Vec<String>, EngineError> {
        self.record(Call::Runtimes);
        Ok(self.state().runtimes.clone())
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        self.record(Call::ImageExists(image.to_owned()));
        Ok(self.state().images.contains(image))
    }

    async fn build_image(
        &self,
        tag: &str,
        claude_code_version: &str,
        _printer: &Printer,
    ) -> Result<(), EngineError> {
        self.record(Call::BuildImage(
            tag.to_owned(),
            claude_code_version.to_owned(),
        ));
        let delay = self.state().build_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.state().images.insert(tag.to_owned());
        Ok(())
    }

    async fn pull_image(&self, image: &str, _printer: &Printer) -> Result<(), EngineError> {
        self.record(Call::PullImage(image.to_owned()));
        let delay = self.state().pull_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        if let Some(err) = state.pull_failure.clone() {
            return Err(err);
        }
        state.images.insert(image.to_owned());
        Ok(())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        let mut state = self.state();
        state.calls.push(Call::CreateNetwork(spec.clone()));
        if state.stolen_names.remove(&spec.name) {
            drop(state);
            self.add_foreign_network(&spec.name, Labels::new());
            state = self.state();
        }
        if Self::name_taken(&state, &spec.name) {
            return Err(Self::conflict("create network", &spec.name));
        }
        if state.racing_names.remove(&spec.name) {
            // The twin was made first; both creations pass the duplicate check.
            state.insert_network(&spec.name, Labels::new(), None);
        }
        let subnet = spec.ipam.as_ref().map(|i| i.subnet.clone());
        if let Some(subnet) = &subnet {
            if state.stolen_subnets > 0 {
                state.stolen_subnets -= 1;
                state.insert_network("another-session", Labels::new(), Some(subnet.clone()));
            }
            if state.subnet_taken(subnet) {
                return Err(EngineError::new(
                    ErrorKind::Other,
                    format!("create network `{}`", spec.name),
                    "Error response from daemon: Pool overlaps with other one on this address space",
                ));
            }
        }
        let id = state.insert_network(&spec.name, spec.labels.clone(), subnet);
        if state.lose_create_replies {
            return Err(Self::lost_reply("create network"));
        }
        Ok(id)
    }

    async fn remove_network(&self, id: &str) -> Result<(), EngineError> {
        let mut state = self.state();
        let name = Self::network_name(&state, id);
        state.calls.push(Call::RemoveNetwork(name.clone()));
        let lingering = state.busy_network_removals > 0;
        state.busy_network_removals = state.busy_network_removals.saturating_sub(1);
        if lingering
            || state
                .containers
                .values()
                .any(|c| c.networks.iter().any(|n| n == id))
        {
            return Err(EngineError::new(
                ErrorKind::Other,
                format!("remove network `{id}`"),
                format!(
                    "error while removing network: network {name} id {id} has active endpoints"
                ),
            ));
        }
        state.networks.remove(id);
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let slow = self.state().slow_creations;
        if let Some(delay) = slow {
            // The daemon goes on with the creation whatever the client does.
            let engine = self.clone();
            let spec = spec.clone();
            let landed = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                engine.create_container_now(&spec)
            });
            return landed
                .await
                .unwrap_or_else(|e| Err(Self::lost_reply(&e.to_string())));
        }
        self.create_container_now(spec)
    }

    async fn upload_archive(
        &self,
        container: &str,
        path: &str,
        tar: TarStream,
    ) -> Result<(), EngineError> {
        let chunks: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(tar)
            .await
            .map_err(|e| {
                EngineError::new(
                    ErrorKind::Other,
                    format!("copy files into container `{container}`"),
                    e.to_string(),
                )
            })?;
        let tar = chunks.concat();
        let mut state = self.state();
        let name = Self::container_name(&state, container);
        if state.containers.contains_key(container) {
            let mut archive = tar::Archive::new(tar.as_slice());
            for mut entry in archive.entries().into_iter().flatten().flatten() {
                let Ok(entry_path) = entry.path().map(|p| p.to_string_lossy().into_owned()) else {
                    continue;
                };
                let mut bytes = Vec::new();
                let _ = std::io::Read::read_to_end(&mut entry, &mut bytes);
                state.files.insert((name.clone(), entry_path), bytes);
            }
        }
        state.calls.push(Call::Upload {
            container: name,
            path: path.to_owned(),
            tar,
        });
        if !state.containers.contains_key(container) {
            return Err(Self::not_found("upload to", container));
        }
        Ok(())
    }

    async fn connect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let mut state = self.state();
        let call = Call::Connect {
            network: Self::network_name(&state, network),
            container: Self::container_name(&state, container),
        };
        state.calls.push(call);
        if !state.networks.contains_key(network) {
            return Err(Self::not_found("connect network", network));
        }
        match state.containers.get_mut(container) {
            Some(c) => {
                c.networks.push(network.to_owned());
                Ok(())
            }
            None => Err(Self::not_found("connect container", container)),
        }
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        let mut state = self.state();
        state.calls.push(Call::ImageExists(image.to_owned()));
        if !state.images.contains(image) {
            return Ok(None);
        }
        Ok(Some(
            state
                .image_ids
                .get(image)
                .cloned()
                .unwrap_or_else(|| format!("sha256:{image}")),
        ))
    }

    async fn rename_container(&self, from: &str, to: &str) -> Result<(), EngineError> {
        let mut state = self.state();
        state.calls.push(Call::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        let op = format!("rename container `{from}` to `{to}`");
        let Some(id) = state
            .containers
            .iter()
            .find(|(_, c)| c.name == from)
            .map(|(id, _)| id.clone())
        else {
            return Err(EngineError::new(
                ErrorKind::NotFound,
                op,
                "no such container",
            ));
        };
        if state.containers.values().any(|c| c.name == to) {
            return Err(EngineError::new(ErrorKind::Conflict, op, "name in use"));
        }
        if let Some(c) = state.containers.get_mut(&id) {
            c.name = to.to_owned();
        }
        let moved: Vec<(String, String)> = state
            .files
            .keys()
            .filter(|(name, _)| name == from)
            .cloned()
            .collect();
        for key in moved {
            if let Some(bytes) = state.files.remove(&key) {
                state.files.insert((to.to_owned(), key.1), bytes);
            }
        }
        Ok(())
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, id);
        state.calls.push(Call::Start(name.clone()));
        let failing = state.failing_runtime.clone();
        let proxy_exits = state.proxy_exits;
        let Some(c) = state.containers.get_mut(id) else {
            return Err(Self::not_found("start container", id));
        };
        if let Some((runtime, message)) = failing
            && c.runtime.as_deref() == Some(runtime.as_str())
        {
            state.failed_starts.push(id.to_owned());
            return Err(EngineError::new(
                ErrorKind::Other,
                format!("start container `{id}`"),
                message,
            ));
        }
        let is_proxy = c.labels.get(super::names::LABEL_ROLE).map(String::as_str) == Some("proxy");
        c.state = if (proxy_exits && is_proxy) || c.exits_at_once || c.fence.is_some() {
            "exited".into()
        } else {
            "running".into()
        };
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerStatus, EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, id);
        state.calls.push(Call::Inspect(name));
        let Some(c) = state.containers.get(id).cloned() else {
            return Err(Self::not_found("inspect container", id));
        };
        let mut addresses = BTreeMap::new();
        for (i, network) in c.networks.iter().enumerate() {
            let ip = format!("172.30.{}.{}", i, 2 + id.len());
            addresses.insert(network.clone(), ip.clone());
            addresses.insert(Self::network_name(&state, network), ip);
        }
        Ok(ContainerStatus {
            running: c.state == "running",
            exit_code: (c.state == "exited").then_some(match &c.fence {
                Some((code, _)) => *code,
                None if c.exits_at_once => 0,
                None => 1,
            }),
            state: c.state.clone(),
            error: None,
            addresses,
            runtime: c.runtime.clone(),
        })
    }

    async fn wait_container(&self, id: &str) -> Result<i64, EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, id);
        state.calls.push(Call::Wait(name));
        match state.containers.get(id) {
            Some(FakeContainer {
                fence: Some((code, _)),
                ..
            }) => Ok(*code),
            Some(c) if c.state == "exited" => Ok(if c.exits_at_once { 0 } else { 1 }),
            Some(_) => Err(EngineError::new(
                ErrorKind::Other,
                "wait for container",
                "the fake's containers that run never stop by themselves",
            )),
            None => Err(Self::not_found("wait for container", id)),
        }
    }

    async fn logs_tail(&self, id: &str, _lines: u32) -> Result<String, EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, id);
        state.calls.push(Call::Logs(name));
        if let Some(FakeContainer {
            fence: Some((_, output)),
            ..
        }) = state.containers.get(id)
        {
            return Ok(output.clone());
        }
        Ok(state.logs.clone())
    }

    async fn exec(&self, container: &str, cmd: Vec<String>) -> Result<ExecOutput, EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, container);
        state.calls.push(Call::Exec {
            container: name.clone(),
            cmd: cmd.clone(),
        });
        if state
            .containers
            .get(container)
            .is_none_or(|c| c.state != "running")
        {
            return Err(EngineError::new(
                ErrorKind::Other,
                "exec",
                format!("container {container} is not running"),
            ));
        }
        // `cat FILE` reads what is in the container, as a shell would.
        if let [cat, path] = cmd.as_slice()
            && cat == "cat"
        {
            return Ok(match state.files.get(&(name, path.clone())) {
                Some(bytes) => ExecOutput {
                    exit_code: 0,
                    output: String::from_utf8_lossy(bytes).into_owned(),
                },
                None => ExecOutput {
                    exit_code: 1,
                    output: format!("cat: {path}: No such file or directory\n"),
                },
            });
        }
        let exit_code = if state.probe_exits.len() > 1 {
            state.probe_exits.pop_front().unwrap_or(0)
        } else {
            state.probe_exits.front().copied().unwrap_or(0)
        };
        Ok(ExecOutput {
            exit_code,
            output: String::new(),
        })
    }

    async fn list_containers(
        &self,
        filter: LabelFilter,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        let mut state = self.state();
        state.calls.push(Call::ListContainers(filter.clone()));
        Ok(state
            .containers
            .iter()
            .filter(|(_, c)| matches(&c.labels, &filter))
            .map(|(id, c)| ContainerInfo {
                id: id.clone(),
                name: c.name.clone(),
                state: c.state.clone(),
                created: c.created,
                labels: c.labels.clone(),
            })
            .collect())
    }

    async fn list_networks(&self, filter: LabelFilter) -> Result<Vec<NetworkInfo>, EngineError> {
        let mut state = self.state();
        state.calls.push(Call::ListNetworks(filter.clone()));
        Ok(state
            .networks
            .iter()
            .filter(|(_, n)| matches(&n.labels, &filter))
            .map(network_info)
            .collect())
    }

    async fn networks_named(&self, name: &str) -> Result<Vec<NetworkInfo>, EngineError> {
        let mut state = self.state();
        state.calls.push(Call::NetworksNamed(name.to_owned()));
        Ok(state
            .networks
            .iter()
            .filter(|(_, n)| n.name == name)
            .map(network_info)
            .collect())
    }

    async fn signal_container(&self, id: &str, signal: &str) -> Result<(), EngineError> {
        let mut state = self.state();
        let container = Self::container_name(&state, id);
        state.calls.push(Call::Signal {
            container,
            signal: signal.to_owned(),
        });
        if signal == "SIGHUP"
            && let Some(line) = state.reload_line.clone()
        {
            state.logs.push_str(&line);
            state.logs.push('\n');
        }
        Ok(())
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, EngineError> {
        let state = self.state();
        let name = Self::container_name(&state, id);
        let key = (name.clone(), path.trim_start_matches('/').to_owned());
        if let Some(bytes) = state.files.get(&key) {
            return Ok(bytes.clone());
        }
        Err(EngineError::new(
            ErrorKind::NotFound,
            format!("read `{path}` in container `{name}`"),
            "Could not find the file",
        ))
    }

    async fn exec_capped(
        &self,
        container: &str,
        cmd: Vec<String>,
        _env: Vec<(String, String)>,
        _limit: usize,
    ) -> Result<ExecCapture, EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, container);
        state.calls.push(Call::ExecCapped {
            container: name,
            cmd,
        });
        state
            .capped_replies
            .pop_front()
            .unwrap_or_else(|| Ok(ExecCapture::default()))
    }

    async fn exec_fed(
        &self,
        container: &str,
        cmd: Vec<String>,
        user: &str,
        input: &secrecy::SecretString,
        _limit: usize,
    ) -> Result<ExecCapture, EngineError> {
        use secrecy::ExposeSecret;
        let mut state = self.state();
        let name = Self::container_name(&state, container);
        state.calls.push(Call::ExecFed {
            container: name,
            cmd,
            user: user.to_owned(),
            input: input.expose_secret().to_owned(),
        });
        state
            .fed_replies
            .pop_front()
            .unwrap_or_else(|| Ok(ExecCapture::default()))
    }

    async fn exec_to_file(
        &self,
        container: &str,
        cmd: Vec<String>,
        _env: Vec<(String, String)>,
        dest: &std::path::Path,
        limit: u64,
    ) -> Result<ExecCapture, EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, container);
        state.calls.push(Call::ExecToFile {
            container: name.clone(),
            cmd,
        });
        let bytes = state.stdout_replies.pop_front().unwrap_or_default();
        let failed = |detail: String| {
            EngineError::new(
                ErrorKind::Other,
                format!("run in container `{name}`"),
                detail,
            )
        };
        if bytes.len() as u64 > limit {
            return Err(failed(format!("its output is larger than {limit} bytes")));
        }
        std::fs::write(dest, &bytes).map_err(|e| failed(e.to_string()))?;
        Ok(ExecCapture::default())
    }

    async fn stop_container(&self, id: &str, _grace_secs: i32) -> Result<(), EngineError> {
        let mut state = self.state();
        let name = Self::container_name(&state, id);
        state.calls.push(Call::Stop(name));
        match state.containers.get_mut(id) {
            Some(c) => {
                c.state = "exited".into();
                Ok(())
            }
            None => Err(Self::not_found("stop", id)),
        }
    }

    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let mut state = self.state();
        let network_name = Self::network_name(&state, network);
        let name = Self::container_name(&state, container);
        state.calls.push(Call::Disconnect {
            network: network_name,
            container: name,
        });
        match state.containers.get_mut(container) {
            Some(c) => {
                c.networks.retain(|n| n != network);
                Ok(())
            }
            None => Err(Self::not_found("disconnect", container)),
        }
    }

    fn log_lines(
        &self,
        _id: &str,
        _follow: bool,
    ) -> futures_util::stream::BoxStream<'static, Result<String, EngineError>> {
        let lines: Vec<Result<String, EngineError>> = self
            .state()
            .logs
            .lines()
            .map(|l| Ok(l.to_owned()))
            .collect();
        futures_util::StreamExt::boxed(futures_util::stream::iter(lines))
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        if self.state().removals_hang {
            std::future::pending::<()>().await;
        }
        let slow = self.state().slow_removals;
        if let Some(delay) = slow {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        let name = Self::container_name(&state, id);
        state.calls.push(Call::RemoveContainer(name));
        state.containers.remove(id);
        Ok(())
    }
}
