//! `doctor`: what a bottle needs from this daemon and host, checked one by
//! one. Everything is read-only but the runsc trial, a throwaway container
//! labelled `claude-bottle.doctor=1` (and managed, so `cleanup` would find
//! it after an interrupted doctor) that is removed in every case. Every
//! call to the daemon is bounded.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::client::{ContainerSpec, DaemonInfo, Engine, EngineError, Labels};
use super::endpoint::docker_command;
use super::image::DEFAULT_CLAUDE_CODE_VERSION;
use super::names::{LABEL_HOST, LABEL_MANAGED, LABEL_PID, LABEL_ROLE, this_host};
use super::plan::{CLAUDE_CODE_VERSION_ENV, RUNSC, runsc_fix, runsc_leftover_hint};
use crate::backend::Check;
use crate::core::subnet::{self, AddressPool};
use crate::diagnostic::Diagnostic;

/// How long one query to the daemon may take.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// How long the runsc trial may take, from creation to exit.
const TRIAL_LIMIT: Duration = Duration::from_secs(30);
/// The label of the runsc trial container.
pub(crate) const DOCTOR_LABEL: &str = "claude-bottle.doctor";
/// The first Docker release whose `--internal` networks keep DNS inside.
const CVE_FIXED: (u32, u32, u32) = (25, 0, 5);
/// Fewer bottles than this left in the address pools is a warning.
const FEW_BOTTLES: usize = 5;
/// Less free disk than this is a warning.
const LOW_DISK: u64 = 5 << 30;
/// Networks per bottle.
const NETWORKS_PER_BOTTLE: u64 = 2;

pub(crate) const NEEDS_ENGINE: &str = "needs the engine";

/// What `doctor` checks against, gathered by the caller.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub proxy_image: String,
    /// The built-in agent image's tag, for the Claude Code version `start`
    /// would use (the pin's when `claude_code_version` is an error).
    pub built_in_tag: String,
    /// The Claude Code version `start` would build the built-in image with,
    /// or why `CLAUDE_BOTTLE_CLAUDE_CODE_VERSION` is refused (message, hints).
    pub claude_code_version: Result<String, (String, Vec<String>)>,
    /// Bottles with an image of their own, by bottle name.
    pub bottle_images: Vec<(String, String)>,
    /// The range bottles' networks come from, or why
    /// `CLAUDE_BOTTLE_ADDRESS_POOL` is refused (message, hints).
    pub address_pool: Result<AddressPool, (String, Vec<String>)>,
    /// The host's IPv4 routes, which no bottle's subnet may overlap.
    pub host_routes: Vec<ipnet::Ipv4Net>,
}

/// What was found on this host, outside the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    /// `docker buildx version`'s first line, or why there is none.
    pub buildx: Result<String, String>,
    /// Whether the docker CLI could be run at all (builds need it).
    pub docker_cli: bool,
    /// Free bytes of the daemon's root dir when local, else of the temp dir.
    pub disk: Option<(PathBuf, u64)>,
}

/// The checks, in the order they are shown. `engine` is the connection, or
/// why there is none.
pub(crate) async fn checks<E: Engine>(
    engine: Result<&E, (String, Vec<String>)>,
    inputs: &Inputs,
    host: impl AsyncFnOnce(Option<&DaemonInfo>) -> HostFacts,
) -> Vec<Check> {
    let mut out = Vec::new();
    let daemon = match engine {
        Err(why) => Err(why),
        Ok(engine) => bounded("read the daemon's version", engine.daemon_info())
            .await
            .map(|info| (engine, info))
            .map_err(|e| (e.to_string(), e.hints())),
    };
    match &daemon {
        Ok((engine, info)) => {
            out.push(engine_check(engine.endpoint(), info));
            out.push(dns_check(info));
            out.push(runsc_check(*engine, info, inputs).await);
            if info.podman {
                out.push(podman_container_check(*engine, inputs).await);
                out.push(podman_host_check(info, &facts_of_host(engine.endpoint())));
                out.push(podman_seccomp_check(engine.endpoint()));
                out.extend(podman_rootless_checks(info));
            }
            out.push(address_check(*engine, inputs).await);
            out.extend(image_checks(*engine, inputs).await);
        }
        Err((message, hints)) => {
            let mut engine = Check::fail("engine", message.clone());
            engine.hints = hints.clone();
            out.push(engine);
            for name in [
                "internal-dns",
                "runsc",
                "address-space",
                "agent-image",
                "proxy-image",
            ] {
                out.push(Check::warn(name, NEEDS_ENGINE));
            }
        }
    }
    let facts = host(daemon.as_ref().ok().map(|(_, info)| info)).await;
    out.push(buildx_check(&facts));
    out.push(disk_check(facts.disk.as_ref()));
    out.push(claude_code_check(inputs));
    out
}

async fn bounded<T>(
    operation: &str,
    call: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::time::timeout(CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| Err(EngineError::timed_out(operation, CALL_LIMIT)))
}

fn kind(info: &DaemonInfo) -> &'static str {
    if info.podman { "Podman" } else { "Docker" }
}

fn engine_check(endpoint: &str, info: &DaemonInfo) -> Check {
    Check::ok(
        "engine",
        format!(
            "{} {} (API {}) at {endpoint}",
            kind(info),
            info.version,
            info.api_version
        ),
    )
}

