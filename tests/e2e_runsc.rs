//! The bottle under gVisor (`runsc`), and a `runsc` that does not work.
//!
//! The `gvisor_*` tests register gVisor's real `runsc` with the daemon (the
//! `runsc` on PATH, with `--network=host`: see
//! e2e_support/runtime.rs for why Debian's release needs it here), or use the
//! daemon's own `runsc` when it has one, and prove on it what the isolation
//! suite proves under runc: the agent runs under gVisor (its kernel is
//! gVisor's) and the proxy does not, provisioning and Claude's exec work,
//! no address of the host answers, egress goes only through the proxy to
//! allowlisted names, no name resolves and no query leaves, and `doctor` says
//! so. They need `runsc` installed: scripts/test.sh leaves them out, reported
//! as skipped, when it is not and CI is unset, and fails in CI; run on their
//! own without it they fail and say why.
//!
//! Registering a runtime reloads dockerd (SIGHUP) and changes what every
//! session on the machine detects, so each test holds the EXCLUSIVE runtime
//! lock while it is registered, and the daemon's configuration is restored
//! byte for byte when it ends, pass or fail (a killed test's is restored by
//! the next guard). Tests that start sessions hold the lock shared.
//!
//! SPEC §6 "When detection is wrong": a registered `runsc` that fails to start
//! the agent container must end `start` with a clear error, not a hang, and
//! leave nothing. Shown twice: with a stand-in `runsc` that fails like
//! `/bin/false` for this test's agent container only (on any machine), and
//! with the real gVisor registered without its runtime arguments, which
//! fails on this kernel. A hang is caught by nextest's timeout. gVisor's
//! sandbox of a container it failed to start outlives the container on Docker
//! 20.10; the test ends those of its own containers and checks none is left
//! (`OwnSandboxes`, e2e_support/runtime.rs).

mod docker_support {
    pub mod daemon;
    pub mod git;
    pub mod lock;
    pub mod sessions;
    pub mod test_resources;
}
mod e2e_support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use serde_json::{Value, json};

use docker_support::daemon::{docker, docker_lines, remove_resources};
use docker_support::git::git;
use docker_support::lock::SessionLocks;
use docker_support::sessions::{containers_with, networks_with};
use e2e_support::docker::{inspect, sweep_stale};
use e2e_support::host::rand_u64;
use e2e_support::no_way_to_host::assert_no_way_to_host;
use e2e_support::runtime::{OwnSandboxes, RunscRegistered, processes_of};
use e2e_support::session::{
    AGENT_IMAGE, PROMPT, Session, SessionDirs, SessionSpec, TestHost, unique_agent,
};

const PRIVATE_RANGES: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
const NO_PROXY_ENV: &str =
    "unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy;";
/// glibc's resolver retries for ~20 s per failed lookup; one quick try says
/// the same here.
const FAST_RESOLVER: &str = "RES_OPTIONS='timeout:1 attempts:1'";
/// The DNS test host's answer to every name: no other path could invent it.
const DNS_ANSWER: &str = "198.51.100.7";

fn host_kernel() -> String {
    fs::read_to_string("/proc/version")
        .expect("read the host's /proc/version")
        .trim()
        .to_owned()
}

#[test]
fn gvisor_runs_the_agent_and_no_address_of_the_host_answers_it() {
    e2e_support::require();
    let _runsc = RunscRegistered::gvisor();
    assert_no_way_to_host("gvisor", "runsc");
}

/// A home with a skill and an SSH key, and a working directory that is a git
/// repository, for `--cwd`.
fn provisioned_dirs() -> SessionDirs {
    let dirs = SessionDirs::new();
    let skill = dirs.home().join(".claude/skills/review");
    fs::create_dir_all(skill.join("refs")).expect("skill dirs");
    fs::write(skill.join("SKILL.md"), "# review\n").expect("SKILL.md");
    fs::write(skill.join("refs/checklist.md"), "- tests\n").expect("checklist");
    let key = dirs.home().join(".ssh/id_gv");
    fs::write(&key, "not a real key\n").expect("ssh key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("key mode");
    fs::write(dirs.work().join("README.md"), "hello\n").expect("README");
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "README.md"],
        &["commit", "-q", "-m", "first commit"],
    ] {
        git(&dirs.work(), args);
    }
    dirs
}

