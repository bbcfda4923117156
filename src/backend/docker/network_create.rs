//! Bring-up step: the session's two networks, and giving them back when a
//! name attempt fails.

use ipnet::Ipv4Net;

use super::bring_up::{Attempt, BringUp, LaunchError, taken_or_failed};
use super::client::{Engine, LabelFilter, NetworkSpec, created_key};
use super::ledger::Created;
use super::names::Names;
use super::plan::AddressesExhausted;
use super::remove::remove;
use super::specs::{egress_network_spec, internal_network_spec, ipam};
use crate::core::subnet::{ipv4_subnets, is_overlap_error};

/// How many subnets one network tries before giving up: each retry follows
/// a refusal because a concurrent creation took the subnet first, and picks
/// from a fresh list of the daemon's networks, so more than a couple means
/// something else is wrong.
pub(crate) const ADDRESS_ATTEMPTS: u32 = 8;

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
        let addresses = &self.plan.addresses;
        let internal = internal_network_spec(&self.plan, names, addresses.internal);
        let egress = egress_network_spec(&self.plan, names, addresses.egress);
        let internal_id = self.create_network(internal.clone()).await?;
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
        let egress_id = self.create_network(egress).await?;
        Ok((internal_id, egress_id))
    }

    /// Creates `spec`, choosing its subnet again when the daemon refuses it
    /// as overlapping: the check is the daemon's own (its IPAM serialises
    /// pool requests), so two sessions never end up on one subnet.
    async fn create_network(&self, mut spec: NetworkSpec) -> Result<String, Attempt> {
        let mut attempt = 1;
        let id = loop {
            match self.engine.create_network(&spec).await {
                Ok(id) => break id,
                Err(e) if spec.ipam.is_some() && is_overlap_error(&e.detail) => {
                    if attempt >= ADDRESS_ATTEMPTS {
                        return Err(LaunchError::AddressesContended {
                            network: spec.name.clone(),
                            attempts: attempt,
                            detail: e.detail,
                        }
                        .into());
                    }
                    self.check_cancelled()?;
                    let refused = spec.ipam.as_ref().and_then(|i| i.subnet.parse().ok());
                    let subnet = self.choose_again(refused, attempt).await?;
                    tracing::debug!(
                        "subnet of `{}` taken meanwhile ({}); trying {subnet}",
                        spec.name,
                        e.detail
                    );
                    spec.ipam = Some(ipam(subnet));
                    attempt += 1;
                }
                Err(e) => return Err(taken_or_failed(e)),
            }
        };
        self.ledger.update(|l| {
            l.networks.push(Created {
                id: id.clone(),
                name: spec.name.clone(),
            });
        });
        Ok(id)
    }

    /// A subnet free on the daemon as it is now, none of the host's routes,
    /// and not `refused`, from another start in the pool than the last try.
    async fn choose_again(
        &self,
        refused: Option<Ipv4Net>,
        attempt: u32,
    ) -> Result<Ipv4Net, LaunchError> {
        let addresses = &self.plan.addresses;
        let networks = self.engine.list_networks(LabelFilter::new()).await?;
        let mut taken = ipv4_subnets(
            networks
                .iter()
                .flat_map(|n| n.subnets.iter().map(String::as_str)),
        );
        taken.extend(addresses.host_routes.iter().copied());
        taken.extend(refused);
        // A large odd step lands each retry far from where the last began.
        let seed = addresses
            .seed
            .wrapping_add(u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        addresses
            .pool
            .choose(&taken, 1, seed)
            .and_then(|chosen| chosen.first().copied())
            .ok_or(LaunchError::Addresses(AddressesExhausted {
                pool: addresses.pool,
            }))
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
