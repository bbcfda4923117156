//! What the user asked for, before any backend has looked at it.

use std::path::PathBuf;

use crate::core::env::ResolvedEnv;
use crate::manifest::{Agent, Bottle};

/// Intent only: the agent, its bottle and the options of `start`, with the
/// environment resolved. Nothing here is resolved against an engine.
#[derive(Debug, Clone)]
pub struct BottleSpec {
    pub agent_name: String,
    pub agent: Agent,
    pub bottle_name: String,
    pub bottle: Bottle,
    /// The resolved container environment (values are secret).
    pub env: ResolvedEnv,
    /// `--cwd`: the host directory that becomes the workspace.
    pub cwd: Option<PathBuf>,
    /// `--name`: a pinned bottle name; a conflict is then an error.
    pub pinned_name: Option<String>,
    pub remote_control: bool,
    /// The host user's home, for `~` in identity files, skills and known_hosts.
    pub host_home: PathBuf,
    /// The manifest file the session was started from; `None` for the
    /// embedded default. `allow --save` edits it.
    pub manifest_path: Option<PathBuf>,
}
