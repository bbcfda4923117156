//! One Docker session from `launch` to `close`: it starts the bring-up task,
//! runs Claude once the bottle is up, and tears everything down, with `Drop`
//! as the backstop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bring_up::{BringUp, LaunchError, Started, Timeouts};
use super::client::Engine;
use super::exec_claude::{ClaudeExec, exec_args, run_claude};
use super::ledger::{Created, SharedLedger};
use super::plan::Runtime;
use super::plan::SessionPlan;
use super::remove::Detach;
use super::teardown::{Keep, teardown};
use super::work_export::{export_bundle, export_changed, find_repos, list_work};
use crate::backend::{BackendError, KeptBottle, WorkListing};
use crate::core::secret_handoff::{exit_record, parse_exit_record};
use crate::core::work_home::refs::ObjectId;
use crate::printer::Printer;
use std::path::Path;

/// How long the `Drop` backstop waits for its teardown before giving up.
const BACKSTOP_LIMIT: Duration = Duration::from_secs(60);

/// How long reading Claude's exit record from the bottle may take.
const EXIT_RECORD_LIMIT: Duration = Duration::from_secs(10);

/// A session from `launch` to `close`.
pub(crate) struct Session<E: Engine> {
    engine: E,
    plan: Arc<SessionPlan>,
    ledger: SharedLedger,
    cancel: watch::Sender<bool>,
    task: Option<JoinHandle<Result<Started, LaunchError>>>,
    started: Option<Started>,
    /// Why bring-up failed, kept so a second `start` reports it again.
    failed: Option<BackendError>,
    printer: Printer,
    timeouts: Timeouts,
    /// Torn down, or given up on: nothing is left for `Drop` to do.
    closed: bool,
    /// The agent's container, when it stays after the session (its work
    /// did not come home).
    keep: Option<Keep>,
    /// When `start` was first called, in Unix seconds: files changed since
    /// are the agent's work.
    started_at: u64,
}

impl<E: Engine> Session<E> {
    pub fn new(engine: E, plan: SessionPlan, printer: Printer) -> Self {
        let (cancel, _) = watch::channel(false);
        Self {
            engine,
            plan: Arc::new(plan),
            ledger: SharedLedger::default(),
            cancel,
            task: None,
            started: None,
            failed: None,
            printer,
            timeouts: Timeouts::default(),
            closed: false,
            keep: None,
            started_at: 0,
        }
    }

    #[cfg(test)]
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    #[cfg(test)]
    pub fn plan(&self) -> &SessionPlan {
        &self.plan
    }

    #[cfg(test)]
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, super::ledger::Ledger> {
        self.ledger.lock()
    }

    pub fn started(&self) -> Option<&Started> {
        self.started.as_ref()
    }

    /// Creates, provisions and starts the bottle. Safe to drop at any await.
    pub async fn start(&mut self) -> Result<(), BackendError> {
        if self.started.is_some() {
            return Ok(());
        }
        if self.closed {
            return Err(BackendError::failure("the bottle was already torn down"));
        }
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.started_at == 0 {
            self.started_at = u64::try_from(super::unix_now()).unwrap_or(0);
        }
        let task = self.task.get_or_insert_with(|| {
            let bring_up = BringUp {
                engine: self.engine.clone(),
                plan: Arc::clone(&self.plan),
                ledger: self.ledger.clone(),
                cancel: self.cancel.subscribe(),
                printer: self.printer.clone(),
                timeouts: self.timeouts,
            };
            tokio::spawn(bring_up.run())
        });
        let outcome = task.await;
        self.task = None;
        let err = match outcome {
            Ok(Ok(started)) => {
                tracing::debug!(container = %started.names.agent, "bottle started");
                self.started = Some(started);
                return Ok(());
            }
            Ok(Err(err)) => BackendError::from(err),
            Err(join) => BackendError::from(LaunchError::Task(join.to_string())),
        };
        self.failed = Some(err.clone());
        Err(err)
    }

    pub async fn exec_claude(&mut self, args: &[String], tty: bool) -> Result<i32, BackendError> {
        let argv = self.claude_exec_line(args, tty)?;
        // The CLI must talk to the daemon the session was made on.
        let code = run_claude(self.engine.endpoint(), &argv, tty).await?;
        Ok(self.claude_exit_code(code).await)
    }

