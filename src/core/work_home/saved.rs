//! The work of a bottle without `--cwd` (issue 8 §1): there is no host
//! repository to bring it into, so each git repository the agent made under
//! its workspace is saved as a bundle under the user's state directory
//! (`<state dir>/bundles/<time>-<pid>/<repository>.bundle`). This is the pure
//! part: reading the bottle's list of repositories (untrusted, so bounded
//! and checked), naming the bundles, and the summary.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

/// How many levels below the workspace a repository is looked for.
pub const REPO_DEPTH: usize = 4;
/// The most repositories saved from one bottle: with more, the work stays
/// in the kept bottle.
pub const REPO_LIMIT: usize = 100;
/// The most bytes of bundles taken out of one bottle, all repositories
/// together (each one's bundle is bounded by the engine's export as well).
pub const BUNDLES_SIZE_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
/// How long saving all the repositories of one bottle may take.
pub const SAVE_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// The longest repository path (relative to the workspace) read.
const REPO_PATH_LIMIT: usize = 1024;
/// The most bytes of the bottle's list of repositories that are read.
pub const REPOS_LISTING_LIMIT: usize = (REPO_LIMIT + 1) * (REPO_PATH_LIMIT + 8);
/// The longest bundle file name, before `.bundle` and a `-<n>` that makes
/// it unique.
const FILE_STEM_LIMIT: usize = 80;

/// The bottle's list of repositories could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReposError {
    #[error("the bottle's workspace holds more than {REPO_LIMIT} git repositories")]
    TooMany,
    #[error("the bottle's list of git repositories has an entry that is not one: {0:?}")]
    Malformed(String),
}

/// Reads what [`super::bottle::repos_command`] printed: entries ended by a
/// NUL, each `./.git` or `./<path>/.git`, with no empty, `.` or `..`
/// component and at most [`REPO_DEPTH`] components in `<path>`. Returns
/// the repositories' paths relative to the workspace (`.` for the
/// workspace itself), sorted.
pub fn parse_repos(listing: &str) -> Result<Vec<String>, ReposError> {
    let malformed = |entry: &str| ReposError::Malformed(entry.chars().take(120).collect());
    let mut repos = BTreeSet::new();
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        if repos.len() == REPO_LIMIT {
            return Err(ReposError::TooMany);
        }
        let repo = if entry == "./.git" {
            "."
        } else {
            let path = entry
                .strip_prefix("./")
                .and_then(|e| e.strip_suffix("/.git"))
                .ok_or_else(|| malformed(entry))?;
            let parts: Vec<&str> = path.split('/').collect();
            let sound = path.len() <= REPO_PATH_LIMIT
                && parts.len() <= REPO_DEPTH
                && parts.iter().all(|p| !matches!(*p, "" | "." | ".."));
            if !sound {
                return Err(malformed(entry));
            }
            path
        };
        repos.insert(repo.to_owned());
    }
    Ok(repos.into_iter().collect())
}

/// A file name for the bundle of each of `repos` (as [`parse_repos`] gives
/// them), unique among them: the path with every run of characters outside
/// `[A-Za-z0-9_.-]` (and every `/`) made one `-`, no `.` or `-` at its ends,
/// `workspace` for the workspace itself, and `-<n>` after a name taken.
pub fn bundle_file_names(repos: &[String]) -> Vec<String> {
    let mut taken = BTreeSet::new();
    repos
        .iter()
        .map(|repo| {
            let stem = if repo == "." {
                "workspace".to_owned()
            } else {
                let mut stem = String::new();
                for c in repo.chars() {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                        stem.push(c);
                    } else if !stem.ends_with('-') {
                        stem.push('-');
                    }
                }
                let stem: String = stem
                    .trim_matches(['.', '-'])
                    .chars()
                    .take(FILE_STEM_LIMIT)
                    .collect();
                if stem.is_empty() {
                    "repository".to_owned()
                } else {
                    stem
                }
            };
            let name = std::iter::once(format!("{stem}.bundle"))
                .chain((2u32..).map(|n| format!("{stem}-{n}.bundle")))
                .find(|name| !taken.contains(name))
                .unwrap_or_else(|| format!("{stem}.bundle"));
            taken.insert(name.clone());
            name
        })
        .collect()
}

/// One repository saved as a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedBundle {
    /// The repository, relative to the bottle's workspace (`.` for the
    /// workspace itself).
    pub repo: String,
    pub path: PathBuf,
    /// Its branches, as the bundle names them (after `refs/heads/`).
    pub branches: Vec<String>,
    /// The branch holding the uncommitted work, when there was any.
    pub uncommitted: Option<String>,
}

