//! The Docker backend against the recording fake engine: what is created, in
//! which order, with which configuration, and that everything goes away.

use std::collections::VecDeque;
use std::time::Duration;

use secrecy::SecretString;

use super::bring_up::Timeouts;
use super::client::{ContainerSpec, Labels};
use super::fake::{Call, FakeEngine};
use super::names::{LABEL_MANAGED, LABEL_PID, LABEL_ROLE, LABEL_SESSION};
use super::plan::{self, PrepareError, Runtime, SessionPlan, Settings};
use super::session::Session;
use super::specs::{self, INHIBIT_IPV4};
use crate::backend::{BackendError, BackendErrorKind};
use crate::core::env::{EnvSource, ResolvedEnv, ResolvedVar};
use crate::core::spec::BottleSpec;
use crate::diagnostic::Diagnostic;
use crate::manifest::{Agent, AllowRule, Bottle, Egress, Hostname};
use crate::printer::Printer;

pub(super) const BUILT_IN: &str = "claude-bottle-agent:test";
pub(super) const PROXY_IMAGE: &str = "pipelock:test";
pub(super) const SECRET: &str = "s3cr3t-value-never-shown";

/// Not the pin: the snapshots must not change when the pin does.
const CLAUDE_CODE: &str = "2.1.328";

pub(super) fn settings() -> Settings {
    Settings {
        proxy_image: PROXY_IMAGE.into(),
        container_home: "/home/node".into(),
        claude_code_version: CLAUDE_CODE.into(),
        address_pool: Default::default(),
        host_routes: Vec::new(),
        fence_image: None,
    }
}

pub(super) fn spec(agent: &str, home: &std::path::Path) -> BottleSpec {
    BottleSpec {
        agent_name: agent.into(),
        agent: Agent {
            bottle: "default".into(),
            skills: vec![],
            prompt: "You review code.".into(),
        },
        bottle_name: "default".into(),
        bottle: Bottle {
            egress: Egress {
                allowlist: vec![
                    AllowRule::Exact(Hostname::parse("api.anthropic.com").unwrap()),
                    AllowRule::Wildcard(Hostname::parse("githubusercontent.com").unwrap()),
                ],
                ..Egress::default()
            },
            ..Bottle::default()
        },
        env: ResolvedEnv {
            vars: vec![
                ResolvedVar {
                    name: "GITHUB_TOKEN".into(),
                    source: EnvSource::Host,
                    host_var: Some("GITHUB_TOKEN".into()),
                    value: SecretString::from(SECRET),
                },
                ResolvedVar {
                    name: "GIT_AUTHOR_NAME".into(),
                    source: EnvSource::Literal,
                    host_var: None,
                    value: SecretString::from("Bottle Bot"),
                },
            ],
        },
        cwd: None,
        pinned_name: None,
        remote_control: false,
        host_home: home.to_path_buf(),
        manifest_path: None,
    }
}

pub(super) fn engine() -> FakeEngine {
    FakeEngine::new().with_images(&[BUILT_IN, PROXY_IMAGE])
}

/// `engine()` on a daemon with `runsc` registered beside `runc`.
fn engine_with_runsc() -> FakeEngine {
    let engine = engine();
    engine.state().runtimes = vec!["runc".into(), "runsc".into()];
    engine
}

/// `prepare` with `settings`, the built-in image `BUILT_IN`, and a printer
/// nobody reads.
pub(super) async fn prepare_with(
    engine: &FakeEngine,
    spec: BottleSpec,
    settings: &Settings,
) -> Result<SessionPlan, PrepareError> {
    plan::prepare(
        engine,
        spec,
        settings,
        BUILT_IN.into(),
        &Printer::capture(false),
    )
    .await
}

pub(super) async fn prepared(engine: &FakeEngine, spec: BottleSpec) -> SessionPlan {
    prepare_with(engine, spec, &settings()).await.unwrap()
}

pub(super) fn quick() -> Timeouts {
    Timeouts {
        proxy_ready: Duration::from_millis(300),
        agent_start: Duration::from_millis(300),
        drain: Duration::from_secs(2),
        late_creation: Duration::from_millis(50),
    }
}

/// A session of `plan` on `engine` with quick timeouts and a printer nobody
/// reads.
fn session_of(engine: &FakeEngine, plan: SessionPlan) -> Session<FakeEngine> {
    Session::new(engine.clone(), plan, Printer::capture(false)).with_timeouts(quick())
}

/// A prepared session on `engine` with quick timeouts, not started yet.
pub(super) async fn unstarted(engine: &FakeEngine, spec: BottleSpec) -> Session<FakeEngine> {
    session_of(engine, prepared(engine, spec).await)
}

/// `unstarted`, with the calls of `prepare` forgotten: what the engine
/// records from here on is the start's.
async fn unstarted_with_calls_cleared(
    engine: &FakeEngine,
    spec: BottleSpec,
) -> Session<FakeEngine> {
    let session = unstarted(engine, spec).await;
    engine.state().calls.clear();
    session
}

/// A started session on `engine`, with the calls of `prepare` forgotten.
async fn started(engine: &FakeEngine, spec: BottleSpec) -> Session<FakeEngine> {
    let mut session = unstarted_with_calls_cleared(engine, spec).await;
    session.start().await.unwrap();
    session
}

/// Names of the containers the fake daemon holds, in its order.
fn container_names(engine: &FakeEngine) -> Vec<String> {
    engine
        .state()
        .containers
        .values()
        .map(|c| c.name.clone())
        .collect()
}

/// Names of the networks the fake daemon holds, in its order.
fn network_names(engine: &FakeEngine) -> Vec<String> {
    engine
        .state()
        .networks
        .values()
        .map(|n| n.name.clone())
        .collect()
}

/// The fake daemon holds no container and no network.
pub(super) fn assert_nothing_left(engine: &FakeEngine) {
    let state = engine.state();
    assert!(state.containers.is_empty(), "{:?}", state.containers);
    assert!(state.networks.is_empty(), "{:?}", state.networks);
}

fn container<'a>(specs: &'a [ContainerSpec], name: &str) -> &'a ContainerSpec {
    specs.iter().find(|c| c.name == name).unwrap()
}

#[tokio::test]
async fn prepare_queries_the_daemon_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let plan = prepared(&engine, spec("Reviewer", home.path())).await;
    assert!(engine.mutations().is_empty(), "{:?}", engine.ops());
    assert_eq!(plan.names.agent, "claude-bottle-reviewer");
    assert_eq!(plan.runtime, Runtime::Default);
}

#[tokio::test]
async fn prepare_picks_the_first_free_suffix() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    engine.add_foreign_container("claude-bottle-reviewer", Labels::new());
    engine.add_foreign_network("claude-bottle-egress-reviewer-2", Labels::new());
    let plan = prepared(&engine, spec("reviewer", home.path())).await;
    assert_eq!(plan.names.suffix, 3);
    assert_eq!(plan.names.agent, "claude-bottle-reviewer-3");
    assert_eq!(
        plan.names.internal_network,
        "claude-bottle-internal-reviewer-3"
    );
}

#[tokio::test]
async fn prepare_detects_runsc() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    engine.state().runtimes = vec![
        "io.containerd.runc.v2".into(),
        "runc".into(),
        "runsc".into(),
    ];
    let plan = prepared(&engine, spec("a", home.path())).await;
    assert_eq!(plan.runtime, Runtime::Runsc);
    assert!(
        plan.to_string()
            .contains("docker runtime: runsc (gVisor)\n")
    );
}

#[tokio::test]
async fn prepare_reports_a_missing_bottle_image_and_plans_the_built_in_one() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[PROXY_IMAGE]);
    let mut with_image = spec("a", home.path());
    with_image.bottle.image = Some("mine/agent:1".into());
    let err = prepare_with(&engine, with_image, &settings())
        .await
        .unwrap_err();
    assert!(matches!(err, PrepareError::BottleImageMissing { .. }));
    assert_eq!(
        err.to_string(),
        "image `mine/agent:1` of bottle `default` is not present locally"
    );
    assert!(err.hints()[0].starts_with("build or pull it first"));

    // The built-in image is built rather than missing.
    let plan = prepared(&engine, spec("a", home.path())).await;
    assert!(plan.to_string().contains(&format!(
        "(built-in, Claude Code {CLAUDE_CODE}, will be built)"
    )));
}

#[tokio::test]
async fn an_absent_proxy_image_is_planned_as_pulled_and_nothing_happens_yet() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[BUILT_IN]);
    let plan = prepared(&engine, spec("reviewer", home.path())).await;
    assert!(!plan.proxy_image_present);
    let text = plan.to_string();
    assert!(
        text.contains(
            "           proxy: claude-bottle-pipelock-reviewer (pipelock:test, will be pulled)\n"
        ),
        "{text}"
    );
    assert!(engine.mutations().is_empty(), "{:?}", engine.ops());

    let present = prepared(
        &engine.clone().with_images(&[PROXY_IMAGE]),
        spec("reviewer", home.path()),
    )
    .await;
    assert!(present.proxy_image_present);
    assert!(
        present
            .to_string()
            .contains("proxy: claude-bottle-pipelock-reviewer (pipelock:test)\n")
    );
}

