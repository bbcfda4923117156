//! `prepare`: everything about a Docker session decided on the host before
//! anything is created (SPEC §2 "What `start` does", step 3). The daemon is
//! only queried: its runtimes, which images exist, which names are taken.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::Ipv4Net;

use super::client::{Engine, EngineError, LabelFilter, NetworkInfo};
use super::image::{DEFAULT_CLAUDE_CODE_VERSION, is_claude_code_version};
use super::names::{Names, Owner, new_session_id, this_host};
use super::warm::{self, WarmBottle};
use crate::backend::BackendError;
use crate::core::egress::{EgressError, EgressPolicy};
use crate::core::env::EnvSource;
use crate::core::pipelock::{self, PipelockConfigError};
use crate::core::provision::{self, ProvisionError, ProvisionSet};
use crate::core::slug::slugify;
use crate::core::spec::BottleSpec;
use crate::core::subnet::{self, ADDRESS_POOL_ENV, AddressPool, AddressPoolError};
use crate::diagnostic::Diagnostic;
use crate::printer::Printer;

pub(crate) const PIPELOCK_IMAGE_ENV: &str = "CLAUDE_BOTTLE_PIPELOCK_IMAGE";
pub(crate) const DEFAULT_PIPELOCK_IMAGE: &str = "ghcr.io/luckypipewrench/pipelock:2.3.0";
pub(crate) const RUNSC: &str = "runsc";
/// The image the fence runs instead of the built-in agent image; it must
/// provide `sh`, `iptables` and `ip6tables`.
pub(crate) const FENCE_IMAGE_ENV: &str = "CLAUDE_BOTTLE_FENCE_IMAGE";
/// The Claude Code version of the built-in agent image, instead of the pin.
pub(crate) const CLAUDE_CODE_VERSION_ENV: &str = "CLAUDE_BOTTLE_CLAUDE_CODE_VERSION";

/// The process environment `prepare` reads, gathered once so tests pass their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub proxy_image: String,
    pub container_home: String,
    /// The Claude Code version the built-in agent image is built with: the
    /// pin, or a valid `CLAUDE_BOTTLE_CLAUDE_CODE_VERSION`.
    pub claude_code_version: String,
    /// The range the bottle's networks are carved from.
    pub address_pool: AddressPool,
    /// The host's IPv4 routes: address space the user already uses.
    pub host_routes: Vec<Ipv4Net>,
    /// `CLAUDE_BOTTLE_FENCE_IMAGE`; none means the built-in agent image.
    pub fence_image: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    #[error(
        "`{CLAUDE_CODE_VERSION_ENV}` is `{value}`, which is not a Claude Code version: expected digits and dots such as `2.1.328`, optionally followed by a `-prerelease` of letters, digits, `.` and `-`"
    )]
    ClaudeCodeVersion {
        /// The value as set, escaped for the terminal.
        value: String,
    },
    #[error(transparent)]
    AddressPool(#[from] AddressPoolError),
}

impl Diagnostic for SettingsError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::ClaudeCodeVersion { .. } => vec![format!(
                "set it to a published version of `@anthropic-ai/claude-code`, or unset it to use the pinned {DEFAULT_CLAUDE_CODE_VERSION}"
            )],
            Self::AddressPool(e) => e.hints(),
        }
    }
}

impl From<SettingsError> for BackendError {
    fn from(err: SettingsError) -> Self {
        BackendError::from_usage(&err)
    }
}

