//! The docker CLI as the suite uses it: run a command and get its output,
//! label what the test creates, remove it again even when the test fails, and
//! sweep what a crashed earlier run left behind.
//!
//! The suite talks to the daemon through the CLI rather than the Engine API on
//! purpose: it is the product's job to use the API, and a second, independent
//! path to the daemon makes the checks harder to fool with a shared bug.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every resource the suite creates carries this label (the team's rule)...
pub const TEST_LABEL: &str = "claude-bottle.test=1";
/// ...and this one, so the sweep below removes only the e2e suite's own.
pub const OWNER_LABEL: &str = "claude-bottle.test.owner=e2e";
/// The pid of the test process that made a resource: a resource whose maker is
/// gone is stale, one whose maker lives belongs to a test running right now
/// (nextest runs tests in parallel processes) and must not be touched.
pub const PID_LABEL_KEY: &str = "claude-bottle.test.pid";
/// Agent names of the suite start with this, so the product's resources of a
/// crashed e2e session can be told from everyone else's.
pub const AGENT_PREFIX: &str = "e2e-";

/// The labels for `docker run/create/network create` of a test resource.
pub fn label_args() -> Vec<String> {
    vec![
        "--label".into(),
        TEST_LABEL.into(),
        "--label".into(),
        OWNER_LABEL.into(),
        "--label".into(),
        format!("{PID_LABEL_KEY}={}", std::process::id()),
    ]
}

/// `docker ARGS`, output captured. Never panics on a non-zero exit.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

/// `docker ARGS` that must succeed; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `docker ARGS` with owned arguments.
pub fn docker_ok_owned(args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&refs)
}

/// Whether the daemon answers.
pub fn daemon_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

/// `docker inspect -f FORMAT OBJECT`.
pub fn inspect(object: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, object])
}

/// `docker inspect -f FORMAT OBJECT`, None when the object is gone (or the
/// call fails): for polling objects another process may remove meanwhile.
pub fn try_inspect(object: &str, format: &str) -> Option<String> {
    let out = docker(&["inspect", "-f", format, object]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The IPv4 address of `container` on `network`, empty when not attached.
pub fn ip_on(container: &str, network: &str) -> String {
    inspect(
        container,
        &format!(
            "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
        ),
    )
}

/// The subnet of a network (first IPAM config).
pub fn subnet_of(network: &str) -> String {
    docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        network,
    ])
    .split_whitespace()
    .next()
    .unwrap_or_default()
    .to_owned()
}

/// The logs of a container, stdout and stderr together.
pub fn logs(container: &str) -> String {
    let out = docker(&["logs", container]);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `limit`
/// naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Names of the containers (any state) carrying every one of `labels`
/// (`key=value` or `key`), sorted.
pub fn containers_with(labels: &[&str]) -> Vec<String> {
    names(&["ps", "-a", "--format", "{{.Names}}"], labels)
}

/// Names of the networks carrying every one of `labels`, sorted.
pub fn networks_with(labels: &[&str]) -> Vec<String> {
    names(&["network", "ls", "--format", "{{.Name}}"], labels)
}

fn names(command: &[&str], labels: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    for label in labels {
        args.push("--filter".into());
        args.push(format!("label={label}"));
    }
    let mut names: Vec<String> = docker_ok_owned(&args)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Removes containers (force) then networks, by name, ignoring ones already
/// gone. Containers first: a network cannot go while anything is attached.
pub fn remove(containers: &[String], networks: &[String]) {
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        let _ = docker(&args);
    }
    for network in networks {
        let _ = docker(&["network", "rm", network]);
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what earlier, crashed runs of the suite left: test resources of
/// the e2e owner whose test process is gone, and the product's resources of
/// e2e agents whose claude-bottle process is gone. Resources of tests running
/// right now (their pid lives) and everything not the suite's stay.
pub fn sweep_stale() {
    let stale = |kind: &[&str], pid_key: &str, extra: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut args: Vec<String> = kind.iter().map(|s| (*s).to_owned()).collect();
        // Containers name their name field `Names`, networks `Name`.
        let name_field = if kind[0] == "ps" { "Names" } else { "Name" };
        args.extend([
            "--format".to_owned(),
            format!("{{{{.{name_field}}}}}\t{{{{.Label \"{pid_key}\"}}}}\t{{{{.Label \"claude-bottle.agent\"}}}}"),
        ]);
        docker_ok_owned(&args)
            .lines()
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let name = cols.next()?.to_owned();
                let pid: u32 = cols.next()?.trim().parse().ok()?;
                let agent = cols.next().unwrap_or_default();
                (!pid_alive(pid) && extra(agent)).then_some(name)
            })
            .collect()
    };
    let any = |_: &str| true;
    let e2e_agent = |agent: &str| agent.starts_with(AGENT_PREFIX);
    let owner_filter = format!("label={OWNER_LABEL}");
    let test_containers = stale(
        &["ps", "-a", "--filter", &owner_filter],
        PID_LABEL_KEY,
        &any,
    );
    let product_containers = stale(
        &["ps", "-a", "--filter", "label=claude-bottle.managed=true"],
        "claude-bottle.pid",
        &e2e_agent,
    );
    let test_networks = stale(
        &["network", "ls", "--filter", &owner_filter],
        PID_LABEL_KEY,
        &any,
    );
    let product_networks = stale(
        &[
            "network",
            "ls",
            "--filter",
            "label=claude-bottle.managed=true",
        ],
        "claude-bottle.pid",
        &e2e_agent,
    );
    let containers: Vec<String> = test_containers
        .into_iter()
        .chain(product_containers)
        .collect();
    let networks: Vec<String> = test_networks.into_iter().chain(product_networks).collect();
    if !containers.is_empty() || !networks.is_empty() {
        eprintln!(
            "e2e: sweeping stale resources: containers {containers:?}, networks {networks:?}"
        );
    }
    remove(&containers, &networks);
}

/// Test resources removed on drop, even when the test panics.
#[derive(Default)]
pub struct Resources {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Resources {
    /// `docker run -d` with the test labels; the container is tracked.
    pub fn run_detached(&mut self, name: &str, args: &[&str]) -> String {
        self.containers.push(name.to_owned());
        let mut full: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
        full.extend(label_args());
        full.extend(args.iter().map(|a| (*a).to_owned()));
        docker_ok_owned(&full);
        name.to_owned()
    }

    /// `docker run --rm` with the test labels, waiting for it; its output.
    /// Tracked by name, so a hung one is still removed on drop.
    pub fn run_once(&mut self, name: &str, args: &[&str]) -> Output {
        self.containers.push(name.to_owned());
        let mut full: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), name.into()];
        full.extend(label_args());
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        docker(&refs)
    }

    /// `docker network create` with the test labels and `extra` options.
    pub fn network(&mut self, name: &str, extra: &[&str]) -> String {
        self.networks.push(name.to_owned());
        let mut full: Vec<String> = vec!["network".into(), "create".into()];
        full.extend(label_args());
        full.extend(extra.iter().map(|a| (*a).to_owned()));
        full.push(name.into());
        docker_ok_owned(&full);
        name.to_owned()
    }

    /// Removes one tracked container now (e.g. to detach it from a network).
    pub fn remove_container(&mut self, name: &str) {
        remove(&[name.to_owned()], &[]);
        self.containers.retain(|c| c != name);
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        remove(&self.containers, &self.networks);
    }
}
