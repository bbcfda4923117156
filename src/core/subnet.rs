//! The addresses of a bottle's networks, chosen by the tool itself.
//!
//! Docker's default address pools hand out a /16 or /20 per network: two
//! networks per bottle use up the 31 built-in pools at the 16th bottle, and
//! two daemons' worth of concurrent creations race for the same pool. So
//! each network gets a /28 (a gateway, the proxy, the agent, and room to
//! spare) from one range, `CLAUDE_BOTTLE_ADDRESS_POOL` (default
//! [`DEFAULT_ADDRESS_POOL`]): a /16 holds 4096 of them, room for 2048 bottles.
//! A subnet is never one that overlaps a network the daemon has (anyone's,
//! not only ours) or a route of the host (a VPN, a LAN); the daemon's own
//! IPAM refuses overlapping pools, so two sessions that pick the same
//! subnet at the same moment cannot both get it: the loser chooses again.
//!
//! Everything here is pure: the caller gathers what is taken.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::diagnostic::Diagnostic;

/// The variable that sets the range bottles' networks are carved from.
pub const ADDRESS_POOL_ENV: &str = "CLAUDE_BOTTLE_ADDRESS_POOL";
/// Outside Docker's built-in pools (172.17-31/16, 192.168/16), so bottles
/// leave those to the user's own networks.
pub const DEFAULT_ADDRESS_POOL: &str = "10.213.0.0/16";
/// The prefix length of one network's subnet: 16 addresses.
pub const SUBNET_PREFIX: u8 = 28;

/// A validated IPv4 range to carve /28 subnets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool(Ipv4Net);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressPoolError {
    #[error(
        "`{ADDRESS_POOL_ENV}` is `{value}`, which is not an IPv4 range: expected an address and a prefix length such as `{DEFAULT_ADDRESS_POOL}`"
    )]
    NotARange { value: String },
    #[error(
        "`{ADDRESS_POOL_ENV}` is `{value}`, whose host bits are set: the range it means starts at `{network}`"
    )]
    HostBits { value: String, network: String },
    #[error(
        "`{ADDRESS_POOL_ENV}` is `{value}`, too small for one bottle: a bottle needs two /{SUBNET_PREFIX} subnets, so the prefix length must be at most {}",
        SUBNET_PREFIX - 1
    )]
    TooSmall { value: String },
}

impl Diagnostic for AddressPoolError {
    fn hints(&self) -> Vec<String> {
        let hint = match self {
            Self::HostBits { network, .. } => format!("set it to `{network}`"),
            Self::NotARange { .. } | Self::TooSmall { .. } => format!(
                "set it to a private range no network of yours uses, such as `{DEFAULT_ADDRESS_POOL}`, or unset it"
            ),
        };
        vec![hint]
    }
}

impl FromStr for AddressPool {
    type Err = AddressPoolError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let shown = || value.escape_debug().to_string();
        let net: Ipv4Net = value
            .trim()
            .parse()
            .map_err(|_| AddressPoolError::NotARange { value: shown() })?;
        if net.prefix_len() >= SUBNET_PREFIX {
            return Err(AddressPoolError::TooSmall { value: shown() });
        }
        if net.addr() != net.network() {
            return Err(AddressPoolError::HostBits {
                value: shown(),
                network: net.trunc().to_string(),
            });
        }
        Ok(Self(net))
    }
}

