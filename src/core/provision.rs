//! What goes into a bottle before it starts: the prompt, skills, SSH files and
//! the workspace, as plain data. A backend turns a [`ProvisionSet`] into its
//! own upload mechanism (the Docker backend: one tar archive per target
//! directory, uploaded to the created container before start).
//!
//! Each step skips itself when it has nothing to do, except the prompt file,
//! which always exists (empty when the agent has no prompt).

use std::path::PathBuf;

/// The in-container home directory unless `CLAUDE_BOTTLE_CONTAINER_HOME` overrides it.
pub const DEFAULT_CONTAINER_HOME: &str = "/home/node";
pub const CONTAINER_HOME_ENV: &str = "CLAUDE_BOTTLE_CONTAINER_HOME";
/// Owner of everything provisioned.
pub const CONTAINER_UID: u64 = 1000;
pub const CONTAINER_GID: u64 = 1000;
/// The port the proxy listens on inside the bottle.
pub const PROXY_PORT: u16 = 8888;

/// Where an item's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Generated content (the prompt, the SSH config, filtered known_hosts).
    Bytes(Vec<u8>),
    /// A single host file, read at upload time.
    HostFile(PathBuf),
    /// A host directory, copied recursively with its tree intact (host modes kept
    /// for files inside; symlinks copied as symlinks).
    HostTree(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Absolute path inside the bottle.
    pub dest: String,
    /// File mode for `Bytes`/`HostFile`, the top directory's mode for `HostTree`.
    pub mode: u32,
    pub source: Source,
}

/// Everything to place in the bottle, owned by uid/gid 1000.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvisionSet {
    pub items: Vec<Item>,
    /// Directories to create (mode 0700 for `.ssh`, 0755 otherwise), parents first.
    pub dirs: Vec<(String, u32)>,
    /// The prompt path to pass as `--append-system-prompt-file`, when the prompt is not empty.
    pub prompt_file: Option<String>,
}
