//! Getting the agent's work out of its container (issue 8 §1): the commands
//! of `core::work_home::bottle` run there through `exec`, and the bundle
//! comes out through the archive API. Every call is bounded in time and
//! size: the container is the agent's, and it may not answer or may answer
//! too much.

use std::path::Path;
use std::time::Duration;

use super::client::{Engine, EngineError, ErrorKind};
use crate::core::work_home::bottle::{
    NOT_A_REPO, bundle_command, changed_command, env, list_command, repos_command,
};
use crate::core::work_home::refs::{BottleWork, LISTING_LIMIT, ObjectId};
use crate::core::work_home::saved::{REPO_DEPTH, REPOS_LISTING_LIMIT, parse_repos};

/// How long finding the repositories under the workspace may take.
pub(crate) const FIND_LIMIT: Duration = Duration::from_secs(120);
/// How long recording the uncommitted work and listing the branches may take.
pub(crate) const LIST_LIMIT: Duration = Duration::from_secs(300);
/// How long writing and copying out the bundle may take.
pub(crate) const BUNDLE_TIME_LIMIT: Duration = Duration::from_secs(900);
/// The largest bundle brought home.
pub(crate) const BUNDLE_SIZE_LIMIT: u64 = 4 * 1024 * 1024 * 1024;

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

/// The git repositories under `workspace` in `container`, relative to it.
pub(crate) async fn find_repos<E: Engine>(
    engine: &E,
    container: &str,
    workspace: &str,
) -> Result<Vec<String>, EngineError> {
    let operation = "find the git repositories in the bottle's workspace";
    let out = bounded(
        operation,
        FIND_LIMIT,
        engine.exec_capped(
            container,
            repos_command(workspace, REPO_DEPTH),
            env(),
            REPOS_LISTING_LIMIT,
        ),
    )
    .await?;
    // `find` exits non-zero for a directory it could not read, which may
    // hold a repository: the work is not known to be all there.
    if out.exit_code != 0 {
        return Err(failed(
            operation,
            format!("it exited with {}: {}", out.exit_code, tail(&out.stderr)),
        ));
    }
    parse_repos(&out.stdout).map_err(|e| failed(operation, e.to_string()))
}

/// Records the uncommitted work under `scope` of the repository at
/// `workspace` in `container` as a commit and lists its branches; `None`
/// when the workspace is not a git work tree.
pub(crate) async fn list_work<E: Engine>(
    engine: &E,
    container: &str,
    workspace: &str,
    scope: &str,
    bottle: &str,
) -> Result<Option<BottleWork>, EngineError> {
    let operation = "read the bottle's git repository";
    let out = bounded(
        operation,
        LIST_LIMIT,
        engine.exec_capped(
            container,
            list_command(workspace, scope, bottle),
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
/// to `dest` on this host.
pub(crate) async fn export_bundle<E: Engine>(
    engine: &E,
    container: &str,
    workspace: &str,
    refs: &[String],
    bases: &[ObjectId],
    dest: &Path,
) -> Result<(), EngineError> {
    let cmd = bundle_command(workspace, refs, bases);
    to_file(engine, container, cmd, dest, "bundle the bottle's commits").await
}

/// Writes a tar of the files under `workspace` in `container` changed or
/// created since `since` (Unix seconds) to `dest` on this host.
pub(crate) async fn export_changed<E: Engine>(
    engine: &E,
    container: &str,
    workspace: &str,
    since: u64,
    dest: &Path,
) -> Result<(), EngineError> {
    let cmd = changed_command(workspace, since);
    to_file(
        engine,
        container,
        cmd,
        dest,
        "collect the files the agent changed",
    )
    .await
}

/// Runs `cmd` in `container` with its stdout going to `dest`, bounded.
async fn to_file<E: Engine>(
    engine: &E,
    container: &str,
    cmd: Vec<String>,
    dest: &Path,
    operation: &str,
) -> Result<(), EngineError> {
    let work = async {
        let out = engine
            .exec_to_file(container, cmd, env(), dest, BUNDLE_SIZE_LIMIT)
            .await?;
        if out.exit_code == 0 {
            Ok(())
        } else {
            Err(failed(
                operation,
                format!("it exited with {}: {}", out.exit_code, tail(&out.stderr)),
            ))
        }
    };
    bounded(operation, BUNDLE_TIME_LIMIT, work).await
}
