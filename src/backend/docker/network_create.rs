//! Bring-up step: the session's two networks, and giving them back when a
//! name attempt fails.

use super::bring_up::{Attempt, BringUp, LaunchError, taken_or_failed};
use super::client::{Engine, NetworkSpec, created_key};
use super::ledger::Created;
use super::names::Names;
use super::remove::remove;
use super::specs::{egress_network_spec, internal_network_spec};

impl<E: Engine> BringUp<E> {
    /// Creates the internal network, makes sure this session owns its name,
    /// then creates the egress network; returns (internal ID, egress ID).
    ///
    /// The daemon's duplicate check (API 1.41) is not atomic: two sessions
    /// starting at once can both create `claude-bottle-internal-<slug>`, and
    /// a container on a network whose name is ambiguous cannot start. So the
    /// oldest network of that name wins its suffix and any younger twin
    /// backs off to the next one. The egress network is created only by the
    /// winner, so the two networks never split between sessions.
    pub(super) async fn create_networks(&self, names: &Names) -> Result<(String, String), Attempt> {
        self.check_cancelled()?;
        let internal = internal_network_spec(&self.plan, names);
        let egress = egress_network_spec(&self.plan, names);
        let internal_id = self.create_network(&internal).await?;
        let twins = self.engine.networks_named(&internal.name).await?;
        let oldest = twins
            .iter()
            .min_by_key(|n| (created_key(&n.created), n.id.clone()));
        if oldest.is_some_and(|n| n.id != internal_id) {
            tracing::debug!(
                "another session made `{}` at the same moment; it keeps the name",
                internal.name
            );
            return Err(Attempt::NameTaken);
        }
        self.check_cancelled()?;
        let egress_id = self.create_network(&egress).await?;
        Ok((internal_id, egress_id))
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, Attempt> {
        let id = self
            .engine
            .create_network(spec)
            .await
            .map_err(taken_or_failed)?;
        self.ledger.update(|l| {
            l.networks.push(Created {
                id: id.clone(),
                name: spec.name.clone(),
            });
        });
        Ok(id)
    }

    /// Removes what a failed name attempt created, so the next suffix starts clean.
    pub(super) async fn release_attempt(&self) -> Result<(), LaunchError> {
        let (containers, networks) = self.ledger.snapshot();
        let removal = remove(&self.engine, &containers, &networks).await;
        for c in &removal.containers {
            self.ledger.forget_container(&c.id);
        }
        for n in &removal.networks {
            self.ledger.forget_network(&n.id);
        }
        match removal.failures.into_iter().next() {
            None => Ok(()),
            Some(failure) => Err(LaunchError::Release(failure)),
        }
    }
}
