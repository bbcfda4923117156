//! Warm bottles on the real Docker daemon: `prewarm` then `start` gives the
//! bottle a cold `start` gives, a warm bottle that does not fit is left
//! alone, starts racing for warm bottles claim each at most once, and
//! `list` and `cleanup` show warm and claimed bottles for what they are.
//!
//! Images and resources as in docker_session.rs: agents are named
//! `dw-<test>-<pid>-<n>` and a [`Fixture`] removes whatever carries its
//! agent's label when it drops. A warm bottle's `claude-bottle.pid` is that
//! of the `prewarm` that made it, which has exited, so the shared sweep also
//! asks whether the test process in the agent's name lives.

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod lock;
    pub mod sessions;
}

use std::collections::BTreeSet;
use std::fs;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use docker_support::daemon::docker_ok;
use docker_support::fixture::Fixture;
use docker_support::lock::{RuntimeLock, SessionLocks};
use docker_support::sessions::{AGENT_IMAGE, PIPELOCK_STANDIN_IMAGE};
use serde_json::{Value, json};

const SECRET: &str = "dw-secret-value-5e0b71";
const AGENT_PREFIX: &str = "dw-";

/// Requires the daemon and the images, then removes what tests of this
/// suite whose process is gone left behind.
fn require() {
    docker_support::fixture::require("docker_warm", AGENT_PREFIX);
}

/// A fixture with a prompt, a skill, an SSH entry, a literal and a secret
/// env value, and a `--cwd` directory; the session's runtime is held steady.
fn fixture(tag: &str) -> (Fixture, RuntimeLock) {
    let runtime = RuntimeLock::shared();
    let fx = Fixture::new(
        AGENT_PREFIX,
        tag,
        &[
            ("DW_SECRET", SECRET),
            ("CLAUDE_BOTTLE_PIPELOCK_IMAGE", PIPELOCK_STANDIN_IMAGE),
        ],
        SessionLocks::take(),
    );
    let home = fx.dir.path().join("home");
    let skill = home.join(".claude/skills/review");
    fs::create_dir_all(&skill).unwrap();
    fs::write(skill.join("SKILL.md"), "# review\n").unwrap();
    fs::create_dir_all(home.join(".ssh")).unwrap();
    fs::write(home.join(".ssh/id_dw"), "not a real key\n").unwrap();
    fs::write(fx.dir.path().join("work/notes.txt"), "from the host\n").unwrap();
    write_manifest(&fx, &["api.anthropic.com"]);
    (fx, runtime)
}

fn write_manifest(fx: &Fixture, allowlist: &[&str]) {
    fx.write_manifest(&json!({
        "bottles": { "dw": {
            "image": AGENT_IMAGE,
            "env": { "GIT_AUTHOR_NAME": "Bottle Bot", "DW_TOKEN": "${DW_SECRET}" },
            "ssh": [{
                "Host": "gitbox",
                "HostName": "git.dw.test",
                "User": "git",
                "IdentityFile": "~/.ssh/id_dw"
            }],
            "egress": { "allowlist": allowlist }
        }},
        "agents": { &fx.agent: {
            "bottle": "dw", "skills": ["review"], "prompt": "You review pull requests."
        }}
    }));
}

fn run(fx: &Fixture, args: &[&str]) -> Output {
    fx.command(args)
        .stdin(Stdio::null())
        .output()
        .expect("run claude-bottle")
}

fn prewarm(fx: &Fixture, count: &str) -> Vec<String> {
    let out = run(fx, &["prewarm", &fx.agent, "--count", count]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn start_args<'a>(fx: &'a Fixture, claude_args: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["start", fx.agent.as_str(), "--cwd", "--yes", "--"];
    args.extend_from_slice(claude_args);
    args
}

/// A `start` with `--cwd`: its exit code, the stub's report and stderr.
fn start(fx: &Fixture) -> (Option<i32>, Value, String) {
    let out = run(fx, &start_args(fx, &["-p", "hello"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), report(&stdout, &stderr), stderr)
}

fn report(stdout: &str, stderr: &str) -> Value {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CLAUDE_STUB_REPORT "))
        .unwrap_or_else(|| panic!("no stub report in stdout:\n{stdout}\nstderr:\n{stderr}"));
    serde_json::from_str(line).expect("stub report is JSON")
}

fn list_json(fx: &Fixture) -> Vec<Value> {
    let out = run(fx, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let listing: Value = serde_json::from_slice(&out.stdout).expect("list --json is JSON");
    listing["active"]
        .as_array()
        .expect("active")
        .iter()
        .filter(|b| b["agent"] == fx.agent.as_str())
        .cloned()
        .collect()
}

fn claimed(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        l.strip_prefix("claimed the warm bottle `")
            .and_then(|rest| rest.strip_suffix('`'))
            .map(str::to_owned)
    })
}

#[test]
fn prewarm_then_start_gives_the_bottle_a_cold_start_gives() {
    require();
    let (fx, _runtime) = fixture("same");
    let (code, cold, stderr) = start(&fx);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("warm bottle: none fits; starting cold"),
        "{stderr}"
    );
    fx.assert_nothing_left();

    let made = prewarm(&fx, "1");
    let warm_name = format!("claude-bottle-{}.warm", fx.agent);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0], warm_name);
    // Made without the secret: it was never read, so it cannot be in there.
    let env = docker_ok(&["inspect", "--format", "{{json .Config.Env}}", &warm_name]);
    assert!(!env.contains(SECRET), "{env}");
    assert!(env.contains("GIT_AUTHOR_NAME=Bottle Bot"), "{env}");

    let (code, warm, stderr) = start(&fx);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("warm bottle: yes, `{warm_name}`")),
        "{stderr}"
    );
    assert_eq!(claimed(&stderr), Some(warm_name));
    // What Claude finds is the same, the secret on its process included.
    assert_eq!(warm, cold);
    assert!(
        warm["env_names"]
            .as_array()
            .unwrap()
            .contains(&json!("DW_TOKEN"))
    );
    assert_eq!(warm["workspace"]["entries"], json!(["notes.txt"]));
    assert!(!stderr.contains(SECRET));
    fx.assert_nothing_left();
}

