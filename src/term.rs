//! The terminal as a narrow trait, so prompts and TTY decisions can be tested
//! with a scripted fake.

use std::io::{self, BufRead, IsTerminal, Write};

pub trait Terminal {
    fn stdin_is_tty(&self) -> bool;
    fn stdout_is_tty(&self) -> bool;
    /// Writes `prompt` to stderr and reads one line without echo.
    ///
    /// Reads are futures so a caller can race them against a signal: a user
    /// who presses Ctrl-C at a prompt must get out (and get their terminal's
    /// echo back), not be stuck until they press Enter.
    fn read_secret(&mut self, prompt: &str) -> impl Future<Output = io::Result<String>>;
    /// Writes `prompt` to stderr and reads one line (the trailing newline removed).
    fn read_line(&mut self, prompt: &str) -> impl Future<Output = io::Result<String>>;
}

/// Runs a blocking terminal read on its own thread. Dropping the future
/// abandons the thread, which ends with the process; `tokio`'s blocking pool
/// is not used because the runtime would wait for it at shutdown.
async fn read_on_thread(
    read: impl FnOnce() -> io::Result<String> + Send + 'static,
) -> io::Result<String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read());
    });
    match rx.await {
        // Ctrl-C interrupts the blocked read as it raises SIGINT. The caller
        // races this read against its signal handlers, so give the signal a
        // moment to win: the user meant "stop", not "the terminal failed".
        Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            Err(err)
        }
        Ok(result) => result,
        Err(_) => Err(io::Error::other("the terminal reader stopped")),
    }
}

/// Restores the terminal's mode when dropped: a read abandoned half-way
/// (hidden input turns echo off) must not leave the user's terminal broken.
pub struct TerminalModeGuard {
    saved: nix::sys::termios::Termios,
}

impl TerminalModeGuard {
    /// `None` when stdin is not a terminal.
    pub fn save() -> Option<Self> {
        nix::sys::termios::tcgetattr(io::stdin())
            .ok()
            .map(|saved| Self { saved })
    }
}

impl Drop for TerminalModeGuard {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// The process's real stdin, stdout and stderr.
#[derive(Debug, Default)]
pub struct RealTerminal;

impl Terminal for RealTerminal {
    fn stdin_is_tty(&self) -> bool {
        io::stdin().is_terminal()
    }

    fn stdout_is_tty(&self) -> bool {
        io::stdout().is_terminal()
    }

    async fn read_secret(&mut self, prompt: &str) -> io::Result<String> {
        let _restore = TerminalModeGuard::save();
        let prompt = prompt.to_owned();
        read_on_thread(move || rpassword::prompt_password(prompt)).await
    }

    async fn read_line(&mut self, prompt: &str) -> io::Result<String> {
        let prompt = prompt.to_owned();
        read_on_thread(move || {
            let mut stderr = io::stderr().lock();
            stderr.write_all(prompt.as_bytes())?;
            stderr.flush()?;
            drop(stderr);
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line)?;
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        })
        .await
    }
}

/// A scripted terminal for tests: fixed TTY answers and queued input lines.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeTerminal {
    pub stdin_tty: bool,
    pub stdout_tty: bool,
    pub inputs: std::collections::VecDeque<String>,
    /// Every prompt shown, in order.
    pub prompts: Vec<String>,
}

#[cfg(test)]
impl FakeTerminal {
    pub fn with_inputs(stdin_tty: bool, inputs: &[&str]) -> Self {
        Self {
            stdin_tty,
            stdout_tty: stdin_tty,
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            prompts: Vec::new(),
        }
    }

    fn next(&mut self, prompt: &str) -> io::Result<String> {
        self.prompts.push(prompt.to_owned());
        self.inputs
            .pop_front()
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no more scripted input"))
    }
}

#[cfg(test)]
impl Terminal for FakeTerminal {
    fn stdin_is_tty(&self) -> bool {
        self.stdin_tty
    }

    fn stdout_is_tty(&self) -> bool {
        self.stdout_tty
    }

    async fn read_secret(&mut self, prompt: &str) -> io::Result<String> {
        self.next(prompt)
    }

    async fn read_line(&mut self, prompt: &str) -> io::Result<String> {
        self.next(prompt)
    }
}
