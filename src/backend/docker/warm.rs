//! Warm bottles: what makes one fit a plan, finding those that do, and who
//! owns one once a session has claimed it.
//!
//! A warm bottle is a whole bottle made ahead by `prewarm` (networks, a
//! ready proxy with its config, a running agent container) with nothing of
//! a session in it. Every resource carries [`LABEL_WARM`]: the fingerprint
//! of everything fixed when it was created. A session whose plan has the
//! same fingerprint may claim it, by renaming its agent container from
//! `<name>.warm` to `<name>` (`claim`): the daemon lets one rename of a name
//! succeed. Labels cannot change after creation, so the claiming session
//! records itself in a root-owned file in the agent container
//! ([`OWNER_PATH`]), which `list` and `cleanup` read.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use secrecy::ExposeSecret;
use sha2::Digest;

use super::client::{ContainerInfo, ContainerSpec, Engine, Labels, NetworkInfo, NetworkSpec};
use super::ledger::Created;
use super::list::label;
use super::names::{
    LABEL_HOST, LABEL_PID, LABEL_ROLE, LABEL_SESSION, LABEL_WARM, MAX_SUFFIX, Names, Owner, Role,
    WARM_NAME_TAIL, session_state,
};
use super::plan::SessionPlan;
use super::specs::{
    agent_container_spec, egress_network_spec, internal_network_spec, proxy_container_spec,
};
use crate::backend::SessionState;

/// Where a claiming session records itself in the agent container.
pub(crate) const OWNER_PATH: &str = "/.claude-bottle-owner";
/// Bumped when what the fingerprint covers changes meaning, so bottles
/// warmed by another build of the tool are never claimed.
const FINGERPRINT_FORMAT: u32 = 1;

/// The fingerprint of everything a bottle of `plan` is made of when it is
/// created: both container specs, both network specs, the proxy's config
/// and the images by ID (a rebuilt tag is another image). Names, addresses
/// and who made it (session, pid) are left out: they differ between two
/// bottles that are otherwise the same. The specs are taken apart field by
/// field, so a field added to them must be decided on here.
pub(crate) fn fingerprint(
    plan: &SessionPlan,
    agent_image_id: &str,
    proxy_image_id: &str,
) -> String {
    let names = Names::new(&plan.slug, 1, None);
    let mut text = format!("format {FINGERPRINT_FORMAT}\n");
    container(
        &mut text,
        "agent",
        &agent_container_spec(plan, &names, "", ""),
    );
    container(&mut text, "proxy", &proxy_container_spec(plan, &names, ""));
    network(
        &mut text,
        "internal",
        &internal_network_spec(plan, &names, plan.addresses.internal),
    );
    network(
        &mut text,
        "egress",
        &egress_network_spec(plan, &names, plan.addresses.egress),
    );
    let _ = writeln!(text, "agent image id {agent_image_id:?}");
    let _ = writeln!(text, "proxy image id {proxy_image_id:?}");
    let _ = writeln!(text, "proxy config {:?}", plan.pipelock_yaml);
    let digest = sha2::Sha256::digest(text.as_bytes());
    hex::encode(&digest[..16])
}

/// The labels that say what a resource is, without who made it.
fn what_labels(labels: &Labels) -> impl Iterator<Item = (&String, &String)> {
    labels
        .iter()
        .filter(|(k, _)| ![LABEL_SESSION, LABEL_PID, LABEL_WARM].contains(&k.as_str()))
}

fn container(text: &mut String, role: &str, spec: &ContainerSpec) {
    let ContainerSpec {
        name: _,
        image,
        user,
        entrypoint,
        cmd,
        working_dir,
        env,
        labels,
        network: _,
        extra_hosts,
        dns,
        runtime,
        init,
        security_opt,
        cap_drop,
        cap_add,
        pids_limit,
        no_user_namespaces,
    } = spec;
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|p| (p.name.as_str(), p.value.expose_secret()))
        .collect();
    let labels: Vec<_> = what_labels(labels).collect();
    let _ = writeln!(
        text,
        "{role} {image:?} {user:?} {entrypoint:?} {cmd:?} {working_dir:?} {env:?} {labels:?} \
         {extra_hosts:?} {dns:?} {runtime:?} {init:?} {security_opt:?} {cap_drop:?} {cap_add:?} {pids_limit:?} {no_user_namespaces:?}"
    );
}

fn network(text: &mut String, role: &str, spec: &NetworkSpec) {
    let NetworkSpec {
        name: _,
        internal,
        options,
        labels,
        // Each bottle has subnets of its own.
        ipam: _,
    } = spec;
    let labels: Vec<_> = what_labels(labels).collect();
    let _ = writeln!(text, "{role} {internal:?} {options:?} {labels:?}");
}

