//! The docker CLI as the e2e suite uses it, on top of tests/docker_support/:
//! label what the test creates, remove it again even when the test fails,
//! sweep what a crashed earlier run left behind, and read what the daemon
//! says of containers and networks.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::docker_support::daemon::{docker, docker_ok, remove_resources};
use crate::docker_support::sessions::sweep_stale_agents;
use crate::docker_support::test_resources::{TEST_PID_LABEL, sweep_stale_test_resources};

/// Every resource the suite creates carries this label (the team's rule)...
pub const TEST_LABEL: &str = "claude-bottle.test=1";
/// ...and this one, so the sweep below removes only the e2e suite's own.
pub const OWNER_LABEL: &str = "claude-bottle.test.owner=e2e";
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
        format!("{TEST_PID_LABEL}={}", std::process::id()),
    ]
}

/// `docker ARGS` with owned arguments.
pub fn docker_ok_owned(args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&refs)
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

/// Removes what earlier, crashed runs of the suite left: test resources of
/// the e2e owner whose test process is gone, and the product's resources of
/// e2e agents whose claude-bottle process is gone. Resources of tests running
/// right now (their pid lives) and everything not the suite's stay.
pub fn sweep_stale() {
    sweep_stale_test_resources(OWNER_LABEL);
    sweep_stale_agents(AGENT_PREFIX);
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
        remove_resources(&[name.to_owned()], &[]);
        self.containers.retain(|c| c != name);
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        remove_resources(&self.containers, &self.networks);
    }
}