#[tokio::test]
async fn an_absent_proxy_image_is_pulled_before_the_proxy_is_created() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[BUILT_IN]);
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let mutations = engine.mutations();
    assert_eq!(
        mutations
            .iter()
            .filter(|m| m.starts_with("pull_image"))
            .collect::<Vec<_>>(),
        [&format!("pull_image {PROXY_IMAGE}")]
    );
    let position = |op: &str| mutations.iter().position(|m| m == op).unwrap();
    assert!(
        position(&format!("pull_image {PROXY_IMAGE}"))
            < position("create_container claude-bottle-pipelock-reviewer")
    );
    assert_eq!(
        container(
            &engine.created_containers(),
            "claude-bottle-pipelock-reviewer"
        )
        .image,
        PROXY_IMAGE
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_present_proxy_image_is_not_pulled() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    assert!(
        !engine.ops().iter().any(|op| op.starts_with("pull_image")),
        "{:?}",
        engine.ops()
    );
    session.close().await.unwrap();

    // Nor one that another session pulled between `prepare` and the bring-up.
    let engine = FakeEngine::new().with_images(&[BUILT_IN]);
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    assert!(!session.plan().proxy_image_present);
    engine.state().images.insert(PROXY_IMAGE.into());
    session.start().await.unwrap();
    assert!(
        !engine.ops().iter().any(|op| op.starts_with("pull_image")),
        "{:?}",
        engine.ops()
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn the_proxy_image_is_pulled_while_the_agent_image_is_built() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new();
    engine.state().build_delay = Some(Duration::from_secs(30));
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    let interrupted = tokio::time::timeout(Duration::from_millis(200), session.start()).await;
    assert!(interrupted.is_err());
    // The build is still running, and the pull is done.
    assert!(engine.ops().contains(&format!(
        "build_image {BUILT_IN} (Claude Code {CLAUDE_CODE})"
    )));
    assert!(!engine.state().images.contains(BUILT_IN));
    assert!(engine.state().images.contains(PROXY_IMAGE));
    session.close().await.unwrap();
    assert!(engine.state().networks.is_empty());
}

/// What Docker 20.10 answers when it cannot reach the registry.
fn no_registry() -> super::client::EngineError {
    super::client::EngineError::new(
        super::client::ErrorKind::Other,
        format!("pull the image `{PROXY_IMAGE}`"),
        "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host",
    )
}

#[tokio::test]
async fn a_failed_pull_is_a_clear_error_and_everything_is_torn_down() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[BUILT_IN]);
    engine.state().pull_failure = Some(no_registry());
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    let err = session.start().await.unwrap_err();
    assert_eq!(
        err.message,
        "could not pull the proxy image `pipelock:test` from its registry: `docker.io` could not be reached \
         (Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host)"
    );
    assert_eq!(
        err.hints,
        [
            "this machine may have no access to `docker.io`: bring the image from one that has, \
             with `docker save` and `docker load`",
            "pull it yourself with `docker pull pipelock:test` (which uses your registry logins), \
             or set `CLAUDE_BOTTLE_PIPELOCK_IMAGE` to a pipelock image present locally (see `docker images`)"
        ]
    );
    assert!(
        engine.created_containers().is_empty(),
        "no proxy without its image: {:?}",
        engine.ops()
    );
    // The networks were made meanwhile; they go with the session.
    session.close().await.unwrap();
    assert_nothing_left(&engine);
    assert!(session.ledger().networks.is_empty());
}

/// A workspace file that turned into a symlink between the plan and the
/// copy is not read through: the upload fails with an error naming it (not
/// the daemon's), and the session leaves nothing behind.
#[tokio::test]
async fn a_workspace_file_changed_after_the_plan_fails_the_copy_and_everything_is_torn_down() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("data.txt");
    std::fs::write(&data, "planned\n").unwrap();
    let engine = engine();
    let mut spec = spec("reviewer", home.path());
    spec.cwd = Some(cwd.path().to_path_buf());
    let plan = prepared(&engine, spec).await;
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &data).unwrap();
    let mut session = session_of(&engine, plan);
    let err = session.start().await.unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "`{}` is no longer a regular file, so it cannot be copied into the bottle",
            data.display()
        )
    );
    assert_eq!(
        err.hints,
        ["it changed after the session was prepared; start again"]
    );
    session.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn an_interrupted_pull_does_not_hold_up_teardown() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[BUILT_IN]);
    engine.state().pull_delay = Some(Duration::from_secs(60));
    let plan = prepared(&engine, spec("reviewer", home.path())).await;
    // The default drain time: a close that waited for it would take 10 s.
    let mut session = Session::new(engine.clone(), plan, Printer::capture(false));
    let interrupted = tokio::time::timeout(Duration::from_millis(150), session.start()).await;
    assert!(interrupted.is_err());
    assert!(engine.ops().contains(&format!("pull_image {PROXY_IMAGE}")));
    let clock = std::time::Instant::now();
    session.close().await.unwrap();
    assert!(
        clock.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        clock.elapsed()
    );
    assert!(engine.state().networks.is_empty());
    assert!(!engine.state().images.contains(PROXY_IMAGE));
}

#[tokio::test]
async fn prepare_refuses_a_system_directory_as_the_container_home() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    for container_home in ["/", "/usr", "/etc"] {
        let settings = Settings {
            container_home: container_home.into(),
            ..settings()
        };
        let err = prepare_with(&engine, spec("reviewer", home.path()), &settings)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "container home `{container_home}` is the system directory `{container_home}`: "
            )),
            "{text}"
        );
        assert!(!text.contains("hint:"), "{text}");
        assert!(
            err.hints()[0].starts_with("set `CLAUDE_BOTTLE_CONTAINER_HOME`"),
            "{:?}",
            err.hints()
        );
    }
    assert!(engine.mutations().is_empty(), "{:?}", engine.ops());
}

#[tokio::test]
async fn prepare_refuses_a_taken_pinned_name() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    engine.add_foreign_container("mine", Labels::new());
    let mut pinned = spec("a", home.path());
    pinned.pinned_name = Some("mine".into());
    let err = prepare_with(&engine, pinned, &settings())
        .await
        .unwrap_err();
    assert!(matches!(err, PrepareError::PinnedNameTaken { .. }), "{err}");
}

#[tokio::test]
async fn prepare_refuses_a_pinned_name_docker_would_not_take_as_it_is() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    // The daemon names a container randomly when given "", and refuses the
    // others only after the networks and the proxy exist.
    for bad in ["", "a", "my bottle", "-lead", "/slash", "x/y", "naïve"] {
        let mut pinned = spec("a", home.path());
        pinned.pinned_name = Some(bad.into());
        let err = prepare_with(&engine, pinned, &settings())
            .await
            .expect_err(bad);
        assert!(
            matches!(err, PrepareError::InvalidPinnedName { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("--name"), "{err}");
        assert!(crate::backend::BackendError::from(err).kind == BackendErrorKind::Usage);
    }
    for good in ["ab", "my-bottle_2.0", "9lives"] {
        let mut pinned = spec("a", home.path());
        pinned.pinned_name = Some(good.into());
        let plan = prepared(&engine, pinned).await;
        assert_eq!(plan.names.agent, good);
    }
    assert!(engine.mutations().is_empty(), "{:?}", engine.ops());
}

#[tokio::test]
async fn the_plan_shows_names_but_never_values() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut plan = prepared(&engine, spec("reviewer", home.path())).await;
    plan.owner.session = "0123456789abcdef".into();
    let text = plan.to_string();
    assert!(!text.contains(SECRET));
    assert!(!format!("{plan:?}").contains(SECRET));
    insta::assert_snapshot!(text);
}

/// The `image` line of a plan for the built-in image names the Claude Code
/// version it has, or will be built with.
#[tokio::test]
async fn the_plan_shows_the_built_in_images_claude_code_version() {
    let home = tempfile::tempdir().unwrap();
    let image_line = |plan: &SessionPlan| {
        plan.to_string()
            .lines()
            .find(|l| l.trim_start().starts_with("image: "))
            .unwrap()
            .trim_start()
            .to_owned()
    };
    let present = prepared(&engine(), spec("reviewer", home.path())).await;
    assert_eq!(
        image_line(&present),
        format!("image: {BUILT_IN} (built-in, Claude Code 2.1.328)")
    );

    let absent = FakeEngine::new().with_images(&[PROXY_IMAGE]);
    let settings = Settings {
        claude_code_version: "2.1.400-beta.1".into(),
        ..settings()
    };
    let plan = prepare_with(&absent, spec("reviewer", home.path()), &settings)
        .await
        .unwrap();
    assert_eq!(
        image_line(&plan),
        format!("image: {BUILT_IN} (built-in, Claude Code 2.1.400-beta.1, will be built)")
    );
}

/// `CLAUDE_BOTTLE_CLAUDE_CODE_VERSION`: unset or empty is the pin, a version
/// is taken, anything else is a usage error (exit 2) naming the variable.
#[test]
fn the_claude_code_version_setting_is_validated() {
    use super::image::DEFAULT_CLAUDE_CODE_VERSION;
    use crate::backend::BackendError;

    assert_eq!(
        plan::claude_code_version(None).unwrap(),
        DEFAULT_CLAUDE_CODE_VERSION
    );
    assert_eq!(
        plan::claude_code_version(Some("")).unwrap(),
        DEFAULT_CLAUDE_CODE_VERSION
    );
    for good in ["2.1.328", "2.2.0", "3.0.0-rc.1", "2.1.400-beta-2"] {
        assert_eq!(plan::claude_code_version(Some(good)).unwrap(), good);
    }
    for bad in [
        "latest",
        "v2.1.328",
        "2.1.",
        "2.1.328 && x",
        "2.1.328+b",
        "2.1.\u{1b}[2J",
    ] {
        let Err(err) = plan::claude_code_version(Some(bad)) else {
            panic!("{bad:?} accepted");
        };
        let text = err.to_string();
        assert!(
            text.starts_with("`CLAUDE_BOTTLE_CLAUDE_CODE_VERSION` is `"),
            "{text}"
        );
        assert!(text.contains("such as `2.1.328`"), "{text}");
        assert!(!text.contains('\u{1b}'), "escaped: {text}");
        let backend = BackendError::from(err);
        assert!(backend.kind == BackendErrorKind::Usage);
        assert!(
            backend.hints[0].contains(&format!("the pinned {DEFAULT_CLAUDE_CODE_VERSION}")),
            "{:?}",
            backend.hints
        );
    }
}

