//! Many bottles at once on a daemon with its default configuration (issue
//! 10 §1): 50 `claude-bottle start` sessions run the stub `claude` at the
//! same moment, each returns its own exit code, nothing is left behind, and
//! two of those bottles cannot reach each other.
//!
//! Bring-ups go in waves of [`WAVE`] (two cores run CI), but no session ends
//! before all 50 are up: every stub waits at a gate that the test opens
//! only once every stub has reached it. The test prints how long each phase
//! took (a figure, not an assertion).
//!
//! Resources: every agent is named `ds-<tag>-<pid>-<n>`; each [`Fixture`]
//! removes whatever still carries its agent label when it drops, and stale
//! `ds-*` resources of dead test processes are swept first.

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod lock;
    pub mod sessions;
}

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use docker_support::daemon::{docker, docker_lines, docker_ok};
use docker_support::fixture::Fixture;
use docker_support::lock::RuntimeLock;

const AGENT_PREFIX: &str = "ds-";
const BOTTLES: usize = 50;
/// Bring-ups in flight at once.
const WAVE: usize = 10;
/// The stub waits at its gate until the test creates this file.
const GO: &str = "/tmp/ds-go";
/// The pipelock stand-in's port (core::pipelock::LISTEN_PORT).
const PROXY_PORT: &str = "8888";
/// A port a test listener opens in an agent container.
const LISTENER_PORT: &str = "9999";

fn require() {
    docker_support::fixture::require("docker_scale", AGENT_PREFIX)
}

fn fixture(tag: &str) -> Fixture {
    // The gate is a probe: it must outlast every wave.
    Fixture::stub_session(
        AGENT_PREFIX,
        tag,
        "ds",
        &[("CLAUDE_STUB_PROBE_TIMEOUT", "600")],
    )
}

/// One `start` with its output going to files in the fixture's directory.
struct Started {
    fx: Fixture,
    child: Child,
    code: i32,
}

