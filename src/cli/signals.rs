//! SIGINT, SIGTERM and SIGHUP as a stream. Installing the handlers replaces
//! the default "die at once" behaviour, so a signal in any phase of `start`
//! lets the session tear down before the process exits with 128+signal.

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Error;

/// Where the signals that end a session come from: the process's own, or a
/// script in tests.
pub trait Interrupts {
    /// Waits for the next signal and returns it as an error to propagate.
    fn recv(&mut self) -> impl Future<Output = Error>;
}

pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> Result<Self, Error> {
        let make = |kind| signal(kind).map_err(Error::Signals);
        Ok(Self {
            int: make(SignalKind::interrupt())?,
            term: make(SignalKind::terminate())?,
            hup: make(SignalKind::hangup())?,
        })
    }
}

impl Interrupts for Signals {
    async fn recv(&mut self) -> Error {
        let (signal, name) = tokio::select! {
            _ = self.int.recv() => (libc::SIGINT, "SIGINT"),
            _ = self.term.recv() => (libc::SIGTERM, "SIGTERM"),
            _ = self.hup.recv() => (libc::SIGHUP, "SIGHUP"),
        };
        tracing::debug!("received {name}");
        Error::Interrupted { signal, name }
    }
}
