//! Drives a real `claude-bottle start` session with the stub `claude` and
//! brings the egress-side test hosts to it.
//!
//! # How test hosts meet the bottle (and why this way)
//!
//! The hosts that stand in for "the internet" (HTTP under several names, an
//! sshd serving git, a logging DNS server) must be reachable from the bottle's
//! PROXY the way real internet hosts are, and from nothing else. Docker
//! isolates bridge networks from each other, and the product creates the
//! session's egress network itself, so the test waits for
//! `claude-bottle-egress-<slug>` to appear and starts its hosts ON that
//! network with network aliases (`x.test`, `git.test`, ...). Nothing of the
//! product is changed or weakened for the test: no extra network, no option,
//! no route. The hosts sit exactly where a real internet host is from the
//! proxy's point of view: on the far side of its egress interface, found by
//! name through Docker's resolver of the egress network.
//!
//! # Holding the session open at both ends
//!
//! - GO: the stub's probes must not run before the hosts exist, so its first
//!   probe waits for a marker file the test creates (after it has also written
//!   the addresses the probes need into the container).
//! - RELEASE: the product must never touch what it did not create, and Docker
//!   cannot remove a network while a foreign container is attached (SPEC §6
//!   facts). So the test must detach its hosts BEFORE the product tears down:
//!   the stub's last probe waits for a second marker, the test removes its
//!   hosts, then creates the marker, and the stub exits and the product tears
//!   down a session that again holds only its own resources. The product's
//!   teardown is then checked to leave nothing behind.
//!
//! If a test fails in between, the guard does the same in its `Drop`: remove
//! the hosts, release the stub, wait for the product, and only if it does not
//! exit, SIGTERM then SIGKILL it; finally, as a backstop, remove whatever still
//! carries the session's unique agent label.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::docker::{AGENT_PREFIX, Resources, ip_on, logs, sweep_stale, try_inspect};
use super::host::rand_u64;
use super::stub::{
    GO_MARKER, PROBE_TIMEOUT_SECS, Probe, RELEASE_MARKER, StubReport, VARS_FILE, stub_args,
    vars_script,
};
use crate::docker_support::daemon::{docker_ok, remove_resources};
use crate::docker_support::lock::SessionLocks;
use crate::docker_support::sessions::{containers_with, networks_with};

pub use crate::docker_support::sessions::{AGENT_IMAGE, FENCE_IMAGE, PIPELOCK_STANDIN_IMAGE};
pub const HTTP_IMAGE: &str = "claude-bottle-test/http:current";
pub const SSHD_IMAGE: &str = "claude-bottle-test/sshd:current";
pub const DNS_IMAGE: &str = "claude-bottle-test/dns:current";

/// The agent's prompt in every session.
pub const PROMPT: &str = "You are an e2e probe.";
const START_LIMIT: Duration = Duration::from_secs(120);
const PROBES_LIMIT: Duration = Duration::from_secs(300);
const EXIT_LIMIT: Duration = Duration::from_secs(90);
const TEARDOWN_LIMIT: Duration = Duration::from_secs(30);

/// A container standing in for a host on the internet.
#[derive(Debug, Clone)]
pub struct TestHost {
    pub role: String,
    pub image: String,
    pub aliases: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A line its log prints once it serves.
    pub ready_line: String,
}

