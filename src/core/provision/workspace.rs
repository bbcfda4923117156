//! What `--cwd` puts in the bottle: what git would carry.
//!
//! In a git work tree that is the tracked files, the untracked files that
//! are not ignored, and the repository; ignored files (`target/`,
//! `node_modules/`, an ignored `.env`) stay on the host. In a plain
//! directory it is everything. The selection is made once, before the plan
//! is shown, as a list of paths: the plan counts it, and the archive streams
//! the files it names, so the tool's memory grows with the number of files,
//! never with their size.
//!
//! Symlinks are never followed: a symlink is copied as a symlink, and a path
//! git lists below a directory that has become a symlink is left out.
//!
//! The repository must work inside the bottle, where no path of the host
//! exists. A `.git` directory is copied as it is. A `.git` file (a linked
//! worktree, a submodule, a `--separate-git-dir` repository) points at a git
//! directory elsewhere, often by an absolute host path; see
//! [`Selector::repository`] for what the bottle gets instead.
//!
//! A directory below the top of a work tree brings the whole repository:
//! the workspace is the top, as a sparse checkout of that directory alone
//! (see [`Selector::sparse`]), and Claude works in the directory.
//!
//! A repository that borrows objects from others (`git clone --shared` or
//! `--reference`: `objects/info/alternates` names their object directories
//! by host paths) gets copies of them inside its own; see
//! [`Selector::alternates`].

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::HumanBytes;

use crate::core::host_git;

/// A `.git` file or git `config` larger than this is not a git file.
const MAX_GIT_FILE: u64 = 1 << 20;

/// How many levels of alternates of alternates git follows (and so the
/// bottle's copy): the repository's own list is level 0.
const MAX_ALTERNATES_DEPTH: usize = 5;

/// Where, in an objects directory in the bottle, the copies of the object
/// directories it borrows from go, numbered from 0.
const ALTERNATES_COPIES: &str = "info/claude-bottle-alternates";

/// Where the workspace's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Not in a git work tree: everything is copied.
    Plain,
    /// The top of a git work tree, copied with its repository.
    Git,
    /// A linked worktree (`git worktree add`) of the repository whose
    /// common git directory is `common`, copied as a repository of its own.
    LinkedWorktree { common: PathBuf },
    /// The directory `sub` below the top of the git work tree `top`. The
    /// workspace is the top, with its repository, and only `sub` checked
    /// out (a sparse checkout: the index marks every other path
    /// `skip-worktree`); Claude works in `sub`.
    InsideGit { top: PathBuf, sub: PathBuf },
}

/// One path of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the workspace in the bottle.
    pub dest: PathBuf,
    /// Where it is on the host (unused for [`EntryKind::Generated`]).
    pub host: PathBuf,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    /// A file written for the bottle (a rewritten `.git` file or git
    /// `config`), mode 0644.
    Generated(Vec<u8>),
}

/// The selection of a `--cwd` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub root: PathBuf,
    pub kind: Kind,
    /// Directories before what they hold; parents of listed files that are
    /// not listed themselves are created as the archive is written.
    pub entries: Vec<Entry>,
    /// Regular files and symlinks.
    pub files: u64,
    /// The size of the regular files.
    pub bytes: u64,
    /// What of it is copies of borrowed object directories.
    pub borrowed: Borrowed,
}

/// The object directories copied in because a repository borrows from them
/// (its alternates), and their size; part of the workspace's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Borrowed {
    pub dirs: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("could not run `git` to list the files of the git work tree `{path}`: {source}")]
    GitNotRun { path: PathBuf, source: io::Error },

    #[error("`git ls-files` failed in `{path}`: {detail}")]
    GitFailed { path: PathBuf, detail: String },

    #[error("could not read `{path}` to copy it into the bottle: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("`{path}` is not a `.git` file git understands: {detail}")]
    GitFileInvalid { path: PathBuf, detail: String },

    #[error(
        "could not read the object directory `{alternate}` that `{list}` borrows objects from: {source}"
    )]
    AlternateUnreadable {
        list: PathBuf,
        alternate: PathBuf,
        source: io::Error,
    },

    #[error(
        "`{list}` borrows objects more than {MAX_ALTERNATES_DEPTH} levels of alternates deep, past what git follows"
    )]
    AlternatesTooDeep { list: PathBuf },
}

impl crate::diagnostic::Diagnostic for WorkspaceError {
    fn hints(&self) -> Vec<String> {
        let hint = match self {
            Self::GitNotRun { .. } => {
                "install git: claude-bottle asks it which files are ignored and stay on the host"
            }
            Self::GitFailed { .. } => "check that `git status` works in that directory",
            Self::Read { .. } => {
                "check the directory's permissions; claude-bottle copies it into the bottle"
            }
            Self::GitFileInvalid { .. } => {
                "a `.git` file holds one line `gitdir: PATH`; run `git status` there to see what git makes of it"
            }
            Self::AlternateUnreadable { .. } | Self::AlternatesTooDeep { .. } => {
                return vec![
                    "the repository was cloned with `--shared` or `--reference` and needs those objects; claude-bottle copies them into the bottle".to_owned(),
                    "to make the repository stand alone, run `git repack -a -d` in it, then remove that `objects/info/alternates` file".to_owned(),
                ];
            }
        };
        vec![hint.to_owned()]
    }
}

/// Chooses what of `root` goes into the bottle; `host_home` is the user's
/// home directory.
pub fn select(root: &Path, host_home: &Path) -> Result<Workspace, WorkspaceError> {
    let clock = std::time::Instant::now();
    let mut selector = Selector::default();
    let kind = match fs::symlink_metadata(root.join(".git")) {
        Ok(_) => selector.work_tree(root, Path::new(""), true)?,
        Err(err) if err.kind() == io::ErrorKind::NotFound => match git_top_level(root, host_home)
            .and_then(|top| {
                let sub = canonical(root).ok()?.strip_prefix(&top).ok()?.to_path_buf();
                Some((top, sub))
            }) {
            Some((top, sub)) => {
                selector.repository(&top, Path::new(""))?;
                selector.work_tree(root, &sub, false)?;
                selector.sparse(&top, &sub)?;
                Kind::InsideGit { top, sub }
            }
            None => {
                selector.walk(root, Path::new(""), &|_| false)?;
                // The walk lists the root itself; the archive writes it as
                // the workspace directory.
                selector.entries.retain(|e| !e.dest.as_os_str().is_empty());
                Kind::Plain
            }
        },
        Err(source) => {
            return Err(WorkspaceError::Read {
                path: root.join(".git"),
                source,
            });
        }
    };
    selector.alternates()?;
    tracing::debug!(
        files = selector.files,
        bytes = selector.bytes,
        "workspace `{}` selected in {:?}",
        root.display(),
        clock.elapsed()
    );
    Ok(Workspace {
        root: root.to_path_buf(),
        kind,
        entries: selector.entries,
        files: selector.files,
        bytes: selector.bytes,
        borrowed: selector.borrowed,
    })
}

/// Every path of `root`, for a tree copied whole (a skill).
pub fn walk(root: &Path) -> Result<Vec<Entry>, WorkspaceError> {
    let mut selector = Selector::default();
    selector.walk(root, Path::new(""), &|_| false)?;
    selector.entries.retain(|e| !e.dest.as_os_str().is_empty());
    Ok(selector.entries)
}

