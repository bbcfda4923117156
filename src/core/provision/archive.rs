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
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tar::{Builder, EntryType, Header};

use crate::core::provision::{CONTAINER_GID, CONTAINER_UID, Item, ProvisionSet, Source};

/// Permission bits kept from host files; set-id bits mean nothing for uid 1000.
const PERMISSION_BITS: u32 = 0o777;

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

    #[error("could not write the provisioning archive: {0}")]
    Write(#[source] io::Error),
}

/// Who owns every entry of an archive once it is in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ownership {
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

/// The whole set as one tar archive in memory, owned by the agent's user.
pub fn tar_archive(set: &ProvisionSet) -> Result<Vec<u8>, ArchiveError> {
    write_archive(&[(set, Ownership::AGENT)], Vec::new())
}

/// One file at `dest` holding `text`, owned by root and readable by all: the
/// proxy's config.
pub(crate) fn root_file_archive(dest: &str, text: &str) -> Result<Vec<u8>, ArchiveError> {
    write_archive(&[(&root_file(dest, text), Ownership::ROOT)], Vec::new())
}

/// [`tar_archive`] of `set` with one file more at `dest` holding `text`,
/// owned by root and readable by all, so the agent's user cannot change it
/// (the owner record of a claimed warm bottle): one upload for both.
pub(crate) fn tar_archive_with_root_file(
    set: &ProvisionSet,
    dest: &str,
    text: &str,
) -> Result<Vec<u8>, ArchiveError> {
    write_archive(
        &[
            (set, Ownership::AGENT),
            (&root_file(dest, text), Ownership::ROOT),
        ],
        Vec::new(),
    )
}

fn root_file(dest: &str, text: &str) -> ProvisionSet {
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

/// Streams the archive of each set, with its owner, into `out` and returns it.
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
        writer.set(set, now)?;
    }
    writer.builder.into_inner().map_err(ArchiveError::Write)
}

impl<W: Write> ArchiveWriter<W> {
    /// The set's directories (parents first), then its items.
    fn set(&mut self, set: &ProvisionSet, now: u64) -> Result<(), ArchiveError> {
        let mut dirs: Vec<(PathBuf, u32)> = Vec::with_capacity(set.dirs.len());
        for (dest, mode) in &set.dirs {
            dirs.push((archive_path(dest)?, *mode));
        }
        // Parents before children, whatever order the set listed them in.
        dirs.sort_by_key(|(path, _)| path.components().count());
        for (path, mode) in &dirs {
            self.claim(path)?;
            self.directory(path, *mode, now)?;
        }
        for item in &set.items {
            let path = archive_path(&item.dest)?;
            self.claim(&path)?;
            match &item.source {
                Source::Bytes(bytes) => self.file(&path, item.mode, now, bytes)?,
                Source::HostFile(host) => self.host_file(&path, item.mode, host)?,
                Source::HostTree(host) => self.host_tree(&path, item.mode, host)?,
            }
        }
        Ok(())
    }
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
        let bytes = read_host_file(host)?;
        self.file(path, mode, mtime_of(&metadata), &bytes)
    }

    /// The tree's top directory takes the set's mode (symlinks to it followed);
    /// everything below keeps the host's permission bits.
    fn host_tree(&mut self, path: &Path, mode: u32, host: &Path) -> Result<(), ArchiveError> {
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
        self.directory(path, mode, mtime_of(&metadata))?;
        self.tree_contents(path, host)
    }

    fn tree_contents(&mut self, path: &Path, host_dir: &Path) -> Result<(), ArchiveError> {
        let read_error = |source| ArchiveError::ReadHost {
            path: host_dir.to_path_buf(),
            source,
        };
        let mut entries = fs::read_dir(host_dir)
            .map_err(read_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        // Stable archives whatever order the filesystem lists entries in.
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let host = entry.path();
            let inner = path.join(entry.file_name());
            let metadata =
                fs::symlink_metadata(&host).map_err(|source| ArchiveError::ReadHost {
                    path: host.clone(),
                    source,
                })?;
            let mode = metadata.permissions().mode() & PERMISSION_BITS;
            let file_type = metadata.file_type();
            if file_type.is_symlink() {
                let target = fs::read_link(&host)
                    .map_err(|source| ArchiveError::ReadHost { path: host, source })?;
                let mut header = header(
                    self.owner,
                    EntryType::Symlink,
                    0o777,
                    mtime_of(&metadata),
                    0,
                );
                self.builder
                    .append_link(&mut header, &inner, &target)
                    .map_err(ArchiveError::Write)?;
            } else if file_type.is_dir() {
                self.directory(&inner, mode, mtime_of(&metadata))?;
                self.tree_contents(&inner, &host)?;
            } else if file_type.is_file() {
                let bytes = read_host_file(&host)?;
                self.file(&inner, mode, mtime_of(&metadata), &bytes)?;
            } else {
                tracing::debug!(path = %host.display(), "not copied into the bottle: not a file, directory or symlink");
            }
        }
        Ok(())
    }
}

/// Read whole, so the size in the header is the size written even if the
/// file changes meanwhile.
fn read_host_file(host: &Path) -> Result<Vec<u8>, ArchiveError> {
    fs::read(host).map_err(|source| ArchiveError::ReadHost {
        path: host.to_path_buf(),
        source,
    })
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
        let entries = read_back(&tar_archive(&set).expect("archive"));
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
    fn a_root_file_after_the_set_is_owned_by_root_and_the_set_by_the_agent() {
        let set = ProvisionSet {
            dirs: vec![("/home/node".into(), 0o755)],
            items: vec![Item {
                dest: "/home/node/.claude-bottle-prompt.txt".into(),
                mode: 0o600,
                source: Source::Bytes(b"be kind".to_vec()),
            }],
            prompt_file: None,
        };
        let bytes = tar_archive_with_root_file(&set, "/.owner", "pid=1\n").expect("archive");
        let entries = read_back(&bytes);
        let owners: Vec<(&str, u64, u64, u32)> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.uid, e.gid, e.mode))
            .collect();
        assert_eq!(
            owners,
            [
                ("home/node", 1000, 1000, 0o755),
                ("home/node/.claude-bottle-prompt.txt", 1000, 1000, 0o600),
                (".owner", 0, 0, 0o644),
            ]
        );
        // A destination in both is refused, as within one set.
        let clash = tar_archive_with_root_file(&set, "/home/node/.claude-bottle-prompt.txt", "x");
        assert!(matches!(
            clash,
            Err(ArchiveError::DuplicateDestination { .. })
        ));
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
        let bytes = tar_archive(&set).expect("archive");
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
        let entries = read_back(&tar_archive(&set).expect("archive"));
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
        let entries = read_back(&tar_archive(&set).expect("archive"));
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
                    tar_archive(&set),
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
            tar_archive(&set),
            Err(ArchiveError::DuplicateDestination { .. })
        ));
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
        let err = tar_archive(&set).expect_err("missing file archived");
        assert!(
            err.to_string().contains("`/nonexistent/claude-bottle/key`"),
            "{err}"
        );
    }
}
