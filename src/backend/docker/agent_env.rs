//! What the docker CLI's own environment may carry. Claude's secrets reach
//! its `docker exec` as `-e NAME`, with the value in the CLI's environment
//! and never on its command line; a name the CLI reads for itself would
//! change what the CLI does. Where each variable goes is `core::agent_env`.

use secrecy::ExposeSecret;

use crate::core::agent_env::{EnvPair, is_secret, reserved_names};
use crate::core::env::ResolvedEnv;
use crate::printer::Printer;

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

/// Checks the bottle's env at `prepare`: warns of names the bottle decides,
/// and refuses secrets the docker CLI would read as its own settings.
pub(crate) fn check(
    bottle: &str,
    env: &ResolvedEnv,
    printer: &Printer,
) -> Result<(), AgentEnvError> {
    for name in reserved_names(env) {
        printer.warn(
            format_args!(
                "bottle `{bottle}` sets `{name}`, which the bottle itself decides; ignored"
            ),
            &[],
        );
    }
    if let Some(var) = env
        .vars
        .iter()
        .find(|v| is_secret(v.source) && steers_the_docker_cli(&v.name))
    {
        return Err(AgentEnvError::SteersTheDockerCli {
            bottle: bottle.to_owned(),
            name: var.name.clone(),
        });
    }
    Ok(())
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
    use super::*;
    use crate::core::agent_env::test_env::{every_kind, var};
    use crate::core::env::EnvSource;
    use crate::diagnostic::Diagnostic;

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
