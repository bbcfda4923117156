//! The commands run inside the bottle, as the agent's user, to get its work
//! out. They run in the agent's container, which the agent controls: what
//! they print is read through [`super::refs::BottleWork::parse`] and the
//! bundle is checked on the host, never trusted.
//!
//! The first ([`list_command`]) records the uncommitted work as one commit
//! (staged, unstaged, deletions and untracked files that are not ignored,
//! byte for byte, parent `HEAD`) using a temporary index, so the bottle's
//! own index and working tree stay as they are, and lists the branches. The
//! second ([`bundle_command`]) writes a bundle of the refs the host lacks.
//! Without `--cwd`, [`repos_command`] first finds the repositories the agent
//! made under its workspace; each then goes through the same two.

/// The ref in the bottle's repository that holds the uncommitted work's
/// commit while it is bundled.
pub const UNCOMMITTED_REF: &str = "refs/claude-bottle/export/uncommitted";

/// What the listing prints when the workspace is not a git work tree.
pub const NOT_A_REPO: &str = "not-a-repo";

/// Author and committer of the uncommitted work's commit.
const IDENTITY: &str = "claude-bottle";

const LIST_SCRIPT: &str = r#"
set -u
# The agent's hooks and fsmonitor stay out of the export.
git() { command git -c core.hooksPath=/dev/null -c core.fsmonitor=false "$@"; }
workspace=$1 ref=$2 message=$3 scope=$4
cd "$workspace" 2>/dev/null || { echo not-a-repo; exit 0; }
top=$(git rev-parse --show-toplevel 2>/dev/null) || { echo not-a-repo; exit 0; }
[ "$top" = "$(pwd -P)" ] || { echo not-a-repo; exit 0; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
GIT_INDEX_FILE=$tmp/index
export GIT_INDEX_FILE
head=$(git rev-parse -q --verify 'HEAD^{commit}') || head=
if [ -n "$head" ]; then
  git read-tree "$head" || exit 1
  base=$(git rev-parse "$head^{tree}") || exit 1
else
  base=$(git hash-object -t tree /dev/null) || exit 1
fi
git -c core.autocrlf=false -c core.safecrlf=false add -A -- ":(literal)$scope" >&2 || exit 1
tree=$(git write-tree) || exit 1
git update-ref -d "$ref" 2>/dev/null
if [ "$tree" != "$base" ]; then
  if [ -n "$head" ]; then
    commit=$(git commit-tree "$tree" -p "$head" -m "$message") || exit 1
  else
    commit=$(git commit-tree "$tree" -m "$message") || exit 1
  fi
  git update-ref "$ref" "$commit" || exit 1
  echo "uncommitted $commit"
fi
if branch=$(git symbolic-ref -q HEAD); then echo "head $branch"; fi
git for-each-ref --format='branch %(objectname) %(objecttype) %(refname)' refs/heads/
"#;

const BUNDLE_SCRIPT: &str = r#"
set -u
git() { command git -c core.hooksPath=/dev/null -c core.fsmonitor=false "$@"; }
workspace=$1
shift
cd "$workspace" || exit 1
n=$#
for arg in "$@"; do
  case $arg in
    ^*) git cat-file -e "${arg#^}^{commit}" 2>/dev/null || continue ;;
  esac
  set -- "$@" "$arg"
done
shift "$n"
git bundle create -q - "$@"
"#;

const REPOS_SCRIPT: &str = r#"
set -u
workspace=$1 depth=$2
# No workspace left: nothing in it to save.
cd "$workspace" 2>/dev/null || exit 0
find . -xdev -mindepth 1 -maxdepth "$((depth + 1))" -name .git -print0 -prune
"#;

const CHANGED_SCRIPT: &str = r#"
set -u
workspace=$1 since=$2
cd "$workspace" || exit 1
find . -xdev \( -type f -o -type l \) -newermt "@$since" -print0 |
  tar --null --no-recursion -cf - -T -
"#;

/// `sh -c` running `script` with `args` as `$1`...
fn sh(script: &str, args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "claude-bottle-export".to_owned(),
    ];
    argv.extend(args);
    argv
}