impl Settings {
    /// Reads the environment; a malformed `CLAUDE_BOTTLE_CLAUDE_CODE_VERSION`
    /// is refused here, before anything is created.
    pub fn from_env() -> Result<Self, SettingsError> {
        Ok(Self {
            proxy_image: proxy_image_from_env(),
            container_home: non_empty_env(provision::CONTAINER_HOME_ENV)
                .unwrap_or_else(|| provision::DEFAULT_CONTAINER_HOME.to_owned()),
            claude_code_version: claude_code_version_from_env()?,
            address_pool: AddressPool::from_env()?,
            host_routes: subnet::read_host_routes(),
            fence_image: non_empty_env(FENCE_IMAGE_ENV),
        })
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `CLAUDE_BOTTLE_PIPELOCK_IMAGE` when set and not empty, else the default.
pub(crate) fn proxy_image_from_env() -> String {
    non_empty_env(PIPELOCK_IMAGE_ENV).unwrap_or_else(|| DEFAULT_PIPELOCK_IMAGE.to_owned())
}

/// The Claude Code version `start` builds the built-in image with:
/// `CLAUDE_BOTTLE_CLAUDE_CODE_VERSION` when set and not empty, else the pin.
pub(crate) fn claude_code_version_from_env() -> Result<String, SettingsError> {
    let value = std::env::var_os(CLAUDE_CODE_VERSION_ENV);
    claude_code_version(value.as_deref().map(|v| v.to_string_lossy()).as_deref())
}

/// `claude_code_version_from_env` for the variable's value `set`.
pub(crate) fn claude_code_version(set: Option<&str>) -> Result<String, SettingsError> {
    match set {
        None | Some("") => Ok(DEFAULT_CLAUDE_CODE_VERSION.to_owned()),
        Some(value) if is_claude_code_version(value) => Ok(value.to_owned()),
        Some(value) => Err(SettingsError::ClaudeCodeVersion {
            value: value.escape_debug().to_string(),
        }),
    }
}

/// What gVisor releases older than mid-2024 say when they take the
/// container's network namespace for the host's, as they do on Linux 6.10
/// and later (their test looks for a file those kernels make in every
/// namespace). Debian bookworm's `runsc` (20221219) is one of them.
const RUNSC_ROOT_NETNS: &str = "cannot run with network enabled in root network namespace";

/// How to fix a failure of `runsc` recognised in the daemon's `detail`.
pub(crate) fn runsc_fix(detail: &str) -> Option<String> {
    detail.contains(RUNSC_ROOT_NETNS).then(|| {
        format!(
            "this gVisor release does not run on Linux 6.10 and later as registered: upgrade gVisor, \
             or add `\"runtimeArgs\": [\"--network=host\"]` to `runtimes.{RUNSC}` in `/etc/docker/daemon.json` \
             and reload dockerd (SIGHUP), so gVisor uses the network namespace Docker made for the container"
        )
    })
}

/// What to do about what a container whose start under `runsc` failed
/// (`detail`, the daemon's error) may leave, when its sandbox was made: Docker
/// before 23.0 deletes the containerd task of a failed start without killing
/// it (moby/moby#44399), and Debian's gVisor 20221219 will not be killed
/// before it has started, so the sandbox, its gofer and its shim outlive the
/// container, out of the Engine API's reach. A failure at the runtime's create
/// step made no sandbox.
pub(crate) fn runsc_leftover_hint(id: &str, detail: &str) -> Option<String> {
    detail.contains("runtime start failed").then(|| {
        format!(
            "gVisor's sandbox of the failed container can outlive it (moby/moby#44399: Docker before 23.0 \
             does not kill it, and gVisor 20221219 refuses to be killed before it starts): `pgrep -af {id}` \
             lists it and its shim; as root, end them with `RUNSC --root=ROOT delete --force {id}`, then \
             `ctr --address ADDRESS -n moby task delete {id}` and `ctr --address ADDRESS -n moby container delete {id}`, \
             where RUNSC is the daemon's runsc, ROOT the sandbox's `--root` and ADDRESS the shim's `-address` in that list"
        )
    })
}

/// The OCI runtime of the agent container (the proxy always uses the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    Runsc,
    Default,
}

impl Runtime {
    pub fn detect(registered: &[String]) -> Self {
        if registered.iter().any(|r| r == RUNSC) {
            Self::Runsc
        } else {
            Self::Default
        }
    }

    /// The `HostConfig.Runtime` value: none means the daemon's default.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::Runsc => Some(RUNSC),
            Self::Default => None,
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Runsc => "runsc (gVisor)",
            Self::Default => "runc (default)",
        })
    }
}

/// Which image the agent container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentImageChoice {
    /// The embedded Dockerfile's image with Claude Code
    /// `claude_code_version`, under its content-addressed tag.
    BuiltIn {
        tag: String,
        claude_code_version: String,
        present: bool,
    },
    /// The bottle's `image`, used as it is.
    Bottle { image: String },
}

