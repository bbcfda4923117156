//! Resource names and labels of a Docker session (SPEC §6 "Resources and names").

use std::collections::BTreeSet;

use super::client::Labels;
use crate::backend::SessionState;
use crate::core::spec::BottleSpec;

pub(crate) const LABEL_MANAGED: &str = "claude-bottle.managed";
pub(crate) const LABEL_SESSION: &str = "claude-bottle.session";
pub(crate) const LABEL_AGENT: &str = "claude-bottle.agent";
pub(crate) const LABEL_ROLE: &str = "claude-bottle.role";
pub(crate) const LABEL_PID: &str = "claude-bottle.pid";
/// The host the owning process runs on: its pid means something only there.
pub(crate) const LABEL_HOST: &str = "claude-bottle.host";
/// The manifest's name of the bottle, and the manifest file it came from.
pub(crate) const LABEL_BOTTLE: &str = "claude-bottle.bottle";
pub(crate) const LABEL_MANIFEST: &str = "claude-bottle.manifest";
/// On every resource of a warm bottle: the fingerprint of what it was made
/// of (`warm::fingerprint`), which a session's plan must match to claim it.
pub(crate) const LABEL_WARM: &str = "claude-bottle.warm";
/// The end of a warm agent container's name until a session claims it, by
/// renaming it to the name without it. No slug or suffix ends so.
pub(crate) const WARM_NAME_TAIL: &str = ".warm";

/// The highest suffix tried before giving up on a free name.
pub(crate) const MAX_SUFFIX: u32 = 99;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Agent,
    Proxy,
    /// The short-lived container that fences the agent's network namespace.
    Fence,
    Network,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Proxy => "proxy",
            Self::Fence => "fence",
            Self::Network => "network",
        }
    }
}

/// Who made a resource: written on every resource of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub session: String,
    pub agent: String,
    pub pid: u32,
    pub host: String,
    pub bottle: String,
    /// Absent for the embedded default manifest.
    pub manifest: Option<String>,
    /// The fingerprint of a warm bottle `prewarm` makes; `None` for a session's own.
    pub warm: Option<String>,
}

impl Owner {
    pub fn labels(&self, role: Role) -> Labels {
        Labels::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_SESSION.to_owned(), self.session.clone()),
            (LABEL_AGENT.to_owned(), self.agent.clone()),
            (LABEL_ROLE.to_owned(), role.as_str().to_owned()),
            (LABEL_PID.to_owned(), self.pid.to_string()),
            (LABEL_HOST.to_owned(), self.host.clone()),
            (LABEL_BOTTLE.to_owned(), self.bottle.clone()),
        ])
        .into_iter()
        .chain(
            self.manifest
                .clone()
                .map(|path| (LABEL_MANIFEST.to_owned(), path)),
        )
        .chain(
            self.warm
                .clone()
                .map(|fingerprint| (LABEL_WARM.to_owned(), fingerprint)),
        )
        .collect()
    }

    /// The owner of a session of `spec` this process starts now.
    pub fn of_this_process(session: String, spec: &BottleSpec) -> Self {
        Self {
            session,
            agent: spec.agent_name.clone(),
            pid: std::process::id(),
            host: this_host(),
            bottle: spec.bottle_name.clone(),
            manifest: spec.manifest_path.as_ref().map(|p| p.display().to_string()),
            warm: None,
        }
    }
}

/// This machine's name, as the owner label records it.
pub(crate) fn this_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default()
}

/// Whether the session that labelled a resource still runs: its process is
/// asked on this host. A resource from another host (a shared daemon) cannot
/// be judged from here; one without a host label predates it and is judged
/// as local.
pub(crate) fn session_state(labels: &Labels, here: &str) -> SessionState {
    if labels.get(LABEL_HOST).is_some_and(|host| host != here) {
        return SessionState::Unknown;
    }
    let alive = labels
        .get(LABEL_PID)
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(pid_alive);
    if alive {
        SessionState::Running
    } else {
        SessionState::Ended
    }
}

fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        // It exists but belongs to someone else: alive.
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// A session id: unique on this host (time, pid and a counter), short enough to read.
pub(crate) fn new_session_id() -> String {
    use sha2::Digest;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = sha2::Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(&hasher.finalize()[..8])
}

/// The four names of one session. All derive from one suffix; a pinned
/// agent container name (`--name`) never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    pub suffix: u32,
    pub agent: String,
    pub proxy: String,
    pub fence: String,
    pub internal_network: String,
    pub egress_network: String,
    pub pinned: bool,
}

impl Names {
    /// Suffix 1 means none: `claude-bottle-<slug>`, then `-2`, `-3`, ...
    pub fn new(slug: &str, suffix: u32, pinned: Option<&str>) -> Self {
        let tail = if suffix <= 1 {
            String::new()
        } else {
            format!("-{suffix}")
        };
        Self {
            suffix,
            agent: pinned.map_or_else(|| format!("claude-bottle-{slug}{tail}"), str::to_owned),
            proxy: format!("claude-bottle-pipelock-{slug}{tail}"),
            fence: format!("claude-bottle-fence-{slug}{tail}"),
            internal_network: format!("claude-bottle-internal-{slug}{tail}"),
            egress_network: format!("claude-bottle-egress-{slug}{tail}"),
            pinned: pinned.is_some(),
        }
    }

