//! `egress`, `allow` and the denial summary on the real daemon: real
//! `claude-bottle start` sessions with the stub `claude` (tests/e2e_support/
//! session.rs), test hosts on the session's egress network, and the commands
//! run against the running bottle as a user would run them from another
//! terminal.
//!
//! | test | proves | made by |
//! |------|--------|---------|
//! | feed | `egress --json` gives exactly the six keys with the right values for an allowed and a denied request of the agent; the text form and NAME by agent; an unknown NAME exits 2 naming the running bottle; `--follow` prints a request made after it started and exits 0 when the bottle ends | curl in the bottle, gated by a marker the test creates after `--follow` printed the backlog |
//! | summary | after a session with denials, stderr lists each denied host with its count, most frequent first, and the hint naming `bottles.<bottle>.egress.allowlist` | plain HTTP and CONNECT denials in the bottle |
//! | live allow | a request looping in the bottle is refused until `allow` and passes within 2 s of `allow` returning; a CONNECT tunnel opened before the reload carries a request after it; the proxy container keeps its ID, start time and RestartCount 0; `--remove` refuses the host again | a python probe in the bottle that records each attempt's time and code; `docker inspect` |
//! | refusals | an internal address, a name resolving to one, and bad hosts exit 2 and change nothing (config file, reload count, proxy container); a reload the proxy itself refuses makes `allow` exit 1 with the proxy's reason, and the proxy goes on with its old config | the proxy's config file and log; a config file tampered inside the proxy container so the proxy refuses the next reload |
//! | save | `--save` changes only that bottle's allowlist in the manifest the session was started from, byte for byte; `--save --remove` too | a hand-laid-out manifest compared around the edited array |
//! | embedded default | `--save` on a session of the embedded default manifest exits 2 with the `init` hint and changes nothing | a real session of the default manifest (its agent image tagged from the test image) |

mod docker_support {
    pub mod daemon;
    pub mod lock;
    pub mod sessions;
    pub mod test_resources;
}
mod e2e_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use docker_support::daemon::{docker, docker_ok};
use e2e_support::docker::{inspect, logs, wait_for};
use e2e_support::session::{Session, SessionDirs, SessionSpec, TestHost};
use serde_json::{Value, json};

/// The test hosts live on Docker bridge networks, so their addresses are
/// private; the bottle exempts the private ranges from the SSRF check (as
/// e2e_isolation.rs does), and the allowlist decides every name.
const PRIVATE_RANGES: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

fn bottle(allowlist: &[&str]) -> Value {
    json!({ "egress": { "allowlist": allowlist, "ip_cidrs": PRIVATE_RANGES } })
}