    /// Claude's exit code, given the docker CLI's `cli_code`. The CLI exits 1
    /// as well when the daemon has lost Claude's exec (see
    /// `secret_handoff::exit_record`); the launcher's record in the bottle
    /// then tells what Claude ended with.
    pub(crate) async fn claude_exit_code(&self, cli_code: i32) -> i32 {
        let Some(started) = self.started.as_ref().filter(|_| cli_code == 1) else {
            return cli_code;
        };
        let record = exit_record(&self.plan.owner.session);
        let read = self
            .engine
            .exec(&started.agent_id, vec!["cat".into(), record.clone()]);
        let recorded = match tokio::time::timeout(EXIT_RECORD_LIMIT, read).await {
            Ok(Ok(out)) if out.exit_code == 0 => parse_exit_record(&out.output),
            Ok(Ok(out)) => {
                tracing::debug!(code = out.exit_code, "no exit record at `{record}`");
                None
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not read the exit record");
                None
            }
            Err(_) => None,
        };
        match recorded {
            Some(code) if code != cli_code => {
                self.printer.warn(
                    format_args!(
                        "the docker CLI lost Claude's exec and exited {cli_code}; Claude itself exited {code}, as the bottle recorded"
                    ),
                    &[],
                );
                code
            }
            _ => cli_code,
        }
    }

    /// The `docker exec` line that runs Claude; with secrets, through the
    /// launcher that loads what bring-up handed over.
    pub(crate) fn claude_exec_line(
        &self,
        args: &[String],
        tty: bool,
    ) -> Result<Vec<String>, BackendError> {
        let started = self
            .started
            .as_ref()
            .ok_or_else(|| BackendError::failure("the bottle is not running"))?;
        let workdir = self.claude_dir();
        let record = exit_record(&self.plan.owner.session);
        let exec = ClaudeExec {
            container: &started.names.agent,
            workdir: &workdir,
            prompt_file: started.prompt_file.as_deref(),
            remote_control: self.plan.spec.remote_control,
            tty,
            handoff_dir: started.handoff_dir.as_deref(),
            exit_record: &record,
        };
        Ok(exec_args(&exec, args))
    }

    /// Stops an unfinished bring-up and removes everything. Idempotent.
    pub async fn close(&mut self) -> Result<(), BackendError> {
        if self.closed {
            return Ok(());
        }
        let _ = self.cancel.send(true);
        let mut aborted = false;
        if let Some(mut task) = self.task.take() {
            // The task stops at its next step; give its request in flight
            // time to be answered and recorded.
            if tokio::time::timeout(self.timeouts.drain, &mut task)
                .await
                .is_err()
            {
                task.abort();
                aborted = true;
            }
        }
        let clock = Instant::now();
        let session = self.ledger.session_label(&self.plan.owner.session);
        let keep = self.keep.as_ref();
        let detach = self.detach_first();
        let mut torn_down = teardown(&self.engine, &self.ledger, &session, keep, &detach).await;
        if aborted && torn_down.is_ok() {
            // A creation the daemon was still working on when the task was
            // aborted can land after the sweep: give it time, sweep again.
            tokio::time::sleep(self.timeouts.late_creation).await;
            torn_down = teardown(&self.engine, &self.ledger, &session, keep, &[]).await;
        }
        torn_down.map_err(|e| BackendError::from_failure(&e))?;
        tracing::debug!("torn down in {:?}", clock.elapsed());
        self.started = None;
        self.closed = true;
        Ok(())
    }

    /// The proxy taken off the egress network, its only container, before
    /// teardown: the daemon can then remove that network while it still
    /// stops the containers, rather than after.
    fn detach_first(&self) -> Vec<Detach> {
        let Some(started) = &self.started else {
            return Vec::new();
        };
        let (containers, networks) = self.ledger.snapshot();
        let proxy = containers.iter().find(|c| c.name == started.names.proxy);
        let egress = networks
            .iter()
            .find(|n| n.name == started.names.egress_network);
        match (proxy, egress) {
            (Some(proxy), Some(egress)) => vec![Detach {
                network: egress.clone(),
                container: proxy.clone(),
            }],
            _ => Vec::new(),
        }
    }

    /// The proxy's log so far; empty before the proxy exists.
    pub async fn proxy_log(&self) -> Result<Vec<String>, BackendError> {
        let Some(started) = &self.started else {
            return Ok(Vec::new());
        };
        self.engine
            .log_lines(&started.names.proxy, false)
            .try_collect()
            .await
            .map_err(|e| BackendError::from_failure(&e))
    }

    /// The agent's workspace in the container.
    fn workspace(&self) -> String {
        format!(
            "{}/workspace",
            self.plan.container_home.trim_end_matches('/')
        )
    }

    /// The directory of the workspace `--cwd` named, relative to it, when
    /// it is not the workspace itself (a directory inside a git work tree).
    fn subdir(&self) -> Option<String> {
        let sub = self.plan.provision.workspace()?.subdir()?;
        // A path that is no UTF-8 cannot be named to the engine: Claude
        // then starts at the top of the workspace.
        sub.to_str().map(str::to_owned)
    }

    /// Where Claude works in the container.
    fn claude_dir(&self) -> String {
        match self.subdir() {
            Some(sub) => format!("{}/{sub}", self.workspace()),
            None => self.workspace(),
        }
    }

    /// The repository `repo` (relative to the workspace) in the container.
    fn repo_dir(&self, repo: &str) -> String {
        match repo {
            "." => self.workspace(),
            repo => format!("{}/{repo}", self.workspace()),
        }
    }

