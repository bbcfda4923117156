//! What goes into a bottle before it starts: the prompt, skills, SSH files and
//! the workspace, as plain data built by [`build`]. A backend turns a
//! [`ProvisionSet`] into its own upload mechanism (the Docker backend: one tar
//! archive rooted at `/`, uploaded to the created container before start).
//!
//! Each step skips itself when it has nothing to do, except the prompt file,
//! which always exists (empty when the agent has no prompt).

pub mod archive;
mod known_hosts;
mod ssh;
pub mod workspace;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::core::spec::BottleSpec;
use crate::manifest::SkillName;

/// The in-container home directory unless `CLAUDE_BOTTLE_CONTAINER_HOME` overrides it.
pub const DEFAULT_CONTAINER_HOME: &str = "/home/node";
pub const CONTAINER_HOME_ENV: &str = "CLAUDE_BOTTLE_CONTAINER_HOME";
/// The agent's user in the bottle (the agent image's `node`): Claude runs as
/// it, and it owns everything provisioned.
pub const CONTAINER_UID: u64 = 1000;
pub const CONTAINER_GID: u64 = 1000;

/// The agent's user as `uid:gid`, the form container engines take.
pub fn container_user() -> String {
    format!("{CONTAINER_UID}:{CONTAINER_GID}")
}

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
    /// The `--cwd` directory: what git would carry of it, selected when
    /// the set is built (see [`workspace`]).
    Workspace(Arc<workspace::Workspace>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Absolute path inside the bottle.
    pub dest: String,
    /// File mode for `Bytes`/`HostFile`, the top directory's mode for `HostTree`.
    pub mode: u32,
    pub source: Source,
}

/// Everything to place in the bottle, owned by the agent's user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvisionSet {
    pub items: Vec<Item>,
    /// Directories to create (mode 0700 for `.ssh`, 0755 otherwise), parents first.
    pub dirs: Vec<(String, u32)>,
    /// The prompt path to pass as `--append-system-prompt-file`, when the prompt is not empty.
    pub prompt_file: Option<String>,
}

impl ProvisionSet {
    /// The `--cwd` workspace, when there is one.
    pub fn workspace(&self) -> Option<&workspace::Workspace> {
        self.items.iter().find_map(|item| match &item.source {
            Source::Workspace(workspace) => Some(workspace.as_ref()),
            _ => None,
        })
    }
}

/// The prompt file, relative to the container home.
pub const PROMPT_FILE_NAME: &str = ".claude-bottle-prompt.txt";
const DIR_MODE: u32 = 0o755;
const PROMPT_MODE: u32 = 0o600;

/// Everything `spec` puts in its bottle: the prompt (always), the skills, the
/// SSH setup and the `--cwd` workspace. `proxy_host` is how the agent reaches
/// its proxy (a name or an address); `container_home` is the in-container
/// `$HOME`. Host files are checked here and read later, when the backend copies
/// them in.
pub fn build(
    spec: &BottleSpec,
    proxy_host: &str,
    container_home: &str,
) -> Result<ProvisionSet, ProvisionError> {
    let home = checked_container_home(container_home)?;
    let mut set = ProvisionSet::default();
    set.dirs.push((home.to_owned(), DIR_MODE));
    provision_prompt(&mut set, home, &spec.agent.prompt);
    provision_skills(
        &mut set,
        home,
        &spec.agent_name,
        &spec.agent.skills,
        &spec.host_home,
    )?;
    ssh::provision(
        &mut set,
        home,
        proxy_host,
        &spec.bottle_name,
        &spec.bottle.ssh,
        &spec.host_home,
    )?;
    provision_workspace(&mut set, home, spec.cwd.as_deref(), &spec.host_home)?;
    Ok(set)
}

/// Top-level directories of a Linux image that belong to the system: none
/// may be the container home.
const SYSTEM_DIRS: [&str; 21] = [
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt", "opt",
    "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var",
];

/// System trees whose every directory is the system's: the home may not lie
/// anywhere inside them either.
const SYSTEM_TREES: [&str; 14] = [
    "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "sys",
    "usr", "var",
];

