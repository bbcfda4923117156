//! Bring-up step: the fence. Before anything of the agent runs (Claude runs
//! only on exec, after `start`), a one-shot container joins the agent's
//! network namespace and sets netfilter rules there that drop every packet
//! the agent sends, but to loopback and to its proxy's port.
//!
//! Why: an `--internal` network is not enough on every engine. Docker can
//! leave the host without an address on the internal bridge
//! (`com.docker.network.bridge.inhibit_ipv4`); Podman ignores that option,
//! so the bridge's gateway is the host, and a service on the host's
//! `0.0.0.0` answers the agent there. Routes are not enough either: an
//! unprivileged socket bound to the interface (`SO_BINDTODEVICE`,
//! `MSG_DONTROUTE`) is sent on-link whatever the routing table says, while
//! netfilter sees every packet.
//!
//! The agent cannot undo the rules: it has no capability (`cap_drop: ALL`,
//! `no-new-privileges`), so neither `NET_ADMIN` nor `NET_RAW` for a packet
//! socket. The fence runs under the default runtime even when the agent runs
//! under runsc: with gVisor's host networking the sandbox's sockets are the
//! host kernel's, in this namespace, so these rules apply to them.

use std::time::Duration;

use super::bring_up::{Attempt, BringUp, LaunchError};
use super::client::Engine;
use super::ledger::Created;
use super::names::Names;
use super::plan::FENCE_IMAGE_ENV;
use super::remove::remove;
use super::specs::fence_container_spec;
use crate::core::pipelock::LISTEN_PORT;

/// How long the fence may take from start to exit.
pub(crate) const FENCE_TIMEOUT: Duration = Duration::from_secs(30);
const FENCE_LOG_LINES: u32 = 40;

/// The rules, then what the kernel holds, for [`verify`]. `$1` is the
/// proxy's address, `$2` its port. The agent may answer a connection made
/// to it (by a container of its network): a packet it sends to start one of
/// its own is dropped before the kernel tracks it, so `ESTABLISHED` only
/// ever admits answers. IPv6 gets no way out at all; a kernel without IPv6
/// needs no rule for it.
const SCRIPT: &str = r#"set -eu
iptables -w -A OUTPUT -o lo -j ACCEPT
iptables -w -A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
iptables -w -A OUTPUT -d "$1" -p tcp --dport "$2" -j ACCEPT
iptables -w -P OUTPUT DROP
iptables -w -P FORWARD DROP
if [ -e /proc/net/if_inet6 ]; then
  ip6tables -w -A OUTPUT -o lo -j ACCEPT
  ip6tables -w -P OUTPUT DROP
  ip6tables -w -P FORWARD DROP
  echo 'fence: ipv6'
  ip6tables -w -S OUTPUT
else
  echo 'fence: no ipv6'
fi
echo 'fence: ipv4'
iptables -w -S OUTPUT
"#;

/// The fence container's command: the script with the proxy's address.
pub(crate) fn command(proxy_address: &str) -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        SCRIPT.to_owned(),
        "fence".to_owned(),
        proxy_address.to_owned(),
        LISTEN_PORT.to_string(),
    ]
}

/// Why the fence's output does not show the rules in place; none when it does.
///
/// Each family's `-S OUTPUT` must show the policy `DROP` and no rule that
/// accepts more than loopback and, for IPv4, the proxy's port.
pub(crate) fn verify(output: &str, proxy_address: &str) -> Option<String> {
    let mut section = None;
    let mut v4 = (false, 0);
    let mut v6 = (false, 0);
    let mut no_v6 = false;
    let proxy_rule = [
        format!("-d {proxy_address}/32"),
        "-p tcp".to_owned(),
        format!("--dport {LISTEN_PORT}"),
    ];
    for line in output.lines().map(str::trim) {
        match line {
            "fence: ipv4" => section = Some(4),
            "fence: ipv6" => section = Some(6),
            "fence: no ipv6" => no_v6 = true,
            _ => {}
        }
        let Some(family) = section else { continue };
        let seen = if family == 4 { &mut v4 } else { &mut v6 };
        if line == "-P OUTPUT DROP" {
            seen.0 = true;
        } else if let Some(rule) = line.strip_prefix("-A OUTPUT ") {
            let loopback = rule == "-o lo -j ACCEPT";
            let answers =
                family == 4 && rule == "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT";
            let proxy = family == 4
                && rule.ends_with("-j ACCEPT")
                && proxy_rule.iter().all(|part| rule.contains(part.as_str()));
            if !(loopback || answers || proxy) {
                return Some(format!("an unexpected rule `{line}`"));
            }
            seen.1 += 1;
        } else if line.starts_with("-P OUTPUT") {
            return Some(format!("the policy `{line}`"));
        }
    }
    if !v4.0 {
        return Some("no IPv4 `OUTPUT` policy `DROP`".to_owned());
    }
    if !v6.0 && !no_v6 {
        return Some("no IPv6 `OUTPUT` policy `DROP`".to_owned());
    }
    None
}

