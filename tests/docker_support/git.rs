//! Host `git`, run by tests as a user would to set up and inspect
//! repositories: a fixed identity, `main` as the first branch, and local
//! submodules allowed.

use std::path::Path;
use std::process::{Command, Stdio};

/// `git ARGS` in `dir`; its stdout, trailing whitespace trimmed. Panics,
/// with git's stderr, when it fails.
#[allow(dead_code, reason = "each test binary uses part of it")]
pub fn git(dir: &Path, args: &[&str]) -> String {
    String::from_utf8_lossy(&git_bytes(dir, args))
        .trim_end()
        .to_owned()
}

/// `git ARGS` in `dir`; its stdout as bytes, as git wrote them.
pub fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "init.defaultBranch=main"])
        .args(["-c", "protocol.file.allow=always"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `git clone --shared FROM TO`: `to` borrows `from`'s objects through its
/// `objects/info/alternates`.
#[allow(dead_code, reason = "each test binary uses part of it")]
pub fn clone_shared(from: &Path, to: &Path) {
    let (Some(from_str), Some(to_str)) = (from.to_str(), to.to_str()) else {
        panic!("paths in UTF-8: {} {}", from.display(), to.display());
    };
    let parent = to.parent().expect("a parent directory");
    git(parent, &["clone", "-q", "--shared", from_str, to_str]);
}

/// `git worktree add -b BRANCH PATH` in `repo`: a linked worktree of it.
#[allow(dead_code, reason = "each test binary uses part of it")]
pub fn worktree_add(repo: &Path, branch: &str, path: &Path) {
    let Some(path_str) = path.to_str() else {
        panic!("a path in UTF-8: {}", path.display());
    };
    git(repo, &["worktree", "add", "-q", "-b", branch, path_str]);
}
