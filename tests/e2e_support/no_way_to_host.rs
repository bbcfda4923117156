//! Check 3 of the suite, shared by the runc test (e2e_isolation) and the runsc
//! test (e2e_runsc): a service listening on the host's `0.0.0.0` answers a
//! control container on a plain `--internal` network at the network's
//! gateway, at docker0 and at the host's own interface address, and answers
//! the agent at none of the host's addresses. It also holds the product to
//! the runtime it reports (log line and plan) against the daemon's runtimes,
//! and the containers to the kernel they run on: under runsc the agent sees
//! gVisor's, not the host's, and the proxy always the host's.

use std::net::IpAddr;

use serde_json::json;

use super::docker::{Resources, inspect, subnet_of};
use super::host::{HostListener, default_route_interface, host_ipv4_addresses, rand_u64};
use super::runtime::registered_runtimes;
use super::session::{AGENT_IMAGE, Session, SessionDirs, SessionSpec, TestHost};
use crate::docker_support::daemon::docker_ok;

/// For each target address, twice: by the routing table, and on `eth0`
/// whatever the routes say (`curl --interface` binds the socket to the
/// device, which an unprivileged process may do, and the kernel then sends
/// on-link): one line `REACHED <ip> <body>` or `BLOCKED <ip>` each, the
/// second attempt's address written `<ip>%eth0`. Each attempt is bounded
/// (3 s connect, 4 s total), and every target's pair runs at once: the host
/// has a bridge address per network of every test running beside this one,
/// and a dropped connection waits out its bound.
const SWEEP: &str = r#"for ip in $TARGETS; do
  for via in route eth0; do
    label=$ip; bind=
    if [ "$via" = eth0 ]; then label="$ip%eth0"; bind="--interface eth0"; fi
    (
      if body=$(curl $bind --noproxy '*' -sS --connect-timeout 3 -m 4 "http://$ip:$PORT/" 2>/dev/null); then
        echo "REACHED $label $body"
      else
        echo "BLOCKED $label"
      fi
    ) &
  done
done
wait"#;

const NO_PROXY_ENV: &str =
    "unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy;";

fn parse_sweep(output: &str) -> Vec<(String, bool, String)> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.splitn(3, ' ');
            let verdict = words.next()?;
            let ip = words.next()?.to_owned();
            let rest = words.next().unwrap_or_default().to_owned();
            match verdict {
                "REACHED" => Some((ip, true, rest)),
                "BLOCKED" => Some((ip, false, rest)),
                _ => None,
            }
        })
        .collect()
}

/// The runtime text of SPEC §6: `runsc (gVisor)` when the daemon has a
/// runtime named `runsc`, `runc (default)` otherwise.
fn runtime_text(runsc_registered: bool) -> &'static str {
    if runsc_registered {
        "runsc (gVisor)"
    } else {
        "runc (default)"
    }
}

/// The product's stderr says `docker runtime: <text>` twice, with nothing
/// else after the key: once as its status line and once as the plan's line.
fn assert_runtime_lines(stderr: &str, runsc_registered: bool) {
    let expected = format!("docker runtime: {}", runtime_text(runsc_registered));
    let mentions: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("docker runtime:"))
        .collect();
    assert_eq!(
        mentions,
        [expected.as_str(), expected.as_str()],
        "expected the status line and the plan line `{expected}`, and no other mention of \
         the runtime, in claude-bottle's stderr\n--- stderr\n{stderr}"
    );
}

fn in_subnet(ip: &IpAddr, subnet: &str) -> bool {
    let Some((base, len)) = subnet.split_once('/') else {
        return false;
    };
    let (Ok(IpAddr::V4(base)), IpAddr::V4(ip), Ok(len)) =
        (base.parse::<IpAddr>(), ip, len.parse::<u32>())
    else {
        return false;
    };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(base) & mask) == (u32::from(*ip) & mask)
}

