//! Warm bottles against the recording fake engine: what `prewarm` makes,
//! which plans fit them, the claim, the fall-back to a cold start, and how
//! `list` and `cleanup` see them.

use std::collections::BTreeMap;

use super::client::Engine;
use super::fake::FakeEngine;
use super::names::{LABEL_MANAGED, LABEL_SESSION, LABEL_WARM};
use super::plan::{RUNSC_NOT_WARM, Runtime, WarmChoice};
use super::prewarm::prewarm;
use super::session::Session;
use super::tests::{
    BUILT_IN, PROXY_IMAGE, SECRET, assert_nothing_left, engine, prepared, quick, settings, spec,
};
use super::warm::OWNER_PATH;
use crate::backend::SessionState;
use crate::core::env::EnvSource;
use crate::core::spec::BottleSpec;
use crate::printer::Printer;

async fn warm(engine: &FakeEngine, spec: BottleSpec, count: usize) -> Vec<String> {
    prewarm(
        engine,
        spec,
        count,
        &settings(),
        BUILT_IN.into(),
        &Printer::capture(false),
    )
    .await
    .unwrap()
}

/// A session of `spec`, prepared now on `engine`, not started yet.
async fn session(engine: &FakeEngine, spec: BottleSpec) -> Session<FakeEngine> {
    Session::new(
        engine.clone(),
        prepared(engine, spec).await,
        Printer::capture(false),
    )
    .with_timeouts(quick())
}

/// The files uploaded into `container`, by path.
fn files_of(engine: &FakeEngine, container: &str) -> BTreeMap<String, Vec<u8>> {
    engine
        .state()
        .files
        .iter()
        .filter(|((name, _), _)| name == container)
        .map(|((_, path), bytes)| (path.clone(), bytes.clone()))
        .collect()
}

#[tokio::test]
async fn prewarm_makes_whole_running_bottles_with_nothing_of_a_session_in_them() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let made = warm(&engine, spec("reviewer", home.path()), 2).await;
    assert_eq!(
        made,
        [
            "claude-bottle-reviewer-2.warm",
            "claude-bottle-reviewer.warm"
        ]
    );
    let state = engine.state();
    assert_eq!(state.containers.len(), 4);
    assert_eq!(state.networks.len(), 4);
    for c in state.containers.values() {
        assert_eq!(c.state, "running", "{}", c.name);
    }
    // Every resource carries the one fingerprint; the two bottles are two sessions.
    let fingerprints: std::collections::BTreeSet<&String> = state
        .containers
        .values()
        .map(|c| &c.labels)
        .chain(state.networks.values().map(|n| &n.labels))
        .map(|labels| &labels[LABEL_WARM])
        .collect();
    assert_eq!(fingerprints.len(), 1);
    let sessions: std::collections::BTreeSet<&String> = state
        .containers
        .values()
        .map(|c| &c.labels[LABEL_SESSION])
        .collect();
    assert_eq!(sessions.len(), 2);
    // The proxies have their config; the agents have nothing at all.
    let uploaded: Vec<&String> = state.files.keys().map(|(name, _)| name).collect();
    assert!(
        uploaded.iter().all(|name| name.contains("pipelock")),
        "{uploaded:?}"
    );
    drop(state);
    // No secret value was needed to make them, and none is in them: none
    // was handed over.
    assert!(
        !engine
            .state()
            .calls
            .iter()
            .any(|c| matches!(c, super::fake::Call::ExecFed { .. })),
        "{:?}",
        engine.ops()
    );
    for spec in engine.created_containers() {
        for pair in &spec.env {
            assert_ne!(secrecy::ExposeSecret::expose_secret(&pair.value), SECRET);
        }
    }
}

