//! The command line on a real daemon: without `--yes` and without a terminal
//! on stdin, `start` prints the plan, refuses with a hint, and creates
//! nothing (the prompt logic itself is unit-tested with a scripted terminal in
//! `cli::confirm`); `list --json`; and that secret values never show in the
//! output of a whole session at `-vv`.
//!
//! Needs a Docker daemon with the agent test image and the pipelock stand-in
//! (scripts/build-test-images.sh); without them the tests fail
//! (scripts/test.sh reports them as skipped outside CI).

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod lock;
    pub mod sessions;
}

use std::collections::BTreeSet;
use std::fs;
use std::process::Stdio;

use docker_support::fixture::Fixture;
use docker_support::lock::SessionLocks;
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
        SessionLocks::take(),
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
    let fx = Fixture::new(AGENT_PREFIX, "list", &[], SessionLocks::take());
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

/// `start` at `-vv` (debug logs of every step) with `${VAR}` and `$VAR`
/// secrets and the OAuth token, as `--dry-run`, as a refused confirmation and
/// as a whole `--yes` session (plan, image, networks, proxy, provisioning,
/// Claude's exec, teardown): neither stdout nor stderr holds any value. Each
/// run must get as far as it should (the plan names the variables; the
/// session's stub reports them in Claude's environment and its exit code
/// comes back; nothing is left), so a `start` that failed early cannot pass.
#[test]
fn secret_values_never_reach_stdout_or_stderr_even_at_debug_level() {
    require();
    let secret = "s3cr3t-value-that-must-not-leak-7f3a";
    let other = "second-secret-5d1c";
    let oauth = "oauth-token-9e8d";
    let fx = Fixture::new(
        AGENT_PREFIX,
        "secrets",
        &[
            ("CLAUDE_BOTTLE_PIPELOCK_IMAGE", PIPELOCK_STANDIN_IMAGE),
            ("CB_TEST_SECRET", secret),
            ("CB_TEST_OTHER", other),
            ("CLAUDE_BOTTLE_OAUTH_TOKEN", oauth),
        ],
        SessionLocks::take(),
    );
    let home = fx.dir.path().join("home");
    fs::create_dir_all(home.join(".claude/skills/code-review")).expect("skill dir");
    fs::write(
        home.join(".claude/skills/code-review/SKILL.md"),
        "# review\n",
    )
    .expect("skill");
    fs::create_dir_all(home.join(".ssh")).expect("ssh dir");
    fs::write(home.join(".ssh/id_forge"), "not a real key\n").expect("ssh key");
    fx.write_manifest(&json!({
        "bottles": { "dev": {
            "image": AGENT_IMAGE,
            "env": {
                "GIT_AUTHOR_NAME": "Bottle Bot",
                "PRICE": "$$5",
                "API_TOKEN": "${CB_TEST_SECRET}",
                "OTHER": "$CB_TEST_OTHER"
            },
            "ssh": [{ "Host": "forge", "HostName": "git.example.test", "User": "git", "IdentityFile": "~/.ssh/id_forge" }],
            "egress": { "allowlist": ["api.anthropic.com"] }
        } },
        "agents": { &fx.agent: { "bottle": "dev", "skills": ["code-review"], "prompt": "You review pull requests." } }
    }));
    let run = |extra: &[&str]| {
        let mut args = vec!["-vv", "start", fx.agent.as_str()];
        args.extend_from_slice(extra);
        let out = fx
            .command(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run claude-bottle");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for value in [secret, other, oauth] {
            assert!(
                !stdout.contains(value),
                "{extra:?}: stdout leaks {value}:\n{stdout}"
            );
            assert!(
                !stderr.contains(value),
                "{extra:?}: stderr leaks {value}:\n{stderr}"
            );
        }
        // The plan was made and printed: the variables' names, never values.
        assert!(
            stderr.contains("claude-bottle plan"),
            "{extra:?}: no plan:\n{stderr}"
        );
        for name in ["API_TOKEN", "CB_TEST_SECRET", "OTHER", "CB_TEST_OTHER"] {
            assert!(
                stderr.contains(name),
                "{extra:?}: the plan names `{name}`:\n{stderr}"
            );
        }
        assert!(
            stderr.contains("DEBUG"),
            "{extra:?}: -vv turns debug logs on:\n{stderr}"
        );
        (out.status.code(), stdout, stderr)
    };

    let (code, _, stderr) = run(&["--dry-run"]);
    assert_eq!(code, Some(0), "--dry-run:\n{stderr}");
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, Some(1), "without --yes:\n{stderr}");
    assert!(stderr.contains("not confirmed"), "{stderr}");
    fx.assert_nothing_left();

    let (code, stdout, stderr) = run(&["--yes", "--", "-p", "hi", "--stub-exit", "5"]);
    assert_eq!(
        code,
        Some(5),
        "Claude's exit code comes back only when the session ran:\n{stderr}"
    );
    let report = stdout
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("CLAUDE_STUB_REPORT "))
        .unwrap_or_else(|| panic!("the stub claude ran and reported:\n{stdout}\n{stderr}"));
    let report: serde_json::Value = serde_json::from_str(report).expect("stub report is JSON");
    let env: BTreeSet<&str> = report["env_names"]
        .as_array()
        .expect("env_names")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    for name in ["API_TOKEN", "OTHER", "CLAUDE_CODE_OAUTH_TOKEN", "PRICE"] {
        assert!(env.contains(name), "Claude's process has `{name}`: {env:?}");
    }
    fx.assert_nothing_left();
}
