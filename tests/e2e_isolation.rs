//! End-to-end isolation suite: real `claude-bottle start` sessions on the real
//! Docker daemon, with the stub `claude` running probes inside the bottle, and
//! controls outside it showing that each path the agent fails to take is open
//! to an ordinary container (so a failure inside is the bottle's doing, not a
//! broken test host).
//!
//! How sessions, test hosts and gates work: tests/e2e_support/session.rs.
//! Check 3 under runsc lives in e2e_runsc.rs (it reloads the daemon).
//!
//! | # | check | made by | control that shows it could fail |
//! |---|-------|---------|----------------------------------|
//! | 1 | allowlisted names answer over plain HTTP and CONNECT; others get 403 from the proxy; `*.w.test` admits `w.test` and `a.b.w.test`; `x.test` does not admit `a.x.test` | curl in the bottle; proxy JSON log; test host's request log | the refused names answer a container on the egress network |
//! | 2 | without proxy variables, TCP/UDP/ICMP to the egress side by name and address fail; only the internal subnet is routed and its gateway is no host address | curl, nc, python sockets, `ip route` in the bottle; test host's log | the same calls succeed from the egress network |
//! | 3 | no host address (every interface, both gateways) answers a listener on the host's 0.0.0.0 | curl sweep in the bottle; the listener's peer log | a container on a plain `--internal` network reaches it at gateway, docker0 and the uplink |
//! | 4 | no name resolves, and no query reaches the DNS server or crosses any host interface | getent, nslookup, dig (embedded, direct UDP/TCP), python; DNS server log; AF_PACKET capture | a container pointed at the DNS server shows in its log and in the capture |
//! | 5 | git clone/push over SSH through the proxy; an unlisted name and a wrong known_hosts key fail | git in the bottle; server-side history; proxy and sshd logs | the unlisted name answers on port 22 from the egress network |
//! | 6 | a `${VAR}` secret (newline, quotes, `$` and `\` in it) is in no host command line, no recent file, no output (debug logs on), no container file (`/dev/shm` too), not in the container's Config.Env (`docker inspect`) nor any file of the daemon's data directory on disk, during the session or after (Docker's and Podman's alike); Claude's process has it byte for byte | /proc scans, file walk, grep as root in the container via stdin, `docker inspect`, a walk of `DockerRootDir` (Podman's graph root) | a canary file is found by the same grep and in the container's writable layer on disk; a literal is found in Config.Env and in the daemon's files; the value's hash inside |
//! | 7 | two bottles reach neither the other's proxy (both sides, by address and name), agent nor test host | curl, python ICMP in both bottles; the other proxy's log | each agent's listener answers a container on its own network |
//! | 8 | no root (setuid, su, sudo, setpriv, user namespace), no Docker socket or TCP port, caps empty, NNP, init, pids limit; git/ssh/parallel jobs work | probes and the stub's /proc/self/status; `docker inspect` | the same setuid binary gives euid 0 without no-new-privileges |

mod docker_support {
    pub mod daemon;
    pub mod lock;
    pub mod sessions;
    pub mod test_resources;
}
mod e2e_support;

use std::collections::BTreeSet;

use docker_support::daemon::{docker, docker_ok, is_podman};
use e2e_support::capture::PacketCapture;
use e2e_support::docker::{inspect, subnet_of};
use e2e_support::host::{HostListener, host_ipv4_addresses, rand_u64};
use e2e_support::no_way_to_host::assert_no_way_to_host;
use e2e_support::session::{AGENT_IMAGE, SSHD_IMAGE, Session, SessionDirs, SessionSpec, TestHost};
use e2e_support::stub::ProbeResult;
use serde_json::{Value, json};

/// Probes prefix this to take away the proxy variables, as a tool (or a
/// malicious prompt) inside the bottle could.
const NO_PROXY_ENV: &str =
    "unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy;";

/// A bottle admitting `allowlist`.
///
/// The test's "internet" lives on Docker bridge networks, so its hosts have
/// private addresses, which the proxy's SSRF check refuses like pipelock
/// does. The bottle therefore exempts the private ranges from that check
/// (`ip_cidrs`, as a user with an intranet host would); the allowlist still
/// decides every name, and that is what the suite tests.
fn bottle(allowlist: &[&str]) -> Value {
    json!({ "egress": { "allowlist": allowlist, "ip_cidrs": PRIVATE_RANGES } })
}

const PRIVATE_RANGES: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

fn curl_plain(url: &str) -> String {
    format!("curl -sS -m 15 -w '\\nHTTP_CODE=%{{http_code}}\\n' {url}")
}

/// `-p` (--proxytunnel) makes curl CONNECT through the proxy even for http://.
fn curl_connect(url: &str) -> String {
    format!("curl -sS -m 15 -p -w '\\nHTTP_CODE=%{{http_code}}\\n' {url}")
}

/// The JSON body the http test host answered with, if any.
fn echo_body(probe: &ProbeResult) -> Option<Value> {
    probe
        .stdout
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["server"] == "claude-bottle-test/http")
}

fn assert_admitted(probe: &ProbeResult, host: &str, path: &str) {
    let body = echo_body(probe).unwrap_or_else(|| panic!("no answer from the test host\n{probe}"));
    assert!(
        probe.succeeded() && probe.stdout.contains("HTTP_CODE=200"),
        "{probe}"
    );
    assert_eq!(body["host"], host, "{probe}");
    assert_eq!(body["path"], path, "{probe}");
}

fn assert_refused_plain(probe: &ProbeResult) {
    assert!(
        probe.stdout.contains("HTTP_CODE=403") && echo_body(probe).is_none(),
        "the proxy should answer 403 itself\n{probe}"
    );
}

fn assert_refused_connect(probe: &ProbeResult) {
    assert!(
        !probe.succeeded() && probe.output().contains("403") && echo_body(probe).is_none(),
        "the proxy should refuse the CONNECT with 403\n{probe}"
    );
}