impl Started {
    fn spawn(fx: Fixture, code: i32) -> Self {
        // The stub reports its first probe on stdout as soon as it is done:
        // then it is at the gate, which waits (bounded, so a dead test
        // leaves no session) until the test opens it.
        let gate = format!(
            "n=0; while [ ! -e {GO} ]; do n=$((n+1)); [ $n -gt 6000 ] && exit 99; sleep 0.1; done"
        );
        let out = File::create(fx.dir.path().join("stdout")).unwrap();
        let err = File::create(fx.dir.path().join("stderr")).unwrap();
        let code_arg = code.to_string();
        let child = fx
            .command(&[
                "start",
                &fx.agent,
                "--yes",
                "--",
                "--stub-sh",
                "true",
                "--stub-sh",
                &gate,
                "--stub-exit",
                &code_arg,
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn claude-bottle");
        Self { fx, child, code }
    }

    fn agent_container(&self) -> String {
        format!("claude-bottle-{}", self.fx.agent)
    }

    fn proxy_container(&self) -> String {
        format!("claude-bottle-pipelock-{}", self.fx.agent)
    }

    /// The stub has run its first probe: it is at the gate.
    fn at_gate(&self) -> bool {
        fs::read_to_string(self.fx.dir.path().join("stdout"))
            .is_ok_and(|out| out.contains("CLAUDE_STUB_PROBE "))
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.fx.dir.path().join("stderr")).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for claude-bottle")
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `job` on every item, [`WAVE`] at a time: each `docker` call takes
/// a while on a loaded daemon, and 50 in a row would take minutes.
fn on_each<T: Sync>(items: &[T], job: impl Fn(&T) + Sync) {
    for chunk in items.chunks(WAVE) {
        std::thread::scope(|scope| {
            for item in chunk {
                scope.spawn(|| job(item));
            }
        });
    }
}

/// The agent containers of this test process that are running now.
fn running_agents() -> Vec<String> {
    let ours = format!("{AGENT_PREFIX}fifty-{}-", std::process::id());
    docker_lines(&[
        "ps",
        "--filter",
        "label=claude-bottle.role=agent",
        "--filter",
        "status=running",
        "--format",
        "{{.Label \"claude-bottle.agent\"}}",
    ])
    .into_iter()
    .filter(|agent| agent.starts_with(&ours))
    .collect()
}

/// Waits until every session of `wave` has its agent running; fails with
/// the stderr of a session that exited first.
fn wait_for_running(wave: &mut [Started], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let running = running_agents();
        if wave.iter().all(|s| running.contains(&s.fx.agent)) {
            return;
        }
        for session in wave.iter_mut() {
            if let Some(status) = session.exited() {
                panic!(
                    "`{}` exited ({status}) before its bottle ran:\n{}",
                    session.fx.agent,
                    session.stderr()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every bottle of the wave ran within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `(network, address)` of each network each of `containers` is on, in
/// one `docker inspect`.
fn addresses_of(containers: &[String]) -> Vec<Vec<(String, String)>> {
    let mut args = vec![
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
    ];
    args.extend(containers.iter().map(String::as_str));
    docker_lines(&args)
        .iter()
        .map(|line| {
            line.split_whitespace()
                .filter_map(|pair| {
                    let (network, ip) = pair.split_once('=')?;
                    Some((network.to_owned(), ip.to_owned()))
                })
                .collect()
        })
        .collect()
}

fn addresses(container: &str) -> Vec<(String, String)> {
    addresses_of(&[container.to_owned()]).remove(0)
}

fn address_on(container: &str, network_kind: &str) -> String {
    addresses(container)
        .into_iter()
        .find(|(network, _)| network.starts_with(&format!("claude-bottle-{network_kind}-")))
        .map(|(_, ip)| ip)
        .unwrap_or_else(|| panic!("`{container}` has no address on a {network_kind} network"))
}

/// TCP connections from inside `from` to each `ip:port` of `targets`, at
/// once: for each, `ok`, the errno's name (`ECONNREFUSED` means the address
/// was reached), or `timeout`.
fn connect_all(from: &str, targets: &[(String, &str)]) -> Vec<String> {
    let script = r#"import errno, socket, sys, threading
out = {}
def one(i, ip, port):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((ip, int(port)))
        out[i] = 'ok'
    except socket.timeout:
        out[i] = 'timeout'
    except OSError as e:
        out[i] = errno.errorcode.get(e.errno, str(e))
pairs = [a.split(':') for a in sys.argv[1:]]
ts = [threading.Thread(target=one, args=(i, ip, port)) for i, (ip, port) in enumerate(pairs)]
[t.start() for t in ts]
[t.join() for t in ts]
print(' '.join(out[i] for i in range(len(pairs))))
"#;
    let mut args = vec![
        "exec".to_owned(),
        from.to_owned(),
        "python3".into(),
        "-c".into(),
        script.into(),
    ];
    args.extend(targets.iter().map(|(ip, port)| format!("{ip}:{port}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker(&args);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn connect(from: &str, ip: &str, port: &str) -> String {
    connect_all(from, &[(ip.to_owned(), port)]).join(" ")
}

fn unreachable(outcome: &str) -> bool {
    matches!(outcome, "timeout" | "ENETUNREACH" | "EHOSTUNREACH")
}

/// Agent `a` reaches its own proxy but neither agent `b` nor `b`'s proxy on
/// any of its networks; `b`'s listener answers inside `b`, so a failure
/// from `a` is isolation, not a dead listener.
fn assert_isolated(a: &Started, b: &Started) {
    let (agent_a, agent_b) = (a.agent_container(), b.agent_container());
    let listener = format!(
        "import socket,time\ns=socket.socket(); s.bind(('0.0.0.0', {LISTENER_PORT})); s.listen(8)\ntime.sleep(600)\n"
    );
    docker_ok(&["exec", "-d", &agent_b, "python3", "-c", &listener]);
    let b_ip = address_on(&agent_b, "internal");
    // Each `docker exec` can take seconds on a loaded daemon.
    let deadline = Instant::now() + Duration::from_secs(120);
    while connect(&agent_b, &b_ip, LISTENER_PORT) != "ok" {
        assert!(
            Instant::now() < deadline,
            "the listener in `{agent_b}` never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let own_proxy = address_on(&a.proxy_container(), "internal");
    assert_eq!(
        connect(&agent_a, &own_proxy, PROXY_PORT),
        "ok",
        "`{agent_a}` must reach its own proxy"
    );
    let targets = [
        ("agent B", b_ip.clone(), LISTENER_PORT),
        (
            "proxy B (internal)",
            address_on(&b.proxy_container(), "internal"),
            PROXY_PORT,
        ),
        (
            "proxy B (egress)",
            address_on(&b.proxy_container(), "egress"),
            PROXY_PORT,
        ),
    ];
    for (what, ip, port) in targets {
        let outcome = connect(&agent_a, &ip, port);
        assert!(
            unreachable(&outcome),
            "agent A reached {what} at {ip}:{port}: {outcome}"
        );
    }
}

#[test]
fn fifty_sessions_at_once_run_claude_return_its_code_and_leave_nothing() {
    require();
    // The sessions must all see the daemon's own runtimes, unchanged.
    let _runtime = RuntimeLock::shared();
    let clock = Instant::now();
    let mut sessions: Vec<Started> = Vec::with_capacity(BOTTLES);
    for wave in 0..BOTTLES.div_ceil(WAVE) {
        let first = sessions.len();
        for i in first..(first + WAVE).min(BOTTLES) {
            let code = i32::try_from(i % 7 + 1).unwrap();
            sessions.push(Started::spawn(fixture("fifty"), code));
        }
        wait_for_running(&mut sessions[first..], Duration::from_secs(240));
        eprintln!(
            "wave {}: {} bottles running after {:.1} s",
            wave + 1,
            sessions.len(),
            clock.elapsed().as_secs_f64()
        );
    }
    let all_running = clock.elapsed();
    // Every stub reaches its gate: then all 50 Claudes run at once.
    let deadline = Instant::now() + Duration::from_secs(240);
    while !sessions.iter().all(Started::at_gate) {
        assert!(Instant::now() < deadline, "not every stub reached its gate");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(running_agents().len(), BOTTLES);
    let proxies: Vec<String> = sessions.iter().map(Started::proxy_container).collect();
    let networks: BTreeSet<String> = addresses_of(&proxies)
        .into_iter()
        .flatten()
        .map(|(network, _)| network)
        .collect();
    assert_eq!(networks.len(), 2 * BOTTLES, "two networks per bottle");
    let mut inspect = vec![
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
    ];
    inspect.extend(networks.iter().map(String::as_str));
    let subnets: BTreeSet<String> = docker_lines(&inspect).into_iter().collect();
    assert_eq!(
        subnets.len(),
        2 * BOTTLES,
        "a subnet of its own per network: {subnets:?}"
    );
    assert_isolated(&sessions[0], &sessions[1]);
    assert_isolated(&sessions[BOTTLES - 1], &sessions[0]);
    eprintln!(
        "all {BOTTLES} running after {:.1} s; isolation checked at {:.1} s",
        all_running.as_secs_f64(),
        clock.elapsed().as_secs_f64()
    );

    let release = Instant::now();
    on_each(&sessions, |session| {
        docker_ok(&["exec", &session.agent_container(), "touch", GO]);
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    for session in &mut sessions {
        let status = loop {
            if let Some(status) = session.exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not exit:\n{}",
                session.fx.agent,
                session.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            status.code(),
            Some(session.code),
            "`{}` must return Claude's exit code:\n{}",
            session.fx.agent,
            session.stderr()
        );
    }
    eprintln!(
        "all {BOTTLES} exited {:.1} s after release; {:.1} s in all",
        release.elapsed().as_secs_f64(),
        clock.elapsed().as_secs_f64()
    );
    for session in &sessions {
        session.fx.assert_nothing_left();
    }
}
