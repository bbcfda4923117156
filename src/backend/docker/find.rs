//! A running bottle by the name of its agent container, with its proxy: the
//! commands that act on a bottle another process started (`egress`, `allow`)
//! start here.

use super::client::{Engine, EngineError};
use super::list::{label, managed};
use super::names::{LABEL_ROLE, LABEL_SESSION, Role};
use crate::diagnostic::Diagnostic;

/// The two containers of one bottle, by ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundBottle {
    pub agent_id: String,
    pub proxy_id: String,
    pub proxy_name: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FindError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no bottle is called `{name}`")]
    NoSuchBottle { name: String },
    #[error("bottle `{name}` has no proxy container")]
    NoProxy { name: String },
}

impl Diagnostic for FindError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::Engine(e) => e.hints(),
            Self::NoSuchBottle { .. } => {
                vec!["`claude-bottle list` shows the bottles that run".to_owned()]
            }
            Self::NoProxy { .. } => vec![
                "its session is being torn down, or was killed; `claude-bottle cleanup` removes what is left"
                    .to_owned(),
            ],
        }
    }
}

pub(crate) async fn find_bottle<E: Engine>(
    engine: &E,
    name: &str,
) -> Result<FoundBottle, FindError> {
    let containers = engine.list_containers(managed()).await?;
    let agent = containers
        .iter()
        .find(|c| c.name == name && label(c, LABEL_ROLE) == Role::Agent.as_str())
        .ok_or_else(|| FindError::NoSuchBottle {
            name: name.to_owned(),
        })?;
    let session = label(agent, LABEL_SESSION);
    let proxy = containers
        .iter()
        .find(|c| {
            label(c, LABEL_ROLE) == Role::Proxy.as_str() && label(c, LABEL_SESSION) == session
        })
        .ok_or_else(|| FindError::NoProxy {
            name: name.to_owned(),
        })?;
    Ok(FoundBottle {
        agent_id: agent.id.clone(),
        proxy_id: proxy.id.clone(),
        proxy_name: proxy.name.clone(),
    })
}
