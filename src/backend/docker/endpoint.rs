//! The one daemon a session talks to, whichever path reaches it.
//!
//! The Engine API client connects to `DOCKER_HOST`, or the default socket
//! when it is unset. The docker CLI (run for image builds and for Claude's
//! `docker exec`) would, without `DOCKER_HOST`, follow the user's current
//! docker *context*, which may name another daemon: the image would then be
//! built, or Claude run, somewhere other than where the session's containers
//! are. So every CLI run is made by [`docker_command`], which points the child
//! at the endpoint the client connected to.

use tokio::process::Command;

/// Where the Engine API client connects when `DOCKER_HOST` is unset or empty.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// The daemon address from `DOCKER_HOST`, or [`DEFAULT_ENDPOINT`].
pub fn docker_endpoint() -> String {
    endpoint_from(std::env::var("DOCKER_HOST").ok().as_deref())
}

/// The endpoint a `DOCKER_HOST` value names; unset and empty both mean the default.
pub(crate) fn endpoint_from(docker_host: Option<&str>) -> String {
    docker_host
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_ENDPOINT)
        .to_owned()
}

/// `docker` aimed at `endpoint`: `DOCKER_HOST` set on the child (it outranks
/// any context) and `DOCKER_CONTEXT` taken away, so the CLI cannot reach
/// another daemon. The rest of the environment (TLS settings, the user's CLI
/// config) is inherited.
pub(crate) fn docker_command(endpoint: &str) -> Command {
    let mut command = Command::new("docker");
    command
        .env("DOCKER_HOST", endpoint)
        .env_remove("DOCKER_CONTEXT");
    command
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    fn env_of<'a>(command: &'a Command, name: &str) -> Option<Option<&'a OsStr>> {
        command
            .as_std()
            .get_envs()
            .find(|(key, _)| *key == OsStr::new(name))
            .map(|(_, value)| value)
    }

    #[test]
    fn an_unset_or_empty_docker_host_means_the_default_socket() {
        assert_eq!(endpoint_from(None), "unix:///var/run/docker.sock");
        assert_eq!(endpoint_from(Some("")), "unix:///var/run/docker.sock");
        assert_eq!(
            endpoint_from(Some("tcp://10.0.0.5:2375")),
            "tcp://10.0.0.5:2375"
        );
    }

    #[test]
    fn the_cli_is_pointed_at_the_endpoint_and_no_context() {
        for endpoint in ["unix:///var/run/docker.sock", "tcp://10.0.0.5:2376"] {
            let command = docker_command(endpoint);
            assert_eq!(command.as_std().get_program(), "docker");
            assert_eq!(
                env_of(&command, "DOCKER_HOST"),
                Some(Some(OsStr::new(endpoint))),
                "DOCKER_HOST is set explicitly, even to the default"
            );
            assert_eq!(
                env_of(&command, "DOCKER_CONTEXT"),
                Some(None),
                "DOCKER_CONTEXT is removed"
            );
            assert_eq!(command.as_std().get_args().count(), 0);
        }
    }
}
