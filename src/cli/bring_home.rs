//! The end of `start`'s session, before anything is removed: the agent's
//! work comes home to the host repository (issue 8 §1), or its container is
//! kept and recorded so nothing is lost.

use std::path::{Path, PathBuf};

use super::Error;
use super::signals::Interrupts;
use crate::backend::BottleHandle;
use crate::core::work_home::bottle::UNCOMMITTED_REF;
use crate::core::work_home::host::HostRepo;
use crate::core::work_home::kept::{self, KeptWork};
use crate::core::work_home::refs::{self, ObjectId, Source, Summary};
use crate::printer::Printer;

/// The most host branch tips the bottle is told it need not send again;
/// more only make the bundle smaller, never the import wrong.
const BASES_LIMIT: usize = 1000;

/// Brings the work home from `bottle`, whose workspace came from `cwd`.
/// A signal meanwhile does not stop it: what is being saved is the user's
/// work, and every step is bounded in time, so the wait has an end. On
/// failure, the agent's container is kept and recorded, and the error says
/// how to get the work out.
pub(super) async fn bring_home<H: BottleHandle, S: Interrupts>(
    bottle: &mut H,
    cwd: Option<&Path>,
    signals: &mut S,
    printer: &Printer,
    signal: Option<i32>,
) -> Result<(), Error> {
    let Some(cwd) = cwd else {
        return Ok(());
    };
    let outcome = {
        let work = bring(bottle, cwd, printer);
        tokio::pin!(work);
        loop {
            tokio::select! {
                outcome = &mut work => break outcome,
                interrupted = signals.recv() => {
                    if let Error::Interrupted { name, .. } = interrupted {
                        printer.status(format_args!(
                            "received {name}; still bringing the agent's work home, then tearing down"
                        ));
                    }
                }
            }
        }
    };
    match outcome {
        Ok(Some(summary)) => {
            printer.always(&summary);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(reason) => Err(keep(bottle, cwd, reason, signal)),
    }
}

/// Keeps the agent's container and records it, for the error to tell.
fn keep<H: BottleHandle>(bottle: &mut H, cwd: &Path, reason: String, signal: Option<i32>) -> Error {
    let kept = bottle.keep_agent();
    let unrecorded = kept.as_ref().and_then(|kept| {
        KeptWork {
            container: kept.name.clone(),
            id: kept.id.clone(),
            home: cwd.display().to_string(),
            reason: reason.clone(),
        }
        .record()
        .err()
        .map(|e| e.to_string())
    });
    Error::WorkNotHome {
        reason,
        kept: kept.map(Box::new),
        unrecorded,
        signal,
    }
}

/// The steps, each failure worded as the reason the work did not come home.
async fn bring<H: BottleHandle>(
    bottle: &mut H,
    cwd: &Path,
    printer: &Printer,
) -> Result<Option<Summary>, String> {
    let owned_cwd = cwd.to_path_buf();
    let repo = blocking(move || HostRepo::discover(&owned_cwd)).await?;
    let listing = bottle.work_listing().await.map_err(|e| e.to_string())?;
    let Some(listing) = listing else {
        save_changed(bottle, printer).await?;
        return Ok(None);
    };
    let Some(repo) = repo else {
        return Err(format!(
            "the bottle's workspace is a git repository, but `{}` on this host is not in one",
            cwd.display()
        ));
    };
    for skipped in &listing.work.skipped {
        printer.warn(format_args!("branch {skipped}: not brought home"), &[]);
    }
    let host = repo.clone();
    let branches = blocking(move || host.branches())
        .await?
        .map_err(|e| e.to_string())?;
    let plan = refs::plan(refs::bottle_name(&listing.bottle), &listing.work, &branches)
        .map_err(|e| e.to_string())?;
    if plan.is_empty() {
        printer.status(
            "nothing to bring home: no branch in the bottle moved and nothing is uncommitted",
        );
        return Ok(None);
    }
    let (host, tips) = (
        repo.clone(),
        plan.refs.iter().map(|r| r.tip.clone()).collect::<Vec<_>>(),
    );
    let present = blocking(move || host.commits_present(&tips.iter().collect::<Vec<_>>()))
        .await?
        .map_err(|e| e.to_string())?;
    // The refs whose commits the host lacks come in a bundle, by their
    // names in the bottle.
    let bundle_refs: Vec<Option<String>> = plan
        .refs
        .iter()
        .zip(&present)
        .map(|(planned, present)| {
            (!present).then(|| match &planned.source {
                Source::Branch(name) => format!("refs/heads/{name}"),
                Source::Uncommitted => UNCOMMITTED_REF.to_owned(),
            })
        })
        .collect();
    let mut wanted: Vec<String> = bundle_refs.iter().flatten().cloned().collect();
    wanted.dedup();
    let scratch = tempfile::Builder::new()
        .prefix("claude-bottle-work-")
        .tempdir()
        .map_err(|e| format!("could not make a scratch directory for the bundle: {e}"))?;
    let bundle: Option<PathBuf> = if wanted.is_empty() {
        None
    } else {
        let path = scratch.path().join("work.bundle");
        let mut bases: Vec<ObjectId> = branches.values().cloned().collect();
        bases.sort();
        bases.dedup();
        bases.truncate(BASES_LIMIT);
        bottle
            .work_bundle(&wanted, &bases, &path)
            .await
            .map_err(|e| e.to_string())?;
        Some(path)
    };
    let (host, import_plan) = (repo.clone(), plan.clone());
    let written = blocking(move || host.import(&import_plan, bundle.as_deref(), &bundle_refs))
        .await?
        .map_err(|e| e.to_string())?;
    drop(scratch);
    Ok(Some(Summary {
        repo: repo.work_tree.display().to_string(),
        taken: plan.taken,
        namespace: plan.namespace,
        written,
    }))
}

/// A workspace that is no git repository: the files the agent changed or
/// created go to `<state dir>/work/<time>-<pid>/`, and the path is printed.
async fn save_changed<H: BottleHandle>(bottle: &mut H, printer: &Printer) -> Result<(), String> {
    let scratch = tempfile::Builder::new()
        .prefix("claude-bottle-work-")
        .tempdir()
        .map_err(|e| format!("could not make a scratch directory: {e}"))?;
    let tar = scratch.path().join("changed.tar");
    bottle
        .changed_files(&tar)
        .await
        .map_err(|e| e.to_string())?;
    let state = kept::state_dir().ok_or("there is no home directory to save the files under")?;
    let dir = state.join("work").join(format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        std::process::id()
    ));
    let target = dir.clone();
    let saved = blocking(move || unpack_changed(&tar, &target)).await??;
    drop(scratch);
    if saved == 0 {
        printer.status("nothing to save: the agent changed no file in the workspace");
    } else {
        printer.always(format_args!(
            "saved the {saved} file(s) the agent changed or created to {}",
            dir.display()
        ));
    }
    Ok(())
}

/// Unpacks `tar` (the agent's: the tar crate keeps every entry inside
/// `dir`) into `dir`, made only when there is something to put in it.
fn unpack_changed(tar: &Path, dir: &Path) -> Result<usize, String> {
    let failed = |e: std::io::Error| {
        format!(
            "could not save the changed files in `{}`: {e}",
            dir.display()
        )
    };
    let open = || {
        std::fs::File::open(tar)
            .map(tar::Archive::new)
            .map_err(failed)
    };
    let count = open()?
        .entries()
        .map_err(failed)?
        .filter(|e| e.as_ref().is_ok_and(|e| !e.header().entry_type().is_dir()))
        .count();
    if count == 0 {
        return Ok(0);
    }
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut archive = open()?;
    archive.set_overwrite(false);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.unpack(dir).map_err(failed)?;
    Ok(count)
}

/// Runs host `git` off the async threads, so signals are still heard.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the import stopped: {e}"))
}
