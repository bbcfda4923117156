//! `cleanup`: find everything claude-bottle made, confirm, remove.

use super::args::CleanupArgs;
use super::{Error, confirm, show_plan};
use crate::backend::{AnyBackend, Backend, CleanupItem, CleanupPlan};
use crate::core::work_home::kept::KeptWork;
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
    let mut plan = backend.prepare_cleanup().await?;
    let kept = holding_work(&mut plan, KeptWork::all(), args.force);
    if !kept.is_empty() && !args.force {
        printer.always(format_args!(
            "left alone, holding work that did not come home (`--force` removes them too):\n{}",
            kept.iter()
                .map(|k| format!("  {} (work for {})", k.container, k.home))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
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
        for k in kept.iter().filter(|k| k.is_of(&resource.name, None)) {
            k.forget();
        }
    }
    Ok(0)
}

/// The records of bottles in `plan` holding work that did not come home.
/// Without `force`, those bottles leave the plan; with it, the plan says
/// what they hold. A record whose bottle is gone is dropped.
fn holding_work(plan: &mut CleanupPlan, records: Vec<KeptWork>, force: bool) -> Vec<KeptWork> {
    // A name and a handle together are one bottle, whatever the engine.
    let held = |item: &CleanupItem, k: &KeptWork| k.is_of(&item.resource.name, Some(&item.handle));
    let (present, gone): (Vec<KeptWork>, Vec<KeptWork>) = records
        .into_iter()
        .partition(|k| plan.items.iter().any(|item| held(item, k)));
    for k in gone {
        k.forget();
    }
    if force {
        for item in &mut plan.items {
            if present.iter().any(|k| held(item, k)) {
                let detail = item.detail.take().unwrap_or_default();
                item.detail = Some(format!("{detail}, holds work that did not come home"));
            }
        }
    } else {
        plan.items
            .retain(|item| !present.iter().any(|k| held(item, k)));
    }
    present
}
