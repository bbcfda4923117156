//! A test's home, scratch root, working directory, manifest and agent for
//! running the `claude-bottle` binary on the real daemon. The agent's name
//! (`<prefix><tag>-<pid>-<n>`) is unique to the test, so everything the
//! product makes for it carries `claude-bottle.agent=<that name>`; whatever
//! still does when the fixture drops is removed.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::daemon::remove_resources;
use super::lock::SessionLocks;
use super::sessions::{
    AGENT_IMAGE, FENCE_IMAGE, PIPELOCK_STANDIN_IMAGE, containers_with, networks_with,
    sweep_stale_agents,
};

const BIN: &str = env!("CARGO_BIN_EXE_claude-bottle");

/// Requires what `suite`'s session tests need (the daemon, the agent and
/// stand-in images; panics otherwise, see `daemon::require`), then sweeps the
/// stale resources of the suite's agents, named `<agent_prefix>...`.
pub fn require(suite: &str, agent_prefix: &str) {
    super::daemon::require(suite, &[AGENT_IMAGE, PIPELOCK_STANDIN_IMAGE, FENCE_IMAGE]);
    sweep_stale_agents(agent_prefix);
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub agent: String,
    /// Set on every command, after the fixture's own variables.
    env: Vec<(String, String)>,
    /// Declared last so it is released after `Drop` has removed what is left.
    _lock: SessionLocks,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Fixture {
    /// An agent named `<agent_prefix><tag>-<pid>-<n>` with an empty `home`,
    /// `tmp` (the scratch root) and `work` directory; `lock` (the runtime and
    /// cleanup locks, see `lock.rs`) is held until the fixture drops.
    pub fn new(agent_prefix: &str, tag: &str, env: &[(&str, &str)], lock: SessionLocks) -> Self {
        let agent = format!(
            "{agent_prefix}{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["home", "tmp", "work"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self {
            dir,
            agent,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            _lock: lock,
        }
    }

    /// A fixture for a session of the stub `claude` behind the pipelock
    /// stand-in: its manifest has one bottle named `bottle`, of the agent
    /// image, allowing `api.anthropic.com`, with `bottle_env` as its `env`,
    /// and the fixture's agent in it. Holds the session locks.
    #[allow(
        dead_code,
        reason = "only the binaries that run plain stub sessions use it"
    )]
    pub fn stub_session(
        agent_prefix: &str,
        tag: &str,
        bottle: &str,
        bottle_env: &[(&str, &str)],
    ) -> Self {
        let fx = Self::new(
            agent_prefix,
            tag,
            &[("CLAUDE_BOTTLE_PIPELOCK_IMAGE", PIPELOCK_STANDIN_IMAGE)],
            SessionLocks::take(),
        );
        let env: serde_json::Map<String, Value> = bottle_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        fx.write_manifest(&serde_json::json!({
            "bottles": { bottle: {
                "image": AGENT_IMAGE,
                "env": env,
                "egress": { "allowlist": ["api.anthropic.com"] }
            } },
            "agents": { &fx.agent: { "bottle": bottle } }
        }));
        fx
    }

    pub fn write_manifest(&self, manifest: &Value) {
        fs::write(
            self.dir.path().join("manifest.json"),
            serde_json::to_vec_pretty(manifest).unwrap(),
        )
        .unwrap();
    }

    pub fn scratch_root(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// `claude-bottle --manifest M ARGS` with this fixture's home and variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--manifest")
            .arg(self.dir.path().join("manifest.json"))
            .args(args)
            .current_dir(self.dir.path().join("work"))
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.scratch_root())
            .env("NO_COLOR", "1")
            .env("CLAUDE_BOTTLE_FENCE_IMAGE", FENCE_IMAGE)
            .env_remove("CLAUDE_BOTTLE_BACKEND")
            .env_remove("CLAUDE_BOTTLE_OAUTH_TOKEN")
            .env_remove("CLAUDE_BOTTLE_CONTAINER_HOME")
            .env_remove("CLAUDE_BOTTLE_CLAUDE_CODE_VERSION")
            .env_remove("CLAUDE_BOTTLE_ADDRESS_POOL")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Containers and networks carrying this fixture's agent label, as names.
    pub fn leftovers(&self) -> (Vec<String>, Vec<String>) {
        let label = format!("claude-bottle.agent={}", self.agent);
        (containers_with(&[&label]), networks_with(&[&label]))
    }

    pub fn assert_nothing_left(&self) {
        assert_eq!(
            self.leftovers(),
            (vec![], vec![]),
            "resources of `{}` were left behind",
            self.agent
        );
        let scratch: Vec<_> = fs::read_dir(self.scratch_root())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(scratch.is_empty(), "scratch files were left: {scratch:?}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let (containers, networks) = self.leftovers();
        remove_resources(&containers, &networks);
    }
}