/// Proxy log events of `event` whose url or target names `host`.
fn proxy_events<'a>(log: &'a [Value], event: &str, host: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|l| l["event"] == event)
        .filter(|l| {
            let url = l["url"].as_str().unwrap_or_default();
            let target = l["target"].as_str().unwrap_or_default();
            url.starts_with(&format!("http://{host}/"))
                || url.starts_with(&format!("http://{host}:"))
                || target == format!("{host}:80")
                || target == format!("{host}:22")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Egress through the proxy
// ---------------------------------------------------------------------------

#[test]
fn egress_admits_allowlisted_names_and_refuses_the_rest_over_http_and_connect() {
    e2e_support::require();
    let names = ["x.test", "w.test", "a.b.w.test", "a.x.test", "blocked.test"];
    let mut spec = SessionSpec::new("egress", bottle(&["x.test", "*.w.test"]))
        .host(TestHost::http("web", &names));
    for name in names {
        let label = name.replace('.', "_");
        spec = spec
            .probe(
                &format!("plain_{label}"),
                &curl_plain(&format!("http://{name}/plain-{label}")),
            )
            .probe(
                &format!("connect_{label}"),
                &curl_connect(&format!("http://{name}/connect-{label}")),
            );
    }
    let mut session = Session::start(spec, SessionDirs::new());
    session.go(&[]);
    session.wait_probes_done();
    let proxy_log = session.proxy_log();
    let web_log = session.host_log("web");
    let proxy_egress_ip = session.proxy_egress_ip();
    // Control: the refused names resolve and answer on the egress side, so a
    // refusal inside is the proxy's decision, not a dead name.
    let control = session.control_on_egress(
        "refused-names",
        &[],
        &[
            "sh",
            "-c",
            "curl -sS -m 10 http://a.x.test/ctl && curl -sS -m 10 http://blocked.test/ctl",
        ],
    );
    let outcome = session.finish();
    let report = &outcome.report;

    let control_out = String::from_utf8_lossy(&control.stdout);
    assert!(
        control.status.success()
            && control_out.contains("\"host\": \"a.x.test\"")
            && control_out.contains("\"host\": \"blocked.test\""),
        "CONTROL: the refused names must answer a container on the egress network\n{control_out}{}",
        String::from_utf8_lossy(&control.stderr)
    );

    // Exact entry, wildcard apex, wildcard deep subdomain: admitted both ways.
    for name in ["x.test", "w.test", "a.b.w.test"] {
        let label = name.replace('.', "_");
        assert_admitted(
            report.probe(&format!("plain_{label}")),
            name,
            &format!("/plain-{label}"),
        );
        assert_admitted(
            report.probe(&format!("connect_{label}")),
            name,
            &format!("/connect-{label}"),
        );
        assert!(
            !proxy_events(&proxy_log, "forward_http", name).is_empty(),
            "the proxy should log the plain request to {name}: {proxy_log:#?}"
        );
        assert!(
            !proxy_events(&proxy_log, "tunnel_open", name).is_empty(),
            "the proxy should log the tunnel to {name}: {proxy_log:#?}"
        );
    }
    // `x.test` is exact: it does not admit `a.x.test`; nothing admits blocked.test.
    for name in ["a.x.test", "blocked.test"] {
        let label = name.replace('.', "_");
        assert_refused_plain(report.probe(&format!("plain_{label}")));
        assert_refused_connect(report.probe(&format!("connect_{label}")));
        assert!(
            proxy_events(&proxy_log, "blocked", name).len() >= 2,
            "the proxy should log both refusals of {name}: {proxy_log:#?}"
        );
        assert!(
            !web_log.contains(&format!("host={name} ")),
            "a refused request reached the test host:\n{web_log}"
        );
    }
    // Every request the test host got came from the proxy's egress address.
    for line in web_log.lines().filter(|l| l.starts_with("TCP_ACCEPT")) {
        assert_eq!(
            line,
            format!("TCP_ACCEPT from={proxy_egress_ip}"),
            "the test host was reached by something other than the proxy:\n{web_log}"
        );
    }
    outcome.assert_clean();
}

// ---------------------------------------------------------------------------
// 2. No bypass
// ---------------------------------------------------------------------------

const UDP_PROBE: &str = r#"python3 - "$1" <<'PY'
import socket, sys
target = sys.argv[1]
try:
    addr = socket.gethostbyname(target)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b"e2e-udp", (addr, 80))
    print("UDP_REPLY", s.recvfrom(100)[0])
except Exception as e:
    print("UDP_FAIL", type(e).__name__, e)
    sys.exit(1)
PY"#;

/// An ICMP echo through an unprivileged ICMP socket (`ping` itself cannot
/// run: its file capability is refused under no-new-privileges).
const ICMP_PROBE: &str = r#"python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.settimeout(3)
    s.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01e2e-icmp", (sys.argv[1], 0))
    print("ICMP_REPLY", s.recvfrom(100)[0])
except Exception as e:
    print("ICMP_FAIL", type(e).__name__, e)
    sys.exit(1)
PY"#;

fn icmp_probe(target_var: &str) -> String {
    format!("set -- \"{target_var}\"; {ICMP_PROBE}")
}

fn udp_probe(target_var: &str) -> String {
    format!("set -- \"{target_var}\"; {UDP_PROBE}")
}

#[test]
fn without_proxy_variables_nothing_reaches_the_egress_side_and_no_route_leads_out() {
    e2e_support::require();
    let spec = SessionSpec::new("bypass", bottle(&["x.test"]))
        .host(TestHost::http("web", &["x.test"]))
        .probe("proxied_fetch", &curl_plain("http://x.test/proxied"))
        .probe("tcp_by_name", &format!("{NO_PROXY_ENV} curl -sS --connect-timeout 4 -m 5 http://x.test/direct"))
        .probe("tcp_by_address", &format!("{NO_PROXY_ENV} curl -sS --connect-timeout 4 -m 5 http://$WEB_IP/direct"))
        .probe("nc_by_address", "nc -z -w 4 \"$WEB_IP\" 80")
        .probe("tcp_proxy_egress_side", &format!("{NO_PROXY_ENV} curl -sS --connect-timeout 4 -m 5 http://$PROXY_EGRESS_IP:8888/health"))
        .probe("udp_by_address", &udp_probe("$WEB_IP"))
        .probe("udp_by_name", &udp_probe("x.test"))
        .probe("icmp_by_address", &icmp_probe("$WEB_IP"))
        .probe("routes", "ip -4 route show; echo '--- v6'; ip -6 route show; echo '--- addr'; ip -o addr show");
    let mut session = Session::start(spec, SessionDirs::new());
    let web_ip = session.host_ip("web");
    let proxy_egress_ip = session.proxy_egress_ip();
    let internal_subnet = subnet_of(&session.internal_network);
    let internal_gateway = Session::gateway_of(&session.internal_network);
    session.go(&[
        ("WEB_IP", web_ip.clone()),
        ("PROXY_EGRESS_IP", proxy_egress_ip.clone()),
    ]);
    session.wait_probes_done();
    let web_log = session.host_log("web");
    // While the session's bridges exist (they are host interfaces).
    let host_ips: Vec<String> = host_ipv4_addresses()
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    // Control: the same direct paths work from a container on the egress side.
    let control = session.control_on_egress(
        "direct",
        &[],
        &[
            "sh",
            "-c",
            &format!(
                "set -e; curl -sS -m 5 http://{web_ip}/ctl-addr; curl -sS -m 5 http://x.test/ctl-name\n{}\n{}",
                udp_probe(&web_ip),
                icmp_probe(&web_ip)
            ),
        ],
    );
    let outcome = session.finish();
    let report = &outcome.report;

    let control_out = String::from_utf8_lossy(&control.stdout);
    assert!(
        control.status.success()
            && control_out.contains("UDP_REPLY")
            && control_out.contains("ICMP_REPLY")
            && control_out.matches("\"server\"").count() == 2,
        "CONTROL: direct TCP and UDP to the test host must work from the egress side\n{control_out}{}",
        String::from_utf8_lossy(&control.stderr)
    );
    assert_admitted(report.probe("proxied_fetch"), "x.test", "/proxied");
    for name in [
        "tcp_by_name",
        "tcp_by_address",
        "nc_by_address",
        "tcp_proxy_egress_side",
        "udp_by_address",
        "udp_by_name",
        "icmp_by_address",
    ] {
        let probe = report.probe(name);
        assert!(
            !probe.succeeded()
                && echo_body(probe).is_none()
                && !probe.stdout.contains("UDP_REPLY")
                && !probe.stdout.contains("ICMP_REPLY"),
            "a direct path from the agent worked\n{probe}"
        );
    }
    // The test host saw only the proxy (the allowed fetch): no TCP or UDP from
    // the agent, whatever its source address.
    for line in web_log
        .lines()
        .filter(|l| l.starts_with("TCP_ACCEPT") || l.starts_with("UDP_DATAGRAM"))
    {
        assert!(
            line.contains(&format!("from={proxy_egress_ip}")) && !line.starts_with("UDP"),
            "the test host was reached by something other than the proxy: {line}\n{web_log}"
        );
    }
    // Routes: only the internal subnet, and a default route whose gateway is
    // no address at all (the bridge carries no IP: inhibit_ipv4), so it leads
    // nowhere; the connects above show it in practice.
    let routes = report.probe("routes");
    let (v4, rest) = routes.stdout.split_once("--- v6").expect("routes output");
    let (v6, addrs) = rest.split_once("--- addr").expect("routes output");
    let subnet_net = internal_subnet.split('/').next().unwrap_or_default();
    for route in v4.lines().filter(|l| !l.trim().is_empty()) {
        let ok = route.starts_with(&format!("{internal_subnet} "))
            || route.starts_with(&format!("{subnet_net}/"))
            || route.starts_with(&format!("default via {internal_gateway} "));
        assert!(
            ok,
            "unexpected route in the agent: `{route}` (internal subnet {internal_subnet})\n{routes}"
        );
    }
    // Podman ignores inhibit_ipv4: there the gateway is the host's, and the
    // fence keeps the agent from it (check 3 proves that in practice).
    assert!(
        docker_support::daemon::is_podman() || !host_ips.contains(&internal_gateway),
        "the internal network's gateway {internal_gateway} is an address of the host ({host_ips:?}): \
         the bridge must carry no IP"
    );
    assert!(
        !v6.lines()
            .any(|l| l.starts_with("default") || l.contains(" via ")),
        "the agent has an IPv6 route out\n{routes}"
    );
    assert!(
        !addrs
            .lines()
            .any(|l| l.contains("inet6") && l.contains("scope global")),
        "the agent has a global IPv6 address\n{routes}"
    );
    outcome.assert_clean();
}

// ---------------------------------------------------------------------------
// 3. No way to the host (runc; runsc in e2e_runsc.rs)
// ---------------------------------------------------------------------------

#[test]
fn no_address_of_the_host_answers_the_agent_under_runc() {
    e2e_support::require();
    assert_no_way_to_host("host", "runc");
}

// ---------------------------------------------------------------------------
// 4. DNS
// ---------------------------------------------------------------------------

/// glibc's resolver retries for ~20 s per failed lookup; one quick try says
/// the same here.
const FAST_RESOLVER: &str = "RES_OPTIONS='timeout:1 attempts:1'";

#[test]
fn no_dns_query_from_the_agent_resolves_or_leaves_its_container() {
    e2e_support::require();
    let token = format!("{:012x}", rand_u64() & 0xffff_ffff_ffff);
    let query = |kind: &str| format!("{kind}-{token}");
    let kinds = [
        "getent",
        "nslookup",
        "embedded",
        "direct",
        "directtcp",
        "python",
    ];
    // The agent's names are unique to this run, so seeing one anywhere (the
    // DNS server's log, any packet on any host interface) is a leak.
    let capture = PacketCapture::start(
        kinds
            .iter()
            .map(|k| query(k))
            .chain([query("control")])
            .map(String::into_bytes)
            .collect(),
    );
    let mut dns = TestHost::dns("dns", &["dns.test"]);
    // An answer no other path could invent, to recognise the server's answers.
    dns.env.push(("DNS_ANSWER".into(), "198.51.100.7".into()));
    let spec = SessionSpec::new("dns", bottle(&["x.test"]))
        .host(dns)
        .host(TestHost::http("web", &["x.test"]))
        .probe(
            "resolver_config",
            "cat /etc/resolv.conf; echo ---; cat /etc/hosts",
        )
        .probe(
            "getent",
            &format!("{FAST_RESOLVER} getent hosts {}.e2e.test", query("getent")),
        )
        .probe(
            "getent_egress_name",
            &format!("{FAST_RESOLVER} getent hosts x.test"),
        )
        .probe(
            "getent_dns_host",
            &format!("{FAST_RESOLVER} getent hosts dns.test"),
        )
        .probe(
            "nslookup",
            &format!(
                "nslookup -timeout=2 -retry=0 {}.e2e.test",
                query("nslookup")
            ),
        )
        .probe(
            "embedded_resolver",
            &format!(
                "dig +time=2 +tries=1 @127.0.0.11 {}.e2e.test",
                query("embedded")
            ),
        )
        .probe(
            "direct_udp",
            &format!("dig +time=2 +tries=1 @$DNS_IP {}.e2e.test", query("direct")),
        )
        .probe(
            "direct_tcp",
            &format!(
                "dig +tcp +time=2 +tries=1 @$DNS_IP {}.e2e.test",
                query("directtcp")
            ),
        )
        .probe(
            "python_resolver",
            &format!(
                "{FAST_RESOLVER} python3 -c 'import socket; print(socket.gethostbyname(\"{}.e2e.test\"))'",
                query("python")
            ),
        );
    let mut session = Session::start(spec, SessionDirs::new());
    let dns_ip = session.host_ip("dns");
    session.go(&[("DNS_IP", dns_ip.clone())]);
    session.wait_probes_done();
    // Control: a container pointed at the DNS server resolves through it, and
    // its query shows in the server's log and in the capture.
    let control = session.control_on_egress(
        "dns",
        &["--dns", &dns_ip],
        &["getent", "hosts", &format!("{}.e2e.test", query("control"))],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let dns_log = session.host_log("dns");
    let captured = capture.map(PacketCapture::finish);
    let outcome = session.finish();
    let report = &outcome.report;

    assert!(
        String::from_utf8_lossy(&control.stdout).contains("198.51.100.7")
            && dns_log.contains(&format!("{}.e2e.test", query("control"))),
        "CONTROL: a container using the DNS server must resolve through it and show in its log\n{}\n{dns_log}",
        String::from_utf8_lossy(&control.stderr)
    );
    let resolver = report.probe("resolver_config");
    assert!(
        resolver.stdout.contains("nameserver 127.0.0.11")
            || resolver.stdout.contains("nameserver 127.0.0.1"),
        "{resolver}"
    );
    for name in [
        "getent",
        "getent_egress_name",
        "getent_dns_host",
        "nslookup",
        "embedded_resolver",
        "direct_udp",
        "direct_tcp",
        "python_resolver",
    ] {
        let probe = report.probe(name);
        assert!(
            !probe.output().contains("198.51.100.7") && !probe.output().contains("ANSWER SECTION"),
            "the agent got a DNS answer\n{probe}"
        );
    }
    for name in [
        "getent",
        "getent_egress_name",
        "getent_dns_host",
        "python_resolver",
        "direct_udp",
        "direct_tcp",
    ] {
        assert!(!report.probe(name).succeeded(), "{}", report.probe(name));
    }
    for kind in kinds {
        assert!(
            !dns_log.contains(&query(kind)),
            "the DNS server received the agent's `{kind}` query:\n{dns_log}"
        );
    }
    match captured {
        Some(captured) => {
            let control_index = kinds.len();
            assert!(
                captured.seen[control_index],
                "CONTROL: the capture must see the control container's query ({} packets)",
                captured.packets
            );
            assert_eq!(
                captured.drops, 0,
                "the capture dropped packets, so it could have missed a leak"
            );
            for (i, kind) in kinds.iter().enumerate() {
                assert!(
                    !captured.seen[i],
                    "a packet carrying the agent's `{kind}` query crossed a host interface"
                );
            }
        }
        None if std::env::var_os("CI").is_some() => panic!("the packet capture needs root in CI"),
        None => eprintln!(
            "!!! e2e: packet capture unavailable (not root): checked the DNS server's log only"
        ),
    }
    outcome.assert_clean();
}

// ---------------------------------------------------------------------------
// 5. SSH through the proxy
// ---------------------------------------------------------------------------

/// `docker run --rm` arguments for a throwaway container of `image`, with
/// no network and the suite's label, running `cmd` as `user` (the image's
/// own when `None`): a control, or a tool the host may lack.
fn offline_run<'a>(user: Option<&'a str>, image: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--rm",
        "--label",
        e2e_support::docker::TEST_LABEL,
        "--network",
        "none",
    ];
    if let Some(user) = user {
        args.extend(["-u", user]);
    }
    args.push(image);
    args.extend_from_slice(cmd);
    args
}