/// Every path of the set is built from the home and written unquoted into
/// `ssh_config`, so it must be absolute and plain. The provisioning archive
/// makes the home and the directories in it owned by uid 1000, re-owning
/// them when the image has them already, so the home may not be a system
/// directory: with `/` or `/usr` as its home the agent could rewrite the
/// image's system files.
fn checked_container_home(home: &str) -> Result<&str, ProvisionError> {
    let plain = home.starts_with('/')
        && !home.split('/').any(|part| part == "..")
        && !home
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '='));
    if !plain {
        return Err(ProvisionError::ContainerHomeInvalid {
            home: home.to_owned(),
        });
    }
    if let Some((relation, system_dir)) = system_dir_of(home) {
        return Err(ProvisionError::ContainerHomeIsSystemDir {
            home: home.to_owned(),
            relation,
            system_dir,
        });
    }
    // Not empty: `/` itself was refused above.
    Ok(home.trim_end_matches('/'))
}

/// The system directory `home` is (`is`) or lies in (`lies in`), if any.
/// `home` is absolute and without `..`; `.` and repeated `/` name nothing
/// more, as in the archive.
fn system_dir_of(home: &str) -> Option<(&'static str, String)> {
    let parts: Vec<&str> = home
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    match parts.as_slice() {
        [] => Some(("is", "/".to_owned())),
        [top] => SYSTEM_DIRS.contains(top).then(|| ("is", format!("/{top}"))),
        [top, ..] => SYSTEM_TREES
            .contains(top)
            .then(|| ("lies in", format!("/{top}"))),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Always written, so the path exists whatever the agent; passed to Claude only
/// when there is something in it.
fn provision_prompt(set: &mut ProvisionSet, home: &str, prompt: &str) {
    let dest = join(home, PROMPT_FILE_NAME);
    if !prompt.is_empty() {
        set.prompt_file = Some(dest.clone());
    }
    set.items.push(Item {
        dest,
        mode: PROMPT_MODE,
        source: Source::Bytes(prompt.as_bytes().to_vec()),
    });
}

fn provision_skills(
    set: &mut ProvisionSet,
    home: &str,
    agent: &str,
    skills: &[SkillName],
    host_home: &Path,
) -> Result<(), ProvisionError> {
    if skills.is_empty() {
        return Ok(());
    }
    let claude_dir = join(home, ".claude");
    let skills_dir = join(&claude_dir, "skills");
    let mut items = Vec::with_capacity(skills.len());
    let mut seen = Vec::with_capacity(skills.len());
    for skill in skills {
        if seen.contains(&skill) {
            continue;
        }
        seen.push(skill);
        let path = host_home
            .join(".claude")
            .join("skills")
            .join(skill.as_str());
        let context = || (agent.to_owned(), skill.to_string(), path.clone());
        match check_host_dir(&path) {
            Ok(()) => {}
            Err(DirProblem::Missing) => {
                let (agent, skill, path) = context();
                return Err(ProvisionError::SkillMissing { agent, skill, path });
            }
            Err(DirProblem::NotADirectory) => {
                let (agent, skill, path) = context();
                return Err(ProvisionError::SkillNotADirectory { agent, skill, path });
            }
            Err(DirProblem::Unreadable(source)) => {
                let (agent, skill, path) = context();
                return Err(ProvisionError::SkillUnreadable {
                    agent,
                    skill,
                    path,
                    source,
                });
            }
        }
        items.push(Item {
            dest: join(&skills_dir, skill.as_str()),
            mode: DIR_MODE,
            source: Source::HostTree(path),
        });
    }
    set.dirs.push((claude_dir, DIR_MODE));
    set.dirs.push((skills_dir, DIR_MODE));
    set.items.extend(items);
    Ok(())
}

/// The workspace directory exists even without `--cwd`, since Claude runs in it.
fn provision_workspace(
    set: &mut ProvisionSet,
    home: &str,
    cwd: Option<&Path>,
    host_home: &Path,
) -> Result<(), ProvisionError> {
    let dest = join(home, "workspace");
    let Some(cwd) = cwd else {
        set.dirs.push((dest, DIR_MODE));
        return Ok(());
    };
    let path = cwd.to_path_buf();
    match check_host_dir(cwd) {
        Ok(()) => {}
        Err(DirProblem::Missing) => return Err(ProvisionError::WorkspaceMissing { path }),
        Err(DirProblem::NotADirectory) => {
            return Err(ProvisionError::WorkspaceNotADirectory { path });
        }
        Err(DirProblem::Unreadable(source)) => {
            return Err(ProvisionError::WorkspaceUnreadable { path, source });
        }
    }
    // `--cwd` from the home directory (or above it) would hand the agent
    // `~/.ssh`, cloud credentials and everything else the user owns.
    let resolved = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    if resolved(host_home).starts_with(resolved(cwd)) {
        return Err(ProvisionError::WorkspaceContainsHome {
            path,
            home: host_home.to_path_buf(),
        });
    }
    // A system directory would hand the agent the host's configuration
    // (`/etc`) or a copy of the whole system (`/usr`).
    if let Some((relation, system_dir)) = host_system_dir_of(&resolved(cwd)) {
        return Err(ProvisionError::WorkspaceIsSystemDir {
            path,
            relation,
            system_dir,
        });
    }
    let selected = workspace::select(cwd, host_home)?;
    set.items.push(Item {
        dest,
        mode: DIR_MODE,
        source: Source::Workspace(Arc::new(selected)),
    });
    Ok(())
}

/// Host directories that hold no project: the system's own trees, refused
/// as `--cwd` with everything in them. Others (`/home`, `/tmp`, `/usr`,
/// `/var`, `/opt`, `/srv`, ...) are refused themselves, as
/// [`SYSTEM_DIRS`], but a project inside them is fine (`/var/www/site`).
const HOST_SYSTEM_TREES: [&str; 11] = [
    "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin",
];

/// The system directory a `--cwd` path is (`is`) or lies in (`lies in`).
fn host_system_dir_of(path: &Path) -> Option<(&'static str, String)> {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [] => Some(("is", "/".to_owned())),
        [top] => SYSTEM_DIRS
            .contains(&top.as_str())
            .then(|| ("is", format!("/{top}"))),
        [top, ..] => HOST_SYSTEM_TREES
            .contains(&top.as_str())
            .then(|| ("lies in", format!("/{top}"))),
    }
}

enum DirProblem {
    Missing,
    NotADirectory,
    Unreadable(io::Error),
}

/// A directory that exists (symlinks followed) and can be listed.
fn check_host_dir(path: &Path) -> Result<(), DirProblem> {
    match fs::metadata(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(DirProblem::Missing),
        Err(err) => Err(DirProblem::Unreadable(err)),
        Ok(metadata) if !metadata.is_dir() => Err(DirProblem::NotADirectory),
        Ok(_) => fs::read_dir(path).map(drop).map_err(DirProblem::Unreadable),
    }
}

/// Why the bottle's files could not be put together. Every variant names the
/// host path it is about.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("container home `{home}` is not a plain absolute path")]
    ContainerHomeInvalid { home: String },

    #[error(
        "container home `{home}` {relation} the system directory `{system_dir}`: provisioning makes the home owned by uid {CONTAINER_UID}, which would hand the image's system files to the agent"
    )]
    ContainerHomeIsSystemDir {
        home: String,
        /// `is` or `lies in`.
        relation: &'static str,
        system_dir: String,
    },

    #[error("skill `{skill}` of agent `{agent}` is missing: `{path}` does not exist")]
    SkillMissing {
        agent: String,
        skill: String,
        path: PathBuf,
    },

    #[error("skill `{skill}` of agent `{agent}` is not a directory: `{path}`")]
    SkillNotADirectory {
        agent: String,
        skill: String,
        path: PathBuf,
    },

    #[error("skill `{skill}` of agent `{agent}` cannot be read at `{path}`: {source}")]
    SkillUnreadable {
        agent: String,
        skill: String,
        path: PathBuf,
        source: io::Error,
    },

    #[error("identity file `{path}` of `{entry}` (Host `{host}`) does not exist")]
    IdentityFileMissing {
        /// The manifest path of the entry, `bottles.<bottle>.ssh[<index>]`.
        entry: String,
        host: String,
        path: PathBuf,
    },

    #[error("identity file `{path}` of `{entry}` (Host `{host}`) is not a regular file")]
    IdentityFileNotAFile {
        entry: String,
        host: String,
        path: PathBuf,
    },

    #[error("identity file `{path}` of `{entry}` (Host `{host}`) cannot be read: {source}")]
    IdentityFileUnreadable {
        entry: String,
        host: String,
        path: PathBuf,
        source: io::Error,
    },

    #[error(
        "`{entry}`: `{field}` value `{value}` cannot be written to an SSH config (empty, or has whitespace, quotes or `=`)"
    )]
    SshValueUnwritable {
        entry: String,
        field: String,
        value: String,
    },

    #[error("`{path}` exists but cannot be read: {source}")]
    KnownHostsUnreadable { path: PathBuf, source: io::Error },

    #[error("workspace directory `{path}` does not exist")]
    WorkspaceMissing { path: PathBuf },

    #[error("workspace `{path}` is not a directory")]
    WorkspaceNotADirectory { path: PathBuf },

    #[error("workspace directory `{path}` cannot be read: {source}")]
    WorkspaceUnreadable { path: PathBuf, source: io::Error },

    #[error(
        "workspace `{path}` is your home directory `{home}` or contains it: `--cwd` would copy `~/.ssh`, credentials and everything else there into the bottle"
    )]
    WorkspaceContainsHome { path: PathBuf, home: PathBuf },

    #[error(
        "workspace `{path}` {relation} the system directory `{system_dir}`: `--cwd` would copy the host's system files into the bottle"
    )]
    WorkspaceIsSystemDir {
        path: PathBuf,
        /// `is` or `lies in`.
        relation: &'static str,
        system_dir: String,
    },

    #[error(transparent)]
    Workspace(#[from] workspace::WorkspaceError),
}

