//! The confirmation step of `start` on a real daemon: without `--yes` and
//! without a terminal on stdin, `start` prints the plan, refuses with a hint,
//! and creates nothing. (The prompt logic itself is unit-tested with a
//! scripted terminal in `cli::confirm`.)

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod lock;
    pub mod sessions;
}

use std::process::Stdio;

use docker_support::fixture::Fixture;
use docker_support::lock::{CLEANUP_LOCK, FileLock};
use docker_support::sessions::{AGENT_IMAGE, PIPELOCK_STANDIN_IMAGE};
use serde_json::json;

/// Agents of this suite are named `dc-...`.
const AGENT_PREFIX: &str = "dc-";

/// Requires the daemon and the images (panics without them: see
/// `docker_support::daemon::require`).
fn require() {
    docker_support::fixture::require("docker_cli", AGENT_PREFIX)
}

#[test]
fn start_without_yes_and_without_a_terminal_refuses_after_the_plan() {
    require();
    let fx = Fixture::new(
        AGENT_PREFIX,
        "confirm",
        &[("CLAUDE_BOTTLE_PIPELOCK_IMAGE", PIPELOCK_STANDIN_IMAGE)],
        FileLock::take(CLEANUP_LOCK, false),
    );
    fx.write_manifest(&json!({
        "bottles": { "b": { "image": AGENT_IMAGE, "egress": { "allowlist": ["example.com"] } } },
        "agents": { &fx.agent: { "bottle": "b" } }
    }));
    let child = fx
        .command(&["start", &fx.agent])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("claude-bottle plan"),
        "the plan comes first: {stderr}"
    );
    assert!(stderr.contains("not confirmed"), "{stderr}");
    assert!(stderr.contains("hint: pass `--yes`"), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout is for data only");
    fx.assert_nothing_left();
}

#[test]
fn list_json_is_data_on_stdout_with_the_manifest_agents() {
    require();
    let fx = Fixture::new(
        AGENT_PREFIX,
        "list",
        &[],
        FileLock::take(CLEANUP_LOCK, false),
    );
    fx.write_manifest(&json!({
        "bottles": { "b": { "image": AGENT_IMAGE, "egress": { "allowlist": ["example.com"] } } },
        "agents": { &fx.agent: { "bottle": "b", "skills": ["review", "docs"] } }
    }));
    let out = fx.command(&["list", "--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listing["agents"],
        json!([{ "name": fx.agent, "bottle": "b", "skills": ["review", "docs"] }])
    );
    let path = listing["manifest_path"].as_str().unwrap();
    assert!(path.ends_with(".json") && !path.contains('`'), "{path}");
    assert!(listing["active"].is_array(), "{listing}");
    fx.assert_nothing_left();
}
