//! The one record of "this bottle holds work that did not come home": a
//! file per kept bottle under the user's state directory
//! (`$XDG_STATE_HOME/claude-bottle/kept/`, default
//! `~/.local/state/claude-bottle/kept/`). An engine cannot relabel a
//! container after it is made, so the fact lives beside it: `list` shows
//! it, and `cleanup` leaves the bottle alone unless forced.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A bottle kept because its work did not come home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptWork {
    /// The bottle's name (its agent container's).
    pub container: String,
    /// The engine's handle for it, so a later bottle of the same name is
    /// not mistaken for it.
    pub id: String,
    /// The directory the work was to come home to.
    pub home: String,
    /// Why it did not.
    pub reason: String,
}

/// The user's state directory for claude-bottle.
pub fn state_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| std::env::home_dir().map(|h| h.join(".local/state")))?;
    Some(base.join("claude-bottle"))
}

fn kept_dir() -> Option<PathBuf> {
    state_dir().map(|d| d.join("kept"))
}

/// A container name is `[A-Za-z0-9][A-Za-z0-9_.-]*`: safe as a file name.
fn file_of(dir: &Path, container: &str) -> Option<PathBuf> {
    let safe = !container.is_empty()
        && !container.starts_with('.')
        && container
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    safe.then(|| dir.join(format!("{container}.json")))
}

impl KeptWork {
    /// Records it; returns the record's path.
    pub fn record(&self) -> std::io::Result<PathBuf> {
        let dir = kept_dir().ok_or_else(|| std::io::Error::other("no home directory"))?;
        let path = file_of(&dir, &self.container)
            .ok_or_else(|| std::io::Error::other("not a container name"))?;
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)?;
        Ok(path)
    }

    /// Every record; one that cannot be read is left out (and said at -v).
    pub fn all() -> Vec<Self> {
        let Some(dir) = kept_dir() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let read = std::fs::read(e.path())
                    .map_err(|err| err.to_string())
                    .and_then(|b| {
                        serde_json::from_slice::<Self>(&b).map_err(|err| err.to_string())
                    });
                read.map_err(|err| tracing::debug!("ignoring {}: {err}", e.path().display()))
                    .ok()
            })
            .collect()
    }

    /// Whether this record is of the bottle `container` with handle `id`
    /// (an ID or a prefix of one, as engines shorten them).
    pub fn is_of(&self, container: &str, id: Option<&str>) -> bool {
        self.container == container
            && id.is_none_or(|id| {
                !id.is_empty() && (self.id.starts_with(id) || id.starts_with(&self.id))
            })
    }

    /// Drops the record (the bottle is gone).
    pub fn forget(&self) {
        if let Some(path) = kept_dir().and_then(|d| file_of(&d, &self.container)) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_container_names_become_file_names() {
        let dir = Path::new("/s");
        assert_eq!(
            file_of(dir, "claude-bottle-r-2"),
            Some(PathBuf::from("/s/claude-bottle-r-2.json"))
        );
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert_eq!(file_of(dir, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_record_is_of_one_container_by_name_and_id() {
        let kept = KeptWork {
            container: "claude-bottle-r".into(),
            id: "abcdef123456".into(),
            home: "/src".into(),
            reason: "r".into(),
        };
        assert!(kept.is_of("claude-bottle-r", Some("abcdef")));
        assert!(kept.is_of("claude-bottle-r", None));
        assert!(!kept.is_of("claude-bottle-r", Some("fff")));
        assert!(!kept.is_of("claude-bottle-r-2", Some("abcdef")));
    }
}