/// `major.minor.patch` from the front of a version such as `20.10.24+dfsg1`.
fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn dns_check(info: &DaemonInfo) -> Check {
    const DESIGN: &str = "the agent's only DNS server is 127.0.0.1 (`--dns 127.0.0.1`), so no query leaves the bottle";
    if info.podman {
        return Check::ok(
            "internal-dns",
            format!("CVE-2024-29018 is Docker's, not Podman's; and {DESIGN}"),
        );
    }
    match parse_version(&info.version) {
        Some(v) if v < CVE_FIXED => Check::ok(
            "internal-dns",
            format!(
                "Docker {} is older than 25.0.5 and forwards an --internal network's DNS to the host (CVE-2024-29018); closed by design: {DESIGN}",
                info.version
            ),
        )
        .hint("Docker 25.0.5 or later fixes it for other containers on --internal networks"),
        Some(_) => Check::ok(
            "internal-dns",
            format!("Docker {} is not affected by CVE-2024-29018 (fixed in 25.0.5); and {DESIGN}", info.version),
        ),
        None => Check::warn(
            "internal-dns",
            format!(
                "Docker version `{}` not understood, so exposure to CVE-2024-29018 is unknown; closed by design anyway: {DESIGN}",
                info.version
            ),
        ),
    }
}

/// The image a runsc trial can use: the agent's, which has `true`.
async fn trial_image<E: Engine>(engine: &E, inputs: &Inputs) -> Option<String> {
    let candidates = std::iter::once(inputs.built_in_tag.clone())
        .chain(inputs.bottle_images.iter().map(|(_, image)| image.clone()));
    for image in candidates {
        if let Ok(true) = bounded("inspect an image", engine.image_exists(&image)).await {
            return Some(image);
        }
    }
    None
}

async fn runsc_check<E: Engine>(engine: &E, info: &DaemonInfo, inputs: &Inputs) -> Check {
    if info.podman {
        return Check::warn(
            "runsc",
            "Podman's Docker API runs every container under Podman's default runtime; agents run there, with the host kernel exposed to them",
        )
        .hint("to run agents under gVisor, use Docker with `runsc` registered: https://gvisor.dev/docs/user_guide/install/");
    }
    if !info.runtimes.iter().any(|r| r == RUNSC) {
        return Check::warn(
            "runsc",
            format!(
                "not registered (runtimes: {}); agents run under runc, with the host kernel exposed to them",
                info.runtimes.join(", ")
            ),
        )
        .hint("install gVisor and register `runsc` with the daemon: https://gvisor.dev/docs/user_guide/install/");
    }
    let Some(image) = trial_image(engine, inputs).await else {
        return Check::warn(
            "runsc",
            "registered; not tried: no agent image is present to try it with",
        )
        .hint("run `claude-bottle doctor` again after a first `claude-bottle start`");
    };
    let clock = Instant::now();
    match trial(engine, &image, Some(RUNSC), false).await {
        Ok(()) => Check::ok(
            "runsc",
            format!(
                "registered and works: a container of `{image}` ran under it in {:.1} s",
                clock.elapsed().as_secs_f64()
            ),
        ),
        Err(TrialFailed { why, created }) => {
            let check = Check::fail(
                "runsc",
                format!("registered, but a container could not run under it: {why}"),
            );
            let check = match runsc_fix(&why) {
                Some(fix) => check.hint(fix),
                None => check,
            };
            let check = check.hint("`start` uses runsc whenever it is registered, so every bottle would fail: fix the gVisor install, or unregister `runsc` from the daemon's configuration");
            match created.and_then(|id| runsc_leftover_hint(&id, &why)) {
                Some(leftover) => check.hint(leftover),
                None => check,
            }
        }
    }
}

/// Why a trial container did not run.
struct TrialFailed {
    why: String,
    /// Its ID, when it was created.
    created: Option<String>,
}

