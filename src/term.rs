//! The terminal as a narrow trait, so prompts and TTY decisions can be tested
//! with a scripted fake.

use std::io::{self, BufRead, IsTerminal, Write};

pub trait Terminal {
    fn stdin_is_tty(&self) -> bool;
    fn stdout_is_tty(&self) -> bool;
    fn stderr_is_tty(&self) -> bool;
    /// Writes `prompt` to stderr and reads one line without echo.
    fn read_secret(&mut self, prompt: &str) -> io::Result<String>;
    /// Writes `prompt` to stderr and reads one line (the trailing newline removed).
    fn read_line(&mut self, prompt: &str) -> io::Result<String>;
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

    fn stderr_is_tty(&self) -> bool {
        io::stderr().is_terminal()
    }

    fn read_secret(&mut self, prompt: &str) -> io::Result<String> {
        rpassword::prompt_password(prompt)
    }

    fn read_line(&mut self, prompt: &str) -> io::Result<String> {
        let mut stderr = io::stderr().lock();
        stderr.write_all(prompt.as_bytes())?;
        stderr.flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// A scripted terminal for tests: fixed TTY answers and queued input lines.
#[derive(Debug, Default)]
pub struct FakeTerminal {
    pub stdin_tty: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
    pub inputs: std::collections::VecDeque<String>,
    /// Every prompt shown, in order.
    pub prompts: Vec<String>,
}

impl FakeTerminal {
    pub fn with_inputs(stdin_tty: bool, inputs: &[&str]) -> Self {
        Self {
            stdin_tty,
            stdout_tty: stdin_tty,
            stderr_tty: stdin_tty,
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

impl Terminal for FakeTerminal {
    fn stdin_is_tty(&self) -> bool {
        self.stdin_tty
    }

    fn stdout_is_tty(&self) -> bool {
        self.stdout_tty
    }

    fn stderr_is_tty(&self) -> bool {
        self.stderr_tty
    }

    fn read_secret(&mut self, prompt: &str) -> io::Result<String> {
        self.next(prompt)
    }

    fn read_line(&mut self, prompt: &str) -> io::Result<String> {
        self.next(prompt)
    }
}
