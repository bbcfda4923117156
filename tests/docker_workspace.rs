//! `--cwd` on the real daemon (issue 8 §2): what git would carry reaches the
//! bottle, ignored files never do, and the repository works inside it for
//! a plain work tree, a linked worktree, a superproject with a submodule and
//! a `--shared` clone (whose work comes home).
//!
//! Each test builds a repository in its fixture's `work` directory (the
//! directory `start --cwd` runs in), runs a session whose stub `claude`
//! probes the workspace with git, and compares what git says inside with
//! what it says on the host. Images and resources as in docker_session.rs:
//! agents are named `dws-<test>-<pid>-<n>`, and the fixture removes what
//! carries their label.

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod git;
    pub mod lock;
    pub mod sessions;
}

use std::fs;
use std::path::Path;
use std::process::Stdio;

use docker_support::fixture::Fixture;
use docker_support::git::{clone_shared, git, worktree_add};
use serde_json::Value;

const AGENT_PREFIX: &str = "dws-";

fn fixture(tag: &str) -> Fixture {
    docker_support::fixture::require("docker_workspace", AGENT_PREFIX);
    Fixture::stub_session(AGENT_PREFIX, tag, "dws", &[])
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

/// A repository at `dir` with one commit and an ignored `target/` and `.env`.
fn project(dir: &Path) {
    fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q"]);
    write(&dir.join(".gitignore"), "target/\n.env\n");
    write(&dir.join("src/main.rs"), "fn main() {}\n");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "first"]);
}

