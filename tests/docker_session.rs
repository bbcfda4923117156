//! Whole `claude-bottle start` sessions on the real Docker daemon (issue 3's
//! acceptance): the bottle as the stub `claude` sees it, the exit code, two
//! sessions side by side, `--dry-run`, signals in every phase, SIGKILL then
//! `cleanup`, and a pseudo-terminal.
//!
//! Images: the agent test image is the bottle's `image`; the pipelock
//! stand-in is selected with `CLAUDE_BOTTLE_PIPELOCK_IMAGE`
//! (scripts/build-test-images.sh builds both). Without a daemon or the
//! images these tests fail (scripts/test.sh reports them as skipped outside
//! CI).
//!
//! Resources: every agent is named `dk-<test>-<pid>-<n>`, so everything the
//! product makes for a test carries `claude-bottle.agent=<that name>`; a
//! [`Fixture`] removes whatever is left with that label when it drops, and
//! stale `dk-*` resources of dead test processes are swept first. Resources
//! the tests make themselves carry `claude-bottle.test=1`.

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod git;
    pub mod lock;
    pub mod sessions;
}

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use docker_support::daemon::{docker, docker_lines, pid_alive};
use docker_support::fixture::Fixture;
use docker_support::git::git;
use docker_support::lock::SessionLocks;
use docker_support::sessions::{AGENT_IMAGE, PIPELOCK_STANDIN_IMAGE, managed_resources};
use serde_json::{Value, json};

const SECRET: &str = "dk-secret-value-9f1c2e";
const PROMPT: &str = "You review pull requests.";
/// Agents of this suite are named `dk-...`.
const AGENT_PREFIX: &str = "dk-";
/// Requires the daemon and the images (panics without them: see
/// `docker_support::daemon::require`).
fn require() {
    docker_support::fixture::require("docker_session", AGENT_PREFIX)
}

// ---------------------------------------------------------------------------
// A test's home, manifest and agent

/// A fixture whose agent runs in a bottle with the agent test image.
fn fixture(tag: &str) -> Fixture {
    fixture_with_bottle(tag, PROMPT, json!({ "image": AGENT_IMAGE }))
}

fn fixture_with_bottle(tag: &str, prompt: &str, extra: Value) -> Fixture {
    fixture_with_lock(tag, prompt, extra, SessionLocks::take())
}

/// A home with a skill and an SSH key, and a bottle with an env (one value
/// from the host's secret), an SSH entry and an allowlist, `extra` merged in.
fn fixture_with_lock(tag: &str, prompt: &str, extra: Value, lock: SessionLocks) -> Fixture {
    let fx = Fixture::new(
        AGENT_PREFIX,
        tag,
        &[
            ("DK_SECRET", SECRET),
            ("CLAUDE_BOTTLE_PIPELOCK_IMAGE", PIPELOCK_STANDIN_IMAGE),
        ],
        lock,
    );
    let home = fx.dir.path().join("home");
    let skill = home.join(".claude/skills/review");
    fs::create_dir_all(skill.join("refs")).unwrap();
    fs::write(skill.join("SKILL.md"), "# review\n").unwrap();
    fs::write(skill.join("refs/checklist.md"), "- tests\n").unwrap();
    let ssh = home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    fs::write(ssh.join("id_dk"), "not a real key\n").unwrap();
    fs::set_permissions(ssh.join("id_dk"), fs::Permissions::from_mode(0o600)).unwrap();
    let mut bottle = json!({
        "env": { "GIT_AUTHOR_NAME": "Bottle Bot", "DK_TOKEN": "${DK_SECRET}" },
        "ssh": [{
            "Host": "gitbox",
            "HostName": "git.dk.test",
            "User": "git",
            "IdentityFile": "~/.ssh/id_dk"
        }],
        "egress": { "allowlist": ["api.anthropic.com"] }
    });
    if let (Some(bottle), Some(extra)) = (bottle.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            bottle.insert(k.clone(), v.clone());
        }
    }
    fx.write_manifest(&json!({
        "bottles": { "dk": bottle },
        "agents": { &fx.agent: { "bottle": "dk", "skills": ["review"], "prompt": prompt } }
    }));
    fx
}