#[tokio::test]
async fn start_claims_a_warm_bottle_and_provisions_it_as_a_cold_one_is() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    // The cold bottle first, to compare its files with the warm one's.
    let mut cold = session(&engine, spec("reviewer", home.path())).await;
    assert!(matches!(cold.plan().warm, WarmChoice::NoneFits));
    cold.start().await.unwrap();
    let cold_files = files_of(&engine, "claude-bottle-reviewer");
    cold.close().await.unwrap();

    warm(&engine, spec("reviewer", home.path()), 1).await;
    let mut claimed = session(&engine, spec("reviewer", home.path())).await;
    let plan = claimed.plan().to_string();
    assert!(
        plan.contains("     warm bottle: yes, `claude-bottle-reviewer.warm`\n       container: claude-bottle-reviewer\n"),
        "{plan}"
    );
    engine.state().calls.clear();
    claimed.start().await.unwrap();
    // The upload and the secrets' handoff run side by side: either may be
    // recorded first.
    let mut mutations = engine.mutations();
    mutations[1..].sort();
    assert_eq!(
        mutations,
        [
            "rename claude-bottle-reviewer.warm claude-bottle-reviewer",
            "exec_fed claude-bottle-reviewer as 1000:1000",
            "upload claude-bottle-reviewer /",
        ],
        "nothing is created, built or pulled; the files and the secrets go in"
    );
    let started = claimed.started().unwrap();
    assert_eq!(started.names.agent, "claude-bottle-reviewer");
    assert_eq!(
        started.prompt_file.as_deref(),
        Some("/home/node/.claude-bottle-prompt.txt")
    );
    // The same files as the cold bottle, and the record of who owns it.
    let mut warm_files = files_of(&engine, "claude-bottle-reviewer");
    let owner = warm_files
        .remove(OWNER_PATH.trim_start_matches('/'))
        .unwrap();
    assert_eq!(
        warm_files.keys().collect::<Vec<_>>(),
        cold_files.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &cold_files {
        assert_eq!(&warm_files[path], bytes, "{path}");
    }
    let owner = String::from_utf8(owner).unwrap();
    assert!(
        owner.contains(&format!("claude-bottle.pid={}\n", std::process::id())),
        "{owner}"
    );
    // Torn down like a cold bottle: all four resources of the warm session.
    assert_eq!(claimed.ledger().containers.len(), 2);
    assert_eq!(claimed.ledger().networks.len(), 2);
    claimed.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn a_dropped_claimed_session_leaves_nothing() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    warm(&engine, spec("reviewer", home.path()), 1).await;
    let mut claimed = session(&engine, spec("reviewer", home.path())).await;
    claimed.start().await.unwrap();
    // The backstop runs teardown on its own thread, which must not be this runtime's.
    tokio::task::spawn_blocking(move || drop(claimed))
        .await
        .unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn a_plan_that_differs_in_anything_made_at_create_time_does_not_fit() {
    let home = tempfile::tempdir().unwrap();
    let base = spec("reviewer", home.path());
    let mut other_literal = base.clone();
    other_literal.env.vars[1].value = "Someone Else".to_owned().into();
    let mut other_allowlist = base.clone();
    other_allowlist.bottle.egress.allowlist.pop();
    let mut other_manifest = base.clone();
    other_manifest.manifest_path = Some("/elsewhere/claude-bottle.json".into());
    for (what, changed) in [
        ("a literal env value", other_literal),
        ("the allowlist", other_allowlist),
        ("the manifest", other_manifest),
    ] {
        let engine = super::tests::engine();
        warm(&engine, base.clone(), 1).await;
        let plan = prepared(&engine, changed).await;
        assert!(matches!(plan.warm, WarmChoice::NoneFits), "{what}");
        assert!(
            plan.to_string()
                .contains("warm bottle: none fits; starting cold")
        );
    }

    // A tag rebuilt since: the same reference, another image.
    let engine = super::tests::engine();
    warm(&engine, base.clone(), 1).await;
    engine
        .state()
        .image_ids
        .insert(BUILT_IN.into(), "sha256:rebuilt".into());
    let plan = prepared(&engine, base.clone()).await;
    assert!(matches!(plan.warm, WarmChoice::NoneFits), "a rebuilt image");

    // A host-read value or a secret is not made at create time: it fits.
    let engine = super::tests::engine();
    warm(&engine, base.clone(), 1).await;
    let mut other_secret = base.clone();
    other_secret.env.vars[0].value = "another-secret".to_owned().into();
    assert_eq!(other_secret.env.vars[0].source, EnvSource::Host);
    other_secret.cwd = Some(home.path().join("work"));
    std::fs::create_dir(home.path().join("work")).unwrap();
    other_secret.remote_control = true;
    let plan = prepared(&engine, other_secret).await;
    assert!(matches!(plan.warm, WarmChoice::Claim(_)));
}

#[tokio::test]
async fn runsc_bottles_are_never_warm() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    engine.state().runtimes = vec!["runsc".into()];
    let plan = prepared(&engine, spec("reviewer", home.path())).await;
    assert_eq!(plan.runtime, Runtime::Runsc);
    assert_eq!(plan.warm, WarmChoice::Unavailable(RUNSC_NOT_WARM));
    assert!(
        plan.to_string()
            .contains(&format!("warm bottle: no: {RUNSC_NOT_WARM}"))
    );
    let err = prewarm(
        &engine,
        spec("reviewer", home.path()),
        1,
        &settings(),
        BUILT_IN.into(),
        &Printer::capture(false),
    )
    .await
    .unwrap_err();
    assert!(
        err.message.contains("runsc bottles start cold"),
        "{}",
        err.message
    );
    assert!(engine.mutations().is_empty(), "{:?}", engine.mutations());
}

#[tokio::test]
async fn prewarm_builds_an_absent_agent_image_first() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[PROXY_IMAGE]);
    let made = warm(&engine, spec("reviewer", home.path()), 1).await;
    assert_eq!(made, ["claude-bottle-reviewer.warm"]);
    assert!(engine.mutations()[0].starts_with("build_image"));
    let plan = prepared(&engine, spec("reviewer", home.path())).await;
    assert!(matches!(plan.warm, WarmChoice::Claim(_)));
}