impl Workspace {
    /// The directory Claude works in, relative to the workspace, when it
    /// is not the workspace itself.
    pub fn subdir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::InsideGit { sub, .. } => Some(sub),
            _ => None,
        }
    }

    /// What the plan says of the workspace after its path.
    pub fn describe(&self) -> String {
        let mut size = format!(
            "{} {}, {}",
            self.files,
            if self.files == 1 { "file" } else { "files" },
            HumanBytes(self.bytes)
        );
        if self.borrowed.dirs > 0 {
            size.push_str(&format!(
                " ({} of it the objects borrowed from {} alternate object {})",
                HumanBytes(self.borrowed.bytes),
                self.borrowed.dirs,
                if self.borrowed.dirs == 1 {
                    "directory"
                } else {
                    "directories"
                }
            ));
        }
        match &self.kind {
            Kind::Plain => format!("not a git work tree, everything is copied: {size}"),
            Kind::Git => {
                format!(
                    "git work tree, with its repository: {size}; ignored files stay on the host"
                )
            }
            Kind::LinkedWorktree { common } => format!(
                "git worktree of `{}`, with its repository: {size}; ignored files stay on the host",
                common.display()
            ),
            Kind::InsideGit { top, .. } => format!(
                "inside the git work tree `{}`, with its repository (all of its history) and only this directory checked out: {size}; ignored files stay on the host",
                top.display()
            ),
        }
    }
}

#[derive(Default)]
struct Selector {
    entries: Vec<Entry>,
    files: u64,
    bytes: u64,
    /// Git directories copied so far: canonical host path, and where they
    /// are in the bottle. A `.git` file pointing into one is rewritten to
    /// point at the copy.
    git_dirs: Vec<(PathBuf, PathBuf)>,
    borrowed: Borrowed,
}

impl Selector {
    fn push(&mut self, dest: PathBuf, host: PathBuf, kind: EntryKind, size: u64) {
        match kind {
            EntryKind::File => {
                self.files += 1;
                self.bytes += size;
            }
            EntryKind::Symlink => self.files += 1,
            EntryKind::Generated(ref bytes) => {
                self.files += 1;
                self.bytes += bytes.len() as u64;
            }
            EntryKind::Dir => {}
        }
        self.entries.push(Entry { dest, host, kind });
    }

    /// The git work tree at `host` (placed at `dest`): its repository when
    /// `with_repository`, then what `git ls-files` lists. A listed directory
    /// is a submodule or a nested repository: selected the same way.
    fn work_tree(
        &mut self,
        host: &Path,
        dest: &Path,
        with_repository: bool,
    ) -> Result<Kind, WorkspaceError> {
        let kind = if with_repository {
            self.repository(host, dest)?
        } else {
            Kind::Plain
        };
        let mut checked_dirs = HashSet::new();
        for relative in ls_files(host)? {
            let Some(relative) = plain_relative(&relative) else {
                continue;
            };
            if !no_symlink_between(host, &relative, &mut checked_dirs) {
                continue;
            }
            let path = host.join(&relative);
            let metadata = match fs::symlink_metadata(&path) {
                Ok(metadata) => metadata,
                // Tracked but deleted: the index inside says so.
                Err(err) if is_gone(&err) => continue,
                Err(source) => return Err(WorkspaceError::Read { path, source }),
            };
            let file_type = metadata.file_type();
            let inner = dest.join(&relative);
            if file_type.is_symlink() {
                self.push(inner, path, EntryKind::Symlink, 0);
            } else if file_type.is_file() {
                self.push(inner, path, EntryKind::File, metadata.len());
            } else if file_type.is_dir() {
                if fs::symlink_metadata(path.join(".git")).is_ok() {
                    self.work_tree(&path, &inner, true)?;
                } else {
                    // A submodule that is not checked out: an empty directory, as git left it.
                    self.push(inner, path, EntryKind::Dir, 0);
                }
            }
        }
        Ok(kind)
    }

    /// The repository of the work tree at `host` as `dest/.git`.
    ///
    /// A `.git` directory is copied whole. A `.git` file names a git
    /// directory elsewhere, usually by an absolute host path that means
    /// nothing in the bottle:
    /// - when that git directory is inside one already copied (a
    ///   submodule's, in the superproject's `.git/modules`), the bottle's
    ///   `.git` file points at the copy by a relative path, and the copy's
    ///   `config` names this work tree by a relative `core.worktree`;
    /// - otherwise (a linked worktree, a submodule copied on its own) the
    ///   git directory is copied in as `.git`, a repository of its own. For
    ///   a linked worktree that is its common directory (objects, refs,
    ///   config) with the worktree's own `HEAD`, index and logs in place of
    ///   the main work tree's, and without the other worktrees' state: git
    ///   then sees an ordinary repository whose branch and index are the
    ///   worktree's, so `git status` and `git log` work.
    fn repository(&mut self, host: &Path, dest: &Path) -> Result<Kind, WorkspaceError> {
        let dot_git = host.join(".git");
        let dest_git = dest.join(".git");
        let metadata = fs::symlink_metadata(&dot_git).map_err(|source| WorkspaceError::Read {
            path: dot_git.clone(),
            source,
        })?;
        if metadata.is_dir() {
            self.walk(&dot_git, &dest_git, &|_| false)?;
            self.git_dirs.push((canonical(&dot_git)?, dest_git));
            return Ok(Kind::Git);
        }
        if !metadata.is_file() {
            return Err(WorkspaceError::GitFileInvalid {
                path: dot_git,
                detail: "it is neither a directory nor a file".to_owned(),
            });
        }
        let git_dir = canonical(&host.join(pointer(&dot_git, "gitdir: ")?))?;
        if let Some(copy) = self.copy_of(&git_dir) {
            let to_copy = relative_path(dest, &copy);
            let mut content = b"gitdir: ".to_vec();
            content.extend_from_slice(to_copy.as_os_str().as_bytes());
            content.push(b'\n');
            self.push(dest_git, dot_git, EntryKind::Generated(content), 0);
            let back = relative_path(&copy, dest);
            self.override_config(&copy, &git_dir, &config_worktree(&back))?;
            return Ok(Kind::Git);
        }
        let commondir = git_dir.join("commondir");
        let kind = if fs::symlink_metadata(&commondir).is_ok() {
            let common = canonical(&git_dir.join(pointer(&commondir, "")?))?;
            let own = self.walk(&git_dir, &dest_git, &|rel| {
                matches!(rel.to_str(), Some("commondir" | "gitdir" | "locked"))
            })?;
            self.walk(&common, &dest_git, &|rel| {
                own.contains(rel) || per_worktree(rel)
            })?;
            // Longest first: the worktree's own directory lies in the common one.
            self.git_dirs.push((git_dir.clone(), dest_git.clone()));
            self.git_dirs.push((common.clone(), dest_git.clone()));
            Kind::LinkedWorktree {
                common: common
                    .parent()
                    .filter(|_| common.ends_with(".git"))
                    .unwrap_or(&common)
                    .to_path_buf(),
            }
        } else {
            self.walk(&git_dir, &dest_git, &|_| false)?;
            self.git_dirs.push((git_dir.clone(), dest_git.clone()));
            Kind::Git
        };
        // The copied config may name the work tree by a host path, or say
        // the repository is bare (a bare repository with worktrees): the
        // last value of a key wins, so an appended section corrects both.
        self.override_config(
            &dest_git,
            &git_dir,
            b"\n[core]\n\tbare = false\n\tworktree = ..\n",
        )?;
        Ok(kind)
    }