    /// The agent container's name while the bottle is warm.
    pub fn warm_agent(&self) -> String {
        format!("{}{WARM_NAME_TAIL}", self.agent)
    }

    /// The first suffix from 1 whose names are all free of `taken`
    /// (container and network names), or `None` after [`MAX_SUFFIX`].
    /// A pinned name is not tested here: it is the same for every suffix.
    pub fn first_free(slug: &str, pinned: Option<&str>, taken: &BTreeSet<String>) -> Option<Self> {
        Self::free(slug, pinned, taken).next()
    }

    /// Every suffix from 1 to [`MAX_SUFFIX`] whose names are all free of
    /// `taken`, the agent's warm name too.
    pub fn free<'a>(
        slug: &'a str,
        pinned: Option<&'a str>,
        taken: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = Self> + 'a {
        (1..=MAX_SUFFIX)
            .map(move |suffix| Self::new(slug, suffix, pinned))
            .filter(|names| {
                let agent_free = names.pinned
                    || !(taken.contains(&names.agent) || taken.contains(&names.warm_agent()));
                agent_free
                    && !taken.contains(&names.proxy)
                    && !taken.contains(&names.fence)
                    && !taken.contains(&names.internal_network)
                    && !taken.contains(&names.egress_network)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_one_suffix() {
        let first = Names::new("rev", 1, None);
        assert_eq!(first.agent, "claude-bottle-rev");
        assert_eq!(first.proxy, "claude-bottle-pipelock-rev");
        assert_eq!(first.fence, "claude-bottle-fence-rev");
        assert_eq!(first.internal_network, "claude-bottle-internal-rev");
        assert_eq!(first.egress_network, "claude-bottle-egress-rev");
        let third = Names::new("rev", 3, None);
        assert_eq!(third.agent, "claude-bottle-rev-3");
        assert_eq!(third.proxy, "claude-bottle-pipelock-rev-3");
        assert_eq!(third.egress_network, "claude-bottle-egress-rev-3");
    }

    #[test]
    fn first_free_skips_any_taken_name() {
        let taken: BTreeSet<String> = ["claude-bottle-rev", "claude-bottle-egress-rev-2"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(Names::first_free("rev", None, &taken).unwrap().suffix, 3);
        let pinned = Names::first_free("rev", Some("mine"), &taken).unwrap();
        assert_eq!(pinned.suffix, 1);
        assert_eq!(pinned.agent, "mine");
        assert!(pinned.pinned);
    }

    #[test]
    fn first_free_gives_up_after_the_last_suffix() {
        let taken: BTreeSet<String> = (1..=MAX_SUFFIX)
            .map(|s| Names::new("x", s, None).proxy)
            .collect();
        assert_eq!(Names::first_free("x", None, &taken), None);
    }

    #[test]
    fn session_ids_differ() {
        assert_ne!(new_session_id(), new_session_id());
        assert_eq!(new_session_id().len(), 16);
    }

    #[test]
    fn every_resource_carries_the_six_labels() {
        let owner = Owner {
            session: "s1".into(),
            agent: "rev".into(),
            pid: 42,
            host: "box".into(),
            bottle: "default".into(),
            manifest: Some("/m.json".into()),
            warm: None,
        };
        let labels = owner.labels(Role::Proxy);
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_SESSION], "s1");
        assert_eq!(labels[LABEL_AGENT], "rev");
        assert_eq!(labels[LABEL_ROLE], "proxy");
        assert_eq!(labels[LABEL_PID], "42");
        assert_eq!(labels[LABEL_HOST], "box");
        assert_eq!(labels[LABEL_BOTTLE], "default");
        assert_eq!(labels[LABEL_MANIFEST], "/m.json");
    }

    #[test]
    fn a_session_is_judged_by_its_process_here_and_unknown_elsewhere() {
        let here = "box";
        let owner = Owner {
            session: "s".into(),
            agent: "a".into(),
            pid: std::process::id(),
            host: here.into(),
            bottle: "b".into(),
            manifest: None,
            warm: None,
        };
        let mut labels = owner.labels(Role::Agent);
        labels.insert(LABEL_HOST.into(), here.into());
        assert_eq!(session_state(&labels, here), SessionState::Running);
        labels.insert(LABEL_PID.into(), "0".into());
        assert_eq!(session_state(&labels, here), SessionState::Ended);
        // A pid from another host says nothing about a process here.
        labels.insert(LABEL_HOST.into(), "elsewhere".into());
        assert_eq!(session_state(&labels, here), SessionState::Unknown);
        // Labels from before the host label: judged here.
        labels.remove(LABEL_HOST);
        assert_eq!(session_state(&labels, here), SessionState::Ended);
    }
}
