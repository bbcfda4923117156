//! The agent's work comes home (issue 8 §1 and §3) on the real Docker
//! daemon: the stub `claude` commits, branches and leaves staged, unstaged,
//! deleted, untracked, ignored and binary changes in a `--cwd` repository,
//! and the host repository gets them as `bottle/<name>/...` refs with its
//! checkout, index and branches as they were; after SIGTERM too; an earlier
//! session's refs are never overwritten; a failure keeps the container,
//! which `list` shows and `cleanup` leaves without `--force`; nothing of
//! the bottle's or the host's repository configuration runs on the host;
//! a `--cwd` below the top of a work tree brings its work home too; and
//! without `--cwd` the repositories the agent made are saved as bundles.
//!
//! Images and resources as in tests/docker_session.rs; agents of this suite
//! are named `wh-...`, and each test's state directory (where kept bottles
//! are recorded) is its own.

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod git;
    pub mod lock;
    pub mod sessions;
}

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use docker_support::daemon::docker_ok;
use docker_support::fixture::Fixture;
use docker_support::git::{git, git_bytes};

const AGENT_PREFIX: &str = "wh-";

fn require() {
    docker_support::fixture::require("docker_work_home", AGENT_PREFIX)
}

/// A fixture whose `work` directory is a git repository on `main` with one
/// commit (`a.txt`, `gone.txt`, a `.gitignore` of `target/`); see [`cmd`]
/// for its state directory.
fn fixture(tag: &str) -> Fixture {
    let fx = Fixture::stub_session(AGENT_PREFIX, tag, "wh", &[]);
    let work = work(&fx);
    fs::write(work.join("a.txt"), "a\n").unwrap();
    fs::write(work.join("gone.txt"), "gone\n").unwrap();
    fs::write(work.join(".gitignore"), "target/\n").unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "host"]);
    fx
}

/// `claude-bottle ARGS` with the fixture's own state directory.
fn cmd(fx: &Fixture, args: &[&str]) -> Command {
    let mut command = fx.command(args);
    command.env("XDG_STATE_HOME", fx.dir.path().join("state"));
    command
}

fn work(fx: &Fixture) -> PathBuf {
    fx.dir.path().join("work")
}

/// Bytes no text conversion survives unchanged.
const BINARY_PRINTF: &str = r"\000\237\222\226\377\000\r\n\r\000";
const BINARY: &[u8] = &[0, 0o237, 0o222, 0o226, 0o377, 0, b'\r', b'\n', b'\r', 0];

/// What the stub `claude` does in the workspace: a commit on `main`, a
/// branch `topic` with a commit, then a staged new file, an unstaged edit,
/// a deletion, an untracked text and binary file, and an ignored file.
const AGENT_WORK: &str = "set -e
git config user.email agent@bottle && git config user.name agent
echo b >> a.txt && git commit -qam 'agent on main'
git checkout -qb topic && echo t > t.txt && git add t.txt && git commit -qm 'agent on topic'
echo staged > staged.txt && git add staged.txt
echo unstaged >> a.txt
rm gone.txt
echo untracked > new.txt
printf 'BINARY' > blob.bin
mkdir -p target && echo ignored > target/out";

fn agent_work() -> String {
    AGENT_WORK.replace("BINARY", BINARY_PRINTF)
}

/// The host repository as the user sees it: HEAD, the index file, the
/// status, and every ref but those brought home.
fn host_view(work: &Path) -> (String, Vec<u8>, String, String) {
    let refs = git(work, &["for-each-ref"])
        .lines()
        .filter(|l| !l.contains("\trefs/heads/bottle/"))
        .collect::<Vec<_>>()
        .join("\n");
    (
        git(work, &["symbolic-ref", "HEAD"]),
        fs::read(work.join(".git/index")).unwrap(),
        git(work, &["status", "--porcelain", "--ignored"]),
        refs,
    )
}

/// `start --cwd` (in the fixture's `work` directory unless moved), the
/// stub running `snippet` and taking `stub_args`; stdin closed.
fn start_command(fx: &Fixture, snippet: &str, stub_args: &[&str]) -> Command {
    let mut args = vec![
        "start",
        &fx.agent,
        "--yes",
        "--cwd",
        "--",
        "--stub-sh",
        snippet,
    ];
    args.extend_from_slice(stub_args);
    let mut command = cmd(fx, &args);
    command.stdin(Stdio::null());
    command
}

