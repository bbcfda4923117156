//! `start`: load, select the backend, prepare, show the plan, confirm,
//! launch, run Claude, tear down, and exit with Claude's code (SPEC §2).

use std::path::Path;

use super::args::StartArgs;
use super::bring_home::bring_home;
use super::signals::{Interrupts, Signals};
use super::{Error, confirm, load_manifest, select_agent, show_plan};
use crate::backend::{AnyBackend, Backend, BackendError, BottleHandle};
use crate::core::egress_log::{DenialSummary, EgressEvent, LogLine, parse_line};
use crate::core::env::{self, ProcessEnv, ResolvedEnv};
use crate::core::spec::BottleSpec;
use crate::manifest::{Agent, Manifest, ManifestSource};
use crate::printer::Printer;
use crate::term::Terminal;

pub async fn run<T: Terminal>(
    manifest_path: Option<&Path>,
    args: StartArgs,
    term: &mut T,
    printer: &Printer,
) -> Result<u8, Error> {
    // Before anything with side effects, so no phase can be killed half-way.
    let mut signals = Signals::install()?;
    let manifest = load_manifest(manifest_path)?;
    let (agent_name, agent) = select_agent(&manifest, args.agent.as_deref(), "start")?;
    let backend = AnyBackend::from_env(printer)?;
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
        cwd,
        pinned_name: args.name.clone(),
        remote_control: args.remote_control,
        ..bottle_spec(&manifest, agent_name, agent, env)?
    };
    run_session(&backend, spec, &args, term, &mut signals, printer).await
}

/// The spec of a bottle of `agent` from `manifest` with `env`, without the
/// options of `start` (no `--cwd`, `--name` or `--remote-control`).
pub(super) fn bottle_spec(
    manifest: &Manifest,
    agent_name: &str,
    agent: &Agent,
    env: ResolvedEnv,
) -> Result<BottleSpec, Error> {
    Ok(BottleSpec {
        agent_name: agent_name.to_owned(),
        agent: agent.clone(),
        bottle_name: agent.bottle.clone(),
        bottle: manifest.bottle_of(agent).clone(),
        env,
        cwd: None,
        pinned_name: None,
        remote_control: false,
        host_home: std::env::home_dir().ok_or(Error::NoHome)?,
        manifest_path: match &manifest.source {
            ManifestSource::File(path) => {
                Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            }
            ManifestSource::Embedded => None,
        },
    })
}

async fn run_session<B: Backend, T: Terminal, S: Interrupts>(
    backend: &B,
    spec: BottleSpec,
    args: &StartArgs,
    term: &mut T,
    signals: &mut S,
    printer: &Printer,
) -> Result<u8, Error> {
    let bottle_name = spec.bottle_name.clone();
    let cwd = spec.cwd.clone();
    let plan = tokio::select! {
        plan = backend.prepare(spec) => plan?,
        interrupted = signals.recv() => return Err(interrupted),
    };
    if show_plan(printer, &plan, args.dry_run, args.yes) {
        return Ok(0);
    }
    tokio::select! {
        confirmed = confirm(term, args.yes, "Start this bottle?") => confirmed?,
        interrupted = signals.recv() => return Err(interrupted),
    }

    let tty = term.stdin_is_tty() && term.stdout_is_tty();
    let mut bottle = backend.launch(plan);
    let mut started = false;
    let outcome: Result<i32, Error> = async {
        tokio::select! {
            up = bottle.start() => up?,
            interrupted = signals.recv() => return Err(interrupted),
        }
        started = true;
        tokio::select! {
            code = bottle.exec_claude(&args.claude_args, tty) => Ok(code?),
            interrupted = signals.recv() => Err(interrupted),
        }
    }
    .await;
    let signal = match &outcome {
        Err(Error::Interrupted { name, signal }) => {
            printer.status(format_args!("received {name}; tearing down"));
            Some(*signal)
        }
        _ => None,
    };
    // Before anything is removed: the agent's work comes home, or stays.
    let home = if started {
        bring_home(&mut bottle, cwd.as_deref(), signals, printer, signal).await
    } else {
        Ok(())
    };
    // The proxy's log goes with the proxy: read it first.
    report_denials(&mut bottle, &bottle_name, printer).await;
    // Teardown bounds each engine call; a second signal gives up on it.
    let closed = tokio::select! {
        closed = bottle.close() => closed,
        second = signals.recv() => {
            bottle.abandon();
            return Err(match second {
                Error::Interrupted { signal, name } => Error::TeardownAbandoned { signal, name },
                other => other,
            });
        }
    };
    session_result(outcome, home, closed, printer)
}

