//! Bring-up step: the proxy, created with its config, connected to both
//! networks, started, and probed until pipelock reports healthy.

use std::time::{Duration, Instant};

use super::bring_up::{Attempt, BringUp, LaunchError};
use super::client::{Engine, whole_tar};
use super::names::Names;
use super::specs::{PROXY_CONFIG_PATH, PROXY_HEALTH_COMMAND, proxy_container_spec};
use crate::core::provision::archive::root_file_archive;

const PROXY_POLL_INTERVAL: Duration = Duration::from_millis(50);
const PROXY_LOG_LINES: u32 = 20;

impl<E: Engine> BringUp<E> {
    /// Creates the proxy on the internal network, puts its config in place,
    /// connects it to the egress network and starts it; returns its ID.
    pub(super) async fn launch_proxy(
        &self,
        names: &Names,
        internal_id: &str,
        egress_id: &str,
    ) -> Result<String, Attempt> {
        let spec = proxy_container_spec(&self.plan, names, internal_id);
        let id = self.create_container(&spec).await?;
        self.check_cancelled()?;
        let config = root_file_archive(PROXY_CONFIG_PATH, &self.plan.pipelock_yaml)
            .map_err(LaunchError::from)?;
        self.engine
            .upload_archive(&id, "/", whole_tar(config))
            .await?;
        self.check_cancelled()?;
        self.engine.connect_network(egress_id, &id).await?;
        self.check_cancelled()?;
        self.engine.start_container(&id).await?;
        Ok(id)
    }

    /// The proxy's address on the internal network, assigned when it started.
    pub(super) async fn proxy_address(
        &self,
        names: &Names,
        id: &str,
        internal_id: &str,
    ) -> Result<String, LaunchError> {
        let status = self.engine.inspect_container(id).await?;
        status
            .addresses
            .get(internal_id)
            .or_else(|| status.addresses.get(&names.internal_network))
            .cloned()
            .ok_or_else(|| LaunchError::ProxyNoAddress {
                name: names.proxy.clone(),
                network: names.internal_network.clone(),
            })
    }

    pub(super) async fn wait_until_ready(&self, name: &str, id: &str) -> Result<(), LaunchError> {
        let view = self
            .printer
            .progress_line(format!("waiting for the proxy `{name}`"));
        let result = tokio::select! {
            ready = self.probe_until_ready(name, id) => ready,
            () = self.cancelled() => Err(LaunchError::Cancelled),
        };
        drop(view);
        result
    }

    /// Runs the image's own health command until it passes. Probing on
    /// demand costs nothing once the proxy is up, where a short health-check
    /// interval would run it several times a second for the whole session.
    async fn probe_until_ready(&self, name: &str, id: &str) -> Result<(), LaunchError> {
        let started = Instant::now();
        loop {
            let status = self.engine.inspect_container(id).await?;
            if !status.running {
                return Err(LaunchError::ProxyExited {
                    name: name.to_owned(),
                    state: status.state.clone(),
                    exit_code: status.exit_code.unwrap_or(-1),
                    logs: self.log_tail(id).await,
                });
            }
            let probe = self
                .engine
                .exec(id, PROXY_HEALTH_COMMAND.map(str::to_owned).to_vec())
                .await;
            match probe {
                Ok(out) if out.exit_code == 0 => return Ok(()),
                Ok(out) => tracing::debug!(exit = out.exit_code, "proxy not ready yet"),
                // Exiting between the inspect and the exec: the next inspect says so.
                Err(e) => tracing::debug!("proxy probe failed: {e}"),
            }
            if started.elapsed() >= self.timeouts.proxy_ready {
                return Err(LaunchError::ProxyTimeout {
                    name: name.to_owned(),
                    seconds: self.timeouts.proxy_ready.as_secs(),
                    logs: self.log_tail(id).await,
                });
            }
            tokio::time::sleep(PROXY_POLL_INTERVAL).await;
        }
    }

    /// The container's last log lines, indented under an error; empty when there are none.
    pub(super) async fn log_tail(&self, id: &str) -> String {
        match self.engine.logs_tail(id, PROXY_LOG_LINES).await {
            Ok(text) if !text.trim().is_empty() => {
                let mut out = String::from("; its last log lines:");
                for line in text.lines() {
                    out.push_str("\n    | ");
                    out.push_str(line);
                }
                out
            }
            Ok(_) => String::new(),
            Err(e) => format!("; its logs could not be read: {e}"),
        }
    }
}
