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
/// what they hold. (A record of a bottle not in the plan may be of another
/// engine's: it stays.)
fn holding_work(plan: &mut CleanupPlan, records: Vec<KeptWork>, force: bool) -> Vec<KeptWork> {
    // A name and a handle together are one bottle, whatever the engine.
    let held = |item: &CleanupItem, k: &KeptWork| k.is_of(&item.resource.name, Some(&item.handle));
    let present: Vec<KeptWork> = records
        .into_iter()
        .filter(|k| plan.items.iter().any(|item| held(item, k)))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Resource, ResourceKind, SessionState};

    const CONTAINER: ResourceKind = ResourceKind {
        one: "container",
        many: "containers",
    };

    fn plan() -> CleanupPlan {
        let item = |name: &str, handle: &str| CleanupItem {
            resource: Resource {
                kind: CONTAINER,
                name: name.into(),
            },
            handle: handle.into(),
            detail: Some("agent, exited".into()),
            session: SessionState::Ended,
        };
        CleanupPlan {
            items: vec![
                item("claude-bottle-a", "aaaa"),
                item("claude-bottle-b", "bbbb"),
            ],
        }
    }

    fn kept(container: &str, id: &str) -> KeptWork {
        KeptWork {
            container: container.into(),
            id: id.into(),
            home: "/src".into(),
            reason: "r".into(),
        }
    }

    #[test]
    fn a_bottle_holding_work_leaves_the_plan_unless_forced() {
        let mut p = plan();
        let records = vec![
            kept("claude-bottle-a", "aaaa"),
            kept("claude-bottle-b", "other"),
        ];
        let held = holding_work(&mut p, records.clone(), false);
        assert_eq!(
            held,
            [records[0].clone()],
            "a new bottle of an old name is not held"
        );
        assert_eq!(
            p.to_string(),
            "containers (1):\n  claude-bottle-b (agent, exited, orphaned)\n"
        );

        let mut p = plan();
        holding_work(&mut p, records, true);
        assert_eq!(
            p.to_string(),
            "containers (2):\n  claude-bottle-a (agent, exited, holds work that did not come home, orphaned)\n  claude-bottle-b (agent, exited, orphaned)\n"
        );
    }
}
