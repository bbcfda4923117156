//! Bring-up step: the agent container, created on the internal network only,
//! provisioned before it starts, and started once its proxy is ready.

use super::bring_up::{Attempt, BringUp, LaunchError};
use super::client::{Engine, EngineError, ErrorKind};
use super::names::Names;
use super::specs::agent_container_spec;

impl<E: Engine> BringUp<E> {
    /// Creates the agent container on the internal network only and
    /// provisions it with `archive` (none for a warm bottle); returns its ID.
    pub(super) async fn create_agent(
        &self,
        names: &Names,
        internal_id: &str,
        proxy_address: &str,
        archive: Option<Vec<u8>>,
    ) -> Result<String, Attempt> {
        let spec = agent_container_spec(&self.plan, names, internal_id, proxy_address);
        let id = match self.create_container(&spec).await {
            Err(Attempt::NameTaken) if names.pinned => {
                return Err(Attempt::Failed(LaunchError::PinnedNameTaken {
                    name: names.agent.clone(),
                }));
            }
            other => other?,
        };
        if let Some(archive) = archive {
            self.check_cancelled()?;
            self.engine.upload_archive(&id, "/", archive).await?;
        }
        Ok(id)
    }

    pub(super) async fn start_agent(&self, names: &Names, id: &str) -> Result<(), Attempt> {
        self.check_cancelled()?;
        let runtime_failed = |detail: String| {
            Attempt::Failed(match self.plan.runtime.name() {
                Some(runtime) => LaunchError::RuntimeFailed {
                    name: names.agent.clone(),
                    runtime: runtime.to_owned(),
                    detail,
                },
                None => LaunchError::Engine(EngineError::new(
                    ErrorKind::Other,
                    format!("start container `{}`", names.agent),
                    detail,
                )),
            })
        };
        match tokio::time::timeout(self.timeouts.agent_start, self.engine.start_container(id)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(runtime_failed(e.detail)),
            Err(_) => {
                return Err(runtime_failed(format!(
                    "no answer within {} s",
                    self.timeouts.agent_start.as_secs()
                )));
            }
        }
        let status = self.engine.inspect_container(id).await?;
        if !status.running {
            if let Some(error) = status.error.clone() {
                return Err(runtime_failed(error));
            }
            return Err(Attempt::Failed(LaunchError::AgentExited {
                name: names.agent.clone(),
                state: status.state.clone(),
                exit_code: status.exit_code.unwrap_or(-1),
                logs: self.log_tail(id).await,
            }));
        }
        Ok(())
    }
}
