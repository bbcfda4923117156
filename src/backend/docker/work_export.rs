//! Getting the agent's work out of its container (issue 8 §1): the commands
//! of `core::work_home::bottle` run there through `exec`, and the bundle
//! comes out through the archive API. Every call is bounded in time and
//! size: the container is the agent's, and it may not answer or may answer
//! too much.

use std::path::Path;
use std::time::Duration;

use super::client::{Engine, EngineError, ErrorKind};
use crate::core::work_home::bottle::{NOT_A_REPO, bundle_command, env, list_command};
use crate::core::work_home::refs::{BottleWork, LISTING_LIMIT, ObjectId};

/// How long recording the uncommitted work and listing the branches may take.
pub(crate) const LIST_LIMIT: Duration = Duration::from_secs(300);
/// How long writing and copying out the bundle may take.
pub(crate) const BUNDLE_TIME_LIMIT: Duration = Duration::from_secs(900);
/// The largest bundle brought home.
pub(crate) const BUNDLE_SIZE_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
/// Where the bundle is written in the container.
const BUNDLE_PATH: &str = "/tmp/claude-bottle-work.bundle";
/// The most bytes of the bundle command's own output kept.
const BUNDLE_OUTPUT_LIMIT: usize = 64 * 1024;

fn failed(operation: &str, detail: impl Into<String>) -> EngineError {
    EngineError::new(ErrorKind::Other, operation, detail)
}

async fn bounded<T>(
    operation: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| EngineError::timed_out(operation, limit))?
}

/// The last few lines of what a command said on stderr, for an error.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim().lines().collect();
    let tail = lines[lines.len().saturating_sub(3)..].join("; ");
    tail.chars()
        .take(400)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Records the uncommitted work of the repository at `workspace` in
/// `container` as a commit and lists its branches; `None` when the
/// workspace is not a git work tree.
pub(crate) async fn list_work<E: Engine>(
    engine: &E,
    container: &str,
    workspace: &str,
    bottle: &str,
) -> Result<Option<BottleWork>, EngineError> {
    let operation = "read the bottle's git repository";
    let out = bounded(
        operation,
        LIST_LIMIT,
        engine.exec_capped(
            container,
            list_command(workspace, bottle),
            env(),
            LISTING_LIMIT,
        ),
    )
    .await?;
    if out.exit_code != 0 {
        return Err(failed(
            operation,
            format!("git exited with {}: {}", out.exit_code, tail(&out.stderr)),
        ));
    }
    if out.stdout.trim() == NOT_A_REPO {
        return Ok(None);
    }
    BottleWork::parse(&out.stdout)
        .map(Some)
        .map_err(|e| failed(operation, e.to_string()))
}

/// Writes a bundle of `refs` (without what `bases` reach) in `container`
/// and copies it to `dest`.
pub(crate) async fn export_bundle<E: Engine>(
    engine: &E,
    container: &str,
    workspace: &str,
    refs: &[String],
    bases: &[ObjectId],
    dest: &Path,
) -> Result<u64, EngineError> {
    let operation = "bundle the bottle's commits";
    let work = async {
        let out = engine
            .exec_capped(
                container,
                bundle_command(workspace, BUNDLE_PATH, refs, bases),
                env(),
                BUNDLE_OUTPUT_LIMIT,
            )
            .await?;
        if out.exit_code != 0 {
            return Err(failed(
                operation,
                format!("git exited with {}: {}", out.exit_code, tail(&out.stderr)),
            ));
        }
        engine
            .download_file(container, BUNDLE_PATH, dest, BUNDLE_SIZE_LIMIT)
            .await
    };
    bounded(operation, BUNDLE_TIME_LIMIT, work).await
}
