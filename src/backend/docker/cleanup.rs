//! `list` and `cleanup`: what claude-bottle left on the daemon, found by the
//! `claude-bottle.managed` label (SPEC §2 "The other commands").

use std::fmt;
use std::path::{Path, PathBuf};

use super::client::{ContainerInfo, Engine, EngineError, LabelFilter};
use super::names::{LABEL_AGENT, LABEL_MANAGED, LABEL_PID, LABEL_ROLE, LABEL_SESSION, Role};
use crate::backend::{ActiveBottle, CleanupReport};

fn managed() -> LabelFilter {
    vec![(LABEL_MANAGED.to_owned(), "true".to_owned())]
}

/// Whether the claude-bottle process named by a `claude-bottle.pid` label is
/// still alive on this host. A missing or unreadable label counts as gone.
pub(crate) fn owner_alive(labels: &super::client::Labels) -> bool {
    labels
        .get(LABEL_PID)
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(pid_alive)
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

fn label<'a>(c: &'a ContainerInfo, key: &str) -> &'a str {
    c.labels.get(key).map_or("", String::as_str)
}

/// The agent containers of every session, running or not, oldest first.
pub(crate) async fn list_active<E: Engine>(
    engine: &E,
    now: i64,
) -> Result<Vec<ActiveBottle>, EngineError> {
    let mut filter = managed();
    filter.push((LABEL_ROLE.to_owned(), Role::Agent.as_str().to_owned()));
    let mut containers = engine.list_containers(filter).await?;
    containers.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let inspections = containers.iter().map(|c| engine.inspect_container(&c.id));
    let statuses = futures_util::future::join_all(inspections).await;
    Ok(containers
        .iter()
        .zip(statuses)
        .map(|(c, status)| {
            let runtime = match status {
                Ok(s) => s
                    .runtime
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "runc".to_owned()),
                // Removed between the list and the inspect.
                Err(_) => "unknown".to_owned(),
            };
            ActiveBottle {
                container: c.name.clone(),
                agent: label(c, LABEL_AGENT).to_owned(),
                state: c.state.clone(),
                runtime,
                age_seconds: u64::try_from(now.saturating_sub(c.created)).unwrap_or(0),
                session: label(c, LABEL_SESSION).to_owned(),
                orphaned: !owner_alive(&c.labels),
            }
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DoomedContainer {
    pub id: String,
    pub name: String,
    pub state: String,
    pub role: String,
    pub live: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DoomedNetwork {
    pub id: String,
    pub name: String,
}

/// Everything claude-bottle made, sorted by name: containers in any state,
/// then networks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DockerCleanupPlan {
    pub(crate) containers: Vec<DoomedContainer>,
    pub(crate) networks: Vec<DoomedNetwork>,
    /// Scratch directories of claude-bottle processes that are gone.
    pub(crate) scratch_dirs: Vec<PathBuf>,
}

impl DockerCleanupPlan {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.scratch_dirs.is_empty()
    }
}

/// Scratch directories under `root` whose claude-bottle process is gone
/// (a session killed with SIGKILL cannot remove its own). A directory counts
/// only when it has the whole shape `claude-bottle-<pid>-<random>` and holds
/// nothing but the proxy config: `root` is the shared temporary directory,
/// and a user's own `claude-bottle-2026` must never be taken for one.
pub(crate) fn stale_scratch_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let Some(rest) = name
                .to_str()
                .and_then(|n| n.strip_prefix(super::plan::SCRATCH_PREFIX))
            else {
                return false;
            };
            let owner = rest
                .split_once('-')
                .filter(|(_, random)| !random.is_empty())
                .and_then(|(pid, _)| pid.parse::<i32>().ok());
            owner.is_some_and(|pid| !pid_alive(pid))
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && holds_only_scratch_files(&entry.path())
        })
        .map(|entry| entry.path())
        .collect();
    stale.sort();
    stale
}

/// Whether `dir` holds nothing but what `prepare` writes there.
fn holds_only_scratch_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.into_iter().all(|entry| {
            entry.is_ok_and(|e| {
                e.file_name() == super::plan::PIPELOCK_FILE_NAME
                    && e.file_type().is_ok_and(|t| t.is_file())
            })
        })
    })
}

impl fmt::Display for DockerCleanupPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(
                f,
                "nothing to clean up: no claude-bottle containers or networks"
            );
        }
        writeln!(f, "containers ({}):", self.containers.len())?;
        for c in &self.containers {
            let owner = if c.live {
                "session still running"
            } else {
                "orphaned"
            };
            writeln!(f, "  {} ({}, {}, {owner})", c.name, c.role, c.state)?;
        }
        writeln!(f, "networks ({}):", self.networks.len())?;
        for n in &self.networks {
            writeln!(f, "  {}", n.name)?;
        }
        if !self.scratch_dirs.is_empty() {
            writeln!(f, "scratch directories ({}):", self.scratch_dirs.len())?;
            for dir in &self.scratch_dirs {
                writeln!(f, "  {}", dir.display())?;
            }
        }
        Ok(())
    }
}

/// `scratch_root` is where sessions make their scratch directories (the
/// system's temporary directory).
pub(crate) async fn prepare_cleanup<E: Engine>(
    engine: &E,
    scratch_root: &Path,
) -> Result<DockerCleanupPlan, EngineError> {
    let (containers, networks) = futures_util::join!(
        engine.list_containers(managed()),
        engine.list_networks(managed())
    );
    let mut containers: Vec<DoomedContainer> = containers?
        .into_iter()
        .map(|c| DoomedContainer {
            live: owner_alive(&c.labels),
            role: label(&c, LABEL_ROLE).to_owned(),
            id: c.id,
            name: c.name,
            state: c.state,
        })
        .collect();
    containers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let mut networks: Vec<DoomedNetwork> = networks?
        .into_iter()
        .map(|n| DoomedNetwork {
            id: n.id,
            name: n.name,
        })
        .collect();
    networks.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(DockerCleanupPlan {
        containers,
        networks,
        scratch_dirs: stale_scratch_dirs(scratch_root),
    })
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cleanup removed {} container(s) and {} network(s) but not:{}\n  hint: a network still in use by a container claude-bottle did not start cannot be removed; detach it (`docker network disconnect`) and run cleanup again",
    removed.containers.len(),
    removed.networks.len(),
    failures.iter().map(|f| format!("\n  - {f}")).collect::<String>()
)]
pub(crate) struct CleanupError {
    pub removed: CleanupReport,
    pub failures: Vec<String>,
}

/// Removes the plan's containers (they hold the network attachments), then
/// its networks by ID.
pub(crate) async fn cleanup<E: Engine>(
    engine: &E,
    plan: DockerCleanupPlan,
) -> Result<CleanupReport, CleanupError> {
    let mut report = CleanupReport::default();
    let mut failures = Vec::new();
    let removals = plan
        .containers
        .iter()
        .map(|c| async move { (c, engine.remove_container(&c.id).await) });
    for (c, result) in futures_util::future::join_all(removals).await {
        match result {
            Ok(()) => report.containers.push(c.name.clone()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let removals = plan
        .networks
        .iter()
        .map(|n| async move { (n, engine.remove_network(&n.id).await) });
    for (n, result) in futures_util::future::join_all(removals).await {
        match result {
            Ok(()) => report.networks.push(n.name.clone()),
            Err(e) => failures.push(format!("{e} (network `{}`)", n.name)),
        }
    }
    for dir in &plan.scratch_dirs {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            failures.push(format!(
                "could not remove scratch directory `{}`: {e}",
                dir.display()
            ));
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(CleanupError {
            removed: report,
            failures,
        })
    }
}