const HOST_SECRET: &str = "host-secret-value-9f2c";
const PROMPTED_SECRET: &str = "typed-secret-value-41d7";
const OAUTH_SECRET: &str = "oauth-token-value-c3e8";

/// Every kind of thing a plan shows: SSH to a DNS and an IP host (non-22
/// port), skills, env of every kind, trusted domains, v4 and v6 CIDRs,
/// `--cwd` and remote control; loaded from manifest text and resolved as
/// `start` does, with a temp HOME holding the skills and identity files.
#[tokio::test]
async fn the_plan_of_a_rich_manifest_shows_everything_but_values() {
    use crate::core::env::{OAUTH_TOKEN_HOST_VAR, resolve};
    use crate::manifest::{ManifestSource, load_from_str};
    use crate::term::FakeTerminal;

    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    for skill in ["review", "release-notes"] {
        let dir = home.path().join(".claude/skills").join(skill);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("SKILL.md"), format!("# {skill}\n")).unwrap();
    }
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    for key in ["id_github", "id_buildbox"] {
        std::fs::write(home.path().join(".ssh").join(key), "not a real key\n").unwrap();
    }
    std::fs::write(cwd.path().join("README.md"), "# project\n").unwrap();
    let manifest = load_from_str(
        r#"{
          "bottles": {
            "work": {
              "env": {
                "GIT_AUTHOR_NAME": "Bottle Bot",
                "PRICE_TAG": "costs $$5",
                "GITHUB_TOKEN": "${GH_TOKEN_SRC}",
                "DEPLOY_KEY": "$DEPLOY_KEY_SRC"
              },
              "ssh": [
                { "Host": "github.com", "User": "git", "IdentityFile": "~/.ssh/id_github" },
                { "Host": "buildbox", "HostName": "192.0.2.10", "User": "ci", "Port": 2222,
                  "IdentityFile": "~/.ssh/id_buildbox" }
              ],
              "egress": {
                "allowlist": ["api.anthropic.com", "*.githubusercontent.com", "github.com"],
                "trusted_domains": ["intranet.example.com"],
                "ip_cidrs": ["10.20.0.0/16", "fd00:1234::/48"]
              }
            }
          },
          "agents": {
            "Rich.Reviewer": { "bottle": "work", "skills": ["review", "release-notes"], "prompt": "Review." }
          }
        }"#,
        ManifestSource::Embedded,
    )
    .unwrap();
    let agent = manifest.agents["Rich.Reviewer"].clone();
    let bottle = manifest.bottle_of(&agent).clone();
    let host_env: std::collections::BTreeMap<String, String> = [
        ("GH_TOKEN_SRC", HOST_SECRET),
        (OAUTH_TOKEN_HOST_VAR, OAUTH_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // DEPLOY_KEY_SRC is unset: it is asked for at the (fake) terminal.
    let mut term = FakeTerminal::with_inputs(true, &[PROMPTED_SECRET]);
    let env =
        futures_util::FutureExt::now_or_never(resolve("work", &bottle.env, &host_env, &mut term))
            .expect("a fake terminal never waits")
            .unwrap();
    let spec = BottleSpec {
        agent_name: "Rich.Reviewer".into(),
        agent,
        bottle_name: "work".into(),
        bottle,
        env,
        cwd: Some(cwd.path().to_path_buf()),
        pinned_name: None,
        remote_control: true,
        host_home: home.path().to_path_buf(),
        manifest_path: None,
    };
    let engine = engine();
    let mut plan = prepared(&engine, spec).await;
    plan.owner.session = "fedcba9876543210".into();
    let text = plan
        .to_string()
        .replace(&cwd.path().display().to_string(), "<cwd>");
    let debug = format!("{plan:?}");
    for secret in [HOST_SECRET, PROMPTED_SECRET, OAUTH_SECRET] {
        assert!(!text.contains(secret), "{secret} in the plan:\n{text}");
        assert!(!debug.contains(secret), "{secret} in the plan's Debug");
    }
    // The values are there to hide: they reached the plan's env.
    use secrecy::ExposeSecret;
    let values: Vec<&str> = plan
        .spec
        .env
        .vars
        .iter()
        .map(|v| v.value.expose_secret())
        .collect();
    for value in [HOST_SECRET, PROMPTED_SECRET, OAUTH_SECRET, "costs $5"] {
        assert!(values.contains(&value), "{value} not resolved: {values:?}");
    }
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn launch_follows_the_order_of_the_spec() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let session = started(&engine, spec("reviewer", home.path())).await;
    assert_eq!(
        engine.mutations(),
        [
            "create_network claude-bottle-internal-reviewer",
            "create_network claude-bottle-egress-reviewer",
            "create_container claude-bottle-pipelock-reviewer",
            "upload claude-bottle-pipelock-reviewer /",
            "connect claude-bottle-egress-reviewer claude-bottle-pipelock-reviewer",
            "start claude-bottle-pipelock-reviewer",
            "create_container claude-bottle-reviewer",
            "upload claude-bottle-reviewer /",
            "start claude-bottle-reviewer",
            "create_container claude-bottle-fence-reviewer",
            "start claude-bottle-fence-reviewer",
            "remove_container claude-bottle-fence-reviewer",
            // Claude's secrets, once the agent runs fenced.
            "exec_fed claude-bottle-reviewer as 1000:1000",
        ]
    );
    let started = session.started().unwrap();
    assert_eq!(started.names.agent, "claude-bottle-reviewer");
    assert_eq!(
        started.prompt_file.as_deref(),
        Some("/home/node/.claude-bottle-prompt.txt")
    );
    // The proxy passed its health command before the agent started.
    let ops = engine.ops();
    let position = |op: &str| ops.iter().position(|o| o == op).unwrap();
    assert!(
        position("exec claude-bottle-pipelock-reviewer /pipelock healthcheck")
            < position("start claude-bottle-reviewer"),
        "{ops:?}"
    );
}

#[tokio::test]
async fn the_agent_is_provisioned_while_the_proxy_gets_ready_and_started_after() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    engine.state().probe_exits = VecDeque::from([1, 1, 0]);
    let _session = started(&engine, spec("reviewer", home.path())).await;
    let relevant: Vec<String> = engine
        .ops()
        .into_iter()
        .filter(|o| {
            o.starts_with("exec")
                || o.ends_with(" claude-bottle-reviewer")
                || o == "upload claude-bottle-reviewer /"
        })
        .filter(|o| !o.starts_with("inspect"))
        .collect();
    assert_eq!(
        relevant,
        [
            "exec claude-bottle-pipelock-reviewer /pipelock healthcheck",
            "create_container claude-bottle-reviewer",
            "upload claude-bottle-reviewer /",
            "exec claude-bottle-pipelock-reviewer /pipelock healthcheck",
            "exec claude-bottle-pipelock-reviewer /pipelock healthcheck",
            "start claude-bottle-reviewer",
            "exec_fed claude-bottle-reviewer as 1000:1000",
        ]
    );
}

#[tokio::test]
async fn networks_isolate_the_agent() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let session = started(&engine, spec("reviewer", home.path())).await;
    let networks = engine.created_networks();
    let internal = &networks[0];
    assert!(internal.internal);
    assert_eq!(
        internal.options.get(INHIBIT_IPV4).map(String::as_str),
        Some("true")
    );
    let egress = &networks[1];
    assert!(!egress.internal);
    assert!(egress.options.is_empty());
    for network in &networks {
        assert_eq!(network.labels[LABEL_ROLE], "network");
        assert_eq!(network.labels[LABEL_SESSION], session.plan().owner.session);
    }
    // Only the proxy is connected to the egress network.
    let connects: Vec<_> = engine
        .state()
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Connect { container, .. } => Some(container.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(connects, ["claude-bottle-pipelock-reviewer"]);
}

#[tokio::test]
async fn the_agent_container_is_hardened_and_reaches_only_its_proxy() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let _session = started(&engine, spec("reviewer", home.path())).await;
    let specs = engine.created_containers();
    let agent = container(&specs, "claude-bottle-reviewer");
    let internal_id = {
        let state = engine.state();
        state
            .networks
            .iter()
            .find(|(_, n)| n.name == "claude-bottle-internal-reviewer")
            .map(|(id, _)| id.clone())
            .unwrap()
    };
    assert_eq!(agent.network, internal_id);
    assert_eq!(agent.image, BUILT_IN);
    assert_eq!(agent.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        agent.entrypoint.as_deref(),
        Some(&["sleep".to_owned(), "infinity".to_owned()][..])
    );
    assert!(agent.init);
    assert_eq!(agent.security_opt, ["no-new-privileges"]);
    assert_eq!(agent.cap_drop, ["ALL"]);
    assert_eq!(agent.pids_limit, Some(specs::PIDS_LIMIT));
    assert_eq!(agent.dns, ["127.0.0.1"]);
    assert_eq!(agent.runtime, None);
    assert_eq!(agent.extra_hosts.len(), 1);
    let (host, ip) = agent.extra_hosts[0].split_once(':').unwrap();
    assert_eq!(host, "claude-bottle-pipelock-reviewer");
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    let env: Vec<String> = agent.env.iter().map(|e| format!("{e:?}")).collect();
    // GITHUB_TOKEN comes from the host: it goes to Claude's process only.
    assert_eq!(
        env,
        [
            "GIT_AUTHOR_NAME=<redacted>",
            "HOME=<redacted>",
            "HTTPS_PROXY=<redacted>",
            "HTTP_PROXY=<redacted>",
            "https_proxy=<redacted>",
            "http_proxy=<redacted>",
            "NO_PROXY=<redacted>",
            "no_proxy=<redacted>",
        ]
    );
    use secrecy::ExposeSecret;
    let value = |name: &str| {
        agent
            .env
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value.expose_secret().to_owned())
            .unwrap()
    };
    assert_eq!(value("GIT_AUTHOR_NAME"), "Bottle Bot");
    assert_eq!(
        value("HTTPS_PROXY"),
        "http://claude-bottle-pipelock-reviewer:8888"
    );
    assert_eq!(
        value("http_proxy"),
        "http://claude-bottle-pipelock-reviewer:8888"
    );
    assert_eq!(value("NO_PROXY"), "localhost,127.0.0.1");
    assert_eq!(value("HOME"), "/home/node");
    // The secret is in no call but the handoff's stdin.
    let calls = engine.state().calls.clone();
    for call in &calls {
        let shown = format!("{call:?}");
        match call {
            Call::ExecFed { input, .. } => assert!(input.contains(SECRET)),
            _ => assert!(!shown.contains(SECRET), "{shown}"),
        }
    }
    let request = serde_json::to_string(&super::client::create_body(agent)).unwrap();
    assert!(!request.contains(SECRET), "{request}");
    assert!(!request.contains("GITHUB_TOKEN"), "{request}");
    for label in [LABEL_MANAGED, LABEL_SESSION, LABEL_PID] {
        assert!(agent.labels.contains_key(label));
    }
    assert_eq!(agent.labels[LABEL_ROLE], "agent");
}

