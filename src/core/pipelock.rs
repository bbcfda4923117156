//! The pipelock 2.3.0 config generated from an [`EgressPolicy`] (SPEC §7).
//!
//! Pipelock decodes its YAML with unknown keys rejected, so [`PipelockConfig`]
//! models only the handful of keys the bottle needs, each named exactly as
//! pipelock's `internal/config` schema names it. Everything left out keeps
//! pipelock's own default.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::core::egress::{EgressError, EgressPolicy};
use crate::diagnostic::Diagnostic;

/// The port the proxy listens on inside its container; the agent's
/// `HTTP(S)_PROXY` and SSH `ProxyCommand` point at it.
pub const LISTEN_PORT: u16 = 8888;

/// Pipelock's `max_tunnel_seconds` is an absolute lifetime per CONNECT tunnel
/// (default 300 s), which would cut long model streams, long git transfers and
/// SSH sessions. A day is "never" for a session; the validator only requires > 0.
pub const MAX_TUNNEL_SECONDS: u32 = 86_400;

/// Pipelock's default idle cutoff is 120 s. A non-streaming model request or a
/// server packing a large repository can stay silent longer than that.
pub const IDLE_TIMEOUT_SECONDS: u32 = 600;

/// Pipelock's default of 60 requests per minute per registrable domain counts
/// every CONNECT, which an agent exceeds in ordinary work. The validator only
/// rejects negatives (0 is silently reset to 60), and the limiter keeps one
/// timestamp per request, so a large value costs nothing until it is used.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 100_000;

/// The subset of pipelock's config a bottle's proxy needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelockConfig {
    /// The config schema version; pipelock knows only 1.
    pub version: u32,
    pub mode: Mode,
    pub api_allowlist: Vec<String>,
    /// Hosts exempt from the internal-IP check (they may resolve to private addresses).
    pub trusted_domains: Vec<String>,
    pub ssrf: Ssrf,
    pub fetch_proxy: FetchProxy,
    pub forward_proxy: ForwardProxy,
    pub logging: Logging,
}

