//! Where each variable of the agent's environment goes, whatever the engine.
//!
//! An engine keeps a container's (or pod's) configured environment for good:
//! it can be inspected, and it is written to the engine's store. So only
//! values that are no secret go there: the bottle's literals, `HOME` and the
//! proxy variables. A value read from the host (`${VAR}`), typed at the
//! prompt, or the forwarded OAuth token goes only to Claude's own process,
//! when it is started in the bottle.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::core::env::{EnvSource, ResolvedEnv, ResolvedVar};
use crate::core::secret_handoff::{HandoffError, payload};
use crate::printer::Printer;

/// One container env variable; the value stays secret until the request body is built.
#[derive(Clone)]
pub struct EnvPair {
    pub name: String,
    pub value: SecretString,
}

impl EnvPair {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: SecretString::from(value.into()),
        }
    }
}

impl PartialEq for EnvPair {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.value.expose_secret() == other.value.expose_secret()
    }
}
impl Eq for EnvPair {}

impl fmt::Debug for EnvPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=<redacted>", self.name)
    }
}

pub const PROXY_ENV_NAMES: [&str; 4] = ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"];
pub const NO_PROXY_ENV_NAMES: [&str; 2] = ["NO_PROXY", "no_proxy"];
pub const NO_PROXY: &str = "localhost,127.0.0.1";

/// Names the bottle itself sets; a bottle's own value for them is ignored.
pub fn is_reserved(name: &str) -> bool {
    name == "HOME" || PROXY_ENV_NAMES.contains(&name) || NO_PROXY_ENV_NAMES.contains(&name)
}

/// Whether a value from `source` must stay out of the container's config.
pub fn is_secret(source: EnvSource) -> bool {
    match source {
        EnvSource::Host | EnvSource::Prompted | EnvSource::OauthToken => true,
        EnvSource::Literal => false,
    }
}

/// The names `env` sets that the bottle decides itself, and so ignores.
pub fn reserved_names(env: &ResolvedEnv) -> impl Iterator<Item = &str> {
    env.vars
        .iter()
        .map(|v| v.name.as_str())
        .filter(|name| is_reserved(name))
}

fn pair(var: &ResolvedVar) -> EnvPair {
    EnvPair {
        name: var.name.clone(),
        value: var.value.clone(),
    }
}

/// The container's configured environment: the bottle's literals, then
/// `HOME` and the proxy variables.
pub fn container_env(env: &ResolvedEnv, home: &str, proxy_url: &str) -> Vec<EnvPair> {
    let mut pairs: Vec<EnvPair> = env
        .vars
        .iter()
        .filter(|v| !is_reserved(&v.name) && !is_secret(v.source))
        .map(pair)
        .collect();
    pairs.push(EnvPair::new("HOME", home));
    for name in PROXY_ENV_NAMES {
        pairs.push(EnvPair::new(name, proxy_url));
    }
    for name in NO_PROXY_ENV_NAMES {
        pairs.push(EnvPair::new(name, NO_PROXY));
    }
    pairs
}

/// The secrets, for Claude's process only.
pub fn exec_env(env: &ResolvedEnv) -> Vec<EnvPair> {
    env.vars
        .iter()
        .filter(|v| !is_reserved(&v.name) && is_secret(v.source))
        .map(pair)
        .collect()
}

/// A bottle's secrets that could not be handed to Claude.
#[derive(Debug, thiserror::Error)]
#[error("`bottles.{bottle}.env`: {source}")]
pub struct AgentEnvError {
    pub bottle: String,
    #[source]
    pub source: HandoffError,
}

impl crate::diagnostic::Diagnostic for AgentEnvError {
    fn hints(&self) -> Vec<String> {
        self.source.hints()
    }
}

/// Checks the bottle's env at `prepare`: warns of names the bottle decides,
/// and refuses secrets that could not reach Claude's process.
pub fn check(bottle: &str, env: &ResolvedEnv, printer: &Printer) -> Result<(), AgentEnvError> {
    for name in reserved_names(env) {
        printer.warn(
            format_args!(
                "bottle `{bottle}` sets `{name}`, which the bottle itself decides; ignored"
            ),
            &[],
        );
    }
    payload(&exec_env(env)).map_err(|source| AgentEnvError {
        bottle: bottle.to_owned(),
        source,
    })?;
    Ok(())
}