#[tokio::test]
async fn the_proxy_gets_its_config_before_start_and_is_probed_until_ready() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let session = started(&engine, spec("reviewer", home.path())).await;
    let specs = engine.created_containers();
    let proxy = container(&specs, "claude-bottle-pipelock-reviewer");
    assert_eq!(proxy.image, PROXY_IMAGE);
    assert_eq!(
        proxy.cmd.as_deref().unwrap(),
        ["run", "--config", "/etc/pipelock/pipelock.yaml"]
    );
    assert_eq!(proxy.runtime, None);
    assert!(proxy.env.is_empty());
    assert_eq!(proxy.labels[LABEL_ROLE], "proxy");
    let tar = engine
        .state()
        .calls
        .iter()
        .find_map(|c| match c {
            Call::Upload { container, tar, .. } if container == &proxy.name => Some(tar.clone()),
            _ => None,
        })
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut entries = archive.entries().unwrap();
    let mut entry = entries.next().unwrap().unwrap();
    assert_eq!(
        entry.path().unwrap().to_str().unwrap(),
        "etc/pipelock/pipelock.yaml"
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    assert_eq!(text, session.plan().pipelock_yaml);
}

#[tokio::test]
async fn runsc_is_for_the_agent_only() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine_with_runsc();
    let _session = started(&engine, spec("reviewer", home.path())).await;
    let specs = engine.created_containers();
    assert_eq!(
        container(&specs, "claude-bottle-reviewer")
            .runtime
            .as_deref(),
        Some("runsc")
    );
    assert_eq!(
        container(&specs, "claude-bottle-pipelock-reviewer").runtime,
        None
    );
}

/// The error of a start on a daemon whose `runsc` fails every container
/// with `failure`; the failed session is closed and must leave nothing.
async fn start_error_with_a_failing_runsc(failure: &str) -> BackendError {
    let home = tempfile::tempdir().unwrap();
    let engine = engine_with_runsc();
    engine.state().failing_runtime = Some(("runsc".into(), failure.into()));
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    let err = session.start().await.unwrap_err();
    session.close().await.unwrap();
    assert_nothing_left(&engine);
    let failed = engine.state().failed_starts.clone();
    let [agent] = failed.as_slice() else {
        panic!("one container's start failed, the agent's: {failed:?}");
    };
    // What a failed start under runsc can leave is named by the agent
    // container's ID, when the runtime got as far as making its sandbox.
    let leftover = err.hints.iter().find(|h| h.contains("moby/moby#44399"));
    if failure.contains("OCI runtime start failed") {
        assert!(
            leftover.is_some_and(|h| h.contains(&format!("`pgrep -af {agent}`"))
                && h.contains(&format!("delete --force {agent}`"))),
            "{:?}",
            err.hints
        );
    } else {
        assert_eq!(leftover, None, "no sandbox was made");
    }
    err
}

#[tokio::test]
async fn a_runtime_that_cannot_start_containers_is_a_clear_error() {
    let err = start_error_with_a_failing_runsc(
        "OCI runtime create failed: exec: \"runsc\": executable file not found",
    )
    .await;
    assert!(
        err.message.starts_with(
            "could not start the agent container `claude-bottle-reviewer` with runtime `runsc`"
        ),
        "{}",
        err.message
    );
    assert!(
        err.hints[0].contains("fix or unregister it"),
        "{:?}",
        err.hints
    );
}

#[tokio::test]
async fn an_old_gvisor_on_a_new_kernel_is_a_clear_error_with_its_fix() {
    let err = start_error_with_a_failing_runsc(
        "OCI runtime start failed: starting container: setting up network: creating interfaces from net namespace \"/proc/1/ns/net\": cannot run with network enabled in root network namespace: unknown",
    )
    .await;
    assert!(
        err.message.contains("with runtime `runsc`: ")
            && err.message.contains("root network namespace"),
        "{}",
        err.message
    );
    assert_eq!(err.hints.len(), 3, "{:?}", err.hints);
    assert!(
        err.hints[0].contains(r#"`"runtimeArgs": ["--network=host"]`"#),
        "{:?}",
        err.hints
    );
    assert!(
        err.hints[1].contains("fix or unregister it"),
        "{:?}",
        err.hints
    );
}

#[tokio::test]
async fn a_retry_waits_for_the_networks_of_the_failed_attempt_to_be_free() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    // The agent's name is taken once the proxy is on both networks; the
    // daemon lists the removed proxy's endpoint for a moment longer.
    engine
        .state()
        .stolen_names
        .insert("claude-bottle-reviewer".into());
    engine.state().busy_network_removals = 1;
    session.start().await.unwrap();
    assert_eq!(
        session.started().unwrap().names.agent,
        "claude-bottle-reviewer-2"
    );
    session.close().await.unwrap();
    assert_eq!(container_names(&engine), ["claude-bottle-reviewer"]);
    assert_eq!(network_names(&engine), Vec::<String>::new());
}

#[tokio::test]
async fn a_name_taken_during_launch_moves_every_name_to_the_next_suffix() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = unstarted_with_calls_cleared(&engine, spec("reviewer", home.path())).await;
    // Another session takes the proxy name between prepare and launch.
    engine
        .state()
        .stolen_names
        .insert("claude-bottle-pipelock-reviewer".into());
    session.start().await.unwrap();
    assert_eq!(
        engine.mutations(),
        [
            "create_network claude-bottle-internal-reviewer",
            "create_network claude-bottle-egress-reviewer",
            "create_container claude-bottle-pipelock-reviewer",
            "remove_network claude-bottle-internal-reviewer",
            "remove_network claude-bottle-egress-reviewer",
            "create_network claude-bottle-internal-reviewer-2",
            "create_network claude-bottle-egress-reviewer-2",
            "create_container claude-bottle-pipelock-reviewer-2",
            "upload claude-bottle-pipelock-reviewer-2 /",
            "connect claude-bottle-egress-reviewer-2 claude-bottle-pipelock-reviewer-2",
            "start claude-bottle-pipelock-reviewer-2",
            "create_container claude-bottle-reviewer-2",
            "upload claude-bottle-reviewer-2 /",
            "start claude-bottle-reviewer-2",
            "create_container claude-bottle-fence-reviewer-2",
            "start claude-bottle-fence-reviewer-2",
            "remove_container claude-bottle-fence-reviewer-2",
            "exec_fed claude-bottle-reviewer-2 as 1000:1000",
        ]
    );
    // The agent's proxy settings follow the new name.
    let specs = engine.created_containers();
    let agent = container(&specs, "claude-bottle-reviewer-2");
    assert!(agent.extra_hosts[0].starts_with("claude-bottle-pipelock-reviewer-2:"));
    session.close().await.unwrap();
    // The stolen name belongs to someone else and stays.
    assert_eq!(
        container_names(&engine),
        ["claude-bottle-pipelock-reviewer"]
    );
}

#[tokio::test]
async fn a_network_made_twice_at_once_stays_with_the_older_session() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = unstarted_with_calls_cleared(&engine, spec("reviewer", home.path())).await;
    engine
        .state()
        .racing_names
        .insert("claude-bottle-internal-reviewer".into());
    session.start().await.unwrap();
    assert_eq!(
        engine.mutations()[..4],
        [
            "create_network claude-bottle-internal-reviewer",
            "remove_network claude-bottle-internal-reviewer",
            "create_network claude-bottle-internal-reviewer-2",
            "create_network claude-bottle-egress-reviewer-2",
        ]
    );
    assert_eq!(
        session.started().unwrap().names.agent,
        "claude-bottle-reviewer-2"
    );
    session.close().await.unwrap();
    // Only the older twin, the other session's, is left.
    assert_eq!(network_names(&engine), ["claude-bottle-internal-reviewer"]);
    assert!(
        engine
            .state()
            .networks
            .values()
            .all(|n| n.labels.is_empty())
    );
}

