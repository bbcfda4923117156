//! `cleanup`: find everything claude-bottle made, confirm, remove.

use super::args::CleanupArgs;
use super::{Error, confirm, show_plan};
use crate::backend::{AnyBackend, Backend};
use crate::printer::Printer;
use crate::term::Terminal;

pub async fn run<T: Terminal>(
    args: CleanupArgs,
    term: &mut T,
    printer: &Printer,
) -> Result<u8, Error> {
    let backend = AnyBackend::from_env(printer)?;
    run_with(&backend, &args, term, printer).await
}

async fn run_with<B: Backend, T: Terminal>(
    backend: &B,
    args: &CleanupArgs,
    term: &mut T,
    printer: &Printer,
) -> Result<u8, Error> {
    let plan = backend.prepare_cleanup().await?;
    if plan.is_empty() {
        printer.status("nothing to clean up: nothing made by claude-bottle is left");
        return Ok(0);
    }
    if show_plan(printer, &plan, args.dry_run, args.yes) {
        return Ok(0);
    }
    confirm(term, args.yes, "Remove all of these?").await?;
    let report = backend.cleanup(plan).await?;
    for resource in &report.removed {
        printer.status(format_args!(
            "removed {} {}",
            resource.kind.one, resource.name
        ));
    }
    Ok(0)
}
