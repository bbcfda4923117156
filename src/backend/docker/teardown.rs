//! Teardown of one session: what its ledger holds and anything carrying its
//! session label (a creation whose reply never arrived), through the one
//! removal routine.
//!
//! This is the time between Claude's exit and the prompt. The tool waits
//! for it instead of handing the removal to a detached process: that would
//! give the prompt back a few hundred milliseconds sooner, and every
//! resource is labelled, so `cleanup` would still find what a killed
//! remover left. But the bottle would outlive the command: a `start` right
//! after would find its names taken and move to suffix `-2`, `list` would
//! show a bottle on its way out, and a removal that failed could no longer
//! turn the exit status into an error. So the wait is made short instead:
//! containers go at once (force, no graceful stop: the session is over),
//! the label listing overlaps their removal, a network whose containers the
//! caller takes off it first (the egress network, off the proxy) goes while
//! they stop, and the others go as soon as the containers have stopped,
//! while the daemon still deletes their files. What is left is the daemon's
//! own work (stopping each container and releasing its endpoints, removing
//! the networks one at a time).

use super::client::{Engine, EngineError, LabelFilter};
use super::ledger::{Created, SharedLedger};
use super::names::LABEL_SESSION;
use super::remove::{Detach, REMOVE_CALL_TIMEOUT, remove, remove_then};

#[derive(Debug, thiserror::Error)]
#[error(
    "teardown left resources behind:{}",
    failures.iter().map(|f| format!("\n  - {f}")).collect::<String>()
)]
pub(crate) struct TeardownError {
    pub failures: Vec<String>,
}

impl crate::diagnostic::Diagnostic for TeardownError {
    fn hints(&self) -> Vec<String> {
        vec!["run `claude-bottle cleanup` to remove them".to_owned()]
    }
}

/// A container teardown leaves: it holds work that did not come home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keep {
    pub container: Created,
    /// Stopped, or left running: gVisor keeps a container's writes inside
    /// its sandbox, and they go when it stops.
    pub stop: bool,
}

/// Removes every resource of `session`, containers first, but `keep`: that
/// one is taken off the session's networks (and stopped, if so), and stays.
/// Idempotent.
///
/// The ledger's containers are removed while the daemon is asked for
/// anything else carrying the session's label (a creation whose reply never
/// arrived): that listing is a round trip the user would otherwise wait for
/// before the first removal, after Claude has exited. The ledger's networks
/// go as soon as those containers have stopped, unless the listing found a
/// container the ledger does not hold: then they wait for its removal too.
/// A network with containers to `detach` goes once they are off it.
pub(crate) async fn teardown<E: Engine>(
    engine: &E,
    ledger: &SharedLedger,
    session: &str,
    keep: Option<&Keep>,
    detach: &[Detach],
) -> Result<(), TeardownError> {
    let (mut containers, networks) = ledger.snapshot();
    // Newest first: the agent goes before the proxy it talks to.
    containers.reverse();
    let kept_id = keep.map(|k| k.container.id.as_str());
    if let Some(id) = kept_id {
        containers.retain(|c| c.id != id);
        ledger.forget_container(id);
    }
    // Whether the ledger's networks can go with its containers, and what
    // the listing and setting the kept container aside found.
    let networks_go = async {
        let (found_containers, found_networks) = labelled(engine, session).await;
        let late = match &found_containers {
            Ok(found) => found.iter().any(|c| {
                Some(c.id.as_str()) != kept_id && !containers.iter().any(|k| k.id == c.id)
            }),
            Err(_) => false,
        };
        let set_aside = match keep {
            Some(kept) => set_aside(engine, kept, &networks).await.err(),
            None => None,
        };
        (!late, (found_containers, found_networks, set_aside))
    };
    let (known, (found_containers, found_networks, set_aside_failed)) =
        remove_then(engine, &containers, &networks, detach, networks_go).await;
    let mut failures = Vec::new();
    let mut late = Vec::new();
    match found_containers {
        Ok(found) => add_missing(&mut late, found, &containers),
        Err(e) => failures.push(e.to_string()),
    }
    if let Some(kept) = keep {
        late.retain(|c| c.id != kept.container.id);
    }
    failures.extend(set_aside_failed.map(|e| e.to_string()));
    // The networks left: the ledger's, when a late container held them back,
    // and any only the label found.
    let mut rest_networks: Vec<Created> = if late.is_empty() {
        Vec::new()
    } else {
        networks.clone()
    };
    match found_networks {
        Ok(found) => add_missing(&mut rest_networks, found, &networks),
        Err(e) => failures.push(e.to_string()),
    }
    let rest = remove(engine, &late, &rest_networks).await;
    for removal in [known, rest] {
        for c in &removal.containers {
            ledger.forget_container(&c.id);
        }
        for n in &removal.networks {
            ledger.forget_network(&n.id);
        }
        failures.extend(removal.failures);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(TeardownError { failures })
    }
}

/// Takes `kept` off `networks`, so they can go without it, and stops it
/// when it should be.
async fn set_aside<E: Engine>(
    engine: &E,
    kept: &Keep,
    networks: &[Created],
) -> Result<(), EngineError> {
    let (id, name) = (&kept.container.id, &kept.container.name);
    if kept.stop {
        let operation = format!("stop container `{name}`");
        tokio::time::timeout(REMOVE_CALL_TIMEOUT, engine.stop_container(id, 5))
            .await
            .map_err(|_| EngineError::timed_out(operation, REMOVE_CALL_TIMEOUT))??;
    }
    for network in networks {
        // It is on one of them only; the others say so, which is fine.
        let disconnected = tokio::time::timeout(
            REMOVE_CALL_TIMEOUT,
            engine.disconnect_network(&network.id, id),
        )
        .await;
        tracing::debug!(network = %network.name, ?disconnected, "kept container taken off");
    }
    Ok(())
}

type Listed = Result<Vec<Created>, EngineError>;

/// The session's containers and networks as the daemon lists them now.
async fn labelled<E: Engine>(engine: &E, session: &str) -> (Listed, Listed) {
    let filter: LabelFilter = vec![(LABEL_SESSION.to_owned(), session.to_owned())];
    let containers = bounded_list(
        "list the session's containers",
        engine.list_containers(filter.clone()),
        |c| Created {
            id: c.id,
            name: c.name,
        },
    );
    let networks = bounded_list(
        "list the session's networks",
        engine.list_networks(filter.clone()),
        |n| Created {
            id: n.id,
            name: n.name,
        },
    );
    futures_util::join!(containers, networks)
}

async fn bounded_list<T>(
    operation: &str,
    call: impl Future<Output = Result<Vec<T>, EngineError>>,
    created: impl Fn(T) -> Created,
) -> Listed {
    let listed = tokio::time::timeout(REMOVE_CALL_TIMEOUT, call)
        .await
        .map_err(|_| EngineError::timed_out(operation, REMOVE_CALL_TIMEOUT))??;
    Ok(listed.into_iter().map(created).collect())
}

/// Adds to `known` each of `found` that is neither in it nor in `handled`.
fn add_missing(known: &mut Vec<Created>, found: Vec<Created>, handled: &[Created]) {
    for resource in found {
        if !known.iter().chain(handled).any(|k| k.id == resource.id) {
            known.push(resource);
        }
    }
}