#[tokio::test]
async fn two_sessions_that_planned_the_same_warm_bottle_never_both_claim_it() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    warm(&engine, spec("reviewer", home.path()), 1).await;
    let mut first = session(&engine, spec("reviewer", home.path())).await;
    let mut second = session(&engine, spec("reviewer", home.path())).await;
    assert!(matches!(first.plan().warm, WarmChoice::Claim(_)));
    assert!(matches!(second.plan().warm, WarmChoice::Claim(_)));
    let (a, b) = futures_util::join!(first.start(), second.start());
    a.unwrap();
    b.unwrap();
    let renames = engine
        .ops()
        .into_iter()
        .filter(|o| o.starts_with("rename"))
        .count();
    assert_eq!(renames, 2, "both tried");
    let agents: Vec<&str> = [&first, &second]
        .iter()
        .map(|s| s.started().unwrap().names.agent.as_str())
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    assert!(agents.contains(&"claude-bottle-reviewer"), "{agents:?}");
    assert!(
        agents.contains(&"claude-bottle-reviewer-2"),
        "the loser started cold: {agents:?}"
    );
    let claims = [&first, &second]
        .iter()
        .filter(|s| s.ledger().claimed.is_some())
        .count();
    assert_eq!(claims, 1);
    first.close().await.unwrap();
    second.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn a_pinned_name_is_given_to_the_claimed_bottle() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    warm(&engine, spec("reviewer", home.path()), 1).await;
    let mut pinned_spec = spec("reviewer", home.path());
    pinned_spec.pinned_name = Some("mine".into());
    let mut claimed = session(&engine, pinned_spec).await;
    assert!(
        claimed
            .plan()
            .to_string()
            .contains("container: mine (--name)")
    );
    engine.state().calls.clear();
    claimed.start().await.unwrap();
    assert_eq!(
        &engine.mutations()[..2],
        [
            "rename claude-bottle-reviewer.warm claude-bottle-reviewer",
            "rename claude-bottle-reviewer mine",
        ]
    );
    assert_eq!(claimed.started().unwrap().names.agent, "mine");
    claimed.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn list_and_cleanup_show_warm_bottles_then_their_claiming_session() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    warm(&engine, spec("reviewer", home.path()), 2).await;
    let active = super::list::list_active(&engine, 2_100).await.unwrap();
    assert_eq!(active.len(), 2);
    for bottle in &active {
        assert_eq!(bottle.session_state, SessionState::Warm, "{}", bottle.name);
        assert!(!bottle.orphaned);
    }

    let mut claimed = session(&engine, spec("reviewer", home.path())).await;
    claimed.start().await.unwrap();
    let active = super::list::list_active(&engine, 2_100).await.unwrap();
    let state = |name: &str| {
        active
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.session_state)
            .unwrap()
    };
    let claimed_name = claimed.started().unwrap().names.agent.clone();
    let other = if claimed_name == "claude-bottle-reviewer" {
        "claude-bottle-reviewer-2.warm"
    } else {
        "claude-bottle-reviewer.warm"
    };
    assert_eq!(state(&claimed_name), SessionState::Running);
    assert_eq!(state(other), SessionState::Warm);

    // A claimed bottle whose owner has gone is orphaned.
    let agent_id = claimed.started().unwrap().agent_id.clone();
    let record = super::warm::owner_record(&super::names::Owner {
        pid: 0,
        ..claimed.plan().owner.clone()
    });
    engine
        .upload_archive(
            &agent_id,
            "/",
            super::client::whole_tar(
                crate::core::provision::archive::root_file_archive(OWNER_PATH, &record).unwrap(),
            ),
        )
        .await
        .unwrap();
    let active = super::list::list_active(&engine, 2_100).await.unwrap();
    let orphan = active.iter().find(|b| b.name == claimed_name).unwrap();
    assert_eq!(orphan.session_state, SessionState::Ended);
    assert!(orphan.orphaned);

    let plan = super::cleanup::prepare_cleanup(&engine).await.unwrap();
    assert_eq!(plan.items.len(), 8);
    let warm_items = plan
        .items
        .iter()
        .filter(|i| i.session == SessionState::Warm)
        .count();
    assert_eq!(
        warm_items, 4,
        "the unclaimed bottle's two containers and two networks"
    );
    assert!(
        plan.to_string()
            .contains(&format!("{other} (agent, running, warm, no session yet)"))
    );
    super::cleanup::cleanup(&engine, &plan).await.unwrap();
    assert_nothing_left(&engine);
    drop(claimed);
    let managed = engine
        .list_containers(vec![(LABEL_MANAGED.into(), "true".into())])
        .await
        .unwrap();
    assert!(managed.is_empty());
}