/// What this suite adds to the shared fixture.
impl Fixture {
    fn slug(&self) -> &str {
        &self.agent
    }

    fn start_args<'a>(&'a self, claude_args: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["start", self.agent.as_str(), "--yes", "--"];
        args.extend_from_slice(claude_args);
        args
    }

    fn run(&self, claude_args: &[&str]) -> Output {
        self.command(&self.start_args(claude_args))
            .stdin(Stdio::null())
            .output()
            .expect("run claude-bottle")
    }

    fn spawn(&self, claude_args: &[&str]) -> Running {
        Running::spawn(
            self.command(&self.start_args(claude_args))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
    }
}

/// A `claude-bottle` process whose output is collected as it comes.
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command.spawn().expect("spawn claude-bottle");
        let pump = |stream: Box<dyn Read + Send>| {
            let sink = Arc::new(Mutex::new(String::new()));
            let writer = Arc::clone(&sink);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut text = writer.lock().unwrap_or_else(|p| p.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
            sink
        };
        let stdout = pump(Box::new(child.stdout.take().expect("stdout piped")));
        let stderr = pump(Box::new(child.stderr.take().expect("stderr piped")));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).expect("signal claude-bottle");
    }

    /// Waits for the exit (at most `limit`), then for the output pipes to drain.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "claude-bottle did not exit within {limit:?}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status.code(), self.stdout(), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stub's report from `stdout`.
fn report(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("CLAUDE_STUB_REPORT "))
        .unwrap_or_else(|| panic!("no stub report in stdout:\n{stdout}"));
    serde_json::from_str(line).expect("stub report is JSON")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn a_full_session_provisions_the_bottle_and_returns_claudes_exit_code() {
    require();
    let fx = fixture("full");
    let started = Instant::now();
    let out = fx.run(&["--stub-exit", "7", "-p", "hello"]);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("full session took {elapsed:?}");
    assert_eq!(out.status.code(), Some(7), "stderr:\n{stderr}");
    let proxy = format!("claude-bottle-pipelock-{}", fx.slug());
    let home = "/home/node";

    let report = report(&stdout);
    assert_eq!(
        strings(&report["claude_args"]),
        [
            "--append-system-prompt-file",
            "/home/node/.claude-bottle-prompt.txt",
            "-p",
            "hello"
        ]
    );
    assert_eq!(report["uid"], 1000);
    assert_eq!(report["gid"], 1000);
    assert_eq!(report["cwd"], format!("{home}/workspace"));
    let env: BTreeSet<String> = strings(&report["env_names"]).into_iter().collect();
    for name in [
        "DK_TOKEN",
        "GIT_AUTHOR_NAME",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        assert!(env.contains(name), "`{name}` missing from {env:?}");
    }
    let url = format!("http://{proxy}:8888");
    for name in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        assert_eq!(report["proxy_env"][name], url.as_str(), "{name}");
    }
    assert_eq!(report["proxy_env"]["NO_PROXY"], "localhost,127.0.0.1");

    let prompt = &report["prompt_file"];
    assert_eq!(prompt["mode"], "0600");
    assert_eq!(prompt["uid"], 1000);
    assert_eq!(prompt["gid"], 1000);
    assert_eq!(prompt["content"], PROMPT);

    let skills: BTreeSet<String> = report["skills"]["entries"]
        .as_array()
        .expect("skills entries")
        .iter()
        .map(|e| format!("{} {}", e["path"].as_str().unwrap_or("?"), e["uid"]))
        .collect();
    assert_eq!(
        skills,
        [
            "review 1000",
            "review/SKILL.md 1000",
            "review/refs 1000",
            "review/refs/checklist.md 1000"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );

    let ssh_config = report["ssh"]["config"].as_str().expect("ssh config");
    assert!(ssh_config.contains("Host gitbox"), "{ssh_config}");
    assert!(ssh_config.contains("HostName git.dk.test"), "{ssh_config}");
    assert!(
        ssh_config.contains(&format!("ProxyCommand nc -X connect -x {proxy}:8888 %h %p")),
        "{ssh_config}"
    );
    let process = &report["process"];
    assert_eq!(process["NoNewPrivs"], "1");
    assert_eq!(process["CapEff"], "0000000000000000");

    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(SECRET), "the secret value is in {what}");
    }
    assert!(
        stderr.contains("docker runtime: runc (default)")
            || stderr.contains("docker runtime: runsc (gVisor)"),
        "{stderr}"
    );
    fx.assert_nothing_left();
}

