//! What exists on the daemon for one session, recorded as soon as the daemon
//! confirms each creation, so an interrupted bring-up loses track of nothing.

use std::sync::{Arc, Mutex, PoisonError};

/// One resource this session created, by daemon ID and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Created {
    pub id: String,
    pub name: String,
}

/// The session's containers and networks, in creation order.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub containers: Vec<Created>,
    pub networks: Vec<Created>,
    /// The session label of the warm bottle this session claimed: its
    /// resources carry that label rather than this session's own.
    pub claimed: Option<String>,
}

/// The ledger shared by the session and its bring-up task.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedLedger(Arc<Mutex<Ledger>>);

impl SharedLedger {
    pub fn update(&self, change: impl FnOnce(&mut Ledger)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of what is recorded now.
    pub fn snapshot(&self) -> (Vec<Created>, Vec<Created>) {
        let ledger = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (ledger.containers.clone(), ledger.networks.clone())
    }

    /// The session label teardown sweeps for: the claimed warm bottle's, or `own`.
    pub fn session_label(&self, own: &str) -> String {
        let ledger = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.claimed.clone().unwrap_or_else(|| own.to_owned())
    }

    pub fn forget_container(&self, id: &str) {
        self.update(|l| l.containers.retain(|c| c.id != id));
    }

    pub fn forget_network(&self, id: &str) {
        self.update(|l| l.networks.retain(|n| n.id != id));
    }

    #[cfg(test)]
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
