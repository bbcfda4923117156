//! What tests of whole `claude-bottle` sessions share: the offline test images
//! (scripts/build-test-images.sh) and the product's resources as the agent
//! label finds them. Each suite names its agents with a prefix of its own
//! (`dk-`, `dp-`, `e2e-`, ...) so its sweep touches only its own.

use super::daemon::{docker_lines, pid_alive, remove_resources};

/// The stub `claude`'s image, the bottle's `image` in session tests.
pub const AGENT_IMAGE: &str = "claude-bottle-test/agent:current";
/// The pipelock stand-in, selected with `CLAUDE_BOTTLE_PIPELOCK_IMAGE`.
pub const PIPELOCK_STANDIN_IMAGE: &str = "claude-bottle-test/pipelock-standin:current";
/// The fence image of the tests (`sh`, `iptables`), selected with
/// `CLAUDE_BOTTLE_FENCE_IMAGE`: the built-in one needs a registry to build.
pub const FENCE_IMAGE: &str = "claude-bottle-test/fence:current";

/// A claude-bottle container or network on the daemon, as its labels tell.
pub struct Managed {
    pub kind: &'static str,
    pub id: String,
    pub agent: String,
    /// The `claude-bottle.pid` label: the session's process.
    pub pid: String,
}

/// Every claude-bottle container and network on the daemon.
pub fn managed_resources() -> Vec<Managed> {
    let format = "{{.ID}}\t{{.Label \"claude-bottle.agent\"}}\t{{.Label \"claude-bottle.pid\"}}";
    let filter = "label=claude-bottle.managed=true";
    let mut found = Vec::new();
    for (kind, list) in [
        ("container", &["ps", "-a"][..]),
        ("network", &["network", "ls"]),
    ] {
        let mut args = list.to_vec();
        args.extend(["--filter", filter, "--format", format]);
        for line in docker_lines(&args) {
            let mut parts = line.split('\t').map(str::to_owned);
            found.push(Managed {
                kind,
                id: parts.next().unwrap_or_default(),
                agent: parts.next().unwrap_or_default(),
                pid: parts.next().unwrap_or_default(),
            });
        }
    }
    found
}

/// Removes the product's resources of agents named `agent_prefix...` whose
/// session process and test process are both gone: what a crashed earlier
/// run of the suite left. The test process counts too because a resource can
/// outlive its session while its test still needs it: a warm bottle's
/// `claude-bottle.pid` is the `prewarm` that made it, which has exited, and a
/// killed session's resources wait for the test's `cleanup`.
pub fn sweep_stale_agents(agent_prefix: &str) {
    let stale: Vec<Managed> = managed_resources()
        .into_iter()
        .filter(|r| {
            r.agent.starts_with(agent_prefix)
                && !pid_alive(&r.pid)
                && !pid_alive(test_pid(&r.agent))
        })
        .collect();
    if !stale.is_empty() {
        let names: Vec<String> = stale
            .iter()
            .map(|r| format!("{} {}", r.kind, r.id))
            .collect();
        eprintln!("sweeping stale resources of `{agent_prefix}*` agents: {names:?}");
    }
    let ids = |kind: &str| -> Vec<String> {
        stale
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.id.clone())
            .collect()
    };
    remove_resources(&ids("container"), &ids("network"));
}

/// The test process an agent's name carries: the suites name their agents
/// `<prefix><tag>-<test pid>-<n>`. Text that is no such name gives no pid.
fn test_pid(agent: &str) -> &str {
    agent.rsplit('-').nth(1).unwrap_or_default()
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
    let filters: Vec<String> = labels.iter().map(|l| format!("label={l}")).collect();
    let mut args = command.to_vec();
    for filter in &filters {
        args.extend(["--filter", filter]);
    }
    let mut names = docker_lines(&args);
    names.sort();
    names
}