/// An ed25519 key pair made in a throwaway container (no ssh-keygen needed on
/// the host): (private key file text, public key line).
fn ssh_keypair(comment: &str) -> (String, String) {
    let script = format!(
        "ssh-keygen -q -t ed25519 -N '' -C {comment} -f /tmp/k && cat /tmp/k && echo SPLIT && cat /tmp/k.pub"
    );
    let out = docker_ok(&offline_run(None, AGENT_IMAGE, &["sh", "-c", &script]));
    let (private, public) = out.split_once("SPLIT").expect("keygen output");
    (format!("{}\n", private.trim()), public.trim().to_owned())
}

/// The sshd test image's fixed host key (`type base64`).
fn sshd_host_key() -> String {
    let line = docker_ok(&offline_run(
        None,
        SSHD_IMAGE,
        &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
    ));
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A session whose bottle has an SSH entry for `git.test` with the user's key
/// and `known_hosts` line for it.
fn ssh_session(tag: &str, known_host_key: &str, probes: &[(&str, String)]) -> (Session, String) {
    let dirs = SessionDirs::new();
    let (private, public) = ssh_keypair("e2e-user");
    let ssh_dir = dirs.home().join(".ssh");
    let key_path = ssh_dir.join("id_e2e");
    std::fs::write(&key_path, private).expect("write identity");
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod identity");
    std::fs::write(
        ssh_dir.join("known_hosts"),
        format!("git.test {known_host_key}\n"),
    )
    .expect("known_hosts");
    let bottle = json!({
        "ssh": [{ "Host": "git.test", "User": "git", "IdentityFile": "~/.ssh/id_e2e" }],
        "egress": { "allowlist": ["x.test"] }
    });
    let mut spec = SessionSpec::new(tag, bottle).host(TestHost::sshd(
        "git",
        &["git.test", "git2.test"],
        &public,
    ));
    for (name, sh) in probes {
        spec = spec.probe(name, sh);
    }
    (Session::start(spec, dirs), public)
}

const GIT_ID: &str = "-c user.name=e2e -c user.email=e2e@bottle.invalid";

#[test]
fn git_over_ssh_works_through_the_proxy_only_for_the_allowlisted_host() {
    e2e_support::require();
    let token = format!("{:012x}", rand_u64() & 0xffff_ffff_ffff);
    let host_key = sshd_host_key();
    let probes = [
        ("ssh_setup", "cat ~/.ssh/config; echo ---; cat ~/.ssh/known_hosts".to_owned()),
        (
            "clone",
            "cd ~/workspace && git clone -q git.test:/srv/git/repo.git repo && git -C repo log --format=%s".to_owned(),
        ),
        (
            "push",
            format!(
                "cd ~/workspace/repo && git {GIT_ID} commit -q --allow-empty -m pushed-from-bottle-{token} \
                 && git push -q origin HEAD:main"
            ),
        ),
        // The product allowlists every SSH HostName of the manifest, so a host
        // "absent from the effective allowlist" cannot be made with the SSH
        // entry itself. Honest equivalent: the same Host block (identity,
        // user, the product's ProxyCommand) aimed at a second name of the SAME
        // server, `git2.test`, which no part of the manifest lists. Only the
        // name differs, so only the allowlist can be what refuses it.
        (
            "clone_unlisted_name",
            "cd ~/workspace && GIT_SSH_COMMAND='ssh -o HostName=git2.test -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null' git clone -q git.test:/srv/git/repo.git repo2"
                .to_owned(),
        ),
        (
            "push_unlisted_name",
            format!(
                "cd ~/workspace/repo && git {GIT_ID} commit -q --allow-empty -m unlisted-{token} \
                 && GIT_SSH_COMMAND='ssh -o HostName=git2.test -o StrictHostKeyChecking=no \
                 -o UserKnownHostsFile=/dev/null' git push -q origin HEAD:main"
            ),
        ),
        // Without the proxy (ProxyCommand none), the SSH host is unreachable.
        (
            "ssh_direct",
            format!("{FAST_RESOLVER} ssh -o ProxyCommand=none -o ConnectTimeout=5 -o BatchMode=yes git.test true"),
        ),
    ];
    let (mut session, _) = ssh_session("ssh", &host_key, &probes);
    session.go(&[]);
    session.wait_probes_done();
    let proxy_log = session.proxy_log();
    let sshd_log = session.host_log("git");
    let proxy_egress_ip = session.proxy_egress_ip();
    let history = docker_ok(&[
        "exec",
        "-u",
        "git",
        session.host("git"),
        "git",
        "-C",
        "/srv/git/repo.git",
        "log",
        "--format=%s",
        "main",
    ]);
    let control =
        session.control_on_egress("git2", &[], &["nc", "-z", "-w", "5", "git2.test", "22"]);
    let outcome = session.finish();
    let report = &outcome.report;

    let setup = report.probe("ssh_setup");
    assert!(
        setup.stdout.contains("ProxyCommand") && setup.stdout.contains(&host_key),
        "the bottle's ssh config and known_hosts\n{setup}"
    );
    let clone = report.probe("clone");
    assert!(
        clone.succeeded() && clone.stdout.contains("seed commit"),
        "{clone}"
    );
    let push = report.probe("push");
    assert!(push.succeeded(), "{push}");
    assert!(
        history.contains(&format!("pushed-from-bottle-{token}")),
        "the pushed commit is not on the server: {history}"
    );
    assert!(
        proxy_events(&proxy_log, "tunnel_open", "git.test").len() >= 2,
        "clone and push should each tunnel through the proxy: {proxy_log:#?}"
    );
    assert!(
        sshd_log.contains(&format!(
            "Accepted publickey for git from {proxy_egress_ip}"
        )),
        "the server should see the proxy, not the agent:\n{sshd_log}"
    );
    assert!(
        control.status.success(),
        "CONTROL: git2.test must answer on port 22 from the egress side"
    );
    let unlisted = report.probe("clone_unlisted_name");
    assert!(!unlisted.succeeded(), "{unlisted}");
    assert!(
        proxy_events(&proxy_log, "blocked", "git2.test").len() >= 2,
        "the proxy should refuse git2.test for the clone and the push: {proxy_log:#?}"
    );
    let push_unlisted = report.probe("push_unlisted_name");
    assert!(!push_unlisted.succeeded(), "{push_unlisted}");
    assert!(
        !history.contains(&format!("unlisted-{token}")),
        "a push through the unlisted name reached the server: {history}"
    );
    let direct = report.probe("ssh_direct");
    assert!(!direct.succeeded(), "{direct}");
    outcome.assert_clean();
}

#[test]
fn git_over_ssh_fails_when_the_known_host_key_does_not_match() {
    e2e_support::require();
    let (_, wrong_key_line) = ssh_keypair("not-the-server");
    let wrong_key: String = wrong_key_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let probes = [(
        "clone",
        "cd ~/workspace && git clone -q git.test:/srv/git/repo.git repo".to_owned(),
    )];
    let (mut session, _) = ssh_session("sshkey", &wrong_key, &probes);
    session.go(&[]);
    session.wait_probes_done();
    let proxy_log = session.proxy_log();
    let sshd_log = session.host_log("git");
    let outcome = session.finish();
    let clone = outcome.report.probe("clone");

    assert!(!clone.succeeded(), "{clone}");
    assert!(
        clone.stderr.contains("Host key verification failed")
            || clone
                .stderr
                .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "the failure must be the host key\n{clone}"
    );
    // It did reach the server through the proxy: the key, not the path, failed.
    assert!(
        !proxy_events(&proxy_log, "tunnel_open", "git.test").is_empty(),
        "{proxy_log:#?}"
    );
    assert!(!sshd_log.contains("Accepted publickey"), "{sshd_log}");
    outcome.assert_clean();
}

// ---------------------------------------------------------------------------
// 6. Secrets
// ---------------------------------------------------------------------------

/// Files under `root` holding `needle`. Only files modified since `since` are
/// read: the needle is random per run, so an older file cannot hold it.
/// With `one_filesystem`, the walk stays on `root`'s filesystem, as
/// `find -xdev` does: what a daemon keeps on disk, without the memory
/// filesystems (a container's `/dev/shm`) and the overlay mounts of running
/// containers that it mounts below its data directory (their writable
/// layers are read where they lie on disk).
fn find_in_tree(
    root: &std::path::Path,
    needle: &[u8],
    since: std::time::SystemTime,
    one_filesystem: bool,
    hits: &mut Vec<String>,
) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return;
    };
    let device = one_filesystem.then_some(top.dev());
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if device.is_some_and(|d| meta.dev() != d) {
                continue;
            }
            if meta.is_dir() && depth < 24 {
                dirs.push((path, depth + 1));
            } else if meta.is_file()
                && meta.modified().is_ok_and(|m| m >= since)
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
}

