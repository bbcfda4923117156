//! The host rules of the egress lists and SSH entries: what each list entry
//! may be, and why one is refused.

use std::net::IpAddr;

use ipnet::IpNet;

use super::error::shown;
use super::{AllowRule, Hostname, SshHostName, TrustedDomain};

pub(super) const SSH_HOSTNAME_EXPECTING: &str = "a DNS name or an IP address";

pub(super) fn parse_ssh_host_name(raw: &str) -> Option<SshHostName> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(SshHostName::Ip(ip));
    }
    Hostname::parse(raw).map(SshHostName::Dns)
}

pub(super) const ALLOW_RULE_EXPECTING: &str =
    "a hostname, `*.` followed by at least two labels (like `*.example.com`), or an IP address";
pub(super) const TRUSTED_DOMAIN_EXPECTING: &str = "an exact hostname such as `git.internal.example.com`, or `*.` followed by at least two labels (like `*.corp.example.com`)";
pub(super) const CIDR_EXPECTING: &str =
    "a CIDR such as `10.0.0.0/8`, not `/0`, with no host bits set";

/// Why a list entry was refused: what is wrong, and how to fix it.
pub(super) struct Refusal {
    pub message: String,
    pub hint: Option<String>,
}

fn refuse(message: String, hint: Option<String>) -> Refusal {
    Refusal { message, hint }
}

/// Refuses what is not a bare host in any of the egress lists: a URL, a path,
/// a port, whitespace.
fn refuse_non_host(raw: &str) -> Result<(), Refusal> {
    if raw.is_empty() {
        return Err(refuse("empty entry".to_owned(), None));
    }
    if let Some((_, rest)) = raw.split_once("://") {
        let host = rest.split(['/', ':']).next().unwrap_or(rest);
        return Err(refuse(
            format!("{} is a URL", shown(raw)),
            Some(format!("write only the host: {}", shown(host))),
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse(format!("{} contains whitespace", shown(raw)), None));
    }
    if let Some((host, _)) = raw.split_once('/') {
        return Err(refuse(
            format!("{} has a path", shown(raw)),
            Some(format!(
                "the proxy admits hosts, not paths; write only the host: {}",
                shown(host)
            )),
        ));
    }
    if raw.parse::<IpAddr>().is_err()
        && let Some((host, _)) = raw.split_once(':')
    {
        return Err(refuse(
            format!("{} has a port", shown(raw)),
            Some(format!(
                "ports are not restricted; write only the host: {}",
                shown(host)
            )),
        ));
    }
    Ok(())
}

/// A host pattern as the allowlist and trusted domains both take it.
enum HostPattern {
    Exact(Hostname),
    Wildcard(Hostname),
}

/// An exact host, or `*.` and a suffix of at least two labels. `verb` says
/// what the list does with a host (`admit`, `trust`), for the message that
/// refuses a whole top-level domain.
fn parse_host_pattern(raw: &str, verb: &str) -> Result<HostPattern, Refusal> {
    if let Some(suffix) = raw.strip_prefix("*.") {
        let Some(host) = Hostname::parse(suffix).filter(|_| suffix.parse::<IpAddr>().is_err())
        else {
            return Err(refuse(
                format!("{} is not `*.` followed by a hostname", shown(raw)),
                None,
            ));
        };
        if host.label_count() < 2 {
            return Err(refuse(
                format!("{} would {verb} a whole top-level domain", shown(raw)),
                Some(format!(
                    "name the domain itself, like `*.example.{}`",
                    host.as_str()
                )),
            ));
        }
        return Ok(HostPattern::Wildcard(host));
    }
    if raw.contains('*') {
        return Err(refuse(
            format!("{} has a `*` that is not a leading `*.`", shown(raw)),
            None,
        ));
    }
    Hostname::parse(raw)
        .map(HostPattern::Exact)
        .ok_or_else(|| refuse(format!("{} is not a valid hostname", shown(raw)), None))
}

pub(super) fn parse_allow_rule(raw: &str) -> Result<AllowRule, Refusal> {
    refuse_non_host(raw)?;
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(AllowRule::Ip(ip));
    }
    if raw == "*" {
        return Err(refuse(
            "a bare `*` would admit every host".to_owned(),
            Some("list the hosts the agent needs instead".to_owned()),
        ));
    }
    Ok(match parse_host_pattern(raw, "admit")? {
        HostPattern::Exact(host) => AllowRule::Exact(host),
        HostPattern::Wildcard(host) => AllowRule::Wildcard(host),
    })
}

