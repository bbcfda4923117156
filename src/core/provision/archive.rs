//! A [`ProvisionSet`] as one tar archive rooted at `/`, the form every
//! engine takes files in (Docker's `PUT /containers/{id}/archive`, a `tar x`
//! over an exec). Each entry carries its owner and mode, so nothing needs a
//! `chown` afterwards.
//!
//! The archive holds exactly what the set names: its directories first
//! (parents before children), then its items. A host tree is walked without
//! following symlinks, so nothing outside it is ever read; its symlinks stay
//! symlinks, its files keep their permission bits, and sockets, FIFOs and
//! devices are left out.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use tar::{Builder, EntryType, Header};
use tokio::sync::mpsc;

use crate::core::provision::workspace::{self, Entry, EntryKind, Workspace, WorkspaceError};
use crate::core::provision::{CONTAINER_GID, CONTAINER_UID, Item, ProvisionSet, Source};

/// Permission bits kept from host files; set-id bits mean nothing for uid 1000.
const PERMISSION_BITS: u32 = 0o777;
/// Generated files of a workspace (a rewritten `.git` file or git config).
const GENERATED_MODE: u32 = 0o644;
/// The streamed archive goes out in chunks of this size, at most
/// [`CHUNKS_IN_FLIGHT`] of them written and not yet sent: the memory an
/// upload takes, whatever the size of the tree.
const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("provisioning destination `{dest}` is not a plain absolute path inside the bottle")]
    InvalidDestination { dest: String },

    #[error("provisioning destination `{dest}` appears twice")]
    DuplicateDestination { dest: String },

    #[error("could not read `{path}` to copy it into the bottle: {source}")]
    ReadHost { path: PathBuf, source: io::Error },

    #[error("`{path}` is no longer a {expected}, so it cannot be copied into the bottle")]
    HostChanged {
        path: PathBuf,
        expected: &'static str,
    },

    #[error("`{path}` changed while it was copied into the bottle: it is no longer {bytes} bytes")]
    ChangedWhileRead { path: PathBuf, bytes: u64 },

    #[error(transparent)]
    Workspace(#[from] WorkspaceError),

    #[error("could not write the provisioning archive: {0}")]
    Write(#[source] io::Error),
}

/// Who owns every entry of an archive once it is in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ownership {
    pub uid: u64,
    pub gid: u64,
}

impl Ownership {
    /// The agent's user: everything provisioned for Claude.
    pub const AGENT: Self = Self {
        uid: CONTAINER_UID,
        gid: CONTAINER_GID,
    };
    /// Root: the proxy's config, which the agent has no business owning.
    pub const ROOT: Self = Self { uid: 0, gid: 0 };
}

/// The archive of `sets`, each with its owner, as a stream of chunks
/// written by a blocking task as the stream is read: host files are read
/// as they go out, so the memory this takes does not grow with their size.
///
/// The task's result says whether the archive is whole. When it fails the
/// stream ends with an error, so an upload of it fails rather than
/// unpacking part of the tree. When the stream is dropped the task stops at
/// its next chunk with [`ArchiveError::Write`].
pub fn stream(
    set: ProvisionSet,
) -> (
    impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    tokio::task::JoinHandle<Result<(), ArchiveError>>,
) {
    stream_sets(vec![(set, Ownership::AGENT)])
}