/// Seconds since the epoch. The containers share the host's clock, so this
/// compares with `time.time()` inside the bottle.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// `claude-bottle ARGS` as the user would run it next to the session: same
/// home, scratch root and manifest.
fn cli(session: &Session, args: &[&str]) -> Output {
    session
        .dirs
        .command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run claude-bottle")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Waits until the stub reported its probe `n` (1 is the test's first probe;
/// 0 is the GO gate).
fn wait_probe(session: &Session, n: usize) {
    let line = format!("CLAUDE_STUB_PROBE {n} exit=");
    wait_for(
        &format!("probe {n} to finish"),
        Duration::from_secs(60),
        || session.stdout_text().contains(&line).then_some(()),
    );
}

/// Creates `marker` in the agent container (a gate a probe waits for).
fn touch(session: &Session, marker: &str) {
    let out = session.exec("1000", &format!("touch {marker}"), None);
    assert!(out.status.success(), "touch {marker}: {}", show(&out));
}

/// Waits until `marker` exists in the agent container (a probe got there).
fn wait_marker(session: &Session, marker: &str, limit: Duration) {
    wait_for(&format!("the probe to create {marker}"), limit, || {
        session
            .exec("1000", &format!("test -e {marker}"), None)
            .status
            .success()
            .then_some(())
    });
}

/// A probe's gate on `marker`, bounded so a dead test never hangs a session.
fn gate(marker: &str) -> String {
    format!(
        "n=0; while [ ! -e {marker} ]; do n=$((n+1)); [ $n -gt 600 ] && exit 99; sleep 0.1; done"
    )
}

/// What says the proxy container is the same process: ID, start time,
/// restart count, running.
fn proxy_identity(proxy: &str) -> String {
    inspect(
        proxy,
        "{{.Id}} {{.State.StartedAt}} restarts={{.RestartCount}} running={{.State.Running}}",
    )
}

/// The proxy's config file as it is in its container.
fn proxy_config_file(session: &Session) -> String {
    docker_ok(&[
        "exec",
        &session.proxy_container,
        "cat",
        "/etc/pipelock/pipelock.yaml",
    ])
}

/// The proxy's JSON log events named `event`.
fn events(session: &Session, event: &str) -> Vec<Value> {
    session
        .proxy_log()
        .into_iter()
        .filter(|l| l["event"] == event)
        .collect()
}

/// The HTTP code of a plain request through the proxy from inside the agent
/// container (`docker exec` gets the container's proxy variables).
fn code_from_agent(session: &Session, url: &str) -> String {
    let out = session.exec(
        "1000",
        &format!("curl -s -o /dev/null -m 10 -w '%{{http_code}}' {url}"),
        None,
    );
    text(&out.stdout).trim().to_owned()
}

fn curl_plain(url: &str) -> String {
    format!("curl -sS -m 15 -o /dev/null -w 'HTTP_CODE=%{{http_code}}\\n' {url}")
}

/// `-p` makes curl CONNECT through the proxy even for http://.
fn curl_connect(url: &str) -> String {
    format!("curl -sS -m 15 -p -o /dev/null -w 'HTTP_CODE=%{{http_code}}\\n' {url}")
}

/// `egress --follow` running in the background, its stdout lines collected.
struct Follower {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stderr: Arc<Mutex<String>>,
}

impl Follower {
    fn start(session: &Session, args: &[&str]) -> Self {
        let mut child = session
            .dirs
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn egress --follow");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("[egress --follow] {line}");
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[egress --follow stderr] {line}");
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    fn json_lines(&self) -> Vec<(Instant, Value)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(at, l)| {
                let value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("`egress --json` line is no JSON ({e}): {l}"));
                (*at, value)
            })
            .collect()
    }

    /// Waits for the first line `pick` accepts; when it was read.
    fn wait_line(&self, what: &str, limit: Duration, pick: impl Fn(&Value) -> bool) -> Instant {
        wait_for(what, limit, || {
            self.json_lines()
                .into_iter()
                .find(|(_, v)| pick(v))
                .map(|(at, _)| at)
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // Ours: it normally ended with the bottle already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const JSON_KEYS: [&str; 6] = ["time", "decision", "host", "port", "method", "reason"];

fn assert_keys(event: &Value) {
    let keys: Vec<&str> = event
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {event}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    let mut expected = JSON_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "exactly these keys: {event}");
}

/// An RFC 3339 UTC time within the test's window (whole seconds).
fn assert_time_between(event: &Value, from: f64, to: f64) {
    let time = event["time"].as_str().unwrap_or_default();
    let out = Command::new("date")
        .args(["-u", "-d", time, "+%s"])
        .output()
        .expect("date");
    let secs: f64 = text(&out.stdout).trim().parse().unwrap_or_else(|_| {
        panic!("`time` is no RFC 3339 time: {event}");
    });
    assert!(
        time.contains('T') && (time.ends_with('Z') || time.contains('+')),
        "RFC 3339: {event}"
    );
    assert!(
        secs >= from.floor() - 1.0 && secs <= to.ceil() + 1.0,
        "`time` {time} is not within the session ({from}..{to}): {event}"
    );
}

// ---------------------------------------------------------------------------
// egress: the feed
// ---------------------------------------------------------------------------

const LATE_MARKER: &str = "/tmp/egress-late";

#[test]
fn egress_lists_the_agents_requests_and_follow_ends_with_the_bottle() {
    e2e_support::require();
    let clock = now();
    let spec = SessionSpec::new("feed", bottle(&["x.test"]))
        .host(TestHost::http("web", &["x.test", "denied.test"]))
        .probe("allowed", &curl_plain("http://x.test/feed-allowed"))
        .probe("denied", &curl_plain("http://denied.test/feed-denied"))
        .probe(
            "late",
            &format!(
                "{}; {}",
                gate(LATE_MARKER),
                curl_connect("http://x.test/feed-late")
            ),
        );
    let session = Session::start(spec, SessionDirs::new());
    session.go(&[]);
    wait_probe(&session, 2);
    let name = session.agent_container.clone();

    // The backlog, as JSON.
    let out = cli(&session, &["egress", &name, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let feed: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for event in &feed {
        assert_keys(event);
    }
    let allowed: Vec<&Value> = feed.iter().filter(|e| e["host"] == "x.test").collect();
    let denied: Vec<&Value> = feed.iter().filter(|e| e["host"] == "denied.test").collect();
    assert_eq!(allowed.len(), 1, "one allowed request: {feed:#?}");
    assert_eq!(denied.len(), 1, "one denied request: {feed:#?}");
    let (allowed, denied) = (allowed[0], denied[0]);
    assert_eq!(allowed["decision"], "allowed", "{allowed}");
    assert_eq!(allowed["port"], 80, "{allowed}");
    assert_eq!(allowed["method"], "GET", "{allowed}");
    assert_eq!(allowed["reason"], Value::Null, "{allowed}");
    assert_eq!(denied["decision"], "denied", "{denied}");
    assert_eq!(denied["port"], 80, "{denied}");
    assert_eq!(denied["method"], "GET", "{denied}");
    let reason = denied["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("allowlist") && reason.contains("denied.test"),
        "the proxy's reason: {denied}"
    );
    assert_time_between(allowed, clock, now());
    assert_time_between(denied, clock, now());

    // The text form, NAME given as the agent.
    let out = cli(&session, &["egress", &session.agent]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("denied.test:80"))
        .unwrap_or_else(|| panic!("no line for denied.test: {stdout}"));
    assert!(
        line.contains("denied") && line.contains("GET") && line.contains(reason),
        "{line}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("x.test:80") && l.contains("allowed")),
        "{stdout}"
    );

    // An unknown NAME: exit 2, naming the bottles that run.
    let out = cli(&session, &["egress", "no-such-bottle-3f9a"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains(&name), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));

    // --follow: the backlog, then a request made after it started.
    let follower = Follower::start(&session, &["egress", &name, "--follow", "--json"]);
    follower.wait_line(
        "--follow to print the backlog",
        Duration::from_secs(15),
        |v| v["host"] == "denied.test",
    );
    let asked = Instant::now();
    touch(&session, LATE_MARKER);
    let seen = follower.wait_line(
        "--follow to print the request made after it started",
        Duration::from_secs(20),
        |v| v["host"] == "x.test" && v["method"] == "CONNECT",
    );
    eprintln!(
        "timing: --follow printed the late request {:?} after the probe was released",
        seen - asked
    );
    let late = follower
        .json_lines()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["method"] == "CONNECT")
        .unwrap();
    assert_keys(&late);
    assert_eq!(late["decision"], "allowed", "{late}");
    assert_eq!(late["port"], 80, "{late}");
    assert_eq!(late["reason"], Value::Null, "{late}");

    // The bottle ends: --follow ends too, with 0.
    let finishing = Instant::now();
    let outcome = session.finish();
    outcome.assert_clean();
    let finished = finishing.elapsed();
    let mut follower = follower;
    let status = wait_for(
        "`egress --follow` to exit after the bottle ended",
        Duration::from_secs(15),
        || follower.child.try_wait().ok().flatten(),
    );
    eprintln!(
        "timing: --follow had exited {:?} after the stub was released \
         (release, claude-bottle's exit and teardown took {finished:?})",
        finishing.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "--follow's exit; stderr: {}",
        follower.stderr.lock().unwrap()
    );
    let lines = follower.json_lines();
    assert_eq!(
        lines.len(),
        3,
        "the backlog and the late request, each once: {lines:#?}"
    );
}

// ---------------------------------------------------------------------------
// the denial summary
// ---------------------------------------------------------------------------

#[test]
fn a_session_with_denials_ends_with_each_denied_host_and_its_count() {
    e2e_support::require();
    // b.test 3 times, c.test twice, a.test once: by count the order is the
    // reverse of the names', so a sort by name cannot pass.
    let spec = SessionSpec::new("summary", bottle(&["x.test"]))
        .host(TestHost::http(
            "web",
            &["x.test", "a.test", "b.test", "c.test"],
        ))
        .probe("allowed", &curl_plain("http://x.test/"))
        .probe("a", &curl_plain("http://a.test/"))
        .probe(
            "b",
            &format!(
                "{}; {}; {}",
                curl_plain("http://b.test/1"),
                curl_plain("http://b.test/2"),
                curl_connect("http://b.test/3")
            ),
        )
        .probe(
            "c",
            &format!(
                "{}; {}",
                curl_plain("http://c.test/1"),
                curl_connect("http://c.test/2")
            ),
        );
    let mut session = Session::start(spec, SessionDirs::new());
    session.go(&[]);
    session.wait_probes_done();
    let outcome = session.finish();
    outcome.assert_clean();
    let stderr = &outcome.stderr;
    let start = stderr
        .find("warning: the proxy denied 3 hosts:")
        .unwrap_or_else(|| panic!("no denial summary:\n{stderr}"));
    let block: Vec<&str> = stderr[start..].lines().take(5).collect();
    let rows: Vec<Vec<&str>> = block[1..4]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [["b.test", "3"], ["c.test", "2"], ["a.test", "1"]],
        "hosts with counts, most frequent first:\n{stderr}"
    );
    assert!(
        block[4].starts_with("  hint: ")
            && block[4].contains("bottles.e2e.egress.allowlist")
            && block[4].contains("claude-bottle allow"),
        "the hint:\n{stderr}"
    );
    assert!(
        !stderr[start..].contains("x.test"),
        "an allowed host is no denial:\n{stderr}"
    );
    assert_eq!(stderr.matches("the proxy denied").count(), 1, "{stderr}");
}

// ---------------------------------------------------------------------------
// allow: live, no restart, open tunnels kept
// ---------------------------------------------------------------------------

const TUNNEL_OPEN_MARKER: &str = "/tmp/egress-tunnel-open";
const LOOP_MARKER: &str = "/tmp/egress-loop-started";

/// Inside the bottle: opens a CONNECT tunnel to x.test:80 through the proxy
/// and makes one keep-alive request over it; then loops a plain request to
/// late.test (not on the allowlist) through the proxy, recording when each
/// started and ended and its code, until one gets 200 or 45 s pass; then
/// makes a second request over the SAME tunnel. Prints one JSON line.
const LIVE_PROBE: &str = r#"python3 - <<'EOF'
import json, os, socket, subprocess, time, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["http_proxy"])
out = {}
def request(sock, path):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: x.test\r\n\r\n" % path).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("tunnel closed after %r" % buf)
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    length = int([l.split(":", 1)[1] for l in lines if l.lower().startswith("content-length:")][0])
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("tunnel closed in the body")
        body += chunk
    return [lines[0], body[:length].decode().strip()]
try:
    tunnel = socket.create_connection((proxy.hostname, proxy.port), timeout=30)
    tunnel.sendall(b"CONNECT x.test:80 HTTP/1.1\r\nHost: x.test:80\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        byte = tunnel.recv(1)
        if not byte:
            raise EOFError("proxy closed after %r" % head)
        head += byte
    out["connect"] = head.decode().split("\r\n")[0]
    out["before"] = request(tunnel, "/tunnel-before")
    open("/tmp/egress-tunnel-open", "w").close()
    attempts = []
    deadline = time.time() + 45
    while time.time() < deadline:
        started = time.time()
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}",
                            "http://late.test/loop"], capture_output=True, text=True)
        attempts.append([started, time.time(), r.stdout])
        open("/tmp/egress-loop-started", "w").close()
        if r.stdout == "200":
            break
        time.sleep(0.05)
    out["attempts"] = attempts
    out["after"] = request(tunnel, "/tunnel-after")
