//! Bring-up step: the agent container, created on the internal network only,
//! provisioned before it starts, and started once its proxy is ready.

use super::bring_up::{Attempt, BringUp, LaunchError};
use super::client::{Engine, EngineError, ErrorKind};
use super::names::Names;
use super::specs::agent_container_spec;
use crate::core::provision::ProvisionSet;
use crate::core::provision::archive::{self, ArchiveError, Ownership};

impl<E: Engine> BringUp<E> {
    /// Creates the agent container on the internal network only and
    /// provisions it with `provision` (none for a warm bottle); returns its ID.
    pub(super) async fn create_agent(
        &self,
        names: &Names,
        internal_id: &str,
        proxy_address: &str,
        provision: Option<ProvisionSet>,
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
        if let Some(provision) = provision {
            self.check_cancelled()?;
            self.provision(&id, vec![(provision, Ownership::AGENT)])
                .await?;
        }
        Ok(id)
    }

    /// Streams the provisioning archive into the created container. The
    /// host files are read as the daemon takes them, so a large workspace
    /// takes no more memory than a small one.
    pub(super) async fn provision(
        &self,
        id: &str,
        sets: Vec<(ProvisionSet, Ownership)>,
    ) -> Result<(), LaunchError> {
        let clock = std::time::Instant::now();
        let (chunks, writer) = archive::stream_sets(sets);
        let uploaded = self
            .engine
            .upload_archive(id, "/", futures_util::StreamExt::boxed(chunks))
            .await;
        let written = writer.await.map_err(|e| LaunchError::Task(e.to_string()))?;
        tracing::debug!("provisioning archive uploaded in {:?}", clock.elapsed());
        match (written, uploaded) {
            (Ok(()), Ok(())) => Ok(()),
            // The upload failed first and the writer found no reader.
            (Err(ArchiveError::Write(_)), Err(err)) | (Ok(()), Err(err)) => Err(err.into()),
            // A host file could not be read: the cause of a failed upload.
            (Err(err), _) => Err(err.into()),
        }
    }

    pub(super) async fn start_agent(&self, names: &Names, id: &str) -> Result<(), Attempt> {
        self.check_cancelled()?;
        let runtime_failed = |detail: String| {
            Attempt::Failed(match self.plan.runtime.name() {
                Some(runtime) => LaunchError::RuntimeFailed {
                    name: names.agent.clone(),
                    id: id.to_owned(),
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