fn start(fx: &Fixture, snippet: &str) -> Output {
    start_command(fx, snippet, &[])
        .output()
        .expect("run claude-bottle")
}

/// The stub's report of its first probe: it must have done its work.
/// Returns what the probe printed.
fn assert_probe_ok(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("CLAUDE_STUB_REPORT "))
        .unwrap_or_else(|| panic!("no report in:\n{stdout}"));
    let report: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(report["probes"][0]["exit"], 0, "{}", report["probes"][0]);
    report["probes"][0]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn name_of(fx: &Fixture) -> String {
    fx.agent.clone()
}

/// Every commit and every uncommitted change is reachable from the new
/// refs, binary files byte for byte; ignored files are not; the host's
/// checkout, index and branches are exactly as before.
fn assert_work_home(work: &Path, name: &str) {
    let ns = format!("bottle/{name}");
    assert_eq!(
        git(work, &["log", "--format=%s", &format!("{ns}/main")]),
        "agent on main\nhost"
    );
    assert_eq!(
        git(work, &["log", "--format=%s", &format!("{ns}/topic")]),
        "agent on topic\nagent on main\nhost"
    );
    let uncommitted = format!("{ns}/uncommitted");
    assert_eq!(
        git(work, &["rev-parse", &format!("{uncommitted}~1")]),
        git(work, &["rev-parse", &format!("{ns}/topic")]),
        "the uncommitted work's parent is the bottle's HEAD"
    );
    assert_eq!(
        git(
            work,
            &[
                "diff",
                "--name-status",
                &format!("{ns}/topic"),
                &uncommitted
            ]
        ),
        "M\ta.txt\nA\tblob.bin\nD\tgone.txt\nA\tnew.txt\nA\tstaged.txt"
    );
    assert_eq!(
        git(work, &["show", &format!("{uncommitted}:a.txt")]),
        "a\nb\nunstaged"
    );
    assert_eq!(
        git_bytes(work, &["show", &format!("{uncommitted}:blob.bin")]),
        BINARY
    );
}

#[test]
fn every_commit_and_uncommitted_change_comes_home_and_the_host_is_as_before() {
    require();
    let fx = fixture("home");
    let work = work(&fx);
    let before = host_view(&work);
    let out = start(&fx, &agent_work());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_probe_ok(&String::from_utf8_lossy(&out.stdout));
    let name = name_of(&fx);
    assert_work_home(&work, &name);
    assert_eq!(host_view(&work), before, "the host's checkout changed");
    assert!(
        !git(
            work.as_path(),
            &[
                "ls-tree",
                "-r",
                "--name-only",
                &format!("bottle/{name}/uncommitted")
            ]
        )
        .contains("target/"),
        "ignored files stay out"
    );
    for line in [
        format!(
            "brought the bottle's work home to {}:",
            work.canonicalize().unwrap().display()
        ),
        format!("bottle/{name}/main         1 new commit; see `git log main..bottle/{name}/main`"),
        format!(
            "bottle/{name}/topic        2 new commits; see `git log main..bottle/{name}/topic`"
        ),
        format!(
            "bottle/{name}/uncommitted  1 new commit; see `git show --stat bottle/{name}/uncommitted`"
        ),
    ] {
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }
    fx.assert_nothing_left();
}