/// Only strict mode enforces `api_allowlist`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Strict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssrf {
    /// CIDRs exempt from the internal-IP check.
    pub ip_allowlist: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchProxy {
    pub listen: String,
    pub monitoring: Monitoring,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    pub max_requests_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardProxy {
    /// CONNECT tunnels and absolute-form HTTP requests are refused without it.
    pub enabled: bool,
    pub max_tunnel_seconds: u32,
    pub idle_timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    pub format: LogFormat,
    pub output: LogOutput,
    pub include_allowed: bool,
    pub include_blocked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutput {
    Stdout,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelockConfigError {
    #[error(transparent)]
    EmptyAllowlist(#[from] EgressError),
    #[error(
        "bottle `{bottle}`: `{cidr}` in the SSRF IP allowlist covers every address, and pipelock rejects a /0 because it disables SSRF protection"
    )]
    CatchAllCidr { bottle: String, cidr: IpNet },
    #[error(
        "bottle `{bottle}`: `{cidr}` in the SSRF IP allowlist has host bits set, and pipelock rejects it rather than widen it silently"
    )]
    CidrHostBits {
        bottle: String,
        cidr: IpNet,
        network: IpNet,
    },
    #[error("the proxy's config is not one claude-bottle wrote: {0}")]
    Parse(#[source] serde_norway::Error),
    #[error("could not serialise the pipelock config of bottle `{bottle}`: {source}")]
    Serialize {
        bottle: String,
        #[source]
        source: serde_norway::Error,
    },
}

impl PipelockConfig {
    /// The config for `bottle`'s proxy. Refuses what pipelock's validator would
    /// refuse at container start, so the failure surfaces at prepare time with
    /// the manifest field to fix.
    pub fn for_policy(bottle: &str, policy: &EgressPolicy) -> Result<Self, PipelockConfigError> {
        if policy.allowlist.is_empty() {
            return Err(EgressError::EmptyAllowlist {
                bottle: bottle.to_owned(),
            }
            .into());
        }
        for cidr in &policy.ip_allowlist {
            if cidr.prefix_len() == 0 {
                return Err(PipelockConfigError::CatchAllCidr {
                    bottle: bottle.to_owned(),
                    cidr: *cidr,
                });
            }
            if cidr.trunc() != *cidr {
                return Err(PipelockConfigError::CidrHostBits {
                    bottle: bottle.to_owned(),
                    cidr: *cidr,
                    network: cidr.trunc(),
                });
            }
        }
        Ok(Self {
            version: 1,
            mode: Mode::Strict,
            // Pipelock compares IP entries as strings, so they must be in the
            // canonical form clients send (`IpAddr`'s Display is RFC 5952).
            api_allowlist: policy.allowlist.iter().map(ToString::to_string).collect(),
            trusted_domains: policy
                .trusted_domains
                .iter()
                .map(ToString::to_string)
                .collect(),
            ssrf: Ssrf {
                ip_allowlist: policy
                    .ip_allowlist
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
            fetch_proxy: FetchProxy {
                listen: format!("0.0.0.0:{LISTEN_PORT}"),
                monitoring: Monitoring {
                    max_requests_per_minute: MAX_REQUESTS_PER_MINUTE,
                },
            },
            forward_proxy: ForwardProxy {
                enabled: true,
                max_tunnel_seconds: MAX_TUNNEL_SECONDS,
                idle_timeout_seconds: IDLE_TIMEOUT_SECONDS,
            },
            logging: Logging {
                format: LogFormat::Json,
                output: LogOutput::Stdout,
                include_allowed: true,
                include_blocked: true,
            },
        })
    }

    /// Reads back a config [`PipelockConfig::to_yaml`] wrote. A key it does
    /// not model fails, so a rewrite never drops a setting.
    pub fn from_yaml(yaml: &str) -> Result<Self, PipelockConfigError> {
        serde_norway::from_str(yaml).map_err(PipelockConfigError::Parse)
    }

    /// The YAML document, headed by a comment naming its origin.
    pub fn to_yaml(&self, bottle: &str) -> Result<String, PipelockConfigError> {
        let body =
            serde_norway::to_string(self).map_err(|source| PipelockConfigError::Serialize {
                bottle: bottle.to_owned(),
                source,
            })?;
        // A line break in the name would end the comment and inject YAML.
        let name: String = bottle
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        Ok(format!(
            "# Generated by claude-bottle for bottle `{name}` (pipelock 2.3.0 schema).\n\
             # Rewritten on every start; edits are lost.\n{body}"
        ))
    }
}

/// Renders the pipelock YAML for bottle `bottle` with effective policy `policy`.
pub fn render(bottle: &str, policy: &EgressPolicy) -> Result<String, PipelockConfigError> {
    PipelockConfig::for_policy(bottle, policy)?.to_yaml(bottle)
}

impl Diagnostic for PipelockConfigError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::EmptyAllowlist(e) => e.hints(),
            Self::CatchAllCidr { bottle, .. } => vec![format!(
                "list the private ranges the agent needs in `bottles.{bottle}.egress.ip_cidrs`, for example \"10.0.0.0/8\""
            )],
            Self::CidrHostBits {
                bottle, network, ..
            } => vec![format!(
                "write the network address `{network}` in `bottles.{bottle}.egress.ip_cidrs`"
            )],
            Self::Serialize { .. } | Self::Parse(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{AllowRule, Hostname, TrustedDomain};

    fn host(s: &str) -> Hostname {
        Hostname::parse(s).unwrap()
    }

    fn rich_policy() -> EgressPolicy {
        EgressPolicy {
            allowlist: vec![
                AllowRule::Exact(host("api.anthropic.com")),
                AllowRule::Wildcard(host("githubusercontent.com")),
                AllowRule::Exact(host("git.internal.test")),
                AllowRule::Ip("192.0.2.7".parse().unwrap()),
                AllowRule::Ip("2001:db8::7".parse().unwrap()),
            ],
            trusted_domains: vec![
                TrustedDomain::Exact(host("git.internal.test")),
                TrustedDomain::Exact(host("llm.lan")),
            ],
            ip_allowlist: vec![
                "10.1.0.0/16".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap(),
                "2001:db8::7/128".parse().unwrap(),
                "fd00:1234::/32".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn rich_policy_yaml_snapshot() {
        insta::assert_snapshot!(render("work", &rich_policy()).unwrap());
    }

    #[test]
    fn config_carries_the_policy_and_the_session_settings() {
        let config = PipelockConfig::for_policy("work", &rich_policy()).unwrap();
        assert_eq!(config.mode, Mode::Strict);
        assert_eq!(
            config.api_allowlist,
            [
                "api.anthropic.com",
                "*.githubusercontent.com",
                "git.internal.test",
                "192.0.2.7",
                "2001:db8::7"
            ]
        );
        assert_eq!(config.trusted_domains, ["git.internal.test", "llm.lan"]);
        assert_eq!(
            config.ssrf.ip_allowlist,
            [
                "10.1.0.0/16",
                "192.0.2.7/32",
                "2001:db8::7/128",
                "fd00:1234::/32"
            ]
        );
        assert_eq!(config.fetch_proxy.listen, "0.0.0.0:8888");
        assert!(config.forward_proxy.enabled);
        assert!(config.forward_proxy.max_tunnel_seconds >= 86_400);
        assert!(config.fetch_proxy.monitoring.max_requests_per_minute > 60);
        assert!(config.logging.include_allowed && config.logging.include_blocked);
    }

    #[test]
    fn yaml_reads_back_as_the_same_document() {
        let yaml = render("work", &rich_policy()).unwrap();
        let parsed: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
        let expected =
            serde_norway::to_value(PipelockConfig::for_policy("work", &rich_policy()).unwrap())
                .unwrap();
        assert_eq!(parsed, expected);
        assert_eq!(parsed["mode"].as_str(), Some("strict"));
        assert_eq!(
            parsed["api_allowlist"][1].as_str(),
            Some("*.githubusercontent.com")
        );
    }

    #[test]
    fn header_names_the_bottle_and_cannot_break_out_of_the_comment() {
        let yaml = render("evil\nmode: audit", &rich_policy()).unwrap();
        let first = yaml.lines().next().unwrap();
        assert!(first.starts_with("# Generated by claude-bottle for bottle `evil?mode: audit`"));
        let parsed: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(parsed["mode"].as_str(), Some("strict"));
    }

    #[test]
    fn empty_allowlist_is_refused_with_a_hint() {
        let policy = EgressPolicy {
            allowlist: vec![],
            trusted_domains: vec![],
            ip_allowlist: vec![],
        };
        let err = render("bare", &policy).unwrap_err();
        assert!(matches!(
            err,
            PipelockConfigError::EmptyAllowlist(EgressError::EmptyAllowlist { ref bottle }) if bottle == "bare"
        ));
        assert!(!err.to_string().contains("hint:"));
        assert_eq!(
            err.hints(),
            [
                "add the hosts the agent needs to `bottles.bare.egress.allowlist`, for example \"api.anthropic.com\""
            ]
        );
    }

    #[test]
    fn catch_all_cidr_is_refused() {
        for cidr in ["0.0.0.0/0", "::/0"] {
            let mut policy = rich_policy();
            policy.ip_allowlist.push(cidr.parse().unwrap());
            let err = render("work", &policy).unwrap_err();
            assert!(
                matches!(err, PipelockConfigError::CatchAllCidr { .. }),
                "{cidr}: {err}"
            );
            assert!(err.to_string().contains(&format!("`{cidr}`")));
            assert_eq!(
                err.hints(),
                [
                    "list the private ranges the agent needs in `bottles.work.egress.ip_cidrs`, for example \"10.0.0.0/8\""
                ]
            );
        }
    }

    #[test]
    fn cidr_with_host_bits_is_refused_naming_the_network() {
        let mut policy = rich_policy();
        policy.ip_allowlist.push("10.0.0.5/24".parse().unwrap());
        let err = render("work", &policy).unwrap_err();
        assert!(matches!(err, PipelockConfigError::CidrHostBits { .. }));
        assert!(err.to_string().contains("`10.0.0.5/24`"), "{err}");
        assert_eq!(
            err.hints(),
            ["write the network address `10.0.0.0/24` in `bottles.work.egress.ip_cidrs`"]
        );
    }
}
