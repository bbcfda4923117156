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
    let backend = backend::select_from_env()?;
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
    session_result(outcome, closed)
}

/// The session's exit: Claude's code, or the first failure. A signal whose
/// teardown failed reports the teardown's failure (and its `cleanup` hint)
/// with the signal's exit code: the plain interruption message says that
/// everything was removed, which is then untrue.
fn session_result(
    outcome: Result<i32, Error>,
    closed: Result<(), backend::BackendError>,
) -> Result<u8, Error> {
    match (outcome, closed) {
        (Ok(code), Ok(())) => Ok(claude_exit_code(code)),
        (Ok(_), Err(teardown)) => Err(teardown.into()),
        (Err(err), Ok(())) => Err(err),
        (Err(Error::Interrupted { signal, name }), Err(mut teardown)) => {
            teardown.message = format!("interrupted by {name}; {}", teardown.message);
            teardown.signal = Some(signal);
            Err(teardown.into())
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;

    fn left_behind() -> BackendError {
        BackendError::new(
            "teardown left resources behind:\n  - network `n`\n  hint: run `claude-bottle cleanup` to remove them",
        )
    }

    #[test]
    fn an_interruption_whose_teardown_failed_does_not_claim_a_clean_exit() {
        let interrupted = Error::Interrupted {
            signal: libc::SIGINT,
            name: "SIGINT",
        };
        let err = session_result(Err(interrupted), Err(left_behind())).unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("everything the session created was removed"),
            "{text}"
        );
        assert!(
            text.starts_with("interrupted by SIGINT; teardown left"),
            "{text}"
        );
        assert!(text.contains("claude-bottle cleanup"), "{text}");
        assert_eq!(err.exit_code(), 130);
    }

    #[test]
    fn a_clean_interruption_keeps_its_message_and_code() {
        let interrupted = Error::Interrupted {
            signal: libc::SIGTERM,
            name: "SIGTERM",
        };
        let err = session_result(Err(interrupted), Ok(())).unwrap_err();
        assert!(
            err.to_string()
                .contains("everything the session created was removed")
        );
        assert_eq!(err.exit_code(), 143);
    }

    #[test]
    fn claude_code_passes_through_and_a_failed_teardown_after_it_is_reported() {
        assert_eq!(session_result(Ok(3), Ok(())).unwrap(), 3);
        let err = session_result(Ok(0), Err(left_behind())).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("cleanup"));
    }
}
