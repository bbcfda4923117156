//! Hints travel beside an error's message as data: the message says what
//! went wrong, each hint what the user can do about it. Only the printer
//! joins them, as `hint:` lines under `error:`.

/// An error that may carry hints.
pub trait Diagnostic: std::error::Error {
    /// One line each; empty when the message says it all.
    fn hints(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `err`'s message followed by one `\n  hint: ...` line per hint, as the
/// printer lays them out under `error:`, for tests that review the whole text.
#[cfg(test)]
pub fn with_hints(err: &dyn Diagnostic) -> String {
    let mut text = err.to_string();
    for hint in err.hints() {
        text.push_str("\n  hint: ");
        text.push_str(&hint);
    }
    text
}
