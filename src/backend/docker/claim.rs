//! Bring-up step: claiming a warm bottle that fits the plan, then
//! provisioning it with what a cold bottle gets before it starts.
//!
//! The claim is the rename of its agent container from its warm name to its
//! session name, which the daemon lets only one session do. Nothing of the
//! bottle is this session's until then, so nothing is recorded before it;
//! right after it, all four resources go in the ledger, so teardown (or
//! `Drop`) removes a claimed bottle exactly as it removes a cold one. A
//! rename whose reply never arrives (the session killed meanwhile) leaves a
//! bottle with no owner record: `list` shows it orphaned, `cleanup` removes it.

use super::bring_up::{BringUp, LaunchError, Started};
use super::client::{Engine, ErrorKind};
use super::names::Owner;
use super::warm::{OWNER_PATH, WarmBottle, owner_record};
use crate::core::provision;
use crate::core::provision::ProvisionSet;
use crate::core::provision::archive::{Ownership, root_file};

/// The agent's files and the owner record, being chosen (a workspace's
/// selection reads the host); streamed into the bottle once claimed.
type Archive = tokio::task::JoinHandle<Result<Vec<(ProvisionSet, Ownership)>, LaunchError>>;

impl<E: Engine> BringUp<E> {
    /// Claims one of `found` and provisions it; `None` when other sessions
    /// claimed every one first.
    pub(super) async fn claim_warm(
        &self,
        found: &[WarmBottle],
    ) -> Result<Option<Started>, LaunchError> {
        // In the plan's order, so the bottle it shows is the one claimed
        // unless another session claims it first.
        let Some(likely) = found.first() else {
            return Ok(None);
        };
        let clock = std::time::Instant::now();
        // Reading the host files overlaps the claim.
        let mut archive = Some((likely.names.proxy.clone(), self.build_archive(likely)));
        for bottle in found {
            self.check_cancelled()?;
            let warm_name = bottle.warm_name();
            match self
                .engine
                .rename_container(&warm_name, &bottle.names.agent)
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::Unreachable => return Err(e.into()),
                Err(e) => {
                    tracing::debug!("warm bottle `{warm_name}` not claimed: {e}");
                    continue;
                }
            }
            self.ledger.update(|l| {
                l.claimed = Some(bottle.session.clone());
                l.containers.extend(bottle.containers.iter().cloned());
                l.networks.extend(bottle.networks.iter().cloned());
            });
            self.printer
                .status(format_args!("claimed the warm bottle `{warm_name}`"));
            let archive = match archive.take() {
                Some((proxy, built)) if proxy == bottle.names.proxy => built,
                _ => self.build_archive(bottle),
            };
            let started = self.provision_claimed(bottle, archive).await?;
            tracing::debug!(
                "claimed and provisioned `{warm_name}` in {:?}",
                clock.elapsed()
            );
            return Ok(Some(started));
        }
        Ok(None)
    }

    /// The provisioning of `bottle` (its SSH config names its own proxy),
    /// with the record of who owns the bottle once it is claimed.
    fn build_archive(&self, bottle: &WarmBottle) -> Archive {
        let plan = std::sync::Arc::clone(&self.plan);
        let proxy = bottle.names.proxy.clone();
        let owner = Owner {
            session: bottle.session.clone(),
            ..self.plan.owner.clone()
        };
        tokio::task::spawn_blocking(move || {
            let set = provision::build(&plan.spec, &proxy, &plan.container_home)?;
            let record = root_file(OWNER_PATH, &owner_record(&owner));
            Ok(vec![(set, Ownership::AGENT), (record, Ownership::ROOT)])
        })
    }

    /// Gives the claimed bottle its `--name`, then the agent's files and
    /// the record of who owns it now, in one upload, and Claude's secrets.
    async fn provision_claimed(
        &self,
        bottle: &WarmBottle,
        archive: Archive,
    ) -> Result<Started, LaunchError> {
        let mut names = bottle.names.clone();
        if let Some(pinned) = &self.plan.spec.pinned_name {
            self.check_cancelled()?;
            match self.engine.rename_container(&names.agent, pinned).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::Conflict => {
                    return Err(LaunchError::PinnedNameTaken {
                        name: pinned.clone(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
            names.agent = pinned.clone();
            names.pinned = true;
        }
        let sets = archive
            .await
            .map_err(|e| LaunchError::Task(e.to_string()))??;
        let prompt_file = sets.first().and_then(|(set, _)| set.prompt_file.clone());
        self.check_cancelled()?;
        // The bottle runs already: the secrets go while the files do.
        let (provisioned, handoff_dir) = futures_util::join!(
            self.provision(&bottle.agent_id, sets),
            self.hand_over(&bottle.agent_id, &names.agent)
        );
        provisioned?;
        Ok(Started {
            names,
            agent_id: bottle.agent_id.clone(),
            prompt_file,
            handoff_dir: handoff_dir?,
        })
    }
}