impl<E: Engine> BringUp<E> {
    /// Fences the started agent `agent_id`, then removes the fence container.
    pub(super) async fn fence_agent(
        &self,
        names: &Names,
        agent_id: &str,
        proxy_address: &str,
    ) -> Result<(), Attempt> {
        let spec = fence_container_spec(&self.plan, names, agent_id, proxy_address);
        let id = self.create_container(&spec).await?;
        let outcome = self.run_fence(names, &id, proxy_address).await;
        // Its work is done, or failed: either way it goes now. Should the
        // removal fail, the ledger still holds it for the teardown.
        let fence = Created {
            id: id.clone(),
            name: spec.name.clone(),
        };
        let removal = remove(&self.engine, &[fence], &[]).await;
        for c in &removal.containers {
            self.ledger.forget_container(&c.id);
        }
        outcome.map_err(Attempt::Failed)
    }

    async fn run_fence(
        &self,
        names: &Names,
        id: &str,
        proxy_address: &str,
    ) -> Result<(), LaunchError> {
        let failed = |detail: String, logs: String| LaunchError::FenceFailed {
            name: names.fence.clone(),
            agent: names.agent.clone(),
            image: self.plan.fence_image.clone(),
            detail,
            logs,
        };
        self.check_cancelled()?;
        if let Err(e) = self.engine.start_container(id).await {
            return Err(failed(e.detail, String::new()));
        }
        let exit_code = tokio::select! {
            waited = tokio::time::timeout(FENCE_TIMEOUT, self.engine.wait_container(id)) => match waited {
                Ok(code) => code?,
                Err(_) => {
                    let detail = format!("it did not finish within {} s", FENCE_TIMEOUT.as_secs());
                    return Err(failed(detail, self.log_tail(id).await));
                }
            },
            () = self.cancelled() => return Err(LaunchError::Cancelled),
        };
        let output = self
            .engine
            .logs_tail(id, FENCE_LOG_LINES)
            .await
            .unwrap_or_default();
        if exit_code != 0 {
            return Err(failed(
                format!("it exited with code {exit_code}"),
                self.log_tail(id).await,
            ));
        }
        if let Some(problem) = verify(&output, proxy_address) {
            return Err(failed(
                format!("its rules are not in place: {problem}"),
                self.log_tail(id).await,
            ));
        }
        Ok(())
    }
}

/// The hint of a fence that failed.
pub(crate) fn fence_hint(image: &str) -> String {
    format!(
        "the fence runs `sh`, `iptables` and `ip6tables` from `{image}` with `NET_ADMIN`; set `{FENCE_IMAGE_ENV}` to an image that provides them, or unset it to use the built-in agent image"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "fence: ipv6\n-P OUTPUT DROP\n-A OUTPUT -o lo -j ACCEPT\nfence: ipv4\n-P OUTPUT DROP\n-A OUTPUT -o lo -j ACCEPT\n-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A OUTPUT -d 10.89.0.2/32 -p tcp -m tcp --dport 8888 -j ACCEPT\n";

    #[test]
    fn rules_in_place_pass() {
        assert_eq!(verify(GOOD, "10.89.0.2"), None);
        let no_v6 = "fence: no ipv6\nfence: ipv4\n-P OUTPUT DROP\n-A OUTPUT -o lo -j ACCEPT\n";
        assert_eq!(verify(no_v6, "10.89.0.2"), None);
    }

    #[test]
    fn a_missing_policy_or_an_extra_rule_fails() {
        let open = GOOD.replacen("-P OUTPUT DROP", "-P OUTPUT ACCEPT", 1);
        assert!(verify(&open, "10.89.0.2").is_some());
        let v4_open = GOOD.replace(
            "fence: ipv4\n-P OUTPUT DROP",
            "fence: ipv4\n-P OUTPUT ACCEPT",
        );
        assert!(verify(&v4_open, "10.89.0.2").is_some());
        // The proxy rule of another address admits another host.
        assert!(verify(GOOD, "10.89.0.3").is_some());
        let extra = format!("{GOOD}-A OUTPUT -d 10.89.0.1/32 -j ACCEPT\n");
        assert!(verify(&extra, "10.89.0.2").is_some());
        // New connections of its own are not answers.
        let new = format!("{GOOD}-A OUTPUT -m conntrack --ctstate NEW -j ACCEPT\n");
        assert!(verify(&new, "10.89.0.2").is_some());
        let v6_proxy = GOOD.replace(
            "fence: ipv6\n-P OUTPUT DROP\n",
            "fence: ipv6\n-P OUTPUT DROP\n-A OUTPUT -d fe80::1/128 -p tcp -m tcp --dport 8888 -j ACCEPT\n",
        );
        assert!(verify(&v6_proxy, "10.89.0.2").is_some());
        // Nothing at all: an image whose `sh -c` printed nothing.
        assert!(verify("", "10.89.0.2").is_some());
        assert!(verify("fence: ipv4\n-P OUTPUT DROP\n", "10.89.0.2").is_some());
    }
}