/// One line per directory and item, for reviewing a whole set in snapshots.
#[cfg(test)]
impl std::fmt::Display for ProvisionSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (dir, mode) in &self.dirs {
            writeln!(f, "dir   {dir} {mode:04o}")?;
        }
        for item in &self.items {
            let kind = match item.source {
                Source::HostTree(_) | Source::Workspace(_) => "tree",
                Source::Bytes(_) | Source::HostFile(_) => "file",
            };
            write!(f, "{kind}  {} {:04o}", item.dest, item.mode)?;
            match &item.source {
                Source::Bytes(bytes) => writeln!(f, " (generated, {} bytes)", bytes.len())?,
                Source::HostFile(path) | Source::HostTree(path) => {
                    writeln!(f, " from `{}`", path.display())?;
                }
                Source::Workspace(workspace) => writeln!(
                    f,
                    " from `{}` ({})",
                    workspace.root.display(),
                    workspace.describe()
                )?,
            }
        }
        Ok(())
    }
}

impl crate::diagnostic::Diagnostic for ProvisionError {
    fn hints(&self) -> Vec<String> {
        let hint = match self {
            Self::ContainerHomeInvalid { .. } => format!(
                "set `{CONTAINER_HOME_ENV}` to an absolute path without `..`, spaces or quotes, or unset it to use `{DEFAULT_CONTAINER_HOME}`"
            ),
            Self::ContainerHomeIsSystemDir { .. } => format!(
                "set `{CONTAINER_HOME_ENV}` to a directory of the agent's own, such as `/home/agent`, or unset it to use `{DEFAULT_CONTAINER_HOME}`"
            ),
            Self::SkillMissing { agent, skill, path } => format!(
                "create the skill directory `{}`, or remove `{skill}` from `agents.{agent}.skills`",
                path.display()
            ),
            Self::SkillNotADirectory { .. } => {
                "a skill is a directory under `~/.claude/skills/` holding a `SKILL.md`".to_owned()
            }
            Self::SkillUnreadable { .. } | Self::WorkspaceUnreadable { .. } => {
                "check the directory's permissions; claude-bottle copies it into the bottle"
                    .to_owned()
            }
            Self::IdentityFileMissing { entry, path, .. } => format!(
                "create a key for the bottle with `ssh-keygen -t ed25519 -f {}`, or fix `IdentityFile` in `{entry}`",
                path.display()
            ),
            Self::IdentityFileNotAFile { entry, .. } => {
                format!("point `IdentityFile` in `{entry}` at a private key file")
            }
            Self::IdentityFileUnreadable { .. } => {
                "check the file's permissions; claude-bottle copies it into the bottle".to_owned()
            }
            Self::SshValueUnwritable { .. } => {
                "use a plain name such as `github` or `git.example.com`".to_owned()
            }
            Self::KnownHostsUnreadable { .. } => "fix its permissions, or move it aside to let the bottle trust its SSH hosts on first use (`StrictHostKeyChecking accept-new`)".to_owned(),
            Self::WorkspaceMissing { .. } | Self::WorkspaceNotADirectory { .. } => {
                "run `start --cwd` from the directory the agent should work in".to_owned()
            }
            Self::WorkspaceContainsHome { .. } | Self::WorkspaceIsSystemDir { .. } => {
                "run `start --cwd` from a project directory".to_owned()
            }
            Self::Workspace(e) => return e.hints(),
        };
        vec![hint]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::env::ResolvedEnv;
    use crate::diagnostic::{Diagnostic, with_hints};
    use crate::manifest::{Agent, Bottle, Hostname, SshEntry, SshHostName};

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO4LK2oLpL12Eq3EeLn0caRkxwyItLT1MmUWbNMJZHVx";
    /// `ssh-keygen -H` of a `github.com` line.
    const HASHED_GITHUB: &str = "|1|C19yqZB5TE3Pr4T7dJCDNmAQ/lg=|U4tM1/7pjg7DmoqUo5uVzNKDxuU=";

    struct Host {
        home: tempfile::TempDir,
        cwd: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Self {
            let host = Self {
                home: tempfile::tempdir().expect("home"),
                cwd: tempfile::tempdir().expect("cwd"),
            };
            fs::write(host.cwd.path().join("README.md"), "# project\n").expect("write");
            host
        }

        fn write(&self, relative: &str, content: &str) -> PathBuf {
            let path = self.home.path().join(relative);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, content).expect("write");
            path
        }

        /// Output with the temp dirs replaced, for snapshots.
        fn redact(&self, text: &str) -> String {
            text.replace(&self.home.path().display().to_string(), "<host-home>")
                .replace(&self.cwd.path().display().to_string(), "<cwd>")
        }
    }

