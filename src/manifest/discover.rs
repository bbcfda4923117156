//! Finding the manifest (SPEC §3), first match wins:
//! 1. `--manifest PATH`
//! 2. `$CLAUDE_BOTTLE_MANIFEST`
//! 3. `./claude-bottle.json`
//! 4. `$XDG_CONFIG_HOME/claude-bottle/claude-bottle.json` (XDG defaults to `~/.config`)
//! 5. the embedded default manifest
//!
//! A path named explicitly (1 or 2) must exist: a typo there must not quietly
//! run the agent under another policy.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::error::NamedBy;
use super::validate;
use super::wire::{self, ParseError};
use super::{Manifest, ManifestError};

/// The embedded default manifest (SPEC §8): one agent `claude` in bottle
/// `default`, allowed the hosts Claude Code needs.
pub const DEFAULT_MANIFEST_JSON: &str = include_str!("default.json");

/// The environment variable naming a manifest path.
pub const MANIFEST_ENV_VAR: &str = "CLAUDE_BOTTLE_MANIFEST";
/// The manifest's file name, in the working directory and the config directory.
pub const MANIFEST_FILE_NAME: &str = "claude-bottle.json";

/// Where a manifest came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    Embedded,
    File(PathBuf),
}

impl fmt::Display for ManifestSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded default"),
            Self::File(path) => write!(f, "`{}`", path.display()),
        }
    }
}

/// The inputs of discovery, injectable so it can be tested without touching
/// the process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// `--manifest PATH`.
    pub explicit: Option<PathBuf>,
    /// The value of `$CLAUDE_BOTTLE_MANIFEST`.
    pub env_manifest: Option<OsString>,
    /// The working directory; relative paths are resolved against it.
    pub cwd: PathBuf,
    /// The value of `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<OsString>,
    /// The user's home directory, for the `~/.config` default.
    pub home: Option<PathBuf>,
}

impl Discovery {
    /// Discovery as the process sees it.
    pub fn from_process(explicit: Option<&Path>) -> Result<Self, ManifestError> {
        let cwd = std::env::current_dir().map_err(|source| ManifestError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        Ok(Self {
            explicit: explicit.map(Path::to_path_buf),
            env_manifest: std::env::var_os(MANIFEST_ENV_VAR),
            cwd,
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME"),
            home: std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(PathBuf::from),
        })
    }

    /// The manifest to use, without reading it.
    pub fn locate(&self) -> Result<ManifestSource, ManifestError> {
        if let Some(path) = &self.explicit {
            return self.must_exist(path, NamedBy::Flag);
        }
        // An empty variable counts as unset, as shells make it easy to leave one.
        if let Some(path) = self.env_manifest.as_ref().filter(|p| !p.is_empty()) {
            return self.must_exist(Path::new(path), NamedBy::EnvVar);
        }
        for candidate in self.search_path() {
            if exists(&candidate)? {
                return Ok(ManifestSource::File(candidate));
            }
        }
        Ok(ManifestSource::Embedded)
    }

    /// Locates, reads and validates the manifest.
    pub fn load(&self) -> Result<Manifest, ManifestError> {
        let source = self.locate()?;
        tracing::debug!(manifest = %source, "loading manifest");
        match &source {
            ManifestSource::Embedded => load_from_str(DEFAULT_MANIFEST_JSON, source),
            ManifestSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
                    path: path.clone(),
                    source,
                })?;
                load_from_str(&text, source)
            }
        }
    }

    /// The implicit locations, in order: the working directory, then the
    /// config directory.
    fn search_path(&self) -> Vec<PathBuf> {
        let mut candidates = vec![self.cwd.join(MANIFEST_FILE_NAME)];
        // XDG: a relative (or empty) XDG_CONFIG_HOME is invalid and ignored.
        let config_home = self
            .xdg_config_home
            .as_ref()
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
            .or_else(|| self.home.as_ref().map(|home| home.join(".config")));
        if let Some(config_home) = config_home {
            candidates.push(config_home.join("claude-bottle").join(MANIFEST_FILE_NAME));
        }
        candidates
    }

    fn must_exist(&self, path: &Path, named_by: NamedBy) -> Result<ManifestSource, ManifestError> {
        let path = self.cwd.join(path);
        if exists(&path)? {
            Ok(ManifestSource::File(path))
        } else {
            Err(ManifestError::NotFound { path, named_by })
        }
    }
}