/// Runs `true` in a container of `image` under `runtime` (the default when
/// none), with an init process when `init`, without a network, and removes
/// it whatever happens.
async fn trial<E: Engine>(
    engine: &E,
    image: &str,
    runtime: Option<&str>,
    init: bool,
) -> Result<(), TrialFailed> {
    let name = format!("claude-bottle-doctor-{}", std::process::id());
    let spec = ContainerSpec {
        name: name.clone(),
        image: image.to_owned(),
        user: None,
        entrypoint: Some(vec!["true".to_owned()]),
        cmd: None,
        working_dir: None,
        env: Vec::new(),
        // Managed, so `cleanup` finds a trial that an interrupted doctor left.
        labels: Labels::from([
            (DOCTOR_LABEL.to_owned(), "1".to_owned()),
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_ROLE.to_owned(), "doctor".to_owned()),
            (LABEL_PID.to_owned(), std::process::id().to_string()),
            (LABEL_HOST.to_owned(), this_host()),
        ]),
        network: "none".to_owned(),
        extra_hosts: Vec::new(),
        dns: Vec::new(),
        runtime: runtime.map(str::to_owned),
        init,
        security_opt: Vec::new(),
        cap_drop: Vec::new(),
        cap_add: Vec::new(),
        pids_limit: None,
        no_user_namespaces: false,
    };
    // The ID once created; by name when the reply never came.
    let id = std::sync::Mutex::new(None::<String>);
    let ran = tokio::time::timeout(TRIAL_LIMIT, async {
        let created = engine
            .create_container(&spec)
            .await
            .map_err(|e| e.to_string())?;
        *id.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(created.clone());
        engine
            .start_container(&created)
            .await
            .map_err(|e| e.to_string())?;
        // Waited for, not inspected: Podman's inspect of a container that
        // just exited says `stopped`, which the client cannot read.
        match engine.wait_container(&created).await {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!("`true` exited with code {code}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let result =
        ran.unwrap_or_else(|_| Err(format!("no result within {} s", TRIAL_LIMIT.as_secs())));
    let created = id
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let leftover = created.clone().or(Some(name));
    if let Some(leftover) = leftover
        && let Err(e) = bounded(
            "remove the trial container",
            engine.remove_container(&leftover),
        )
        .await
    {
        tracing::warn!(container = %leftover, error = %e, "could not remove the runsc trial container");
    }
    result.map_err(|why| TrialFailed { why, created })
}

/// A container as a bottle's agent is run (an init process, the engine's
/// limits), tried on Podman: rootful Podman fails it out of the box where
/// `catatonit` is missing or the host refuses Podman's default limits.
async fn podman_container_check<E: Engine>(engine: &E, inputs: &Inputs) -> Check {
    let Some(image) = trial_image(engine, inputs).await else {
        return Check::warn(
            "podman-containers",
            "not tried: no agent image is present to try a container with",
        )
        .hint("run `claude-bottle doctor` again after a first `claude-bottle start`");
    };
    match trial(engine, &image, None, true).await {
        Ok(()) => Check::ok(
            "podman-containers",
            format!("a container of `{image}` with an init process ran"),
        ),
        Err(TrialFailed { why, .. }) => {
            let check = Check::fail(
                "podman-containers",
                format!("a container with an init process could not run: {why}"),
            );
            match podman_fix(&why) {
                Some(hint) => check.hint(hint),
                None => check,
            }
        }
    }
}

/// The host change a failed Podman container asks for, by its error.
pub(crate) fn podman_fix(error: &str) -> Option<String> {
    if error.contains("catatonit") || error.contains("container-init binary not found") {
        return Some("install `catatonit` (`apt-get install catatonit`): Podman runs it as a container's init process, and apt leaves it out where Docker's `tini` is installed".to_owned());
    }
    if error.contains("setting rlimit") {
        let limit = |flag: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("ulimit -H{flag}")])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|v| !v.is_empty() && v != "unlimited")
        };
        let nofile = limit("n").unwrap_or_else(|| "N".to_owned());
        let nproc = limit("u").unwrap_or_else(|| "M".to_owned());
        return Some(format!(
            "rootful Podman asks for 1048576 open files and processes, which this host refuses: under `[containers]` in /etc/containers/containers.conf (or a file in /etc/containers/containers.conf.d/) set `default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]`, no higher than the host's hard limits (`ulimit -Hn`, `ulimit -Hu`; processes also no higher than `kernel.pid_max`)"
        ));
    }
    None
}

/// What of this host matters to Podman, read where it can be read without
/// privileges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PodmanHostFacts {
    /// Docker's daemon socket exists here: its iptables rules are the host's.
    pub docker_here: bool,
    /// Missing rootless prerequisites, each with its fix.
    pub rootless_missing: Vec<(String, String)>,
}

/// The host as the Podman service at `endpoint` needs it. Rootless, what
/// matters is the service's user (the owner of its socket), who need not be
/// the one running this tool (root may talk to a user's service).
fn facts_of_host(endpoint: &str) -> PodmanHostFacts {
    use std::os::unix::fs::MetadataExt;
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    let me = nix::unistd::getuid();
    let service_uid = endpoint
        .strip_prefix("unix://")
        .and_then(|socket| std::fs::metadata(socket).ok())
        .map_or(me, |m| nix::unistd::Uid::from_raw(m.uid()));
    let user = nix::unistd::User::from_uid(service_uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| {
            (service_uid == me)
                .then(|| std::env::var("USER").ok())
                .flatten()
        })
        .unwrap_or_default();
    let uid = service_uid.to_string();
    let has_range = |file: &str| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|who| who == user || who == uid)
            })
        })
    };
    let mut missing = Vec::new();
    if !on_path("newuidmap") || !on_path("newgidmap") {
        missing.push((
            "`newuidmap`/`newgidmap`".to_owned(),
            "install `uidmap` (`apt-get install uidmap`)".to_owned(),
        ));
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        if !has_range(file) {
            missing.push((
                format!("a range for `{user}` in `{file}`"),
                format!("add one, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`"),
            ));
        }
    }
    // slirp4netns opens it as the user; some hosts leave it to root alone.
    // Without it the first container on a network fails to start, and
    // Podman's rootless network namespace stays half made until it is
    // reset (`podman system migrate` or a restart of the service).
    let tun_usable = if service_uid == me {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .is_ok()
    } else {
        std::fs::metadata("/dev/net/tun").is_ok_and(|m| {
            m.mode() & 0o006 == 0o006
                || (m.uid() == service_uid.as_raw() && m.mode() & 0o600 == 0o600)
        })
    };
    if !tun_usable {
        missing.push((
            "read and write access to `/dev/net/tun`".to_owned(),
            "give every user access to it, its usual mode: `chmod 0666 /dev/net/tun` (as root)"
                .to_owned(),
        ));
    }
    if !on_path("slirp4netns") && !on_path("pasta") {
        missing.push((
            "`slirp4netns` or `pasta`".to_owned(),
            "install `slirp4netns` (`apt-get install slirp4netns`)".to_owned(),
        ));
    }
    PodmanHostFacts {
        docker_here: std::path::Path::new("/var/run/docker.sock").exists(),
        rootless_missing: missing,
    }
}

/// The host changes Podman needs beyond a container that runs: rootful,
/// beside Docker, the FORWARD rule its internal networks need; rootless,
/// the user namespace and network helpers.
pub(crate) fn podman_host_check(info: &DaemonInfo, facts: &PodmanHostFacts) -> Check {
    if info.rootless {
        if facts.rootless_missing.is_empty() {
            return Check::ok(
                "podman-host",
                "rootless: newuidmap, subordinate ids and a network helper are in place",
            );
        }
        let what: Vec<&str> = facts
            .rootless_missing
            .iter()
            .map(|(w, _)| w.as_str())
            .collect();
        let mut check = Check::fail(
            "podman-host",
            format!("rootless Podman needs {}", what.join(", ")),
        );
        check.hints = facts
            .rootless_missing
            .iter()
            .map(|(_, fix)| fix.clone())
            .collect();
        return check;
    }
    if facts.docker_here {
        return Check::warn(
            "podman-host",
            "rootful Podman beside Docker: Docker's iptables set the FORWARD policy to DROP, and netavark adds no rule that lets two containers of one internal network (an agent and its proxy) talk",
        )
        .hint(format!("unless it is there already, add the rule (as root): `{PODMAN_FORWARD_RULE}`"));
    }
    Check::ok(
        "podman-host",
        "rootful Podman, without Docker's iptables rules beside it",
    )
}