    fn ssh_entry(
        host: &str,
        host_name: &str,
        user: Option<&str>,
        port: u16,
        key: &str,
    ) -> SshEntry {
        let host_name = match host_name.parse() {
            Ok(ip) => SshHostName::Ip(ip),
            Err(_) => SshHostName::Dns(Hostname::parse(host_name).expect("hostname")),
        };
        SshEntry {
            host: host.into(),
            host_name,
            user: user.map(Into::into),
            port,
            identity_file: key.into(),
        }
    }

    fn spec(
        host: &Host,
        prompt: &str,
        skills: &[&str],
        ssh: Vec<SshEntry>,
        cwd: bool,
    ) -> BottleSpec {
        BottleSpec {
            agent_name: "reviewer".into(),
            agent: Agent {
                bottle: "default".into(),
                skills: skills
                    .iter()
                    .map(|s| SkillName::parse(s).expect("skill"))
                    .collect(),
                prompt: prompt.into(),
            },
            bottle_name: "default".into(),
            bottle: Bottle {
                ssh,
                ..Bottle::default()
            },
            env: ResolvedEnv::default(),
            cwd: cwd.then(|| host.cwd.path().to_path_buf()),
            pinned_name: None,
            remote_control: false,
            host_home: host.home.path().to_path_buf(),
            manifest_path: None,
        }
    }

