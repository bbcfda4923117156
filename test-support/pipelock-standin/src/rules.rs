//! Pipelock's host and address rules, re-modelled from its behaviour:
//! allowlist/blocklist pattern matching, CIDRs, and the internal ranges its
//! SSRF check refuses.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Lowercases and drops one trailing dot, as pipelock does before every match.
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Pipelock's `MatchDomain`: `*.x.com` matches `x.com` and every subdomain,
/// anything else matches exactly. An IP host is compared to the pattern as a
/// string (so a wildcard never matches an IP, and IPv6 must be written the
/// same way on both sides).
pub fn match_domain(host: &str, pattern: &str) -> bool {
    let host = normalize_host(host);
    let pattern = normalize_host(pattern);
    if host.parse::<IpAddr>().is_ok() {
        return host == pattern;
    }
    match pattern.strip_prefix("*.") {
        Some(base) => host == base || host.ends_with(&pattern[1..]),
        None => host == pattern,
    }
}

pub fn matches_any(host: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match_domain(host, p))
}

/// Pipelock's `Scanner.IsTrustedDomain`: whether `host` may resolve to an
/// internal address. An IP literal is never trusted, whatever the list holds;
/// a name is matched with [`match_domain`], so `*.x.com` trusts `x.com` too.
pub fn is_trusted_domain(host: &str, trusted_domains: &[String]) -> bool {
    host.parse::<IpAddr>().is_err() && matches_any(host, trusted_domains)
}

/// An IPv4-mapped IPv6 address compared as the IPv4 address it carries, as
/// pipelock does before every CIDR check.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A CIDR as pipelock's config writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CIDR such as 10.0.0.0/8 or fd00::/8")]
pub struct CidrParseError(String);

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError(raw.to_owned());
        let (addr, prefix) = raw.split_once('/').ok_or_else(err)?;
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(err());
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The CIDR with its host bits cleared.
    pub fn network(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        };
        Self {
            addr,
            prefix: self.prefix,
        }
    }

    pub fn has_host_bits(&self) -> bool {
        self.network() != *self
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Ranges pipelock's SSRF check always refuses, whatever the config says.
pub const CORE_INTERNAL: &[&str] = &[
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
];

/// Pipelock's default for an absent `internal` key: the core ranges plus multicast.
pub const DEFAULT_INTERNAL: &[&str] = &[
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

pub fn parse_all(list: &[&str]) -> Vec<Cidr> {
    list.iter().filter_map(|c| c.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_base_and_subdomains_only() {
        assert!(match_domain("x.com", "*.x.com"));
        assert!(match_domain("a.x.com", "*.x.com"));
        assert!(match_domain("a.b.x.com", "*.x.com"));
        assert!(!match_domain("evilx.com", "*.x.com"));
        assert!(!match_domain("x.com.evil", "*.x.com"));
    }

    #[test]
    fn plain_entries_are_exact() {
        assert!(match_domain("github.com", "github.com"));
        assert!(!match_domain("api.github.com", "github.com"));
        assert!(!match_domain("github.co", "github.com"));
    }

    #[test]
    fn case_and_trailing_dot_are_ignored_on_both_sides() {
        assert!(match_domain("GitHub.COM.", "github.com"));
        assert!(match_domain("github.com", "GITHUB.com."));
        assert!(match_domain("A.X.Com.", "*.x.com"));
    }

    #[test]
    fn ips_match_exactly_and_never_by_wildcard() {
        assert!(match_domain("192.0.2.1", "192.0.2.1"));
        assert!(!match_domain("192.0.2.10", "192.0.2.1"));
        assert!(!match_domain("192.168.1.1", "*.168.1.1"));
        assert!(match_domain("2001:DB8::7", "2001:db8::7"));
        assert!(!match_domain("2001:db8:0::7", "2001:db8::7"));
    }

    fn trusted(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_trusted_wildcard_covers_its_base_and_every_subdomain() {
        let list = trusted(&["*.corp.example.com"]);
        assert!(is_trusted_domain("corp.example.com", &list));
        assert!(is_trusted_domain("git.corp.example.com", &list));
        assert!(is_trusted_domain("a.b.corp.example.com", &list));
        assert!(is_trusted_domain("Git.CORP.example.com.", &list));
        assert!(!is_trusted_domain("evilcorp.example.com", &list));
        assert!(!is_trusted_domain("example.com", &list));
        assert!(!is_trusted_domain("corp.example.com.evil", &list));
    }

    #[test]
    fn a_trusted_exact_host_covers_only_itself() {
        let list = trusted(&["git.internal.test"]);
        assert!(is_trusted_domain("git.internal.test", &list));
        assert!(is_trusted_domain("GIT.internal.test.", &list));
        assert!(!is_trusted_domain("a.git.internal.test", &list));
        assert!(!is_trusted_domain("internal.test", &list));
    }

    #[test]
    fn an_ip_literal_is_never_trusted() {
        let list = trusted(&["10.0.0.1", "::1", "*.0.0.1"]);
        assert!(!is_trusted_domain("10.0.0.1", &list));
        assert!(!is_trusted_domain("::1", &list));
        assert!(!is_trusted_domain("127.0.0.1", &list));
    }

    #[test]
    fn cidrs_parse_contain_and_report_host_bits() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.has_host_bits());
        let sloppy: Cidr = "10.0.0.5/24".parse().unwrap();
        assert!(sloppy.has_host_bits());
        assert_eq!(sloppy.network().to_string(), "10.0.0.0/24");
        let v6: Cidr = "fd00:1234::/32".parse().unwrap();
        assert!(v6.contains("fd00:1234:9::1".parse().unwrap()));
        assert!(!v6.contains("fd00:1235::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("host/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn default_internal_ranges_all_parse() {
        assert_eq!(parse_all(DEFAULT_INTERNAL).len(), DEFAULT_INTERNAL.len());
        assert_eq!(parse_all(CORE_INTERNAL).len(), CORE_INTERNAL.len());
    }
}
