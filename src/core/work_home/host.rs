//! The host repository, through the `git` CLI under a fixed configuration:
//! no system or global config, no hooks, no transport but the bundle file,
//! every object checked as it arrives. Only refs are written, each created
//! with an expected old value of "none", so nothing is ever overwritten; the
//! host's `HEAD`, index, working tree, other branches, config and hooks are
//! never touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::core::host_git;

use super::refs::{ImportPlan, ObjectId, PlannedRef, Source, Written};

/// Where fetched refs wait until they are checked and given their names.
const STAGING: &str = "refs/claude-bottle-import";

/// Configuration every `git` run here gets, whatever the user's or the
/// repository's: the bottle's repository is the agent's, so nothing of it
/// may run or decide anything on the host.
const SAFE_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.allow=never",
    // A bundle is read through the `file` transport.
    "protocol.file.allow=always",
    "transfer.fsckObjects=true",
    "fetch.fsckObjects=true",
    "fetch.writeCommitGraph=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "submodule.recurse=false",
];

/// A `git` run on the host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`git {args}` failed in `{repo}`: {detail}")]
pub struct HostGitError {
    pub repo: String,
    pub args: String,
    pub detail: String,
}

/// A git repository on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRepo {
    /// The work tree `--cwd` was in, as the user knows it.
    pub work_tree: PathBuf,
    /// The repository itself: for a linked worktree, the one it belongs to.
    pub git_dir: PathBuf,
}

/// `git` with the fixed configuration, kept from the caller's environment
/// and from the system's and the user's configuration.
fn git_command() -> Command {
    let mut command = host_git::command();
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    for setting in SAFE_CONFIG {
        command.args(["-c", setting]);
    }
    command
}