impl AgentImageChoice {
    pub fn reference(&self) -> &str {
        match self {
            Self::BuiltIn { tag, .. } => tag,
            Self::Bottle { image } => image,
        }
    }
}

/// Whether the session takes a warm bottle (see `warm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WarmChoice {
    /// The warm bottles that fit the plan, oldest first: `start` claims the
    /// first one no other session claims before it.
    Claim(Vec<WarmBottle>),
    /// None fits: the session starts cold.
    NoneFits,
    /// Why no warm bottle can be used for, or made of, this plan.
    Unavailable(&'static str),
}

/// Why runsc bottles are never warm: the agent's files are copied into a
/// warm bottle while it runs, which gVisor's own view of the filesystem does
/// not take up.
pub(crate) const RUNSC_NOT_WARM: &str =
    "gVisor does not see files copied into a running container, so runsc bottles start cold";

/// A prepared Docker session: plain data.
#[derive(Debug, Clone)]
pub(crate) struct SessionPlan {
    pub spec: BottleSpec,
    pub owner: Owner,
    pub slug: String,
    pub names: Names,
    pub image: AgentImageChoice,
    pub proxy_image: String,
    /// When absent, the bring-up pulls it (a fresh machine never has it).
    pub proxy_image_present: bool,
    /// What the fence runs (`specs::fence_container_spec`): the built-in
    /// agent image, which ships `iptables`, unless `CLAUDE_BOTTLE_FENCE_IMAGE`
    /// names another.
    pub fence_image: String,
    /// The Claude Code version to build the built-in image with when only
    /// the fence needs it (the bottle runs an image of its own) and it is absent.
    pub fence_image_build: Option<String>,
    pub runtime: Runtime,
    pub policy: EgressPolicy,
    pub pipelock_yaml: String,
    pub provision: ProvisionSet,
    pub container_home: String,
    pub addresses: Addresses,
    /// The fingerprint of what the bottle is made of (`warm::fingerprint`),
    /// when it can be warm; `owner.warm` carries it on a bottle `prewarm` makes.
    pub fingerprint: Option<String>,
    pub warm: WarmChoice,
    /// Every container and network name on the daemon when it was prepared.
    pub taken: BTreeSet<String>,
}

/// Where the session's two networks go: a first choice made against every
/// network and host route known at `prepare`, and what a second choice
/// needs when a concurrent session takes one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addresses {
    pub pool: AddressPool,
    pub internal: Ipv4Net,
    pub egress: Ipv4Net,
    pub host_routes: Vec<Ipv4Net>,
    /// Where this session's search of the pool starts (from its ID).
    pub seed: u64,
}

impl Addresses {
    /// Two free subnets of `pool`, none overlapping `networks`' or `host_routes`.
    pub fn choose(
        pool: AddressPool,
        networks: &[NetworkInfo],
        host_routes: Vec<Ipv4Net>,
        seed: u64,
    ) -> Result<Self, AddressesExhausted> {
        let mut taken = subnet::ipv4_subnets(
            networks
                .iter()
                .flat_map(|n| n.subnets.iter().map(String::as_str)),
        );
        taken.extend(host_routes.iter().copied());
        match pool.choose(&taken, 2, seed).as_deref() {
            Some(&[internal, egress]) => Ok(Self {
                pool,
                internal,
                egress,
                host_routes,
                seed,
            }),
            _ => Err(AddressesExhausted { pool }),
        }
    }
}

/// The pool has no two free subnets left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no free subnet for the bottle's networks in `{pool}` (`{ADDRESS_POOL_ENV}`): the networks on the daemon and the host's routes use it up"
)]
pub(crate) struct AddressesExhausted {
    pub pool: AddressPool,
}

impl Diagnostic for AddressesExhausted {
    fn hints(&self) -> Vec<String> {
        vec![
            "remove bottles left behind with `claude-bottle cleanup`".to_owned(),
            format!(
                "or set `{ADDRESS_POOL_ENV}` to a wider range no network of yours uses (each bottle takes two /{} subnets)",
                subnet::SUBNET_PREFIX
            ),
        ]
    }
}