#[test]
fn after_sigterm_while_claude_runs_the_work_comes_home() {
    require();
    let fx = fixture("sigterm");
    let work = work(&fx);
    let before = host_view(&work);
    let stdout_path = fx.dir.path().join("stdout");
    let mut child = start_command(&fx, &agent_work(), &["--stub-sleep", "300"])
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(fx.dir.path().join("stderr")).unwrap())
        .spawn()
        .expect("spawn claude-bottle");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !fs::read_to_string(&stdout_path)
        .unwrap_or_default()
        .contains("CLAUDE_STUB_SLEEPING")
    {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "the stub never slept:\n{}",
                fs::read_to_string(fx.dir.path().join("stderr")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let stderr = fs::read_to_string(fx.dir.path().join("stderr")).unwrap();
    assert_eq!(status.code(), Some(128 + 15), "stderr:\n{stderr}");
    assert_probe_ok(&fs::read_to_string(&stdout_path).unwrap());
    assert_work_home(&work, &name_of(&fx));
    assert_eq!(host_view(&work), before, "the host's checkout changed");
    fx.assert_nothing_left();
}

#[test]
fn a_second_session_of_the_same_name_gets_free_refs_and_says_which() {
    require();
    let fx = fixture("again");
    let work = work(&fx);
    let name = name_of(&fx);
    let first = start(&fx, "echo one > one.txt");
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let first_tip = git(&work, &["rev-parse", &format!("bottle/{name}/uncommitted")]);
    let second = start(&fx, "echo two > two.txt");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "`bottle/{name}/` was taken by an earlier session, so the work went to `bottle/{name}-2/`"
        )),
        "{stderr}"
    );
    assert_eq!(
        git(&work, &["rev-parse", &format!("bottle/{name}/uncommitted")]),
        first_tip,
        "the earlier ref is untouched"
    );
    assert_eq!(
        git(
            &work,
            &["show", &format!("bottle/{name}-2/uncommitted:two.txt")]
        ),
        "two"
    );
    fx.assert_nothing_left();
}