/// A warm bottle that fits a plan, with everything a claim needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WarmBottle {
    /// The session label all four of its resources carry.
    pub session: String,
    /// Its names once claimed (the agent's without [`WARM_NAME_TAIL`]).
    pub names: Names,
    pub agent_id: String,
    /// The proxy, then the agent.
    pub containers: Vec<Created>,
    /// The internal network, then the egress one.
    pub networks: Vec<Created>,
    /// Unix seconds.
    pub created: i64,
}

impl WarmBottle {
    /// The agent container's name while nobody has claimed it.
    pub fn warm_name(&self) -> String {
        self.names.warm_agent()
    }
}

/// The complete, running warm bottles among `containers` and `networks`
/// whose fingerprint is `fingerprint`, made on `host`, oldest first.
pub(crate) fn find(
    fingerprint: &str,
    slug: &str,
    host: &str,
    containers: &[ContainerInfo],
    networks: &[NetworkInfo],
) -> Vec<WarmBottle> {
    let mut found: Vec<WarmBottle> = containers
        .iter()
        .filter(|c| {
            label(c, LABEL_ROLE) == Role::Agent.as_str()
                && label(c, LABEL_WARM) == fingerprint
                && label(c, LABEL_HOST) == host
                && c.state == "running"
        })
        .filter_map(|agent| {
            let base = agent.name.strip_suffix(WARM_NAME_TAIL)?;
            let names = (1..=MAX_SUFFIX)
                .map(|suffix| Names::new(slug, suffix, None))
                .find(|names| names.agent == base)?;
            let session = label(agent, LABEL_SESSION);
            fn of_session(labels: &Labels) -> Option<&str> {
                labels.get(LABEL_SESSION).map(String::as_str)
            }
            let proxy = containers.iter().find(|c| {
                c.name == names.proxy
                    && of_session(&c.labels) == Some(session)
                    && c.state == "running"
            })?;
            let network = |name: &str| {
                networks
                    .iter()
                    .find(|n| n.name == name && of_session(&n.labels) == Some(session))
                    .map(|n| Created {
                        id: n.id.clone(),
                        name: n.name.clone(),
                    })
            };
            let networks = vec![
                network(&names.internal_network)?,
                network(&names.egress_network)?,
            ];
            Some(WarmBottle {
                session: session.to_owned(),
                agent_id: agent.id.clone(),
                containers: vec![
                    Created {
                        id: proxy.id.clone(),
                        name: proxy.name.clone(),
                    },
                    Created {
                        id: agent.id.clone(),
                        name: names.agent.clone(),
                    },
                ],
                networks,
                names,
                created: agent.created,
            })
        })
        .collect();
    found.sort_by(|a, b| (a.created, &a.session).cmp(&(b.created, &b.session)));
    found
}

/// What the claiming session writes to [`OWNER_PATH`]: the owner labels
/// `list` judges a session by.
pub(crate) fn owner_record(owner: &Owner) -> String {
    format!(
        "{LABEL_SESSION}={}\n{LABEL_PID}={}\n{LABEL_HOST}={}\n",
        owner.session, owner.pid, owner.host
    )
}

fn parse_owner_record(bytes: &[u8]) -> Labels {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The state of every session among `containers` that began as a warm
/// bottle, by session label: `Warm` while its agent keeps its warm name,
/// else judged from the owner record the claiming session wrote. A claimed
/// bottle without a readable record lost its session before it was written.
pub(crate) async fn warm_states<E: Engine>(
    engine: &E,
    containers: &[ContainerInfo],
    here: &str,
) -> BTreeMap<String, SessionState> {
    let agents = containers.iter().filter(|c| {
        c.labels.contains_key(LABEL_WARM) && label(c, LABEL_ROLE) == Role::Agent.as_str()
    });
    let judged = agents.map(|agent| async move {
        let state = if agent.name.ends_with(WARM_NAME_TAIL) {
            SessionState::Warm
        } else {
            match engine.read_file(&agent.id, OWNER_PATH).await {
                Ok(bytes) => session_state(&parse_owner_record(&bytes), here),
                Err(_) => SessionState::Ended,
            }
        };
        (label(agent, LABEL_SESSION).to_owned(), state)
    });
    futures_util::future::join_all(judged)
        .await
        .into_iter()
        .collect()
}

/// The state of the session that made a resource with `labels`, with the
/// states of warm-made sessions from [`warm_states`].
pub(crate) fn state_of(
    labels: &Labels,
    warm: &BTreeMap<String, SessionState>,
    here: &str,
) -> SessionState {
    labels
        .get(LABEL_SESSION)
        .and_then(|session| warm.get(session))
        .copied()
        .unwrap_or_else(|| session_state(labels, here))
}