/// The start of a session's search of the pool, from its random ID.
pub(crate) fn address_seed(session: &str) -> u64 {
    session
        .get(..16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error(transparent)]
    Pipelock(#[from] PipelockConfigError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    AgentEnv(#[from] crate::core::agent_env::AgentEnvError),
    #[error(transparent)]
    Addresses(#[from] AddressesExhausted),
    #[error("image `{image}` of bottle `{bottle}` is not present locally")]
    BottleImageMissing { image: String, bottle: String },
    #[error("the fence image `{image}` (`{FENCE_IMAGE_ENV}`) is not present locally")]
    FenceImageMissing { image: String },
    #[error("no free name for agent `{agent}`: `{first}` up to suffix -{max} are all taken")]
    NoFreeName {
        agent: String,
        first: String,
        max: u32,
    },
    #[error("container name `{name}` (from `--name`) is already in use")]
    PinnedNameTaken { name: String },
    #[error(
        "`--name` value `{name}` is not a container name Docker accepts: expected a letter or digit, then at least one letter, digit, `_`, `.` or `-`"
    )]
    InvalidPinnedName { name: String },
}

impl Diagnostic for PrepareError {
    fn hints(&self) -> Vec<String> {
        let hint = match self {
            Self::Engine(e) => return e.hints(),
            Self::Egress(e) => return e.hints(),
            Self::Pipelock(e) => return e.hints(),
            Self::Provision(e) => return e.hints(),
            Self::AgentEnv(e) => return e.hints(),
            Self::Addresses(e) => return e.hints(),
            Self::BottleImageMissing { image, bottle } => format!(
                "build or pull it first (`docker pull {image}`), or remove `image` from bottle `{bottle}` to use the built-in agent image"
            ),
            Self::FenceImageMissing { image } => format!(
                "build or pull it first (`docker pull {image}`): it must provide `sh`, `iptables` and `ip6tables`; or unset `{FENCE_IMAGE_ENV}` to use the built-in agent image"
            ),
            Self::NoFreeName { .. } => {
                "run `claude-bottle cleanup` to remove bottles left behind".to_owned()
            }
            Self::PinnedNameTaken { .. } => "choose another `--name`, or remove the old container (`claude-bottle cleanup` removes claude-bottle's)".to_owned(),
            Self::InvalidPinnedName { .. } => "pick a name such as `my-bottle`".to_owned(),
        };
        vec![hint]
    }
}

impl From<PrepareError> for BackendError {
    fn from(err: PrepareError) -> Self {
        let usage = matches!(
            err,
            PrepareError::Egress(_)
                | PrepareError::Pipelock(_)
                | PrepareError::AgentEnv(_)
                | PrepareError::PinnedNameTaken { .. }
                | PrepareError::InvalidPinnedName { .. }
        );
        if usage {
            BackendError::from_usage(&err)
        } else {
            BackendError::from_failure(&err)
        }
    }
}

