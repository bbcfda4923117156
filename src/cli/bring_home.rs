//! The end of `start`'s session, before anything is removed: the agent's
//! work comes home to the host repository (issue 8 §1), or, without
//! `--cwd`, the repositories it made are saved as bundles under the state
//! directory; when that fails, its container is kept and recorded so
//! nothing is lost.

use std::path::{Path, PathBuf};

use super::Error;
use super::signals::Interrupts;
use crate::backend::BottleHandle;
use crate::core::work_home::host::HostRepo;
use crate::core::work_home::kept::{self, KeptWork};
use crate::core::work_home::refs::{self, ImportPlan, ObjectId, Source, Summary};
use crate::core::work_home::saved::{
    BUNDLES_SIZE_LIMIT, SAVE_TIME_LIMIT, SavedBundle, SavedBundles, bundle_file_names,
};
use crate::printer::Printer;

/// The most host branch tips the bottle is told it need not send again;
/// more only make the bundle smaller, never the import wrong.
const BASES_LIMIT: usize = 1000;

/// Brings the work home from `bottle`, whose workspace came from `cwd`, or
/// without one saves the repositories the agent made as bundles. A signal
/// meanwhile does not stop it: what is being saved is the user's work, and
/// every step is bounded in time, so the wait has an end. On failure, the
/// agent's container is kept and recorded, and the error says how to get
/// the work out.
pub(super) async fn bring_home<H: BottleHandle, S: Interrupts>(
    bottle: &mut H,
    cwd: Option<&Path>,
    signals: &mut S,
    printer: &Printer,
    signal: Option<i32>,
) -> Result<(), Error> {
    let outcome = {
        let work = async {
            match cwd {
                Some(cwd) => bring(bottle, cwd, printer)
                    .await
                    .map(|s| s.map(|s| s.to_string())),
                None => match tokio::time::timeout(SAVE_TIME_LIMIT, save_bundles(bottle, printer))
                    .await
                {
                    Ok(saved) => saved.map(|s| s.map(|s| s.to_string())),
                    Err(_) => Err(format!(
                        "saving the bottle's repositories took longer than {} minutes",
                        SAVE_TIME_LIMIT.as_secs() / 60
                    )),
                },
            }
        };
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
        Err(reason) => {
            // Where the work was to go: the `--cwd` directory, or the
            // bundles' directory.
            let home = match cwd {
                Some(cwd) => cwd.display().to_string(),
                None => kept::state_dir().map_or_else(
                    || "the state directory".to_owned(),
                    |d| d.join(BUNDLES).display().to_string(),
                ),
            };
            Err(keep(bottle, home, reason, signal))
        }
    }
}

/// Where the bundles go, under the state directory.
const BUNDLES: &str = "bundles";