impl TestHost {
    /// The HTTP echo host answering under `aliases`.
    pub fn http(role: &str, aliases: &[&str]) -> Self {
        Self {
            role: role.to_owned(),
            image: HTTP_IMAGE.to_owned(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![("HTTP_ECHO_NAME".into(), role.to_owned())],
            ready_line: "HTTP_ECHO_LISTENING".into(),
        }
    }

    /// The git-over-ssh host, letting in `authorized_key`.
    pub fn sshd(role: &str, aliases: &[&str], authorized_key: &str) -> Self {
        Self {
            role: role.to_owned(),
            image: SSHD_IMAGE.to_owned(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![("AUTHORIZED_KEYS".into(), authorized_key.to_owned())],
            ready_line: "SSHD_READY".into(),
        }
    }

    /// The logging DNS server.
    pub fn dns(role: &str, aliases: &[&str]) -> Self {
        Self {
            role: role.to_owned(),
            image: DNS_IMAGE.to_owned(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![],
            ready_line: "started, version".into(),
        }
    }
}

/// The host side of a session: the user's HOME, the TMPDIR claude-bottle
/// gets, its working directory, and the manifest.
pub struct SessionDirs {
    root: tempfile::TempDir,
}

impl SessionDirs {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("claude-bottle-e2e-")
            .tempdir()
            .expect("temp dir");
        for dir in ["home/.ssh", "tmp", "work"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("session dirs");
        }
        Self { root }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }

    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.path().join("claude-bottle.json")
    }

    pub fn write_manifest(&self, manifest: &Value) {
        std::fs::write(
            self.manifest(),
            serde_json::to_vec_pretty(manifest).expect("manifest JSON"),
        )
        .expect("write manifest");
    }

    /// `claude-bottle --manifest M` in these directories, with none of the
    /// test's environment but `PATH` and `DOCKER_HOST`, and the pipelock
    /// stand-in as the proxy image.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_claude-bottle"));
        command
            .arg("--manifest")
            .arg(self.manifest())
            .current_dir(self.work())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TMPDIR", self.tmp())
            .env("NO_COLOR", "1")
            .env("CLAUDE_BOTTLE_PIPELOCK_IMAGE", PIPELOCK_STANDIN_IMAGE)
            .env("CLAUDE_BOTTLE_FENCE_IMAGE", FENCE_IMAGE);
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            command.env("DOCKER_HOST", host);
        }
        command
    }
}

impl Default for SessionDirs {
    fn default() -> Self {
        Self::new()
    }
}

/// What a session is to be.
pub struct SessionSpec {
    /// A short word naming the test; the agent name is made unique from it.
    pub tag: String,
    /// `bottles.<b>` of the manifest; `image` is set to the agent test image.
    pub bottle: Value,
    pub probes: Vec<Probe>,
    pub hosts: Vec<TestHost>,
    /// Extra environment for claude-bottle itself.
    pub env: Vec<(String, String)>,
    /// Pass `-v -v` (debug logs), e.g. to check secrets stay out of logs.
    pub verbose: bool,
    /// Fields of the agent's manifest entry besides `bottle` and `prompt`
    /// (e.g. `skills`).
    pub agent: Value,
    /// Options of `start` (e.g. `--cwd`).
    pub start_options: Vec<String>,
}

impl SessionSpec {
    pub fn new(tag: &str, bottle: Value) -> Self {
        Self {
            tag: tag.to_owned(),
            bottle,
            probes: vec![],
            hosts: vec![],
            env: vec![],
            verbose: false,
            agent: json!({}),
            start_options: vec![],
        }
    }

    pub fn agent_field(mut self, key: &str, value: Value) -> Self {
        self.agent[key] = value;
        self
    }

    pub fn start_option(mut self, option: &str) -> Self {
        self.start_options.push(option.to_owned());
        self
    }

    pub fn probe(mut self, name: &str, sh: &str) -> Self {
        self.probes.push(Probe::new(name, sh));
        self
    }

    pub fn host(mut self, host: TestHost) -> Self {
        self.hosts.push(host);
        self
    }
}

/// A unique agent name: tag, test pid, random; lowercase so it is its own slug.
pub fn unique_agent(tag: &str) -> String {
    format!(
        "{AGENT_PREFIX}{tag}-{}-{:04x}",
        std::process::id(),
        rand_u64() & 0xffff
    )
}

type Lines = Arc<Mutex<String>>;

fn collect(stream: impl std::io::Read + Send + 'static, sink: Lines, echo: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            eprintln!("[{echo}] {line}");
            let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
            text.push_str(&line);
            text.push('\n');
        }
    });
}