    fn bytes_at<'a>(set: &'a ProvisionSet, dest: &str) -> &'a str {
        let item = set
            .items
            .iter()
            .find(|i| i.dest == dest)
            .unwrap_or_else(|| panic!("no item at {dest}"));
        match &item.source {
            Source::Bytes(bytes) => std::str::from_utf8(bytes).expect("utf-8"),
            other => panic!("{dest} is not generated: {other:?}"),
        }
    }

    const PROXY: &str = "claude-bottle-pipelock-reviewer";

    #[test]
    fn a_bare_agent_gets_an_empty_prompt_and_a_workspace_dir() {
        let host = Host::new();
        let set = build(&spec(&host, "", &[], vec![], false), PROXY, "/home/node").expect("build");
        assert_eq!(set.prompt_file, None);
        assert_eq!(
            set.dirs,
            vec![
                ("/home/node".to_owned(), 0o755),
                ("/home/node/workspace".to_owned(), 0o755)
            ]
        );
        assert_eq!(
            set.items,
            vec![Item {
                dest: "/home/node/.claude-bottle-prompt.txt".into(),
                mode: 0o600,
                source: Source::Bytes(vec![]),
            }]
        );
    }

    #[test]
    fn a_prompt_is_written_and_passed() {
        let host = Host::new();
        let set = build(
            &spec(&host, "Review PRs.", &[], vec![], false),
            PROXY,
            "/srv/agent/",
        )
        .expect("build");
        assert_eq!(
            set.prompt_file.as_deref(),
            Some("/srv/agent/.claude-bottle-prompt.txt")
        );
        assert_eq!(
            bytes_at(&set, "/srv/agent/.claude-bottle-prompt.txt"),
            "Review PRs."
        );
    }

    /// A DNS host with a hashed known_hosts match, an IP host on a non-22 port
    /// with a plain match in a comma list, and a host the user has never seen;
    /// two entries share one key.
    #[test]
    fn a_rich_bottle() {
        let host = Host::new();
        host.write(".claude/skills/code-review/SKILL.md", "# review");
        host.write(".claude/skills/code-review/scripts/lint.sh", "#!/bin/sh");
        host.write(".claude/skills/git-flow/SKILL.md", "# flow");
        host.write(".ssh/id_ed25519", "PRIVATE KEY");
        host.write("keys/gitlab", "OTHER KEY");
        host.write(
            ".ssh/known_hosts",
            &format!(
                "# host user's file\n\
                 {HASHED_GITHUB} {KEY}\n\
                 [10.0.0.5]:2222,[buildbox.lan]:2222 {KEY}\n\
                 10.0.0.5 {KEY}\n\
                 @revoked * ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n\
                 unrelated.example.net {KEY}\n"
            ),
        );
        let entries = vec![
            ssh_entry("github", "github.com", Some("git"), 22, "~/.ssh/id_ed25519"),
            ssh_entry("build-box", "10.0.0.5", None, 2222, "~/.ssh/id_ed25519"),
            ssh_entry(
                "gitlab",
                "gitlab.example.com",
                Some("git"),
                22,
                "~/keys/gitlab",
            ),
        ];
        let spec = spec(
            &host,
            "You review pull requests.",
            &["code-review", "git-flow"],
            entries,
            true,
        );
        let set = build(&spec, PROXY, "/home/node").expect("build");

        insta::assert_snapshot!("rich_set", host.redact(&set.to_string()));
        insta::assert_snapshot!("rich_ssh_config", bytes_at(&set, "/home/node/.ssh/config"));
        insta::assert_snapshot!(
            "rich_known_hosts",
            bytes_at(&set, "/home/node/.ssh/known_hosts")
        );
    }

    #[test]
    fn without_any_known_host_there_is_no_known_hosts_file() {
        let host = Host::new();
        host.write(".ssh/id_ed25519", "KEY");
        let entries = vec![ssh_entry("gh", "github.com", None, 22, "~/.ssh/id_ed25519")];
        let set = build(&spec(&host, "", &[], entries, false), PROXY, "/home/node").expect("build");
        assert!(!set.items.iter().any(|i| i.dest.ends_with("known_hosts")));
        let config = bytes_at(&set, "/home/node/.ssh/config");
        assert!(
            config.contains("StrictHostKeyChecking accept-new"),
            "{config}"
        );
        assert!(!config.contains("  User "), "{config}");
        assert!(set.dirs.contains(&("/home/node/.ssh".to_owned(), 0o700)));
    }

    #[test]
    fn a_missing_skill_names_skill_agent_and_path() {
        let host = Host::new();
        let err = build(
            &spec(&host, "", &["nope"], vec![], false),
            PROXY,
            "/home/node",
        )
        .expect_err("missing skill accepted");
        assert!(
            matches!(err, ProvisionError::SkillMissing { .. }),
            "{err:?}"
        );
        insta::assert_snapshot!("missing_skill", host.redact(&with_hints(&err)));
    }

    #[test]
    fn a_skill_that_is_a_file_is_refused() {
        let host = Host::new();
        host.write(".claude/skills/flat", "not a dir");
        let err = build(
            &spec(&host, "", &["flat"], vec![], false),
            PROXY,
            "/home/node",
        )
        .expect_err("file skill accepted");
        assert!(
            matches!(err, ProvisionError::SkillNotADirectory { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_missing_identity_file_names_path_and_entry() {
        let host = Host::new();
        let entries = vec![ssh_entry("gh", "github.com", None, 22, "~/.ssh/id_missing")];
        let err = build(&spec(&host, "", &[], entries, false), PROXY, "/home/node")
            .expect_err("missing key accepted");
        assert!(
            matches!(err, ProvisionError::IdentityFileMissing { .. }),
            "{err:?}"
        );
        insta::assert_snapshot!("missing_identity_file", host.redact(&with_hints(&err)));
    }

    #[test]
    fn an_identity_file_that_is_a_directory_is_refused() {
        let host = Host::new();
        fs::create_dir_all(host.home.path().join(".ssh/keydir")).expect("mkdir");
        let entries = vec![ssh_entry("gh", "github.com", None, 22, "~/.ssh/keydir")];
        let err = build(&spec(&host, "", &[], entries, false), PROXY, "/home/node")
            .expect_err("directory key accepted");
        assert!(
            matches!(err, ProvisionError::IdentityFileNotAFile { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn an_unreadable_known_hosts_is_an_error_not_weaker_checking() {
        let host = Host::new();
        host.write(".ssh/id_ed25519", "KEY");
        fs::create_dir_all(host.home.path().join(".ssh/known_hosts")).expect("mkdir");
        let entries = vec![ssh_entry("gh", "github.com", None, 22, "~/.ssh/id_ed25519")];
        let err = build(&spec(&host, "", &[], entries, false), PROXY, "/home/node")
            .expect_err("unreadable known_hosts accepted");
        assert!(
            matches!(err, ProvisionError::KnownHostsUnreadable { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn an_alias_with_a_space_is_refused() {
        let host = Host::new();
        host.write(".ssh/id_ed25519", "KEY");
        let entries = vec![ssh_entry(
            "git hub",
            "github.com",
            None,
            22,
            "~/.ssh/id_ed25519",
        )];
        let err = build(&spec(&host, "", &[], entries, false), PROXY, "/home/node")
            .expect_err("alias with a space accepted");
        assert_eq!(
            err.to_string().lines().next(),
            Some(
                "`bottles.default.ssh[0]`: `Host` value `git hub` cannot be written to an SSH config (empty, or has whitespace, quotes or `=`)"
            )
        );
    }

    #[test]
    fn a_missing_workspace_is_refused() {
        let host = Host::new();
        let mut spec = spec(&host, "", &[], vec![], false);
        spec.cwd = Some(host.home.path().join("gone"));
        let err = build(&spec, PROXY, "/home/node").expect_err("missing cwd accepted");
        assert!(
            matches!(err, ProvisionError::WorkspaceMissing { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_workspace_that_is_or_contains_the_home_directory_is_refused() {
        let host = Host::new();
        let project = host.home.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let parent = host.home.path().parent().unwrap().to_path_buf();
        for cwd in [host.home.path().to_path_buf(), parent] {
            let mut spec = spec(&host, "", &[], vec![], false);
            spec.cwd = Some(cwd.clone());
            let err = build(&spec, PROXY, "/home/node").expect_err("home copied in");
            assert!(
                matches!(err, ProvisionError::WorkspaceContainsHome { .. }),
                "{cwd:?}: {err:?}"
            );
            assert!(!err.to_string().contains("hint:"), "{err}");
            assert_eq!(err.hints(), ["run `start --cwd` from a project directory"]);
        }
        let mut spec = spec(&host, "", &[], vec![], false);
        spec.cwd = Some(project);
        assert!(build(&spec, PROXY, "/home/node").is_ok());
    }

    #[test]
    fn a_system_directory_is_refused_as_the_workspace_with_nothing_selected() {
        let host = Host::new();
        for (cwd, what) in [
            ("/", "is the system directory `/`"),
            ("/etc", "is the system directory `/etc`"),
            ("/usr", "is the system directory `/usr`"),
            ("/etc/ssl", "lies in the system directory `/etc`"),
        ] {
            let mut spec = spec(&host, "", &[], vec![], false);
            spec.cwd = Some(cwd.into());
            let err = build(&spec, PROXY, "/home/node").expect_err("system dir copied in");
            assert!(
                matches!(err, ProvisionError::WorkspaceIsSystemDir { .. })
                    || matches!(err, ProvisionError::WorkspaceContainsHome { .. }),
                "{cwd}: {err:?}"
            );
            if !matches!(err, ProvisionError::WorkspaceContainsHome { .. }) {
                assert!(err.to_string().contains(what), "{cwd}: {err}");
            }
            assert_eq!(err.hints(), ["run `start --cwd` from a project directory"]);
        }
    }

    #[test]
    fn a_system_directory_is_refused_as_the_container_home() {
        let host = Host::new();
        let spec = spec(&host, "You review.", &[], vec![], false);
        for (home, what) in [
            ("/", "is the system directory `/`"),
            ("//", "is the system directory `/`"),
            ("/.", "is the system directory `/`"),
            ("/usr", "is the system directory `/usr`"),
            ("/usr/", "is the system directory `/usr`"),
            ("//usr", "is the system directory `/usr`"),
            ("/./etc", "is the system directory `/etc`"),
            ("/etc", "is the system directory `/etc`"),
            ("/bin", "is the system directory `/bin`"),
            ("/var", "is the system directory `/var`"),
            ("/home", "is the system directory `/home`"),
            ("/root", "is the system directory `/root`"),
            ("/tmp", "is the system directory `/tmp`"),
            ("/usr/local", "lies in the system directory `/usr`"),
            ("/var/lib/agent", "lies in the system directory `/var`"),
            ("/etc/ssh", "lies in the system directory `/etc`"),
        ] {
            let err = build(&spec, PROXY, home).expect_err(home);
            assert!(
                matches!(err, ProvisionError::ContainerHomeIsSystemDir { .. }),
                "{home}: {err:?}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("container home `{home}` {what}: ")),
                "{text}"
            );
            assert!(!text.contains("hint:"), "{text}");
            assert!(
                err.hints()[0].starts_with(
                    "set `CLAUDE_BOTTLE_CONTAINER_HOME` to a directory of the agent's own"
                ),
                "{:?}",
                err.hints()
            );
        }
        for home in [
            "/home/node",
            "/home/agent/",
            "/workspace",
            "/opt/agent",
            "/srv/bottle",
            "/tmp/agent",
        ] {
            let set = build(&spec, PROXY, home).unwrap_or_else(|e| panic!("{home}: {e}"));
            assert_eq!(set.dirs[0].0, home.trim_end_matches('/'));
        }
    }

    #[test]
    fn the_container_home_must_be_plain_and_absolute() {
        let host = Host::new();
        for home in ["home/node", "/home/../etc", "/home/my node", ""] {
            let err = build(&spec(&host, "", &[], vec![], false), PROXY, home)
                .expect_err("bad home accepted");
            assert!(
                matches!(err, ProvisionError::ContainerHomeInvalid { .. }),
                "{home}"
            );
        }
    }
}