/// Where the daemon keeps its state on disk: Docker's `DockerRootDir`,
/// Podman's graph root (its Docker API reports that there), which holds
/// its state database (`libpod/bolt_state.db`).
fn daemon_data_dir() -> std::path::PathBuf {
    docker_ok(&["info", "-f", "{{.DockerRootDir}}"]).into()
}

#[test]
fn a_secret_lives_only_in_the_agents_environment() {
    e2e_support::require();
    // The secret's random token is what the searches look for: it stays
    // whole however a file encodes the rest (JSON escapes quotes and
    // newlines). The rest has every byte a shell or a file format could
    // take for syntax; the probe checks that Claude gets it byte for byte.
    let token = format!("e2e-secret-{:016x}{:016x}", rand_u64(), rand_u64());
    let secret = format!("{token}\nline two 'single' \"double\" $HOME ${{X}} `id` \\ \\n end\n");
    let canary = format!("e2e-canary-{:016x}", rand_u64());
    // A literal: it belongs in the container's config, so finding it there
    // (and in the daemon's files) shows the config checks read where env
    // values are kept.
    let literal = format!("e2e-literal-{:016x}", rand_u64());
    let secret_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    let mut spec = SessionSpec::new(
        "secret",
        json!({
            "env": { "E2E_SECRET": "${E2E_SECRET_SRC}", "E2E_LITERAL": literal },
            "egress": { "allowlist": ["x.test"] }
        }),
    )
    .probe("secret_present", "printf %s \"$E2E_SECRET\" | sha256sum")
    .probe("shm_left", "ls -A /dev/shm");
    spec.env.push(("E2E_SECRET_SRC".into(), secret.clone()));
    spec.verbose = true;
    let started = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    let data_dir = daemon_data_dir();
    let mut session = Session::start(spec, SessionDirs::new());
    session.go(&[]);
    session.wait_probes_done();

    // While the session runs: every host process's command line...
    let mut cmdline_hits = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline"))
            && bytes.windows(token.len()).any(|w| w == token.as_bytes())
        {
            cmdline_hits.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    // ...every file in the session's HOME, TMPDIR, working directory and
    // manifest dir, and in the machine's temp dirs...
    let mut file_hits = Vec::new();
    for root in [
        session.dirs.root().to_path_buf(),
        "/tmp".into(),
        "/var/tmp".into(),
        "/dev/shm".into(),
    ] {
        find_in_tree(&root, token.as_bytes(), started, false, &mut file_hits);
    }
    // ...and the container's filesystem, its /dev/shm included, searched as
    // root for the secret and a canary file (which proves the search finds
    // what is there). Patterns go through stdin, so neither value is on
    // any command line.
    let canary_written = session.exec(
        "1000",
        "cat > /home/node/e2e-canary",
        Some(canary.as_bytes()),
    );
    assert!(canary_written.status.success());
    let patterns = format!("{token}\n{canary}\n");
    let fs_search = session.exec(
        "0",
        "grep -rlsF -f /dev/stdin / /dev/shm --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev",
        Some(patterns.as_bytes()),
    );
    // As the agent's uid: root without capabilities may not read another
    // uid's environ. This exec has no secret of its own (the test passes no
    // `-e`), so each hit is a process of Claude's exec.
    let environ_search = session.exec(
        "1000",
        "cat > /tmp/e2e-p; for f in /proc/[0-9]*/environ; do grep -qsF -f /tmp/e2e-p \"$f\" && echo \"$f\"; done; rm -f /tmp/e2e-p",
        Some(format!("{token}\n").as_bytes()),
    );
    // ...and what the daemon keeps: `docker inspect`, and every file of its
    // data directory on disk (Docker's containers/<id>/config.v2.json and
    // the container's writable layer; Podman's state database and the
    // same), for the secret, the literal and the canary.
    let config_env = inspect(&session.agent_container, "{{json .Config.Env}}");
    let mut disk_hits = Vec::new();
    find_in_tree(&data_dir, token.as_bytes(), started, true, &mut disk_hits);
    let mut literal_on_disk = Vec::new();
    find_in_tree(
        &data_dir,
        literal.as_bytes(),
        started,
        true,
        &mut literal_on_disk,
    );
    let mut canary_on_disk = Vec::new();
    find_in_tree(
        &data_dir,
        canary.as_bytes(),
        started,
        true,
        &mut canary_on_disk,
    );
    let outcome = session.finish();
    // ...and after the session: a store that only marks what it deletes
    // as free (a bolt database) could still hold it.
    let mut disk_hits_after = Vec::new();
    find_in_tree(
        &data_dir,
        token.as_bytes(),
        started,
        true,
        &mut disk_hits_after,
    );

    eprintln!(
        "under `{}`: the literal is in {literal_on_disk:?}, the canary in {canary_on_disk:?}",
        data_dir.display()
    );
    assert!(
        cmdline_hits.is_empty(),
        "the secret is on the command line of pids {cmdline_hits:?}"
    );
    assert!(
        file_hits.is_empty(),
        "the secret is written in {file_hits:?}"
    );
    let found: BTreeSet<String> = String::from_utf8_lossy(&fs_search.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        found,
        BTreeSet::from(["/home/node/e2e-canary".to_owned()]),
        "the container's files holding the secret (the canary must be the only hit)"
    );
    let shm_left = outcome.report.probe("shm_left");
    assert!(
        shm_left.succeeded() && !shm_left.stdout.contains("claude-bottle"),
        "the handoff directory must be gone once Claude runs\n{shm_left}"
    );
    let environs = String::from_utf8_lossy(&environ_search.stdout).into_owned();
    assert!(
        !environs.trim().is_empty()
            && environs
                .lines()
                .all(|l| l.starts_with("/proc/") && l.ends_with("/environ")),
        "the secret should be in the environment of the agent's processes: {environs:?}"
    );
    assert!(
        !environs.lines().any(|l| l == "/proc/1/environ"),
        "the container's own processes (pid 1, from its config) should not have the secret: {environs:?}"
    );
    let present = outcome.report.probe("secret_present");
    assert!(
        present.stdout.starts_with(&secret_sha),
        "Claude does not get the secret's exact value\n{present}"
    );
    assert!(
        !outcome.stdout.contains(&token),
        "the secret is in claude-bottle's stdout"
    );
    assert!(
        !outcome.stderr.contains(&token),
        "the secret is in claude-bottle's stderr (debug logs on)"
    );
    assert!(
        outcome.report.json["env_names"]
            .as_array()
            .is_some_and(|n| n.contains(&json!("E2E_SECRET"))),
        "the agent's environment names"
    );
    // The daemon keeps a container's Config.Env for good; the secret goes
    // to Claude's process instead, and the literal stays in the config.
    assert!(
        config_env.contains(&format!("E2E_LITERAL={literal}")),
        "CONTROL: the literal should be in the agent container's Config.Env: {config_env}"
    );
    assert!(
        !literal_on_disk.is_empty(),
        "CONTROL: the literal should be in the daemon's files under `{}`",
        data_dir.display()
    );
    assert!(
        !canary_on_disk.is_empty(),
        "CONTROL: the canary should be in the container's writable layer under `{}`",
        data_dir.display()
    );
    assert!(
        !config_env.contains(&token) && !config_env.contains("E2E_SECRET="),
        "the secret is in the agent container's Config.Env (docker inspect): {config_env}"
    );
    assert!(
        disk_hits.is_empty(),
        "the daemon stores the secret on disk while the session runs: {disk_hits:?}"
    );
    assert!(
        disk_hits_after.is_empty(),
        "the daemon stores the secret on disk after the session: {disk_hits_after:?}"
    );
    outcome.assert_clean();
}

// ---------------------------------------------------------------------------
// 7. Two bottles
// ---------------------------------------------------------------------------

fn cross_probes(spec: SessionSpec) -> SessionSpec {
    spec.probe("own_proxy", &curl_plain("http://x.test/own"))
        .probe("other_proxy_internal", "curl -sS --connect-timeout 4 -m 6 -x \"http://$OTHER_PROXY_INTERNAL:8888\" http://x.test/other")
        .probe("other_proxy_egress", "curl -sS --connect-timeout 4 -m 6 -x \"http://$OTHER_PROXY_EGRESS:8888\" http://x.test/other")
        .probe("other_proxy_by_name", "curl -sS --connect-timeout 4 -m 6 -x \"http://$OTHER_PROXY_NAME:8888\" http://x.test/other")
        .probe("other_agent", &format!("{NO_PROXY_ENV} curl -sS --connect-timeout 4 -m 6 \"http://$OTHER_AGENT:8080/\""))
        .probe("other_agent_icmp", &icmp_probe("$OTHER_AGENT"))
        .probe("other_web", &format!("{NO_PROXY_ENV} curl -sS --connect-timeout 4 -m 6 \"http://$OTHER_WEB:80/\""))
}

#[test]
fn two_bottles_cannot_reach_each_other() {
    e2e_support::require();
    let spec = |tag: &str| {
        cross_probes(
            SessionSpec::new(tag, bottle(&["x.test"])).host(TestHost::http("web", &["x.test"])),
        )
    };
    let mut a = Session::start(spec("pair-a"), SessionDirs::new());
    let mut b = Session::start(spec("pair-b"), SessionDirs::new());
    // Each agent serves on :8080 (detached from the stub), so "the other's
    // container" has something listening to be reached.
    for s in [&a, &b] {
        docker_ok(&[
            "exec",
            "-d",
            "-u",
            "1000",
            &s.agent_container,
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "0.0.0.0",
        ]);
    }
    let vars = |other: &Session| {
        vec![
            ("OTHER_PROXY_INTERNAL", other.proxy_internal_ip()),
            ("OTHER_PROXY_EGRESS", other.proxy_egress_ip()),
            ("OTHER_PROXY_NAME", other.proxy_container.clone()),
            ("OTHER_AGENT", other.agent_ip()),
            ("OTHER_WEB", other.host_ip("web")),
        ]
    };
    let (vars_a, vars_b) = (vars(&b), vars(&a));
    // Control: each listener answers a container on its own internal network.
    let mut controls = Vec::new();
    for s in [&mut a, &mut b] {
        let ip = s.agent_ip();
        let net = s.internal_network.clone();
        let name = format!("{}-ctl-listener", s.agent);
        let mut resources = e2e_support::docker::Resources::default();
        let out = resources.run_once(
            &name,
            &[
                "--network",
                &net,
                AGENT_IMAGE,
                "curl",
                "-sS",
                "--retry",
                "5",
                "--retry-connrefused",
                "-m",
                "5",
                &format!("http://{ip}:8080/"),
            ],
        );
        controls.push((s.agent.clone(), out));
    }
    a.go(&vars_a);
    b.go(&vars_b);
    a.wait_probes_done();
    b.wait_probes_done();
    let (log_a, log_b) = (a.proxy_log(), b.proxy_log());
    let (agent_a_ip, agent_b_ip) = (a.agent_ip(), b.agent_ip());
    let outcome_a = a.finish();
    let outcome_b = b.finish();

    for (agent, out) in &controls {
        assert!(
            out.status.success(),
            "CONTROL: {agent}'s listener must answer a container on its own network: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (outcome, other_log, own_ip) in [
        (&outcome_a, &log_b, &agent_a_ip),
        (&outcome_b, &log_a, &agent_b_ip),
    ] {
        let report = &outcome.report;
        assert_admitted(report.probe("own_proxy"), "x.test", "/own");
        for name in [
            "other_proxy_internal",
            "other_proxy_egress",
            "other_proxy_by_name",
            "other_agent",
            "other_agent_icmp",
            "other_web",
        ] {
            let probe = report.probe(name);
            assert!(!probe.succeeded() && echo_body(probe).is_none(), "{probe}");
        }
        assert!(
            !other_log.iter().any(|l| l["client_ip"] == own_ip.as_str()),
            "the other bottle's proxy logged a request from this agent ({own_ip}): {other_log:#?}"
        );
    }
    outcome_a.assert_clean();
    outcome_b.assert_clean();
}

// ---------------------------------------------------------------------------
// 8. Hardening
// ---------------------------------------------------------------------------

const FORK_PROBE: &str = r#"lim=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)
echo "PIDS_MAX=$lim"
[ "$lim" = max ] && exit 3
python3 - "$lim" <<'PY'
import os, sys
limit = int(sys.argv[1])
kids = []
try:
    for _ in range(limit + 20):
        pid = os.fork()
        if pid == 0:
            # A small process per slot, not a copy of python.
            try:
                os.execv("/bin/sleep", ["sleep", "30"])
            finally:
                os._exit(0)
        kids.append(pid)
    print("FORKED_ALL", len(kids))
except OSError as e:
    print("FORK_REFUSED_AFTER", len(kids), e.errno)
for k in kids:
    os.kill(k, 9)
for k in kids:
    os.waitpid(k, 0)
PY"#;

#[test]
fn the_agent_cannot_become_root_or_reach_docker_and_normal_work_functions() {
    e2e_support::require();
    let host_ips: Vec<String> = host_ipv4_addresses()
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    let listener = HostListener::start();
    let spec = SessionSpec::new("harden", bottle(&["x.test"]))
        .probe("id", "id")
        .probe("setuid_binary", "/tmp/e2e-suid-id -u")
        .probe("su", "su -c id root </dev/null")
        .probe("sudo", "sudo -n id")
        .probe("setpriv", "setpriv --reuid=0 --regid=0 --clear-groups id -u")
        .probe("userns_root", "unshare --user --map-root-user id -u")
        .probe("docker_socket", "ls -l /var/run/docker.sock /run/docker.sock; find / -xdev -type s 2>/dev/null | grep -i docker")
        .probe("docker_host_env", "env | grep -i '^DOCKER_'")
        .probe(
            "docker_tcp",
            &format!("{NO_PROXY_ENV} for ip in $HOST_IPS $GATEWAY; do for p in 2375 2376 $PORT; do (nc -z -w 2 $ip $p && echo OPEN $ip:$p) & done; done; wait; true"),
        )
        .probe(
            "git_work",
            &format!("cd ~/workspace && git init -q e2e && cd e2e && echo hi > f && git add f && git {GIT_ID} commit -q -m first && git log --oneline | wc -l"),
        )
        .probe("ssh_tools", "ssh -V && ssh-keygen -q -t ed25519 -N '' -f ~/e2e-key && test -s ~/e2e-key.pub")
        .probe(
            "npm_style",
            "mkdir -p ~/.npm/_cacache ~/.cache && echo ok > ~/.npm/_cacache/probe && for i in $(seq 64); do sleep 1 & done; wait && echo JOBS_OK",
        )
        .probe("pids_limit", FORK_PROBE);
    let mut session = Session::start(spec, SessionDirs::new());
    // A setuid-root copy of `id`, made by root from the host side (docker
    // exec); only no-new-privileges keeps it from raising the agent's euid.
    let prep = session.exec(
        "0",
        "cp /usr/bin/id /tmp/e2e-suid-id && chmod 4755 /tmp/e2e-suid-id",
        None,
    );
    assert!(
        prep.status.success(),
        "{}",
        String::from_utf8_lossy(&prep.stderr)
    );
    let gateway = Session::gateway_of(&session.internal_network);
    session.go(&[
        ("HOST_IPS", host_ips.join(" ")),
        ("GATEWAY", gateway),
        ("PORT", listener.port.to_string()),
    ]);
    session.wait_probes_done();
    let config: Value = serde_json::from_str(&docker_ok(&["inspect", &session.agent_container]))
        .expect("inspect JSON");
    let outcome = session.finish();
    let report = &outcome.report;
    let config = &config[0];

    // Control: the same setuid binary DOES give euid 0 without no-new-privileges.
    let control = docker_ok(&offline_run(
        Some("0"),
        AGENT_IMAGE,
        &[
            "sh",
            "-c",
            "cp /usr/bin/id /tmp/i && chmod 4755 /tmp/i && setpriv --reuid=1000 --regid=1000 --clear-groups /tmp/i -u",
        ],
    ));
    assert_eq!(
        control, "0",
        "CONTROL: a setuid-root binary raises euid where no-new-privileges is off"
    );

    // What the agent can do (behaviour first: it is what matters, and a
    // failure here names the hole rather than a configuration field).
    let setuid = report.probe("setuid_binary");
    assert_eq!(
        setuid.stdout.trim(),
        "1000",
        "the setuid-root binary must not raise euid\n{setuid}"
    );
    for name in ["su", "sudo", "setpriv", "userns_root"] {
        let probe = report.probe(name);
        assert!(
            !probe.succeeded()
                && !probe
                    .stdout
                    .lines()
                    .any(|l| l.trim() == "0" || l.contains("uid=0")),
            "{probe}"
        );
    }
    assert_eq!(report.json["uid"], json!(1000));
    assert_eq!(report.json["euid"], json!(1000));
    assert_eq!(report.process("CapEff"), "0000000000000000");
    assert_eq!(report.process("CapPrm"), "0000000000000000");
    assert_eq!(report.process("CapBnd"), "0000000000000000");
    assert_eq!(report.process("NoNewPrivs"), "1");
    let socket = report.probe("docker_socket");
    assert!(
        !socket.stdout.contains("docker"),
        "a Docker socket is visible\n{socket}"
    );
    let docker_env = report.probe("docker_host_env");
    assert!(docker_env.stdout.trim().is_empty(), "{docker_env}");
    let tcp = report.probe("docker_tcp");
    assert!(
        !tcp.stdout.contains("OPEN"),
        "the agent reached the host's Docker ports\n{tcp}"
    );
    assert!(
        listener.peers().is_empty(),
        "the host listener was reached: {:?}",
        listener.peers()
    );

    // Configuration as the daemon applied it.
    let host_config = &config["HostConfig"];
    let security_opt = host_config["SecurityOpt"].to_string();
    assert!(
        security_opt.contains("no-new-privileges"),
        "SecurityOpt {security_opt}"
    );
    // Podman reports `ALL` as the capabilities it would have given; the
    // empty bounding set above is the behaviour either way.
    if docker_support::daemon::is_podman() {
        assert!(
            host_config["CapDrop"]
                .as_array()
                .is_some_and(|caps| caps.iter().any(|c| c == "NET_RAW")),
            "CapDrop {}",
            host_config["CapDrop"]
        );
    } else {
        assert_eq!(host_config["CapDrop"], json!(["ALL"]), "CapDrop");
    }
    assert!(
        host_config["CapAdd"].as_array().is_none_or(Vec::is_empty),
        "CapAdd {}",
        host_config["CapAdd"]
    );
    assert_eq!(host_config["Privileged"], json!(false));
    assert_eq!(host_config["Init"], json!(true), "an init process");
    let pids_limit = host_config["PidsLimit"].as_i64().unwrap_or(0);
    assert!(
        pids_limit > 0 && pids_limit <= 8192,
        "PidsLimit {pids_limit}"
    );
    assert_eq!(host_config["Dns"], json!(["127.0.0.1"]), "Dns");
    assert!(
        config["Config"]["User"]
            .as_str()
            .is_some_and(|u| u.starts_with("1000")),
        "User {}",
        config["Config"]["User"]
    );
    let mounts = config["Mounts"].to_string();
    assert!(!mounts.contains("docker.sock"), "Mounts {mounts}");
    let networks: Vec<&String> = config["NetworkSettings"]["Networks"]
        .as_object()
        .expect("networks")
        .keys()
        .collect();
    assert_eq!(
        networks.len(),
        1,
        "the agent is on exactly one network: {networks:?}"
    );

    // Normal work still functions.
    let git = report.probe("git_work");
    assert!(git.succeeded() && git.stdout.trim() == "1", "{git}");
    assert!(
        report.probe("ssh_tools").succeeded(),
        "{}",
        report.probe("ssh_tools")
    );
    let npm = report.probe("npm_style");
    assert!(npm.succeeded() && npm.stdout.contains("JOBS_OK"), "{npm}");
    let fork = report.probe("pids_limit");
    assert!(
        fork.stdout.contains("FORK_REFUSED_AFTER")
            && fork.stdout.contains(&format!("PIDS_MAX={pids_limit}")),
        "the pids limit must stop a fork storm\n{fork}"
    );
    outcome.assert_clean();
}

#[test]
fn the_agent_cannot_make_a_user_namespace() {
    e2e_support::require();
    let spec = SessionSpec::new("userns", bottle(&["x.test"]))
        .probe("unshare", "unshare --user true")
        .probe("unshare_root", "unshare --user --map-root-user id -u")
        // `clone` with CLONE_NEWUSER, as a program may call it directly.
        .probe(
            "clone",
            "python3 -c 'import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); \
             r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0); \
             os._exit(0) if r == 0 else None; \
             print(\"clone\", r, os.strerror(ctypes.get_errno())); \
             sys.exit(0 if r > 0 else 1)'",
        )
        .probe("plain_fork", "sh -c 'echo forked'");
    let mut session = Session::start(spec, SessionDirs::new());
    session.go(&[]);
    session.wait_probes_done();
    let outcome = session.finish();
    let report = &outcome.report;

    // Control: a plain container of this engine may make one on Podman,
    // whose default seccomp profile allows it, so the agent's refusal is the
    // product's doing; on Docker, whose default refuses it, it may not.
    let plain = docker(&offline_run(
        Some("1000"),
        AGENT_IMAGE,
        &["unshare", "--user", "true"],
    ));
    assert_eq!(
        plain.status.success(),
        is_podman(),
        "CONTROL: `unshare --user true` in a plain container (Podman lets it, Docker does not)\n{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    for name in ["unshare", "unshare_root", "clone"] {
        let probe = report.probe(name);
        assert!(
            !probe.succeeded(),
            "the agent made a user namespace\n{probe}"
        );
    }
    let fork = report.probe("plain_fork");
    assert!(
        fork.succeeded() && fork.stdout.contains("forked"),
        "a plain fork must still work\n{fork}"
    );
    outcome.assert_clean();
}