/// Whether `start` can give the agent its seccomp profile on Podman (see
/// `seccomp.rs`): Podman's default profile must be readable here, and the
/// service on this host. `start` refuses to run the agent otherwise.
fn podman_seccomp_check(endpoint: &str) -> Check {
    use super::seccomp::{PODMAN_PROFILES, ProfileError, podman_base, without_user_namespaces};
    let made = if endpoint.starts_with("unix://") {
        podman_base(&PODMAN_PROFILES).and_then(|(path, base)| {
            without_user_namespaces(&base)
                .map(|_| path)
                .map_err(|detail| ProfileError::NotAProfile {
                    path: path.to_owned(),
                    detail,
                })
        })
    } else {
        Err(ProfileError::NotLocal {
            endpoint: endpoint.to_owned(),
        })
    };
    match made {
        Ok(path) => Check::ok(
            "podman-seccomp",
            format!(
                "the agent gets Podman's default seccomp profile (`{path}`) with new user namespaces refused, as Docker's default does"
            ),
        ),
        Err(e) => {
            let mut check = Check::fail(
                "podman-seccomp",
                format!(
                    "start cannot keep the agent from making user namespaces, so it will not start one: {e}"
                ),
            );
            check.hints = e.hints();
            check
        }
    }
}

/// What rootless Podman cannot do on this host, beyond what it needs to run
/// at all ([`podman_host_check`]).
fn podman_rootless_checks(info: &DaemonInfo) -> Vec<Check> {
    if !info.rootless {
        return Vec::new();
    }
    let mut out = Vec::new();
    out.push(if info.cgroup_v1 {
        Check::warn(
            "podman-limits",
            format!(
                "rootless Podman on cgroup v1 can set no resource limit: the agent's limit of {} processes is not applied, so a fork storm in a bottle reaches the host",
                super::specs::PIDS_LIMIT
            ),
        )
        .hint("boot the host with cgroup v2 (`systemd.unified_cgroup_hierarchy=1`), where systemd delegates the `pids` controller to users by default; or use rootful Podman or Docker")
    } else {
        Check::ok(
            "podman-limits",
            "cgroup v2: rootless Podman can apply the agent's process limit where the `pids` controller is delegated to the user (systemd's default)",
        )
    });
    if info.storage_driver.as_deref() == Some("vfs") {
        out.push(
            Check::warn(
                "podman-storage",
                "storage driver `vfs`: every container copies its image's layers whole, so bottles start slowly and take much disk",
            )
            .hint("as the service's user: `printf '[storage]\\ndriver = \"overlay\"\\n' > ~/.config/containers/storage.conf`, then `podman system reset` (removes its images and containers) and restart the service; the kernel's overlayfs works rootless since Linux 5.11"),
        );
    }
    out
}

/// The narrowest rule that lets a podman bridge forward frames between its
/// own ports when Docker's FORWARD policy is DROP.
pub(crate) const PODMAN_FORWARD_RULE: &str =
    "iptables -I DOCKER-USER -i podman+ -o podman+ -m physdev --physdev-is-bridged -j ACCEPT";

async fn address_check<E: Engine>(engine: &E, inputs: &Inputs) -> Check {
    let pool = match &inputs.address_pool {
        Ok(pool) => *pool,
        Err((message, hints)) => {
            let mut check = Check::fail("address-space", message.clone());
            check.hints = hints.clone();
            return check;
        }
    };
    let used = match bounded("list networks", engine.network_subnets()).await {
        Ok(used) => used,
        Err(e) => {
            let mut check = Check::fail("address-space", e.to_string());
            check.hints = e.hints();
            return check;
        }
    };
    let mut taken = subnet::ipv4_subnets(used.iter().map(String::as_str));
    taken.extend(inputs.host_routes.iter().copied());
    let (free, total) = pool.free(&taken);
    let bottles = free / NETWORKS_PER_BOTTLE;
    let detail = format!(
        "room for {bottles} more bottles: {free} of {total} /{} subnets free in `{pool}` (`{}`; a bottle uses {NETWORKS_PER_BOTTLE})",
        subnet::SUBNET_PREFIX,
        subnet::ADDRESS_POOL_ENV
    );
    if bottles < FEW_BOTTLES as u64 {
        Check::warn("address-space", detail).hint(format!(
            "remove bottles left behind (`claude-bottle cleanup`), or set `{}` to a wider range no network of yours uses",
            subnet::ADDRESS_POOL_ENV
        ))
    } else {
        Check::ok("address-space", detail)
    }
}