/// Pipelock (`ValidateTrustedDomains`) also takes an IPv4 literal here, but its
/// matcher (`Scanner.IsTrustedDomain`) never trusts an IP, so one would be a
/// silent no-op: it is refused with a pointer to `ip_cidrs`.
pub(super) fn parse_trusted_domain(raw: &str) -> Result<TrustedDomain, Refusal> {
    refuse_non_host(raw)?;
    if raw.parse::<IpAddr>().is_ok() {
        return Err(refuse(
            format!("{} is an IP address", shown(raw)),
            Some("exempt addresses through `ip_cidrs`, as a /32 or /128".to_owned()),
        ));
    }
    if raw == "*" {
        return Err(refuse(
            "a bare `*` would turn the SSRF check off for every host".to_owned(),
            Some("list the hosts that resolve to private addresses instead".to_owned()),
        ));
    }
    Ok(match parse_host_pattern(raw, "trust")? {
        HostPattern::Exact(host) => TrustedDomain::Exact(host),
        HostPattern::Wildcard(host) => TrustedDomain::Wildcard(host),
    })
}

pub(super) fn parse_cidr(raw: &str) -> Result<IpNet, Refusal> {
    let Ok(net) = raw.parse::<IpNet>() else {
        let hint = raw.parse::<IpAddr>().ok().map(|ip| {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            format!("for a single address write `{ip}/{bits}`")
        });
        return Err(refuse(format!("{} is not a CIDR", shown(raw)), hint));
    };
    if net.prefix_len() == 0 {
        return Err(refuse(
            format!(
                "{} would exempt every address from the SSRF check",
                shown(raw)
            ),
            None,
        ));
    }
    if net.trunc() != net {
        return Err(refuse(
            format!("{} has host bits set", shown(raw)),
            Some(format!("did you mean `{}`?", net.trunc())),
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules() {
        let ok = |raw: &str| parse_allow_rule(raw).ok().map(|r| r.to_string());
        assert_eq!(ok("API.Anthropic.com."), Some("api.anthropic.com".into()));
        assert_eq!(
            ok("*.githubusercontent.com"),
            Some("*.githubusercontent.com".into())
        );
        assert_eq!(ok("10.1.2.3"), Some("10.1.2.3".into()));
        assert_eq!(ok("::1"), Some("::1".into()));
        for bad in [
            "",
            "*",
            "*.com",
            "https://x.com",
            "x.com:443",
            "x.com/path",
            "a b.com",
            "a.*.com",
            "*.1.2.3.4",
            "*.",
            "-x.com",
            "[::1]:22",
        ] {
            assert_eq!(ok(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn trusted_domains_are_hosts_or_wildcards_as_pipelock_takes_them() {
        let ok = |raw: &str| parse_trusted_domain(raw).ok().map(|d| d.to_string());
        assert_eq!(
            ok("git.internal.example.com"),
            Some("git.internal.example.com".into())
        );
        // Pipelock lowercases and drops a trailing dot; so does `Hostname`.
        assert_eq!(ok("*.Corp.Example.com."), Some("*.corp.example.com".into()));
        assert!(matches!(
            parse_trusted_domain("*.lan.example"),
            Ok(TrustedDomain::Wildcard(_))
        ));
        for bad in [
            "",
            "*",
            "*.com",
            "*.com.",
            "*.",
            "a.*.example.com",
            "*.*.example.com",
            "https://x.com",
            "x.com/path",
            "x.com:22",
            " x.com",
            "10.0.0.1",
            "::1",
            "*.1.2.3.4",
        ] {
            assert_eq!(ok(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/8").ok(), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_cidr("fd00::/8").ok(), "fd00::/8".parse().ok());
        for bad in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.1/8",
            "10.0.0.1",
            "10.0.0.0/33",
            "x",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad:?} must be refused");
        }
        let hint = parse_cidr("10.0.0.1/8").err().and_then(|r| r.hint);
        assert_eq!(hint.as_deref(), Some("did you mean `10.0.0.0/8`?"));
    }
}