    /// Makes the repository copied at the workspace's `.git` (of the work
    /// tree `top`) a sparse checkout of `sub`: non-cone patterns naming
    /// `sub` and the tracked `.gitignore` and `.gitattributes` of the
    /// directories above it (copied in too, so their rules hold in the
    /// bottle) in `info/sparse-checkout`, in place of any the host has;
    /// `core.sparseCheckout` on; and the index with every other path marked
    /// `skip-worktree`, so git in the bottle takes the files it does not
    /// have for unchanged.
    fn sparse(&mut self, top: &Path, sub: &Path) -> Result<(), WorkspaceError> {
        let dest_git = PathBuf::from(".git");
        let index = dest_git.join("index");
        let (marked, rules) = match self.entries.iter().find(|e| e.dest == index) {
            Some(entry) => skip_worktree_index(top, &entry.host.clone(), sub)?,
            // No index (nothing was ever added): nothing to mark.
            None => (None, Vec::new()),
        };
        let mut patterns = sparse_pattern(sub, true);
        for rule in &rules {
            let host = top.join(rule);
            if let Ok(metadata) = fs::symlink_metadata(&host)
                && metadata.is_file()
            {
                self.push(rule.clone(), host, EntryKind::File, metadata.len());
                patterns.extend(sparse_pattern(rule, false));
            }
        }
        self.set_generated(dest_git.join("info/sparse-checkout"), top, patterns);
        self.override_config(
            &dest_git,
            top,
            b"\n[core]\n\tsparseCheckout = true\n\tsparseCheckoutCone = false\n",
        )?;
        if let Some(marked) = marked {
            self.set_generated(index, top, marked);
        }
        Ok(())
    }

    /// Makes every selected repository that borrows objects work without
    /// the host's paths. Its `objects/info/alternates` lists object
    /// directories by host paths (absolute, or relative to the objects
    /// directory), and each of those may list more. Each directory of that
    /// chain (as deep as git follows it, each once) is copied into the
    /// repository's objects directory as `info/claude-bottle-alternates/N`,
    /// without its own list, and the bottle's `alternates` names the copies
    /// by relative paths, all at one level. The host's files are only read.
    fn alternates(&mut self) -> Result<(), WorkspaceError> {
        let lists: Vec<(PathBuf, PathBuf)> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && is_alternates_list(&e.dest))
            .map(|e| (e.dest.clone(), e.host.clone()))
            .collect();
        for (dest, host) in lists {
            let (Some(dest_objects), Some(host_objects)) = (
                dest.parent().and_then(Path::parent),
                host.parent().and_then(Path::parent),
            ) else {
                continue;
            };
            let host_objects = canonical(host_objects)?;
            let mut borrowed = Vec::new();
            borrowed_dirs(&host_objects, &host_objects, 0, &mut borrowed)?;
            let copies = dest_objects.join(ALTERNATES_COPIES);
            if !borrowed.is_empty() {
                let info = host.parent().unwrap_or(&host_objects).to_path_buf();
                self.push(copies.clone(), info, EntryKind::Dir, 0);
            }
            let mut list = Vec::new();
            for (n, dir) in borrowed.iter().enumerate() {
                let before = self.bytes;
                self.walk(dir, &copies.join(n.to_string()), &|rel| {
                    rel == Path::new("info/alternates")
                })?;
                self.borrowed.dirs += 1;
                self.borrowed.bytes += self.bytes - before;
                list.extend_from_slice(format!("{ALTERNATES_COPIES}/{n}\n").as_bytes());
            }
            tracing::debug!(list = %host.display(), dirs = borrowed.len(), "alternate object directories copied into the bottle");
            self.set_generated(dest, &host, list);
        }
        Ok(())
    }

    /// Puts `content` at `dest` in the workspace, in place of what was
    /// selected there; `host` is what it stands for, for messages.
    fn set_generated(&mut self, dest: PathBuf, host: &Path, content: Vec<u8>) {
        let size = content.len() as u64;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.dest == dest) {
            let old = match &entry.kind {
                EntryKind::File => fs::symlink_metadata(&entry.host).map_or(0, |m| m.len()),
                EntryKind::Generated(bytes) => bytes.len() as u64,
                _ => 0,
            };
            self.bytes = self.bytes - old + size;
            entry.kind = EntryKind::Generated(content);
        } else {
            self.push(dest, host.to_path_buf(), EntryKind::Generated(content), 0);
        }
    }

    /// Where the copy of the host git directory `git_dir` is, if it was copied.
    fn copy_of(&self, git_dir: &Path) -> Option<PathBuf> {
        let (host, dest) = self
            .git_dirs
            .iter()
            .filter(|(host, _)| git_dir.starts_with(host))
            .max_by_key(|(host, _)| host.components().count())?;
        let copy = dest.join(git_dir.strip_prefix(host).ok()?);
        self.entries
            .iter()
            .any(|e| e.dest == copy && e.kind == EntryKind::Dir)
            .then_some(copy)
    }

    /// Replaces the copied `config` of the git directory at `dest_git` by
    /// the host's (of `host_git`, or its common directory) with `extra`
    /// appended.
    fn override_config(
        &mut self,
        dest_git: &Path,
        host_git: &Path,
        extra: &[u8],
    ) -> Result<(), WorkspaceError> {
        let dest = dest_git.join("config");
        let Some(entry) = self.entries.iter().find(|e| e.dest == dest) else {
            return Ok(());
        };
        let host = entry.host.clone();
        // Overridden already (a worktree's, then for a sparse checkout):
        // the override goes on.
        let mut content = match &entry.kind {
            EntryKind::Generated(bytes) => bytes.clone(),
            _ => read_small(&host)?,
        };
        content.extend_from_slice(extra);
        self.set_generated(dest, &host, content);
        tracing::debug!(config = %host.display(), git_dir = %host_git.display(), "git config rewritten for the bottle");
        Ok(())
    }

    /// Everything under `host` as `dest`, without following symlinks,
    /// except the paths (relative to `host`) that `skip` names. Returns the
    /// relative paths of the files it listed.
    fn walk(
        &mut self,
        host: &Path,
        dest: &Path,
        skip: &dyn Fn(&Path) -> bool,
    ) -> Result<BTreeSet<PathBuf>, WorkspaceError> {
        let mut files = BTreeSet::new();
        // A linked worktree's `.git` is made of two walks.
        if !self.entries.iter().any(|e| e.dest == dest) {
            self.push(dest.to_path_buf(), host.to_path_buf(), EntryKind::Dir, 0);
        }
        self.walk_dir(host, dest, Path::new(""), skip, &mut files)?;
        Ok(files)
    }

    fn walk_dir(
        &mut self,
        host: &Path,
        dest: &Path,
        relative: &Path,
        skip: &dyn Fn(&Path) -> bool,
        files: &mut BTreeSet<PathBuf>,
    ) -> Result<(), WorkspaceError> {
        let dir = host.join(relative);
        let read_error = |source| WorkspaceError::Read {
            path: dir.clone(),
            source,
        };
        let mut names = fs::read_dir(&dir)
            .map_err(read_error)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        // Stable archives whatever order the filesystem lists entries in.
        names.sort();
        for name in names {
            let rel = relative.join(&name);
            if skip(&rel) {
                continue;
            }
            let path = host.join(&rel);
            let metadata = match fs::symlink_metadata(&path) {
                Ok(metadata) => metadata,
                Err(err) if is_gone(&err) => continue,
                Err(source) => return Err(WorkspaceError::Read { path, source }),
            };
            let file_type = metadata.file_type();
            let inner = dest.join(&rel);
            if file_type.is_symlink() {
                files.insert(rel);
                self.push(inner, path, EntryKind::Symlink, 0);
            } else if file_type.is_dir() {
                self.push(inner, path, EntryKind::Dir, 0);
                self.walk_dir(host, dest, &rel, skip, files)?;
            } else if file_type.is_file() {
                files.insert(rel);
                self.push(inner, path, EntryKind::File, metadata.len());
            } else {
                tracing::debug!(path = %path.display(), "not copied into the bottle: not a file, directory or symlink");
            }
        }
        Ok(())
    }
}