/// [`stream`] of several sets, each with its owner, in one archive.
pub(crate) fn stream_sets(
    sets: Vec<(ProvisionSet, Ownership)>,
) -> (
    impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    tokio::task::JoinHandle<Result<(), ArchiveError>>,
) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let task = tokio::task::spawn_blocking(move || {
        let out = ChunkSender {
            buf: Vec::with_capacity(CHUNK),
            tx: tx.clone(),
        };
        let sets: Vec<(&ProvisionSet, Ownership)> =
            sets.iter().map(|(set, owner)| (set, *owner)).collect();
        let result =
            write_archive(&sets, out).and_then(|mut out| out.flush().map_err(ArchiveError::Write));
        if let Err(err) = &result {
            // Best effort: the reader may be gone already.
            let _ = tx.blocking_send(Err(io::Error::other(err.to_string())));
        }
        result
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (chunks, task)
}

/// Fills chunks of [`CHUNK`] bytes and hands them to the stream, waiting
/// while [`CHUNKS_IN_FLIGHT`] are unread.
struct ChunkSender {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped reading"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

/// One file at `dest` holding `text`, owned by root and readable by all: the
/// proxy's config.
pub(crate) fn root_file_archive(dest: &str, text: &str) -> Result<Vec<u8>, ArchiveError> {
    write_archive(&[(&root_file(dest, text), Ownership::ROOT)], Vec::new())
}

/// A set of one file at `dest` holding `text`, readable by all: owned by
/// root, the agent's user cannot change it (the owner record of a claimed
/// warm bottle).
pub(crate) fn root_file(dest: &str, text: &str) -> ProvisionSet {
    ProvisionSet {
        items: vec![Item {
            dest: dest.to_owned(),
            mode: 0o644,
            source: Source::Bytes(text.as_bytes().to_vec()),
        }],
        dirs: Vec::new(),
        prompt_file: None,
    }
}

/// The archive of `set` in memory, owned by the agent's user.
#[cfg(test)]
pub(crate) fn in_memory(set: &ProvisionSet) -> Result<Vec<u8>, ArchiveError> {
    write_archive(&[(set, Ownership::AGENT)], Vec::new())
}

/// Writes the archive of each set, with its owner, into `out` and returns it.
fn write_archive<W: Write>(sets: &[(&ProvisionSet, Ownership)], out: W) -> Result<W, ArchiveError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut writer = ArchiveWriter {
        builder: Builder::new(out),
        seen: BTreeSet::new(),
        owner: Ownership::ROOT,
    };
    for (set, owner) in sets {
        writer.owner = *owner;
        write_set(&mut writer, set, now)?;
    }
    writer.builder.into_inner().map_err(ArchiveError::Write)
}

fn write_set<W: Write>(
    writer: &mut ArchiveWriter<W>,
    set: &ProvisionSet,
    now: u64,
) -> Result<(), ArchiveError> {
    let mut dirs: Vec<(PathBuf, u32)> = Vec::with_capacity(set.dirs.len());
    for (dest, mode) in &set.dirs {
        dirs.push((archive_path(dest)?, *mode));
    }
    // Parents before children, whatever order the set listed them in.
    dirs.sort_by_key(|(path, _)| path.components().count());
    for (path, mode) in &dirs {
        writer.claim(path)?;
        writer.directory(path, *mode, now)?;
    }

    for item in &set.items {
        let path = archive_path(&item.dest)?;
        writer.claim(&path)?;
        match &item.source {
            Source::Bytes(bytes) => writer.file(&path, item.mode, now, bytes)?,
            Source::HostFile(host) => writer.host_file(&path, item.mode, host)?,
            Source::HostTree(host) => {
                writer.top_directory(&path, item.mode, host)?;
                writer.entries(&path, &workspace::walk(host)?, now)?;
            }
            Source::Workspace(workspace) => writer.workspace(&path, item.mode, workspace, now)?,
        }
    }
    Ok(())
}

/// `dest` without its leading `/`, refusing anything that could land outside it.
fn archive_path(dest: &str) -> Result<PathBuf, ArchiveError> {
    let path = Path::new(dest);
    let mut relative = PathBuf::new();
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(ArchiveError::InvalidDestination {
            dest: dest.to_owned(),
        });
    }
    for component in components {
        match component {
            Component::Normal(part) => relative.push(part),
            _ => {
                return Err(ArchiveError::InvalidDestination {
                    dest: dest.to_owned(),
                });
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(ArchiveError::InvalidDestination {
            dest: dest.to_owned(),
        });
    }
    Ok(relative)
}

struct ArchiveWriter<W: Write> {
    builder: Builder<W>,
    seen: BTreeSet<PathBuf>,
    owner: Ownership,
}

fn header(owner: Ownership, kind: EntryType, mode: u32, mtime: u64, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(owner.uid);
    header.set_gid(owner.gid);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

fn mtime_of(metadata: &fs::Metadata) -> u64 {
    u64::try_from(metadata.mtime()).unwrap_or(0)
}

/// Gone since the selection listed it: deleted, or a parent became a file.
fn is_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

impl<W: Write> ArchiveWriter<W> {
    fn claim(&mut self, path: &Path) -> Result<(), ArchiveError> {
        if self.seen.insert(path.to_path_buf()) {
            Ok(())
        } else {
            Err(ArchiveError::DuplicateDestination {
                dest: format!("/{}", path.display()),
            })
        }
    }

    fn directory(&mut self, path: &Path, mode: u32, mtime: u64) -> Result<(), ArchiveError> {
        let mut header = header(self.owner, EntryType::Directory, mode, mtime, 0);
        self.builder
            .append_data(&mut header, path, io::empty())
            .map_err(ArchiveError::Write)
    }

    fn file(
        &mut self,
        path: &Path,
        mode: u32,
        mtime: u64,
        bytes: &[u8],
    ) -> Result<(), ArchiveError> {
        let mut header = header(
            self.owner,
            EntryType::Regular,
            mode,
            mtime,
            bytes.len() as u64,
        );
        self.builder
            .append_data(&mut header, path, bytes)
            .map_err(ArchiveError::Write)
    }

    /// The set's mode wins over the host file's: identity files must be 0600.
    fn host_file(&mut self, path: &Path, mode: u32, host: &Path) -> Result<(), ArchiveError> {
        let metadata = fs::metadata(host).map_err(|source| ArchiveError::ReadHost {
            path: host.to_path_buf(),
            source,
        })?;
        if !metadata.is_file() {
            return Err(ArchiveError::HostChanged {
                path: host.to_path_buf(),
                expected: "regular file",
            });
        }
        let file = fs::File::open(host).map_err(|source| ArchiveError::ReadHost {
            path: host.to_path_buf(),
            source,
        })?;
        self.stream_file(path, Some(mode), host, file)
    }

    /// The top directory of a host tree takes the set's mode (symlinks to
    /// it followed).
    fn top_directory(&mut self, path: &Path, mode: u32, host: &Path) -> Result<(), ArchiveError> {
        let metadata = fs::metadata(host).map_err(|source| ArchiveError::ReadHost {
            path: host.to_path_buf(),
            source,
        })?;
        if !metadata.is_dir() {
            return Err(ArchiveError::HostChanged {
                path: host.to_path_buf(),
                expected: "directory",
            });
        }
        self.directory(path, mode, mtime_of(&metadata))
    }

    fn workspace(
        &mut self,
        path: &Path,
        mode: u32,
        workspace: &Workspace,
        now: u64,
    ) -> Result<(), ArchiveError> {
        self.top_directory(path, mode, &workspace.root)?;
        self.entries(path, &workspace.entries, now)
    }

    /// The entries of a host tree placed at `base`; they keep the host's
    /// permission bits. What vanished since the tree was listed is left
    /// out, as if it had been deleted before; what changed kind is an error.
    fn entries(&mut self, base: &Path, entries: &[Entry], now: u64) -> Result<(), ArchiveError> {
        for entry in entries {
            if !self.parents(base, entry)? {
                continue;
            }
            let path = base.join(&entry.dest);
            match &entry.kind {
                EntryKind::Dir => {
                    if !self.seen.contains(&path) {
                        self.host_directory(&path, &entry.host)?;
                    }
                }
                EntryKind::File => self.tree_file(&path, &entry.host)?,
                EntryKind::Symlink => self.symlink(&path, &entry.host)?,
                EntryKind::Generated(bytes) => {
                    self.claim(&path)?;
                    self.file(&path, GENERATED_MODE, now, bytes)?;
                }
            }
        }
        Ok(())
    }

    /// The directories between `base` and the entry that are not in the
    /// archive yet: git lists files, not the directories they are in.
    /// False when one of them is gone, and the entry with it.
    fn parents(&mut self, base: &Path, entry: &Entry) -> Result<bool, ArchiveError> {
        let Some(parent) = entry.dest.parent() else {
            return Ok(true);
        };
        let depth = parent.components().count();
        let mut dest = base.to_path_buf();
        for (index, part) in parent.components().enumerate() {
            dest.push(part);
            if self.seen.contains(&dest) {
                continue;
            }
            // The host directory is as many levels above the entry's host path.
            let up = depth - index;
            let mut host_dir = entry.host.as_path();
            for _ in 0..up {
                host_dir = host_dir.parent().unwrap_or(host_dir);
            }
            if !self.host_directory(&dest, host_dir)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A directory of a host tree with its host mode; never a symlink.
    /// False when it is gone since the listing.
    fn host_directory(&mut self, path: &Path, host: &Path) -> Result<bool, ArchiveError> {
        let metadata = match fs::symlink_metadata(host) {
            Ok(metadata) => metadata,
            Err(err) if is_gone(&err) => return Ok(false),
            Err(source) => {
                return Err(ArchiveError::ReadHost {
                    path: host.to_path_buf(),
                    source,
                });
            }
        };
        if !metadata.is_dir() {
            return Err(ArchiveError::HostChanged {
                path: host.to_path_buf(),
                expected: "directory",
            });
        }
        self.claim(path)?;
        let mode = metadata.permissions().mode() & PERMISSION_BITS;
        self.directory(path, mode, mtime_of(&metadata))?;
        Ok(true)
    }

    fn symlink(&mut self, path: &Path, host: &Path) -> Result<(), ArchiveError> {
        let (metadata, target) =
            match fs::symlink_metadata(host).and_then(|m| Ok((m, fs::read_link(host)?))) {
                Ok(found) => found,
                Err(err) if is_gone(&err) => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
                    return Err(ArchiveError::HostChanged {
                        path: host.to_path_buf(),
                        expected: "symlink",
                    });
                }
                Err(source) => {
                    return Err(ArchiveError::ReadHost {
                        path: host.to_path_buf(),
                        source,
                    });
                }
            };
        self.claim(path)?;
        let mut header = header(
            self.owner,
            EntryType::Symlink,
            0o777,
            mtime_of(&metadata),
            0,
        );
        self.builder
            .append_link(&mut header, path, &target)
            .map_err(ArchiveError::Write)
    }

    /// A regular file of a host tree, opened without following a symlink:
    /// one that replaced the file since the listing is not read through.
    fn tree_file(&mut self, path: &Path, host: &Path) -> Result<(), ArchiveError> {
        let file = match fs::OpenOptions::new()
            .read(true)
            // Non-blocking, so a FIFO that took the file's place cannot hang the open.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(host)
        {
            Ok(file) => file,
            Err(err) if is_gone(&err) => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                return Err(ArchiveError::HostChanged {
                    path: host.to_path_buf(),
                    expected: "regular file",
                });
            }
            Err(source) => {
                return Err(ArchiveError::ReadHost {
                    path: host.to_path_buf(),
                    source,
                });
            }
        };
        self.claim(path)?;
        self.stream_file(path, None, host, file)
    }

    /// `file` as the entry `path`, with `mode` or the host's permission
    /// bits. The header carries the size the file had when opened, so the
    /// file must give exactly that many bytes: one that shrinks or grows
    /// while it is read is an error, never a corrupt archive.
    fn stream_file(
        &mut self,
        path: &Path,
        mode: Option<u32>,
        host: &Path,
        mut file: fs::File,
    ) -> Result<(), ArchiveError> {
        let read_error = |source| ArchiveError::ReadHost {
            path: host.to_path_buf(),
            source,
        };
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(ArchiveError::HostChanged {
                path: host.to_path_buf(),
                expected: "regular file",
            });
        }
        let size = metadata.len();
        let mode = mode.unwrap_or(metadata.permissions().mode() & PERMISSION_BITS);
        let mut header = header(
            self.owner,
            EntryType::Regular,
            mode,
            mtime_of(&metadata),
            size,
        );
        let mut exact = Exact {
            inner: &mut file,
            remaining: size,
            failure: None,
        };
        let appended = self.builder.append_data(&mut header, path, &mut exact);
        let changed = || ArchiveError::ChangedWhileRead {
            path: host.to_path_buf(),
            bytes: size,
        };
        match (appended, exact.failure.take()) {
            (Ok(()), _) => {}
            (Err(_), Some(ReadFailure::Shrank)) => return Err(changed()),
            (Err(_), Some(ReadFailure::Read(source))) => return Err(read_error(source)),
            (Err(err), None) => return Err(ArchiveError::Write(err)),
        }
        let mut probe = [0u8; 1];
        match file.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(changed()),
            Err(source) => Err(read_error(source)),
        }
    }
}

enum ReadFailure {
    Shrank,
    Read(io::Error),
}

/// Exactly `remaining` bytes of `inner`, remembering why it failed if it
/// could not give them, so a read failure is told apart from a write one.
struct Exact<R> {
    inner: R,
    remaining: u64,
    failure: Option<ReadFailure>,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        match self.inner.read(&mut buf[..max]) {
            Ok(0) => {
                self.failure = Some(ReadFailure::Shrank);
                Err(io::Error::from(io::ErrorKind::UnexpectedEof))
            }
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Err(err),
            Err(err) => {
                let kind = err.kind();
                self.failure = Some(ReadFailure::Read(err));
                Err(io::Error::from(kind))
            }
        }
    }
}