/// A running session: the product's process, its resources as the test found
/// them, and the test hosts.
pub struct Session {
    pub agent: String,
    pub agent_container: String,
    pub proxy_container: String,
    pub internal_network: String,
    pub egress_network: String,
    probes: Vec<Probe>,
    child: Option<Child>,
    stdout: Lines,
    stderr: Lines,
    hosts: BTreeMap<String, String>,
    resources: Resources,
    pub dirs: SessionDirs,
    /// Declared last so they are released after `Drop` has torn down.
    _locks: SessionLocks,
}

impl Session {
    /// Starts `claude-bottle start` for `spec` and waits until the session's
    /// resources exist and the test hosts serve on its egress network. The
    /// stub then waits for [`Session::go`].
    pub fn start(spec: SessionSpec, dirs: SessionDirs) -> Self {
        let locks = SessionLocks::take();
        sweep_stale();
        let agent = unique_agent(&spec.tag);
        let mut bottle = spec.bottle.clone();
        bottle["image"] = json!(AGENT_IMAGE);
        // The gates and some probes outlast the stub's default 60 s probe bound.
        let env = bottle
            .as_object_mut()
            .expect("bottle is an object")
            .entry("env")
            .or_insert_with(|| json!({}));
        env["CLAUDE_STUB_PROBE_TIMEOUT"] = json!(PROBE_TIMEOUT_SECS.to_string());
        let mut agent_entry = spec.agent.clone();
        agent_entry["bottle"] = json!("e2e");
        agent_entry["prompt"] = json!(PROMPT);
        dirs.write_manifest(&json!({
            "bottles": { "e2e": bottle },
            "agents": { agent.clone(): agent_entry }
        }));

        let mut command = dirs.command();
        if spec.verbose {
            command.args(["-v", "-v"]);
        }
        command
            .args(["start", &agent, "--yes"])
            .args(&spec.start_options)
            .arg("--")
            .args(stub_args(&spec.probes))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn claude-bottle");
        let stdout = Lines::default();
        let stderr = Lines::default();
        collect(
            child.stdout.take().expect("stdout"),
            stdout.clone(),
            "stdout",
        );
        collect(
            child.stderr.take().expect("stderr"),
            stderr.clone(),
            "stderr",
        );

        let mut session = Self {
            agent: agent.clone(),
            agent_container: String::new(),
            proxy_container: String::new(),
            internal_network: String::new(),
            egress_network: String::new(),
            probes: spec.probes,
            child: Some(child),
            stdout,
            stderr,
            hosts: BTreeMap::new(),
            resources: Resources::default(),
            dirs,
            _locks: locks,
        };

        let agent_label = format!("claude-bottle.agent={agent}");
        session.egress_network = session.wait_alive("the session's egress network", || {
            networks_with(&[&agent_label])
                .into_iter()
                .find(|n| n.starts_with("claude-bottle-egress-"))
        });
        session.internal_network = session.wait_alive("the session's internal network", || {
            networks_with(&[&agent_label])
                .into_iter()
                .find(|n| n.starts_with("claude-bottle-internal-"))
        });
        for host in &spec.hosts {
            let name = format!("{agent}-host-{}", host.role);
            let mut args: Vec<String> = vec!["--network".into(), session.egress_network.clone()];
            for alias in &host.aliases {
                args.push("--network-alias".into());
                args.push(alias.clone());
            }
            for (k, v) in &host.env {
                args.push("-e".into());
                args.push(format!("{k}={v}"));
            }
            args.push(host.image.clone());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            session.resources.run_detached(&name, &refs);
            session.hosts.insert(host.role.clone(), name);
        }
        for host in &spec.hosts {
            let name = session.hosts[&host.role].clone();
            session.wait_alive(&format!("test host `{}` to serve", host.role), || {
                logs(&name).contains(&host.ready_line).then_some(())
            });
        }
        let running = |role: &str| {
            let role_label = format!("claude-bottle.role={role}");
            let agent_label = agent_label.clone();
            move || {
                containers_with(&[&agent_label, &role_label])
                    .into_iter()
                    .find(|c| try_inspect(c, "{{.State.Running}}").as_deref() == Some("true"))
            }
        };
        session.proxy_container =
            session.wait_alive("the proxy container to run", running("proxy"));
        session.agent_container =
            session.wait_alive("the agent container to run", running("agent"));
        session
    }