/// How long reading the proxy's log for the denial summary may take.
const DENIAL_LOG_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Each host the proxy denied, most frequent first, with how to allow it.
async fn report_denials<H: BottleHandle>(bottle: &mut H, bottle_name: &str, printer: &Printer) {
    let lines = match tokio::time::timeout(DENIAL_LOG_LIMIT, bottle.proxy_log()).await {
        Ok(Ok(lines)) => lines,
        Ok(Err(e)) => {
            tracing::debug!("could not read the proxy's log: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("the proxy's log took too long to read");
            return;
        }
    };
    let events: Vec<EgressEvent> = lines
        .iter()
        .filter_map(|line| match parse_line(line) {
            LogLine::Egress(event) => Some(event),
            _ => None,
        })
        .collect();
    let summary = DenialSummary::from_events(&events);
    if !summary.is_empty() {
        printer.warn(&summary, &[summary.hint(bottle_name)]);
    }
}

/// The session's exit: Claude's code, or the first failure. Work that did
/// not come home comes first: it is what the user must act on. A signal whose
/// teardown failed reports the teardown's failure (and its `cleanup` hint)
/// with the signal's exit code: the plain interruption message says that
/// everything was removed, which is then untrue.
fn session_result(
    outcome: Result<i32, Error>,
    home: Result<(), Error>,
    closed: Result<(), BackendError>,
    printer: &Printer,
) -> Result<u8, Error> {
    if let Err(not_home) = home {
        if let Err(teardown) = &closed {
            printer.warn(
                format_args!("teardown also failed: {teardown}"),
                &teardown.hints,
            );
        }
        return Err(not_home);
    }
    match (outcome, closed) {
        (Ok(code), Ok(())) => Ok(claude_exit_code(code)),
        (Ok(_), Err(teardown)) => Err(teardown.into()),
        (Err(err), Ok(())) => Err(err),
        (Err(Error::Interrupted { signal, name }), Err(teardown)) => {
            Err(Error::InterruptedTeardownFailed {
                signal,
                name,
                teardown,
            })
        }
        (Err(err), Err(teardown)) => {
            printer.warn(
                format_args!("teardown also failed: {teardown}"),
                &teardown.hints,
            );
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
    use crate::diagnostic::Diagnostic;

    fn left_behind() -> BackendError {
        BackendError::failure("teardown left resources behind:\n  - network `n`")
            .with_hint("run `claude-bottle cleanup` to remove them")
    }

    #[test]
    fn an_interruption_whose_teardown_failed_does_not_claim_a_clean_exit() {
        let interrupted = Error::Interrupted {
            signal: libc::SIGINT,
            name: "SIGINT",
        };
        let printer = Printer::capture(false);
        let err =
            session_result(Err(interrupted), Ok(()), Err(left_behind()), &printer).unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("everything the session created was removed"),
            "{text}"
        );
        assert!(
            text.starts_with("interrupted by SIGINT; teardown left"),
            "{text}"
        );
        assert_eq!(err.hints(), ["run `claude-bottle cleanup` to remove them"]);
        assert_eq!(err.code(), 130);
    }

    #[test]
    fn a_clean_interruption_keeps_its_message_and_code() {
        let interrupted = Error::Interrupted {
            signal: libc::SIGTERM,
            name: "SIGTERM",
        };
        let printer = Printer::capture(false);
        let err = session_result(Err(interrupted), Ok(()), Ok(()), &printer).unwrap_err();
        assert!(
            err.to_string()
                .contains("everything the session created was removed")
        );
        assert_eq!(err.code(), 143);
    }

    #[test]
    fn claude_code_passes_through_and_a_failed_teardown_after_it_is_reported() {
        let printer = Printer::capture(false);
        assert_eq!(session_result(Ok(3), Ok(()), Ok(()), &printer).unwrap(), 3);
        let err = session_result(Ok(0), Ok(()), Err(left_behind()), &printer).unwrap_err();
        assert_eq!(err.code(), 1);
        assert!(err.hints()[0].contains("cleanup"));
    }

    #[test]
    fn a_failure_whose_teardown_also_failed_reports_the_first_and_warns_of_the_second() {
        let printer = Printer::capture(false);
        let err =
            session_result(Err(Error::NoHome), Ok(()), Err(left_behind()), &printer).unwrap_err();
        assert!(matches!(err, Error::NoHome));
        assert_eq!(
            printer.captured(),
            "warning: teardown also failed: teardown left resources behind:\n  - network `n`\n  hint: run `claude-bottle cleanup` to remove them\n"
        );
    }

    #[test]
    fn an_abandoned_teardown_exits_with_the_signal_and_points_at_cleanup() {
        let err = Error::TeardownAbandoned {
            signal: libc::SIGINT,
            name: "SIGINT",
        };
        assert_eq!(err.code(), 130);
        assert!(err.hints()[0].contains("claude-bottle cleanup"));
    }

    /// A backend whose session records what happened to it; Claude runs
    /// until a signal, and teardown hangs when told to.
    struct Scripted {
        events: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
        close_hangs: bool,
        work: Work,
    }

    struct ScriptedBottle {
        events: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
        close_hangs: bool,
        work: Work,
    }

    /// What reading the bottle's work does.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Work {
        /// Finds no repository, at once.
        None,
        /// Finds none after a while (long enough for a signal to arrive).
        Slow,
        /// Fails.
        Fails,
    }

    impl ScriptedBottle {
        fn record(&self, event: &'static str) {
            self.events.lock().unwrap().push(event);
        }
    }

    impl BottleHandle for ScriptedBottle {
        async fn start(&mut self) -> Result<(), BackendError> {
            self.record("start");
            Ok(())
        }
        async fn exec_claude(&mut self, _: &[String], _: bool) -> Result<i32, BackendError> {
            self.record("exec");
            std::future::pending().await
        }
        async fn close(&mut self) -> Result<(), BackendError> {
            self.record("close");
            if self.close_hangs {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
        async fn proxy_log(&mut self) -> Result<Vec<String>, BackendError> {
            self.record("proxy_log");
            Ok(DENIED.iter().map(|l| (*l).to_owned()).collect())
        }
        fn abandon(&mut self) {
            self.record("abandon");
        }
        async fn work_repos(&mut self) -> Result<Vec<String>, BackendError> {
            self.record("work_repos");
            Ok(Vec::new())
        }
        async fn work_listing(
            &mut self,
            _: &str,
        ) -> Result<Option<crate::backend::WorkListing>, BackendError> {
            self.record("work_listing");
            match self.work {
                Work::None => Ok(None),
                Work::Slow => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    self.record("work_listed");
                    Ok(None)
                }
                Work::Fails => Err(BackendError::failure("the bottle did not answer")),
            }
        }
        async fn work_bundle(
            &mut self,
            _: &str,
            _: &[String],
            _: &[crate::core::work_home::refs::ObjectId],
            _: &std::path::Path,
        ) -> Result<(), BackendError> {
            self.record("work_bundle");
            Ok(())
        }
        async fn changed_files(&mut self, dest: &std::path::Path) -> Result<(), BackendError> {
            self.record("changed_files");
            // An empty tar: nothing changed.
            let empty = tar::Builder::new(Vec::new());
            let bytes = empty.into_inner().unwrap();
            std::fs::write(dest, bytes).unwrap();
            Ok(())
        }
        fn keep_agent(&mut self) -> Option<crate::backend::KeptBottle> {
            self.record("keep_agent");
            None
        }
    }

    /// The proxy's log of every scripted session: two denials of one host,
    /// one of another, an allowed tunnel.
    const DENIED: [&str; 4] = [
        r#"{"level":"warn","component":"pipelock","event":"blocked","method":"CONNECT","target":"evil.test:443","reason":"domain not in allowlist: evil.test","time":"2026-12-02T10:00:00Z","message":"request blocked"}"#,
        r#"{"level":"info","component":"pipelock","event":"tunnel_open","target":"api.anthropic.com:443","time":"2026-12-02T10:00:01Z","message":"tunnel opened"}"#,
        r#"{"level":"warn","component":"pipelock","event":"blocked","method":"GET","url":"http://other.test/x","reason":"domain not in allowlist: other.test","time":"2026-12-02T10:00:02Z","message":"request blocked"}"#,
        r#"{"level":"warn","component":"pipelock","event":"blocked","method":"CONNECT","target":"evil.test:443","reason":"domain not in allowlist: evil.test","time":"2026-12-02T10:00:03Z","message":"request blocked"}"#,
    ];

    impl Backend for Scripted {
        type Plan = &'static str;
        type Bottle = ScriptedBottle;
        async fn prepare(&self, _: BottleSpec) -> Result<&'static str, BackendError> {
            Ok("the plan")
        }
        async fn prewarm(&self, _: BottleSpec, _: usize) -> Result<Vec<String>, BackendError> {
            unreachable!("start never prewarms")
        }
        fn launch(&self, _: &'static str) -> ScriptedBottle {
            ScriptedBottle {
                events: self.events.clone(),
                close_hangs: self.close_hangs,
                work: self.work,
            }
        }
        async fn list_active(&self) -> Result<Vec<crate::backend::ActiveBottle>, BackendError> {
            Ok(Vec::new())
        }
        async fn prepare_cleanup(&self) -> Result<crate::backend::CleanupPlan, BackendError> {
            Ok(Default::default())
        }
        async fn cleanup(
            &self,
            _: crate::backend::CleanupPlan,
        ) -> Result<crate::backend::CleanupReport, BackendError> {
            Ok(Default::default())
        }
        async fn proxy_log(
            &self,
            _: &str,
            _: bool,
        ) -> Result<crate::backend::LogLines, BackendError> {
            unreachable!("start never reads a log by name")
        }
        async fn proxy_config(&self, _: &str) -> Result<String, BackendError> {
            unreachable!("start never reads a config by name")
        }
        async fn reload_proxy(&self, _: &str, _: &str) -> Result<(), BackendError> {
            unreachable!("start never reloads")
        }

        async fn doctor(&self, _: &crate::backend::DoctorRequest) -> Vec<crate::backend::Check> {
            unreachable!("this test never runs doctor")
        }
    }

    /// Signals that each arrive once the session has reached an event
    /// (`exec`: Claude runs; `close`: teardown runs), then never again.
    struct ScriptedSignals {
        events: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
        queue: std::collections::VecDeque<(&'static str, i32, &'static str)>,
    }

    impl Interrupts for ScriptedSignals {
        async fn recv(&mut self) -> Error {
            let Some(&(after, signal, name)) = self.queue.front() else {
                return std::future::pending().await;
            };
            while !self.events.lock().unwrap().contains(&after) {
                tokio::task::yield_now().await;
            }
            self.queue.pop_front();
            Error::Interrupted { signal, name }
        }
    }

    fn spec() -> BottleSpec {
        BottleSpec {
            agent_name: "a".into(),
            agent: crate::manifest::Agent {
                bottle: "b".into(),
                skills: vec![],
                prompt: String::new(),
            },
            bottle_name: "b".into(),
            bottle: crate::manifest::Bottle::default(),
            env: Default::default(),
            cwd: None,
            pinned_name: None,
            remote_control: false,
            host_home: "/nonexistent".into(),
            manifest_path: None,
        }
    }

    fn yes() -> StartArgs {
        StartArgs {
            agent: None,
            cwd: false,
            name: None,
            yes: true,
            dry_run: false,
            remote_control: false,
            claude_args: vec![],
        }
    }

    /// Runs a session on the scripted backend with `signals` sent as the
    /// session reaches each one's event.
    async fn session_with(
        close_hangs: bool,
        signals: &[(&'static str, i32, &'static str)],
    ) -> (Result<u8, Error>, Vec<&'static str>, String) {
        session_with_work(close_hangs, None, signals).await
    }

    /// The same, and with `work`, a `--cwd` (a directory that is not a
    /// repository) whose bottle's work is read as `work` says.
    async fn session_with_work(
        close_hangs: bool,
        work: Option<Work>,
        signals: &[(&'static str, i32, &'static str)],
    ) -> (Result<u8, Error>, Vec<&'static str>, String) {
        let backend = Scripted {
            events: Default::default(),
            close_hangs,
            work: work.unwrap_or(Work::None),
        };
        let cwd = tempfile::tempdir().unwrap();
        let spec = BottleSpec {
            cwd: work.map(|_| cwd.path().to_owned()),
            ..spec()
        };
        let printer = Printer::capture(false);
        let mut term = crate::term::FakeTerminal::with_inputs(false, &[]);
        let mut script = ScriptedSignals {
            events: backend.events.clone(),
            queue: signals.iter().copied().collect(),
        };
        let result = run_session(&backend, spec, &yes(), &mut term, &mut script, &printer).await;
        let events = backend.events.lock().unwrap().clone();
        (result, events, printer.captured())
    }

    #[tokio::test]
    async fn a_signal_while_the_work_comes_home_is_said_and_does_not_stop_it() {
        let (result, events, stderr) = session_with_work(
            false,
            Some(Work::Slow),
            &[
                ("exec", libc::SIGTERM, "SIGTERM"),
                ("work_listing", libc::SIGINT, "SIGINT"),
            ],
        )
        .await;
        assert_eq!(result.unwrap_err().code(), 143);
        assert_eq!(
            events,
            [
                "start",
                "exec",
                "work_listing",
                "work_listed",
                "changed_files",
                "proxy_log",
                "close"
            ]
        );
        assert!(
            stderr.contains(
                "received SIGINT; still bringing the agent's work home, then tearing down"
            ),
            "{stderr}"
        );
    }

    #[tokio::test]
    async fn work_that_did_not_come_home_keeps_the_agent_and_is_the_error() {
        let (result, events, _) = session_with_work(
            false,
            Some(Work::Fails),
            &[("exec", libc::SIGTERM, "SIGTERM")],
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, Error::WorkNotHome { .. }), "{err}");
        assert_eq!(
            err.code(),
            143,
            "the signal's code, as the session ended by it"
        );
        assert!(
            err.to_string()
                .starts_with("the agent's work did not come home: the bottle did not answer"),
            "{err}"
        );
        assert_eq!(
            events,
            [
                "start",
                "exec",
                "work_listing",
                "keep_agent",
                "proxy_log",
                "close"
            ]
        );
    }

    #[tokio::test]
    async fn a_signal_while_claude_runs_tears_down_and_exits_128_plus_n() {
        let (result, events, stderr) =
            session_with(false, &[("exec", libc::SIGTERM, "SIGTERM")]).await;
        let err = result.unwrap_err();
        assert_eq!(err.code(), 143);
        assert_eq!(
            events,
            ["start", "exec", "work_repos", "proxy_log", "close"]
        );
        assert!(
            stderr.contains("received SIGTERM; tearing down\n"),
            "{stderr}"
        );
        // The denials, read before teardown, most frequent first, with the hint.
        assert!(
            stderr.contains(
                "warning: the proxy denied 2 hosts:\n  evil.test   2\n  other.test  1\n  hint: to allow them, add them to `bottles.b.egress.allowlist`"
            ),
            "{stderr}"
        );
    }

    #[tokio::test]
    async fn a_second_signal_abandons_a_teardown_that_hangs_and_points_at_cleanup() {
        let (result, events, _) = session_with(
            true,
            &[
                ("exec", libc::SIGINT, "SIGINT"),
                ("close", libc::SIGINT, "SIGINT"),
            ],
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, Error::TeardownAbandoned { .. }), "{err}");
        assert_eq!(err.code(), 130);
        assert!(err.hints()[0].contains("claude-bottle cleanup"));
        assert_eq!(
            events,
            [
                "start",
                "exec",
                "work_repos",
                "proxy_log",
                "close",
                "abandon"
            ]
        );
    }

    #[tokio::test]
    async fn quiet_hides_the_plan_when_nobody_is_asked_about_it() {
        let backend = Scripted {
            events: Default::default(),
            close_hangs: false,
            work: Work::None,
        };
        let mut term = crate::term::FakeTerminal::with_inputs(false, &[]);
        let mut none = ScriptedSignals {
            events: backend.events.clone(),
            queue: Default::default(),
        };
        let dry_run = StartArgs {
            dry_run: true,
            ..yes()
        };
        let quiet = Printer::capture(true);
        run_session(&backend, spec(), &dry_run, &mut term, &mut none, &quiet)
            .await
            .unwrap();
        assert_eq!(quiet.captured(), "the plan\n", "asked for with --dry-run");

        let quiet = Printer::capture(true);
        let asked = StartArgs {
            yes: false,
            ..yes()
        };
        let err = run_session(&backend, spec(), &asked, &mut term, &mut none, &quiet)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoTerminalToConfirm));
        assert_eq!(quiet.captured(), "the plan\n", "shown before the question");
    }
}