/// The bottle's repository is made unusable for the export (a file where
/// its refs directory for the export must go): the session fails, the
/// container stays, stopped, with the work in it; `list` says so; `cleanup`
/// leaves it unless `--force`, and says so in its plan.
#[test]
fn a_failed_export_keeps_the_container_and_cleanup_leaves_it_without_force() {
    require();
    let fx = fixture("kept");
    let out = start(
        &fx,
        "echo precious > precious.txt && printf x > .git/refs/claude-bottle",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let container = format!("claude-bottle-{}", fx.agent);
    assert!(
        stderr.contains("error: the agent's work did not come home: "),
        "{stderr}"
    );
    // gVisor keeps a container's files in its sandbox, so there the
    // container is left running; under runc it is stopped.
    let gvisor = docker_ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", &container]) == "runsc";
    let (how, state) = if gvisor {
        ("running with no network", "running")
    } else {
        ("stopped", "exited")
    };
    assert!(
        stderr.contains(&format!(
            "its container `{container}` is kept, {how}, with the work in `/home/node/workspace`"
        )),
        "{stderr}"
    );
    let (containers, networks) = fx.leftovers();
    assert_eq!(
        containers,
        std::slice::from_ref(&container),
        "only the agent stays"
    );
    assert!(networks.is_empty(), "{networks:?}");
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Status}}", &container]),
        state
    );
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{len .NetworkSettings.Networks}}",
            &container
        ]),
        "0",
        "off every network"
    );

    // The recovery the error gives works.
    let copy = fx.dir.path().join("copy");
    if gvisor {
        assert!(
            stderr.contains(&format!(
                "`docker exec {container} tar -C /home/node/workspace -cf - . > {container}-work.tar`"
            )),
            "{stderr}"
        );
        let tar = Command::new("docker")
            .args([
                "exec",
                &container,
                "tar",
                "-C",
                "/home/node/workspace",
                "-cf",
                "-",
                ".",
            ])
            .output()
            .unwrap();
        assert!(tar.status.success(), "{tar:?}");
        tar::Archive::new(tar.stdout.as_slice())
            .unpack(&copy)
            .unwrap();
    } else {
        assert!(
            stderr.contains(&format!(
                "`docker cp {container}:/home/node/workspace ./{container}-work`"
            )),
            "{stderr}"
        );
        docker_ok(&[
            "cp",
            &format!("{container}:/home/node/workspace"),
            copy.to_str().unwrap(),
        ]);
    }
    assert_eq!(
        fs::read_to_string(copy.join("precious.txt")).unwrap(),
        "precious\n"
    );

    let list = cmd(&fx, &["list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let row = list
        .lines()
        .find(|l| l.contains(&container))
        .unwrap_or_else(|| panic!("not listed:\n{list}"));
    assert!(row.contains("holds work that did not come home"), "{row}");

    let plan = cmd(&fx, &["cleanup", "--dry-run"]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stderr);
    let (left_alone, removed) = plan.split_once("containers (").unwrap_or((&plan, ""));
    assert!(
        left_alone.contains(
            "left alone, holding work that did not come home (`--force` removes them too):"
        ) && left_alone.contains(&container),
        "{plan}"
    );
    assert!(!removed.contains(&container), "{plan}");
    let forced = cmd(&fx, &["cleanup", "--dry-run", "--force"])
        .output()
        .unwrap();
    let forced = String::from_utf8_lossy(&forced.stderr);
    assert!(
        forced
            .lines()
            .any(|l| l.contains(&container) && l.contains("holds work that did not come home")),
        "{forced}"
    );
}

/// Hooks, a filter and an fsmonitor command configured in the HOST
/// repository (which git would run on fetch, ref updates and checkouts),
/// and a filter and hooks set up inside the bottle's repository, never run
/// on the host while the work comes home.
#[test]
fn nothing_of_either_repository_runs_on_the_host() {
    require();
    let fx = fixture("hooks");
    let work = work(&fx);
    let marker = fx.dir.path().join("ran");
    let touch = format!("#!/bin/sh\necho \"$0\" >> '{}'\n", marker.display());
    for hook in [
        "reference-transaction",
        "post-checkout",
        "post-merge",
        "pre-auto-gc",
    ] {
        let path = work.join(".git/hooks").join(hook);
        fs::write(&path, &touch).unwrap();
        let mut perms = fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(&path, perms).unwrap();
    }
    let command = format!("sh -c 'echo filter >> {}; cat'", marker.display());
    git(&work, &["config", "filter.evil.clean", &command]);
    git(&work, &["config", "filter.evil.smudge", &command]);
    git(
        &work,
        &[
            "config",
            "core.fsmonitor",
            &format!("{}", work.join(".git/hooks/post-checkout").display()),
        ],
    );
    // Proof that the host's set-up does run when git is asked to.
    git(&work, &["update-ref", "refs/heads/probe", "HEAD"]);
    assert!(
        marker.exists(),
        "the host's reference-transaction hook never ran"
    );
    fs::remove_file(&marker).unwrap();
    git(&work, &["update-ref", "-d", "refs/heads/probe"]);
    fs::remove_file(&marker).unwrap();

    let bottle_side = format!(
        "set -e\n\
         printf '* filter=evil\\n' > .gitattributes\n\
         git config filter.evil.clean \"echo x >> {m}; cat\"\n\
         git config core.hooksPath .githooks\n\
         mkdir -p .githooks && printf '#!/bin/sh\\necho x >> {m}\\n' > .githooks/reference-transaction\n\
         chmod +x .githooks/reference-transaction\n\
         echo data > data.txt",
        m = marker.display()
    );
    let out = start(&fx, &bottle_side);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_probe_ok(&String::from_utf8_lossy(&out.stdout));
    let name = name_of(&fx);
    assert!(
        git_bytes(
            &work,
            &["show", &format!("bottle/{name}/uncommitted:.gitattributes")]
        )
        .starts_with(b"* filter=evil"),
        "the work came home"
    );
    assert!(
        !marker.exists(),
        "something ran on the host: {}",
        fs::read_to_string(&marker).unwrap_or_default()
    );
    fx.assert_nothing_left();
}

/// A `--cwd` that is no git work tree: the files the agent changed or
/// created (binary byte for byte) are saved under the state directory, and
/// the path is printed; files it did not touch are not copied back.
#[test]
fn in_a_plain_directory_the_changed_files_are_saved_under_the_state_directory() {
    require();
    let fx = fixture("plain");
    let work = work(&fx);
    fs::remove_dir_all(work.join(".git")).unwrap();
    let snippet =
        format!("set -e\necho b >> a.txt\nmkdir -p sub\nprintf '{BINARY_PRINTF}' > sub/blob.bin");
    let out = start(&fx, &snippet);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_probe_ok(&String::from_utf8_lossy(&out.stdout));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("saved the 2 file(s) the agent changed or created to "))
        .unwrap_or_else(|| panic!("no saved line in:\n{stderr}"));
    let saved = PathBuf::from(line.rsplit(" to ").next().unwrap());
    assert!(
        saved.starts_with(fx.dir.path().join("state/claude-bottle/work")),
        "{}",
        saved.display()
    );
    assert_eq!(fs::read_to_string(saved.join("a.txt")).unwrap(), "a\nb\n");
    assert_eq!(fs::read(saved.join("sub/blob.bin")).unwrap(), BINARY);
    assert!(!saved.join("gone.txt").exists(), "untouched files stay out");
    fx.assert_nothing_left();
}