fn subnets(specs: &[super::client::NetworkSpec]) -> Vec<String> {
    specs
        .iter()
        .map(|n| {
            n.ipam
                .as_ref()
                .map(|i| i.subnet.clone())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn each_network_gets_a_subnet_of_its_own_from_the_pool_with_its_gateway() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let networks = engine.created_networks();
    let addresses = &session.plan().addresses;
    assert_eq!(
        subnets(&networks),
        [addresses.internal.to_string(), addresses.egress.to_string()]
    );
    assert_ne!(addresses.internal, addresses.egress);
    let pool: ipnet::Ipv4Net = crate::core::subnet::DEFAULT_ADDRESS_POOL.parse().unwrap();
    for network in &networks {
        let ipam = network.ipam.as_ref().unwrap();
        let subnet: ipnet::Ipv4Net = ipam.subnet.parse().unwrap();
        assert!(pool.contains(&subnet), "{subnet} outside {pool}");
        assert_eq!(subnet.prefix_len(), 28);
        assert_eq!(
            ipam.gateway,
            std::net::Ipv4Addr::from_bits(subnet.network().to_bits() + 1).to_string()
        );
    }
    session.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn prepare_avoids_every_network_and_host_route_and_says_when_the_pool_is_full() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    // Four /28s in the pool: someone's /27 covers two, a host route one.
    engine.add_foreign_network_on("someones-lan", "10.9.0.0/27");
    let settings = Settings {
        address_pool: "10.9.0.0/26".parse().unwrap(),
        host_routes: vec!["10.9.0.48/30".parse().unwrap()],
        ..settings()
    };
    let err = prepare_with(&engine, spec("reviewer", home.path()), &settings)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free subnet for the bottle's networks in `10.9.0.0/26` (`CLAUDE_BOTTLE_ADDRESS_POOL`): the networks on the daemon and the host's routes use it up"
    );
    assert!(
        err.hints()[0].contains("claude-bottle cleanup"),
        "{:?}",
        err.hints()
    );
    assert!(err.hints()[1].contains("wider range"), "{:?}", err.hints());
    assert!(engine.state().containers.is_empty());

    let settings = Settings {
        host_routes: vec!["192.168.1.0/24".parse().unwrap()],
        ..settings
    };
    let plan = prepare_with(&engine, spec("reviewer", home.path()), &settings)
        .await
        .unwrap();
    let mut chosen = [
        plan.addresses.internal.to_string(),
        plan.addresses.egress.to_string(),
    ];
    chosen.sort();
    assert_eq!(chosen, ["10.9.0.32/28", "10.9.0.48/28"]);
}

#[tokio::test]
async fn a_subnet_taken_meanwhile_is_chosen_again_from_a_fresh_list() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = unstarted_with_calls_cleared(&engine, spec("reviewer", home.path())).await;
    // A concurrent session gets the planned internal subnet first.
    engine.state().stolen_subnets = 1;
    session.start().await.unwrap();
    let networks = engine.created_networks();
    let tried = subnets(&networks);
    assert_eq!(
        networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        [
            "claude-bottle-internal-reviewer",
            "claude-bottle-internal-reviewer",
            "claude-bottle-egress-reviewer"
        ]
    );
    assert_eq!(tried[0], session.plan().addresses.internal.to_string());
    assert_ne!(tried[1], tried[0]);
    assert_ne!(tried[1], tried[2]);
    // The second choice was made against the daemon's networks as they were then.
    assert!(
        engine
            .state()
            .calls
            .iter()
            .any(|c| matches!(c, Call::ListNetworks(f) if f.is_empty()))
    );
    session.close().await.unwrap();
    assert_eq!(network_names(&engine), ["another-session"]);
}

#[tokio::test]
async fn a_subnet_taken_again_and_again_is_a_clear_error_after_bounded_tries() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = unstarted_with_calls_cleared(&engine, spec("reviewer", home.path())).await;
    engine.state().stolen_subnets = 1000;
    let err = session.start().await.unwrap_err();
    assert!(
        err.message.starts_with(&format!(
            "could not give network `claude-bottle-internal-reviewer` a subnet: {} were taken",
            super::network_create::ADDRESS_ATTEMPTS
        )),
        "{}",
        err.message
    );
    assert!(
        err.hints[0].contains("CLAUDE_BOTTLE_ADDRESS_POOL"),
        "{:?}",
        err.hints
    );
    assert_eq!(
        engine.created_networks().len(),
        super::network_create::ADDRESS_ATTEMPTS as usize
    );
    session.close().await.unwrap();
    let state = engine.state();
    assert!(state.networks.values().all(|n| n.name == "another-session"));
    assert!(state.containers.is_empty());
}

#[test]
fn daemon_timestamps_sort_by_time_despite_cut_zeros() {
    use super::client::created_key;
    assert!(created_key("2026-11-22T05:54:20.123Z") < created_key("2026-11-22T05:54:20.5Z"));
    assert!(created_key("2026-11-22T05:54:20Z") < created_key("2026-11-22T05:54:20.000000001Z"));
    assert!(created_key("2026-11-22T05:54:19.999999999Z") < created_key("2026-11-22T05:54:20Z"));
}

#[tokio::test]
async fn a_taken_pinned_name_is_an_error_not_a_retry() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut pinned = spec("reviewer", home.path());
    pinned.pinned_name = Some("my-bottle".into());
    let mut session = unstarted(&engine, pinned).await;
    engine.state().stolen_names.insert("my-bottle".into());
    let err = session.start().await.unwrap_err();
    assert!(err.kind == BackendErrorKind::Usage);
    assert!(
        err.message
            .contains("`my-bottle` (from `--name`) is already in use")
    );
    session.close().await.unwrap();
    assert_eq!(container_names(&engine), ["my-bottle"]);
    assert_eq!(network_names(&engine), Vec::<String>::new());
}

#[tokio::test]
async fn teardown_removes_containers_then_networks_and_is_idempotent() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let host_home = session.plan().spec.host_home.clone();
    engine.state().calls.clear();
    session.close().await.unwrap();
    assert_eq!(
        engine.mutations(),
        [
            "remove_container claude-bottle-reviewer",
            "remove_container claude-bottle-pipelock-reviewer",
            "remove_network claude-bottle-internal-reviewer",
            // The proxy (`c0003`) is taken off the egress network first, so
            // that network need not wait for it to stop.
            "disconnect claude-bottle-egress-reviewer c0003",
            "remove_network claude-bottle-egress-reviewer",
        ]
    );
    assert_nothing_left(&engine);
    assert!(session.ledger().containers.is_empty());
    assert!(host_home.exists(), "teardown touches nothing on the host");
    engine.state().calls.clear();
    session.close().await.unwrap();
    assert!(engine.ops().is_empty());
}

#[tokio::test]
async fn teardown_never_touches_another_session() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut first = started(&engine, spec("reviewer", home.path())).await;
    let mut second = started(&engine, spec("reviewer", home.path())).await;
    assert_eq!(
        second.started().unwrap().names.agent,
        "claude-bottle-reviewer-2"
    );
    first.close().await.unwrap();
    assert_eq!(
        container_names(&engine),
        [
            "claude-bottle-pipelock-reviewer-2",
            "claude-bottle-reviewer-2"
        ]
    );
    second.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn a_start_dropped_mid_way_still_closes_everything() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[PROXY_IMAGE]);
    engine.state().build_delay = Some(Duration::from_secs(30));
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    // The image build outlasts the signal; the networks were made meanwhile.
    let interrupted = tokio::time::timeout(Duration::from_millis(100), session.start()).await;
    assert!(interrupted.is_err());
    assert_eq!(engine.state().networks.len(), 2);
    session.close().await.unwrap();
    assert_nothing_left(&engine);
    assert!(
        session.start().await.is_err(),
        "a closed session stays closed"
    );
}

#[tokio::test]
async fn a_start_dropped_while_the_proxy_starts_still_closes_everything() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    engine.state().probe_exits = VecDeque::from([1]);
    let mut session = unstarted(&engine, spec("reviewer", home.path()))
        .await
        .with_timeouts(Timeouts {
            proxy_ready: Duration::from_secs(30),
            ..quick()
        });
    let interrupted = tokio::time::timeout(Duration::from_millis(150), session.start()).await;
    assert!(interrupted.is_err());
    // The proxy runs; the agent exists, provisioned, but was never started.
    let states: Vec<(String, String)> = engine
        .state()
        .containers
        .values()
        .map(|c| (c.name.clone(), c.state.clone()))
        .collect();
    assert_eq!(
        states,
        [
            (
                "claude-bottle-pipelock-reviewer".to_owned(),
                "running".to_owned()
            ),
            ("claude-bottle-reviewer".to_owned(), "created".to_owned()),
        ]
    );
    session.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn resources_whose_creation_reply_was_lost_are_swept_by_label() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    engine.state().lose_create_replies = true;
    assert!(session.start().await.is_err());
    assert!(session.ledger().networks.is_empty());
    assert_eq!(engine.state().networks.len(), 1);
    session.close().await.unwrap();
    assert!(engine.state().networks.is_empty());
}

#[tokio::test]
async fn a_proxy_that_exits_fails_with_its_logs_and_is_torn_down() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    {
        let mut state = engine.state();
        state.proxy_exits = true;
        state.logs = "config: unknown key \"fetch_proxy.bogus\"\n".into();
    }
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    let err = session.start().await.unwrap_err();
    assert!(
        err.message
            .starts_with("the proxy `claude-bottle-pipelock-reviewer` stopped before it was ready"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("| config: unknown key"),
        "{}",
        err.message
    );
    assert!(
        !engine
            .ops()
            .contains(&"start claude-bottle-reviewer".to_owned()),
        "the agent does not start without a ready proxy"
    );
    session.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn a_proxy_that_never_gets_healthy_times_out() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    engine.state().probe_exits = VecDeque::from([1]);
    let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
    let err = session.start().await.unwrap_err();
    assert!(
        err.message
            .starts_with("the proxy `claude-bottle-pipelock-reviewer` was not ready within"),
        "{}",
        err.message
    );
    session.close().await.unwrap();
    assert!(engine.state().containers.is_empty());
}

#[tokio::test]
async fn a_missing_built_in_image_is_built_while_the_networks_are_made() {
    let home = tempfile::tempdir().unwrap();
    let engine = FakeEngine::new().with_images(&[PROXY_IMAGE]);
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let mutations = engine.mutations();
    assert_eq!(
        mutations[0],
        format!("build_image {BUILT_IN} (Claude Code {CLAUDE_CODE})")
    );
    assert_eq!(
        mutations[1],
        "create_network claude-bottle-internal-reviewer"
    );
    session.close().await.unwrap();
}

