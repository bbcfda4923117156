//! `git` run on the host, kept from the caller's environment. Each user
//! adds the configuration its task needs: the workspace selection reads the
//! user's repository as the user's git would; bringing work home trusts
//! nothing of any configuration.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output, Stdio};

/// `git` with none of the caller's `GIT_*` variables, which could point it
/// at another repository, index or work tree; it never prompts, speaks the
/// C locale, and reads nothing from stdin.
pub fn command() -> Command {
    let mut command = Command::new("git");
    for (name, _) in std::env::vars_os() {
        if name.as_bytes().starts_with(b"GIT_") {
            command.env_remove(name);
        }
    }
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    command
}

/// Why [`output`] got no output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not run git: {0}")]
    Spawn(io::Error),
    #[error("could not write to git: {0}")]
    Write(io::Error),
    #[error("could not wait for git: {0}")]
    Wait(io::Error),
}

/// Runs `command` to the end, its stdout and stderr captured and `input`,
/// when given, on its stdin. The input is written from a thread of its
/// own: git may answer before it has read all of it, and with both pipes
/// full neither side would go on.
pub fn output(command: &mut Command, input: Option<Vec<u8>>) -> Result<Output, RunError> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let writer = input
        .zip(child.stdin.take())
        .map(|(input, mut stdin)| std::thread::spawn(move || stdin.write_all(&input)));
    let output = child.wait_with_output().map_err(RunError::Wait)?;
    if let Some(writer) = writer {
        writer
            .join()
            .map_err(|_| RunError::Write(io::Error::other("the writing thread panicked")))?
            .map_err(RunError::Write)?;
    }
    Ok(output)
}