/// `start` without `--cwd`, the stub running `snippet` in its workspace.
fn start_without_cwd(fx: &Fixture, snippet: &str) -> Output {
    let snippet = format!("cd ~/workspace && {snippet}");
    cmd(
        fx,
        &["start", &fx.agent, "--yes", "--", "--stub-sh", &snippet],
    )
    .stdin(Stdio::null())
    .output()
    .expect("run claude-bottle")
}

/// The directories of saved bundles under the fixture's state directory.
fn bundle_dirs(fx: &Fixture) -> Vec<PathBuf> {
    let root = fx.dir.path().join("state/claude-bottle/bundles");
    let Ok(entries) = fs::read_dir(&root) else {
        return Vec::new();
    };
    entries.map(|e| e.unwrap().path()).collect()
}

/// What the stub `claude` does without `--cwd`: a repository `app` with a
/// commit on `main`, a branch `topic` with another, a staged file, an
/// unstaged edit and an untracked binary file; and a repository
/// `libs/util` with one commit on `trunk`.
const AGENT_REPOS: &str = "set -e
mkdir app && cd app && git init -q -b main
git config user.email agent@bottle && git config user.name agent
echo a > a.txt && git add a.txt && git commit -qm 'first on main'
git checkout -qb topic && echo t > t.txt && git add t.txt && git commit -qm 'on topic'
echo staged > staged.txt && git add staged.txt
echo wip >> a.txt
printf 'BINARY' > blob.bin
mkdir -p ../libs/util && cd ../libs/util && git init -q -b trunk
git -c user.email=a@b -c user.name=a commit -q --allow-empty -m util";

/// Without `--cwd`, each repository the agent made is saved as a bundle
/// under the state directory, the path is printed with how to use it, and
/// `git clone` of it on the host has every commit, with the uncommitted
/// work (binary files byte for byte) on a branch of its own.
#[test]
fn without_cwd_the_repositories_the_agent_made_are_saved_as_bundles() {
    require();
    let fx = Fixture::stub_session(AGENT_PREFIX, "bundles", "wh", &[]);
    let out = start_without_cwd(&fx, &AGENT_REPOS.replace("BINARY", BINARY_PRINTF));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_probe_ok(&String::from_utf8_lossy(&out.stdout));
    let dirs = bundle_dirs(&fx);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let (app, util) = (dirs[0].join("app.bundle"), dirs[0].join("libs-util.bundle"));
    for line in [
        "saved the git repositories the agent made as bundles, with every branch:".to_owned(),
        "  `app` (branches `main`, `topic`; the uncommitted work as branch `uncommitted`):"
            .to_owned(),
        format!("    `git clone {}`", app.display()),
        "  `libs/util` (branches `trunk`):".to_owned(),
        format!("    {}", util.display()),
    ] {
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }

    let host = fx.dir.path();
    git(host, &["clone", "-q", app.to_str().unwrap(), "app"]);
    let clone = host.join("app");
    assert_eq!(
        git(&clone, &["branch", "--show-current"]),
        "topic",
        "the bottle's HEAD"
    );
    assert_eq!(
        git(&clone, &["log", "--format=%s", "origin/main"]),
        "first on main"
    );
    assert_eq!(
        git(&clone, &["log", "--format=%s", "origin/topic"]),
        "on topic\nfirst on main"
    );
    assert_eq!(
        git(&clone, &["rev-parse", "origin/uncommitted~1"]),
        git(&clone, &["rev-parse", "origin/topic"]),
        "the uncommitted work's parent is the bottle's HEAD"
    );
    assert_eq!(
        git(
            &clone,
            &[
                "diff",
                "--name-status",
                "origin/topic",
                "origin/uncommitted"
            ]
        ),
        "M\ta.txt\nA\tblob.bin\nA\tstaged.txt"
    );
    assert_eq!(git(&clone, &["show", "origin/uncommitted:a.txt"]), "a\nwip");
    assert_eq!(
        git_bytes(&clone, &["show", "origin/uncommitted:blob.bin"]),
        BINARY
    );
    // The other way the summary gives: fetched into a repository.
    let work = work(&fx);
    git(&work, &["init", "-q"]);
    git(
        &work,
        &[
            "fetch",
            "-q",
            util.to_str().unwrap(),
            "refs/heads/*:refs/remotes/bottle/*",
        ],
    );
    assert_eq!(git(&work, &["log", "--format=%s", "bottle/trunk"]), "util");
    fx.assert_nothing_left();
}