/// A linked worktree's state that lives in its own git directory; the
/// common directory's copy of it belongs to the main work tree (or to the
/// other worktrees). See gitrepository-layout(5).
fn per_worktree(relative: &Path) -> bool {
    let Some(text) = relative.to_str() else {
        return false;
    };
    let top_level_pseudo_ref =
        !text.contains('/') && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    top_level_pseudo_ref
        || matches!(
            text,
            "worktrees"
                | "index"
                | "config.worktree"
                | "logs/HEAD"
                | "refs/bisect"
                | "refs/worktree"
                | "refs/rewritten"
                | "rebase-merge"
                | "rebase-apply"
                | "sequencer"
                | "gc.pid"
        )
}

/// Whether the workspace path `dest` is a repository's list of alternates:
/// `objects/info/alternates` in a `.git` directory.
fn is_alternates_list(dest: &Path) -> bool {
    dest.ends_with("objects/info/alternates") && dest.components().any(|c| c.as_os_str() == ".git")
}

/// Appends to `found` the object directories (canonical) that the objects
/// directory `objects` borrows from, `depth` levels of alternates below the
/// repository's own `top`, in the order git searches them: each one's own
/// alternates right after it. Each is listed once, and never `top`.
fn borrowed_dirs(
    top: &Path,
    objects: &Path,
    depth: usize,
    found: &mut Vec<PathBuf>,
) -> Result<(), WorkspaceError> {
    let list = objects.join("info/alternates");
    if depth > 0 && fs::symlink_metadata(&list).is_err() {
        return Ok(());
    }
    let entries = alternates_entries(&read_small(&list)?);
    if depth > MAX_ALTERNATES_DEPTH && !entries.is_empty() {
        return Err(WorkspaceError::AlternatesTooDeep {
            list: top.join("info/alternates"),
        });
    }
    for entry in entries {
        // Relative to the objects directory, as git reads it; a `http://`
        // line is a relative path to git too, and missing.
        let named = objects.join(OsStr::from_bytes(&entry));
        let unreadable = |source| WorkspaceError::AlternateUnreadable {
            list: list.clone(),
            alternate: named.clone(),
            source,
        };
        let dir = named.canonicalize().map_err(unreadable)?;
        fs::read_dir(&dir).map_err(unreadable)?;
        if dir == top || found.contains(&dir) {
            continue;
        }
        found.push(dir.clone());
        borrowed_dirs(top, &dir, depth + 1, found)?;
    }
    Ok(())
}

/// The paths an `objects/info/alternates` file names, as git reads it: one
/// a line; empty lines and lines starting with `#` skipped; a line starting
/// with `"` C-quoted (kept as it is when the quoting is broken); trailing
/// slashes dropped.
fn alternates_entries(content: &[u8]) -> Vec<Vec<u8>> {
    content
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .map(|line| {
            let mut path = unquote_c(line).unwrap_or_else(|| line.to_vec());
            while path.len() > 1 && path.ends_with(b"/") {
                path.pop();
            }
            path
        })
        .filter(|path| !path.is_empty())
        .collect()
}

/// A C-quoted string as git writes it (`"a\tb\303\251"`), unquoted;
/// `None` when `quoted` is not one.
fn unquote_c(quoted: &[u8]) -> Option<Vec<u8>> {
    let inner = quoted.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter().copied();
    while let Some(byte) = bytes.next() {
        match byte {
            b'"' => return None,
            b'\\' => {
                let escaped = bytes.next()?;
                out.push(match escaped {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    b'\\' | b'"' => escaped,
                    b'0'..=b'3' => {
                        let (d1, d2) = (bytes.next()?, bytes.next()?);
                        if !(b'0'..=b'7').contains(&d1) || !(b'0'..=b'7').contains(&d2) {
                            return None;
                        }
                        ((escaped - b'0') << 6) | ((d1 - b'0') << 3) | (d2 - b'0')
                    }
                    _ => return None,
                });
            }
            _ => out.push(byte),
        }
    }
    Some(out)
}

/// `[core] worktree = <back>` as an appended config section.
fn config_worktree(back: &Path) -> Vec<u8> {
    let mut extra = b"\n[core]\n\tworktree = ".to_vec();
    extra.extend_from_slice(back.as_os_str().as_bytes());
    extra.push(b'\n');
    extra
}

/// The path from the directory `from` to `to`, both relative to the workspace.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// The path in a one-line git pointer file (`gitdir: PATH`, a `commondir`).
fn pointer(path: &Path, prefix: &str) -> Result<PathBuf, WorkspaceError> {
    let content = read_small(path)?;
    let invalid = |detail: &str| WorkspaceError::GitFileInvalid {
        path: path.to_path_buf(),
        detail: detail.to_owned(),
    };
    let line = content.trim_ascii_end();
    let target = line
        .strip_prefix(prefix.as_bytes())
        .ok_or_else(|| invalid(&format!("it does not start with `{prefix}`")))?;
    if target.is_empty() || target.contains(&b'\n') {
        return Err(invalid("it is not one line naming a path"));
    }
    Ok(PathBuf::from(OsStr::from_bytes(target)))
}

