//! The stand-in's own model of pipelock 2.3.0's config file.
//!
//! It is written from pipelock's schema, not from claude-bottle's generator,
//! so that a key the generator invents fails here as it would in pipelock.
//! Every struct denies unknown fields, as pipelock's strict decoder does.
//!
//! The model covers these pipelock sections in full: the top-level scalars
//! and lists, `ssrf`, `internal`, `fetch_proxy` (with `monitoring`),
//! `forward_proxy` and `logging`. Pipelock's other sections (`dlp`,
//! `response_scanning`, `tls_interception`, ...) are real pipelock keys the
//! stand-in does not model: it rejects them rather than pretend to apply them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::rules::{self, Cidr};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "pipelock has these keys; the stand-in accepts them without applying all"
)]
struct RawConfig {
    version: Option<i64>,
    mode: Option<String>,
    enforce: Option<bool>,
    explain_blocks: Option<bool>,
    api_allowlist: Option<Vec<String>>,
    trusted_domains: Option<Vec<String>>,
    internal: Option<Vec<String>>,
    ssrf: Option<RawSsrf>,
    fetch_proxy: Option<RawFetchProxy>,
    forward_proxy: Option<RawForwardProxy>,
    logging: Option<RawLogging>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "pipelock has these keys; the stand-in accepts them without applying all"
)]
struct RawSsrf {
    ip_allowlist: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "pipelock has these keys; the stand-in accepts them without applying all"
)]
struct RawFetchProxy {
    listen: Option<String>,
    timeout_seconds: Option<i64>,
    max_response_mb: Option<i64>,
    user_agent: Option<String>,
    monitoring: Option<RawMonitoring>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "pipelock has these keys; the stand-in accepts them without applying all"
)]
struct RawMonitoring {
    max_url_length: Option<i64>,
    entropy_threshold: Option<f64>,
    subdomain_entropy_threshold: Option<f64>,
    max_requests_per_minute: Option<i64>,
    max_data_per_minute: Option<i64>,
    blocklist: Option<Vec<String>>,
    subdomain_entropy_exclusions: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "pipelock has these keys; the stand-in accepts them without applying all"
)]
struct RawForwardProxy {
    enabled: Option<bool>,
    max_tunnel_seconds: Option<i64>,
    idle_timeout_seconds: Option<i64>,
    sni_verification: Option<bool>,
    redirect_websocket_hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "pipelock has these keys; the stand-in accepts them without applying all"
)]
struct RawLogging {
    format: Option<String>,
    output: Option<String>,
    file: Option<String>,
    include_allowed: Option<bool>,
    include_blocked: Option<bool>,
}

/// Pipelock's modes, ranked as its reload check ranks them (strict is the
/// strongest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Audit,
    Balanced,
    Strict,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Balanced => "balanced",
            Mode::Strict => "strict",
        }
    }
}