impl crate::diagnostic::Diagnostic for ArchiveError {
    fn hints(&self) -> Vec<String> {
        let hint = match self {
            Self::InvalidDestination { .. } | Self::DuplicateDestination { .. } => {
                "this is a bug in claude-bottle; please report it"
            }
            Self::ReadHost { .. } => {
                "check that it still exists and is readable; it was there when the session was prepared"
            }
            Self::HostChanged { .. } => "it changed after the session was prepared; start again",
            Self::ChangedWhileRead { .. } => {
                "something was writing it; start again once it is done, or have git ignore it"
            }
            Self::Workspace(e) => return e.hints(),
            Self::Write(_) => return Vec::new(),
        };
        vec![hint.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::provision::Item;
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;

    #[derive(Debug, PartialEq, Eq)]
    enum Kind {
        Dir,
        File(Vec<u8>),
        Link(PathBuf),
    }

    #[derive(Debug)]
    struct Entry {
        path: String,
        kind: Kind,
        mode: u32,
        uid: u64,
        gid: u64,
    }

    fn read_back(bytes: &[u8]) -> Vec<Entry> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let header = entry.header().clone();
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let kind = match header.entry_type() {
                EntryType::Directory => Kind::Dir,
                EntryType::Symlink => Kind::Link(
                    entry
                        .link_name()
                        .expect("link name")
                        .expect("symlink target")
                        .into_owned(),
                ),
                EntryType::Regular => {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data).expect("data");
                    Kind::File(data)
                }
                other => panic!("unexpected entry type {other:?} for {path}"),
            };
            out.push(Entry {
                path: path.trim_end_matches('/').to_owned(),
                kind,
                mode: header.mode().expect("mode"),
                uid: header.uid().expect("uid"),
                gid: header.gid().expect("gid"),
            });
        }
        out
    }

    fn by_path(entries: &[Entry]) -> BTreeMap<&str, &Entry> {
        entries.iter().map(|e| (e.path.as_str(), e)).collect()
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn generated_and_host_files_with_their_dirs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let key = tmp.path().join("id_ed25519");
        fs::write(&key, b"PRIVATE").expect("write key");
        set_mode(&key, 0o644);
        let set = ProvisionSet {
            // Deliberately children first: the archive must reorder them.
            dirs: vec![
                ("/home/node/.ssh".into(), 0o700),
                ("/home/node".into(), 0o755),
            ],
            items: vec![
                Item {
                    dest: "/home/node/.claude-bottle-prompt.txt".into(),
                    mode: 0o600,
                    source: Source::Bytes(b"be kind".to_vec()),
                },
                Item {
                    dest: "/home/node/.ssh/id_github".into(),
                    mode: 0o600,
                    source: Source::HostFile(key),
                },
            ],
            prompt_file: None,
        };
        let entries = read_back(&in_memory(&set).expect("archive"));
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "home/node",
                "home/node/.ssh",
                "home/node/.claude-bottle-prompt.txt",
                "home/node/.ssh/id_github"
            ]
        );
        let modes: Vec<u32> = entries.iter().map(|e| e.mode).collect();
        assert_eq!(modes, [0o755, 0o700, 0o600, 0o600]);
        assert!(entries.iter().all(|e| e.uid == 1000 && e.gid == 1000));
        assert_eq!(entries[2].kind, Kind::File(b"be kind".to_vec()));
        assert_eq!(entries[3].kind, Kind::File(b"PRIVATE".to_vec()));
    }

    #[test]
    fn host_trees_keep_modes_and_symlinks_and_skip_the_rest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside-secret");
        fs::write(&outside, b"must not be copied").expect("write outside");
        let tree = tmp.path().join("project");
        fs::create_dir_all(tree.join(".git/objects")).expect("mkdir");
        fs::write(tree.join(".git/HEAD"), b"ref: refs/heads/main\n").expect("write HEAD");
        fs::write(tree.join("run.sh"), b"#!/bin/sh\n").expect("write run.sh");
        set_mode(&tree.join("run.sh"), 0o755);
        fs::write(tree.join("notes.txt"), b"notes").expect("write notes");
        set_mode(&tree.join("notes.txt"), 0o640);
        set_mode(&tree.join(".git/objects"), 0o700);
        symlink("notes.txt", tree.join("readme")).expect("inner symlink");
        symlink(&outside, tree.join("escape")).expect("outer symlink");
        let _socket = UnixListener::bind(tree.join("agent.sock")).expect("socket");

        let set = ProvisionSet {
            dirs: vec![("/home/node".into(), 0o755)],
            items: vec![Item {
                dest: "/home/node/workspace".into(),
                mode: 0o755,
                source: Source::HostTree(tree.clone()),
            }],
            prompt_file: None,
        };
        let bytes = in_memory(&set).expect("archive");
        let entries = read_back(&bytes);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "home/node",
                "home/node/workspace",
                "home/node/workspace/.git",
                "home/node/workspace/.git/HEAD",
                "home/node/workspace/.git/objects",
                "home/node/workspace/escape",
                "home/node/workspace/notes.txt",
                "home/node/workspace/readme",
                "home/node/workspace/run.sh",
            ],
            "the socket is left out"
        );
        let map = by_path(&entries);
        assert_eq!(map["home/node/workspace/run.sh"].mode, 0o755);
        assert_eq!(map["home/node/workspace/notes.txt"].mode, 0o640);
        assert_eq!(map["home/node/workspace/.git/objects"].mode, 0o700);
        assert_eq!(
            map["home/node/workspace/readme"].kind,
            Kind::Link("notes.txt".into())
        );
        assert_eq!(
            map["home/node/workspace/escape"].kind,
            Kind::Link(outside.clone()),
            "a symlink out of the tree stays a link and is not followed"
        );
        assert!(
            !bytes
                .windows(b"must not be copied".len())
                .any(|w| w == b"must not be copied"),
            "the archive holds the outside file's content"
        );
        assert!(entries.iter().all(|e| e.uid == 1000 && e.gid == 1000));
    }

    #[test]
    fn a_symlinked_tree_root_is_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real-skill");
        fs::create_dir(&real).expect("mkdir");
        fs::write(real.join("SKILL.md"), b"# skill").expect("write");
        let link = tmp.path().join("skill-link");
        symlink(&real, &link).expect("symlink");
        let set = ProvisionSet {
            dirs: vec![],
            items: vec![Item {
                dest: "/home/node/.claude/skills/review".into(),
                mode: 0o755,
                source: Source::HostTree(link),
            }],
            prompt_file: None,
        };
        let entries = read_back(&in_memory(&set).expect("archive"));
        let map = by_path(&entries);
        assert_eq!(map["home/node/.claude/skills/review"].kind, Kind::Dir);
        assert_eq!(
            map["home/node/.claude/skills/review/SKILL.md"].kind,
            Kind::File(b"# skill".to_vec())
        );
    }

    #[test]
    fn long_paths_survive() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let deep = tmp.path().join("a".repeat(60)).join("b".repeat(60));
        fs::create_dir_all(&deep).expect("mkdir");
        fs::write(deep.join("c".repeat(90)), b"deep").expect("write");
        let set = ProvisionSet {
            dirs: vec![],
            items: vec![Item {
                dest: "/home/node/workspace".into(),
                mode: 0o755,
                source: Source::HostTree(tmp.path().to_path_buf()),
            }],
            prompt_file: None,
        };
        let entries = read_back(&in_memory(&set).expect("archive"));
        let expected = format!(
            "home/node/workspace/{}/{}/{}",
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(90)
        );
        assert!(
            entries.iter().any(|e| e.path == expected),
            "missing {expected}"
        );
    }

    #[test]
    fn destinations_must_be_plain_absolute_and_unique() {
        for dest in ["home/node/x", "/home/node/../etc/passwd", "/", ""] {
            let set = ProvisionSet {
                items: vec![Item {
                    dest: dest.into(),
                    mode: 0o600,
                    source: Source::Bytes(vec![]),
                }],
                ..ProvisionSet::default()
            };
            assert!(
                matches!(
                    in_memory(&set),
                    Err(ArchiveError::InvalidDestination { .. })
                ),
                "{dest} accepted"
            );
        }
        let set = ProvisionSet {
            dirs: vec![("/home/node/workspace".into(), 0o755)],
            items: vec![Item {
                dest: "/home/node/workspace".into(),
                mode: 0o755,
                source: Source::Bytes(vec![]),
            }],
            prompt_file: None,
        };
        assert!(matches!(
            in_memory(&set),
            Err(ArchiveError::DuplicateDestination { .. })
        ));
    }

    /// The streamed archive is the archive, in chunks no larger than
    /// [`CHUNK`]; its writer reports success.
    #[tokio::test]
    async fn the_stream_carries_the_same_archive_in_bounded_chunks() {
        use futures_util::TryStreamExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let tree = tmp.path().join("project");
        fs::create_dir_all(tree.join("src")).expect("mkdir");
        // Larger than a chunk, and not a multiple of one.
        let big: Vec<u8> = (0..CHUNK * 3 + 1234).map(|i| (i % 251) as u8).collect();
        fs::write(tree.join("src/big.bin"), &big).expect("write");
        fs::write(tree.join("small"), b"small").expect("write");
        let set = ProvisionSet {
            dirs: vec![("/home/node".into(), 0o755)],
            items: vec![Item {
                dest: "/home/node/skill".into(),
                mode: 0o755,
                source: Source::HostTree(tree),
            }],
            prompt_file: None,
        };
        let whole = in_memory(&set).expect("archive");
        let (chunks, writer) = stream(set);
        let chunks: Vec<Bytes> = chunks.try_collect().await.expect("stream");
        writer.await.expect("task").expect("written");
        assert!(
            chunks.iter().all(|c| c.len() <= CHUNK),
            "a chunk is too big"
        );
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        assert_eq!(chunks.concat(), whole);
        let entries = read_back(&whole);
        assert_eq!(
            by_path(&entries)["home/node/skill/src/big.bin"].kind,
            Kind::File(big)
        );
    }

    /// A file whose size is not what it was when it was opened (a file of
    /// `/proc` says 0 and has more) is an error, not a corrupt archive;
    /// so is a file that gives fewer bytes than its size.
    #[tokio::test]
    async fn a_file_that_changes_while_read_fails_the_archive_and_its_stream() {
        use futures_util::StreamExt;
        let set = ProvisionSet {
            items: vec![Item {
                dest: "/home/node/status".into(),
                mode: 0o600,
                source: Source::HostFile("/proc/self/status".into()),
            }],
            ..ProvisionSet::default()
        };
        let (chunks, writer) = stream(set);
        let chunks: Vec<io::Result<Bytes>> = chunks.collect().await;
        let err = writer
            .await
            .expect("task")
            .expect_err("a growing file archived");
        assert!(
            matches!(err, ArchiveError::ChangedWhileRead { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("`/proc/self/status` changed while"),
            "{err}"
        );
        assert!(
            chunks.last().is_some_and(Result::is_err),
            "the stream ends without an error, so an upload of it would succeed"
        );

        let mut short = Exact {
            inner: &b"abc"[..],
            remaining: 5,
            failure: None,
        };
        let mut out = Vec::new();
        assert!(io::copy(&mut short, &mut out).is_err());
        assert!(matches!(short.failure, Some(ReadFailure::Shrank)));
    }

    /// What was deleted between the selection and the copy is left out, as
    /// if deleted before; a directory that became a symlink is an error.
    #[test]
    fn a_workspace_copies_what_is_left_of_its_selection() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("project");
        fs::create_dir_all(root.join("build/out")).expect("mkdir");
        fs::create_dir_all(root.join("src")).expect("mkdir");
        fs::write(root.join("build/out/a.o"), b"object").expect("write");
        fs::write(root.join("src/main.rs"), b"fn main() {}").expect("write");
        fs::write(root.join("gone.txt"), b"gone").expect("write");
        let selected = workspace::select(&root, tmp.path()).expect("select");
        fs::remove_dir_all(root.join("build")).expect("rm build");
        fs::remove_file(root.join("gone.txt")).expect("rm gone");
        let set = |selected: &Workspace| ProvisionSet {
            items: vec![Item {
                dest: "/w".into(),
                mode: 0o755,
                source: Source::Workspace(std::sync::Arc::new(selected.clone())),
            }],
            ..ProvisionSet::default()
        };
        let entries = read_back(&in_memory(&set(&selected)).expect("archive"));
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["w", "w/src", "w/src/main.rs"]);

        fs::remove_dir_all(root.join("src")).expect("rm src");
        symlink(tmp.path(), root.join("src")).expect("symlink");
        let err = in_memory(&set(&selected)).expect_err("read through a symlink");
        assert!(
            matches!(
                err,
                ArchiveError::HostChanged {
                    expected: "directory",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_vanished_host_file_names_its_path() {
        let set = ProvisionSet {
            items: vec![Item {
                dest: "/home/node/.ssh/id_x".into(),
                mode: 0o600,
                source: Source::HostFile("/nonexistent/claude-bottle/key".into()),
            }],
            ..ProvisionSet::default()
        };
        let err = in_memory(&set).expect_err("missing file archived");
        assert!(
            err.to_string().contains("`/nonexistent/claude-bottle/key`"),
            "{err}"
        );
    }
}