/// What was saved, shown on stderr after the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedBundles {
    pub bundles: Vec<SavedBundle>,
}

/// `path` as a shell word: as it is when that is safe, else single-quoted.
fn shell_word(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ',' | ':'));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

impl fmt::Display for SavedBundles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "saved the git repositories the agent made as bundles, with every branch:"
        )?;
        for saved in &self.bundles {
            let branches: Vec<String> = saved
                .branches
                .iter()
                .filter(|b| Some(*b) != saved.uncommitted.as_ref())
                .map(|b| format!("`{b}`"))
                .collect();
            let mut what = match branches.len() {
                0 => "no branch".to_owned(),
                _ => format!("branches {}", branches.join(", ")),
            };
            if let Some(uncommitted) = &saved.uncommitted {
                what.push_str(&format!("; the uncommitted work as branch `{uncommitted}`"));
            }
            let repo = match saved.repo.as_str() {
                "." => "the workspace".to_owned(),
                repo => format!("`{}`", repo.escape_debug()),
            };
            let path = shell_word(&saved.path);
            write!(
                f,
                "\n  {repo} ({what}):\n    {}\n    `git clone {path}`, or in a repository: `git fetch {path} 'refs/heads/*:refs/remotes/bottle/*'`",
                saved.path.display()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_of_repositories_is_read_checked_and_sorted() {
        let listing = "./b/c/.git\0./.git\0./a/.git\0./a/.git\0";
        assert_eq!(parse_repos(listing).unwrap(), [".", "a", "b/c"]);
        assert_eq!(parse_repos("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_repos("./we ird\nname/.git\0").unwrap(),
            ["we ird\nname"]
        );
    }

    #[test]
    fn a_list_that_is_not_ours_is_refused() {
        for bad in [
            "/etc/.git",
            "./../x/.git",
            "./a/../../x/.git",
            "./a//b/.git",
            "./a/./b/.git",
            "./a/b/c/d/e/.git",
            "./x",
            "x/.git",
            ".git",
        ] {
            assert!(
                matches!(parse_repos(bad), Err(ReposError::Malformed(_))),
                "{bad}"
            );
        }
        let long = format!("./{}/.git", "x".repeat(REPO_PATH_LIMIT + 1));
        assert!(matches!(parse_repos(&long), Err(ReposError::Malformed(_))));
        let many: String = (0..=REPO_LIMIT).map(|i| format!("./r{i}/.git\0")).collect();
        assert_eq!(parse_repos(&many), Err(ReposError::TooMany));
    }

    #[test]
    fn each_bundle_gets_a_file_name_of_its_own() {
        let repos: Vec<String> = [".", "api", "a/b", "a-b", "..x", "é", "x/é"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(
            bundle_file_names(&repos),
            [
                "workspace.bundle",
                "api.bundle",
                "a-b.bundle",
                "a-b-2.bundle",
                "x.bundle",
                "repository.bundle",
                "x-2.bundle",
            ]
        );
        let long = ["y".repeat(300)];
        assert_eq!(
            bundle_file_names(&long)[0],
            format!("{}.bundle", "y".repeat(FILE_STEM_LIMIT))
        );
    }

    #[test]
    fn the_summary_gives_each_bundle_its_path_and_how_to_use_it() {
        let summary = SavedBundles {
            bundles: vec![
                SavedBundle {
                    repo: "app".into(),
                    path: "/state/claude-bottle/bundles/1-2/app.bundle".into(),
                    branches: vec!["main".into(), "topic".into(), "uncommitted".into()],
                    uncommitted: Some("uncommitted".into()),
                },
                SavedBundle {
                    repo: ".".into(),
                    path: "/my state/lib.bundle".into(),
                    branches: vec!["main".into()],
                    uncommitted: None,
                },
            ],
        };
        insta::assert_snapshot!(summary.to_string(), @r"
        saved the git repositories the agent made as bundles, with every branch:
          `app` (branches `main`, `topic`; the uncommitted work as branch `uncommitted`):
            /state/claude-bottle/bundles/1-2/app.bundle
            `git clone /state/claude-bottle/bundles/1-2/app.bundle`, or in a repository: `git fetch /state/claude-bottle/bundles/1-2/app.bundle 'refs/heads/*:refs/remotes/bottle/*'`
          the workspace (branches `main`):
            /my state/lib.bundle
            `git clone '/my state/lib.bundle'`, or in a repository: `git fetch '/my state/lib.bundle' 'refs/heads/*:refs/remotes/bottle/*'`
        ");
    }
}