impl HostRepo {
    /// The repository `dir` is in, or `None` when it is not in a git work
    /// tree (or git cannot be run).
    pub fn discover(dir: &Path) -> Option<Self> {
        let out = git_command()
            .arg("-C")
            .arg(dir)
            .args([
                "rev-parse",
                "--path-format=absolute",
                "--show-toplevel",
                "--git-common-dir",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8(out.stdout).ok()?;
        let mut lines = text.lines();
        let (top, common) = (lines.next()?, lines.next()?);
        Some(Self {
            work_tree: PathBuf::from(top),
            git_dir: PathBuf::from(common),
        })
    }

    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String, HostGitError> {
        let failed = |detail: String| HostGitError {
            repo: self.git_dir.display().to_string(),
            args: args.join(" "),
            detail,
        };
        let mut command = git_command();
        command.arg("--git-dir").arg(&self.git_dir).args(args);
        let out = host_git::output(&mut command, input.map(|i| i.as_bytes().to_vec()))
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(failed(
                stderr.trim().lines().take(5).collect::<Vec<_>>().join("; "),
            ));
        }
        String::from_utf8(out.stdout).map_err(|e| failed(e.to_string()))
    }

    /// The host's branches (names after `refs/heads/`) and their tips.
    pub fn branches(&self) -> Result<BTreeMap<String, ObjectId>, HostGitError> {
        let out = self.run(
            &[
                "for-each-ref",
                "--format=%(objectname) %(refname)",
                "refs/heads/",
            ],
            None,
        )?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let (oid, name) = line.split_once(' ')?;
                Some((
                    name.strip_prefix("refs/heads/")?.to_owned(),
                    ObjectId::parse(oid)?,
                ))
            })
            .collect())
    }

    /// The branch the host's `HEAD` is on, if any.
    fn head_branch(&self) -> Option<String> {
        self.run(&["symbolic-ref", "-q", "--short", "HEAD"], None)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Which of `oids` the host already has as commits.
    pub fn commits_present(&self, oids: &[&ObjectId]) -> Result<Vec<bool>, HostGitError> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let input: String = oids.iter().map(|o| format!("{o}\n")).collect();
        let out = self.run(
            &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            Some(&input),
        )?;
        let lines: Vec<&str> = out.lines().collect();
        Ok(oids
            .iter()
            .enumerate()
            .map(|(i, oid)| lines.get(i) == Some(&format!("{oid} commit").as_str()))
            .collect())
    }

    /// Writes the refs of `plan`: those whose commits `bundle` carries are
    /// fetched from it first (into a staging namespace, checked against the
    /// tips the bottle listed), then all are created at once, each only if
    /// it does not exist. `bundle_refs` gives, for each planned ref, the ref
    /// name the bundle carries it under, or `None` when the host already has
    /// its commit. The staging refs are removed whatever happens.
    pub fn import(
        &self,
        plan: &ImportPlan,
        bundle: Option<&Path>,
        bundle_refs: &[Option<String>],
    ) -> Result<Vec<Written>, HostGitError> {
        let host_branches = self.branches()?;
        self.write_refs(plan, bundle, bundle_refs)?;
        let head = self.head_branch();
        plan.refs
            .iter()
            .map(|planned| {
                // The uncommitted work's ref adds one commit to the
                // bottle's `HEAD`, whose own commits its branch counts.
                let parents = format!("{}^@", planned.tip);
                let mut args = vec!["rev-list", "--count", planned.tip.as_str(), "--not"];
                if planned.source == Source::Uncommitted {
                    args.push(&parents);
                }
                args.extend(["--exclude=bottle/*", "--branches"]);
                let new_commits = self.run(&args, None)?.trim().parse().unwrap_or(0);
                let compare_with = match &planned.source {
                    Source::Uncommitted => None,
                    Source::Branch(name) if host_branches.contains_key(name) => Some(name.clone()),
                    Source::Branch(_) => head.clone(),
                };
                Ok(Written {
                    planned: planned.clone(),
                    new_commits,
                    compare_with,
                })
            })
            .collect()
    }

    /// The writing part of [`Self::import`], without the summary.
    pub fn write_refs(
        &self,
        plan: &ImportPlan,
        bundle: Option<&Path>,
        bundle_refs: &[Option<String>],
    ) -> Result<(), HostGitError> {
        let staging = format!("{STAGING}/{}", std::process::id());
        let outcome = self.fetch_and_create(plan, bundle, bundle_refs, &staging);
        // Whatever the outcome, the staging refs go.
        if let Ok(staged) = self.run(
            &["for-each-ref", "--format=delete %(refname)", &staging],
            None,
        ) && !staged.is_empty()
        {
            let _ = self.run(&["update-ref", "--stdin"], Some(&staged));
        }
        outcome
    }

    /// A new, empty bare repository at `dir` (which must not exist or be
    /// empty), made from no template, for objects named like `like`
    /// (SHA-1 or SHA-256).
    pub fn init_bare(dir: &Path, like: &ObjectId) -> Result<Self, HostGitError> {
        let mut command = git_command();
        command.args([
            "-c",
            "init.defaultBranch=main",
            "init",
            "-q",
            "--bare",
            "--template=",
        ]);
        // SHA-1 is the default, and the only format a git before 2.29 knows.
        if like.as_str().len() == 64 {
            command.arg("--object-format=sha256");
        }
        let out = command
            .arg(dir)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| e.to_string())
            .and_then(|out| {
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
                }
            });
        out.map_err(|detail| HostGitError {
            repo: dir.display().to_string(),
            args: "init --bare".into(),
            detail,
        })?;
        Ok(Self {
            work_tree: dir.to_path_buf(),
            git_dir: dir.to_path_buf(),
        })
    }

    /// Writes to `dest` a bundle of every branch, with `HEAD` on the branch
    /// `head` when one is given (so `git clone` of it checks that out).
    pub fn bundle_branches(&self, dest: &Path, head: Option<&str>) -> Result<(), HostGitError> {
        let dest = dest.to_string_lossy();
        let mut args = vec!["bundle", "create", "-q", &dest, "--branches"];
        let head_ref = head.map(|h| format!("refs/heads/{h}"));
        if let Some(head_ref) = &head_ref {
            self.run(&["symbolic-ref", "HEAD", head_ref], None)?;
            args.push("HEAD");
        }
        self.run(&args, None).map(drop)
    }

    fn fetch_and_create(
        &self,
        plan: &ImportPlan,
        bundle: Option<&Path>,
        bundle_refs: &[Option<String>],
        staging: &str,
    ) -> Result<(), HostGitError> {
        let wanted: Vec<(usize, &PlannedRef, &String)> = plan
            .refs
            .iter()
            .zip(bundle_refs)
            .enumerate()
            .filter_map(|(i, (planned, source))| Some((i, planned, source.as_ref()?)))
            .collect();
        if let Some(bundle) = bundle
            && !wanted.is_empty()
        {
            let bundle = bundle.to_string_lossy();
            let mut args: Vec<String> = [
                "fetch",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--no-auto-gc",
                "--quiet",
                "--",
                &bundle,
            ]
            .map(str::to_owned)
            .to_vec();
            args.extend(
                wanted
                    .iter()
                    .map(|(i, _, source)| format!("{source}:{staging}/{i}")),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.run(&args, None)?;
            // The bundle's refs are the agent's word: each must be the tip
            // the listing named.
            for (i, planned, source) in &wanted {
                let got = self.run(&["rev-parse", "--verify", &format!("{staging}/{i}")], None)?;
                if got.trim() != planned.tip.as_str() {
                    return Err(HostGitError {
                        repo: self.git_dir.display().to_string(),
                        args: "fetch".into(),
                        detail: format!(
                            "the bundle's `{source}` is {}, not the {} the bottle listed",
                            got.trim(),
                            planned.tip
                        ),
                    });
                }
            }
        }
        let tips: Vec<&ObjectId> = plan.refs.iter().map(|r| &r.tip).collect();
        let present = self.commits_present(&tips)?;
        if let Some(missing) = plan.refs.iter().zip(&present).find(|(_, p)| !**p) {
            return Err(HostGitError {
                repo: self.git_dir.display().to_string(),
                args: "cat-file".into(),
                detail: format!(
                    "commit {} of `{}` did not arrive",
                    missing.0.tip,
                    missing.0.short()
                ),
            });
        }
        let mut transaction = String::from("start\n");
        for planned in &plan.refs {
            // `create` fails when the ref exists: nothing is overwritten.
            transaction.push_str(&format!("create {} {}\n", planned.target, planned.tip));
        }
        transaction.push_str("commit\n");
        self.run(&["update-ref", "--stdin"], Some(&transaction))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::work_home::refs::{BottleWork, plan};
    use crate::test_git::git;

    #[test]
    fn a_plain_directory_is_no_repository() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(HostRepo::discover(dir.path()), None);
    }

    #[test]
    fn a_linked_worktree_belongs_to_its_repository() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main");
        std::fs::create_dir(&main).unwrap();
        git(&main, &["init", "-q"]);
        git(&main, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&main, &["worktree", "add", "-q", "../linked"]);
        let repo = HostRepo::discover(&dir.path().join("linked")).unwrap();
        assert_eq!(repo.git_dir, main.join(".git").canonicalize().unwrap());
        assert_eq!(
            repo.work_tree,
            dir.path().join("linked").canonicalize().unwrap()
        );
    }

    #[test]
    fn a_scratch_repository_takes_the_object_format_of_the_bottle_s() {
        let dir = tempfile::tempdir().unwrap();
        for (name, oid, format) in [
            ("one", "a".repeat(40), "sha1"),
            ("two", "b".repeat(64), "sha256"),
        ] {
            let path = dir.path().join(name);
            let repo = HostRepo::init_bare(&path, &ObjectId::parse(&oid).unwrap()).unwrap();
            assert_eq!(repo.git_dir, path);
            assert_eq!(git(&path, &["rev-parse", "--show-object-format"]), format);
            assert_eq!(git(&path, &["rev-parse", "--is-bare-repository"]), "true");
        }
    }

    /// A bundle that says a ref is at another commit than the listing did
    /// is refused, and leaves no ref behind.
    #[test]
    fn a_bundle_that_disagrees_with_the_listing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (bottle, host) = (dir.path().join("bottle"), dir.path().join("host"));
        std::fs::create_dir(&bottle).unwrap();
        git(&bottle, &["init", "-q"]);
        git(&bottle, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&bottle, &["commit", "-q", "--allow-empty", "-m", "two"]);
        let one = git(&bottle, &["rev-parse", "HEAD~1"]);
        git(dir.path(), &["init", "-q", "host"]);
        let bundle = dir.path().join("b.bundle");
        git(
            &bottle,
            &["bundle", "create", "-q", bundle.to_str().unwrap(), "main"],
        );
        let listing = format!("branch {one} commit refs/heads/main\n");
        let work = BottleWork::parse(&listing).unwrap();
        let repo = HostRepo::discover(&host).unwrap();
        let plan = plan("b", &work, &repo.branches().unwrap()).unwrap();
        let err = repo
            .import(&plan, Some(&bundle), &[Some("refs/heads/main".into())])
            .unwrap_err();
        assert!(err.detail.contains("not the"), "{err}");
        assert_eq!(git(&host, &["for-each-ref"]), "");
    }
}
