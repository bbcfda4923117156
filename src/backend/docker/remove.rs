//! The one routine that removes Docker resources: session teardown, a failed
//! name attempt and `cleanup` all go through [`remove`].
//!
//! Containers go first, all at once (they hold the network attachments),
//! then networks by ID, as soon as every container has stopped: the daemon
//! releases a container's network endpoints when it stops, before it deletes
//! its files (seconds, for a large workspace). Every call is bounded, so a
//! daemon that stops answering cannot hold the tool forever: what did not go
//! is reported.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::oneshot;

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

/// A container to take off a network before either is removed: that
/// network can then go while the containers are still being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detach {
    pub network: Created,
    pub container: Created,
}

/// What one [`remove`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Removal {
    pub containers: Vec<Created>,
    pub networks: Vec<Created>,
    /// One line per resource that is still there, naming it and why.
    pub failures: Vec<String>,
}

/// Removes `containers` (force, with their anonymous volumes) and
/// `networks`, each network once the containers have stopped. A resource
/// already gone counts as removed.
pub(crate) async fn remove<E: Engine>(
    engine: &E,
    containers: &[Created],
    networks: &[Created],
) -> Removal {
    remove_then(engine, containers, networks, &[], async { (true, ()) })
        .await
        .0
}

/// [`remove`], but the networks go only when `networks_go`, run while the
/// containers are removed, says so (and what else it returns is passed on);
/// otherwise they are left alone. A network with containers to `detach`
/// first does not wait for the containers to stop: once they are off it
/// (or could not be taken off), it goes.
pub(crate) async fn remove_then<E: Engine, T>(
    engine: &E,
    containers: &[Created],
    networks: &[Created],
    detach: &[Detach],
    networks_go: impl Future<Output = (bool, T)>,
) -> (Removal, T) {
    let pending = AtomicUsize::new(containers.len());
    let (done_tx, done_rx): (Vec<_>, Vec<_>) =
        containers.iter().map(|_| oneshot::channel::<()>()).unzip();
    let removals = containers.iter().zip(done_tx).map(|(c, done)| {
        let pending = &pending;
        async move {
            let result = bounded(
                format!("remove container `{}`", c.name),
                engine.remove_container(&c.id),
            )
            .await;
            pending.fetch_sub(1, Ordering::SeqCst);
            let _ = done.send(());
            (c, result)
        }
    });
    let network_removals = async {
        let (go, passed_on) = networks_go.await;
        if networks.is_empty() || !go {
            return (Vec::new(), passed_on);
        }
        let stops = futures_util::future::join_all(
            containers
                .iter()
                .zip(done_rx)
                .map(|(c, removed)| stopped_or_removed(engine, &c.id, removed)),
        )
        .shared();
        let pending = &pending;
        let removals = networks.iter().map(|n| {
            let stops = stops.clone();
            async move {
                let first: Vec<&Detach> = detach.iter().filter(|d| d.network.id == n.id).collect();
                if first.is_empty() {
                    stops.await;
                } else {
                    let detached = first.iter().map(|d| async move {
                        let operation = format!(
                            "take container `{}` off network `{}`",
                            d.container.name, n.name
                        );
                        let result =
                            bounded(operation, engine.disconnect_network(&n.id, &d.container.id))
                                .await;
                        // Not taken off (stopped or gone already): its endpoint
                        // goes with its removal, which is waited out below.
                        tracing::debug!(?result, "took `{}` off `{}`", d.container.name, n.name);
                    });
                    futures_util::future::join_all(detached).await;
                }
                let operation = format!("remove network `{}`", n.name);
                (
                    n,
                    remove_network_when_free(engine, &n.id, operation, pending).await,
                )
            }
        });
        (futures_util::future::join_all(removals).await, passed_on)
    };
    let (removed_containers, (removed_networks, passed_on)) =
        futures_util::join!(futures_util::future::join_all(removals), network_removals);
    let mut removal = Removal::default();
    for (c, result) in removed_containers {
        match result {
            Ok(()) => {
                tracing::debug!("removed container `{}`", c.name);
                removal.containers.push(c.clone());
            }
            Err(e) => removal.failures.push(e.to_string()),
        }
    }
    for (n, result) in removed_networks {
        match result {
            Ok(()) => {
                tracing::debug!("removed network `{}`", n.name);
                removal.networks.push(n.clone());
            }
            Err(e) => removal.failures.push(format!("{e} (network `{}`)", n.name)),
        }
    }
    (removal, passed_on)
}

/// Resolves once the container `id` has stopped, or its removal has ended
/// (`removed`), whichever comes first: a wait that fails (the container is
/// gone already) or never answers holds nothing up.
async fn stopped_or_removed<E: Engine>(engine: &E, id: &str, removed: oneshot::Receiver<()>) {
    tokio::select! {
        waited = engine.wait_container(id) => {
            tracing::trace!(container = %id, ?waited, "stopped");
        }
        _ = removed => {}
    }
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

/// Removes the network `id`, each call bounded. While a container removal
/// is `pending` its endpoint may still be listed: that is waited out. Once
/// none is, a container this session did not attach keeps the network busy
/// for good; that is reported once the retries are spent.
async fn remove_network_when_free<E: Engine>(
    engine: &E,
    id: &str,
    operation: String,
    pending: &AtomicUsize,
) -> Result<(), EngineError> {
    let mut tries = 0;
    loop {
        match bounded(operation.clone(), engine.remove_network(id)).await {
            Err(e) if in_use(&e) && pending.load(Ordering::SeqCst) > 0 => {
                tokio::time::sleep(ACTIVE_ENDPOINT_PAUSE).await;
            }
            Err(e) if in_use(&e) && tries < ACTIVE_ENDPOINT_RETRIES => {
                tries += 1;
                tokio::time::sleep(ACTIVE_ENDPOINT_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// A network removal refused because a container is still attached: Docker
/// says `active endpoints`, Podman `network is being used`.
fn in_use(e: &EngineError) -> bool {
    e.detail.contains("active endpoints") || e.detail.contains("is being used")
}
