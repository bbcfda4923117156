//! `prewarm`: whole bottles made ahead, each with networks, a ready proxy
//! with its config and a running agent container, provisioned with nothing,
//! for a later `start` whose plan fits to claim (see `warm`).

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::bring_up::{BringUp, Timeouts};
use super::client::Engine;
use super::ledger::SharedLedger;
use super::names::{MAX_SUFFIX, Names, Owner, new_session_id};
use super::plan::{self, SessionPlan, Settings, WarmChoice};
use super::session::Session;
use crate::backend::BackendError;
use crate::core::spec::BottleSpec;
use crate::diagnostic::Diagnostic;
use crate::printer::Printer;

/// How many warm bottles are brought up at once.
const AT_ONCE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PrewarmError {
    #[error("no warm bottle can be made for agent `{agent}`: {why}")]
    Unavailable { agent: String, why: &'static str },
    #[error("no free names for {count} warm bottles of agent `{agent}` up to suffix -{MAX_SUFFIX}")]
    NoFreeNames { agent: String, count: usize },
}

impl Diagnostic for PrewarmError {
    fn hints(&self) -> Vec<String> {
        vec![match self {
            Self::Unavailable { .. } => "`claude-bottle start` works without one".to_owned(),
            Self::NoFreeNames { .. } => {
                "ask for fewer, or run `claude-bottle cleanup` to remove bottles left behind"
                    .to_owned()
            }
        }]
    }
}

impl From<PrewarmError> for BackendError {
    fn from(err: PrewarmError) -> Self {
        BackendError::from_failure(&err)
    }
}

/// Makes `count` warm bottles for `spec` and returns the names of their
/// agent containers. When one fails, every one is removed again.
pub(crate) async fn prewarm<E: Engine>(
    engine: &E,
    spec: BottleSpec,
    count: usize,
    settings: &Settings,
    built_in_tag: String,
    printer: &Printer,
) -> Result<Vec<String>, BackendError> {
    let agent = spec.agent_name.clone();
    let mut plan = plan::prepare(
        engine,
        spec.clone(),
        settings,
        built_in_tag.clone(),
        printer,
    )
    .await?;
    if plan.fingerprint.is_none() && plan.runtime.name().is_none() {
        // The fingerprint names the images by ID: make them first.
        ensure_images(engine, &plan, printer).await?;
        plan = plan::prepare(engine, spec, settings, built_in_tag, printer).await?;
    }
    let fingerprint = match (&plan.warm, &plan.fingerprint) {
        (_, Some(fingerprint)) => fingerprint.clone(),
        (WarmChoice::Unavailable(why), None) => {
            return Err(PrewarmError::Unavailable { agent, why }.into());
        }
        (_, None) => {
            return Err(PrewarmError::Unavailable {
                agent,
                why: "its images are not there",
            }
            .into());
        }
    };
    let names: Vec<Names> = Names::free(&plan.slug, None, &plan.taken)
        .take(count)
        .collect();
    if names.len() < count {
        return Err(PrewarmError::NoFreeNames { agent, count }.into());
    }
    let sessions = names.into_iter().map(|names| {
        let warm = SessionPlan {
            owner: Owner {
                session: new_session_id(),
                warm: Some(fingerprint.clone()),
                ..plan.owner.clone()
            },
            names,
            warm: WarmChoice::NoneFits,
            ..plan.clone()
        };
        Session::new(engine.clone(), warm, printer.clone())
    });
    let mut done: Vec<(Session<E>, Result<(), BackendError>)> =
        futures_util::stream::iter(sessions)
            .map(|mut session| async move {
                let started = session.start().await;
                (session, started)
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
    if let Some(err) = done.iter().find_map(|(_, r)| r.clone().err()) {
        for (session, _) in &mut done {
            if let Err(teardown) = session.close().await {
                printer.warn(&teardown, &teardown.hints);
            }
        }
        return Err(err);
    }
    let mut made = Vec::with_capacity(done.len());
    for (session, _) in &mut done {
        session.leave_warm();
        if let Some(started) = session.started() {
            made.push(started.names.warm_agent());
        }
    }
    made.sort();
    Ok(made)
}

/// Builds the agent image and pulls the proxy image, as a session's bring-up would.
async fn ensure_images<E: Engine>(
    engine: &E,
    plan: &SessionPlan,
    printer: &Printer,
) -> Result<(), BackendError> {
    // Held until the images are there: a dropped sender would cancel.
    let (cancel, receiver) = watch::channel(false);
    let bring_up = BringUp {
        engine: engine.clone(),
        plan: Arc::new(plan.clone()),
        ledger: SharedLedger::default(),
        cancel: receiver,
        printer: printer.clone(),
        timeouts: Timeouts::default(),
    };
    let made = bring_up.ensure_images().await;
    drop(cancel);
    made.map_err(BackendError::from)
}
