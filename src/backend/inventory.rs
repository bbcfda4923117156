//! What a backend reports about the engine's state in terms any engine can
//! answer: resources as a kind and a name, and whether the session that made
//! them still runs.

use std::fmt;

use serde::Serialize;

/// A kind of resource, as people read it ("container", "network", "pod").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub struct ResourceKind {
    pub one: &'static str,
    pub many: &'static str,
}

impl From<ResourceKind> for &'static str {
    fn from(kind: ResourceKind) -> Self {
        kind.one
    }
}

/// One resource on the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    pub kind: ResourceKind,
    pub name: String,
}

/// Whether the session that made a bottle is still running, as far as the
/// backend can tell from where it runs. A local engine asks whether the
/// owning process lives; a remote one would ask whether the session's lease
/// is still renewed. `Unknown` when the owner is out of sight (a session on
/// another host, a lease that cannot be read). `Warm`: made ahead by
/// `prewarm` and not claimed by any session yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Running,
    Ended,
    Unknown,
    Warm,
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "session still running",
            Self::Ended => "orphaned",
            Self::Unknown => "session state unknown",
            Self::Warm => "warm, no session yet",
        })
    }
}

/// One bottle the backend found, running or left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveBottle {
    /// The bottle's name: the name of the agent's container or pod.
    #[serde(rename = "container")]
    pub name: String,
    /// The engine's handle for it (an ID).
    #[serde(skip)]
    pub handle: String,
    pub agent: String,
    /// The manifest's name of its bottle.
    pub bottle: String,
    /// The manifest file its session was started from; `None` for the
    /// embedded default.
    pub manifest_path: Option<std::path::PathBuf>,
    /// The engine's word for its state ("running", "exited", ...).
    pub state: String,
    pub runtime: String,
    /// Seconds since it was created.
    pub age_seconds: u64,
    pub session: String,
    pub session_state: SessionState,
    /// The session that made it has ended without removing it.
    pub orphaned: bool,
    /// It was kept because its work did not come home (see
    /// `core::work_home::kept`); `cleanup` leaves it unless forced.
    pub work_not_home: bool,
}

#[cfg(test)]
impl ActiveBottle {
    /// A running bottle of `agent`, started from the embedded default.
    pub(crate) fn running(name: &str, agent: &str) -> Self {
        Self {
            name: name.into(),
            handle: format!("id-of-{name}"),
            agent: agent.into(),
            bottle: "default".into(),
            manifest_path: None,
            state: "running".into(),
            runtime: "runc".into(),
            age_seconds: 1,
            session: "s".into(),
            session_state: SessionState::Running,
            orphaned: false,
            work_not_home: false,
        }
    }
}

/// One thing `cleanup` would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupItem {
    pub resource: Resource,
    /// The engine's handle for it (an ID), so removal hits exactly this one.
    pub handle: String,
    /// What else a person wants to know before removing it ("agent, exited").
    pub detail: Option<String>,
    pub session: SessionState,
}

/// Everything `cleanup` would remove, in the order it removes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CleanupPlan {
    pub items: Vec<CleanupItem>,
}

impl CleanupPlan {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Grouped by kind in removal order, e.g. `containers (2):` then one
/// indented line each.
impl fmt::Display for CleanupPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<ResourceKind> = Vec::new();
        for item in &self.items {
            if !kinds.contains(&item.resource.kind) {
                kinds.push(item.resource.kind);
            }
        }
        for kind in kinds {
            let items: Vec<&CleanupItem> = self
                .items
                .iter()
                .filter(|i| i.resource.kind == kind)
                .collect();
            writeln!(f, "{} ({}):", kind.many, items.len())?;
            for item in items {
                match &item.detail {
                    Some(detail) => {
                        writeln!(f, "  {} ({detail}, {})", item.resource.name, item.session)?
                    }
                    None => writeln!(f, "  {}", item.resource.name)?,
                }
            }
        }
        Ok(())
    }
}

/// What `cleanup` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub removed: Vec<Resource>,
}