/// Whether `path` exists; a failure to tell (permissions) is an error rather
/// than a reason to move on to the next location.
fn exists(path: &Path) -> Result<bool, ManifestError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ManifestError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Finds, reads and validates the manifest the process should use.
pub fn load(explicit: Option<&Path>) -> Result<Manifest, ManifestError> {
    Discovery::from_process(explicit)?.load()
}

/// Parses and validates manifest text; `source` labels it in messages.
pub fn load_from_str(text: &str, source: ManifestSource) -> Result<Manifest, ManifestError> {
    let wire = wire::parse(text).map_err(|err| match err {
        ParseError::Syntax {
            line,
            column,
            message,
        } => ManifestError::Syntax {
            origin: source.clone(),
            line,
            column,
            message,
        },
        ParseError::Shape(problem) => ManifestError::Invalid {
            origin: source.clone(),
            problems: vec![problem],
        },
    })?;
    validate::manifest(wire, source.clone()).map_err(|problems| ManifestError::Invalid {
        origin: source,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(dir: &Path) -> Discovery {
        Discovery {
            cwd: dir.join("work"),
            home: Some(dir.join("home")),
            ..Discovery::default()
        }
    }

    fn write(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, DEFAULT_MANIFEST_JSON).unwrap();
    }

    #[test]
    fn falls_back_to_the_embedded_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            discovery(dir.path()).locate().unwrap(),
            ManifestSource::Embedded
        );
        let manifest = discovery(dir.path()).load().unwrap();
        assert_eq!(manifest.source, ManifestSource::Embedded);
    }

    #[test]
    fn first_match_wins_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = discovery(dir.path());
        let xdg_default = dir
            .path()
            .join("home/.config/claude-bottle/claude-bottle.json");
        write(&xdg_default);
        assert_eq!(d.locate().unwrap(), ManifestSource::File(xdg_default));

        let xdg = dir.path().join("xdg/claude-bottle/claude-bottle.json");
        write(&xdg);
        d.xdg_config_home = Some(dir.path().join("xdg").into());
        assert_eq!(d.locate().unwrap(), ManifestSource::File(xdg));

        let local = dir.path().join("work/claude-bottle.json");
        write(&local);
        assert_eq!(d.locate().unwrap(), ManifestSource::File(local));

        let from_env = dir.path().join("env.json");
        write(&from_env);
        d.env_manifest = Some(from_env.clone().into());
        assert_eq!(d.locate().unwrap(), ManifestSource::File(from_env));

        let flag = dir.path().join("flag.json");
        write(&flag);
        d.explicit = Some(flag.clone());
        assert_eq!(d.locate().unwrap(), ManifestSource::File(flag));
    }

    #[test]
    fn relative_or_empty_xdg_config_home_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let xdg_default = dir
            .path()
            .join("home/.config/claude-bottle/claude-bottle.json");
        write(&xdg_default);
        for xdg in ["", "relative/dir"] {
            let d = Discovery {
                xdg_config_home: Some(xdg.into()),
                ..discovery(dir.path())
            };
            assert_eq!(
                d.locate().unwrap(),
                ManifestSource::File(xdg_default.clone())
            );
        }
    }

    #[test]
    fn explicit_paths_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("work/claude-bottle.json"));
        let d = Discovery {
            explicit: Some("missing.json".into()),
            ..discovery(dir.path())
        };
        let err = d.locate().unwrap_err();
        assert!(
            matches!(&err, ManifestError::NotFound { path, named_by: NamedBy::Flag } if *path == dir.path().join("work/missing.json")),
            "{err:?}"
        );
        let d = Discovery {
            env_manifest: Some(dir.path().join("nope.json").into()),
            ..discovery(dir.path())
        };
        let err = d.locate().unwrap_err().to_string();
        assert!(
            err.contains("named by $CLAUDE_BOTTLE_MANIFEST does not exist"),
            "{err}"
        );
        assert!(err.contains("nope.json`"), "{err}");
    }

    #[test]
    fn an_empty_env_var_counts_as_unset() {
        let dir = tempfile::tempdir().unwrap();
        let d = Discovery {
            env_manifest: Some(OsString::new()),
            ..discovery(dir.path())
        };
        assert_eq!(d.locate().unwrap(), ManifestSource::Embedded);
    }

    #[test]
    fn an_unreadable_manifest_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: it exists but cannot be read.
        std::fs::create_dir_all(dir.path().join("work/claude-bottle.json")).unwrap();
        let err = discovery(dir.path()).load().unwrap_err();
        assert!(matches!(err, ManifestError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("cannot read manifest `"),
            "{err}"
        );
    }
}
