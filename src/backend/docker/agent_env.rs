//! Where each variable of the agent's environment goes.
//!
//! The daemon keeps a container's `Config.Env` for good: `docker inspect`
//! shows it, and it is written to the container's `config.v2.json` on the
//! daemon's disk. So only values that are no secret go there: the bottle's
//! literals, `HOME` and the proxy variables. A value read from the host
//! (`${VAR}`), typed at the prompt, or the forwarded OAuth token goes only on
//! Claude's `docker exec`, as `-e NAME` with the value in the docker CLI's
//! environment, never on its command line. The daemon holds an exec's
//! environment in memory only, and it reaches Claude and what Claude runs.

use secrecy::ExposeSecret;

use super::client::EnvPair;
use crate::core::env::{EnvSource, ResolvedEnv, ResolvedVar};
use crate::printer::Printer;

pub(crate) const PROXY_ENV_NAMES: [&str; 4] =
    ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"];
pub(crate) const NO_PROXY_ENV_NAMES: [&str; 2] = ["NO_PROXY", "no_proxy"];
pub(crate) const NO_PROXY: &str = "localhost,127.0.0.1";

/// Names the bottle itself sets; a bottle's own value for them is ignored.
pub(crate) fn is_reserved(name: &str) -> bool {
    name == "HOME" || PROXY_ENV_NAMES.contains(&name) || NO_PROXY_ENV_NAMES.contains(&name)
}

/// Whether a value from `source` must stay out of the container's config.
pub(crate) fn is_secret(source: EnvSource) -> bool {
    match source {
        EnvSource::Host | EnvSource::Prompted | EnvSource::OauthToken => true,
        EnvSource::Literal => false,
    }
}

/// Names the docker CLI reads for itself: a secret under such a name, put in
/// the CLI's environment for `-e NAME`, would redirect it (`DOCKER_HOST`,
/// `DOCKER_CONFIG`, ...), change which `docker` runs (`PATH`) or load code
/// into it (`LD_PRELOAD`).
pub(crate) fn steers_the_docker_cli(name: &str) -> bool {
    name == "PATH" || name.starts_with("DOCKER_") || name.starts_with("LD_")
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentEnvError {
    #[error(
        "`bottles.{bottle}.env.{name}` is read from the host, so its value is passed only through the docker CLI's environment, where `{name}` would change what the CLI itself does"
    )]
    SteersTheDockerCli { bottle: String, name: String },
}

impl crate::diagnostic::Diagnostic for AgentEnvError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::SteersTheDockerCli { name, .. } => vec![format!(
                "rename `{name}` in the bottle's `env`, or give it a literal value"
            )],
        }
    }
}

/// Checks the bottle's env at `prepare`: refuses secrets the docker CLI
/// would read as its own settings, and warns of names the bottle decides.
pub(crate) fn check(
    bottle: &str,
    env: &ResolvedEnv,
    printer: &Printer,
) -> Result<(), AgentEnvError> {
    for var in &env.vars {
        if is_reserved(&var.name) {
            printer.warn(
                format_args!(
                    "bottle `{bottle}` sets `{}`, which the bottle itself decides; ignored",
                    var.name
                ),
                &[],
            );
        } else if is_secret(var.source) && steers_the_docker_cli(&var.name) {
            return Err(AgentEnvError::SteersTheDockerCli {
                bottle: bottle.to_owned(),
                name: var.name.clone(),
            });
        }
    }
    Ok(())
}

fn pair(var: &ResolvedVar) -> EnvPair {
    EnvPair {
        name: var.name.clone(),
        value: var.value.clone(),
    }
}

/// The container's `Config.Env`: the bottle's literals, then `HOME` and the
/// proxy variables.
pub(crate) fn container_env(env: &ResolvedEnv, home: &str, proxy_url: &str) -> Vec<EnvPair> {
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

/// The secrets, for Claude's exec only.
pub(crate) fn exec_env(env: &ResolvedEnv) -> Vec<EnvPair> {
    env.vars
        .iter()
        .filter(|v| !is_reserved(&v.name) && is_secret(v.source))
        .map(pair)
        .collect()
}

/// `(name, value)` for the docker CLI's environment, where Claude's exec
/// picks each `-e NAME` up: these values never reach an argument list.
pub(crate) fn exposed(pairs: &[EnvPair]) -> impl Iterator<Item = (&str, &str)> {
    pairs
        .iter()
        .map(|p| (p.name.as_str(), p.value.expose_secret()))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::diagnostic::Diagnostic;

    fn var(name: &str, source: EnvSource, value: &str) -> ResolvedVar {
        ResolvedVar {
            name: name.into(),
            source,
            host_var: None,
            value: SecretString::from(value),
        }
    }

    fn every_kind() -> ResolvedEnv {
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

    fn names(pairs: &[EnvPair]) -> Vec<&str> {
        pairs.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn literals_go_in_the_container_and_secrets_only_on_the_exec() {
        let env = every_kind();
        let container = container_env(&env, "/home/node", "http://p:8888");
        assert_eq!(
            names(&container),
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
        let values: Vec<(&str, &str)> = exposed(&container).collect();
        assert!(values.contains(&("HOME", "/home/node")), "{values:?}");
        assert!(values.contains(&("HTTPS_PROXY", "http://p:8888")));
        for secret in ["host-secret", "typed-secret", "tok"] {
            assert!(!values.iter().any(|(_, v)| *v == secret), "{secret}");
        }
        let exec = exec_env(&env);
        assert_eq!(
            exposed(&exec).collect::<Vec<_>>(),
            [
                ("B_HOST", "host-secret"),
                ("C_PROMPTED", "typed-secret"),
                ("CLAUDE_CODE_OAUTH_TOKEN", "tok")
            ],
            "reserved names are dropped from the exec too"
        );
    }

    #[test]
    fn a_secret_the_docker_cli_would_read_is_refused() {
        for name in ["DOCKER_HOST", "DOCKER_CONFIG", "PATH", "LD_PRELOAD"] {
            let env = ResolvedEnv {
                vars: vec![var(name, EnvSource::Host, "x")],
            };
            let err = check("work", &env, &Printer::capture(false)).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("`bottles.work.env.{name}` is read from the host")),
                "{text}"
            );
            assert!(err.hints()[0].starts_with("rename"), "{:?}", err.hints());
            assert!(!text.contains("`x`"), "{text}");
        }
        // As literals they go in the container's config, away from the CLI.
        let literal = ResolvedEnv {
            vars: vec![var("DOCKER_HOST", EnvSource::Literal, "tcp://x:2375")],
        };
        let printer = Printer::capture(false);
        assert!(check("work", &literal, &printer).is_ok());
        assert_eq!(printer.captured(), "");
        // Names the bottle decides are ignored, with a warning that shows even with `--quiet`.
        let quiet = Printer::capture(true);
        assert!(check("work", &every_kind(), &quiet).is_ok());
        assert_eq!(
            quiet.captured(),
            "warning: bottle `work` sets `HOME`, which the bottle itself decides; ignored\n\
             warning: bottle `work` sets `HTTPS_PROXY`, which the bottle itself decides; ignored\n"
        );
        assert!(!steers_the_docker_cli("MY_DOCKER_THING"));
    }
}
