//! `list`: the agent containers of every session, found by the
//! `claude-bottle.managed` label (SPEC §2 "The other commands").

use super::client::{ContainerInfo, Engine, EngineError, LabelFilter};
use super::names::{
    LABEL_AGENT, LABEL_BOTTLE, LABEL_MANAGED, LABEL_MANIFEST, LABEL_ROLE, LABEL_SESSION, Role,
    this_host,
};
use super::warm::{state_of, warm_states};
use crate::backend::{ActiveBottle, SessionState};

/// Everything claude-bottle labelled, in any state.
pub(crate) fn managed() -> LabelFilter {
    vec![(LABEL_MANAGED.to_owned(), "true".to_owned())]
}

pub(crate) fn label<'a>(c: &'a ContainerInfo, key: &str) -> &'a str {
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
    let here = this_host();
    let inspections = containers.iter().map(|c| engine.inspect_container(&c.id));
    let (statuses, warm) = futures_util::join!(
        futures_util::future::join_all(inspections),
        warm_states(engine, &containers, &here)
    );
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
            let session_state = state_of(&c.labels, &warm, &here);
            ActiveBottle {
                name: c.name.clone(),
                handle: c.id.clone(),
                agent: label(c, LABEL_AGENT).to_owned(),
                bottle: label(c, LABEL_BOTTLE).to_owned(),
                manifest_path: c.labels.get(LABEL_MANIFEST).map(std::path::PathBuf::from),
                state: c.state.clone(),
                runtime,
                age_seconds: u64::try_from(now.saturating_sub(c.created)).unwrap_or(0),
                session: label(c, LABEL_SESSION).to_owned(),
                session_state,
                orphaned: session_state == SessionState::Ended,
                // The backend cannot know; the CLI marks it from the record.
                work_not_home: false,
            }
        })
        .collect())
}