/// Keeps the agent's container and records it, for the error to tell.
fn keep<H: BottleHandle>(
    bottle: &mut H,
    home: String,
    reason: String,
    signal: Option<i32>,
) -> Error {
    let kept = bottle.keep_agent();
    let unrecorded = kept.as_ref().and_then(|kept| {
        KeptWork {
            container: kept.name.clone(),
            id: kept.id.clone(),
            home,
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
    let listing = bottle.work_listing(".").await.map_err(|e| e.to_string())?;
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
        .map(|(planned, present)| (!present).then(|| planned.source.in_bottle()))
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
            .work_bundle(".", &wanted, &bases, &path)
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

/// Without `--cwd`: each git repository the agent made under its workspace
/// is bundled in the bottle (every branch, and the uncommitted work as one
/// more), fetched on this host into a scratch repository (every object
/// checked, each tip the one the bottle listed), and bundled again from
/// there, with plain branch names, to `<state dir>/bundles/<time>-<pid>/`.
/// Nothing is said when the agent made no repository. When one fails, the
/// bundles saved before it are still said, and the failure is the reason.
async fn save_bundles<H: BottleHandle>(
    bottle: &mut H,
    printer: &Printer,
) -> Result<Option<SavedBundles>, String> {
    let repos = bottle.work_repos().await.map_err(|e| e.to_string())?;
    if repos.is_empty() {
        return Ok(None);
    }
    let state = kept::state_dir().ok_or("there is no home directory to save the bundles under")?;
    let dir = state.join(BUNDLES).join(stamp());
    let scratch = tempfile::Builder::new()
        .prefix("claude-bottle-work-")
        .tempdir()
        .map_err(|e| format!("could not make a scratch directory for the bundles: {e}"))?;
    let mut saved = SavedBundles {
        bundles: Vec::new(),
    };
    let mut taken_out = 0;
    for (i, (repo, name)) in repos.iter().zip(bundle_file_names(&repos)).enumerate() {
        let scratch = scratch.path().join(i.to_string());
        let outcome = save_bundle(
            bottle,
            printer,
            repo,
            &scratch,
            dir.join(name),
            &mut taken_out,
        )
        .await;
        // Its copies go once it is saved: the scratch space is that of one.
        let _ = std::fs::remove_dir_all(&scratch);
        match outcome {
            Ok(Some(bundle)) => saved.bundles.push(bundle),
            Ok(None) => {}
            Err(reason) => {
                if !saved.bundles.is_empty() {
                    printer.always(&saved);
                }
                let shown: String = repo.escape_debug().collect();
                return Err(format!("could not save the repository `{shown}`: {reason}"));
            }
        }
    }
    Ok((!saved.bundles.is_empty()).then_some(saved))
}

/// Saves the repository `repo` of the bottle as the bundle `dest`, with
/// `scratch` (not yet made) to work in; `None` when it holds nothing.
/// `taken_out` counts the bytes of the bottle's bundles so far.
async fn save_bundle<H: BottleHandle>(
    bottle: &mut H,
    printer: &Printer,
    repo: &str,
    scratch: &Path,
    dest: PathBuf,
    taken_out: &mut u64,
) -> Result<Option<SavedBundle>, String> {
    let shown: String = repo.escape_debug().collect();
    let Some(listing) = bottle.work_listing(repo).await.map_err(|e| e.to_string())? else {
        printer.warn(
            format_args!(
                "`{shown}` in the bottle has a `.git`, but git finds no work tree there: not saved"
            ),
            &[],
        );
        return Ok(None);
    };
    for skipped in &listing.work.skipped {
        printer.warn(
            format_args!("branch {skipped} of `{shown}`: not saved"),
            &[],
        );
    }
    let plan = refs::bundle_plan(&listing.work);
    if plan.is_empty() {
        return Ok(None);
    }
    let sources: Vec<String> = plan.refs.iter().map(|r| r.source.in_bottle()).collect();
    std::fs::create_dir_all(scratch)
        .map_err(|e| format!("could not make a scratch directory for the bundle: {e}"))?;
    let raw = scratch.join("bottle.bundle");
    bottle
        .work_bundle(repo, &sources, &[], &raw)
        .await
        .map_err(|e| e.to_string())?;
    *taken_out += std::fs::metadata(&raw).map_or(0, |m| m.len());
    if *taken_out > BUNDLES_SIZE_LIMIT {
        return Err(format!(
            "the bottle's repositories make bundles larger than {} in all",
            indicatif::HumanBytes(BUNDLES_SIZE_LIMIT)
        ));
    }
    let bundle = SavedBundle {
        repo: repo.to_owned(),
        path: dest,
        branches: plan.refs.iter().map(|r| r.short().to_owned()).collect(),
        uncommitted: plan
            .refs
            .iter()
            .find(|r| r.source == Source::Uncommitted)
            .map(|r| r.short().to_owned()),
    };
    let (scratch, dest, head) = (
        scratch.join("repo"),
        bundle.path.clone(),
        listing.work.head.clone(),
    );
    blocking(move || rebundle(&plan, &raw, &sources, &scratch, &dest, head.as_deref())).await??;
    Ok(Some(bundle))
}

/// Fetches `raw`, the bottle's bundle of `sources`, into a new bare
/// repository at `scratch` under `plan`'s names (checking every object and
/// tip), and bundles its branches to `dest`, with `HEAD` on `head`.
fn rebundle(
    plan: &ImportPlan,
    raw: &Path,
    sources: &[String],
    scratch: &Path,
    dest: &Path,
    head: Option<&str>,
) -> Result<(), String> {
    let first = plan.refs.first().ok_or("there is nothing to bundle")?;
    let repo = HostRepo::init_bare(scratch, &first.tip).map_err(|e| e.to_string())?;
    let sources: Vec<Option<String>> = sources.iter().cloned().map(Some).collect();
    repo.write_refs(plan, Some(raw), &sources)
        .map_err(|e| e.to_string())?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("could not make `{}`: {e}", parent.display()))?;
    }
    repo.bundle_branches(dest, head).map_err(|e| e.to_string())
}

/// A directory name of its own for this session's saved work.
fn stamp() -> String {
    format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        std::process::id()
    )
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
    let dir = state.join("work").join(stamp());
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