/// Without `--cwd`, a session whose agent made no repository says nothing
/// of bundles and saves nothing.
#[test]
fn without_cwd_and_no_repository_nothing_is_said_or_saved() {
    require();
    let fx = Fixture::stub_session(AGENT_PREFIX, "norepo", "wh", &[]);
    let out = start_without_cwd(&fx, "mkdir plain && echo x > plain/f");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_probe_ok(&String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("bundle"), "{stderr}");
    assert_eq!(bundle_dirs(&fx), Vec::<PathBuf>::new());
    fx.assert_nothing_left();
}

/// Without `--cwd`, when the repositories cannot all be found (a directory
/// the agent made unreadable may hold one), the container is kept with its
/// work, as with `--cwd`.
#[test]
fn without_cwd_a_workspace_that_cannot_be_searched_keeps_the_container() {
    require();
    let fx = Fixture::stub_session(AGENT_PREFIX, "unread", "wh", &[]);
    let out = start_without_cwd(
        &fx,
        "mkdir -p locked/repo && git init -q locked/repo && chmod 000 locked",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(
            "error: the agent's work did not come home: could not find the git repositories in the bottle's workspace"
        ),
        "{stderr}"
    );
    let container = format!("claude-bottle-{}", fx.agent);
    assert!(
        stderr.contains(&format!("its container `{container}` is kept")),
        "{stderr}"
    );
    let (containers, networks) = fx.leftovers();
    assert_eq!(containers, [container], "only the agent stays");
    assert!(networks.is_empty(), "{networks:?}");
    assert_eq!(bundle_dirs(&fx), Vec::<PathBuf>::new());
}

/// A `--cwd` below the top of a work tree: the bottle gets the repository
/// with only that directory checked out, Claude works there, git sees
/// nothing changed, and the agent's commits and uncommitted work come home
/// to the host repository, with nothing outside the directory recorded as
/// changed, the top's ignore rules holding, and the host's checkout as it
/// was.
#[test]
fn from_a_subdirectory_of_a_work_tree_the_work_comes_home_too() {
    require();
    let fx = fixture("subdir");
    let work = work(&fx);
    let app = work.join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(app.join("app.txt"), "app\n").unwrap();
    git(&work, &["add", "app"]);
    git(&work, &["commit", "-q", "-m", "app"]);
    let before = host_view(&work);
    let snippet = "set -e
pwd
git status --porcelain
test ! -e ../a.txt
git config user.email agent@bottle && git config user.name agent
git checkout -qb feature && echo more >> app.txt && git commit -qam 'agent in app'
echo wip > wip.txt
mkdir -p target && echo built > target/out";
    let out = start_command(&fx, snippet, &[])
        .current_dir(&app)
        .output()
        .expect("run claude-bottle");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(
        assert_probe_ok(&String::from_utf8_lossy(&out.stdout)),
        "/home/node/workspace/app\n",
        "Claude works in the directory, and git there sees nothing changed"
    );
    assert!(
        stderr.contains(
            "with its repository (all of its history) and only this directory checked out"
        ),
        "the plan says what goes in:\n{stderr}"
    );
    let ns = format!("bottle/{}", name_of(&fx));
    assert_eq!(
        git(&work, &["log", "--format=%s", &format!("{ns}/feature")]),
        "agent in app\napp\nhost"
    );
    assert_eq!(
        git(
            &work,
            &[
                "diff",
                "--name-status",
                &format!("{ns}/feature"),
                &format!("{ns}/uncommitted")
            ]
        ),
        "A\tapp/wip.txt"
    );
    assert_eq!(host_view(&work), before, "the host's checkout changed");
    fx.assert_nothing_left();
}
