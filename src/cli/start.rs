//! `start`: load, select the backend, prepare, show the plan, confirm,
//! launch, run Claude, tear down, and exit with Claude's code (SPEC §2).

use std::path::Path;

use super::args::StartArgs;
use super::signals::Signals;
use super::{Error, confirm, load_manifest, select_agent};
use crate::backend::{self, Backend, BottleHandle, BottleSpec, Selected};
use crate::core::env::{self, ProcessEnv};
use crate::term::Terminal;

pub async fn run<T: Terminal>(
    manifest_path: Option<&Path>,
    args: StartArgs,
    term: &mut T,
) -> Result<u8, Error> {
    // Before anything with side effects, so no phase can be killed half-way.
    let mut signals = Signals::install()?;
    let manifest = load_manifest(manifest_path)?;
    let (agent_name, agent) = select_agent(&manifest, args.agent.as_deref(), "start")?;
    let backend = backend::select(std::env::var(backend::BACKEND_ENV).ok().as_deref())?;
    let bottle = manifest.bottle_of(agent);
    // A hidden prompt may be waiting here: Ctrl-C must still get out.
    let env = tokio::select! {
        env = env::resolve(&agent.bottle, &bottle.env, &ProcessEnv, term) => env?,
        interrupted = signals.recv() => return Err(interrupted),
    };
    let cwd = if args.cwd {
        Some(std::env::current_dir().map_err(Error::CurrentDir)?)
    } else {
        None
    };
    let spec = BottleSpec {
        agent_name: agent_name.to_owned(),
        agent: agent.clone(),
        bottle_name: agent.bottle.clone(),
        bottle: bottle.clone(),
        env,
        cwd,
        pinned_name: args.name.clone(),
        remote_control: args.remote_control,
        host_home: std::env::home_dir().ok_or(Error::NoHome)?,
    };
    match backend {
        Selected::Docker(docker) => run_session(&docker, spec, &args, term, &mut signals).await,
    }
}

async fn run_session<B: Backend, T: Terminal>(
    backend: &B,
    spec: BottleSpec,
    args: &StartArgs,
    term: &mut T,
    signals: &mut Signals,
) -> Result<u8, Error> {
    let plan = tokio::select! {
        plan = backend.prepare(spec) => plan?,
        interrupted = signals.recv() => return Err(interrupted),
    };
    eprintln!("{plan}");
    if args.dry_run {
        return Ok(0);
    }
    // Returning drops the plan, which removes its scratch directory.
    tokio::select! {
        confirmed = confirm(term, args.yes, "Start this bottle?") => confirmed?,
        interrupted = signals.recv() => return Err(interrupted),
    }

    let tty = term.stdin_is_tty() && term.stdout_is_tty();
    let mut bottle = backend.launch(plan);
    let outcome: Result<i32, Error> = async {
        tokio::select! {
            started = bottle.start() => started?,
            interrupted = signals.recv() => return Err(interrupted),
        }
        tokio::select! {
            code = bottle.exec_claude(&args.claude_args, tty) => Ok(code?),
            interrupted = signals.recv() => Err(interrupted),
        }
    }
    .await;
    let closed = bottle.close().await;
    match (outcome, closed) {
        (Ok(code), Ok(())) => Ok(claude_exit_code(code)),
        (Ok(_), Err(teardown)) => Err(teardown.into()),
        (Err(err), Ok(())) => Err(err),
        (Err(err), Err(teardown)) => {
            tracing::error!("teardown also failed: {teardown}");
            Err(err)
        }
    }
}

/// Claude's exit status as ours. Codes outside 0..=255 (a docker CLI oddity)
/// become a plain failure rather than wrapping around to success.
fn claude_exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(super::error::EXIT_FAILURE)
}