impl Default for AddressPool {
    fn default() -> Self {
        Self(Ipv4Net::new(Ipv4Addr::new(10, 213, 0, 0), 16).unwrap_or_default())
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl AddressPool {
    /// `CLAUDE_BOTTLE_ADDRESS_POOL`'s value when set and not empty, else the default.
    pub fn from_setting(set: Option<&str>) -> Result<Self, AddressPoolError> {
        match set {
            None => Ok(Self::default()),
            Some(v) if v.trim().is_empty() => Ok(Self::default()),
            Some(v) => v.parse(),
        }
    }

    /// The range `CLAUDE_BOTTLE_ADDRESS_POOL` sets, validated.
    pub fn from_env() -> Result<Self, AddressPoolError> {
        let set = std::env::var_os(ADDRESS_POOL_ENV);
        Self::from_setting(set.map(|v| v.to_string_lossy().into_owned()).as_deref())
    }

    /// How many /28 subnets the range holds.
    pub fn capacity(&self) -> u64 {
        1u64 << (SUBNET_PREFIX - self.0.prefix_len())
    }

    /// The `index`th /28 of the range (modulo its capacity).
    fn nth(&self, index: u64) -> Ipv4Net {
        let offset = (index % self.capacity()) << (32 - SUBNET_PREFIX);
        let base = u64::from(u32::from(self.0.network()));
        let addr = u32::try_from(base + offset).unwrap_or(u32::MAX);
        Ipv4Net::new(Ipv4Addr::from(addr), SUBNET_PREFIX).unwrap_or_default()
    }

    /// How many /28s of the range overlap none of `taken`; and all.
    pub fn free(&self, taken: &[Ipv4Net]) -> (u64, u64) {
        let taken: Vec<&Ipv4Net> = taken.iter().filter(|t| overlaps(t, &self.0)).collect();
        let free = (0..self.capacity())
            .filter(|&i| {
                let candidate = self.nth(i);
                !taken.iter().any(|t| overlaps(t, &candidate))
            })
            .count();
        (u64::try_from(free).unwrap_or(u64::MAX), self.capacity())
    }

    /// `count` distinct /28s of the range that overlap none of `taken`,
    /// searched from a point that `seed` picks, so sessions starting at
    /// once mostly pick different ones. `None` when the range has fewer free.
    pub fn choose(&self, taken: &[Ipv4Net], count: usize, seed: u64) -> Option<Vec<Ipv4Net>> {
        // Only what overlaps the range matters; a default route (0.0.0.0/0)
        // is not a use of the range and is left out by the caller.
        let taken: Vec<&Ipv4Net> = taken.iter().filter(|t| overlaps(t, &self.0)).collect();
        let capacity = self.capacity();
        let mut chosen = Vec::with_capacity(count);
        for step in 0..capacity {
            if chosen.len() == count {
                break;
            }
            let candidate = self.nth(seed.wrapping_add(step));
            if !taken.iter().any(|t| overlaps(t, &candidate)) {
                chosen.push(candidate);
            }
        }
        (chosen.len() == count).then_some(chosen)
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first host address of `subnet`: its gateway.
pub fn gateway(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// The IPv4 subnets among `subnets` (the daemon lists IPv6 ones too);
/// what does not parse is not ours to judge and is skipped.
pub fn ipv4_subnets<'a>(subnets: impl IntoIterator<Item = &'a str>) -> Vec<Ipv4Net> {
    subnets
        .into_iter()
        .filter_map(|s| s.trim().parse::<Ipv4Net>().ok())
        .map(|n| n.trunc())
        .collect()
}

/// The destinations of the host's IPv4 routes, from the text of
/// `/proc/net/route`, the default route left out (it is not a use of any
/// range). Addresses there are hexadecimal in the host's byte order.
pub fn host_routes(proc_net_route: &str) -> Vec<Ipv4Net> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            // The kernel prints each big-endian address as a native integer.
            let destination = Ipv4Addr::from(destination.to_ne_bytes());
            let mask = Ipv4Addr::from(mask.to_ne_bytes());
            let net = Ipv4Net::with_netmask(destination, mask).ok()?;
            (net.prefix_len() > 0).then(|| net.trunc())
        })
        .collect()
}

/// The host's routes as `/proc/net/route` lists them now; none where it
/// cannot be read (not Linux, or no procfs): the daemon's check remains.
pub fn read_host_routes() -> Vec<Ipv4Net> {
    std::fs::read_to_string("/proc/net/route")
        .map(|text| host_routes(&text))
        .unwrap_or_default()
}

/// Whether the daemon refused a subnet because another network has it.
pub fn is_overlap_error(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    detail.contains("overlap")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_range_is_the_documented_one() {
        assert_eq!(AddressPool::default().to_string(), DEFAULT_ADDRESS_POOL);
        assert_eq!(
            AddressPool::from_setting(None).unwrap(),
            AddressPool::default()
        );
        assert_eq!(
            AddressPool::from_setting(Some(" ")).unwrap(),
            AddressPool::default()
        );
        assert_eq!(AddressPool::default().capacity(), 4096);
    }

    #[test]
    fn a_bad_range_is_refused_with_what_is_wrong() {
        let err = AddressPool::from_setting(Some("10.0.0.0")).unwrap_err();
        assert!(matches!(err, AddressPoolError::NotARange { .. }), "{err}");
        let err = AddressPool::from_setting(Some("fd00::/64")).unwrap_err();
        assert!(matches!(err, AddressPoolError::NotARange { .. }), "{err}");
        let err = AddressPool::from_setting(Some("10.1.2.3/16")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`CLAUDE_BOTTLE_ADDRESS_POOL` is `10.1.2.3/16`, whose host bits are set: the range it means starts at `10.1.0.0/16`"
        );
        assert_eq!(err.hints(), ["set it to `10.1.0.0/16`"]);
        let err = AddressPool::from_setting(Some("10.1.2.0/28")).unwrap_err();
        assert!(err.to_string().contains("at most 27"), "{err}");
        assert_eq!(
            AddressPool::from_setting(Some("10.1.2.0/27"))
                .unwrap()
                .capacity(),
            2
        );
    }

    #[test]
    fn choice_skips_every_taken_subnet_and_wraps_around() {
        let pool: AddressPool = "10.9.0.0/26".parse().unwrap();
        // Four /28s: .0, .16, .32, .48. A /27 takes the first two, a host
        // route the last.
        let taken = [
            net("10.9.0.0/27"),
            net("10.9.0.48/32"),
            net("192.168.0.0/16"),
        ];
        assert_eq!(pool.choose(&taken, 1, 3), Some(vec![net("10.9.0.32/28")]));
        assert_eq!(pool.choose(&taken, 2, 0), None);
        // A wider network that holds the whole range leaves nothing.
        assert_eq!(pool.choose(&[net("10.0.0.0/8")], 1, 7), None);
        let two = pool.choose(&[], 2, 3).unwrap();
        assert_eq!(two, [net("10.9.0.48/28"), net("10.9.0.0/28")]);
    }

    #[test]
    fn seeds_spread_the_choice_over_the_range() {
        let pool = AddressPool::default();
        let a = pool.choose(&[], 2, 11).unwrap();
        let b = pool.choose(&[], 2, 2000).unwrap();
        assert_ne!(a, b);
        assert!(a.iter().chain(&b).all(|s| s.prefix_len() == SUBNET_PREFIX));
        assert_eq!(gateway(&a[0]).to_string(), "10.213.0.177");
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn host_routes_are_read_from_proc_net_route_without_the_default() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
tun0\t0000D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            host_routes(text),
            [net("172.17.0.0/16"), net("10.213.0.0/24")]
        );
    }

    #[test]
    fn only_ipv4_subnets_count_and_overlap_errors_are_recognised() {
        assert_eq!(
            ipv4_subnets(["172.18.0.0/16", "fd00::/64", "junk"]),
            [net("172.18.0.0/16")]
        );
        assert!(is_overlap_error(
            "Pool overlaps with other one on this address space"
        ));
        assert!(is_overlap_error("networks have overlapping IPv4"));
        assert!(!is_overlap_error("network with name x already exists"));
    }
}
