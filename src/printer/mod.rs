//! Everything the user reads on stderr goes through one [`Printer`]: status
//! lines, the plan, summaries, warnings, and errors with their hints. It
//! knows `--quiet` and colour, and draws the progress views so that lines
//! land above them rather than across them. stdout is for data, which the
//! commands write themselves; `tracing` is for diagnostics at `-v`.

pub mod progress;

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};

use crate::diagnostic::Diagnostic;

/// Where the printer writes: the process's stderr, or a buffer a test reads.
#[derive(Debug)]
enum Sink {
    Stderr,
    Capture(Mutex<String>),
}

#[derive(Debug)]
struct Inner {
    quiet: bool,
    colour: bool,
    progress: bool,
    sink: Sink,
}

/// The one voice of the tool on stderr. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct Printer {
    inner: Arc<Inner>,
}

/// Whether colour is on: `NO_COLOR` unset or empty, and stderr a terminal.
pub fn colour_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

impl Printer {
    /// The printer of a run: progress views only on a terminal and never
    /// when `quiet`.
    pub fn stderr(quiet: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                quiet,
                colour: colour_enabled(),
                progress: !quiet && std::io::stderr().is_terminal(),
                sink: Sink::Stderr,
            }),
        }
    }

    /// A printer that keeps what it is given, for tests to read with
    /// [`Printer::captured`].
    pub fn capture(quiet: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                quiet,
                colour: false,
                progress: false,
                sink: Sink::Capture(Mutex::new(String::new())),
            }),
        }
    }

    /// What a capturing printer was given; empty for the real one.
    pub fn captured(&self) -> String {
        match &self.inner.sink {
            Sink::Stderr => String::new(),
            Sink::Capture(text) => text.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    /// A line about what the tool is doing. `--quiet` hides it.
    pub fn status(&self, line: impl Display) {
        if !self.inner.quiet {
            self.write(&format!("{line}\n"));
        }
    }

    /// A block of text (the plan, a summary) that `--quiet` hides.
    pub fn block(&self, text: impl Display) {
        if !self.inner.quiet {
            self.write(&with_newline(text.to_string()));
        }
    }

    /// A block of text shown even with `--quiet`: what the user is asked
    /// about, or asked for.
    pub fn always(&self, text: impl Display) {
        self.write(&with_newline(text.to_string()));
    }

    /// A warning, with its hints; shown even with `--quiet`.
    pub fn warn(&self, message: impl Display, hints: &[String]) {
        let label = self.paint("warning", "1;33");
        self.write(&render(&label, &message.to_string(), hints));
    }

    /// An error, with its hints; shown even with `--quiet`.
    pub fn error(&self, err: &dyn Diagnostic) {
        let label = self.paint("error", "1;31");
        self.write(&render(&label, &err.to_string(), &err.hints()));
    }

    /// A progress line drawn with the others, when progress is shown.
    pub fn progress_line(&self, prefix: impl Into<String>) -> Option<progress::Line> {
        self.inner.progress.then(|| progress::Line::new(prefix))
    }

    fn paint(&self, word: &str, sgr: &str) -> String {
        if self.inner.colour {
            format!("\x1b[{sgr}m{word}\x1b[0m")
        } else {
            word.to_owned()
        }
    }

    fn write(&self, text: &str) {
        match &self.inner.sink {
            Sink::Stderr => progress::above(|| {
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }),
            Sink::Capture(buffer) => buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(text),
        }
    }
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// `label: message`, then one `  hint: ...` line per hint.
fn render(label: &str, message: &str, hints: &[String]) -> String {
    let mut out = format!("{label}: {message}\n");
    for hint in hints {
        out.push_str("  hint: ");
        out.push_str(hint);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not do `x`")]
    struct Failed;

    impl Diagnostic for Failed {
        fn hints(&self) -> Vec<String> {
            vec!["try `y`".to_owned(), "or `z`".to_owned()]
        }
    }

    #[test]
    fn quiet_hides_status_and_blocks_but_not_what_was_asked_for_or_errors() {
        let printer = Printer::capture(true);
        printer.status("pulling");
        printer.block("summary");
        printer.always("the plan");
        printer.warn("careful", &[]);
        printer.error(&Failed);
        assert_eq!(
            printer.captured(),
            "the plan\nwarning: careful\nerror: could not do `x`\n  hint: try `y`\n  hint: or `z`\n"
        );
    }

    #[test]
    fn without_quiet_everything_shows_in_order() {
        let printer = Printer::capture(false);
        printer.status("pulling");
        printer.block("summary\n");
        assert_eq!(printer.captured(), "pulling\nsummary\n");
        assert!(printer.progress_line("x").is_none());
    }
}
