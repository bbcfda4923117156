//! Running Claude in the bottle (SPEC §6 "Running Claude"): `docker exec`
//! through the docker CLI, which owns the interactive terminal better than
//! any API client would. Its secrets were handed to the bottle before
//! (`handoff`); none goes through the CLI.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use crate::backend::BackendError;
use crate::core::provision::container_user;
use crate::core::secret_handoff::launcher_command;

/// `docker exec --detach-keys`: a sequence nobody types, so no keystroke
/// meant for Claude detaches the terminal.
pub(crate) const DETACH_KEYS: &str = "ctrl-_,ctrl-^,ctrl-_";

/// The `docker exec` argument list that runs Claude (SPEC §6 "Running
/// Claude"). With a `handoff_dir` (bring-up filled it), Claude starts
/// through the launcher that loads it. Claude works in `workdir`: the
/// workspace, or the directory of it that `--cwd` named (see
/// `Workspace::subdir`).
pub(crate) fn exec_args(
    container: &str,
    workdir: &str,
    prompt_file: Option<&str>,
    remote_control: bool,
    claude_args: &[String],
    tty: bool,
    handoff_dir: Option<&str>,
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
        container.into(),
    ]);
    let mut claude: Vec<String> = vec!["claude".into()];
    if remote_control {
        claude.push("remote-control".into());
    }
    if let Some(prompt) = prompt_file {
        claude.push("--append-system-prompt-file".into());
        claude.push(prompt.into());
    }
    claude.extend(claude_args.iter().cloned());
    match handoff_dir {
        Some(dir) => argv.extend(launcher_command(dir, claude)),
        None => argv.extend(claude),
    }
    argv
}

/// The docker CLI running `argv` (from [`exec_args`]) on the daemon at
/// `endpoint`. Its environment is this process's: no value of Claude's
/// goes through it.
pub(crate) fn claude_command(endpoint: &str, argv: &[String]) -> tokio::process::Command {
    let mut command = super::endpoint::docker_command(endpoint);
    command.args(argv);
    command
}

/// Runs `argv` (from [`exec_args`]) through the docker CLI on the daemon at
/// `endpoint`, attached to this process's stdin, stdout and stderr, and
/// returns Claude's exit code (128+N when a signal N ended it).
pub(crate) async fn run_claude(
    endpoint: &str,
    argv: &[String],
    tty: bool,
) -> Result<i32, BackendError> {
    tracing::debug!(?argv, "running Claude");
    // `docker exec -t` puts the terminal in raw mode; if this future is
    // dropped on a signal, the CLI is killed before it can restore it.
    let _terminal = tty.then(crate::term::TerminalModeGuard::save).flatten();
    let status = claude_command(endpoint, argv)
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
