//! The one routine that removes Docker resources: session teardown, a failed
//! name attempt and `cleanup` all go through [`remove`].
//!
//! Containers go first, all at once (they hold the network attachments),
//! then networks by ID. Every call is bounded, so a daemon that stops
//! answering cannot hold the tool forever: what did not go is reported.

use std::time::Duration;

use super::client::{Engine, EngineError};
use super::ledger::Created;

/// How long one removal call may take before it counts as failed. The
/// daemon removes networks one at a time (each rewrites its firewall
/// rules), so with 50 bottles ending at once on a busy two-core host a
/// network removal waited in line for more than 20 s: the bound is for a
/// daemon that stopped answering, not for one that is busy.
pub(crate) const REMOVE_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A network lists a force-removed container's endpoint for a moment on some
/// daemons: this many short retries absorb that.
/// Short pauses: this is on the way from Claude's exit to the prompt.
const ACTIVE_ENDPOINT_RETRIES: u32 = 50;
const ACTIVE_ENDPOINT_PAUSE: Duration = Duration::from_millis(20);

/// What one [`remove`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Removal {
    pub containers: Vec<Created>,
    pub networks: Vec<Created>,
    /// One line per resource that is still there, naming it and why.
    pub failures: Vec<String>,
}

/// Removes `containers` (force, with their anonymous volumes), then
/// `networks`. A resource already gone counts as removed.
pub(crate) async fn remove<E: Engine>(
    engine: &E,
    containers: &[Created],
    networks: &[Created],
) -> Removal {
    let mut removal = Removal::default();
    let removals = containers.iter().map(|c| async move {
        let result = bounded(
            format!("remove container `{}`", c.name),
            engine.remove_container(&c.id),
        )
        .await;
        (c, result)
    });
    for (c, result) in futures_util::future::join_all(removals).await {
        match result {
            Ok(()) => {
                tracing::debug!("removed container `{}`", c.name);
                removal.containers.push(c.clone());
            }
            Err(e) => removal.failures.push(e.to_string()),
        }
    }
    let removals = networks.iter().map(|n| async move {
        let result = bounded(
            format!("remove network `{}`", n.name),
            remove_network_when_free(engine, &n.id),
        )
        .await;
        (n, result)
    });
    for (n, result) in futures_util::future::join_all(removals).await {
        match result {
            Ok(()) => {
                tracing::debug!("removed network `{}`", n.name);
                removal.networks.push(n.clone());
            }
            Err(e) => removal.failures.push(format!("{e} (network `{}`)", n.name)),
        }
    }
    removal
}

async fn bounded(
    operation: String,
    call: impl Future<Output = Result<(), EngineError>>,
) -> Result<(), EngineError> {
    match tokio::time::timeout(REMOVE_CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(EngineError::timed_out(operation, REMOVE_CALL_TIMEOUT)),
    }
}

/// A container this session did not attach keeps a network busy for good;
/// that is reported once the retries are spent.
async fn remove_network_when_free<E: Engine>(engine: &E, id: &str) -> Result<(), EngineError> {
    let mut tries = 0;
    loop {
        match engine.remove_network(id).await {
            Err(e) if e.detail.contains("active endpoints") && tries < ACTIVE_ENDPOINT_RETRIES => {
                tries += 1;
                tokio::time::sleep(ACTIVE_ENDPOINT_PAUSE).await;
            }
            other => return other,
        }
    }
}