async fn image_checks<E: Engine>(engine: &E, inputs: &Inputs) -> Vec<Check> {
    let present = async |image: &str| bounded("inspect an image", engine.image_exists(image)).await;
    let mut out = Vec::new();
    let agent = match present(&inputs.built_in_tag).await {
        Ok(true) => Check::ok(
            "agent-image",
            format!("built-in `{}` present", inputs.built_in_tag),
        ),
        Ok(false) => Check::ok(
            "agent-image",
            format!(
                "built-in `{}` absent; start will build it",
                inputs.built_in_tag
            ),
        ),
        Err(e) => Check::fail("agent-image", e.to_string()),
    };
    out.push(agent);
    for (bottle, image) in &inputs.bottle_images {
        out.push(match present(image).await {
            Ok(true) => Check::ok(
                "agent-image",
                format!("`{image}` (bottle `{bottle}`) present"),
            ),
            Ok(false) => Check::warn(
                "agent-image",
                format!(
                    "`{image}` (bottle `{bottle}`) absent; start does not pull a bottle's own image"
                ),
            )
            .hint(format!("build it, or `docker pull {image}`")),
            Err(e) => Check::fail("agent-image", e.to_string()),
        });
    }
    out.push(match present(&inputs.proxy_image).await {
        Ok(true) => Check::ok("proxy-image", format!("`{}` present", inputs.proxy_image)),
        Ok(false) => Check::ok(
            "proxy-image",
            format!("`{}` absent; start will pull it", inputs.proxy_image),
        )
        .hint("whether its registry can be reached is known only by pulling"),
        Err(e) => Check::fail("proxy-image", e.to_string()),
    });
    out
}

fn buildx_check(facts: &HostFacts) -> Check {
    match &facts.buildx {
        Ok(version) => Check::ok("buildx", version.clone()),
        Err(why) if facts.docker_cli => Check::ok(
            "buildx",
            format!("not available ({why}); the agent image is built with the classic builder"),
        ),
        Err(why) => Check::warn(
            "buildx",
            format!("the docker CLI could not be run ({why}); start needs it to build the agent image and run Claude"),
        )
        .hint("install the docker CLI"),
    }
}

fn gib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let gib = bytes as f64 / f64::from(1u32 << 30);
    format!("{gib:.1} GiB")
}

fn disk_check(disk: Option<&(PathBuf, u64)>) -> Check {
    match disk {
        None => Check::warn("disk", "free space could not be read"),
        Some((path, free)) if *free < LOW_DISK => {
            Check::warn("disk", format!("{} free at {}", gib(*free), path.display()))
                .hint("the agent image needs about 1 GiB: free some space (`docker system prune`)")
        }
        Some((path, free)) => {
            Check::ok("disk", format!("{} free at {}", gib(*free), path.display()))
        }
    }
}

/// The Claude Code version the next `start` builds the built-in image with.
fn claude_code_check(inputs: &Inputs) -> Check {
    let mut detail = match &inputs.claude_code_version {
        Err((message, hints)) => {
            let mut check = Check::fail("claude-code", message.clone());
            check.hints = hints.clone();
            return check;
        }
        Ok(version) if version == DEFAULT_CLAUDE_CODE_VERSION => {
            format!("{version}, pinned in the built-in agent image")
        }
        Ok(version) => format!(
            "{version}, from `{CLAUDE_CODE_VERSION_ENV}` (the built-in agent image pins {DEFAULT_CLAUDE_CODE_VERSION})"
        ),
    };
    for (bottle, image) in &inputs.bottle_images {
        detail.push_str(&format!(
            "; bottle `{bottle}` uses its own image `{image}`, with whatever Claude Code it has"
        ));
    }
    Check::ok("claude-code", detail)
}

