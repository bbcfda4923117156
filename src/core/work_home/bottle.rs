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

/// The ref in the bottle's repository that holds the uncommitted work's
/// commit while it is bundled.
pub const UNCOMMITTED_REF: &str = "refs/claude-bottle/export/uncommitted";

/// What the listing prints when the workspace is not a git work tree.
pub const NOT_A_REPO: &str = "not-a-repo";

/// Author and committer of the uncommitted work's commit.
const IDENTITY: &str = "claude-bottle";

const LIST_SCRIPT: &str = r#"
set -u
workspace=$1 ref=$2 message=$3
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
git -c core.autocrlf=false -c core.safecrlf=false add -A -- . >&2 || exit 1
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
git for-each-ref --format='branch %(objectname) %(objecttype) %(refname)' refs/heads/
"#;

const BUNDLE_SCRIPT: &str = r#"
set -u
workspace=$1 bundle=$2
shift 2
cd "$workspace" || exit 1
n=$#
for arg in "$@"; do
  case $arg in
    ^*) git cat-file -e "${arg#^}^{commit}" 2>/dev/null || continue ;;
  esac
  set -- "$@" "$arg"
done
shift "$n"
git bundle create -q "$bundle" "$@" >&2
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
pub fn list_command(workspace: &str, bottle: &str) -> Vec<String> {
    sh(
        LIST_SCRIPT,
        [
            workspace.to_owned(),
            UNCOMMITTED_REF.to_owned(),
            format!("Uncommitted work in bottle {bottle}"),
        ],
    )
}

/// Writes a bundle at `bundle` of `refs` (full names in the bottle), without
/// the history of those of `bases` the bottle has (the host has them all).
pub fn bundle_command(
    workspace: &str,
    bundle: &str,
    refs: &[String],
    bases: &[super::refs::ObjectId],
) -> Vec<String> {
    let mut args = vec![workspace.to_owned(), bundle.to_owned()];
    args.extend(refs.iter().cloned());
    args.extend(bases.iter().map(|b| format!("^{b}")));
    sh(BUNDLE_SCRIPT, args)
}