except Exception as e:
    out["error"] = repr(e)
print("LIVE " + json.dumps(out))
EOF"#;

#[test]
fn allow_admits_a_host_live_without_restarting_the_proxy_or_cutting_tunnels() {
    e2e_support::require();
    let spec = SessionSpec::new("live", bottle(&["x.test"]))
        .host(TestHost::http("web", &["x.test", "late.test"]))
        .probe("live", LIVE_PROBE);
    let session = Session::start(spec, SessionDirs::new());
    let name = session.agent_container.clone();
    session.go(&[]);
    wait_marker(&session, TUNNEL_OPEN_MARKER, Duration::from_secs(30));
    wait_marker(&session, LOOP_MARKER, Duration::from_secs(30));

    let identity_before = proxy_identity(&session.proxy_container);
    let called = now();
    let out = cli(&session, &["allow", &name, "late.test"]);
    let returned = now();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("late.test") && text(&out.stderr).contains("reloaded"),
        "{}",
        show(&out)
    );
    eprintln!("timing: `allow` took {:.3} s", returned - called);
    let identity_after = proxy_identity(&session.proxy_container);
    assert_eq!(
        identity_after, identity_before,
        "the proxy container is the same process"
    );
    assert!(
        identity_after.contains("restarts=0 running=true"),
        "{identity_after}"
    );
    assert!(
        proxy_config_file(&session).contains("- late.test"),
        "the config in the proxy has the host"
    );

    wait_probe(&session, 1);
    // Taken out again: refused again, still without a restart.
    let out = cli(&session, &["allow", &name, "late.test", "--remove"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(code_from_agent(&session, "http://late.test/removed"), "403");
    assert_eq!(code_from_agent(&session, "http://x.test/kept"), "200");
    assert_eq!(proxy_identity(&session.proxy_container), identity_before);
    assert_eq!(events(&session, "startup").len(), 1, "one proxy start");
    assert_eq!(
        events(&session, "config_reload").len(),
        2,
        "one applied reload per `allow`"
    );
    let tunnels: Vec<Value> = events(&session, "tunnel_open")
        .into_iter()
        .filter(|e| e["target"] == "x.test:80")
        .collect();
    assert_eq!(tunnels.len(), 1, "the probe's one tunnel: {tunnels:#?}");

    let outcome = session.finish();
    outcome.assert_clean();
    let probe = outcome.report.probe("live");
    let result: Value = probe
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("LIVE "))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result from the probe\n{probe}"));
    assert_eq!(result["error"], Value::Null, "{result:#}");
    assert!(
        result["connect"]
            .as_str()
            .unwrap_or_default()
            .contains(" 200 "),
        "{result:#}"
    );
    let over_tunnel = |key: &str, path: &str| {
        let answer = &result[key];
        assert!(
            answer[0].as_str().unwrap_or_default().contains(" 200 ")
                && answer[1].as_str().unwrap_or_default().contains(path),
            "{key}: {result:#}"
        );
    };
    over_tunnel("before", "/tunnel-before");
    // The tunnel opened before the reload still carries a request after it.
    over_tunnel("after", "/tunnel-after");

    let attempts: Vec<(f64, f64, String)> = result["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a[0].as_f64().unwrap(),
                a[1].as_f64().unwrap(),
                a[2].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (first_pass, refused) = attempts
        .split_last()
        .unwrap_or_else(|| panic!("no attempts: {result:#}"));
    assert_eq!(first_pass.2, "200", "the loop ended passing: {attempts:?}");
    assert!(
        refused.iter().all(|a| a.2 == "403"),
        "every earlier attempt was refused by the proxy: {attempts:?}"
    );
    assert!(
        refused.iter().any(|a| a.1 < called),
        "refused before `allow`: {attempts:?}"
    );
    // `allow` returns once the proxy confirmed the reload: no request that
    // started after it returned is refused.
    let refused_after: Vec<_> = refused.iter().filter(|a| a.0 > returned).collect();
    assert!(
        refused_after.is_empty(),
        "refused after `allow` returned at {returned}: {refused_after:?}"
    );
    let latency = first_pass.1 - returned;
    eprintln!(
        "timing: first passing request ended {latency:.3} s after `allow` returned \
         ({} attempts, the last refused one ended {:.3} s after `allow` was called)",
        attempts.len(),
        refused.last().map_or(f64::NAN, |a| a.1 - called)
    );
    assert!(
        latency <= 2.0,
        "the host passed {latency:.3} s after `allow` returned (limit 2 s): {attempts:?}"
    );
}

// ---------------------------------------------------------------------------
// allow: what it refuses
// ---------------------------------------------------------------------------

#[test]
fn allow_refuses_internal_and_bad_hosts_before_anything_changes_and_reports_a_refused_reload() {
    e2e_support::require();
    let spec = SessionSpec::new("refuse", bottle(&["x.test"]))
        .host(TestHost::http("web", &["x.test", "ok.test", "new.test"]));
    let session = Session::start(spec, SessionDirs::new());
    let name = session.agent_container.clone();
    session.go(&[]);
    let config = proxy_config_file(&session);
    let identity = proxy_identity(&session.proxy_container);
    let log_lines = || logs(&session.proxy_container).lines().count();
    let lines_before = log_lines();

    // Internal addresses: refused with the manifest key that would do it.
    for (hosts, key) in [
        (vec!["127.0.0.1"], "ip_cidrs"),
        (vec!["ok.test", "169.254.169.254"], "ip_cidrs"),
        (vec!["localhost"], "trusted_domains"),
    ] {
        let mut args = vec!["allow", name.as_str()];
        args.extend(&hosts);
        let out = cli(&session, &args);
        assert_eq!(out.status.code(), Some(2), "{hosts:?}: {}", show(&out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("internal address") && stderr.contains(key),
            "{hosts:?}: {}",
            show(&out)
        );
    }
    // Bad hosts: exit 2, with a good one beside them.
    for bad in ["http://ok.test/", "bad_host!", "ok.test:443", "*", ""] {
        let out = cli(&session, &["allow", &name, "ok.test", bad]);
        assert_eq!(out.status.code(), Some(2), "`{bad}`: {}", show(&out));
        let names_it = if bad.is_empty() {
            "empty entry".to_owned()
        } else {
            format!("`{bad}`")
        };
        assert!(
            text(&out.stderr).contains(&names_it),
            "the error names the bad host `{bad}`: {}",
            show(&out)
        );
    }
    assert_eq!(
        proxy_config_file(&session),
        config,
        "the config is unchanged"
    );
    assert_eq!(proxy_identity(&session.proxy_container), identity);
    assert_eq!(
        log_lines(),
        lines_before,
        "the proxy saw no reload: {}",
        logs(&session.proxy_container)
    );
    assert_eq!(code_from_agent(&session, "http://ok.test/"), "403");

    // A reload the proxy refuses. `allow` never writes one (it refuses the
    // hosts that need one, above), so the config in the proxy is changed
    // behind its back, as another tool could: a trusted domain added, which
    // the proxy refuses to take on reload (strict mode). `allow` then writes
    // that file with its host added, and must report the proxy's refusal.
    let tampered = docker(&[
        "exec",
        &session.proxy_container,
        "sed",
        "-i",
        "s/^trusted_domains: \\[\\]$/trusted_domains:\\n- tampered.test/",
        "/etc/pipelock/pipelock.yaml",
    ]);
    assert!(tampered.status.success(), "{tampered:?}");
    assert!(proxy_config_file(&session).contains("- tampered.test"));
    wait_for(
        "the proxy to refuse the tampered config",
        Duration::from_secs(10),
        || {
            events(&session, "error")
                .iter()
                .any(|e| e["method"] == "CONFIG_RELOAD")
                .then_some(())
        },
    );
    let out = cli(&session, &["allow", &name, "new.test"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused the new config")
            && stderr.contains("rejected: security downgrade from strict mode"),
        "the proxy's reason: {}",
        show(&out)
    );
    // The proxy goes on with its previous config, unrestarted.
    assert_eq!(code_from_agent(&session, "http://new.test/"), "403");
    assert_eq!(code_from_agent(&session, "http://x.test/"), "200");
    assert_eq!(proxy_identity(&session.proxy_container), identity);
    assert!(events(&session, "config_reload").is_empty());

    session.finish().assert_clean();
}

// ---------------------------------------------------------------------------
// allow --save
// ---------------------------------------------------------------------------

#[test]
fn allow_save_changes_only_that_bottles_allowlist_in_the_manifest() {
    e2e_support::require();
    let spec = SessionSpec::new("save", bottle(&["x.test"]))
        .host(TestHost::http("web", &["x.test", "late.test"]));
    let session = Session::start(spec, SessionDirs::new());
    let name = session.agent_container.clone();
    session.go(&[]);

    // The file the session was started from, as a person lays it out: the
    // same bottle `e2e` (what the session runs), with another bottle that
    // has an allowlist too, and a layout no serializer would produce. It is
    // read when `--save` runs.
    let manifest = session.dirs.manifest();
    let prefix = format!(
        "{{\n\t\"bottles\" : {{\n  \"other\": {{ \"egress\": {{\"allowlist\": [\"keep.test\"] }} }},\n    \"e2e\":{{ \"image\": \"{image}\",\n      \"env\":{{\"CLAUDE_STUB_PROBE_TIMEOUT\":\"330\", \"NOTE\": \"x.test\"}},\n      \"egress\": {{\n        \"allowlist\": ",
        image = e2e_support::session::AGENT_IMAGE
    );
    let array = "[ \"x.test\" ]";
    let suffix = format!(
        ",\n        \"ip_cidrs\": {cidrs}\n      }}\n    }}\n  }},\n  \"agents\": {{ \"{agent}\": {{ \"bottle\": \"e2e\", \"prompt\": \"You are an e2e probe.\" }},\n    \"keeper\": {{ \"bottle\": \"other\" }} }}\n}}\n\n",
        cidrs = serde_json::to_string(&PRIVATE_RANGES).unwrap(),
        agent = session.agent
    );
    let original = format!("{prefix}{array}{suffix}");
    serde_json::from_str::<Value>(&original).expect("the hand-written manifest is JSON");
    std::fs::write(&manifest, &original).unwrap();

    let edited_array = |text: &str| -> Value {
        assert!(
            text.starts_with(&prefix) && text.ends_with(&suffix),
            "only the allowlist array may change:\n--- before\n{original}\n--- after\n{text}"
        );
        let middle = &text[prefix.len()..text.len() - suffix.len()];
        serde_json::from_str(middle).unwrap_or_else(|e| panic!("{e}: `{middle}`"))
    };

    let out = cli(&session, &["allow", &name, "late.test", "--save"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("bottles.e2e.egress.allowlist"),
        "{}",
        show(&out)
    );
    let saved = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(edited_array(&saved), json!(["x.test", "late.test"]));
    assert_eq!(code_from_agent(&session, "http://late.test/"), "200");

    let out = cli(
        &session,
        &["allow", &name, "late.test", "--save", "--remove"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let removed = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(edited_array(&removed), json!(["x.test"]));
    assert_eq!(code_from_agent(&session, "http://late.test/"), "403");

    session.finish().assert_clean();
}

// ---------------------------------------------------------------------------
// allow --save on a session of the embedded default manifest
// ---------------------------------------------------------------------------

/// The built-in agent image's tag pointing at the agent test image (whose
/// stub `claude` the session runs), for as long as the test runs. Made only
/// over nothing or over a tag a test made (the image carries
/// `claude-bottle.test=1`): a real built-in image is never touched.
struct BuiltInTag {
    tag: String,
}

impl BuiltInTag {
    fn point_at_test_image(tag: &str) -> Self {
        let labels = docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"claude-bottle.test\"}}",
            tag,
        ]);
        if labels.status.success() {
            assert_eq!(
                text(&labels.stdout).trim(),
                "1",
                "`{tag}` is a real built-in agent image; this test runs the stub `claude` as the \
                 built-in image and does not touch that one (remove it or run on another daemon)"
            );
        }
        docker_ok(&["tag", e2e_support::session::AGENT_IMAGE, tag]);
        Self {
            tag: tag.to_owned(),
        }
    }
}

impl Drop for BuiltInTag {
    fn drop(&mut self) {
        // Only the tag goes: the test image keeps its own tags.
        let _ = docker(&["rmi", &self.tag]);
    }
}

/// Container names of this test's sessions start with this.
const DEFAULT_SESSION_PREFIX: &str = "e2e-dflt-";

/// Removes what a session of the embedded default left that this test
/// started (its agent container is named `e2e-dflt-...`) and whose
/// claude-bottle process is gone: found by the session label.
fn sweep_stale_default_sessions() {
    for line in docker_support::daemon::docker_lines(&[
        "ps",
        "-a",
        "--filter",
        "label=claude-bottle.role=agent",
        "--format",
        "{{.Names}}\t{{.Label \"claude-bottle.session\"}}\t{{.Label \"claude-bottle.pid\"}}",
    ]) {
        let mut parts = line.split('\t');
        let (Some(name), Some(session), Some(pid)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if name.starts_with(DEFAULT_SESSION_PREFIX)
            && !session.is_empty()
            && !docker_support::daemon::pid_alive(pid)
        {
            remove_session(session);
        }
    }
}

/// Removes every container and network of one session, by its label.
fn remove_session(session: &str) {
    let label = format!("claude-bottle.session={session}");
    let containers = docker_support::sessions::containers_with(&[&label]);
    let networks = docker_support::sessions::networks_with(&[&label]);
    docker_support::daemon::remove_resources(&containers, &networks);
}

/// A `start` of the embedded default (no manifest anywhere) with the stub
/// waiting for a line; ended by the line, or killed and swept on drop.
struct DefaultSession {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    session: String,
}

impl Drop for DefaultSession {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.session.is_empty() {
            remove_session(&self.session);
        }
    }
}

#[test]
fn allow_save_refuses_a_session_of_the_embedded_default_manifest() {
    e2e_support::require();
    let _locks = docker_support::lock::SessionLocks::take();
    sweep_stale_default_sessions();
    let dirs = SessionDirs::new();
    // No --manifest, no ./claude-bottle.json, an empty HOME, no variables:
    // the embedded default.
    let command = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_claude-bottle"));
        command
            .args(args)
            .current_dir(dirs.work())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dirs.home())
            .env("TMPDIR", dirs.tmp())
            .env("NO_COLOR", "1")
            .env(
                "CLAUDE_BOTTLE_PIPELOCK_IMAGE",
                e2e_support::session::PIPELOCK_STANDIN_IMAGE,
            )
            .env(
                "CLAUDE_BOTTLE_FENCE_IMAGE",
                e2e_support::session::FENCE_IMAGE,
            );
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            command.env("DOCKER_HOST", host);
        }
        command
    };
    let name = e2e_support::session::unique_agent("dflt").replacen(
        e2e_support::docker::AGENT_PREFIX,
        DEFAULT_SESSION_PREFIX,
        1,
    );
    let plan = command(&["start", "--dry-run", "--name", &name])
        .output()
        .unwrap();
    let plan_text = text(&plan.stderr);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let tag = plan_text
        .split_whitespace()
        .find(|w| w.starts_with("claude-bottle-agent:"))
        .unwrap_or_else(|| panic!("no built-in image in the plan:\n{plan_text}"))
        .to_owned();
    let _tag = BuiltInTag::point_at_test_image(&tag);

    let mut child = command(&["start", "--yes", "--name", &name, "--", "--stub-read-line"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let stderr = child.stderr.take().unwrap();
    let mut session = DefaultSession {
        child,
        stdin,
        session: String::new(),
    };
    let stderr_text = Arc::new(Mutex::new(String::new()));
    let sink = stderr_text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[default stderr] {line}");
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    session.session = wait_for(
        "the default session's agent container to run",
        Duration::from_secs(60),
        || {
            assert!(
                session.child.try_wait().ok().flatten().is_none(),
                "claude-bottle exited early:\n{}",
                stderr_text.lock().unwrap()
            );
            let out = docker(&[
                "inspect",
                "-f",
                "{{.State.Running}} {{index .Config.Labels \"claude-bottle.session\"}}",
                &name,
            ]);
            let found = text(&out.stdout);
            found
                .strip_prefix("true ")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        },
    );
    let label = inspect(&name, "{{index .Config.Labels \"claude-bottle.manifest\"}}");
    assert!(
        label.is_empty() || label == "<no value>",
        "a session of the embedded default names no manifest: {label}"
    );

    let out = command(&["allow", &name, "late.test", "--save"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("claude-bottle init"),
        "the hint names `init`: {}",
        show(&out)
    );
    let files: Vec<_> = std::fs::read_dir(dirs.work()).unwrap().collect();
    assert!(files.is_empty(), "no manifest was written: {files:?}");
    // Without --save the same bottle takes the host.
    let out = command(&["allow", &name, "late.test"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    use std::io::Write;
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"exit 0\n").unwrap();
    drop(stdin);
    let status = wait_for(
        "the default session to end",
        Duration::from_secs(30),
        || session.child.try_wait().ok().flatten(),
    );
    assert_eq!(status.code(), Some(0), "{}", stderr_text.lock().unwrap());
    let label = format!("claude-bottle.session={}", session.session);
    assert_eq!(
        (
            docker_support::sessions::containers_with(&[&label]),
            docker_support::sessions::networks_with(&[&label])
        ),
        (vec![], vec![]),
        "teardown left nothing"
    );
}
