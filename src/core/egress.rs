//! The effective egress policy of a bottle: its own lists plus what its SSH
//! entries need (SPEC §7, "How the manifest maps onto the config").

use ipnet::IpNet;

use crate::manifest::{AllowRule, Bottle, SshHostName, TrustedDomain};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// `api_allowlist`: the bottle's allowlist, then the SSH `HostName`s, without duplicates.
    pub allowlist: Vec<AllowRule>,
    /// The bottle's `trusted_domains` plus the SSH DNS `HostName`s.
    pub trusted_domains: Vec<TrustedDomain>,
    /// The bottle's `ip_cidrs` plus each SSH IP literal as a /32 or /128.
    pub ip_allowlist: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    #[error(
        "bottle `{bottle}` has an empty effective allowlist: its proxy would refuse every host, and pipelock rejects strict mode without one"
    )]
    EmptyAllowlist { bottle: String },
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl EgressPolicy {
    pub fn for_bottle(name: &str, bottle: &Bottle) -> Result<Self, EgressError> {
        let mut allowlist = Vec::new();
        let mut trusted_domains = Vec::new();
        let mut ip_allowlist = Vec::new();
        for rule in &bottle.egress.allowlist {
            push_unique(&mut allowlist, rule.clone());
        }
        for domain in &bottle.egress.trusted_domains {
            push_unique(&mut trusted_domains, domain.clone());
        }
        for cidr in &bottle.egress.ip_cidrs {
            push_unique(&mut ip_allowlist, *cidr);
        }
        for entry in &bottle.ssh {
            match &entry.host_name {
                SshHostName::Dns(host) => {
                    push_unique(&mut allowlist, AllowRule::Exact(host.clone()));
                    push_unique(&mut trusted_domains, TrustedDomain::Exact(host.clone()));
                }
                SshHostName::Ip(ip) => {
                    push_unique(&mut allowlist, AllowRule::Ip(*ip));
                    push_unique(&mut ip_allowlist, IpNet::from(*ip));
                }
            }
        }
        if allowlist.is_empty() {
            return Err(EgressError::EmptyAllowlist {
                bottle: name.to_owned(),
            });
        }
        Ok(Self {
            allowlist,
            trusted_domains,
            ip_allowlist,
        })
    }
}

impl crate::diagnostic::Diagnostic for EgressError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::EmptyAllowlist { bottle } => vec![format!(
                "add the hosts the agent needs to `bottles.{bottle}.egress.allowlist`, for example \"api.anthropic.com\""
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Egress, Hostname, SshEntry};

    fn host(s: &str) -> Hostname {
        Hostname::parse(s).unwrap()
    }

    fn ssh(host_name: SshHostName) -> SshEntry {
        SshEntry {
            host: "alias".into(),
            host_name,
            user: None,
            port: 22,
            identity_file: "~/.ssh/id".into(),
        }
    }

    #[test]
    fn ssh_entries_extend_all_three_lists() {
        let bottle = Bottle {
            egress: Egress {
                allowlist: vec![AllowRule::Exact(host("api.anthropic.com"))],
                trusted_domains: vec![],
                ip_cidrs: vec!["10.1.0.0/16".parse().unwrap()],
            },
            ssh: vec![
                ssh(SshHostName::Dns(host("git.internal.test"))),
                ssh(SshHostName::Ip("192.0.2.7".parse().unwrap())),
                ssh(SshHostName::Ip("2001:db8::7".parse().unwrap())),
            ],
            ..Bottle::default()
        };
        let policy = EgressPolicy::for_bottle("b", &bottle).unwrap();
        let allow: Vec<String> = policy.allowlist.iter().map(ToString::to_string).collect();
        assert_eq!(
            allow,
            [
                "api.anthropic.com",
                "git.internal.test",
                "192.0.2.7",
                "2001:db8::7"
            ]
        );
        assert_eq!(
            policy.trusted_domains,
            vec![TrustedDomain::Exact(host("git.internal.test"))]
        );
        let cidrs: Vec<String> = policy
            .ip_allowlist
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(cidrs, ["10.1.0.0/16", "192.0.2.7/32", "2001:db8::7/128"]);
    }

    #[test]
    fn empty_effective_allowlist_is_refused() {
        let err = EgressPolicy::for_bottle("bare", &Bottle::default()).unwrap_err();
        assert_eq!(
            err,
            EgressError::EmptyAllowlist {
                bottle: "bare".into()
            }
        );
        assert!(!err.to_string().contains("hint:"));
        assert_eq!(
            crate::diagnostic::Diagnostic::hints(&err),
            [
                "add the hosts the agent needs to `bottles.bare.egress.allowlist`, for example \"api.anthropic.com\""
            ]
        );
    }
}
