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