/// The environment of both commands: a fixed identity for the commit, no
/// pager, no prompt.
pub fn env() -> Vec<(String, String)> {
    [
        ("GIT_AUTHOR_NAME", IDENTITY),
        ("GIT_AUTHOR_EMAIL", "claude-bottle@localhost"),
        ("GIT_COMMITTER_NAME", IDENTITY),
        ("GIT_COMMITTER_EMAIL", "claude-bottle@localhost"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_PAGER", "cat"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Records the uncommitted work and lists the branches of the repository at
/// `workspace` (see the module docs); prints [`NOT_A_REPO`] when there is none.
/// The uncommitted work is that under `scope` (relative to `workspace`):
/// `.`, or the directory a sparse checkout holds, whose other paths are
/// absent, not deleted, and keep their `HEAD` content.
pub fn list_command(workspace: &str, scope: &str, bottle: &str) -> Vec<String> {
    sh(
        LIST_SCRIPT,
        [
            workspace.to_owned(),
            UNCOMMITTED_REF.to_owned(),
            format!("Uncommitted work in bottle {bottle}"),
            scope.to_owned(),
        ],
    )
}

/// Prints, each ended by a NUL, the `.git` entries (directories, or the
/// files of worktrees and submodules) of the repositories at most `depth`
/// levels below `workspace` (`./.git` for the workspace itself), without
/// looking inside a `.git`: the repositories the agent made in a workspace
/// that did not come from `--cwd`. Read through
/// [`super::saved::parse_repos`].
pub fn repos_command(workspace: &str, depth: usize) -> Vec<String> {
    sh(REPOS_SCRIPT, [workspace.to_owned(), depth.to_string()])
}

/// Prints a tar of the files (and symlinks) under `workspace` changed or
/// created since `since` (Unix seconds): the work of a bottle whose
/// workspace is no git repository.
pub fn changed_command(workspace: &str, since: u64) -> Vec<String> {
    sh(CHANGED_SCRIPT, [workspace.to_owned(), since.to_string()])
}

/// Prints a bundle of `refs` (full names in the bottle), without the
/// history of those of `bases` the bottle has (the host has them all).
pub fn bundle_command(
    workspace: &str,
    refs: &[String],
    bases: &[super::refs::ObjectId],
) -> Vec<String> {
    let mut args = vec![workspace.to_owned()];
    args.extend(refs.iter().cloned());
    args.extend(bases.iter().map(|b| format!("^{b}")));
    sh(BUNDLE_SCRIPT, args)
}

/// The commands run here against local repositories, with the host side
/// importing what they produce: the whole round trip without an engine.
#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::core::work_home::host::HostRepo;
    use crate::core::work_home::refs::{BottleWork, plan};
    use crate::test_git::git;

    fn run_bytes(argv: &[String]) -> Vec<u8> {
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(env())
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        out.stdout
    }

    fn run(argv: &[String]) -> String {
        String::from_utf8(run_bytes(argv)).unwrap()
    }

    const BINARY: &[u8] = &[0, 159, 146, 150, 255, 0, 13, 10, 13, 0];

    /// A "host" repository and a "bottle" copy of it in which an agent
    /// committed on `main`, made a branch, and left staged, unstaged,
    /// deleted, untracked, ignored and binary changes.
    fn worked_on() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("a.txt"), "a\n").unwrap();
        std::fs::write(host.join("gone.txt"), "gone\n").unwrap();
        std::fs::write(host.join(".gitignore"), "target/\n").unwrap();
        git(&host, &["init", "-q"]);
        git(&host, &["add", "."]);
        git(&host, &["commit", "-q", "-m", "host"]);
        let bottle = dir.path().join("bottle");
        git(dir.path(), &["clone", "-q", "host", "bottle"]);
        std::fs::write(bottle.join("a.txt"), "a\nb\n").unwrap();
        git(&bottle, &["commit", "-q", "-am", "agent on main"]);
        git(&bottle, &["checkout", "-q", "-b", "topic"]);
        std::fs::write(bottle.join("t.txt"), "t\n").unwrap();
        git(&bottle, &["add", "t.txt"]);
        git(&bottle, &["commit", "-q", "-m", "agent on topic"]);
        std::fs::write(bottle.join("staged.txt"), "staged\n").unwrap();
        git(&bottle, &["add", "staged.txt"]);
        std::fs::write(bottle.join("a.txt"), "a\nb\nunstaged\n").unwrap();
        std::fs::remove_file(bottle.join("gone.txt")).unwrap();
        std::fs::write(bottle.join("new.txt"), "untracked\n").unwrap();
        std::fs::write(bottle.join("blob.bin"), BINARY).unwrap();
        std::fs::create_dir(bottle.join("target")).unwrap();
        std::fs::write(bottle.join("target/out"), "ignored\n").unwrap();
        (dir, host, bottle)
    }

    #[test]
    fn every_commit_and_uncommitted_change_comes_home_and_the_bottle_is_left_as_it_was() {
        let (_dir, host, bottle) = worked_on();
        let index_before = std::fs::read(bottle.join(".git/index")).unwrap();
        let status_before = git(&bottle, &["status", "--porcelain"]);
        let host_before = git(&host, &["for-each-ref"]);

        let listing = run(&list_command(bottle.to_str().unwrap(), ".", "r"));
        assert_eq!(
            std::fs::read(bottle.join(".git/index")).unwrap(),
            index_before
        );
        assert_eq!(git(&bottle, &["status", "--porcelain"]), status_before);
        let work = BottleWork::parse(&listing).unwrap();
        let repo = HostRepo::discover(&host).unwrap();
        let branches = repo.branches().unwrap();
        let plan = plan("r", &work, &branches).unwrap();
        let refs: Vec<String> = plan.refs.iter().map(|r| r.source.in_bottle()).collect();
        let bundle = _dir.path().join("work.bundle");
        let bases: Vec<_> = branches.values().cloned().collect();
        let argv = bundle_command(bottle.to_str().unwrap(), &refs, &bases);
        std::fs::write(&bundle, run_bytes(&argv)).unwrap();
        let sources: Vec<Option<String>> = refs.into_iter().map(Some).collect();
        let written = repo.import(&plan, Some(&bundle), &sources).unwrap();

        let names: Vec<&str> = written.iter().map(|w| w.planned.short()).collect();
        assert_eq!(
            names,
            ["bottle/r/main", "bottle/r/topic", "bottle/r/uncommitted"]
        );
        let counts: Vec<u64> = written.iter().map(|w| w.new_commits).collect();
        assert_eq!(counts, [1, 2, 1], "the uncommitted ref adds one commit");
        assert_eq!(
            git(&host, &["log", "--format=%s", "bottle/r/uncommitted"]),
            "Uncommitted work in bottle r\nagent on topic\nagent on main\nhost"
        );
        assert_eq!(
            git(
                &host,
                &[
                    "diff",
                    "--name-status",
                    "bottle/r/topic",
                    "bottle/r/uncommitted"
                ]
            ),
            "M\ta.txt\nA\tblob.bin\nD\tgone.txt\nA\tnew.txt\nA\tstaged.txt"
        );
        let blob = Command::new("git")
            .args(["show", "bottle/r/uncommitted:blob.bin"])
            .current_dir(&host)
            .output()
            .unwrap();
        assert_eq!(blob.stdout, BINARY, "binary files come back byte for byte");
        assert_eq!(
            git(&host, &["show", "bottle/r/uncommitted:a.txt"]),
            "a\nb\nunstaged"
        );
        // The host: its branch, HEAD and working tree as they were, and
        // no staging ref left.
        let after = git(&host, &["for-each-ref"]);
        let after: Vec<&str> = after
            .lines()
            .filter(|l| !l.contains("\trefs/heads/bottle/r/"))
            .collect();
        assert_eq!(after.join("\n"), host_before);
        assert_eq!(git(&host, &["status", "--porcelain"]), "");
        assert_eq!(git(&host, &["symbolic-ref", "HEAD"]), "refs/heads/main");

        // A second session of the same name goes elsewhere and says so.
        let again = plan_again(&repo, &work);
        assert_eq!(again.taken.as_deref(), Some("bottle/r"));
        assert_eq!(again.namespace, "bottle/r-2");
    }

    fn plan_again(repo: &HostRepo, work: &BottleWork) -> crate::core::work_home::refs::ImportPlan {
        plan("r", work, &repo.branches().unwrap()).unwrap()
    }

    /// Without `--cwd`: the repositories the agent made are found (the
    /// workspace's own, nested ones, a submodule's `.git` file), none deeper
    /// than the depth and none inside a `.git`; each is bundled with its
    /// uncommitted work and rebuilt on the "host" under plain branch names,
    /// `HEAD` on the bottle's branch.
    #[test]
    fn the_repositories_of_a_workspace_are_found_and_each_is_bundled_whole() {
        use crate::core::work_home::refs::bundle_plan;
        use crate::core::work_home::saved::{REPO_DEPTH, parse_repos};
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let deep = ws.join("a/b/c/d/e");
        for repo in [ws.clone(), ws.join("app"), ws.join("x/y/lib"), deep.clone()] {
            std::fs::create_dir_all(&repo).unwrap();
            git(&repo, &["init", "-q"]);
        }
        std::fs::create_dir_all(ws.join("x/y/lib/.git/inside/.git")).unwrap();
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::write(ws.join("sub/.git"), "gitdir: ../.git/modules/sub\n").unwrap();
        let found = run(&repos_command(ws.to_str().unwrap(), REPO_DEPTH));
        assert_eq!(
            parse_repos(&found).unwrap(),
            [".", "app", "sub", "x/y/lib"],
            "{found:?}"
        );

        let app = ws.join("app");
        git(&app, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&app, &["checkout", "-q", "-b", "topic"]);
        git(&app, &["commit", "-q", "--allow-empty", "-m", "two"]);
        std::fs::write(app.join("wip.txt"), "wip\n").unwrap();
        let work = BottleWork::parse(&run(&list_command(app.to_str().unwrap(), ".", "r"))).unwrap();
        assert_eq!(work.head.as_deref(), Some("topic"));
        let plan = bundle_plan(&work);
        let sources: Vec<String> = plan.refs.iter().map(|r| r.source.in_bottle()).collect();
        let raw = dir.path().join("raw.bundle");
        std::fs::write(
            &raw,
            run_bytes(&bundle_command(app.to_str().unwrap(), &sources, &[])),
        )
        .unwrap();
        let scratch = HostRepo::init_bare(&dir.path().join("scratch"), &plan.refs[0].tip).unwrap();
        let wrapped: Vec<Option<String>> = sources.into_iter().map(Some).collect();
        scratch.write_refs(&plan, Some(&raw), &wrapped).unwrap();
        let saved = dir.path().join("app.bundle");
        scratch.bundle_branches(&saved, Some("topic")).unwrap();
        git(
            dir.path(),
            &["clone", "-q", saved.to_str().unwrap(), "clone"],
        );
        let clone = dir.path().join("clone");
        assert_eq!(git(&clone, &["branch", "--show-current"]), "topic");
        assert_eq!(
            git(&clone, &["log", "--format=%s", "origin/uncommitted"]),
            "Uncommitted work in bottle r\ntwo\none"
        );
        assert_eq!(git(&clone, &["show", "origin/uncommitted:wip.txt"]), "wip");
        assert_eq!(git(&clone, &["log", "--format=%s", "origin/main"]), "one");
    }

    /// In a sparse checkout (a `--cwd` below the top of a work tree), the
    /// uncommitted work is that of the directory checked out: the paths it
    /// does not have keep their content, and are not recorded as deleted.
    #[test]
    fn the_uncommitted_work_of_a_sparse_checkout_is_its_directory_s() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("r");
        std::fs::create_dir_all(repo.join("other")).unwrap();
        std::fs::create_dir_all(repo.join("sub dir")).unwrap();
        std::fs::write(repo.join("other/x.txt"), "x\n").unwrap();
        std::fs::write(repo.join("sub dir/y.txt"), "y\n").unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "one"]);
        git(&repo, &["sparse-checkout", "set", "--no-cone", "/sub dir/"]);
        assert!(!repo.join("other").exists());
        std::fs::write(repo.join("sub dir/y.txt"), "y\nmore\n").unwrap();
        std::fs::write(repo.join("sub dir/new.txt"), "new\n").unwrap();
        let work =
            BottleWork::parse(&run(&list_command(repo.to_str().unwrap(), "sub dir", "r"))).unwrap();
        let commit = work.uncommitted.unwrap();
        assert_eq!(
            git(&repo, &["diff", "--name-status", "HEAD", commit.as_str()]),
            "A\tsub dir/new.txt\nM\tsub dir/y.txt"
        );
    }

    #[test]
    fn a_clean_repository_has_no_uncommitted_commit_and_a_plain_directory_no_listing() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "r"]);
        let repo = dir.path().join("r");
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let work =
            BottleWork::parse(&run(&list_command(repo.to_str().unwrap(), ".", "r"))).unwrap();
        assert_eq!(work.uncommitted, None);
        assert_eq!(work.branches.len(), 1);
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        assert_eq!(
            run(&list_command(plain.to_str().unwrap(), ".", "r")).trim(),
            NOT_A_REPO
        );
    }
}