#[test]
fn dropping_a_session_without_close_tears_it_down() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let session = started(&engine, spec("reviewer", home.path())).await;
        assert_eq!(engine.state().containers.len(), 2);
        drop(session);
    });
    assert_nothing_left(&engine);
}

#[test]
fn exec_line_follows_the_terminal_and_the_prompt() {
    use super::exec_claude::{ClaudeExec, exec_args};
    use crate::core::secret_handoff::launcher_command;
    let args = vec!["-p".to_owned(), "hello".to_owned()];
    let record = "/tmp/claude-bottle-exit-s1";
    let mut exec = ClaudeExec {
        container: "claude-bottle-a",
        workdir: "/home/node/workspace",
        prompt_file: Some("/home/node/.claude-bottle-prompt.txt"),
        remote_control: false,
        tty: true,
        handoff_dir: None,
        exit_record: record,
    };
    let line = exec_args(&exec, &args);
    assert_eq!(
        line[..10].join(" "),
        "exec -i -t --detach-keys ctrl-_,ctrl-^,ctrl-_ -u 1000:1000 -w /home/node/workspace claude-bottle-a"
    );
    // Claude's command line goes to the launcher, which records its code.
    assert_eq!(
        line[10..],
        launcher_command(
            record,
            None,
            [
                "claude",
                "--append-system-prompt-file",
                "/home/node/.claude-bottle-prompt.txt",
                "-p",
                "hello"
            ]
            .map(str::to_owned)
        )[..]
    );
    exec.container = "c";
    exec.workdir = "/home/node/workspace/sub dir";
    exec.prompt_file = None;
    exec.remote_control = true;
    exec.tty = false;
    let line = exec_args(&exec, &args);
    assert_eq!(
        line[..9].join(" "),
        "exec -i --detach-keys ctrl-_,ctrl-^,ctrl-_ -u 1000:1000 -w /home/node/workspace/sub dir c"
    );
    let claude = ["claude", "remote-control", "-p", "hello"].map(str::to_owned);
    assert_eq!(
        line[9..],
        launcher_command(record, None, claude.clone())[..]
    );
    // With secrets, the launcher loads them first.
    exec.handoff_dir = Some("/dev/shm/claude-bottle-env-s1");
    let line = exec_args(&exec, &args);
    let launcher = launcher_command(record, Some("/dev/shm/claude-bottle-env-s1"), claude);
    assert_eq!(line[9..], launcher[..]);
    assert_eq!(line[9..11], ["sh", "-c"]);
    assert_eq!(
        line[12..15],
        ["claude-bottle", record, "/dev/shm/claude-bottle-env-s1"]
    );
}

#[tokio::test]
async fn secrets_travel_only_in_the_stdin_of_the_handoff_exec() {
    use std::ffi::OsStr;
    let home = tempfile::tempdir().unwrap();
    let mut spec = spec("reviewer", home.path());
    spec.env.vars.push(ResolvedVar {
        name: "CLAUDE_CODE_OAUTH_TOKEN".into(),
        source: EnvSource::OauthToken,
        host_var: Some("CLAUDE_BOTTLE_OAUTH_TOKEN".into()),
        value: SecretString::from("oauth-token-'$value'\n"),
    });
    let engine = engine();
    let session = started(&engine, spec).await;
    let session_id = session.plan().owner.session.clone();
    let argv = session
        .claude_exec_line(&["-p".to_owned(), "hi".to_owned()], false)
        .unwrap();
    let dir = format!("/dev/shm/claude-bottle-env-{session_id}");
    let calls = engine.state().calls.clone();
    let fed: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::ExecFed { .. }))
        .collect();
    assert_eq!(fed.len(), 1, "{:?}", engine.ops());
    let Call::ExecFed {
        container,
        cmd,
        user,
        input,
    } = fed[0]
    else {
        unreachable!()
    };
    assert_eq!(container, "claude-bottle-reviewer");
    assert_eq!(user, "1000:1000");
    assert_eq!(cmd, &crate::core::secret_handoff::writer_command(&dir));
    assert_eq!(
        input,
        &format!(
            "export GITHUB_TOKEN='{SECRET}'\nexport CLAUDE_CODE_OAUTH_TOKEN='oauth-token-'\\''$value'\\''\n'\n"
        ),
        "the secrets, and no literal"
    );
    // Nowhere else: no other call (container configs included), and not
    // the docker CLI's command line or environment.
    let others: Vec<String> = calls
        .iter()
        .filter(|c| !matches!(c, Call::ExecFed { .. }))
        .map(|c| format!("{c:?}"))
        .collect();
    for value in [SECRET, "oauth-token-"] {
        assert!(
            !others.iter().any(|c| c.contains(value)),
            "{value} in {others:?}"
        );
        assert!(
            !argv.iter().any(|a| a.contains(value)),
            "{value} in {argv:?}"
        );
    }
    let record = format!("/tmp/claude-bottle-exit-{session_id}");
    let expected = super::exec_claude::exec_args(
        &super::exec_claude::ClaudeExec {
            container: "claude-bottle-reviewer",
            workdir: "/home/node/workspace",
            prompt_file: Some("/home/node/.claude-bottle-prompt.txt"),
            remote_control: false,
            tty: false,
            handoff_dir: Some(&dir),
            exit_record: &record,
        },
        &["-p".to_owned(), "hi".to_owned()],
    );
    assert_eq!(argv, expected);
    let command = super::exec_claude::claude_command("unix:///run/d.sock", &argv);
    let command = command.as_std();
    let args: Vec<&OsStr> = command.get_args().collect();
    assert_eq!(args, argv.iter().map(OsStr::new).collect::<Vec<_>>());
    let set: Vec<(&OsStr, &OsStr)> = command
        .get_envs()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
    assert_eq!(
        set,
        [(OsStr::new("DOCKER_HOST"), OsStr::new("unix:///run/d.sock"))],
        "the CLI is pointed at the daemon, and given nothing else"
    );
}

#[tokio::test]
async fn without_secrets_claude_runs_with_no_handoff_and_a_failed_handoff_names_its_cause() {
    let home = tempfile::tempdir().unwrap();
    let mut spec = spec("reviewer", home.path());
    spec.env.vars.retain(|v| v.source == EnvSource::Literal);
    let engine = engine();
    let session = started(&engine, spec).await;
    let argv = session.claude_exec_line(&[], true).unwrap();
    let record = format!("/tmp/claude-bottle-exit-{}", session.plan().owner.session);
    assert_eq!(argv[9], "claude-bottle-reviewer");
    assert_eq!(
        argv[10..],
        crate::core::secret_handoff::launcher_command(
            &record,
            None,
            [
                "claude",
                "--append-system-prompt-file",
                "/home/node/.claude-bottle-prompt.txt"
            ]
            .map(str::to_owned)
        )[..],
        "{argv:?}"
    );
    assert!(
        !engine
            .state()
            .calls
            .iter()
            .any(|c| matches!(c, Call::ExecFed { .. }))
    );

    // A handoff that fails fails the start, and leaves nothing.
    let engine = super::tests::engine();
    let mut session = unstarted(&engine, super::tests::spec("reviewer", home.path())).await;
    engine
        .state()
        .fed_replies
        .push_back(Ok(super::client::ExecCapture {
            exit_code: 1,
            stdout: String::new(),
            stderr: "mkdir: cannot create directory: File exists\n".into(),
        }));
    let err = session.start().await.unwrap_err();
    assert_eq!(
        err.message,
        "could not hand Claude's secret environment to the agent container `claude-bottle-reviewer`: its writer exited with 1: mkdir: cannot create directory: File exists"
    );
    assert!(err.hints[0].contains("/dev/shm"), "{:?}", err.hints);
    assert!(!err.message.contains(SECRET));
    session.close().await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn prepare_refuses_a_secret_that_no_environment_can_hold() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut spec = spec("reviewer", home.path());
    spec.env.vars[0].value = SecretString::from("before\0after");
    let err = prepare_with(&engine, spec, &settings()).await.unwrap_err();
    assert!(matches!(err, PrepareError::AgentEnv(_)), "{err}");
    assert!(
        crate::backend::BackendError::from(err).kind == BackendErrorKind::Usage,
        "a value the user gave that cannot work is a usage error"
    );
    assert!(engine.mutations().is_empty());
}

#[tokio::test]
async fn list_marks_sessions_whose_process_is_gone() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut live = started(&engine, spec("reviewer", home.path())).await;
    // A session whose claude-bottle process has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let mut labels = live.plan().owner.labels(super::names::Role::Agent);
    labels.insert(LABEL_PID.into(), dead_pid.to_string());
    labels.insert(LABEL_SESSION.into(), "gone".into());
    engine.add_foreign_container("claude-bottle-old", labels);

    let active = super::list::list_active(&engine, 2_100).await.unwrap();
    let rows: Vec<(String, bool, u64)> = active
        .iter()
        .map(|b| (b.name.clone(), b.orphaned, b.age_seconds))
        .collect();
    assert_eq!(
        rows,
        [
            ("claude-bottle-old".to_owned(), true, 1_100),
            ("claude-bottle-reviewer".to_owned(), false, 100),
        ]
    );
    assert_eq!(active[1].agent, "reviewer");
    assert_eq!(active[1].runtime, "runc");
    assert_eq!(active[1].state, "running");
    live.close().await.unwrap();
}

