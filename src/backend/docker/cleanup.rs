//! `cleanup`: everything claude-bottle made on the daemon, found by the
//! `claude-bottle.managed` label, removed through the one removal routine.

use super::client::{Engine, EngineError};
use super::ledger::Created;
use super::list::{label, managed};
use super::names::{LABEL_ROLE, this_host};
use super::remove::remove;
use super::warm::{state_of, warm_states};
use super::{CONTAINER, NETWORK};
use crate::backend::{CleanupItem, CleanupPlan, CleanupReport, Resource};
use crate::diagnostic::Diagnostic;

/// Containers in any state, then networks, each sorted by name.
pub(crate) async fn prepare_cleanup<E: Engine>(engine: &E) -> Result<CleanupPlan, EngineError> {
    let (containers, networks) = futures_util::join!(
        engine.list_containers(managed()),
        engine.list_networks(managed())
    );
    let here = this_host();
    let containers = containers?;
    let warm = warm_states(engine, &containers, &here).await;
    let mut containers: Vec<CleanupItem> = containers
        .into_iter()
        .map(|c| CleanupItem {
            detail: Some(format!("{}, {}", label(&c, LABEL_ROLE), c.state)),
            session: state_of(&c.labels, &warm, &here),
            resource: Resource {
                kind: CONTAINER,
                name: c.name,
            },
            handle: c.id,
        })
        .collect();
    containers.sort_by(|a, b| (&a.resource.name, &a.handle).cmp(&(&b.resource.name, &b.handle)));
    let mut networks: Vec<CleanupItem> = networks?
        .into_iter()
        .map(|n| CleanupItem {
            detail: None,
            session: state_of(&n.labels, &warm, &here),
            resource: Resource {
                kind: NETWORK,
                name: n.name,
            },
            handle: n.id,
        })
        .collect();
    networks.sort_by(|a, b| (&a.resource.name, &a.handle).cmp(&(&b.resource.name, &b.handle)));
    containers.extend(networks);
    Ok(CleanupPlan { items: containers })
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cleanup removed {} resource(s) but not:{}",
    removed.removed.len(),
    failures.iter().map(|f| format!("\n  - {f}")).collect::<String>()
)]
pub(crate) struct CleanupError {
    pub removed: CleanupReport,
    pub failures: Vec<String>,
}

impl Diagnostic for CleanupError {
    fn hints(&self) -> Vec<String> {
        vec!["a network still in use by a container claude-bottle did not start cannot be removed; detach it (`docker network disconnect`) and run cleanup again".to_owned()]
    }
}

/// Removes the plan's containers, then its networks, and nothing else.
pub(crate) async fn cleanup<E: Engine>(
    engine: &E,
    plan: &CleanupPlan,
) -> Result<CleanupReport, CleanupError> {
    let of_kind = |kind| -> Vec<Created> {
        plan.items
            .iter()
            .filter(|i| i.resource.kind == kind)
            .map(|i| Created {
                id: i.handle.clone(),
                name: i.resource.name.clone(),
            })
            .collect()
    };
    let removal = remove(engine, &of_kind(CONTAINER), &of_kind(NETWORK)).await;
    let resource = |kind| move |c: Created| Resource { kind, name: c.name };
    let report = CleanupReport {
        removed: removal
            .containers
            .into_iter()
            .map(resource(CONTAINER))
            .chain(removal.networks.into_iter().map(resource(NETWORK)))
            .collect(),
    };
    if removal.failures.is_empty() {
        Ok(report)
    } else {
        Err(CleanupError {
            removed: report,
            failures: removal.failures,
        })
    }
}
