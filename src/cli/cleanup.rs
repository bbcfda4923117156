//! `cleanup`: find everything claude-bottle made, confirm, remove.

use super::args::CleanupArgs;
use super::{Error, confirm};
use crate::backend::{self, Backend, CleanupPlan, Selected};
use crate::term::Terminal;

pub async fn run<T: Terminal>(args: CleanupArgs, term: &mut T) -> Result<u8, Error> {
    match backend::select_from_env()? {
        Selected::Docker(docker) => run_with(&docker, &args, term).await,
    }
}

async fn run_with<B: Backend, T: Terminal>(
    backend: &B,
    args: &CleanupArgs,
    term: &mut T,
) -> Result<u8, Error> {
    let plan = backend.prepare_cleanup().await?;
    if plan.is_empty() {
        eprintln!("nothing to clean up: no container or network made by claude-bottle");
        return Ok(0);
    }
    eprintln!("{plan}");
    if args.dry_run {
        return Ok(0);
    }
    confirm(term, args.yes, "Remove all of these?").await?;
    let report = backend.cleanup(plan).await?;
    for container in &report.containers {
        eprintln!("removed container {container}");
    }
    for network in &report.networks {
        eprintln!("removed network {network}");
    }
    Ok(0)
}
