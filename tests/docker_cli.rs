//! The confirmation step of `start` on a real daemon: without `--yes` and
//! without a terminal on stdin, `start` prints the plan, refuses with a hint,
//! and creates nothing. (The prompt logic itself is unit-tested with a
//! scripted terminal in `cli::confirm`.)

use std::process::{Command, Output, Stdio};

const AGENT_IMAGE: &str = "claude-bottle-test/agent:current";
const PIPELOCK_IMAGE: &str = "claude-bottle-test/pipelock-standin:current";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

/// Whether the test can run here; with `CI` set, a missing daemon or image fails it.
fn ready() -> bool {
    let problem = if !docker(&["info"]).status.success() {
        Some("the Docker daemon does not answer".to_owned())
    } else {
        [AGENT_IMAGE, PIPELOCK_IMAGE]
            .into_iter()
            .find(|image| !docker(&["image", "inspect", image]).status.success())
            .map(|image| format!("test image `{image}` missing; run scripts/build-test-images.sh"))
    };
    match problem {
        None => true,
        Some(problem) if std::env::var_os("CI").is_some() => panic!("docker_cli: {problem}"),
        Some(problem) => {
            eprintln!("\n!!! docker_cli: SKIPPED: {problem}\n");
            false
        }
    }
}

fn resources_of_agent(agent: &str) -> Vec<String> {
    let filter = format!("label=claude-bottle.agent={agent}");
    let mut found = Vec::new();
    for kind in [&["ps", "-a"][..], &["network", "ls"]] {
        let mut args = kind.to_vec();
        args.extend(["-q", "--filter", &filter]);
        let out = docker(&args);
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    found
}

#[test]
fn start_without_yes_and_without_a_terminal_refuses_after_the_plan() {
    if !ready() {
        return;
    }
    let agent = format!("dc-confirm-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"bottles":{{"b":{{"image":"{AGENT_IMAGE}","egress":{{"allowlist":["example.com"]}}}}}},
                "agents":{{"{agent}":{{"bottle":"b"}}}}}}"#
        ),
    )
    .unwrap();
    let scratch_root = dir.path().join("tmp");
    std::fs::create_dir(&scratch_root).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_claude-bottle"))
        .env("CLAUDE_BOTTLE_PIPELOCK_IMAGE", PIPELOCK_IMAGE)
        .env("HOME", dir.path())
        .env("TMPDIR", &scratch_root)
        .env("NO_COLOR", "1")
        .arg("--manifest")
        .arg(&manifest)
        .args(["start", &agent])
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
    assert_eq!(resources_of_agent(&agent), Vec::<String>::new());
    let leftovers: Vec<_> = std::fs::read_dir(&scratch_root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}