/// Decides the session: runtime, images, names, proxy config and what to
/// provision. Creates nothing on the daemon.
pub(crate) async fn prepare<E: Engine>(
    engine: &E,
    spec: BottleSpec,
    settings: &Settings,
    built_in_tag: String,
    printer: &Printer,
) -> Result<SessionPlan, PrepareError> {
    // Host-side checks first: they need no daemon and are the user's to fix.
    let policy = EgressPolicy::for_bottle(&spec.bottle_name, &spec.bottle)?;
    let pipelock_yaml = pipelock::render(&spec.bottle_name, &policy)?;
    crate::core::agent_env::check(&spec.bottle_name, &spec.env, printer)?;

    let agent_image = spec
        .bottle
        .image
        .clone()
        .unwrap_or_else(|| built_in_tag.clone());
    let all = LabelFilter::new();
    let fence_image = settings
        .fence_image
        .clone()
        .unwrap_or_else(|| built_in_tag.clone());
    let (runtimes, agent_image_id, proxy_image_id, fence_image_present, containers, networks) = futures_util::join!(
        engine.runtimes(),
        engine.image_id(&agent_image),
        engine.image_id(&settings.proxy_image),
        engine.image_exists(&fence_image),
        engine.list_containers(all.clone()),
        engine.list_networks(all),
    );
    let runtime = Runtime::detect(&runtimes?);
    let agent_image_id = agent_image_id?;
    let agent_image_present = agent_image_id.is_some();
    printer.status(format_args!("docker runtime: {runtime}"));
    let image = match &spec.bottle.image {
        Some(image) if !agent_image_present => {
            return Err(PrepareError::BottleImageMissing {
                image: image.clone(),
                bottle: spec.bottle_name.clone(),
            });
        }
        Some(image) => AgentImageChoice::Bottle {
            image: image.clone(),
        },
        None => AgentImageChoice::BuiltIn {
            tag: built_in_tag,
            claude_code_version: settings.claude_code_version.clone(),
            present: agent_image_present,
        },
    };
    let proxy_image_id = proxy_image_id?;
    let proxy_image_present = proxy_image_id.is_some();
    let fence_image_present = fence_image_present?;
    if !fence_image_present && settings.fence_image.is_some() {
        return Err(PrepareError::FenceImageMissing { image: fence_image });
    }
    // The built-in image, absent: built for the agent anyway, or for the fence alone.
    let fence_image_build = (!fence_image_present
        && !matches!(image, AgentImageChoice::BuiltIn { .. }))
    .then(|| settings.claude_code_version.clone());

    let (containers, networks) = (containers?, networks?);
    let taken: BTreeSet<String> = containers
        .iter()
        .map(|c| c.name.clone())
        .chain(networks.iter().map(|n| n.name.clone()))
        .collect();
    let slug = slugify(&spec.agent_name);
    let pinned = spec.pinned_name.as_deref();
    if let Some(name) = pinned
        && !is_container_name(name)
    {
        return Err(PrepareError::InvalidPinnedName {
            name: name.to_owned(),
        });
    }
    if let Some(name) = pinned
        && taken.contains(name)
    {
        return Err(PrepareError::PinnedNameTaken {
            name: name.to_owned(),
        });
    }
    let names =
        Names::first_free(&slug, pinned, &taken).ok_or_else(|| PrepareError::NoFreeName {
            agent: spec.agent_name.clone(),
            first: Names::new(&slug, 1, pinned).agent,
            max: super::names::MAX_SUFFIX,
        })?;

    let provision = provision::build(&spec, &names.proxy, &settings.container_home)?;
    let owner = Owner::of_this_process(new_session_id(), &spec);
    let addresses = Addresses::choose(
        settings.address_pool,
        &networks,
        settings.host_routes.clone(),
        address_seed(&owner.session),
    )?;
    let mut plan = SessionPlan {
        spec,
        owner,
        slug,
        names,
        image,
        proxy_image: settings.proxy_image.clone(),
        proxy_image_present,
        fence_image,
        fence_image_build,
        runtime,
        policy,
        pipelock_yaml,
        provision,
        container_home: settings.container_home.clone(),
        addresses,
        fingerprint: None,
        warm: WarmChoice::NoneFits,
        taken,
    };
    match (runtime, agent_image_id, proxy_image_id) {
        (Runtime::Runsc, _, _) => plan.warm = WarmChoice::Unavailable(RUNSC_NOT_WARM),
        (_, None, _) => {
            plan.warm = WarmChoice::Unavailable("the agent image is not built yet");
        }
        (_, _, None) => {
            plan.warm = WarmChoice::Unavailable("the proxy image is not pulled yet");
        }
        (Runtime::Default, Some(agent_id), Some(proxy_id)) => {
            let fingerprint = warm::fingerprint(&plan, &agent_id, &proxy_id);
            let found = warm::find(
                &fingerprint,
                &plan.slug,
                &this_host(),
                &containers,
                &networks,
            );
            if !found.is_empty() {
                plan.warm = WarmChoice::Claim(found);
            }
            plan.fingerprint = Some(fingerprint);
        }
    }
    Ok(plan)
}

