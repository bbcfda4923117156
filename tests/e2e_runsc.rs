//! The isolation suite under runsc, and a `runsc` that does not work.
//!
//! Check 3 of the isolation suite under runsc: with a runtime named `runsc`
//! registered, the agent container runs under it (the proxy does not), and
//! still no address of the host answers it.
//!
//! When the daemon has no `runsc`, the test registers an alias of runc under
//! that name in /etc/docker/daemon.json and reloads dockerd (SIGHUP), and
//! restores the file and reloads again when it ends, pass or fail. This
//! changes the runtime every session on the machine detects, so the test
//! holds the EXCLUSIVE runtime lock (e2e_support/runtime.rs) and lives in its
//! own binary; tests that depend on the detected runtime hold the shared lock.
//!
//! With the alias, the container's isolation is runc's: the test proves the
//! product applies its network isolation when it selects `runsc` (the
//! configuration is given at create time, which gVisor also honours), not
//! gVisor's own network stack. With a real gVisor registered, it proves both.
//!
//! SPEC §6 "When detection is wrong": a registered `runsc` that fails to start
//! the agent container must end `start` with a clear error, not a hang. The
//! stand-in `runsc` fails like `/bin/false` for this test's agent container
//! only, so sessions of other tests that start meanwhile still run. A hang
//! is caught by nextest's timeout.

mod docker_support {
    pub mod daemon;
    pub mod lock;
    pub mod sessions;
    pub mod test_resources;
}
mod e2e_support;

use std::process::Stdio;

use serde_json::json;

use docker_support::daemon::remove_resources;
use docker_support::lock::{CLEANUP_LOCK, FileLock};
use docker_support::sessions::{containers_with, networks_with};
use e2e_support::docker::sweep_stale;
use e2e_support::no_way_to_host::assert_no_way_to_host;
use e2e_support::runtime::RunscRegistered;
use e2e_support::session::{AGENT_IMAGE, SessionDirs, unique_agent};

#[test]
fn no_address_of_the_host_answers_the_agent_under_runsc() {
    e2e_support::require();
    let runsc = RunscRegistered::ensure();
    if runsc.is_alias_of_runc {
        eprintln!("e2e: `runsc` is an alias of runc registered by this test");
    }
    assert_no_way_to_host("runsc", "runsc");
}

/// Removes what still carries the agent's label when the test ends, pass or
/// fail: the agent name is unique to the test, so all of it is the test's.
struct Backstop {
    label: String,
}

impl Backstop {
    fn leftovers(&self) -> Vec<String> {
        let containers = containers_with(&[&self.label]);
        let networks = networks_with(&[&self.label]);
        containers
            .into_iter()
            .map(|c| format!("container {c}"))
            .chain(networks.into_iter().map(|n| format!("network {n}")))
            .collect()
    }
}

impl Drop for Backstop {
    fn drop(&mut self) {
        remove_resources(
            &containers_with(&[&self.label]),
            &networks_with(&[&self.label]),
        );
    }
}

#[test]
fn a_registered_runsc_that_cannot_start_the_agent_ends_start_with_a_clear_error() {
    e2e_support::require();
    let agent = unique_agent("badrt");
    // The agent's environment names its proxy, `claude-bottle-pipelock-<agent>`:
    // the stand-in refuses exactly this session's agent container.
    let _runsc = RunscRegistered::failing_for(&agent);
    // Taken after the runtime lock, as every holder of both does.
    let _cleanup = FileLock::take(CLEANUP_LOCK, false);
    sweep_stale();
    let backstop = Backstop {
        label: format!("claude-bottle.agent={agent}"),
    };
    let dirs = SessionDirs::new();
    dirs.write_manifest(&json!({
        "bottles": { "e2e": {
            "image": AGENT_IMAGE,
            "egress": { "allowlist": ["api.anthropic.com"] }
        } },
        "agents": { agent.clone(): { "bottle": "e2e" } }
    }));

    let out = dirs
        .command()
        .args(["start", &agent, "--yes", "--", "--stub-exit", "0"])
        .stdin(Stdio::null())
        .output()
        .expect("run claude-bottle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- stdout\n{stdout}\n--- stderr\n{stderr}");

    assert_eq!(out.status.code(), Some(1), "exit code");
    assert!(
        stderr
            .lines()
            .any(|l| l.trim() == "docker runtime: runsc (gVisor)"),
        "detection saw the registered `runsc`"
    );
    let container = format!("`claude-bottle-{agent}`");
    let error = stderr
        .lines()
        .find(|l| l.contains("runtime `runsc`"))
        .expect("an error naming the runtime `runsc`");
    assert!(
        error.contains(&container),
        "the error names the agent container {container}: {error}"
    );
    assert!(
        stderr.lines().any(|l| l.trim_start().starts_with("hint:")
            && l.contains("`runsc`")
            && l.contains("unregister")),
        "a hint to fix or unregister `runsc`"
    );
    assert!(
        !stdout.contains("CLAUDE_STUB"),
        "Claude never ran in a container that did not start"
    );

    assert_eq!(
        backstop.leftovers(),
        Vec::<String>::new(),
        "teardown left resources carrying the session's labels"
    );
    let scratch: Vec<_> = std::fs::read_dir(dirs.tmp())
        .expect("read TMPDIR")
        .map(|entry| entry.expect("TMPDIR entry").file_name())
        .collect();
    assert!(scratch.is_empty(), "scratch left in TMPDIR: {scratch:?}");
}
