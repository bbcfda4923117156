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

/// Where and how Claude runs in the bottle.
pub(crate) struct ClaudeExec<'a> {
    pub container: &'a str,
    /// The workspace, or the directory of it that `--cwd` named (see
    /// `Workspace::subdir`).
    pub workdir: &'a str,
    pub prompt_file: Option<&'a str>,
    pub remote_control: bool,
    /// Whether the CLI gets a terminal (`-t`).
    pub tty: bool,
    /// The handoff directory bring-up filled, when Claude has secrets.
    pub handoff_dir: Option<&'a str>,
    /// Where the launcher writes Claude's exit code.
    pub exit_record: &'a str,
}

/// The `docker exec` argument list that runs Claude with `claude_args`
/// (SPEC §6 "Running Claude"), through the launcher that loads the handoff
/// directory, if any, and records Claude's exit code.
pub(crate) fn exec_args(exec: &ClaudeExec<'_>, claude_args: &[String]) -> Vec<String> {
    // `-i` always: piped stdin reaches Claude; `-t` only on a real terminal.
    let mut argv: Vec<String> = vec!["exec".into(), "-i".into()];
    if exec.tty {
        argv.push("-t".into());
    }
    argv.extend([
        "--detach-keys".into(),
        DETACH_KEYS.into(),
        "-u".into(),
        container_user(),
        "-w".into(),
        exec.workdir.into(),
        exec.container.into(),
    ]);
    let mut claude: Vec<String> = vec!["claude".into()];
    if exec.remote_control {
        claude.push("remote-control".into());
    }
    if let Some(prompt) = exec.prompt_file {
        claude.push("--append-system-prompt-file".into());
        claude.push(prompt.into());
    }
    claude.extend(claude_args.iter().cloned());
    argv.extend(launcher_command(exec.exit_record, exec.handoff_dir, claude));
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