/// A config that pipelock would accept, with pipelock's defaults applied.
/// [`Config::from_yaml`] and [`Config::load`] also require what the stand-in
/// can enforce (strict mode, enforcing); [`Config::parse_pipelock`] does not,
/// so that a reload can compare a `balanced` file with the running config as
/// pipelock does.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    /// `enforce`, absent meaning true.
    pub enforce: bool,
    /// Pipelock's `Config.Hash()`: SHA-256 of the file's raw bytes, lowercase hex.
    pub hash: String,
    pub listen: SocketAddr,
    /// Normalised (lowercase, no trailing dot) `api_allowlist` patterns.
    pub api_allowlist: Vec<String>,
    pub trusted_domains: Vec<String>,
    pub ip_allowlist: Vec<Cidr>,
    /// The ranges the SSRF check refuses after DNS resolution, core ranges
    /// included; empty when the config switched the check off with `internal: []`.
    pub internal: Vec<Cidr>,
    pub blocklist: Vec<String>,
    /// `fetch_proxy.monitoring.subdomain_entropy_exclusions`, as written
    /// (only the reload check reads it).
    pub subdomain_entropy_exclusions: Vec<String>,
    pub forward_proxy_enabled: bool,
    pub max_tunnel: Duration,
    pub include_allowed: bool,
    pub include_blocked: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "parsing config: {0}\n  hint: pipelock rejects unknown keys and more than one YAML document"
    )]
    Parse(#[from] serde_norway::Error),
    #[error(
        "invalid mode `{0}`: the stand-in implements strict mode only (pipelock also has balanced and audit)"
    )]
    Mode(String),
    #[error("invalid mode {0:?}: must be strict, balanced, or audit")]
    InvalidMode(String),
    #[error("strict mode requires at least one domain in api_allowlist")]
    EmptyAllowlist,
    #[error("enforce: false (log without blocking) is not implemented by the stand-in")]
    NotEnforcing,
    #[error("trusted_domains[{index}] `{value}`: {why}")]
    TrustedDomain {
        index: usize,
        value: String,
        why: &'static str,
    },
    #[error("{field}: {source}")]
    Cidr {
        field: &'static str,
        #[source]
        source: rules::CidrParseError,
    },
    #[error("ssrf.ip_allowlist CIDR `{0}` is a catch-all (/0) and would disable SSRF protection")]
    CatchAll(Cidr),
    #[error("ssrf.ip_allowlist CIDR `{cidr}` has host bits set (did you mean `{network}`?)")]
    HostBits { cidr: Cidr, network: Cidr },
    #[error("invalid fetch_proxy.listen `{0}`: expected an address such as 0.0.0.0:8888")]
    Listen(String),
    #[error("{0} must be >= 0")]
    Negative(&'static str),
    #[error("invalid logging format `{0}`: must be json or text")]
    LogFormat(String),
    #[error("invalid logging output `{0}`: must be stdout, file, or both")]
    LogOutput(String),
    #[error("logging.output `{0}` is not implemented by the stand-in, which logs to stdout only")]
    LogToFile(String),
}

/// Pipelock's defaults for a zero or absent value.
const DEFAULT_LISTEN: &str = "127.0.0.1:8888";
const DEFAULT_MAX_TUNNEL_SECONDS: i64 = 300;

