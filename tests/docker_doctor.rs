//! `doctor` on the real Docker daemon: on this machine (Docker 20.10, no
//! runsc registered) every check passes or warns, so it exits 0, and each
//! check is named in the human and the JSON output. An unreachable daemon
//! fails the engine check and exits 1.
//!
//! Images: the agent test image is the bottle's own `image`, so the
//! agent-image check finds it present. Resources: doctor makes none unless
//! runsc is registered (its trial container is labelled
//! `claude-bottle.doctor=1`); none may be left either way.

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod lock;
    pub mod sessions;
}

use std::time::Instant;

use docker_support::daemon::docker_lines;
use docker_support::fixture::Fixture;
use docker_support::lock::SessionLocks;
use docker_support::sessions::AGENT_IMAGE;
use serde_json::{Value, json};

const AGENT_PREFIX: &str = "dd-";
const CHECKS: [&str; 10] = [
    "manifest",
    "engine",
    "internal-dns",
    "runsc",
    "address-space",
    "agent-image",
    "proxy-image",
    "buildx",
    "disk",
    "claude-code",
];

fn fixture(tag: &str) -> Fixture {
    docker_support::fixture::require("docker_doctor", AGENT_PREFIX);
    let fx = Fixture::new(AGENT_PREFIX, tag, &[], SessionLocks::take());
    fx.write_manifest(&json!({
        "bottles": { "dd": {
            "image": AGENT_IMAGE,
            "egress": { "allowlist": ["api.anthropic.com"] }
        } },
        "agents": { &fx.agent: { "bottle": "dd", "prompt": "" } }
    }));
    fx
}

fn doctor_trials() -> Vec<String> {
    docker_lines(&[
        "ps",
        "-a",
        "--filter",
        "label=claude-bottle.doctor",
        "--format",
        "{{.Names}}",
    ])
}

#[test]
fn doctor_reports_every_check_and_exits_0_on_this_machine() {
    let fx = fixture("human");
    let clock = Instant::now();
    let out = fx.command(&["doctor"]).output().unwrap();
    let took = clock.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("doctor took {took:?}:\n{stdout}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.trim_start().starts_with("hint:"))
        .collect();
    let mut names = Vec::new();
    for line in &lines {
        let mut words = line.split_whitespace();
        let status = words.next().unwrap();
        assert!(["ok", "warn"].contains(&status), "{line}");
        names.push(words.next().unwrap().to_owned());
    }
    let mut expected: Vec<String> = CHECKS.iter().map(|c| (*c).to_owned()).collect();
    // The built-in image, then the bottle's own.
    expected.insert(6, "agent-image".to_owned());
    assert_eq!(names, expected);
    assert!(
        stdout.contains(&format!("`{AGENT_IMAGE}` (bottle `dd`) present")),
        "{stdout}"
    );
    assert!(stdout.contains("closed by design"), "{stdout}");
    assert!(
        stdout.contains("bottle `dd` uses its own image"),
        "{stdout}"
    );
    // `--quiet` does not hide the report: it is the command's data.
    let quiet = fx.command(&["--quiet", "doctor"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&quiet.stdout).lines().count(),
        stdout.lines().count()
    );
    assert!(doctor_trials().is_empty());
    fx.assert_nothing_left();
}

#[test]
fn doctor_json_is_one_object_per_check() {
    let fx = fixture("json");
    let out = fx.command(&["doctor", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for row in &rows {
        assert_eq!(row.as_object().unwrap().len(), 4, "{row}");
        assert!(
            ["ok", "warn"].contains(&row["status"].as_str().unwrap()),
            "{row}"
        );
        assert!(row["detail"].is_string());
        assert!(row["hint"].is_null() || row["hint"].is_string());
    }
    for name in CHECKS {
        assert!(rows.iter().any(|r| r["name"] == name), "no `{name}` check");
    }
    assert!(doctor_trials().is_empty());
    fx.assert_nothing_left();
}

#[test]
fn doctor_without_a_daemon_fails_the_engine_check_and_exits_1() {
    let fx = fixture("nodaemon");
    let out = fx
        .command(&["doctor", "--json"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let engine = rows.iter().find(|r| r["name"] == "engine").unwrap();
    assert_eq!(engine["status"], "fail");
    assert!(
        engine["detail"]
            .as_str()
            .unwrap()
            .contains("unix:///nonexistent/docker.sock")
    );
    assert!(engine["hint"].is_string());
    let runsc = rows.iter().find(|r| r["name"] == "runsc").unwrap();
    assert_eq!(runsc["detail"], "needs the engine");
    fx.assert_nothing_left();
}