/// What this host says: buildx through the docker CLI aimed at `endpoint`,
/// and the free space of the daemon's root dir when it is on this host.
pub(crate) async fn host_facts(endpoint: &str, root_dir: Option<&str>) -> HostFacts {
    let mut command = docker_command(endpoint);
    command
        .args(["buildx", "version"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let (buildx, docker_cli) = match tokio::time::timeout(CALL_LIMIT, command.output()).await {
        Err(_) => (
            Err("`docker buildx version` did not answer".to_owned()),
            true,
        ),
        Ok(Err(e)) => (Err(e.to_string()), false),
        Ok(Ok(output)) if output.status.success() => (
            Ok(String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()),
            true,
        ),
        Ok(Ok(output)) => (
            Err(String::from_utf8_lossy(&output.stderr)
                .lines()
                .next()
                .unwrap_or("`docker buildx version` failed")
                .trim()
                .to_owned()),
            true,
        ),
    };
    let local = endpoint.starts_with("unix://");
    let dir = root_dir
        .filter(|_| local)
        .map(PathBuf::from)
        .filter(|d| d.exists())
        .unwrap_or_else(std::env::temp_dir);
    HostFacts {
        buildx,
        docker_cli,
        disk: free_bytes(&dir).map(|free| (dir, free)),
    }
}

fn free_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    #[allow(clippy::useless_conversion)]
    Some(u64::from(stat.blocks_available()) * u64::from(stat.fragment_size()))
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeEngine;
    use super::*;
    use crate::backend::CheckStatus;

    const TAG: &str = "claude-bottle-agent:0123456789abcdef";
    const PROXY: &str = "ghcr.io/luckypipewrench/pipelock:2.3.0";

    fn inputs() -> Inputs {
        Inputs {
            proxy_image: PROXY.to_owned(),
            built_in_tag: TAG.to_owned(),
            claude_code_version: Ok(DEFAULT_CLAUDE_CODE_VERSION.to_owned()),
            bottle_images: Vec::new(),
            address_pool: Ok(AddressPool::default()),
            host_routes: Vec::new(),
        }
    }

    fn daemon(version: &str) -> DaemonInfo {
        DaemonInfo {
            podman: false,
            rootless: false,
            version: version.to_owned(),
            api_version: "1.41".to_owned(),
            runtimes: Vec::new(),
            root_dir: Some("/var/lib/docker".to_owned()),
            cgroup_v1: false,
            storage_driver: Some("overlay2".to_owned()),
        }
    }

    fn engine(version: &str, runtimes: &[&str], images: &[&str]) -> FakeEngine {
        let engine = FakeEngine::new().with_images(images);
        {
            let mut state = engine.state();
            state.daemon = Some(daemon(version));
            state.runtimes = runtimes.iter().map(|r| (*r).to_owned()).collect();
        }
        engine
    }

    async fn run(engine: &FakeEngine, inputs: &Inputs) -> Vec<Check> {
        checks(Ok(engine), inputs, async |_| HostFacts {
            buildx: Ok("github.com/docker/buildx v0.12.1".to_owned()),
            docker_cli: true,
            disk: Some((PathBuf::from("/var/lib/docker"), 100 << 30)),
        })
        .await
    }

    fn find<'c>(checks: &'c [Check], name: &str) -> &'c Check {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    #[tokio::test]
    async fn an_old_daemon_is_exposed_but_closed_by_design_and_a_new_one_is_not_exposed() {
        let old = run(&engine("20.10.24+dfsg1", &["runc"], &[]), &inputs()).await;
        let dns = find(&old, "internal-dns");
        assert_eq!(dns.status, CheckStatus::Ok);
        assert!(dns.detail.contains("older than 25.0.5"), "{}", dns.detail);
        assert!(dns.detail.contains("closed by design"), "{}", dns.detail);
        assert!(
            find(&old, "engine")
                .detail
                .starts_with("Docker 20.10.24+dfsg1 (API 1.41) at ")
        );

        let new = run(&engine("25.0.5", &["runc"], &[]), &inputs()).await;
        let dns = find(&new, "internal-dns");
        assert_eq!(dns.status, CheckStatus::Ok);
        assert!(dns.detail.contains("not affected"), "{}", dns.detail);
        assert!(dns.hints.is_empty());

        let podman = engine("5.2.0", &[], &[]);
        podman.state().daemon.as_mut().unwrap().podman = true;
        let checks = run(&podman, &inputs()).await;
        assert!(find(&checks, "engine").detail.starts_with("Podman 5.2.0"));
        assert!(
            find(&checks, "internal-dns")
                .detail
                .contains("not Podman's")
        );
        // Podman's API chooses no runtime per container: runsc is not claimed.
        let runsc = find(&checks, "runsc");
        assert_eq!(runsc.status, CheckStatus::Warn, "{runsc:?}");
        assert!(
            runsc.detail.contains("Podman's default runtime"),
            "{runsc:?}"
        );
        assert!(checks.iter().any(|c| c.name == "podman-containers"));
        assert!(checks.iter().any(|c| c.name == "podman-host"));
    }

    #[tokio::test]
    async fn on_podman_a_container_with_an_init_is_tried_and_its_failure_names_the_fix() {
        let podman = engine("4.3.1", &[], &[TAG]);
        podman.state().daemon.as_mut().unwrap().podman = true;
        let checks = run(&podman, &inputs()).await;
        let containers = find(&checks, "podman-containers");
        assert_eq!(containers.status, CheckStatus::Ok, "{containers:?}");
        let created = podman.created_containers();
        assert_eq!(created.len(), 1);
        assert!(created[0].init);
        assert_eq!(created[0].runtime, None);
        assert!(podman.state().containers.is_empty(), "the trial is removed");

        let catatonit =
            podman_fix("crun: container-init binary not found: /usr/libexec/podman/catatonit")
                .unwrap();
        assert!(
            catatonit.contains("apt-get install catatonit"),
            "{catatonit}"
        );
        let ulimits = podman_fix(
            "runc create failed: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted",
        )
        .unwrap();
        assert!(
            ulimits.contains("default_ulimits = [\"nofile="),
            "{ulimits}"
        );
        assert!(ulimits.contains("containers.conf"), "{ulimits}");
        assert_eq!(podman_fix("no such image"), None);
    }

    #[test]
    fn the_podman_host_check_names_each_host_change() {
        let mut info = daemon("4.3.1");
        info.podman = true;
        let beside_docker = PodmanHostFacts {
            docker_here: true,
            rootless_missing: Vec::new(),
        };
        let check = podman_host_check(&info, &beside_docker);
        assert_eq!(check.status, CheckStatus::Warn);
        assert_eq!(
            check.hints,
            [format!(
                "unless it is there already, add the rule (as root): `{PODMAN_FORWARD_RULE}`"
            )]
        );
        let alone = PodmanHostFacts::default();
        assert_eq!(podman_host_check(&info, &alone).status, CheckStatus::Ok);

        info.rootless = true;
        let missing = PodmanHostFacts {
            docker_here: true,
            rootless_missing: vec![(
                "a range for `dev` in `/etc/subuid`".to_owned(),
                "add one".to_owned(),
            )],
        };
        let check = podman_host_check(&info, &missing);
        assert_eq!(check.status, CheckStatus::Fail);
        assert!(check.detail.contains("/etc/subuid"), "{check:?}");
        assert_eq!(check.hints, ["add one"]);
        assert_eq!(podman_host_check(&info, &alone).status, CheckStatus::Ok);
    }

    #[test]
    fn rootless_podman_is_told_what_it_cannot_limit_and_a_slow_storage_driver() {
        let mut info = daemon("4.3.1");
        info.podman = true;
        assert!(podman_rootless_checks(&info).is_empty(), "rootful");
        info.rootless = true;
        info.storage_driver = Some("overlay".to_owned());
        let checks = podman_rootless_checks(&info);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].name, "podman-limits");
        assert_eq!(checks[0].status, CheckStatus::Ok);
        info.cgroup_v1 = true;
        info.storage_driver = Some("vfs".to_owned());
        let checks = podman_rootless_checks(&info);
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].status, CheckStatus::Warn);
        assert!(checks[0].detail.contains("cgroup v1"), "{:?}", checks[0]);
        assert!(!checks[0].hints.is_empty());
        assert_eq!(checks[1].name, "podman-storage");
        assert_eq!(checks[1].status, CheckStatus::Warn);
        assert!(
            checks[1].hints[0].contains("driver = \"overlay\""),
            "{:?}",
            checks[1]
        );
    }

    #[test]
    fn podman_on_another_host_cannot_get_the_agents_seccomp_profile() {
        let check = podman_seccomp_check("tcp://10.0.0.1:2375");
        assert_eq!(check.status, CheckStatus::Fail);
        assert!(check.detail.contains("not on a local socket"), "{check:?}");
        assert!(!check.hints.is_empty());
    }

    #[tokio::test]
    async fn a_working_runsc_runs_a_labelled_throwaway_container_and_removes_it() {
        let engine = engine("20.10.24", &["runc", "runsc"], &[TAG]);
        let checks = run(&engine, &inputs()).await;
        let runsc = find(&checks, "runsc");
        assert_eq!(runsc.status, CheckStatus::Ok, "{runsc:?}");
        assert!(runsc.detail.starts_with("registered and works"));
        let created = engine.created_containers();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].runtime.as_deref(), Some("runsc"));
        assert_eq!(created[0].network, "none");
        assert_eq!(created[0].entrypoint, Some(vec!["true".to_owned()]));
        assert_eq!(
            created[0].labels.get(DOCTOR_LABEL).map(String::as_str),
            Some("1")
        );
        assert_eq!(
            created[0]
                .labels
                .get("claude-bottle.managed")
                .map(String::as_str),
            Some("true"),
            "cleanup finds a trial an interrupted doctor left"
        );
        assert!(engine.state().containers.is_empty(), "the trial is removed");
    }

    #[tokio::test]
    async fn a_failing_runsc_fails_and_its_container_is_removed_too() {
        let engine = engine("20.10.24", &["runc", "runsc"], &[TAG]);
        engine.state().failing_runtime = Some((
            "runsc".to_owned(),
            "OCI runtime create failed: runsc: boom".to_owned(),
        ));
        let checks = run(&engine, &inputs()).await;
        let runsc = find(&checks, "runsc");
        assert_eq!(runsc.status, CheckStatus::Fail);
        assert!(runsc.detail.contains("runsc: boom"), "{}", runsc.detail);
        // The runtime's create step failed: no sandbox was made.
        assert_eq!(runsc.hints.len(), 1, "{:?}", runsc.hints);
        assert!(engine.state().containers.is_empty(), "the trial is removed");
    }

    /// What Debian bookworm's runsc says on Linux 6.10 and later when it is
    /// registered without `--network=host` (measured on 6.18).
    const OLD_GVISOR_ON_NEW_KERNEL: &str = "OCI runtime start failed: starting container: setting up network: creating interfaces from net namespace \"/proc/8356/ns/net\": cannot run with network enabled in root network namespace: unknown";

    #[tokio::test]
    async fn an_old_gvisor_on_a_new_kernel_fails_with_the_runtime_args_that_fix_it() {
        let engine = engine("20.10.24", &["runc", "runsc"], &[TAG]);
        engine.state().failing_runtime =
            Some(("runsc".to_owned(), OLD_GVISOR_ON_NEW_KERNEL.to_owned()));
        let checks = run(&engine, &inputs()).await;
        let runsc = find(&checks, "runsc");
        assert_eq!(runsc.status, CheckStatus::Fail);
        assert!(
            runsc.detail.contains("root network namespace"),
            "{}",
            runsc.detail
        );
        assert_eq!(runsc.hints.len(), 3, "{:?}", runsc.hints);
        assert!(
            runsc.hints[0].contains(r#"`"runtimeArgs": ["--network=host"]`"#)
                && runsc.hints[0].contains("`runtimes.runsc`"),
            "{:?}",
            runsc.hints
        );
        // Its sandbox was made, and can outlive the trial.
        let trial = engine.state().failed_starts.clone();
        assert_eq!(trial.len(), 1, "{trial:?}");
        assert!(
            runsc.hints[2].contains("moby/moby#44399")
                && runsc.hints[2].contains(&format!("`pgrep -af {}`", trial[0])),
            "{:?}",
            runsc.hints
        );
        assert!(engine.state().containers.is_empty(), "the trial is removed");
    }

    #[tokio::test]
    async fn runsc_without_an_image_is_not_tried_and_nothing_is_made() {
        let engine = engine("20.10.24", &["runc", "runsc"], &[]);
        let checks = run(&engine, &inputs()).await;
        let runsc = find(&checks, "runsc");
        assert_eq!(runsc.status, CheckStatus::Warn);
        assert!(runsc.detail.contains("not tried"), "{}", runsc.detail);
        assert!(engine.mutations().is_empty(), "{:?}", engine.mutations());
    }

    #[tokio::test]
    async fn an_unregistered_runsc_warns_and_nothing_is_made() {
        let engine = engine("20.10.24", &["runc"], &[TAG]);
        let checks = run(&engine, &inputs()).await;
        assert_eq!(find(&checks, "runsc").status, CheckStatus::Warn);
        assert!(engine.mutations().is_empty());
    }

    #[tokio::test]
    async fn a_nearly_full_address_pool_warns_counting_networks_and_host_routes() {
        let engine = engine("20.10.24", &["runc"], &[]);
        engine.state().subnets = vec![
            "10.10.0.0/27".to_owned(),
            "172.17.0.0/16".to_owned(),
            "fd00::/64".to_owned(),
        ];
        let inputs = Inputs {
            address_pool: Ok("10.10.0.0/25".parse().unwrap()),
            host_routes: vec!["10.10.0.96/27".parse().unwrap()],
            ..inputs()
        };
        let checks = run(&engine, &inputs).await;
        let space = find(&checks, "address-space");
        assert_eq!(space.status, CheckStatus::Warn);
        assert_eq!(
            space.detail,
            "room for 2 more bottles: 4 of 8 /28 subnets free in `10.10.0.0/25` (`CLAUDE_BOTTLE_ADDRESS_POOL`; a bottle uses 2)"
        );
        assert!(space.hints[0].contains("wider range"), "{:?}", space.hints);
    }

    #[tokio::test]
    async fn the_default_address_pool_has_room_and_a_refused_setting_fails() {
        let engine = engine("20.10.24", &["runc"], &[]);
        let checks = run(&engine, &inputs()).await;
        let space = find(&checks, "address-space");
        assert_eq!(space.status, CheckStatus::Ok);
        assert!(
            space.detail.starts_with("room for 2048 more bottles"),
            "{}",
            space.detail
        );
        let refused =
            crate::core::subnet::AddressPool::from_setting(Some("10.0.0.0/30")).unwrap_err();
        let inputs = Inputs {
            address_pool: Err((refused.to_string(), refused.hints())),
            ..inputs()
        };
        let checks = run(&engine, &inputs).await;
        let space = find(&checks, "address-space");
        assert_eq!(space.status, CheckStatus::Fail);
        assert!(space.detail.contains("too small"), "{}", space.detail);
    }

    #[tokio::test]
    async fn absent_images_say_what_start_will_do() {
        let engine = engine("20.10.24", &["runc"], &[]);
        let mut inputs = inputs();
        inputs.bottle_images = vec![("dev".to_owned(), "my/agent:1".to_owned())];
        let checks = run(&engine, &inputs).await;
        let agent: Vec<&Check> = checks.iter().filter(|c| c.name == "agent-image").collect();
        assert_eq!(agent.len(), 2);
        assert_eq!(agent[0].status, CheckStatus::Ok);
        assert!(agent[0].detail.ends_with("absent; start will build it"));
        assert_eq!(agent[1].status, CheckStatus::Warn);
        assert!(agent[1].detail.contains("bottle `dev`"));
        let proxy = find(&checks, "proxy-image");
        assert_eq!(proxy.status, CheckStatus::Ok);
        assert_eq!(
            proxy.detail,
            format!("`{PROXY}` absent; start will pull it")
        );
        let claude = find(&checks, "claude-code");
        assert!(
            claude.detail.starts_with(&format!(
                "{DEFAULT_CLAUDE_CODE_VERSION}, pinned in the built-in agent image;"
            )),
            "{}",
            claude.detail
        );
        assert!(
            claude
                .detail
                .contains("bottle `dev` uses its own image `my/agent:1`")
        );
        assert!(engine.mutations().is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_engine_fails_and_the_daemon_checks_need_it() {
        let checks = checks::<FakeEngine>(
            Err((
                "could not reach the Docker daemon".to_owned(),
                vec!["start it".to_owned()],
            )),
            &inputs(),
            async |info| {
                assert!(info.is_none());
                HostFacts {
                    buildx: Err("no".to_owned()),
                    docker_cli: false,
                    disk: Some((PathBuf::from("/tmp"), 1 << 30)),
                }
            },
        )
        .await;
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "engine",
                "internal-dns",
                "runsc",
                "address-space",
                "agent-image",
                "proxy-image",
                "buildx",
                "disk",
                "claude-code"
            ]
        );
        assert_eq!(checks[0].status, CheckStatus::Fail);
        assert_eq!(checks[0].hints, ["start it"]);
        assert!(
            checks[1..6]
                .iter()
                .all(|c| c.status == CheckStatus::Warn && c.detail == NEEDS_ENGINE)
        );
        assert_eq!(find(&checks, "buildx").status, CheckStatus::Warn);
        assert_eq!(
            find(&checks, "disk").status,
            CheckStatus::Warn,
            "1 GiB is under 5"
        );
    }

    #[test]
    fn claude_code_shows_the_version_start_will_use() {
        let mut inputs = inputs();
        let pinned = claude_code_check(&inputs);
        assert_eq!(pinned.status, CheckStatus::Ok);
        assert_eq!(
            pinned.detail,
            format!("{DEFAULT_CLAUDE_CODE_VERSION}, pinned in the built-in agent image")
        );

        inputs.claude_code_version = Ok("2.1.400-beta.1".to_owned());
        let chosen = claude_code_check(&inputs);
        assert_eq!(chosen.status, CheckStatus::Ok);
        assert_eq!(
            chosen.detail,
            format!(
                "2.1.400-beta.1, from `CLAUDE_BOTTLE_CLAUDE_CODE_VERSION` (the built-in agent image pins {DEFAULT_CLAUDE_CODE_VERSION})"
            )
        );

        let refused = super::super::plan::claude_code_version(Some("latest")).unwrap_err();
        inputs.claude_code_version = Err((refused.to_string(), refused.hints()));
        let bad = claude_code_check(&inputs);
        assert_eq!(bad.status, CheckStatus::Fail);
        assert!(
            bad.detail
                .starts_with("`CLAUDE_BOTTLE_CLAUDE_CODE_VERSION` is `latest`"),
            "{}",
            bad.detail
        );
        assert_eq!(bad.hints.len(), 1);
    }

    #[test]
    fn versions_are_parsed() {
        assert_eq!(parse_version("20.10.24+dfsg1"), Some((20, 10, 24)));
        assert_eq!(parse_version("25.0"), Some((25, 0, 0)));
        assert_eq!(parse_version("dev"), None);
    }
}