impl Config {
    /// Reads a config the stand-in can serve (see [`Config::from_yaml`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::read_pipelock(path)?.require_supported()
    }

    /// Reads a config as pipelock's `config.Load` does, whatever its mode.
    pub fn read_pipelock(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_pipelock(&text)
    }

    /// Parses a config pipelock would accept and the stand-in can serve:
    /// strict mode, enforcing.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        Self::parse_pipelock(text)?.require_supported()
    }

    /// Parses and validates as pipelock does, accepting every pipelock mode.
    pub fn parse_pipelock(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_norway::from_str(text)?;
        let mut config = Self::validate(raw)?;
        config.hash = sha256_hex(text.as_bytes());
        Ok(config)
    }

    fn require_supported(self) -> Result<Self, ConfigError> {
        if self.mode != Mode::Strict {
            return Err(ConfigError::Mode(self.mode.as_str().to_owned()));
        }
        if !self.enforce {
            return Err(ConfigError::NotEnforcing);
        }
        Ok(self)
    }

    fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        // Pipelock's default mode (absent or empty) is balanced.
        let mode = match raw.mode.as_deref().unwrap_or("") {
            "strict" => Mode::Strict,
            "balanced" | "" => Mode::Balanced,
            "audit" => Mode::Audit,
            other => return Err(ConfigError::InvalidMode(other.to_owned())),
        };
        let api_allowlist: Vec<String> = raw
            .api_allowlist
            .unwrap_or_default()
            .iter()
            .map(|p| rules::normalize_host(p))
            .collect();
        if mode == Mode::Strict && api_allowlist.is_empty() {
            return Err(ConfigError::EmptyAllowlist);
        }

        let trusted_domains = validate_trusted_domains(raw.trusted_domains.unwrap_or_default())?;

        let ip_allowlist = parse_cidrs(
            "ssrf.ip_allowlist",
            raw.ssrf.and_then(|s| s.ip_allowlist).unwrap_or_default(),
        )?;
        for cidr in &ip_allowlist {
            if cidr.prefix() == 0 {
                return Err(ConfigError::CatchAll(*cidr));
            }
            if cidr.has_host_bits() {
                return Err(ConfigError::HostBits {
                    cidr: *cidr,
                    network: cidr.network(),
                });
            }
        }

        let internal = match raw.internal {
            None => rules::parse_all(rules::DEFAULT_INTERNAL),
            Some(list) if list.is_empty() => Vec::new(),
            Some(list) => {
                let mut merged = rules::parse_all(rules::CORE_INTERNAL);
                merged.extend(parse_cidrs("internal", list)?);
                merged
            }
        };

        let fetch = raw.fetch_proxy.unwrap_or_default();
        let listen_raw = fetch
            .listen
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_raw
            .parse()
            .map_err(|_| ConfigError::Listen(listen_raw.clone()))?;
        let monitoring = fetch.monitoring.unwrap_or_default();
        if monitoring.max_requests_per_minute.unwrap_or(0) < 0 {
            return Err(ConfigError::Negative(
                "fetch_proxy.monitoring.max_requests_per_minute",
            ));
        }
        if monitoring.max_data_per_minute.unwrap_or(0) < 0 {
            return Err(ConfigError::Negative(
                "fetch_proxy.monitoring.max_data_per_minute",
            ));
        }
        let subdomain_entropy_exclusions =
            monitoring.subdomain_entropy_exclusions.unwrap_or_default();
        let blocklist = monitoring
            .blocklist
            .unwrap_or_default()
            .iter()
            .map(|p| rules::normalize_host(p))
            .collect();

        let forward = raw.forward_proxy.unwrap_or_default();
        let max_tunnel_seconds = forward
            .max_tunnel_seconds
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_MAX_TUNNEL_SECONDS);

        let logging = raw.logging.unwrap_or_default();
        let format = logging.format.unwrap_or_else(|| "json".to_owned());
        if format != "json" && format != "text" {
            return Err(ConfigError::LogFormat(format));
        }
        let output = logging.output.unwrap_or_else(|| "stdout".to_owned());
        match output.as_str() {
            "stdout" => {}
            "file" | "both" => return Err(ConfigError::LogToFile(output)),
            _ => return Err(ConfigError::LogOutput(output)),
        }

        Ok(Self {
            mode,
            enforce: raw.enforce.unwrap_or(true),
            hash: String::new(),
            listen,
            api_allowlist,
            trusted_domains,
            ip_allowlist,
            internal,
            blocklist,
            subdomain_entropy_exclusions,
            forward_proxy_enabled: forward.enabled.unwrap_or(false),
            max_tunnel: Duration::from_secs(max_tunnel_seconds.unsigned_abs()),
            // Pipelock fails closed: an omitted flag means "log it".
            include_allowed: logging.include_allowed.unwrap_or(true),
            include_blocked: logging.include_blocked.unwrap_or(true),
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_cidrs(field: &'static str, list: Vec<String>) -> Result<Vec<Cidr>, ConfigError> {
    list.iter()
        .map(|c| {
            c.parse()
                .map_err(|source| ConfigError::Cidr { field, source })
        })
        .collect()
}

/// Pipelock's `ValidateTrustedDomains`: hostnames or `*.example.com` only.
fn validate_trusted_domains(list: Vec<String>) -> Result<Vec<String>, ConfigError> {
    list.into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let d = rules::normalize_host(raw.trim());
            let fail = |why| {
                Err(ConfigError::TrustedDomain {
                    index,
                    value: raw.clone(),
                    why,
                })
            };
            if d.is_empty() {
                return fail("is empty");
            }
            if d.contains('/') || d.contains(':') {
                return fail("use a hostname pattern, not a URL or host:port");
            }
            if d == "*" {
                return fail("bare wildcard disables all SSRF protection");
            }
            if let Some(base) = d.strip_prefix("*.") {
                if !base.contains('.') {
                    return fail("wildcard must target a concrete domain like *.example.com");
                }
            } else if d.contains(['*', '?', '[', ']']) {
                return fail("only exact hosts and *.example.com wildcards are supported");
            }
            Ok(d)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "mode: strict\napi_allowlist: [example.com]\n";

    fn with(extra: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(&format!("{MINIMAL}{extra}"))
    }

    #[test]
    fn minimal_strict_config_gets_pipelock_defaults() {
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8888".parse().unwrap());
        assert_eq!(config.api_allowlist, ["example.com"]);
        assert!(!config.forward_proxy_enabled);
        assert_eq!(config.max_tunnel, Duration::from_secs(300));
        assert!(config.include_allowed && config.include_blocked);
        assert_eq!(config.internal.len(), rules::DEFAULT_INTERNAL.len());
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let err = with("alowlist: [x.com]\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `alowlist`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_nested_keys_are_rejected() {
        for extra in [
            "fetch_proxy:\n  listen: 0.0.0.0:8888\n  port: 8888\n",
            "fetch_proxy:\n  monitoring:\n    max_requests: 5\n",
            "forward_proxy:\n  enabled: true\n  max_tunnel: 5\n",
            "ssrf:\n  allowlist: [10.0.0.0/8]\n",
            "logging:\n  level: debug\n",
        ] {
            let err = with(extra).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{extra:?} gave {err}");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn pipelock_sections_the_stand_in_does_not_model_are_rejected() {
        let err = with("dlp:\n  scan_env: true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `dlp`"), "{err}");
    }

    #[test]
    fn wrong_types_are_rejected() {
        assert!(with("forward_proxy:\n  enabled: maybe\n").is_err());
        assert!(with("forward_proxy:\n  max_tunnel_seconds: forever\n").is_err());
    }

    #[test]
    fn a_second_document_is_rejected() {
        let err = Config::from_yaml(&format!("{MINIMAL}---\nmode: audit\n")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{err}");
    }

    #[test]
    fn only_strict_mode_with_an_allowlist_is_accepted() {
        assert!(matches!(
            Config::from_yaml("api_allowlist: [x.com]\n"),
            Err(ConfigError::Mode(m)) if m == "balanced"
        ));
        assert!(matches!(
            Config::from_yaml("mode: audit\napi_allowlist: [x.com]\n"),
            Err(ConfigError::Mode(_))
        ));
        assert!(matches!(
            Config::from_yaml("mode: strict\n"),
            Err(ConfigError::EmptyAllowlist)
        ));
        assert!(matches!(
            Config::from_yaml("mode: strict\napi_allowlist: []\n"),
            Err(ConfigError::EmptyAllowlist)
        ));
        assert!(matches!(
            with("enforce: false\n"),
            Err(ConfigError::NotEnforcing)
        ));
    }

    #[test]
    fn pipelock_modes_parse_for_a_reload_but_only_strict_is_served() {
        let balanced = Config::parse_pipelock("mode: balanced\n").unwrap();
        assert_eq!((balanced.mode, balanced.enforce), (Mode::Balanced, true));
        assert_eq!(Config::parse_pipelock("{}\n").unwrap().mode, Mode::Balanced);
        let lax = Config::parse_pipelock(&format!("{MINIMAL}enforce: false\n")).unwrap();
        assert!(!lax.enforce);
        assert!(matches!(
            Config::parse_pipelock("mode: paranoid\n"),
            Err(ConfigError::InvalidMode(m)) if m == "paranoid"
        ));
    }

    #[test]
    fn the_hash_is_sha256_of_the_raw_bytes_like_pipelock_config_hash() {
        // `sha256sum` of the same bytes.
        let config = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(
            config.hash,
            "38a2a0b5ec4871d62240d96095eb247951d9b31f2af85caeeb52b8c59c6abff7"
        );
        assert_ne!(config.hash, with("# a comment\n").unwrap().hash);
    }

    #[test]
    fn trusted_domains_are_validated_like_pipelock() {
        assert_eq!(
            with("trusted_domains: [Git.Internal.Test., '*.lan.example']\n")
                .unwrap()
                .trusted_domains,
            ["git.internal.test", "*.lan.example"]
        );
        for bad in [
            "'https://x.com'",
            "'x.com:22'",
            "'*'",
            "'*.com'",
            "'a*.x.com'",
            "''",
        ] {
            let err = with(&format!("trusted_domains: [{bad}]\n")).unwrap_err();
            assert!(
                matches!(err, ConfigError::TrustedDomain { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn ip_allowlist_rejects_catch_alls_host_bits_and_garbage() {
        let ok = with("ssrf:\n  ip_allowlist: [10.1.0.0/16, 2001:db8::7/128]\n").unwrap();
        assert_eq!(ok.ip_allowlist.len(), 2);
        assert!(matches!(
            with("ssrf:\n  ip_allowlist: [0.0.0.0/0]\n"),
            Err(ConfigError::CatchAll(_))
        ));
        assert!(matches!(
            with("ssrf:\n  ip_allowlist: ['::/0']\n"),
            Err(ConfigError::CatchAll(_))
        ));
        let err = with("ssrf:\n  ip_allowlist: [10.0.0.5/24]\n").unwrap_err();
        assert!(err.to_string().contains("`10.0.0.0/24`"), "{err}");
        assert!(matches!(
            with("ssrf:\n  ip_allowlist: [10.0.0.5]\n"),
            Err(ConfigError::Cidr { .. })
        ));
    }

    #[test]
    fn zero_values_fall_back_to_pipelock_defaults_and_negatives_fail() {
        let config = with("forward_proxy:\n  enabled: true\n  max_tunnel_seconds: 0\n").unwrap();
        assert_eq!(config.max_tunnel, Duration::from_secs(300));
        let config = with("forward_proxy:\n  max_tunnel_seconds: 86400\n").unwrap();
        assert_eq!(config.max_tunnel, Duration::from_secs(86_400));
        assert!(matches!(
            with("fetch_proxy:\n  monitoring:\n    max_requests_per_minute: -1\n"),
            Err(ConfigError::Negative(_))
        ));
    }

    #[test]
    fn listen_and_logging_are_checked() {
        let config = with("fetch_proxy:\n  listen: 0.0.0.0:8888\n").unwrap();
        assert_eq!(config.listen, "0.0.0.0:8888".parse().unwrap());
        assert!(matches!(
            with("fetch_proxy:\n  listen: nowhere\n"),
            Err(ConfigError::Listen(_))
        ));
        assert!(matches!(
            with("logging:\n  format: xml\n"),
            Err(ConfigError::LogFormat(_))
        ));
        assert!(matches!(
            with("logging:\n  output: syslog\n"),
            Err(ConfigError::LogOutput(_))
        ));
        let quiet = with("logging:\n  include_allowed: false\n").unwrap();
        assert!(!quiet.include_allowed && quiet.include_blocked);
    }

    #[test]
    fn internal_list_replaces_the_defaults_but_keeps_the_core() {
        let off = with("internal: []\n").unwrap();
        assert!(off.internal.is_empty());
        let custom = with("internal: [198.18.0.0/15]\n").unwrap();
        assert_eq!(custom.internal.len(), rules::CORE_INTERNAL.len() + 1);
    }
}