    /// The git repositories under the workspace, relative to it; none
    /// before the bottle runs.
    pub async fn work_repos(&self) -> Result<Vec<String>, BackendError> {
        let Some(started) = &self.started else {
            return Ok(Vec::new());
        };
        find_repos(&self.engine, &started.agent_id, &self.workspace())
            .await
            .map_err(|e| BackendError::from_failure(&e))
    }

    /// Records the uncommitted work and lists the branches of the
    /// repository `repo`; `None` without one, or before the bottle runs.
    pub async fn work_listing(&self, repo: &str) -> Result<Option<WorkListing>, BackendError> {
        let Some(started) = &self.started else {
            return Ok(None);
        };
        let name = crate::core::work_home::refs::bottle_name(&started.names.agent);
        // The uncommitted work of a sparse checkout is what is checked out.
        let scope = match repo {
            "." => self.subdir().unwrap_or_else(|| ".".to_owned()),
            _ => ".".to_owned(),
        };
        let work = list_work(
            &self.engine,
            &started.agent_id,
            &self.repo_dir(repo),
            &scope,
            name,
        )
        .await
        .map_err(|e| BackendError::from_failure(&e))?;
        Ok(work.map(|work| WorkListing {
            bottle: started.names.agent.clone(),
            work,
        }))
    }

    /// Copies to `dest` a bundle of the `refs` of the repository `repo`
    /// without what `bases` reach.
    pub async fn work_bundle(
        &self,
        repo: &str,
        refs: &[String],
        bases: &[ObjectId],
        dest: &Path,
    ) -> Result<(), BackendError> {
        let started = self
            .started
            .as_ref()
            .ok_or_else(|| BackendError::failure("the bottle is not running"))?;
        export_bundle(
            &self.engine,
            &started.agent_id,
            &self.repo_dir(repo),
            refs,
            bases,
            dest,
        )
        .await
        .map_err(|e| BackendError::from_failure(&e))
    }

    /// Copies to `dest` a tar of the workspace's files changed or created
    /// since the session started.
    pub async fn changed_files(&self, dest: &Path) -> Result<(), BackendError> {
        let started = self
            .started
            .as_ref()
            .ok_or_else(|| BackendError::failure("the bottle is not running"))?;
        export_changed(
            &self.engine,
            &started.agent_id,
            &self.workspace(),
            self.started_at,
            dest,
        )
        .await
        .map_err(|e| BackendError::from_failure(&e))
    }

    /// Keeps the agent's container, stopped, when the session closes.
    pub fn keep_agent(&mut self) -> Option<KeptBottle> {
        let started = self.started.as_ref()?;
        let running = matches!(self.plan.runtime, Runtime::Runsc);
        self.keep = Some(Keep {
            container: Created {
                id: started.agent_id.clone(),
                name: started.names.agent.clone(),
            },
            stop: !running,
        });
        Some(KeptBottle {
            name: started.names.agent.clone(),
            id: started.agent_id.clone(),
            workspace: self.workspace(),
            running,
        })
    }

    /// Leaves the bottle up for good: a warm bottle `prewarm` made is for a
    /// later session to claim. `Drop` then removes nothing.
    pub fn leave_warm(&mut self) {
        self.closed = true;
    }

    /// Gives up on teardown: `Drop` then removes nothing.
    pub fn abandon(&mut self) {
        let _ = self.cancel.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.closed = true;
    }
}

impl<E: Engine> Drop for Session<E> {
    /// The backstop when `close` was not called: the same teardown, on a
    /// thread of its own with a fresh connection, since this may run inside
    /// (or after) the async runtime that made the session.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let _ = self.cancel.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let engine = self.engine.clone();
        let ledger = self.ledger.clone();
        let session = self.ledger.session_label(&self.plan.owner.session);
        let keep = self.keep.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("claude-bottle-teardown".into())
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| BackendError::failure(e.to_string()))
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            let engine = engine
                                .reconnect()
                                .await
                                .map_err(|e| BackendError::from_failure(&e))?;
                            teardown(&engine, &ledger, &session, keep.as_ref(), &[])
                                .await
                                .map_err(|e| BackendError::from_failure(&e))
                        })
                    });
                let _ = done_tx.send(outcome);
            });
        let cleanup_hint = "run `claude-bottle cleanup`".to_owned();
        if let Err(e) = spawned {
            self.printer.warn(
                format_args!("could not tear the bottle down: {e}"),
                &[cleanup_hint],
            );
            return;
        }
        match done_rx.recv_timeout(BACKSTOP_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.printer.warn(&e, &e.hints),
            Err(_) => self.printer.warn(
                format_args!(
                    "teardown did not finish within {} s",
                    BACKSTOP_LIMIT.as_secs()
                ),
                &[cleanup_hint],
            ),
        }
    }
}
