//! `allow` and `allow --remove` on a running bottle: the change to its proxy
//! config, and what pipelock's strict mode would refuse to take on reload.
//!
//! Pipelock 2.3.0 applies a reloaded `api_allowlist`, but refuses a reload
//! that adds `trusted_domains` or widens `ssrf.ip_allowlist` as a security
//! downgrade. A host that needs either cannot be allowed live: it is refused
//! here, before anything changes, and belongs in the manifest instead.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::core::pipelock::PipelockConfig;
use crate::manifest::AllowRule;

/// Pipelock's default internal ranges: an address in one is refused by its
/// SSRF check unless `ssrf.ip_allowlist` or `trusted_domains` exempts it.
pub const INTERNAL_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "224.0.0.0/4",
    "ff00::/8",
];

/// What a change did to the allowlist, host by host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowlistChange {
    /// Added, or taken out with `--remove`.
    pub changed: Vec<String>,
    /// Already there, or (with `--remove`) not there.
    pub unchanged: Vec<String>,
}

/// Adds `hosts` to the config's `api_allowlist`, or takes them out.
pub fn apply(config: &mut PipelockConfig, hosts: &[AllowRule], remove: bool) -> AllowlistChange {
    let mut change = AllowlistChange::default();
    for host in hosts {
        let entry = host.to_string();
        let present = config
            .api_allowlist
            .iter()
            .any(|e| e.eq_ignore_ascii_case(&entry));
        match (remove, present) {
            (false, false) => {
                config.api_allowlist.push(entry.clone());
                change.changed.push(entry);
            }
            (true, true) => {
                config
                    .api_allowlist
                    .retain(|e| !e.eq_ignore_ascii_case(&entry));
                change.changed.push(entry);
            }
            _ => change.unchanged.push(entry),
        }
    }
    change
}

/// Why a host cannot be allowed without a reload pipelock would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downgrade {
    /// An internal address: it would need `ssrf.ip_allowlist` (`ip_cidrs`).
    InternalAddress { host: String, address: IpAddr },
    /// A name that resolves to an internal address: it would need
    /// `trusted_domains`.
    InternalName { host: String, address: IpAddr },
}

impl Downgrade {
    /// The manifest key that would let the next session reach it.
    pub fn manifest_key(&self) -> &'static str {
        match self {
            Self::InternalAddress { .. } => "ip_cidrs",
            Self::InternalName { .. } => "trusted_domains",
        }
    }

    pub fn host(&self) -> &str {
        match self {
            Self::InternalAddress { host, .. } | Self::InternalName { host, .. } => host,
        }
    }

    pub fn address(&self) -> IpAddr {
        match self {
            Self::InternalAddress { address, .. } | Self::InternalName { address, .. } => *address,
        }
    }
}

/// Whether allowing `host`, which resolves to `addresses` (empty for an IP
/// literal, a wildcard or a name that did not resolve), would need an
/// exemption the running config does not have.
pub fn downgrade_needed(
    config: &PipelockConfig,
    host: &AllowRule,
    addresses: &[IpAddr],
) -> Option<Downgrade> {
    let exempt: Vec<IpNet> = config
        .ssrf
        .ip_allowlist
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let needs_exemption =
        |ip: &IpAddr| is_internal(ip) && !exempt.iter().any(|net| net.contains(ip));
    match host {
        AllowRule::Ip(ip) => needs_exemption(ip).then(|| Downgrade::InternalAddress {
            host: host.to_string(),
            address: *ip,
        }),
        AllowRule::Exact(name) => {
            let trusted = config
                .trusted_domains
                .iter()
                .any(|t| trusted_domain_matches(t, name.as_str()));
            if trusted {
                return None;
            }
            addresses
                .iter()
                .find(|ip| needs_exemption(ip))
                .map(|ip| Downgrade::InternalName {
                    host: host.to_string(),
                    address: *ip,
                })
        }
        AllowRule::Wildcard(_) => None,
    }
}

