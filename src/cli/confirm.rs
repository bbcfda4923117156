//! The y/N confirmation. The question goes to stderr; the default is No.

use super::Error;
use crate::term::Terminal;

/// Asks `question` unless `assume_yes`. Without a terminal on stdin there is
/// no one to ask, which is an error with a `--yes` hint rather than a silent No.
pub async fn confirm<T: Terminal>(
    term: &mut T,
    assume_yes: bool,
    question: &str,
) -> Result<(), Error> {
    if assume_yes {
        return Ok(());
    }
    if !term.stdin_is_tty() {
        return Err(Error::NoTerminalToConfirm);
    }
    let answer = term
        .read_line(&format!("{question} [y/N] "))
        .await
        .map_err(Error::Prompt)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Error::NotConfirmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::FakeTerminal;
    use futures_util::FutureExt;

    fn confirm(term: &mut FakeTerminal, assume_yes: bool, question: &str) -> Result<(), Error> {
        super::confirm(term, assume_yes, question)
            .now_or_never()
            .expect("a fake terminal never waits")
    }

    #[test]
    fn yes_flag_skips_the_question() {
        let mut term = FakeTerminal::with_inputs(false, &[]);
        assert!(confirm(&mut term, true, "go?").is_ok());
        assert!(term.prompts.is_empty());
    }

    #[test]
    fn no_terminal_refuses_with_hint() {
        let mut term = FakeTerminal::with_inputs(false, &["y"]);
        let err = confirm(&mut term, false, "go?").unwrap_err();
        assert!(matches!(err, Error::NoTerminalToConfirm));
        assert!(crate::diagnostic::Diagnostic::hints(&err)[0].contains("--yes"));
        assert!(term.prompts.is_empty(), "must not read a piped answer");
    }

    #[test]
    fn piped_y_on_a_terminal_proceeds() {
        for answer in ["y", "Y", "yes", " yes "] {
            let mut term = FakeTerminal::with_inputs(true, &[answer]);
            assert!(confirm(&mut term, false, "go?").is_ok(), "{answer:?}");
            assert_eq!(term.prompts, ["go? [y/N] "]);
        }
    }

    #[test]
    fn anything_else_is_no() {
        for answer in ["", "n", "no", "yep", "q"] {
            let mut term = FakeTerminal::with_inputs(true, &[answer]);
            let err = confirm(&mut term, false, "go?").unwrap_err();
            assert!(matches!(err, Error::NotConfirmed), "{answer:?}");
            assert_eq!(err.code(), 1);
        }
    }
}