/// Runs check 3. `expected_runtime` is what the agent container must run
/// under (`runc` or `runsc`); the proxy never runs under runsc.
pub fn assert_no_way_to_host(tag: &str, expected_runtime: &str) {
    let listener = HostListener::start();
    let host_addresses = host_ipv4_addresses();
    let uplink = default_route_interface().expect("the host has a default route");
    let address_of = |iface: &str| {
        host_addresses
            .iter()
            .find(|(i, _)| i == iface)
            .map(|(_, ip)| ip.clone())
    };
    let uplink_ip = address_of(&uplink).expect("the default-route interface has an IPv4 address");
    let docker0_ip = address_of("docker0").expect("docker0 has an IPv4 address");

    // Positive control: the leak the product must close, on this daemon.
    // Rootless Podman's bridges live in its own network namespace, so an
    // internal network's gateway is not the host there, and nothing of an
    // internal network reaches the host; the host is reached through
    // slirp4netns, from a network with a default route. There the control
    // shows that way open to a container of a plain network, and the agent's
    // sweep adds slirp4netns' address for the host's loopback (10.0.2.2).
    let rootless = crate::docker_support::daemon::is_rootless_podman();
    let mut resources = Resources::default();
    let control_net = format!(
        "e2e-ctl-internal-{}-{:04x}",
        std::process::id(),
        rand_u64() & 0xffff
    );
    resources.network(&control_net, if rootless { &[] } else { &["--internal"] });
    let control_gateway = Session::gateway_of(&control_net);
    let mut control_targets = vec![docker0_ip.clone(), uplink_ip.clone()];
    if !rootless {
        control_targets.insert(0, control_gateway.clone());
    }
    let control = resources.run_once(
        &format!("{control_net}-probe"),
        &[
            "--network",
            &control_net,
            "-e",
            &format!("TARGETS={}", control_targets.join(" ")),
            "-e",
            &format!("PORT={}", listener.port),
            AGENT_IMAGE,
            "sh",
            "-c",
            SWEEP,
        ],
    );
    let control_out = String::from_utf8_lossy(&control.stdout).into_owned();
    let control_sweep = parse_sweep(&control_out);
    // By the routes or on the device: Docker routes an internal network's
    // containers through its gateway, Podman gives them the subnet alone.
    for target in &control_targets {
        let bound = format!("{target}%eth0");
        assert!(
            control_sweep
                .iter()
                .any(|(ip, reached, body)| (ip == target || *ip == bound)
                    && *reached
                    && body.contains(&listener.token)),
            "CONTROL: a container on a plain (--internal unless rootless: {rootless}) network should reach the host listener at {target} \
             (gateway {control_gateway}, docker0 {docker0_ip}, {uplink} {uplink_ip}) -- without this the \
             agent's result proves nothing\n{control_out}\n{}",
            String::from_utf8_lossy(&control.stderr)
        );
    }

    // The bottle.
    let spec = SessionSpec::new(
        tag,
        json!({ "egress": {
        "allowlist": ["x.test"],
        // The test hosts have private addresses; see `bottle` in e2e_isolation.rs.
        "ip_cidrs": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    } }),
    )
    .host(TestHost::http("web", &["x.test"]))
    .probe("proxied_fetch", "curl -sS -m 15 http://x.test/e2e-proxied")
    .probe("kernel", "cat /proc/version")
    .probe("sweep_host", &format!("{NO_PROXY_ENV} {SWEEP}"))
    .probe(
        "host_via_proxy",
        "curl -sS -m 10 -o /dev/null -w 'HTTP_CODE=%{http_code}\\n' \"http://$UPLINK_IP:$PORT/\"",
    );
    let mut session = Session::start(spec, SessionDirs::new());
    // The caller holds the runtime lock: this is what the session detected.
    let runsc_registered = registered_runtimes().iter().any(|r| r == "runsc");
    let runtime = inspect(&session.agent_container, "{{.HostConfig.Runtime}}");
    let proxy_runtime = inspect(&session.proxy_container, "{{.HostConfig.Runtime}}");
    let internal_gateway = Session::gateway_of(&session.internal_network);
    let egress_gateway = Session::gateway_of(&session.egress_network);
    let internal_subnet = subnet_of(&session.internal_network);
    let mut targets: Vec<String> = host_addresses.iter().map(|(_, ip)| ip.clone()).collect();
    let slirp_host = "10.0.2.2".to_owned();
    let rootless_extra = rootless.then_some(&slirp_host);
    for extra in [
        Some(&internal_gateway),
        Some(&egress_gateway),
        rootless_extra,
    ]
    .into_iter()
    .flatten()
    {
        if !extra.is_empty() && !targets.contains(extra) {
            targets.push(extra.clone());
        }
    }
    session.go(&[
        ("TARGETS", targets.join(" ")),
        ("PORT", listener.port.to_string()),
        ("UPLINK_IP", uplink_ip.clone()),
    ]);
    session.wait_probes_done();
    let proxy_kernel = docker_ok(&["exec", &session.proxy_container, "cat", "/proc/version"]);
    let peers = listener.peers();
    let outcome = session.finish();
    let report = &outcome.report;

    // Podman's Docker API reports every container's runtime as `oci`: the
    // default runtime, the only one its containers can have.
    let reported = if crate::docker_support::daemon::is_podman() && expected_runtime == "runc" {
        "oci"
    } else {
        expected_runtime
    };
    assert_eq!(runtime, reported, "the agent container's runtime");
    assert_eq!(
        runsc_registered,
        expected_runtime == "runsc",
        "the daemon's runtimes do not fit the test: `runsc` registered is {runsc_registered}, \
         the agent is expected under `{expected_runtime}`"
    );
    assert_runtime_lines(&outcome.stderr, runsc_registered);
    assert_ne!(proxy_runtime, "runsc", "the proxy must not run under runsc");
    let host_kernel =
        std::fs::read_to_string("/proc/version").expect("read the host's /proc/version");
    let kernel = report.probe("kernel");
    assert!(kernel.succeeded(), "{kernel}");
    assert_eq!(
        kernel.stdout.trim() == host_kernel.trim(),
        expected_runtime != "runsc",
        "the agent's kernel under `{expected_runtime}`: {:?}, the host's: {:?} (gVisor shows its own)",
        kernel.stdout.trim(),
        host_kernel.trim()
    );
    assert_eq!(
        proxy_kernel.trim(),
        host_kernel.trim(),
        "the proxy runs on the host's kernel"
    );
    assert!(
        report.probe("proxied_fetch").succeeded(),
        "the agent's allowed path (through its proxy) must work, or the blocked results prove nothing\n{}",
        report.probe("proxied_fetch")
    );
    let sweep = report.probe("sweep_host");
    let agent_sweep = parse_sweep(&sweep.stdout);
    assert_eq!(
        agent_sweep.len(),
        2 * targets.len(),
        "two verdicts per target {targets:?}\n{sweep}"
    );
    let reached: Vec<&(String, bool, String)> = agent_sweep.iter().filter(|(_, r, _)| *r).collect();
    assert!(
        reached.is_empty(),
        "the agent reached the host listener at {reached:?} (host addresses {host_addresses:?}, \
         internal gateway {internal_gateway}, egress gateway {egress_gateway})\n{sweep}"
    );
    assert!(
        !sweep.output().contains(&listener.token),
        "the host listener's token leaked into the agent's output\n{sweep}"
    );
    let via_proxy = report.probe("host_via_proxy");
    assert!(
        via_proxy.stdout.contains("HTTP_CODE=403"),
        "the proxy must refuse the host's address (not on the allowlist)\n{via_proxy}"
    );
    let from_agent: Vec<&IpAddr> = peers
        .iter()
        .filter(|p| in_subnet(p, &internal_subnet))
        .collect();
    assert!(
        from_agent.is_empty(),
        "the host listener saw connections from the agent's network {internal_subnet}: {from_agent:?}"
    );
    outcome.assert_clean();
}