fn curl_plain(url: &str) -> String {
    format!("curl -sS -m 15 -w '\\nHTTP_CODE=%{{http_code}}\\n' {url}")
}

/// `-p` (--proxytunnel) makes curl CONNECT through the proxy even for http://.
fn curl_connect(url: &str) -> String {
    format!("curl -sS -m 15 -p -w '\\nHTTP_CODE=%{{http_code}}\\n' {url}")
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// One session under gVisor: what it provisions, Claude's exec (the stub's
/// report and probes), egress only through the proxy to allowlisted names,
/// and DNS. Then `doctor` on the same registration.
#[test]
fn gvisor_provisions_runs_claude_and_keeps_egress_and_dns_as_under_runc() {
    e2e_support::require();
    let _runsc = RunscRegistered::gvisor();
    let token = format!("{:012x}", rand_u64() & 0xffff_ffff_ffff);
    let name = |kind: &str| format!("{kind}-{token}.e2e.test");
    let mut dns = TestHost::dns("dns", &["dns.test"]);
    dns.env.push(("DNS_ANSWER".into(), DNS_ANSWER.into()));
    let spec = SessionSpec::new(
        "gvprov",
        json!({
            "egress": { "allowlist": ["x.test"], "ip_cidrs": PRIVATE_RANGES },
            "ssh": [{
                "Host": "gitbox",
                "HostName": "git.gv.test",
                "User": "git",
                "IdentityFile": "~/.ssh/id_gv"
            }]
        }),
    )
    .agent_field("skills", json!(["review"]))
    .start_option("--cwd")
    .host(TestHost::http("web", &["x.test", "denied.test"]))
    .host(dns)
    .probe("kernel", "cat /proc/version")
    // PR_GET_NO_NEW_PRIVS (39): gVisor's /proc/self/status has no NoNewPrivs line.
    .probe(
        "no_new_privs",
        "python3 -c 'import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))'",
    )
    .probe("resolver_config", "cat /etc/resolv.conf")
    .probe(
        "workspace",
        "cd ~/workspace && git log --format=%s -1 && git status --porcelain && echo WORKSPACE_CLEAN",
    )
    .probe("allowed_plain", &curl_plain("http://x.test/gv-plain"))
    .probe("allowed_connect", &curl_connect("http://x.test/gv-connect"))
    .probe("refused_plain", &curl_plain("http://denied.test/gv-refused"))
    .probe(
        "refused_connect",
        &curl_connect("http://denied.test/gv-refused"),
    )
    .probe(
        "direct_by_name",
        &format!("{NO_PROXY_ENV} curl --noproxy '*' -sS -m 5 http://x.test/gv-direct"),
    )
    .probe(
        "direct_by_address",
        &format!("{NO_PROXY_ENV} curl --noproxy '*' -sS -m 5 http://$WEB_IP/gv-direct"),
    )
    .probe(
        "getent",
        &format!("{FAST_RESOLVER} getent hosts {}", name("getent")),
    )
    .probe(
        "getent_egress_name",
        &format!("{FAST_RESOLVER} getent hosts x.test"),
    )
    .probe(
        "embedded_resolver",
        &format!("dig +time=2 +tries=1 @127.0.0.11 {}", name("embedded")),
    )
    .probe(
        "direct_udp",
        &format!("dig +time=2 +tries=1 @$DNS_IP {}", name("direct")),
    );
    let mut session = Session::start(spec, provisioned_dirs());
    let agent_runtime = inspect(&session.agent_container, "{{.HostConfig.Runtime}}");
    let proxy_runtime = inspect(&session.proxy_container, "{{.HostConfig.Runtime}}");
    let proxy = session.proxy_container.clone();
    let dns_ip = session.host_ip("dns");
    session.go(&[
        ("WEB_IP", session.host_ip("web")),
        ("DNS_IP", dns_ip.clone()),
    ]);
    session.wait_probes_done();
    // Control: a container on the egress network resolves through the DNS
    // server, and its query shows in the server's log.
    let control = session.control_on_egress(
        "dns",
        &["--dns", &dns_ip],
        &["getent", "hosts", &name("control")],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let dns_log = session.host_log("dns");
    let web_log = session.host_log("web");
    let outcome = session.finish();
    let report = &outcome.report;
    let json = &report.json;

    assert_eq!(agent_runtime, "runsc", "the agent container's runtime");
    assert_ne!(proxy_runtime, "runsc", "the proxy must not run under runsc");
    let kernel = report.probe("kernel");
    assert!(kernel.succeeded(), "{kernel}");
    assert_ne!(
        kernel.stdout.trim(),
        host_kernel(),
        "under gVisor the agent sees gVisor's kernel, not the host's"
    );
    assert_eq!(
        outcome
            .stderr
            .lines()
            .filter(|l| l.trim() == "docker runtime: runsc (gVisor)")
            .count(),
        2,
        "the status line and the plan name the runtime\n{}",
        outcome.stderr
    );

    let no_new_privs = report.probe("no_new_privs");
    assert_eq!(
        no_new_privs.stdout.trim(),
        "1",
        "the agent runs with no_new_privs\n{no_new_privs}"
    );
    assert_eq!(
        report.process("CapEff"),
        "0000000000000000",
        "the agent has no capability (so it cannot change its network)"
    );

    // Provisioning, as Claude sees it.
    assert_eq!(json["uid"], 1000, "Claude runs as the agent's user");
    assert_eq!(json["cwd"], "/home/node/workspace");
    assert!(
        strings(&json["claude_args"]).contains("/home/node/.claude-bottle-prompt.txt"),
        "{}",
        json["claude_args"]
    );
    let prompt = &json["prompt_file"];
    assert_eq!(prompt["content"], PROMPT, "{prompt}");
    assert_eq!(prompt["mode"], "0600", "{prompt}");
    assert_eq!(prompt["uid"], 1000, "{prompt}");
    let skills: BTreeSet<String> = json["skills"]["entries"]
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
        .collect(),
    );
    let ssh_config = json["ssh"]["config"].as_str().expect("ssh config");
    assert!(
        ssh_config.contains("Host gitbox")
            && ssh_config.contains("HostName git.gv.test")
            && ssh_config.contains(&format!("ProxyCommand nc -X connect -x {proxy}:8888 %h %p")),
        "{ssh_config}"
    );
    assert_eq!(json["ssh"]["mode"], "0700", "{}", json["ssh"]);
    assert_eq!(json["workspace"]["has_git"], true, "{}", json["workspace"]);
    let workspace = report.probe("workspace");
    assert!(
        workspace.succeeded()
            && workspace.stdout.lines().collect::<Vec<_>>() == ["first commit", "WORKSPACE_CLEAN"],
        "git works in the provisioned workspace\n{workspace}"
    );
    assert_eq!(
        json["proxy_env"]["HTTPS_PROXY"],
        format!("http://{proxy}:8888"),
        "{}",
        json["proxy_env"]
    );

    // Egress: through the proxy to allowlisted names only.
    for (probe, path) in [
        ("allowed_plain", "/gv-plain"),
        ("allowed_connect", "/gv-connect"),
    ] {
        let probe = report.probe(probe);
        assert!(
            probe.succeeded()
                && probe.stdout.contains("HTTP_CODE=200")
                && probe.stdout.contains(path),
            "the allowlisted host answers through the proxy\n{probe}"
        );
    }
    let refused = report.probe("refused_plain");
    assert!(
        refused.stdout.contains("HTTP_CODE=403") && !refused.stdout.contains("/gv-refused"),
        "the proxy answers 403 itself\n{refused}"
    );
    let refused = report.probe("refused_connect");
    assert!(
        !refused.succeeded() && refused.output().contains("403"),
        "the proxy refuses the CONNECT with 403\n{refused}"
    );
    for probe in ["direct_by_name", "direct_by_address"] {
        let probe = report.probe(probe);
        assert!(!probe.succeeded(), "no way out but the proxy\n{probe}");
    }
    assert!(
        web_log.contains("/gv-plain") && web_log.contains("/gv-connect"),
        "CONTROL: the web host logs the requests that reached it\n{web_log}"
    );
    assert!(
        !web_log.contains("/gv-direct") && !web_log.contains("/gv-refused"),
        "a request the proxy did not admit reached the web host\n{web_log}"
    );

    // DNS: no name resolves, no query reaches the server.
    let resolver = report.probe("resolver_config");
    assert!(
        resolver.stdout.contains("nameserver 127.0.0.11")
            || resolver.stdout.contains("nameserver 127.0.0.1"),
        "{resolver}"
    );
    assert!(
        String::from_utf8_lossy(&control.stdout).contains(DNS_ANSWER)
            && dns_log.contains(&name("control")),
        "CONTROL: a container using the DNS server must resolve through it and show in its log\n{}\n{dns_log}",
        String::from_utf8_lossy(&control.stderr)
    );
    for probe in [
        "getent",
        "getent_egress_name",
        "embedded_resolver",
        "direct_udp",
    ] {
        let probe = report.probe(probe);
        assert!(
            !probe.output().contains(DNS_ANSWER) && !probe.output().contains("ANSWER SECTION"),
            "the agent got a DNS answer\n{probe}"
        );
    }
    for probe in ["getent", "getent_egress_name", "direct_udp"] {
        assert!(!report.probe(probe).succeeded(), "{}", report.probe(probe));
    }
    for kind in ["getent", "embedded", "direct"] {
        assert!(
            !dns_log.contains(&name(kind)),
            "the DNS server received the agent's `{kind}` query:\n{dns_log}"
        );
    }
    outcome.assert_clean();

    let doctor = doctor_runsc_row(&mut OwnSandboxes::watch());
    assert_eq!(doctor["status"], "ok", "{doctor}");
    assert!(
        doctor["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("registered and works"),
        "{doctor}"
    );
}

/// `doctor --json`'s `runsc` row, for a manifest whose bottle uses the agent
/// test image (so doctor has an image to try runsc with); no trial
/// container may be left. The trial container is counted in `sandboxes`.
fn doctor_runsc_row(sandboxes: &mut OwnSandboxes) -> Value {
    let dirs = SessionDirs::new();
    dirs.write_manifest(&json!({
        "bottles": { "gv": { "image": AGENT_IMAGE } },
        "agents": { "gv": { "bottle": "gv" } }
    }));
    let doctor = dirs
        .command()
        .args(["doctor", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run claude-bottle doctor");
    // Doctor names its trial container after its process.
    sandboxes.own(format!("claude-bottle-doctor-{}", doctor.id()));
    let out = doctor
        .wait_with_output()
        .expect("wait for claude-bottle doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "--- doctor stdout\n{stdout}\n--- doctor stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trials = docker_lines(&[
        "ps",
        "-a",
        "--filter",
        "label=claude-bottle.doctor=1",
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        trials.is_empty(),
        "doctor left trial containers: {trials:?}"
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|row| row["name"] == "runsc")
        .unwrap_or_else(|| panic!("no `runsc` row in doctor's output:\n{stdout}"))
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

/// The name of `agent`'s container in a session that got it its name.
fn agent_container(agent: &str) -> String {
    format!("claude-bottle-{agent}")
}

/// Runs `start` for `agent` under a registered `runsc` that cannot start its
/// container, and checks it ends with a clear error naming the runtime and
/// the container, with the hints, and leaves nothing. Returns the hints.
fn assert_start_fails_clearly(agent: &str) -> Vec<String> {
    // Taken after the runtime lock, as every holder of both does.
    let _locks = SessionLocks::take();
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
        "agents": { agent: { "bottle": "e2e" } }
    }));

    let out = dirs
        .command()
        .args(["start", agent, "--yes", "--", "--stub-exit", "0"])
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
    let container = format!("`{}`", agent_container(agent));
    let error = stderr
        .lines()
        .find(|l| l.contains("runtime `runsc`"))
        .expect("an error naming the runtime `runsc`");
    assert!(
        error.contains(&container),
        "the error names the agent container {container}: {error}"
    );
    let hints: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("hint:"))
        .map(|h| h.trim().to_owned())
        .collect();
    assert!(
        hints
            .iter()
            .any(|h| h.contains("`runsc`") && h.contains("unregister")),
        "a hint to fix or unregister `runsc`: {hints:?}"
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
    let scratch: Vec<_> = fs::read_dir(dirs.tmp())
        .expect("read TMPDIR")
        .map(|entry| entry.expect("TMPDIR entry").file_name())
        .collect();
    assert!(scratch.is_empty(), "scratch left in TMPDIR: {scratch:?}");
    hints
}

#[test]
fn a_registered_runsc_that_cannot_start_the_agent_ends_start_with_a_clear_error() {
    e2e_support::require();
    let agent = unique_agent("badrt");
    // The agent's environment names its proxy, `claude-bottle-pipelock-<agent>`:
    // the stand-in refuses exactly this session's agent container.
    let _runsc = RunscRegistered::failing_for(&agent);
    assert_start_fails_clearly(&agent);
}

/// The hint that fixes an old gVisor on a new kernel.
const RUNTIME_ARGS_HINT: &str = r#"`"runtimeArgs": ["--network=host"]`"#;

/// gVisor registered as a plain install registers it. Whether it works here
/// is asked of the daemon directly, and the product must agree: on Linux
/// 6.10 and later Debian's release fails, and then `doctor` and `start` say
/// so and name the runtime arguments that fix it, and `start` leaves nothing.
#[test]
fn gvisor_without_its_runtime_args_is_explained_by_doctor_and_start() {
    e2e_support::require();
    let _runsc = RunscRegistered::gvisor_without_args();
    let mut sandboxes = OwnSandboxes::watch();
    let trial_name = format!("{}-trial", unique_agent("gvtrial"));
    sandboxes.own(&trial_name);
    let trial = docker(&[
        "run",
        "--rm",
        "--name",
        &trial_name,
        "--network",
        "none",
        "--runtime",
        "runsc",
        "--label",
        "claude-bottle.test=1",
        AGENT_IMAGE,
        "true",
    ]);
    // `--rm` removes it even when it could not start; this is the backstop.
    remove_resources(&[trial_name], &[]);
    let trial_error = String::from_utf8_lossy(&trial.stderr).into_owned();
    eprintln!("direct trial: {} {trial_error}", trial.status);
    let doctor = doctor_runsc_row(&mut sandboxes);
    if trial.status.success() {
        eprintln!(
            "e2e: gVisor runs here without runtime arguments (a fixed release, or an older kernel)"
        );
        assert_eq!(doctor["status"], "ok", "{doctor}");
        return;
    }
    assert!(
        trial_error.contains("cannot run with network enabled in root network namespace"),
        "gVisor failed here for another reason than the one this test is about: {trial_error}"
    );
    assert_eq!(doctor["status"], "fail", "{doctor}");
    assert!(
        doctor["hint"]
            .as_str()
            .unwrap_or_default()
            .contains(RUNTIME_ARGS_HINT),
        "doctor names the runtime arguments that fix it: {doctor}"
    );
    let agent = unique_agent("gvnoargs");
    sandboxes.own(agent_container(&agent));
    let hints = assert_start_fails_clearly(&agent);
    assert!(
        hints.iter().any(|h| h.contains(RUNTIME_ARGS_HINT)),
        "start names the runtime arguments that fix it: {hints:?}"
    );
    // What the hint says a failed start can leave is what this daemon left:
    // gVisor's sandbox of the container it names.
    let leftover = hints
        .iter()
        .find_map(|h| h.split("`pgrep -af ").nth(1)?.split('`').next())
        .expect("a hint names the processes a failed start under runsc can leave");
    let processes = processes_of(&[leftover]);
    assert!(
        processes
            .iter()
            .any(|(_, args)| args.first().is_some_and(|a| a.contains("runsc-sandbox"))),
        "the hint's `pgrep -af {leftover}` names gVisor's sandbox: {processes:?}"
    );
    // A sandbox that failed to start outlives its container (see
    // OwnSandboxes): none of the three may be left running.
    let ended = sandboxes.end();
    assert_eq!(
        ended.created.len(),
        3,
        "CONTROL: the trial, doctor's trial and the agent container were seen created: {ended:?}"
    );
    assert_eq!(
        ended.surviving,
        Vec::<String>::new(),
        "processes of this test's containers are still running"
    );
}