/// Docker's own rule for container names (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`),
/// without the leading `/` it would strip: the name must be used as given.
fn is_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && !chars.as_str().is_empty()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn or_none(items: Vec<String>) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// The plan as printed on stderr before the `y/N` question (SPEC §2 "The plan shows").
impl fmt::Display for SessionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are right-aligned so each line reads `key: value` exactly,
        // e.g. `docker runtime: runc (default)`.
        let line =
            |f: &mut fmt::Formatter<'_>, key: &str, value: &str| writeln!(f, "{key:>16}: {value}");
        let spec = &self.spec;
        writeln!(f, "claude-bottle plan")?;
        line(
            f,
            "agent",
            &format!("{} (bottle `{}`)", spec.agent_name, spec.bottle_name),
        )?;
        line(f, "backend", "docker")?;
        let image = match &self.image {
            AgentImageChoice::BuiltIn {
                tag,
                claude_code_version,
                present,
            } => {
                let built = if *present { "" } else { ", will be built" };
                format!("{tag} (built-in, Claude Code {claude_code_version}{built})")
            }
            AgentImageChoice::Bottle { image } => format!("{image} (from the bottle)"),
        };
        line(f, "image", &image)?;
        let (names, warm) = match &self.warm {
            WarmChoice::Claim(found) => (
                &found[0].names,
                match found.len() {
                    1 => format!("yes, `{}`", found[0].warm_name()),
                    n => format!("yes, `{}` ({n} fit)", found[0].warm_name()),
                },
            ),
            WarmChoice::NoneFits => (&self.names, "none fits; starting cold".to_owned()),
            WarmChoice::Unavailable(why) => (&self.names, format!("no: {why}")),
        };
        let (agent, pinned) = match &self.spec.pinned_name {
            Some(pinned) => (pinned.as_str(), " (--name)"),
            None => (names.agent.as_str(), ""),
        };
        line(f, "warm bottle", &warm)?;
        line(f, "container", &format!("{agent}{pinned}"))?;
        let pulled = if self.proxy_image_present {
            ""
        } else {
            ", will be pulled"
        };
        line(
            f,
            "proxy",
            &format!("{} ({}{pulled})", names.proxy, self.proxy_image),
        )?;
        let built = if self.fence_image_build.is_some() {
            ", will be built"
        } else {
            ""
        };
        line(
            f,
            "fence",
            &format!("{} ({}{built})", self.names.fence, self.fence_image),
        )?;
        line(
            f,
            "networks",
            &format!(
                "{} (internal), {} (egress)",
                names.internal_network, names.egress_network
            ),
        )?;
        line(f, "docker runtime", &self.runtime.to_string())?;
        let allow: Vec<String> = self
            .policy
            .allowlist
            .iter()
            .map(ToString::to_string)
            .collect();
        line(f, "allowlist", &format!("{} entries", allow.len()))?;
        for entry in &allow {
            writeln!(f, "{:>16}  - {entry}", "")?;
        }
        line(
            f,
            "trusted domains",
            &or_none(
                self.policy
                    .trusted_domains
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        )?;
        line(
            f,
            "ip cidrs",
            &or_none(
                self.policy
                    .ip_allowlist
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        )?;
        line(
            f,
            "ssh hosts",
            &or_none(
                spec.bottle
                    .ssh
                    .iter()
                    .map(|e| {
                        if e.host == e.host_name.to_string() {
                            e.host.clone()
                        } else {
                            format!("{} ({}:{})", e.host, e.host_name, e.port)
                        }
                    })
                    .collect(),
            ),
        )?;
        line(
            f,
            "skills",
            &or_none(spec.agent.skills.iter().map(ToString::to_string).collect()),
        )?;
        line(
            f,
            "env",
            &or_none(
                spec.env
                    .vars
                    .iter()
                    .map(|v| match (&v.source, &v.host_var) {
                        (EnvSource::Host | EnvSource::Prompted, Some(var)) if *var != v.name => {
                            format!("{} ({} `{var}`)", v.name, v.source)
                        }
                        _ => format!("{} ({})", v.name, v.source),
                    })
                    .collect(),
            ),
        )?;
        let cwd = self.provision.workspace().map_or_else(
            || "(none)".to_owned(),
            |w| format!("{} ({})", w.root.display(), w.describe()),
        );
        line(f, "cwd", &cwd)?;
        line(
            f,
            "remote-control",
            if spec.remote_control { "on" } else { "off" },
        )?;
        let session = match &self.warm {
            WarmChoice::Claim(found) => &found[0].session,
            _ => &self.owner.session,
        };
        line(f, "session", session)
    }
}