/// Environments for the tests of this module and of the engines'.
#[cfg(test)]
pub(crate) mod test_env {
    use secrecy::SecretString;

    use crate::core::env::{EnvSource, ResolvedEnv, ResolvedVar};

    pub(crate) fn var(name: &str, source: EnvSource, value: &str) -> ResolvedVar {
        ResolvedVar {
            name: name.into(),
            source,
            host_var: None,
            value: SecretString::from(value),
        }
    }

    /// One variable of each source, and two names the bottle decides.
    pub(crate) fn every_kind() -> ResolvedEnv {
        ResolvedEnv {
            vars: vec![
                var("A_LITERAL", EnvSource::Literal, "lit"),
                var("B_HOST", EnvSource::Host, "host-secret"),
                var("C_PROMPTED", EnvSource::Prompted, "typed-secret"),
                var("HOME", EnvSource::Host, "/root"),
                var("HTTPS_PROXY", EnvSource::Literal, "http://elsewhere"),
                var("CLAUDE_CODE_OAUTH_TOKEN", EnvSource::OauthToken, "tok"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_env::{every_kind, var};
    use super::*;
    use crate::diagnostic::Diagnostic;

    fn values(pairs: &[EnvPair]) -> Vec<(&str, &str)> {
        pairs
            .iter()
            .map(|p| (p.name.as_str(), p.value.expose_secret()))
            .collect()
    }

    #[test]
    fn literals_go_in_the_container_and_secrets_only_on_the_exec() {
        let env = every_kind();
        let container = container_env(&env, "/home/node", "http://p:8888");
        let names: Vec<&str> = container.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "A_LITERAL",
                "HOME",
                "HTTPS_PROXY",
                "HTTP_PROXY",
                "https_proxy",
                "http_proxy",
                "NO_PROXY",
                "no_proxy"
            ]
        );
        let values_in_config = values(&container);
        assert!(
            values_in_config.contains(&("HOME", "/home/node")),
            "{values_in_config:?}"
        );
        assert!(values_in_config.contains(&("HTTPS_PROXY", "http://p:8888")));
        for secret in ["host-secret", "typed-secret", "tok"] {
            assert!(
                !values_in_config.iter().any(|(_, v)| *v == secret),
                "{secret}"
            );
        }
        assert_eq!(
            values(&exec_env(&env)),
            [
                ("B_HOST", "host-secret"),
                ("C_PROMPTED", "typed-secret"),
                ("CLAUDE_CODE_OAUTH_TOKEN", "tok")
            ],
            "reserved names are dropped from the exec too"
        );
        assert_eq!(
            reserved_names(&env).collect::<Vec<_>>(),
            ["HOME", "HTTPS_PROXY"]
        );
    }

    #[test]
    fn check_warns_of_names_the_bottle_decides_and_refuses_what_cannot_reach_claude() {
        // Names the bottle decides are ignored, with a warning that shows even with `--quiet`.
        let quiet = Printer::capture(true);
        assert!(check("work", &every_kind(), &quiet).is_ok());
        assert_eq!(
            quiet.captured(),
            "warning: bottle `work` sets `HOME`, which the bottle itself decides; ignored\n\
             warning: bottle `work` sets `HTTPS_PROXY`, which the bottle itself decides; ignored\n"
        );
        // Any name is fine, the docker CLI's own settings included: no
        // value passes through its environment.
        let env = ResolvedEnv {
            vars: vec![
                var("DOCKER_HOST", EnvSource::Host, "x"),
                var("PATH", EnvSource::Prompted, "y"),
            ],
        };
        assert!(check("work", &env, &Printer::capture(false)).is_ok());
        let nul = ResolvedEnv {
            vars: vec![var("TYPED", EnvSource::Prompted, "a\0secret")],
        };
        let err = check("work", &nul, &Printer::capture(false)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("`bottles.work.env`: the value of `TYPED`"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(err.hints(), ["give `TYPED` a value without NUL bytes"]);
    }
}