/// Whether `ip` is in one of pipelock's internal ranges.
pub fn is_internal(ip: &IpAddr) -> bool {
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
        IpAddr::V4(_) => *ip,
    };
    INTERNAL_RANGES
        .iter()
        .filter_map(|c| c.parse::<IpNet>().ok())
        .any(|net| net.contains(&ip))
}

/// Pipelock's trusted-domain match: exact, or `*.x` matching `x` and every
/// subdomain of it.
fn trusted_domain_matches(entry: &str, host: &str) -> bool {
    match entry.strip_prefix("*.") {
        Some(suffix) => {
            host == suffix
                || host
                    .strip_suffix(suffix)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        }
        None => entry == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::egress::EgressPolicy;
    use crate::manifest::{Bottle, Egress, Hostname, TrustedDomain};

    fn rule(raw: &str) -> AllowRule {
        AllowRule::parse(raw).unwrap()
    }

    fn config(trusted: &[&str], cidrs: &[&str]) -> PipelockConfig {
        let bottle = Bottle {
            egress: Egress {
                allowlist: vec![rule("api.anthropic.com")],
                trusted_domains: trusted
                    .iter()
                    .map(|t| match t.strip_prefix("*.") {
                        Some(h) => TrustedDomain::Wildcard(Hostname::parse(h).unwrap()),
                        None => TrustedDomain::Exact(Hostname::parse(t).unwrap()),
                    })
                    .collect(),
                ip_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            },
            ..Bottle::default()
        };
        let policy = EgressPolicy::for_bottle("b", &bottle).unwrap();
        PipelockConfig::for_policy("b", &policy).unwrap()
    }

    #[test]
    fn adding_and_removing_change_only_what_needs_it() {
        let mut config = config(&[], &[]);
        let added = apply(
            &mut config,
            &[rule("x.test"), rule("API.anthropic.com")],
            false,
        );
        assert_eq!(added.changed, ["x.test"]);
        assert_eq!(added.unchanged, ["api.anthropic.com"]);
        assert_eq!(config.api_allowlist, ["api.anthropic.com", "x.test"]);
        let removed = apply(&mut config, &[rule("x.test"), rule("y.test")], true);
        assert_eq!(removed.changed, ["x.test"]);
        assert_eq!(removed.unchanged, ["y.test"]);
        assert_eq!(config.api_allowlist, ["api.anthropic.com"]);
    }

    #[test]
    fn internal_addresses_need_an_exemption_the_config_may_already_have() {
        let plain = config(&[], &[]);
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(downgrade_needed(&plain, &rule("93.184.215.14"), &[]), None);
        let needed = downgrade_needed(&plain, &rule("10.1.2.3"), &[]).unwrap();
        assert_eq!(needed.manifest_key(), "ip_cidrs");
        let name = downgrade_needed(&plain, &rule("git.corp.test"), &[public, private]).unwrap();
        assert_eq!(name.manifest_key(), "trusted_domains");
        assert_eq!(name.address(), private);
        assert_eq!(
            downgrade_needed(&plain, &rule("git.corp.test"), &[public]),
            None
        );
        // Already exempt in the running config: no downgrade.
        let trusted = config(&["*.corp.test"], &["10.0.0.0/8"]);
        assert_eq!(
            downgrade_needed(&trusted, &rule("git.corp.test"), &[private]),
            None
        );
        assert_eq!(downgrade_needed(&trusted, &rule("10.1.2.3"), &[]), None);
        assert_eq!(
            downgrade_needed(&trusted, &rule("172.16.0.1"), &[]).map(|d| d.manifest_key()),
            Some("ip_cidrs")
        );
    }

    #[test]
    fn mapped_and_loopback_addresses_are_internal() {
        for ip in [
            "127.0.0.1",
            "::1",
            "::ffff:10.0.0.1",
            "169.254.169.254",
            "fd00::1",
        ] {
            assert!(is_internal(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(&ip.parse().unwrap()), "{ip}");
        }
    }
}