/// Runs `start --cwd` with `probe` as the stub's shell probe (in the
/// workspace); returns the plan (stderr) and the probe's stdout.
fn session(fx: &Fixture, probe: &str) -> (String, String) {
    let sh = format!("cd ~/workspace && {probe}");
    let out = fx
        .command(&[
            "start",
            fx.agent.as_str(),
            "--yes",
            "--cwd",
            "--",
            "--stub-sh",
            &sh,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run claude-bottle");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CLAUDE_STUB_REPORT "))
        .unwrap_or_else(|| panic!("no stub report in stdout:\n{stdout}"));
    let report: Value = serde_json::from_str(line).expect("stub report is JSON");
    let probe = &report["probes"][0];
    assert_eq!(probe["exit"], 0, "{probe}");
    fx.assert_nothing_left();
    (
        stderr,
        probe["stdout"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Ignored files stay on the host; tracked, untracked and deleted files are
/// as git on the host sees them, and the repository works.
#[test]
fn ignored_files_never_enter_the_bottle_and_git_sees_what_the_host_sees() {
    let fx = fixture("ignored");
    let work = fx.dir.path().join("work");
    project(&work);
    write(&work.join("target/debug/app"), "built");
    write(&work.join(".env"), "SECRET=dws-never-in-the-bottle\n");
    write(&work.join("notes.md"), "untracked, not ignored\n");
    write(&work.join("src/main.rs"), "fn main() { changed() }\n");
    let on_host = git(&work, &["status", "--porcelain"]);

    let (plan, inside) = session(
        &fx,
        "git status --porcelain && echo --- && \
         ls -A && echo --- && git log --format=%s && \
         ! grep -rqs dws-never-in-the-bottle . && echo no-secret",
    );
    assert!(
        plan.contains("git work tree, with its repository"),
        "the plan says what goes in:\n{plan}"
    );
    let parts: Vec<&str> = inside.split("---\n").collect();
    assert_eq!(
        parts[0].trim_end(),
        on_host,
        "git status inside and on the host"
    );
    assert_eq!(
        parts[1].lines().collect::<Vec<_>>(),
        [".git", ".gitignore", "notes.md", "src"]
    );
    assert_eq!(parts[2].lines().collect::<Vec<_>>(), ["first", "no-secret"]);
}

/// A linked worktree's `.git` names the main repository by a host path;
/// inside, git works on the worktree's branch with its index.
#[test]
fn a_linked_worktree_works_in_the_bottle() {
    let fx = fixture("worktree");
    let main = fx.dir.path().join("main");
    project(&main);
    let work = fx.dir.path().join("work");
    worktree_add(&main, "feature", &work);
    write(&work.join("feature.rs"), "// on the branch\n");
    git(&work, &["add", "feature.rs"]);
    git(&work, &["commit", "-q", "-m", "on the feature branch"]);
    write(&work.join("staged.rs"), "// staged\n");
    git(&work, &["add", "staged.rs"]);
    write(&work.join("wip.rs"), "// untracked\n");
    let on_host = git(&work, &["status", "--porcelain"]);

    let (plan, inside) = session(
        &fx,
        "git status --porcelain && echo --- && git log --format=%s && \
         git branch --show-current",
    );
    assert!(plan.contains("git worktree of `"), "{plan}");
    let parts: Vec<&str> = inside.split("---\n").collect();
    assert_eq!(parts[0].trim_end(), on_host);
    assert_eq!(
        parts[1].lines().collect::<Vec<_>>(),
        ["on the feature branch", "first", "feature"]
    );
}

/// A submodule's repository lives in the superproject's `.git/modules`;
/// inside, git works in the superproject and in the submodule.
#[test]
fn a_repository_with_a_submodule_works_in_the_bottle() {
    let fx = fixture("submodule");
    let library = fx.dir.path().join("library");
    project(&library);
    let work = fx.dir.path().join("work");
    project(&work);
    git(
        &work,
        &[
            "submodule",
            "add",
            "-q",
            library.to_str().expect("utf-8"),
            "vendor/lib",
        ],
    );
    git(&work, &["commit", "-q", "-m", "add the library"]);
    write(
        &work.join("vendor/lib/new.rs"),
        "// untracked in the submodule\n",
    );
    write(
        &work.join("vendor/lib/target/x"),
        "ignored in the submodule\n",
    );
    let on_host = git(&work, &["status", "--porcelain"]);
    let sub_on_host = git(&work.join("vendor/lib"), &["status", "--porcelain"]);

    let (_, inside) = session(
        &fx,
        "git status --porcelain && echo --- && git log --format=%s && echo --- && \
         cd vendor/lib && git status --porcelain && echo --- && git log --format=%s && \
         test ! -e target && echo no-target",
    );
    let parts: Vec<&str> = inside.split("---\n").collect();
    assert_eq!(parts[0].trim_end(), on_host);
    assert_eq!(
        parts[1].lines().collect::<Vec<_>>(),
        ["add the library", "first"]
    );
    assert_eq!(parts[2].trim_end(), sub_on_host);
    assert_eq!(parts[3].lines().collect::<Vec<_>>(), ["first", "no-target"]);
}

/// A `git clone --shared` borrows its objects from the repository it was
/// cloned from by a host path: inside, git works on copies of them, and
/// the agent's work comes home to the clone, whose list of alternates is
/// as it was.
#[test]
fn a_shared_clone_works_in_the_bottle_and_its_work_comes_home() {
    let fx = fixture("shared");
    let origin = fx.dir.path().join("origin");
    project(&origin);
    let work = fx.dir.path().join("work");
    clone_shared(&origin, &work);
    let list = work.join(".git/objects/info/alternates");
    let host_list = fs::read(&list).expect("a --shared clone has alternates");
    write(&work.join("notes.md"), "untracked, not ignored\n");
    let on_host = git(&work, &["status", "--porcelain"]);

    let (plan, inside) = session(
        &fx,
        "git status --porcelain && echo --- && git log --format=%s && echo --- && \
         git config user.email agent@bottle && git config user.name agent && \
         echo more >> src/main.rs && git commit -qam 'agent on main' && \
         echo wip > wip.txt && git log --format=%s",
    );
    assert!(
        plan.contains("borrowed from 1 alternate object directory"),
        "the plan says what goes in:\n{plan}"
    );
    let parts: Vec<&str> = inside.split("---\n").collect();
    assert_eq!(parts[0].trim_end(), on_host);
    assert_eq!(parts[1].lines().collect::<Vec<_>>(), ["first"]);
    assert_eq!(
        parts[2].lines().collect::<Vec<_>>(),
        ["agent on main", "first"]
    );
    let ns = format!("bottle/{}", fx.agent);
    assert_eq!(
        git(&work, &["log", "--format=%s", &format!("{ns}/main")]),
        "agent on main\nfirst"
    );
    assert_eq!(
        git(
            &work,
            &[
                "diff",
                "--name-status",
                &format!("{ns}/main"),
                &format!("{ns}/uncommitted")
            ]
        ),
        "A\tnotes.md\nA\twip.txt"
    );
    assert_eq!(fs::read(&list).expect("alternates"), host_list);
}
