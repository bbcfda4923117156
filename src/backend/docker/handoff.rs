//! Claude's secrets, handed to the bottle as the last step of bring-up
//! (`core::secret_handoff`): an exec as the agent's user reads them from
//! its stdin into the handoff directory, which Claude's launcher loads and
//! removes. On a claimed warm bottle this overlaps the provisioning upload.

use std::time::{Duration, Instant};

use super::bring_up::{BringUp, LaunchError};
use super::client::Engine;
use crate::core::agent_env::exec_env;
use crate::core::provision::container_user;
use crate::core::secret_handoff::{handoff_dir, payload, writer_command};

/// How long the handoff's exec may take.
const HANDOFF_LIMIT: Duration = Duration::from_secs(60);
/// What the handoff's exec may print (an error message).
const HANDOFF_OUTPUT_LIMIT: usize = 64 * 1024;

impl<E: Engine> BringUp<E> {
    /// Writes the session's secrets into the handoff directory of the
    /// running agent container `agent_id` (named `agent`), and returns the
    /// directory; `None` when there are none. A warm bottle being made gets
    /// none: it carries no secrets, the session that claims it hands them
    /// over.
    pub(super) async fn hand_over(
        &self,
        agent_id: &str,
        agent: &str,
    ) -> Result<Option<String>, LaunchError> {
        let secrets = exec_env(&self.plan.spec.env);
        if secrets.is_empty() || self.plan.owner.warm.is_some() {
            return Ok(None);
        }
        self.check_cancelled()?;
        let failed = |detail: String| LaunchError::HandoffFailed {
            name: agent.to_owned(),
            detail,
        };
        // `prepare` checked that the payload can be made.
        let input = payload(&secrets).map_err(|e| failed(e.to_string()))?;
        let dir = handoff_dir(&self.plan.owner.session);
        let user = container_user();
        let clock = Instant::now();
        let exec = self.engine.exec_fed(
            agent_id,
            writer_command(&dir),
            &user,
            &input,
            HANDOFF_OUTPUT_LIMIT,
        );
        let reply = tokio::time::timeout(HANDOFF_LIMIT, exec)
            .await
            .map_err(|_| failed(format!("no answer within {} s", HANDOFF_LIMIT.as_secs())))??;
        if reply.exit_code != 0 {
            let stderr = reply.stderr.trim();
            return Err(failed(format!(
                "its writer exited with {}{}{stderr}",
                reply.exit_code,
                if stderr.is_empty() { "" } else { ": " }
            )));
        }
        tracing::debug!(
            "secret environment handed to `{agent}` in {:?}",
            clock.elapsed()
        );
        Ok(Some(dir))
    }
}