#[tokio::test]
async fn cleanup_removes_every_managed_container_then_network_and_nothing_else() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    engine.add_foreign_container("someone-elses", Labels::new());
    engine.add_foreign_network("their-network", Labels::new());
    let plan = super::cleanup::prepare_cleanup(&engine).await.unwrap();
    insta::assert_snapshot!(plan.to_string());
    engine.state().calls.clear();
    let report = super::cleanup::cleanup(&engine, &plan).await.unwrap();
    let removed: Vec<String> = report
        .removed
        .iter()
        .map(|r| format!("{} {}", r.kind.one, r.name))
        .collect();
    assert_eq!(
        removed,
        [
            "container claude-bottle-pipelock-reviewer",
            "container claude-bottle-reviewer",
            "network claude-bottle-egress-reviewer",
            "network claude-bottle-internal-reviewer"
        ]
    );
    let mutations = engine.mutations();
    assert!(
        mutations[..2]
            .iter()
            .all(|m| m.starts_with("remove_container"))
    );
    assert!(
        mutations[2..]
            .iter()
            .all(|m| m.starts_with("remove_network"))
    );
    assert_eq!(engine.state().containers.len(), 1);
    assert_eq!(engine.state().networks.len(), 1);
    // The session's own close after a cleanup has nothing left to do.
    session.close().await.unwrap();
    let empty = super::cleanup::prepare_cleanup(&engine).await.unwrap();
    assert!(empty.is_empty(), "{empty}");
}

/// A session whose proxy creation is still on the daemon when its bring-up
/// is aborted, closed with `late_creation` as the grace for it to land.
async fn closed_while_a_creation_is_in_flight(late_creation: Duration) -> FakeEngine {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let plan = prepared(&engine, spec("reviewer", home.path())).await;
    let timeouts = Timeouts {
        drain: Duration::from_millis(100),
        late_creation,
        ..quick()
    };
    let mut session =
        Session::new(engine.clone(), plan, Printer::capture(false)).with_timeouts(timeouts);
    engine.state().slow_creations = Some(Duration::from_secs(1));
    let interrupted = tokio::time::timeout(Duration::from_millis(200), session.start()).await;
    assert!(interrupted.is_err(), "the creation outlasts the signal");
    session.close().await.unwrap();
    engine
}

#[tokio::test(start_paused = true)]
async fn a_creation_that_lands_after_an_aborted_bring_up_is_swept_too() {
    let engine = closed_while_a_creation_is_in_flight(Duration::from_secs(2)).await;
    let ops = engine.ops();
    assert!(
        ops.contains(&"create_container claude-bottle-pipelock-reviewer".to_owned()),
        "{ops:?}"
    );
    assert_nothing_left(&engine);
}

#[tokio::test(start_paused = true)]
async fn without_the_second_sweep_that_creation_would_be_left() {
    // The control: no grace, so the sweep runs before the creation lands.
    let engine = closed_while_a_creation_is_in_flight(Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        container_names(&engine),
        ["claude-bottle-pipelock-reviewer"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_stops_answering_cannot_hold_teardown_forever() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    engine.state().removals_hang = true;
    let err = session.close().await.unwrap_err();
    assert!(
        err.message.starts_with("teardown left resources behind:"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("could not remove container `claude-bottle-reviewer`: no answer within 60 s"),
        "{}",
        err.message
    );
    assert_eq!(err.hints, ["run `claude-bottle cleanup` to remove them"]);
    // What stayed (both containers, and the internal network they hold) is
    // cleanup's to find; the egress network went once the proxy was off it.
    engine.state().removals_hang = false;
    let plan = super::cleanup::prepare_cleanup(&engine).await.unwrap();
    assert_eq!(plan.items.len(), 3, "{plan}");
    assert!(!plan.to_string().contains("egress"), "{plan}");
    super::cleanup::cleanup(&engine, &plan).await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test(start_paused = true)]
async fn networks_wait_out_a_container_removal_longer_than_their_retries() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    // Far longer than the retries a network gets once no removal is pending.
    engine.state().slow_removals = Some(Duration::from_secs(30));
    engine.state().calls.clear();
    session.close().await.unwrap();
    assert_nothing_left(&engine);
    let ops = engine.ops();
    let tries = ops
        .iter()
        .filter(|o| *o == "remove_network claude-bottle-internal-reviewer")
        .count();
    assert!(tries > 50, "tried while the containers went: {ops:?}");
}

#[tokio::test]
async fn an_abandoned_session_removes_nothing_when_dropped() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    session.abandon();
    drop(session);
    assert_eq!(engine.state().containers.len(), 2);
    assert_eq!(engine.state().networks.len(), 2);
    let plan = super::cleanup::prepare_cleanup(&engine).await.unwrap();
    super::cleanup::cleanup(&engine, &plan).await.unwrap();
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn cleanup_waits_out_a_network_that_still_lists_a_removed_container() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    session.abandon();
    engine.state().busy_network_removals = 3;
    let plan = super::cleanup::prepare_cleanup(&engine).await.unwrap();
    let report = super::cleanup::cleanup(&engine, &plan).await.unwrap();
    assert_eq!(report.removed.len(), 4);
    assert_nothing_left(&engine);
}

#[tokio::test]
async fn the_cleanup_plan_says_whose_session_each_container_was() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut live = started(&engine, spec("reviewer", home.path())).await;
    let mut labels = live.plan().owner.labels(super::names::Role::Agent);
    labels.insert(super::names::LABEL_HOST.into(), "another-host".into());
    labels.insert(LABEL_SESSION.into(), "remote".into());
    engine.add_foreign_container("claude-bottle-remote", labels);
    let plan = super::cleanup::prepare_cleanup(&engine).await.unwrap();
    let text = plan.to_string();
    assert!(
        text.contains("  claude-bottle-remote (agent, running, session state unknown)\n"),
        "{text}"
    );
    assert!(
        text.contains("  claude-bottle-reviewer (agent, running, session still running)\n"),
        "{text}"
    );
    live.close().await.unwrap();
}

const RELOADED: &str = r#"{"level":"info","component":"pipelock","event":"config_reload","status":"success","detail":"mode=strict","config_hash":"ab12","time":"2026-12-02T10:16:00Z","message":"configuration reloaded"}"#;
const DOWNGRADE_REFUSED: &str = r#"{"level":"error","component":"pipelock","event":"error","method":"CONFIG_RELOAD","resource":"/etc/pipelock/pipelock.yaml","error":"rejected: security downgrade from strict mode","time":"2026-12-02T10:16:01Z","message":"request error"}"#;

#[tokio::test]
async fn a_reload_puts_the_config_in_place_signals_the_proxy_and_waits_for_its_report() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    engine.state().reload_line = Some(RELOADED.to_owned());
    let before = super::proxy_reload::proxy_config(&engine, "claude-bottle-reviewer")
        .await
        .unwrap();
    assert_eq!(before, session.plan().pipelock_yaml);
    engine.state().calls.clear();
    super::proxy_reload::reload(&engine, "claude-bottle-reviewer", "new: config\n")
        .await
        .unwrap();
    let mutations = engine.mutations();
    assert_eq!(
        mutations,
        [
            "upload claude-bottle-pipelock-reviewer /",
            "signal claude-bottle-pipelock-reviewer SIGHUP"
        ],
        "the proxy is neither stopped nor started again"
    );
    let after = super::proxy_reload::proxy_config(&engine, "claude-bottle-reviewer")
        .await
        .unwrap();
    assert_eq!(after, "new: config\n");
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_reload_the_proxy_refuses_is_an_error_with_its_reason() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    // An earlier reload, which must not count as the answer to this one.
    engine.state().logs = format!("{RELOADED}\n");
    engine.state().reload_line = Some(format!(
        "WARNING: config reload: trusted_domains - trusted domains added: x.test\n{DOWNGRADE_REFUSED}"
    ));
    let err = super::proxy_reload::reload(&engine, "claude-bottle-reviewer", "x: 1\n")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the proxy `claude-bottle-pipelock-reviewer` refused the new config: rejected: security downgrade from strict mode; trusted_domains - trusted domains added: x.test"
    );
    session.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_proxy_that_never_reports_its_reload_is_an_error_in_bounded_time() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let err = super::proxy_reload::reload(&engine, "claude-bottle-reviewer", "x: 1\n")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("did not report a reload within 10 s"),
        "{err}"
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn only_a_running_bottle_s_own_proxy_is_found() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut first = started(&engine, spec("reviewer", home.path())).await;
    let mut second = started(&engine, spec("reviewer", home.path())).await;
    let found = super::find::find_bottle(&engine, "claude-bottle-reviewer-2")
        .await
        .unwrap();
    assert_eq!(found.proxy_name, "claude-bottle-pipelock-reviewer-2");
    let err = super::find::find_bottle(&engine, "claude-bottle-pipelock-reviewer")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no bottle is called `claude-bottle-pipelock-reviewer`"
    );
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test]
async fn a_kept_agent_is_stopped_and_taken_off_its_network_while_the_rest_goes() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let kept = session.keep_agent().unwrap();
    assert_eq!(kept.name, "claude-bottle-reviewer");
    assert_eq!(kept.workspace, "/home/node/workspace");
    assert!(!kept.running, "runc keeps a stopped container's files");
    engine.state().calls.clear();
    session.close().await.unwrap();
    let mutations = engine.mutations();
    let at = |m: &str| mutations.iter().position(|x| x == m);
    let stop = at("stop claude-bottle-reviewer").expect("the kept agent is stopped");
    let network = at("remove_network claude-bottle-internal-reviewer").expect("its network goes");
    assert!(stop < network, "{mutations:?}");
    assert!(
        mutations.contains(
            &"disconnect claude-bottle-internal-reviewer claude-bottle-reviewer".to_owned()
        ),
        "{mutations:?}"
    );
    assert!(
        !mutations
            .iter()
            .any(|m| m == "remove_container claude-bottle-reviewer"),
        "{mutations:?}"
    );
    let state = engine.state();
    let left: Vec<(&str, &str)> = state
        .containers
        .values()
        .map(|c| (c.name.as_str(), c.state.as_str()))
        .collect();
    assert_eq!(left, [("claude-bottle-reviewer", "exited")]);
    assert!(state.networks.is_empty(), "{:?}", state.networks);
}