    /// Polls `probe` until it yields, failing early (with the product's
    /// output) if claude-bottle exits first.
    fn wait_alive<T>(&mut self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(found) = probe() {
                return found;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                std::thread::sleep(Duration::from_millis(300));
                panic!(
                    "claude-bottle exited ({status}) before {what}\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout_text(),
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- stderr\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stdout_text(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The container of the test host `role`.
    pub fn host(&self, role: &str) -> &str {
        self.hosts
            .get(role)
            .unwrap_or_else(|| panic!("no test host `{role}`"))
    }

    pub fn host_ip(&self, role: &str) -> String {
        ip_on(self.host(role), &self.egress_network)
    }

    pub fn host_log(&self, role: &str) -> String {
        logs(self.host(role))
    }

    pub fn agent_ip(&self) -> String {
        ip_on(&self.agent_container, &self.internal_network)
    }

    pub fn proxy_internal_ip(&self) -> String {
        ip_on(&self.proxy_container, &self.internal_network)
    }

    pub fn proxy_egress_ip(&self) -> String {
        ip_on(&self.proxy_container, &self.egress_network)
    }

    /// The gateway address Docker assigned to a network's IPAM config.
    pub fn gateway_of(network: &str) -> String {
        docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            network,
        ])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
    }

    /// The proxy's JSON log lines.
    pub fn proxy_log(&self) -> Vec<Value> {
        logs(&self.proxy_container)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `docker exec` into the agent container as `user`, `stdin` fed to `sh -c script`.
    pub fn exec(&self, user: &str, script: &str, stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                "-u",
                user,
                &self.agent_container,
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker exec");
        {
            let mut input = child.stdin.take().expect("stdin");
            if let Some(bytes) = stdin {
                input.write_all(bytes).expect("write exec stdin");
            }
        }
        child.wait_with_output().expect("docker exec output")
    }

    /// Runs a control container of `image` on this session's EGRESS network
    /// (where a real internet client would be), to show that what the agent
    /// cannot do is possible from there.
    pub fn control_on_egress(&mut self, name: &str, extra: &[&str], cmd: &[&str]) -> Output {
        let full_name = format!("{}-ctl-{name}", self.agent);
        // Unprivileged ICMP sockets for the controls' pings, as Docker allows
        // by default and Podman's Docker API does not. Not Docker's
        // `0 2147483647`: the kernel refuses a range beyond the group ids
        // mapped into the network namespace's user namespace, which under
        // rootless Podman end at 65536 (the container then fails to start,
        // and the docker CLI says only "unable to upgrade to tcp, received
        // 409").
        let mut args: Vec<String> = vec![
            "--network".into(),
            self.egress_network.clone(),
            "--sysctl".into(),
            "net.ipv4.ping_group_range=0 65535".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args.push(AGENT_IMAGE.into());
        args.extend(cmd.iter().map(|a| (*a).to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.resources.run_once(&full_name, &refs)
    }

    /// Hands the probes their variables and lets them run.
    pub fn go(&self, vars: &[(&str, String)]) {
        let written = self.exec(
            "1000",
            &format!("cat > {VARS_FILE} && touch {GO_MARKER}"),
            Some(vars_script(vars).as_bytes()),
        );
        assert!(
            written.status.success(),
            "could not hand the probes their variables: {}",
            String::from_utf8_lossy(&written.stderr)
        );
    }

    /// Waits until the stub has run every probe (it then waits at RELEASE).
    pub fn wait_probes_done(&mut self) {
        let last = format!("CLAUDE_STUB_PROBE {} exit=", self.probes.len());
        let deadline = Instant::now() + PROBES_LIMIT;
        while !self.stdout_text().contains(&last) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                std::thread::sleep(Duration::from_millis(300));
                panic!(
                    "claude-bottle exited ({status}) before the probes finished\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout_text(),
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the probes did not finish in {PROBES_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the stub printed its report within `limit`.
    fn stub_reported(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.stdout_text().contains("CLAUDE_STUB_REPORT ") {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Detaches the test hosts, releases the stub and waits for claude-bottle
    /// to exit and tear down.
    pub fn finish(mut self) -> Outcome {
        self.remove_hosts();
        let released = self.exec("1000", &format!("touch {RELEASE_MARKER}"), None);
        // The touch can land, the stub end and the bottle go before the
        // docker CLI reads the exec's exit code back (seen on Podman): then
        // the stub's report, printed only after it saw the marker, proves it.
        assert!(
            released.status.success() || self.stub_reported(Duration::from_secs(30)),
            "could not release the stub: {}",
            String::from_utf8_lossy(&released.stderr)
        );
        let mut child = self.child.take().expect("the session is running");
        let status = wait_exit(&mut child, EXIT_LIMIT).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "claude-bottle did not exit within {EXIT_LIMIT:?} after the stub was released\n--- stderr\n{}",
                self.stderr_text()
            )
        });
        // The reader threads drain the pipes after exit.
        std::thread::sleep(Duration::from_millis(300));
        let stdout = self.stdout_text();
        let stderr = self.stderr_text();
        let report = StubReport::parse(&stdout, &self.probes).unwrap_or_else(|| {
            panic!("no stub report in claude-bottle's stdout\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
        });
        let leftovers = wait_torn_down(&self.agent);
        Outcome {
            code: status.code(),
            stdout,
            stderr,
            report,
            leftovers,
        }
    }

    fn remove_hosts(&mut self) {
        let hosts: Vec<String> = self.hosts.values().cloned().collect();
        for host in hosts {
            self.resources.remove_container(&host);
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the product's teardown; what is still there after the limit.
fn wait_torn_down(agent: &str) -> Vec<String> {
    let label = format!("claude-bottle.agent={agent}");
    let deadline = Instant::now() + TEARDOWN_LIMIT;
    loop {
        let mut left: Vec<String> = containers_with(&[&label])
            .into_iter()
            .map(|c| format!("container {c}"))
            .collect();
        left.extend(
            networks_with(&[&label])
                .into_iter()
                .map(|n| format!("network {n}")),
        );
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.remove_hosts();
        if !self.agent_container.is_empty() {
            let _ = self.exec("1000", &format!("touch {GO_MARKER} {RELEASE_MARKER}"), None);
        }
        if wait_exit(&mut child, Duration::from_secs(30)).is_none() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_exit(&mut child, Duration::from_secs(30)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Backstop: the session's agent name is unique to this test, so what
        // still carries it is this test's doing, even if the product made it.
        let label = format!("claude-bottle.agent={}", self.agent);
        let containers = containers_with(&[&label]);
        let networks = networks_with(&[&label]);
        if !containers.is_empty() || !networks.is_empty() {
            eprintln!("e2e: backstop removal: {containers:?} {networks:?}");
            remove_resources(&containers, &networks);
        }
    }
}

/// A finished session.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub report: StubReport,
    /// What carried the session's label after teardown (should be nothing).
    pub leftovers: Vec<String>,
}

impl Outcome {
    /// The product exited with the stub's code (0), the gates passed (so the
    /// probes ran in the window the test arranged), and teardown left nothing.
    pub fn assert_clean(&self) {
        assert!(
            self.report.gates_passed(),
            "the stub's gates did not pass: {:#}",
            self.report.json["probes"]
        );
        assert_eq!(
            self.code,
            Some(0),
            "claude-bottle's exit code\n--- stderr\n{}",
            self.stderr
        );
        assert!(
            self.leftovers.is_empty(),
            "teardown left {:?}",
            self.leftovers
        );
    }
}