#[test]
fn a_warm_bottle_that_does_not_fit_the_plan_is_not_used() {
    require();
    let (fx, _runtime) = fixture("misfit");
    let made = prewarm(&fx, "1");
    write_manifest(&fx, &["api.anthropic.com", "example.com"]);
    let (code, report, stderr) = start(&fx);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("warm bottle: none fits; starting cold"),
        "{stderr}"
    );
    assert_eq!(claimed(&stderr), None);
    assert_eq!(report["exit_code"], 0);
    // The warm bottle is still there, unclaimed, for a plan that fits it.
    let active = list_json(&fx);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["container"], made[0].as_str());
    assert_eq!(active[0]["session_state"], "warm");
}

#[test]
fn starts_racing_for_warm_bottles_claim_each_one_once() {
    require();
    let (fx, _runtime) = fixture("race");
    let made: BTreeSet<String> = prewarm(&fx, "2").into_iter().collect();
    let spawn = || -> Child {
        let mut command: Command = fx.command(&start_args(&fx, &["--stub-exit", "0"]));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn claude-bottle")
    };
    let racers: Vec<Child> = (0..4).map(|_| spawn()).collect();
    let mut claims = Vec::new();
    for racer in racers {
        let out = racer.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
        claims.extend(claimed(&stderr));
    }
    claims.sort();
    let distinct: BTreeSet<String> = claims.iter().cloned().collect();
    assert_eq!(
        claims.len(),
        distinct.len(),
        "a bottle claimed twice: {claims:?}"
    );
    assert_eq!(distinct, made, "every warm bottle was claimed");
    fx.assert_nothing_left();
}

#[test]
fn list_and_cleanup_tell_warm_bottles_and_a_killed_claimant_from_live_sessions() {
    require();
    let (fx, _runtime) = fixture("state");
    let made = prewarm(&fx, "1");
    let active = list_json(&fx);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["session_state"], "warm");
    assert_eq!(active[0]["orphaned"], false);
    let out = run(&fx, &["cleanup", "--dry-run"]);
    let shown =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        shown.contains(&format!(
            "{} (agent, running, warm, no session yet)",
            made[0]
        )),
        "{shown}"
    );

    // A session claims it, then is killed: the bottle it leaves is orphaned.
    let mut session = fx
        .command(&start_args(&fx, &["--stub-sleep", "120"]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn claude-bottle");
    let claimed_name = format!("claude-bottle-{}", fx.agent);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let active = list_json(&fx);
        if active
            .iter()
            .any(|b| b["container"] == claimed_name.as_str() && b["session_state"] == "running")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the claimed bottle never showed as running: {active:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    session.kill().expect("SIGKILL claude-bottle");
    session.wait().expect("wait");
    let active = list_json(&fx);
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["container"], claimed_name.as_str());
    assert_eq!(active[0]["session_state"], "ended");
    assert_eq!(active[0]["orphaned"], true);
    let (containers, networks) = fx.leftovers();
    assert_eq!((containers.len(), networks.len()), (2, 2));
    // `cleanup` finds all four: each is claude-bottle's by label.
    let out = run(&fx, &["cleanup", "--dry-run"]);
    let shown =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for name in containers.iter().chain(&networks) {
        assert!(shown.contains(name.as_str()), "{name} not in:\n{shown}");
    }
    assert!(
        shown.contains(&format!("{claimed_name} (agent, running, orphaned)")),
        "{shown}"
    );
}