#[test]
fn an_agent_without_a_prompt_gets_no_prompt_flag_but_an_empty_file() {
    require();
    let fx = fixture_with_bottle("noprompt", "", json!({ "image": AGENT_IMAGE }));
    let out = fx.run(&[
        "--stub-sh",
        "stat -c '%a %u %g %s' /home/node/.claude-bottle-prompt.txt",
        "-p",
        "x",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let report = report(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(strings(&report["claude_args"]), ["-p", "x"]);
    assert_eq!(report["probes"][0]["exit"], 0, "{}", report["probes"]);
    assert_eq!(
        report["probes"][0]["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim(),
        "600 1000 1000 0"
    );
    fx.assert_nothing_left();
}

/// Docker can lose an exec that runs for minutes (its exec garbage collector
/// takes one created while it scans), and the docker CLI then exits 1 with
/// "No such exec instance" after Claude has ended. A `docker` first on PATH
/// that runs the real one for Claude's exec and then answers like that
/// stands in for the daemon: `start` still returns Claude's own exit code,
/// which the bottle recorded, and says what happened.
#[test]
fn a_claude_exec_the_daemon_lost_still_returns_claudes_exit_code() {
    require();
    let fx = fixture("lostexec");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let real = std::env::split_paths(&path)
        .map(|dir| dir.join("docker"))
        .find(|p| p.is_file())
        .expect("the docker CLI on PATH");
    let shim = tempfile::tempdir().expect("tempdir");
    let script = shim.path().join("docker");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$1 $2\" = \"exec -i\" ]; then\n\
             \x20   '{real}' \"$@\"\n\
             \x20   echo 'Error response from daemon: No such exec instance: 0123456789ab' >&2\n\
             \x20   exit 1\n\
             fi\n\
             exec '{real}' \"$@\"\n",
            real = real.display()
        ),
    )
    .expect("write the docker shim");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod the shim");
    let mut dirs = vec![shim.path().to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    let out = fx
        .command(&fx.start_args(&["--stub-exit", "3"]))
        .env("PATH", std::env::join_paths(dirs).expect("PATH"))
        .stdin(Stdio::null())
        .output()
        .expect("run claude-bottle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No such exec instance"),
        "CONTROL: the shim stood in for the daemon\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "stderr:\n{stderr}");
    assert!(
        stderr.contains("lost Claude's exec and exited 1; Claude itself exited 3"),
        "{stderr}"
    );
    fx.assert_nothing_left();
}

#[test]
fn piped_stdin_reaches_claude() {
    require();
    let fx = fixture("stdin");
    let mut child = fx
        .command(&fx.start_args(&["--stub-read-line"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"exit 3\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr:\n{stderr}");
    let report = report(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["stdin_line"], "exit 3");
    fx.assert_nothing_left();
}

#[test]
fn two_sessions_of_one_agent_run_side_by_side() {
    require();
    let fx = fixture("two");
    let first = fx.spawn(&["--stub-sleep", "6"]);
    let second = fx.spawn(&["--stub-sleep", "6"]);
    wait_until("both stubs to sleep", Duration::from_secs(60), || {
        first.stdout().contains("CLAUDE_STUB_SLEEPING")
            && second.stdout().contains("CLAUDE_STUB_SLEEPING")
    });
    let (mut containers, mut networks) = fx.leftovers();
    containers.sort();
    networks.sort();
    let slug = fx.slug();
    assert_eq!(
        containers,
        [
            format!("claude-bottle-{slug}"),
            format!("claude-bottle-{slug}-2"),
            format!("claude-bottle-pipelock-{slug}"),
            format!("claude-bottle-pipelock-{slug}-2"),
        ]
    );
    assert_eq!(
        networks,
        [
            format!("claude-bottle-egress-{slug}"),
            format!("claude-bottle-egress-{slug}-2"),
            format!("claude-bottle-internal-{slug}"),
            format!("claude-bottle-internal-{slug}-2"),
        ]
    );
    let (code_a, out_a, err_a) = first.wait(Duration::from_secs(60));
    let (code_b, out_b, err_b) = second.wait(Duration::from_secs(60));
    assert_eq!(code_a, Some(0), "{err_a}");
    assert_eq!(code_b, Some(0), "{err_b}");
    let proxies: BTreeSet<String> = [out_a, out_b]
        .iter()
        .map(|out| {
            report(out)["proxy_env"]["HTTPS_PROXY"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        proxies.len(),
        2,
        "each bottle has its own proxy: {proxies:?}"
    );
    fx.assert_nothing_left();
}

#[test]
fn dry_run_prints_the_plan_and_creates_nothing() {
    require();
    let fx = fixture("dry");
    let since = chrono_like_now();
    let out = fx
        .command(&["start", &fx.agent, "--dry-run"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("container: claude-bottle-{}", fx.slug())),
        "{stderr}"
    );
    let runtime = if docker_lines(&["info", "--format", "{{json .Runtimes}}"])
        .join("")
        .contains("\"runsc\"")
    {
        "docker runtime: runsc (gVisor)"
    } else {
        "docker runtime: runc (default)"
    };
    assert!(stderr.contains(runtime), "{stderr}");
    assert!(!stderr.contains(SECRET));
    assert!(out.stdout.is_empty(), "stdout is for data only");
    // Nothing was created, not even briefly: the daemon's event log names
    // none of this agent's containers or networks.
    let until = chrono_like_now();
    let events = docker_lines(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let ours: Vec<&String> = events.iter().filter(|e| e.contains(fx.slug())).collect();
    assert!(ours.is_empty(), "the daemon saw: {ours:?}");
    fx.assert_nothing_left();
}

/// Unix seconds with a fraction, as `docker events --since/--until` take them.
fn chrono_like_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

// --- signals ----------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The built-in image is being built (a `docker` wrapper holds `build`).
    Image,
    /// Both networks exist.
    Networks,
    /// The proxy container runs.
    Proxy,
    /// The stub `claude` runs.
    Claude,
}

fn interrupt_in(phase: Phase, signal: nix::sys::signal::Signal) {
    require();
    let fx = match phase {
        // No bottle image: the built-in image is (to be) built.
        Phase::Image => fixture_with_bottle("sig-image", PROMPT, json!({})),
        _ => fixture(&format!("sig-{phase:?}").to_lowercase()),
    };
    let mut command = fx.command(&fx.start_args(&["--stub-sleep", "60"]));
    let marker = fx.dir.path().join("build-started");
    if let Phase::Image = phase {
        // A `docker` that holds `build` (the classic builder cannot pull the
        // base image offline) and passes everything else to the real CLI.
        let bin = fx.dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let real = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v docker"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let wrapper = bin.join("docker");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nif [ \"$1\" = build ]; then : > '{}'; exec sleep 60; fi\nexec '{}' \"$@\"\n",
                marker.display(),
                real.trim()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command.env("PATH", path);
    }
    let running = Running::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let agent_filter = format!("label=claude-bottle.agent={}", fx.agent);
    let reached = || match phase {
        Phase::Image => marker.exists(),
        Phase::Networks => {
            docker_lines(&["network", "ls", "-q", "--filter", &agent_filter]).len() == 2
        }
        Phase::Proxy => !docker_lines(&[
            "ps",
            "-q",
            "--filter",
            &agent_filter,
            "--filter",
            "label=claude-bottle.role=proxy",
            "--filter",
            "status=running",
        ])
        .is_empty(),
        Phase::Claude => running.stdout().contains("CLAUDE_STUB_SLEEPING"),
    };
    wait_until(
        &format!("phase {phase:?}"),
        Duration::from_secs(60),
        reached,
    );
    if let Phase::Image = phase {
        let (containers, networks) = fx.leftovers();
        assert!(containers.is_empty(), "{containers:?}");
        eprintln!("during the image step, networks existed: {networks:?}");
    }
    running.signal(signal);
    let (code, _, stderr) = running.wait(Duration::from_secs(60));
    assert_eq!(code, Some(128 + signal as i32), "stderr:\n{stderr}");
    fx.assert_nothing_left();
}

#[test]
fn sigterm_during_the_image_step_leaves_nothing() {
    interrupt_in(Phase::Image, nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_after_the_networks_exist_leaves_nothing() {
    interrupt_in(Phase::Networks, nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_after_the_proxy_started_leaves_nothing() {
    interrupt_in(Phase::Proxy, nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_while_claude_runs_leaves_nothing() {
    interrupt_in(Phase::Claude, nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_while_claude_runs_leaves_nothing() {
    interrupt_in(Phase::Claude, nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sighup_while_claude_runs_leaves_nothing() {
    interrupt_in(Phase::Claude, nix::sys::signal::Signal::SIGHUP);
}

// --- SIGKILL, list and cleanup ---------------------------------------------

/// Waits until no live claude-bottle session other than `except`'s is on the
/// daemon, since `cleanup --yes` removes every claude-bottle resource.
fn wait_for_no_live_sessions(except: &str) {
    wait_until(
        "other live claude-bottle sessions to end",
        Duration::from_secs(180),
        || {
            managed_resources()
                .iter()
                .all(|r| r.agent == except || !pid_alive(&r.pid))
        },
    );
}

#[test]
fn after_sigkill_list_shows_an_orphan_and_cleanup_removes_only_claude_bottles() {
    require();
    let fx = fixture_with_lock(
        "kill",
        PROMPT,
        json!({ "image": AGENT_IMAGE }),
        SessionLocks::take_cleanup_exclusive(),
    );
    let running = fx.spawn(&["--stub-sleep", "120"]);
    wait_until("the stub to sleep", Duration::from_secs(60), || {
        running.stdout().contains("CLAUDE_STUB_SLEEPING")
    });
    running.signal(nix::sys::signal::Signal::SIGKILL);
    let (code, _, _) = running.wait(Duration::from_secs(10));
    assert_eq!(code, None, "killed by a signal");
    let (containers, networks) = fx.leftovers();
    assert_eq!(
        (containers.len(), networks.len()),
        (2, 2),
        "SIGKILL leaves the bottle"
    );

    let out = fx.command(&["list", "--json"]).output().expect("run list");
    assert_eq!(out.status.code(), Some(0));
    let listing: Value = serde_json::from_slice(&out.stdout).expect("list --json is JSON");
    let ours = listing["active"]
        .as_array()
        .expect("active")
        .iter()
        .find(|b| b["agent"] == fx.agent.as_str())
        .cloned()
        .expect("the killed session is listed");
    assert_eq!(ours["container"], format!("claude-bottle-{}", fx.slug()));
    assert_eq!(ours["orphaned"], true);
    assert_eq!(ours["state"], "running");

    // Something that is not claude-bottle's must survive the cleanup.
    let bystander = format!("dk-bystander-{}", std::process::id());
    let labels = ["--label", "claude-bottle.test=1"];
    let mut args = vec!["network", "create"];
    args.extend(labels);
    args.push(&bystander);
    docker_lines(&args);
    let mut args = vec!["create", "--name", &bystander];
    args.extend(labels);
    args.extend([AGENT_IMAGE, "true"]);
    docker_lines(&args);
    struct Bystander(String);
    impl Drop for Bystander {
        fn drop(&mut self) {
            let _ = docker(&["rm", "-f", &self.0]);
            let _ = docker(&["network", "rm", &self.0]);
        }
    }
    let _bystander = Bystander(bystander.clone());

    wait_for_no_live_sessions(&fx.agent);
    let dry = fx
        .command(&["cleanup", "--dry-run"])
        .output()
        .expect("run cleanup --dry-run");
    let dry_err = String::from_utf8_lossy(&dry.stderr);
    assert_eq!(dry.status.code(), Some(0), "{dry_err}");
    assert!(
        dry_err.contains(&format!("claude-bottle-{}", fx.slug())),
        "{dry_err}"
    );
    assert_eq!(fx.leftovers().0.len(), 2, "--dry-run removes nothing");

    let out = fx
        .command(&["cleanup", "--yes"])
        .stdin(Stdio::null())
        .output()
        .expect("run cleanup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    fx.assert_nothing_left();
    assert_eq!(
        docker_lines(&["ps", "-a", "-q", "--filter", &format!("name=^{bystander}$")]).len(),
        1,
        "cleanup removed a container that is not claude-bottle's"
    );
    assert_eq!(
        docker_lines(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{bystander}$")
        ])
        .len(),
        1,
        "cleanup removed a network that is not claude-bottle's"
    );
}

// --- a pseudo-terminal ------------------------------------------------------

/// `claude-bottle` on a new pseudo-terminal (its controlling terminal),
/// with everything it writes collected.
struct OnTerminal {
    child: Child,
    master: fs::File,
    /// The test's own handle on the terminal, to read its mode.
    slave: std::os::fd::OwnedFd,
    output: Arc<Mutex<String>>,
}

impl OnTerminal {
    fn spawn(mut command: Command) -> Self {
        use std::os::unix::process::CommandExt;
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = pty.slave;
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn under a pty");
        drop(command);
        let master = fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&output);
        let mut reader = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            master,
            slave,
            output,
        }
    }

    fn text(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit; output:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(200));
        status
    }

    /// Whether the terminal is in its ordinary (cooked, echoing) mode.
    fn cooked(&self) -> bool {
        use nix::sys::termios::LocalFlags;
        let mode = nix::sys::termios::tcgetattr(&self.slave).expect("tcgetattr");
        mode.local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn under_a_pseudo_terminal_a_typed_line_reaches_claude_and_its_code_returns() {
    require();
    let fx = fixture("pty");
    let mut term = OnTerminal::spawn(fx.command(&fx.start_args(&["--stub-read-line"])));
    wait_until(
        "the stub to ask for a line",
        Duration::from_secs(60),
        || term.text().contains("CLAUDE_STUB_READY_FOR_LINE"),
    );
    term.master.write_all(b"exit 5\r").expect("type a line");
    let status = term.wait();
    assert_eq!(status.code(), Some(5), "output:\n{}", term.text());
    let report = report(&term.text());
    assert_eq!(report["tty"]["stdin"], true);
    assert_eq!(report["tty"]["stdout"], true);
    assert_eq!(report["stdin_line"], "exit 5");
    assert!(term.cooked(), "the terminal was left in raw mode");
    fx.assert_nothing_left();
}

#[test]
fn sigterm_under_a_pseudo_terminal_leaves_it_usable_and_nothing_behind() {
    require();
    let fx = fixture("pty-term");
    let mut term = OnTerminal::spawn(fx.command(&fx.start_args(&["--stub-sleep", "60"])));
    wait_until("the stub to sleep", Duration::from_secs(60), || {
        term.text().contains("CLAUDE_STUB_SLEEPING")
    });
    assert!(!term.cooked(), "`docker exec -t` makes the terminal raw");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(term.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = term.wait();
    assert_eq!(status.code(), Some(128 + 15), "output:\n{}", term.text());
    assert!(term.cooked(), "the terminal was left in raw mode");
    fx.assert_nothing_left();
}

/// Ctrl-C at the `y/N` question ends `start` at once with 128+SIGINT:
/// nothing was created, on the daemon or in `TMPDIR`.
#[test]
fn ctrl_c_at_the_confirmation_prompt_exits_at_once_and_leaves_nothing() {
    require();
    let fx = fixture("pty-confirm");
    let mut term = OnTerminal::spawn(fx.command(&["start", &fx.agent, "--", "--stub-exit", "0"]));
    wait_until("the y/N question", Duration::from_secs(60), || {
        term.text().contains("[y/N]")
    });
    term.master.write_all(b"\x03").expect("type Ctrl-C");
    let status = term.wait();
    assert_eq!(status.code(), Some(128 + 2), "output:\n{}", term.text());
    assert!(
        !term.text().contains("CLAUDE_STUB_REPORT"),
        "Claude must not run"
    );
    assert!(term.cooked(), "the terminal was left in raw mode");
    fx.assert_nothing_left();
}

/// Ctrl-C at a hidden prompt for an unset `${VAR}` ends `start` with
/// 128+SIGINT and gives the terminal its echo back.
#[test]
fn ctrl_c_at_a_hidden_prompt_exits_and_gives_the_echo_back() {
    require();
    let fx = fixture_with_bottle(
        "pty-secret",
        PROMPT,
        json!({
            "image": AGENT_IMAGE,
            "env": { "ASKED": "${DK_NEVER_SET}" }
        }),
    );
    let mut term = OnTerminal::spawn(fx.command(&["start", &fx.agent, "--yes"]));
    wait_until("the hidden prompt", Duration::from_secs(60), || {
        term.text().contains("`DK_NEVER_SET`")
    });
    wait_until("echo to be turned off", Duration::from_secs(10), || {
        !term.cooked()
    });
    term.master.write_all(b"\x03").expect("type Ctrl-C");
    let status = term.wait();
    assert_eq!(status.code(), Some(128 + 2), "output:\n{}", term.text());
    assert!(term.cooked(), "echo was left off");
    fx.assert_nothing_left();
}

/// A `y` typed at the question on a real terminal starts the bottle.
#[test]
fn y_typed_at_the_confirmation_prompt_starts_the_bottle() {
    require();
    let fx = fixture("pty-yes");
    let mut term = OnTerminal::spawn(fx.command(&["start", &fx.agent, "--", "--stub-exit", "4"]));
    wait_until("the y/N question", Duration::from_secs(60), || {
        term.text().contains("[y/N]")
    });
    term.master.write_all(b"y\r").expect("type y");
    let status = term.wait();
    assert_eq!(status.code(), Some(4), "output:\n{}", term.text());
    assert!(
        term.text().contains("CLAUDE_STUB_REPORT"),
        "{}",
        term.text()
    );
    fx.assert_nothing_left();
}

/// `--cwd` puts the current directory, with its `.git`, into the workspace,
/// owned by the agent's user so git works there.
#[test]
fn cwd_puts_the_directory_and_its_git_into_the_workspace() {
    require();
    let fx = fixture("cwd");
    let work = fx.dir.path().join("work");
    fs::write(work.join("README.md"), "hello\n").unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "README.md"]);
    git(&work, &["commit", "-q", "-m", "first commit"]);
    let mut args = vec!["start", fx.agent.as_str(), "--yes", "--cwd", "--"];
    args.extend([
        "--stub-sh",
        "cd ~/workspace && git log --format=%s -1 && stat -c '%u %g' README.md .git",
    ]);
    let out = fx
        .command(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run claude-bottle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&work.display().to_string()),
        "the plan names the cwd: {stderr}"
    );
    let report = report(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        report["workspace"]["has_git"], true,
        "{}",
        report["workspace"]
    );
    let probe = &report["probes"][0];
    assert_eq!(probe["exit"], 0, "{probe}");
    assert_eq!(
        probe["stdout"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .collect::<Vec<_>>(),
        ["first commit", "1000 1000", "1000 1000"]
    );
    fx.assert_nothing_left();
}