#[tokio::test]
async fn the_work_is_listed_then_bundled_and_copied_out_of_the_agent() {
    use super::client::ExecCapture;
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let oid = "a".repeat(40);
    engine.state().capped_replies.push_back(Ok(ExecCapture {
        exit_code: 0,
        stdout: format!("branch {oid} commit refs/heads/main\nuncommitted {oid}\n"),
        stderr: String::new(),
    }));
    engine
        .state()
        .stdout_replies
        .push_back(b"bundle bytes".to_vec());
    engine.state().calls.clear();
    let listing = session.work_listing(".").await.unwrap().unwrap();
    assert_eq!(listing.bottle, "claude-bottle-reviewer");
    assert_eq!(listing.work.branches[0].name, "main");
    assert_eq!(listing.work.uncommitted.unwrap().as_str(), oid);
    let dest = home.path().join("work.bundle");
    session
        .work_bundle(".", &["refs/heads/main".into()], &[], &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"bundle bytes");
    assert_eq!(
        engine.ops(),
        [
            "exec_capped claude-bottle-reviewer sh",
            "exec_to_file claude-bottle-reviewer sh",
        ]
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn the_fence_joins_the_started_agent_with_net_admin_alone_and_goes_before_start_returns() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine_with_runsc();
    let mut session = started(&engine, spec("reviewer", home.path())).await;
    let started = session.started().unwrap().clone();
    let specs = engine.created_containers();
    let fence = container(&specs, "claude-bottle-fence-reviewer");
    assert_eq!(fence.network, format!("container:{}", started.agent_id));
    assert!(fence.shares_network());
    assert_eq!(fence.cap_drop, ["ALL"]);
    assert_eq!(fence.cap_add, ["NET_ADMIN"]);
    assert_eq!(fence.security_opt, ["no-new-privileges"]);
    assert_eq!(fence.user.as_deref(), Some("0:0"));
    // The agent runs under runsc; the fence's rules must be the host kernel's.
    assert_eq!(
        container(&specs, "claude-bottle-reviewer")
            .runtime
            .as_deref(),
        Some("runsc")
    );
    assert_eq!(fence.runtime, None);
    assert_eq!(fence.labels[LABEL_ROLE], "fence");
    assert_eq!(fence.image, BUILT_IN);
    // Its command names the proxy's address on the internal network.
    let agent = container(&specs, "claude-bottle-reviewer");
    let proxy_address = agent.extra_hosts[0].split_once(':').unwrap().1;
    assert_eq!(
        fence.entrypoint.as_ref().unwrap()[4..],
        [proxy_address.to_owned(), "8888".to_owned()]
    );
    // The fence was waited for and is gone; the agent runs.
    let ops = engine.ops();
    let position = |op: &str| ops.iter().position(|o| o == op).unwrap();
    assert!(
        position("start claude-bottle-reviewer") < position("start claude-bottle-fence-reviewer")
    );
    assert!(
        position("wait claude-bottle-fence-reviewer")
            < position("remove_container claude-bottle-fence-reviewer")
    );
    assert_eq!(
        container_names(&engine),
        ["claude-bottle-pipelock-reviewer", "claude-bottle-reviewer"]
    );
    session.close().await.unwrap();
}

/// Without `--cwd`: the repositories under the workspace are found, each
/// read where it is, and a `find` that failed or a list that is not one is
/// an error.
#[tokio::test]
async fn the_repositories_under_the_workspace_are_found_and_each_read_where_it_is() {
    use super::client::ExecCapture;
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let session = started(&engine, spec("reviewer", home.path())).await;
    let reply = |exit_code: i64, stdout: &str| {
        Ok(ExecCapture {
            exit_code,
            stdout: stdout.into(),
            stderr: "find: './locked': Permission denied\n".into(),
        })
    };
    engine.state().capped_replies.extend([
        reply(0, "./app/.git\0./.git\0"),
        reply(0, "not-a-repo\n"),
        reply(1, "./app/.git\0"),
        reply(0, "./../up/.git\0"),
    ]);
    engine.state().calls.clear();
    assert_eq!(session.work_repos().await.unwrap(), [".", "app"]);
    assert_eq!(session.work_listing("app").await.unwrap(), None);
    let dirs: Vec<String> = engine
        .state()
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::ExecCapped { cmd, .. } => cmd.get(4).cloned(),
            _ => None,
        })
        .collect();
    assert_eq!(dirs, ["/home/node/workspace", "/home/node/workspace/app"]);
    let failed = session.work_repos().await.unwrap_err();
    assert!(failed.message.contains("Permission denied"), "{failed}");
    let garbled = session.work_repos().await.unwrap_err();
    assert!(garbled.message.contains("not one"), "{garbled}");
}

#[tokio::test]
async fn a_listing_the_bottle_garbled_or_a_git_that_failed_is_an_error() {
    use super::client::ExecCapture;
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let session = started(&engine, spec("reviewer", home.path())).await;
    engine.state().capped_replies.extend([
        Ok(ExecCapture {
            exit_code: 0,
            stdout: "branch nonsense\n".into(),
            stderr: String::new(),
        }),
        Ok(ExecCapture {
            exit_code: 128,
            stdout: String::new(),
            stderr: "fatal: bad object HEAD\n".into(),
        }),
        Ok(ExecCapture {
            exit_code: 0,
            stdout: "not-a-repo\n".into(),
            stderr: String::new(),
        }),
    ]);
    let garbled = session.work_listing(".").await.unwrap_err();
    assert!(garbled.message.contains("malformed line"), "{garbled}");
    let failed = session.work_listing(".").await.unwrap_err();
    assert!(
        failed
            .message
            .contains("git exited with 128: fatal: bad object HEAD"),
        "{failed}"
    );
    assert_eq!(session.work_listing(".").await.unwrap(), None);
}

#[tokio::test]
async fn a_fence_that_fails_or_cannot_show_its_rules_fails_the_start_and_leaves_nothing() {
    for (outcome, expected) in [
        (
            (1, "sh: 1: iptables: not found\n".to_owned()),
            "it exited with code 1",
        ),
        (
            (0, "fence: ipv4\n-P OUTPUT ACCEPT\n".to_owned()),
            "its rules are not in place: the policy `-P OUTPUT ACCEPT`",
        ),
    ] {
        let home = tempfile::tempdir().unwrap();
        let engine = engine();
        engine.state().fence_outcome = Some(outcome);
        let mut session = unstarted(&engine, spec("reviewer", home.path())).await;
        let err = session.start().await.unwrap_err();
        assert!(
            err.message.starts_with(
                "could not fence the network of the agent container `claude-bottle-reviewer`: the fence `claude-bottle-fence-reviewer`"
            ) && err.message.contains(expected),
            "{}",
            err.message
        );
        assert!(
            err.hints
                .iter()
                .any(|h| h.contains("`CLAUDE_BOTTLE_FENCE_IMAGE`")),
            "{:?}",
            err.hints
        );
        session.close().await.unwrap();
        let state = engine.state();
        assert!(state.containers.is_empty(), "{:?}", state.containers);
        assert!(state.networks.is_empty(), "{:?}", state.networks);
    }
}

#[tokio::test]
async fn a_fence_image_of_the_environment_must_be_present_before_anything_is_made() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let settings = Settings {
        fence_image: Some("example/fence:1".into()),
        ..settings()
    };
    let err = prepare_with(&engine, spec("reviewer", home.path()), &settings)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the fence image `example/fence:1` (`CLAUDE_BOTTLE_FENCE_IMAGE`) is not present locally"
    );
    assert!(engine.mutations().is_empty(), "{:?}", engine.mutations());
    engine.state().images.insert("example/fence:1".into());
    let plan = prepare_with(&engine, spec("reviewer", home.path()), &settings)
        .await
        .unwrap();
    assert_eq!(plan.fence_image, "example/fence:1");
    assert_eq!(plan.fence_image_build, None);
}

#[tokio::test]
async fn claudes_exit_code_comes_from_the_bottle_when_the_cli_lost_its_exec() {
    let home = tempfile::tempdir().unwrap();
    let engine = engine();
    let printer = Printer::capture(false);
    let plan = prepared(&engine, spec("reviewer", home.path())).await;
    let record = crate::core::secret_handoff::exit_record(&plan.owner.session);
    let mut session = Session::new(engine.clone(), plan, printer.clone()).with_timeouts(quick());
    session.start().await.unwrap();
    let reads = |engine: &FakeEngine| {
        engine
            .state()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Exec { cmd, .. } if cmd[..] == ["cat".to_owned(), record.clone()]))
            .count()
    };

    // Any code but 1 is Claude's own: nothing is read.
    for code in [0, 2, 130] {
        assert_eq!(session.claude_exit_code(code).await, code);
    }
    assert_eq!(reads(&engine), 0);
    // 1 with no record (the launcher never ended): the CLI's code stands.
    assert_eq!(session.claude_exit_code(1).await, 1);
    assert_eq!(reads(&engine), 1);
    // The daemon lost the exec: the CLI says 1, the launcher recorded 3.
    engine.state().files.insert(
        ("claude-bottle-reviewer".into(), record.clone()),
        b"3\n".to_vec(),
    );
    assert_eq!(session.claude_exit_code(1).await, 3);
    assert_eq!(reads(&engine), 2);
    let said = printer.captured();
    assert!(
        said.contains("lost Claude's exec and exited 1; Claude itself exited 3"),
        "{said}"
    );
    // Claude's own 1 is read as 1, and nothing is said.
    engine.state().files.insert(
        ("claude-bottle-reviewer".into(), record.clone()),
        b"1\n".to_vec(),
    );
    assert_eq!(session.claude_exit_code(1).await, 1);
    assert_eq!(printer.captured(), said);
    session.close().await.unwrap();
    assert_nothing_left(&engine);
}
