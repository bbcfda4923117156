//! Running Claude in the bottle (SPEC §6 "Running Claude"): `docker exec`
//! through the docker CLI, which owns the interactive terminal better than
//! any API client would.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use super::agent_env;
use crate::backend::BackendError;
use crate::core::agent_env::EnvPair;
use crate::core::provision::container_user;

/// `docker exec --detach-keys`: a sequence nobody types, so no keystroke
/// meant for Claude detaches the terminal.
pub(crate) const DETACH_KEYS: &str = "ctrl-_,ctrl-^,ctrl-_";

/// The `docker exec` argument list that runs Claude (SPEC §6 "Running
/// Claude"). Each of `exec_env` is passed as `-e NAME` alone: its value
/// reaches the CLI through its environment ([`claude_command`]).
/// Claude works in `workdir`: the workspace, or the directory of it that
/// `--cwd` named (see `Workspace::subdir`).
pub(crate) fn exec_args(
    container: &str,
    workdir: &str,
    prompt_file: Option<&str>,
    remote_control: bool,
    claude_args: &[String],
    tty: bool,
    exec_env: &[EnvPair],
) -> Vec<String> {
    // `-i` always: piped stdin reaches Claude; `-t` only on a real terminal.
    let mut argv: Vec<String> = vec!["exec".into(), "-i".into()];
    if tty {
        argv.push("-t".into());
    }
    argv.extend([
        "--detach-keys".into(),
        DETACH_KEYS.into(),
        "-u".into(),
        container_user(),
        "-w".into(),
        workdir.into(),
    ]);
    for pair in exec_env {
        argv.push("-e".into());
        argv.push(pair.name.clone());
    }
    argv.extend([container.into(), "claude".into()]);
    if remote_control {
        argv.push("remote-control".into());
    }
    if let Some(prompt) = prompt_file {
        argv.push("--append-system-prompt-file".into());
        argv.push(prompt.into());
    }
    argv.extend(claude_args.iter().cloned());
    argv
}

/// The docker CLI running `argv` (from [`exec_args`]) on the daemon at
/// `endpoint`, with the values of `exec_env` in its environment for its
/// `-e NAME` arguments to pick up.
pub(crate) fn claude_command(
    endpoint: &str,
    argv: &[String],
    exec_env: &[EnvPair],
) -> tokio::process::Command {
    let mut command = super::endpoint::docker_command(endpoint);
    command.args(argv).envs(agent_env::exposed(exec_env));
    command
}

/// Runs `argv` (from [`exec_args`]) through the docker CLI on the daemon at
/// `endpoint`, attached to this process's stdin, stdout and stderr, and
/// returns Claude's exit code (128+N when a signal N ended it).
pub(crate) async fn run_claude(
    endpoint: &str,
    argv: &[String],
    exec_env: &[EnvPair],
    tty: bool,
) -> Result<i32, BackendError> {
    tracing::debug!(?argv, "running Claude");
    // `docker exec -t` puts the terminal in raw mode; if this future is
    // dropped on a signal, the CLI is killed before it can restore it.
    let _terminal = tty.then(crate::term::TerminalModeGuard::save).flatten();
    let status = claude_command(endpoint, argv, exec_env)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| {
            BackendError::failure(format!("could not run `docker exec`: {e}")).with_hint(
                "claude-bottle runs Claude through the docker CLI; install it and put it on PATH",
            )
        })?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