fn read_small(path: &Path) -> Result<Vec<u8>, WorkspaceError> {
    let read = || -> io::Result<Vec<u8>> {
        let mut content = Vec::new();
        fs::File::open(path)?
            .take(MAX_GIT_FILE + 1)
            .read_to_end(&mut content)?;
        if content.len() as u64 > MAX_GIT_FILE {
            return Err(io::Error::other(format!(
                "larger than {}",
                HumanBytes(MAX_GIT_FILE)
            )));
        }
        Ok(content)
    };
    read().map_err(|source| WorkspaceError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn canonical(path: &Path) -> Result<PathBuf, WorkspaceError> {
    path.canonicalize().map_err(|source| WorkspaceError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Gone since it was listed: deleted, or a parent became a file.
fn is_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// A path as git printed it, if it stays below the directory: git prints
/// nothing else, but the archive must never leave the workspace.
fn plain_relative(raw: &[u8]) -> Option<PathBuf> {
    // A nested repository that is not tracked is listed as `dir/`.
    let raw = raw.strip_suffix(b"/").unwrap_or(raw);
    let path = PathBuf::from(OsStr::from_bytes(raw));
    let plain = !raw.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && path.components().next() != Some(Component::Normal(OsStr::new(".git")));
    plain.then_some(path)
}

/// True when every directory between `root` and `relative` is a directory,
/// not a symlink: a tracked `dir/file` whose `dir` became a symlink would
/// otherwise be read from wherever the symlink points.
fn no_symlink_between(root: &Path, relative: &Path, checked: &mut HashSet<PathBuf>) -> bool {
    let mut dir = PathBuf::new();
    let Some(parent) = relative.parent() else {
        return true;
    };
    for part in parent.components() {
        dir.push(part);
        if checked.contains(&dir) {
            continue;
        }
        match fs::symlink_metadata(root.join(&dir)) {
            Ok(metadata) if metadata.is_dir() => {
                checked.insert(dir.clone());
            }
            _ => return false,
        }
    }
    true
}

/// `git` in `dir` with a fixed, safe setup: kept from the caller's
/// environment (see [`host_git::command`]); `core.fsmonitor` (a command the
/// repository's config could name) is off; and it takes no optional locks,
/// so it writes nothing into the repository. The user's own configuration
/// still applies, so a global excludes file keeps its files on the host as
/// it keeps them out of `git add`.
fn git(dir: &Path) -> Command {
    let mut command = host_git::command();
    command
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args(["-c", "core.fsmonitor=false", "-C"])
        .arg(dir);
    command
}

/// What git would carry from the work tree at `dir`: tracked files and
/// untracked ones that are not ignored, sorted, each once (git lists an
/// unmerged path once per stage).
fn ls_files(dir: &Path) -> Result<Vec<Vec<u8>>, WorkspaceError> {
    let output = git(dir)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .map_err(|source| WorkspaceError::GitNotRun {
            path: dir.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(WorkspaceError::GitFailed {
            path: dir.to_path_buf(),
            detail: if detail.is_empty() {
                output.status.to_string()
            } else {
                detail
            },
        });
    }
    let mut paths: Vec<Vec<u8>> = output
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// A sparse-checkout pattern (gitignore syntax, anchored) for the path
/// `relative`: a directory and all below it, or the one file.
fn sparse_pattern(relative: &Path, dir: bool) -> Vec<u8> {
    let mut pattern = b"/".to_vec();
    for byte in relative.as_os_str().as_bytes() {
        if matches!(byte, b'\\' | b'*' | b'?' | b'[' | b'!' | b'#' | b' ') {
            pattern.push(b'\\');
        }
        pattern.push(*byte);
    }
    if dir {
        pattern.push(b'/');
    }
    pattern.push(b'\n');
    pattern
}

/// A copy of the index file `index` of the work tree `top` in which every
/// path outside `sub` is marked `skip-worktree`, but for the `.gitignore`
/// and `.gitattributes` of the directories above `sub`, which are returned
/// (those the index tracks) to be checked out too. Made by `git
/// update-index` on a scratch copy: the host's index is only read; no hook
/// runs, and the copy is written whole (never split or sparse).
fn skip_worktree_index(
    top: &Path,
    index: &Path,
    sub: &Path,
) -> Result<(Option<Vec<u8>>, Vec<PathBuf>), WorkspaceError> {
    let scratch = tempfile::Builder::new()
        .prefix("claude-bottle-index-")
        .tempdir()
        .map_err(|source| WorkspaceError::Read {
            path: index.to_path_buf(),
            source,
        })?;
    let copy = scratch.path().join("index");
    fs::copy(index, &copy).map_err(|source| WorkspaceError::Read {
        path: index.to_path_buf(),
        source,
    })?;
    let failed = |detail: String| WorkspaceError::GitFailed {
        path: top.to_path_buf(),
        detail,
    };
    let run = |args: &[&str], input: Option<Vec<u8>>| -> Result<Vec<u8>, WorkspaceError> {
        let mut command = git(top);
        command
            .env("GIT_INDEX_FILE", &copy)
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.splitIndex=false",
            ])
            .args(["-c", "index.sparse=false"])
            .args(args);
        let output = host_git::output(&mut command, input).map_err(|err| match err {
            host_git::RunError::Spawn(source) => WorkspaceError::GitNotRun {
                path: top.to_path_buf(),
                source,
            },
            other => failed(other.to_string()),
        })?;
        if !output.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
        Ok(output.stdout)
    };
    let rules: Vec<PathBuf> = sub
        .ancestors()
        .skip(1)
        .flat_map(|dir| [dir.join(".gitignore"), dir.join(".gitattributes")])
        .collect();
    let listed = run(&["ls-files", "-z", "--cached", "--full-name"], None)?;
    let mut inside = sub.as_os_str().as_bytes().to_vec();
    inside.push(b'/');
    let mut outside = Vec::new();
    let mut tracked_rules = Vec::new();
    let mut last: &[u8] = b"";
    for path in listed.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        // An unmerged path is listed once per stage.
        if path == last || path.starts_with(&inside) {
            continue;
        }
        last = path;
        let as_path = Path::new(OsStr::from_bytes(path));
        if rules.iter().any(|r| r == as_path) {
            tracked_rules.push(as_path.to_path_buf());
        } else {
            outside.extend_from_slice(path);
            outside.push(0);
        }
    }
    if outside.is_empty() {
        return Ok((None, tracked_rules));
    }
    run(
        &[
            "update-index",
            "--no-split-index",
            "--skip-worktree",
            "-z",
            "--stdin",
        ],
        Some(outside),
    )?;
    let marked = fs::read(&copy).map_err(|source| WorkspaceError::Read {
        path: copy.clone(),
        source,
    })?;
    Ok((Some(marked), tracked_rules))
}

/// The top of the git work tree `dir` lies in, when there is one and git
/// runs. A work tree whose top is the home directory (or above it), such
/// as a repository of dotfiles, does not count: its ignore rules are about
/// the home directory, not this project.
fn git_top_level(dir: &Path, host_home: &Path) -> Option<PathBuf> {
    let output = git(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let top = output.stdout.strip_suffix(b"\n")?;
    let top = PathBuf::from(OsStr::from_bytes(top));
    let home = host_home
        .canonicalize()
        .unwrap_or_else(|_| host_home.to_path_buf());
    (!home.starts_with(&top)).then_some(top)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::provision::archive;
    use crate::core::provision::{Item, ProvisionSet, Source};
    use crate::test_git::{clone_shared, git, worktree_add};
    use std::os::unix::fs::symlink;
    use std::sync::Arc;

    fn write(path: &Path, content: &str) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }

    /// The entries as `dest kind` lines, `.git` internals summarised.
    fn listing(workspace: &Workspace) -> String {
        let mut lines = Vec::new();
        for entry in &workspace.entries {
            let dest = entry.dest.display().to_string();
            let in_git_internals = dest
                .split('/')
                .skip_while(|p| *p != ".git")
                .nth(1)
                .is_some();
            if in_git_internals && !matches!(entry.kind, EntryKind::Generated(_)) {
                continue;
            }
            let kind = match &entry.kind {
                EntryKind::Dir => "dir".to_owned(),
                EntryKind::File => "file".to_owned(),
                EntryKind::Symlink => format!(
                    "symlink -> {}",
                    fs::read_link(&entry.host).expect("link").display()
                ),
                EntryKind::Generated(bytes) => {
                    format!(
                        "generated {:?}",
                        String::from_utf8_lossy(bytes).lines().last().unwrap_or("")
                    )
                }
            };
            lines.push(format!("{dest} {kind}"));
        }
        lines.join("\n")
    }

    fn dests(workspace: &Workspace) -> Vec<String> {
        workspace
            .entries
            .iter()
            .map(|e| e.dest.display().to_string())
            .collect()
    }

    /// The workspace as the bottle gets it, unpacked under `into`; returns
    /// the workspace directory there.
    fn unpack(workspace: Workspace, into: &Path) -> PathBuf {
        let set = ProvisionSet {
            items: vec![Item {
                dest: "/workspace".into(),
                mode: 0o755,
                source: Source::Workspace(Arc::new(workspace)),
            }],
            ..ProvisionSet::default()
        };
        let bytes = archive::in_memory(&set).expect("archive");
        tar::Archive::new(bytes.as_slice())
            .unpack(into)
            .expect("unpack");
        into.join("workspace")
    }

    /// A repository at `dir` with one commit, an ignored `target/` and `.env`.
    fn project(dir: &Path) {
        fs::create_dir_all(dir).expect("mkdir");
        git(dir, &["init", "-q"]);
        write(&dir.join(".gitignore"), "target/\n.env\n");
        write(&dir.join("src/main.rs"), "fn main() {}\n");
        write(&dir.join("gone.txt"), "deleted later\n");
        git(dir, &["add", "."]);
        git(dir, &["commit", "-q", "-m", "first"]);
    }

    #[test]
    fn a_plain_directory_is_copied_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("plain");
        write(&root.join("target/big.bin"), "0123456789");
        write(&root.join(".env"), "SECRET=1\n");
        symlink("/etc/passwd", root.join("passwd")).expect("symlink");
        let workspace = select(&root, tmp.path()).expect("select");
        assert_eq!(workspace.kind, Kind::Plain);
        assert_eq!(
            dests(&workspace),
            [".env", "passwd", "target", "target/big.bin"]
        );
        assert_eq!((workspace.files, workspace.bytes), (3, 19));
        insta::assert_snapshot!(workspace.describe(), @"not a git work tree, everything is copied: 3 files, 19 B");
    }

    #[test]
    fn a_git_work_tree_carries_tracked_and_untracked_files_and_its_repository_but_not_ignored_ones()
    {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("repo");
        project(&root);
        write(&root.join("target/debug/app"), "binary");
        write(&root.join(".env"), "SECRET=1\n");
        write(&root.join("notes/new.md"), "untracked, not ignored\n");
        fs::remove_file(root.join("gone.txt")).expect("delete a tracked file");
        let outside = tmp.path().join("outside");
        write(&outside.join("secret"), "outside the tree\n");
        symlink(&outside, root.join("escape")).expect("symlink");
        // A tracked directory replaced by a symlink out of the tree: its
        // tracked files must not be read through it.
        write(&root.join("lib/inner.rs"), "// tracked\n");
        git(&root, &["add", "lib/inner.rs"]);
        fs::remove_dir_all(root.join("lib")).expect("rm lib");
        symlink(&outside, root.join("lib")).expect("symlink lib");

        let workspace = select(&root, tmp.path()).expect("select");
        assert_eq!(workspace.kind, Kind::Git);
        let all = dests(&workspace);
        assert!(all.contains(&".git/HEAD".to_owned()), "{all:?}");
        assert!(all.contains(&".git/objects".to_owned()), "{all:?}");
        for ignored in [
            ".env",
            "target",
            "target/debug/app",
            "gone.txt",
            "lib/inner.rs",
        ] {
            assert!(
                !all.contains(&ignored.to_owned()),
                "{ignored} selected: {all:?}"
            );
        }
        assert!(
            workspace.entries.iter().all(|e| e.host.starts_with(&root)),
            "an entry from outside the tree"
        );
        let listed = listing(&workspace).replace(&tmp.path().display().to_string(), "<tmp>");
        insta::assert_snapshot!(listed, @r"
        .git dir
        .gitignore file
        escape symlink -> <tmp>/outside
        lib symlink -> <tmp>/outside
        notes/new.md file
        src/main.rs file
        ");
        let counted: u64 = workspace
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| fs::metadata(&e.host).expect("stat").len())
            .sum();
        assert_eq!(workspace.bytes, counted);
        assert!(
            workspace
                .describe()
                .starts_with("git work tree, with its repository: "),
            "{}",
            workspace.describe()
        );

        let on_host = git(&root, &["status", "--porcelain"]);
        let copy = unpack(workspace, &tmp.path().join("bottle"));
        fs::remove_dir_all(&root).expect("remove the host repository");
        let status = git(&copy, &["status", "--porcelain"]);
        assert_eq!(
            status, on_host,
            "the bottle's git sees what the host's sees"
        );
        assert_eq!(
            status.lines().collect::<Vec<_>>(),
            [
                " D gone.txt",
                "AD lib/inner.rs",
                "?? escape",
                "?? lib",
                "?? notes/"
            ],
        );
    }

    /// A subdirectory of a work tree: the workspace is the top, with the
    /// repository, only the subdirectory's files (and the ignore rules
    /// above it) checked out, and git there sees the subdirectory as the
    /// host does and nothing outside it changed.
    #[test]
    fn a_subdirectory_of_a_work_tree_carries_the_repository_with_only_itself_checked_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("repo");
        project(&root);
        write(&root.join("docs/guide.md"), "guide\n");
        write(&root.join("src/lib/.gitattributes"), "*.bin binary\n");
        write(&root.join("src/lib/deep/x.rs"), "// x\n");
        git(&root, &["add", "."]);
        git(&root, &["commit", "-q", "-m", "docs"]);
        write(
            &root.join("src/lib/deep/target/out"),
            "ignored by the top's rules\n",
        );
        write(&root.join("src/lib/deep/.env"), "SECRET=1\n");
        write(&root.join("src/lib/deep/x.rs"), "// changed\n");
        write(&root.join("src/lib/deep/new.rs"), "// new\n");
        write(&root.join("docs/guide.md"), "edited on the host\n");
        fs::remove_file(root.join("gone.txt")).expect("rm");
        let sub = root.join("src/lib/deep");
        let workspace = select(&sub, tmp.path()).expect("select");
        assert_eq!(
            workspace.kind,
            Kind::InsideGit {
                top: root.canonicalize().expect("canonical"),
                sub: "src/lib/deep".into(),
            }
        );
        assert_eq!(workspace.subdir(), Some(Path::new("src/lib/deep")));
        let outside_git: Vec<String> = dests(&workspace)
            .into_iter()
            .filter(|d| d != ".git" && !d.starts_with(".git/"))
            .collect();
        assert_eq!(
            outside_git,
            [
                "src/lib/deep/new.rs",
                "src/lib/deep/x.rs",
                ".gitignore",
                "src/lib/.gitattributes"
            ]
        );
        let on_host = git(&sub, &["status", "--porcelain", "--", "."]);
        let copy = unpack(workspace, &tmp.path().join("bottle"));
        assert_eq!(
            fs::read_to_string(copy.join(".git/info/sparse-checkout")).expect("patterns"),
            "/src/lib/deep/\n/.gitignore\n/src/lib/.gitattributes\n"
        );
        let inside = copy.join("src/lib/deep");
        assert_eq!(git(&inside, &["status", "--porcelain", "--", "."]), on_host);
        assert_eq!(
            git(&copy, &["status", "--porcelain"]),
            on_host,
            "nothing outside the subdirectory changed"
        );
        assert_eq!(git(&copy, &["log", "--format=%s"]), "docs\nfirst");
        assert!(!copy.join("docs").exists());
        // The host's index and files are as they were.
        assert_eq!(
            git(&root, &["ls-files", "-v", "docs/guide.md"]),
            "H docs/guide.md"
        );
    }

    #[test]
    fn a_dotfiles_repository_in_the_home_directory_does_not_make_a_project_a_work_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        fs::create_dir_all(&home).expect("mkdir");
        git(&home, &["init", "-q"]);
        write(&home.join(".gitignore"), "*\n");
        write(&home.join("project/main.rs"), "fn main() {}\n");
        let workspace = select(&home.join("project"), &home).expect("select");
        assert_eq!(workspace.kind, Kind::Plain);
        assert_eq!(dests(&workspace), ["main.rs"]);
    }

    /// A linked worktree's `.git` file names the main repository by an
    /// absolute host path; the bottle gets a repository of its own, on the
    /// worktree's branch with the worktree's index.
    #[test]
    fn a_linked_worktree_becomes_a_repository_that_works_without_the_host() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let main = tmp.path().join("main");
        project(&main);
        let linked = tmp.path().join("linked");
        worktree_add(&main, "feature", &linked);
        write(&linked.join("feature.rs"), "// staged\n");
        git(&linked, &["add", "feature.rs"]);
        git(&linked, &["commit", "-q", "-m", "on the feature branch"]);
        write(&linked.join("wip.rs"), "// untracked\n");
        write(&linked.join("src/main.rs"), "fn main() { changed() }\n");
        write(&main.join("main-only.rs"), "// in the main work tree\n");
        git(&main, &["add", "main-only.rs"]);

        let workspace = select(&linked, tmp.path()).expect("select");
        assert_eq!(
            workspace.kind,
            Kind::LinkedWorktree {
                common: main.canonicalize().expect("canonical")
            }
        );
        let all = dests(&workspace);
        for absent in [
            ".git/worktrees",
            ".git/commondir",
            ".git/gitdir",
            "main-only.rs",
        ] {
            assert!(!all.contains(&absent.to_owned()), "{absent}: {all:?}");
        }
        insta::assert_snapshot!(listing(&workspace), @r#"
        .git dir
        .git/config generated "\tworktree = .."
        .gitignore file
        feature.rs file
        gone.txt file
        src/main.rs file
        wip.rs file
        "#);

        let on_host = git(&linked, &["status", "--porcelain"]);
        let copy = unpack(workspace, &tmp.path().join("bottle"));
        fs::remove_dir_all(&main).expect("remove the main repository");
        fs::remove_dir_all(&linked).expect("remove the worktree");
        assert_eq!(git(&copy, &["branch", "--show-current"]), "feature");
        assert_eq!(
            git(&copy, &["log", "--format=%s"])
                .lines()
                .collect::<Vec<_>>(),
            ["on the feature branch", "first"]
        );
        let status = git(&copy, &["status", "--porcelain"]);
        assert_eq!(status, on_host);
        assert_eq!(
            status.lines().collect::<Vec<_>>(),
            [" M src/main.rs", "?? wip.rs"]
        );
    }

    /// Submodules: the superproject's `.git/modules` holds their
    /// repositories, which their `.git` files point at, absolutely or not.
    #[test]
    fn submodules_work_in_the_copy_whatever_their_git_files_say() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let library = tmp.path().join("library");
        project(&library);
        let root = tmp.path().join("super");
        project(&root);
        git(
            &root,
            &[
                "submodule",
                "add",
                "-q",
                library.to_str().expect("utf-8"),
                "vendor/lib",
            ],
        );
        git(&root, &["commit", "-q", "-m", "add the library"]);
        write(
            &root.join("vendor/lib/new.rs"),
            "// untracked in the submodule\n",
        );
        write(
            &root.join("vendor/lib/target/x"),
            "ignored in the submodule\n",
        );
        // As old git and some tools leave them: absolute host paths.
        let module = root
            .join(".git/modules/vendor/lib")
            .canonicalize()
            .expect("module");
        write(
            &root.join("vendor/lib/.git"),
            &format!("gitdir: {}\n", module.display()),
        );
        git(
            &module,
            &[
                "config",
                "core.worktree",
                root.join("vendor/lib").to_str().expect("utf-8"),
            ],
        );

        let workspace = select(&root, tmp.path()).expect("select");
        assert_eq!(workspace.kind, Kind::Git);
        let all = dests(&workspace);
        assert!(!all.contains(&"vendor/lib/target/x".to_owned()), "{all:?}");
        assert!(all.contains(&"vendor/lib/new.rs".to_owned()), "{all:?}");
        let generated: Vec<String> = workspace
            .entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Generated(bytes) => Some(format!(
                    "{} {:?}",
                    e.dest.display(),
                    String::from_utf8_lossy(bytes).lines().last().unwrap_or("")
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            generated,
            [
                r#".git/modules/vendor/lib/config "\tworktree = ../../../../vendor/lib""#,
                r#"vendor/lib/.git "gitdir: ../../.git/modules/vendor/lib""#,
            ]
        );

        let on_host = git(&root, &["status", "--porcelain"]);
        let copy = unpack(workspace, &tmp.path().join("bottle"));
        fs::remove_dir_all(&root).expect("remove the superproject");
        fs::remove_dir_all(&library).expect("remove the library");
        let status = git(&copy, &["status", "--porcelain"]);
        assert_eq!(status, on_host);
        assert_eq!(status.lines().collect::<Vec<_>>(), [" M vendor/lib"]);
        let sub = copy.join("vendor/lib");
        assert_eq!(
            git(&sub, &["status", "--porcelain"])
                .lines()
                .collect::<Vec<_>>(),
            ["?? new.rs"]
        );
        assert_eq!(git(&sub, &["log", "--format=%s"]), "first");
    }

    /// The objects directory of the repository at `repo`, canonical.
    fn objects_of(repo: &Path) -> PathBuf {
        repo.join(".git/objects").canonicalize().expect("objects")
    }

    /// A `--shared` clone borrows its objects from the repository it was
    /// cloned from, which may borrow from another: the bottle gets copies
    /// of both (each once, whatever way it is named), its own list names
    /// them relatively, and git works there with the host's repositories
    /// gone. The host's list is as it was.
    #[test]
    fn a_shared_clone_carries_the_objects_it_borrows_along_the_chain() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("base");
        project(&base);
        let origin = tmp.path().join("origin");
        let clone = tmp.path().join("clone");
        clone_shared(&base, &origin);
        clone_shared(&origin, &clone);
        write(&origin.join("origin.rs"), "// in origin only\n");
        git(&origin, &["add", "origin.rs"]);
        git(&origin, &["commit", "-q", "-m", "in origin"]);
        git(&clone, &["pull", "-q", "--ff-only"]);
        write(&clone.join("wip.rs"), "// untracked\n");
        // As a user may write it: a comment, a blank line, a trailing
        // slash, and `base` again by a relative path.
        let list = clone.join(".git/objects/info/alternates");
        let host_list = format!(
            "# borrowed\n\n{}/\n../../../base/.git/objects\n",
            objects_of(&origin).display()
        );
        fs::write(&list, &host_list).expect("write alternates");
        let on_host = git(&clone, &["status", "--porcelain"]);
        let log_on_host = git(&clone, &["log", "--format=%s"]);

        let workspace = select(&clone, tmp.path()).expect("select");
        let borrowed_bytes: u64 = [&origin, &base]
            .iter()
            .flat_map(|repo| walk(&objects_of(repo)).expect("walk"))
            .filter(|e| e.kind == EntryKind::File && !e.dest.ends_with("info/alternates"))
            .map(|e| fs::metadata(&e.host).expect("stat").len())
            .sum();
        assert_eq!(
            workspace.borrowed,
            Borrowed {
                dirs: 2,
                bytes: borrowed_bytes
            }
        );
        let described = workspace.describe();
        assert!(
            described.contains("of it the objects borrowed from 2 alternate object directories"),
            "{described}"
        );
        let copy = unpack(workspace, &tmp.path().join("bottle"));
        assert_eq!(
            fs::read_to_string(&list).expect("host list"),
            host_list,
            "the host's list is untouched"
        );
        for repo in [&base, &origin, &clone] {
            fs::remove_dir_all(repo).expect("remove a host repository");
        }
        assert_eq!(
            fs::read_to_string(copy.join(".git/objects/info/alternates")).expect("list"),
            "info/claude-bottle-alternates/0\ninfo/claude-bottle-alternates/1\n"
        );
        assert!(
            !copy
                .join(".git/objects/info/claude-bottle-alternates/0/info/alternates")
                .exists(),
            "a copy keeps no host paths"
        );
        assert_eq!(git(&copy, &["status", "--porcelain"]), on_host);
        assert_eq!(git(&copy, &["log", "--format=%s"]), log_on_host);
        assert_eq!(log_on_host, "in origin\nfirst");
        git(&copy, &["fsck", "--no-progress"]);
    }

    /// A linked worktree of a `--shared` clone: the common directory's
    /// alternates come along.
    #[test]
    fn a_worktree_of_a_shared_clone_carries_the_objects_it_borrows() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let origin = tmp.path().join("origin");
        project(&origin);
        let clone = tmp.path().join("clone");
        clone_shared(&origin, &clone);
        let linked = tmp.path().join("linked");
        worktree_add(&clone, "feature", &linked);
        let workspace = select(&linked, tmp.path()).expect("select");
        assert_eq!(workspace.borrowed.dirs, 1);
        let copy = unpack(workspace, &tmp.path().join("bottle"));
        for repo in [&origin, &clone, &linked] {
            fs::remove_dir_all(repo).expect("remove a host repository");
        }
        assert_eq!(git(&copy, &["log", "--format=%s"]), "first");
        assert_eq!(git(&copy, &["status", "--porcelain"]), "");
    }

    /// Git follows alternates of alternates 5 levels below the repository's
    /// own list, and ignores deeper ones; the bottle's copy goes as deep,
    /// and a repository that needs deeper ones is refused.
    #[test]
    fn alternates_are_followed_as_deep_as_git_follows_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repos: Vec<PathBuf> = (0..8).map(|n| tmp.path().join(format!("r{n}"))).collect();
        project(&repos[0]);
        for n in 1..repos.len() {
            fs::create_dir_all(&repos[n]).expect("mkdir");
            git(&repos[n], &["init", "-q"]);
            fs::write(
                repos[n].join(".git/objects/info/alternates"),
                format!("{}\n", objects_of(&repos[n - 1]).display()),
            )
            .expect("alternates");
            // Git itself cannot read the first commit from the deepest.
            if n < 7 {
                git(
                    &repos[n],
                    &["reset", "-q", &git(&repos[0], &["rev-parse", "HEAD"])],
                );
            }
        }
        let deepest_git_reads = &repos[6];
        assert_eq!(git(deepest_git_reads, &["log", "--format=%s"]), "first");
        let workspace = select(deepest_git_reads, tmp.path()).expect("select");
        assert_eq!(workspace.borrowed.dirs, 6);
        let copy = unpack(workspace, &tmp.path().join("bottle"));
        assert_eq!(git(&copy, &["log", "--format=%s"]), "first");

        let too_deep = &repos[7];
        let err = select(too_deep, tmp.path()).expect_err("too deep");
        assert!(
            matches!(&err, WorkspaceError::AlternatesTooDeep { list } if list == &objects_of(too_deep).join("info/alternates")),
            "{err}"
        );
        assert!(err.to_string().contains("more than 5 levels"), "{err}");
    }

    /// An alternate that is gone (or a URL, which git reads as a missing
    /// relative path) is refused, naming it, with how to go without it.
    #[test]
    fn a_missing_alternate_is_refused_with_how_to_do_without_it() {
        use crate::diagnostic::Diagnostic;
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        project(&repo);
        let list = repo.join(".git/objects/info/alternates");
        for (named, missing) in [
            (
                "/nowhere/objects".to_owned(),
                PathBuf::from("/nowhere/objects"),
            ),
            (
                "http://example.invalid/objects".to_owned(),
                objects_of(&repo).join("http://example.invalid/objects"),
            ),
        ] {
            fs::write(&list, format!("{named}\n")).expect("alternates");
            let err = select(&repo, tmp.path()).expect_err("missing alternate");
            match &err {
                WorkspaceError::AlternateUnreadable {
                    list: in_list,
                    alternate,
                    source,
                } => {
                    assert_eq!(in_list, &objects_of(&repo).join("info/alternates"));
                    assert_eq!(alternate, &missing);
                    assert_eq!(source.kind(), io::ErrorKind::NotFound);
                }
                other => panic!("{other}"),
            }
            assert!(
                err.to_string()
                    .contains(&format!("`{}`", missing.display())),
                "{err}"
            );
            assert!(
                err.hints().iter().any(|h| h.contains("git repack -a -d")),
                "{:?}",
                err.hints()
            );
        }
    }

    #[test]
    fn alternates_lists_are_read_as_git_reads_them() {
        let content = b"# comment\n\n/abs/objects/\nrel/objects\n\"/with\\nnewline\\303\\251\"\n\"broken\n/\n";
        let entries: Vec<String> = alternates_entries(content)
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect();
        assert_eq!(
            entries,
            [
                "/abs/objects",
                "rel/objects",
                "/with\nnewline\u{e9}",
                "\"broken",
                "/"
            ]
        );
    }

    /// The plan's words for each kind of workspace.
    #[test]
    fn each_kind_of_workspace_is_described() {
        let kinds = [
            Kind::Plain,
            Kind::Git,
            Kind::LinkedWorktree {
                common: "/src/project".into(),
            },
            Kind::InsideGit {
                top: "/src/project".into(),
                sub: "sub".into(),
            },
        ];
        let lines: Vec<String> = kinds
            .into_iter()
            .zip([(1, 10), (1234, 5 << 20), (0, 0), (20_000, 200 << 20)])
            .map(|(kind, (files, bytes))| {
                Workspace {
                    root: "/src/project/sub".into(),
                    kind,
                    entries: Vec::new(),
                    files,
                    bytes,
                    borrowed: Borrowed::default(),
                }
                .describe()
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn relative_paths_between_workspace_directories() {
        let cases = [
            (
                "vendor/lib",
                ".git/modules/vendor/lib",
                "../../.git/modules/vendor/lib",
            ),
            (
                ".git/modules/vendor/lib",
                "vendor/lib",
                "../../../../vendor/lib",
            ),
            ("", ".git", ".git"),
            ("a", "a", "."),
        ];
        for (from, to, expected) in cases {
            assert_eq!(
                relative_path(Path::new(from), Path::new(to)),
                Path::new(expected),
                "{from} -> {to}"
            );
        }
    }
}
