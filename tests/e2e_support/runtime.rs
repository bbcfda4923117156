//! The daemon's runtimes are shared by every test on the machine. The tests
//! of e2e_runsc register a runtime named `runsc` (gVisor's, or a stand-in
//! that fails for one test's containers and runs everyone else's with runc)
//! and reload dockerd, which changes what every session that starts
//! meanwhile detects, and the product runs its agent under `runsc` whenever
//! the daemon has it. So a test that registers a runtime holds
//! [`RuntimeLock::exclusive`] for as long as it is registered, and every test
//! that starts a session holds it shared (`SessionLocks`, docker_support's
//! lock.rs). The lock is a `flock` on a well-known file in /tmp, so it works
//! across the separate processes nextest runs tests in, and across binaries.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::docker_support::daemon::{docker, docker_ok};
use crate::docker_support::lock::RuntimeLock;

const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const DOCKERD_PID: &str = "/var/run/docker.pid";

/// What gVisor's `runsc` needs on its command line to run here. Debian's
/// release (20221219) refuses to start a sandbox on Linux 6.10 and later
/// ("cannot run with network enabled in root network namespace": its test
/// for the root namespace looks for a file those kernels create in every
/// namespace; fixed upstream in 2024). With `--network=host` gVisor uses the
/// network stack of the container's own namespace, the one Docker made, so
/// the bottle's networks, routes and firewall rules apply as under runc.
pub const GVISOR_RUNTIME_ARGS: [&str; 1] = ["--network=host"];

/// The runtimes the daemon has registered, by name: those a container can
/// be given. Podman's Docker API lists every runtime it knows of and
/// ignores the one a container asks for, so none on Podman.
pub fn registered_runtimes() -> Vec<String> {
    if crate::docker_support::daemon::is_podman() {
        return Vec::new();
    }
    let json = docker_ok(&["info", "--format", "{{json .Runtimes}}"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("docker info runtimes JSON");
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The path the daemon runs for `runsc`: None when it has no such runtime,
/// or when `docker info` cannot say. Never panics (guards' `Drop` use it).
fn runsc_path() -> Option<String> {
    let out = docker(&["info", "--format", "{{json .Runtimes}}"]);
    if !out.status.success() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(value.get("runsc")?.get("path")?.as_str()?.to_owned())
}

/// The `runsc` path a daemon.json (its bytes) registers, if any.
fn runsc_path_in(daemon_json: Option<&[u8]>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(daemon_json?).ok()?;
    Some(
        value
            .get("runtimes")?
            .get("runsc")?
            .get("path")?
            .as_str()?
            .to_owned(),
    )
}

/// Waits up to 30 s for the daemon's `runsc` to be `expected`; false (and a
/// loud message) when it does not get there. Never panics.
fn wait_runsc_path(expected: Option<&str>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = runsc_path();
        if current.as_deref() == expected {
            return true;
        }
        if Instant::now() > deadline {
            eprintln!(
                "e2e: dockerd's `runsc` is {current:?}, expected {expected:?}, after reloading `{DAEMON_JSON}`"
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A copy of the original daemon.json, kept while a guard has changed the
/// file. A guard's `Drop` cannot run when nextest kills a hung test, so the
/// next guard finds the copy and restores it first. Only touched under the
/// exclusive runtime lock.
const BACKUP: &str = "/var/tmp/claude-bottle-test-daemon-json.backup";

#[derive(serde::Serialize, serde::Deserialize)]
struct Backup {
    /// The file's bytes; None: there was no file.
    original: Option<Vec<u8>>,
}

/// Restores the daemon.json a killed guard left changed, if any.
fn recover_interrupted_guard() {
    let Ok(bytes) = std::fs::read(BACKUP) else {
        return;
    };
    let backup: Backup = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("`{BACKUP}` is not a daemon.json backup: {e}"));
    eprintln!("e2e: a runtime guard was killed before it restored `{DAEMON_JSON}`: restoring it");
    restore_daemon_json(backup.original);
}

/// While alive, the daemon has a runtime named `runsc`: gVisor's with
/// [`RunscRegistered::gvisor`], one that cannot create some containers with
/// [`RunscRegistered::failing_for`]. A changed runtime is written into
/// daemon.json and loaded with SIGHUP; drop restores the file byte for byte
/// and reloads again, even when the test panicked, and a test killed before
/// that is undone by the next guard (see [`BACKUP`]).
pub struct RunscRegistered {
    /// The original daemon.json (None: there was none), when we changed it.
    restore: Option<Option<Vec<u8>>>,
    /// Holds the stand-in runtime of [`RunscRegistered::failing_for`];
    /// removed after the daemon forgot it.
    _stand_in: Option<tempfile::TempDir>,
    _lock: RuntimeLock,
}

impl RunscRegistered {
    /// gVisor: the daemon's own `runsc` when it has one (then nothing is
    /// changed), otherwise the `runsc` on PATH registered with
    /// [`GVISOR_RUNTIME_ARGS`]. Panics, saying how to install it, when there
    /// is none: scripts/test.sh leaves these tests out (reported as skipped)
    /// outside CI when `runsc` is missing, and fails in CI.
    pub fn gvisor() -> Self {
        let lock = RuntimeLock::exclusive();
        recover_interrupted_guard();
        if runsc_path().is_some() {
            return Self {
                restore: None,
                _stand_in: None,
                _lock: lock,
            };
        }
        let runsc = which("runsc").unwrap_or_else(|| {
            panic!(
                "gVisor's `runsc` is not installed and the daemon has no `runsc` runtime: \
                 install it (`apt-get install runsc`; .ci/run does), or leave these tests to \
                 scripts/test.sh, which reports them as skipped when it is missing"
            )
        });
        let runtime = json!({ "path": path_text(&runsc), "runtimeArgs": GVISOR_RUNTIME_ARGS });
        Self::register(lock, runtime, None)
    }

    /// gVisor's `runsc` from PATH registered as a plain install registers it,
    /// without [`GVISOR_RUNTIME_ARGS`], replacing any `runsc` the daemon has.
    /// Panics when `runsc` is not installed.
    pub fn gvisor_without_args() -> Self {
        let lock = RuntimeLock::exclusive();
        recover_interrupted_guard();
        let runsc = which("runsc").expect("gVisor's `runsc` on PATH");
        Self::register(lock, json!({ "path": path_text(&runsc) }), None)
    }

    /// Registers as `runsc` a runtime that fails to create every container
    /// whose OCI config (its environment, say) contains `marker`, exactly as
    /// a runtime binary that is `/bin/false` fails (measured on Docker 20.10:
    /// `/bin/false` and a missing binary are both accepted on reload, and
    /// both fail `docker start` at once with "OCI runtime create failed").
    /// Every other container it runs with runc: sessions that start
    /// meanwhile elsewhere on the machine, and detect `runsc`, are not broken
    /// by this one's.
    pub fn failing_for(marker: &str) -> Self {
        assert!(
            !marker.is_empty()
                && marker
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "marker `{marker}` must be a plain word (it goes into a shell script)"
        );
        let lock = RuntimeLock::exclusive();
        recover_interrupted_guard();
        let delegate = which("runc").expect("runc on PATH (the stand-in runs the rest with it)");
        let dir = tempfile::Builder::new()
            .prefix("claude-bottle-test-runsc-")
            .tempdir()
            .expect("temp dir for the stand-in runtime");
        let script = dir.path().join("runsc");
        // containerd's shim runs `<runtime> [global flags] create --bundle
        // <dir> ... <id>`; the bundle's config.json is the container's OCI
        // spec. Exiting 1 without a word is what `/bin/false` does.
        let text = format!(
            "#!/bin/sh\n\
             # claude-bottle e2e stand-in `runsc`: fails like /bin/false for containers marked `{marker}`.\n\
             bundle=\n\
             prev=\n\
             for arg in \"$@\"; do\n\
             \x20 case \"$prev\" in --bundle|-b) bundle=$arg ;; esac\n\
             \x20 prev=$arg\n\
             done\n\
             if [ -n \"$bundle\" ] && grep -qF -- '{marker}' \"$bundle/config.json\" 2>/dev/null; then\n\
             \x20 exit 1\n\
             fi\n\
             exec '{}' \"$@\"\n",
            delegate.display()
        );
        std::fs::write(&script, text).expect("write the stand-in runtime");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("make the stand-in runtime executable");
        Self::register(lock, json!({ "path": path_text(&script) }), Some(dir))
    }

    /// Writes `runsc` -> `runtime` (its `path`, maybe `runtimeArgs`) into
    /// daemon.json, reloads dockerd and waits until it runs that path for
    /// `runsc`.
    fn register(lock: RuntimeLock, runtime: Value, stand_in: Option<tempfile::TempDir>) -> Self {
        let daemon_json = Path::new(DAEMON_JSON);
        let original = std::fs::read(daemon_json).ok();
        let mut config: Value = match &original {
            Some(bytes) => serde_json::from_slice(bytes).expect("daemon.json is JSON"),
            None => json!({}),
        };
        let path = runtime["path"]
            .as_str()
            .expect("a runtime has a path")
            .to_owned();
        config
            .as_object_mut()
            .expect("daemon.json is an object")
            .entry("runtimes")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("daemon.json runtimes is an object")
            .insert("runsc".into(), runtime);
        std::fs::write(
            BACKUP,
            serde_json::to_vec(&Backup {
                original: original.clone(),
            })
            .expect("serialize the backup"),
        )
        .unwrap_or_else(|e| panic!("write `{BACKUP}`: {e}"));
        let guard = Self {
            restore: Some(original),
            _stand_in: stand_in,
            _lock: lock,
        };
        std::fs::write(
            daemon_json,
            serde_json::to_vec_pretty(&config).expect("serialize"),
        )
        .expect("write daemon.json");
        assert!(reload_dockerd(), "could not reload dockerd");
        assert!(
            wait_runsc_path(Some(&path)),
            "dockerd did not load `runsc` -> `{path}`"
        );
        guard
    }
}

impl Drop for RunscRegistered {
    fn drop(&mut self) {
        if let Some(original) = self.restore.take() {
            restore_daemon_json(original);
        }
    }
}

/// Puts the original daemon.json (None: there was none) back and reloads,
/// leaving the daemon with the `runsc` it names (or none), then drops the
/// backup. Never panics: it runs in a guard's `Drop`, possibly while a failed
/// test unwinds.
fn restore_daemon_json(original: Option<Vec<u8>>) {
    // dockerd's reload replaces its runtimes only when the file names
    // `runtimes`: restoring a file without the key would leave `runsc`
    // registered. So first reload with the original runtimes spelled out
    // (empty when it had none), then put the original bytes back.
    let path = Path::new(DAEMON_JSON);
    let mut unregister: serde_json::Value = original
        .as_deref()
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(config) = unregister.as_object_mut() {
        config
            .entry("runtimes")
            .or_insert_with(|| serde_json::json!({}));
    }
    let unregistered = serde_json::to_vec_pretty(&unregister)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(path, bytes));
    let mut restored = match unregistered {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "e2e: CANNOT RESTORE `{DAEMON_JSON}`: {e}; restore it by hand and SIGHUP dockerd"
            );
            false
        }
    };
    restored &= reload_dockerd();
    restored &= wait_runsc_path(runsc_path_in(original.as_deref()).as_deref());
    let written = match original {
        Some(bytes) => std::fs::write(path, bytes),
        None => std::fs::remove_file(path),
    };
    if let Err(e) = written {
        eprintln!(
            "e2e: CANNOT RESTORE `{DAEMON_JSON}`: {e}; restore it by hand and SIGHUP dockerd"
        );
        restored = false;
    }
    // Without `runtimes` in the file this reload changes no runtime; it
    // makes the daemon's view of its file current again.
    restored &= reload_dockerd();
    // Kept when something failed, so the next guard tries again.
    if restored && let Err(e) = std::fs::remove_file(BACKUP) {
        eprintln!("e2e: could not remove `{BACKUP}`: {e}");
    }
}

/// SIGHUPs dockerd; false (and a loud message) when it cannot. Never panics:
/// it runs in a guard's `Drop`, possibly while a failed test unwinds.
fn reload_dockerd() -> bool {
    let pid = std::fs::read_to_string(DOCKERD_PID)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    let Some(pid) = pid else {
        eprintln!("e2e: cannot read dockerd's pid from `{DOCKERD_PID}`");
        return false;
    };
    // SAFETY: sending a signal has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        eprintln!(
            "e2e: SIGHUP dockerd ({pid}): {}",
            std::io::Error::last_os_error()
        );
        return false;
    }
    true
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("runtime path is UTF-8")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// How long the processes of an ended sandbox may take to exit.
const SANDBOX_EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Ends the gVisor sandboxes that outlive a test's own containers.
///
/// When `runsc` has created a container but fails to start it (Debian's
/// release without [`GVISOR_RUNTIME_ARGS`] on a new kernel), its sandbox and
/// gofer stay up waiting for a start, under their containerd shim, and
/// nothing ends them: Docker 20.10 deletes the failed start's containerd
/// task without killing it, which containerd refuses ("task must be stopped
/// before deletion"; moby/moby#44399, fixed in Docker 23.0), then forgets
/// the container all the same; and this `runsc` refuses to signal a
/// container that never started ("cannot signal container in state
/// created"), so a kill through containerd could not end it either. Every
/// failed `docker start` under such a `runsc` leaves three processes.
///
/// So a test whose containers may fail that way watches the daemon's
/// container creations from before it makes any, names the containers that
/// are its own ([`OwnSandboxes::own`]), and at its end has `runsc delete
/// --force` end what is left of exactly those, and containerd forget them
/// (which ends their shims). Drop does it too, when the test panicked first.
pub struct OwnSandboxes {
    names: Vec<String>,
    watch: Option<Watch>,
}

struct Watch {
    events: std::process::Child,
    /// `<id> <name>` of each container created since the watch began, as
    /// `docker events` reports them.
    created: std::sync::mpsc::Receiver<String>,
}

/// How long [`OwnSandboxes::end`] waits for the creations of the test's
/// containers to be reported: events reach `docker events` asynchronously.
const CREATION_REPORT_LIMIT: Duration = Duration::from_secs(5);

/// What [`OwnSandboxes::end`] found of the test's containers.
#[derive(Debug)]
pub struct Ended {
    /// The names of the test's containers the daemon created.
    pub created: BTreeSet<String>,
    /// The processes (pid and command line) of those containers still alive
    /// afterwards: none, unless ending them failed.
    pub surviving: Vec<String>,
}

impl OwnSandboxes {
    /// Starts watching the daemon's container creations.
    pub fn watch() -> Self {
        // Replayed from a second ago: `docker events` subscribes only after
        // it started, and a creation in between would be missed.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .saturating_sub(Duration::from_secs(1));
        let mut events = std::process::Command::new("docker")
            .args([
                "events",
                "--since",
                &format!("{}.{:09}", since.as_secs(), since.subsec_nanos()),
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--format",
                "{{.ID}} {{.Actor.Attributes.name}}",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run `docker events`");
        let stdout = events.stdout.take().expect("`docker events` stdout");
        // Read as they come, so a busy daemon cannot fill the pipe.
        let (report, created) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if report.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            names: Vec::new(),
            watch: Some(Watch { events, created }),
        }
    }

    /// Counts the container named `name` as the test's own.
    pub fn own(&mut self, name: impl Into<String>) {
        self.names.push(name.into());
    }

    /// Stops watching and ends what is left of the test's containers that
    /// the daemon no longer has. Never panics (Drop runs it).
    pub fn end(&mut self) -> Ended {
        let Some(mut watch) = self.watch.take() else {
            return Ended {
                created: BTreeSet::new(),
                surviving: Vec::new(),
            };
        };
        // Until every container the test owns has been reported, or for a
        // bounded time: one the test never made is never reported.
        let mut created = Vec::new();
        let deadline = Instant::now() + CREATION_REPORT_LIMIT;
        let all_in = |created: &[String]| {
            self.names.iter().all(|name| {
                created
                    .iter()
                    .any(|line| line.split_once(' ').is_some_and(|(_, n)| n == name))
            })
        };
        while !all_in(&created) {
            let left = deadline.saturating_duration_since(Instant::now());
            match watch.created.recv_timeout(left) {
                Ok(line) => created.push(line),
                Err(_) => break,
            }
        }
        created.extend(watch.created.try_iter());
        let _ = watch.events.kill();
        let _ = watch.events.wait();
        let own: Vec<(&str, &str)> = created
            .iter()
            .filter_map(|line| line.split_once(' '))
            .filter(|(_, name)| self.names.iter().any(|n| n == name))
            .collect();
        let mut ids = Vec::new();
        for &(id, _) in &own {
            // Spawned here, not through the panicking helpers: Drop runs this.
            let known = std::process::Command::new("docker")
                .args(["container", "inspect", "--format", "{{.Id}}", id])
                .output();
            if known.is_ok_and(|out| !out.status.success()) {
                end_sandbox(id);
                ids.push(id);
            }
        }
        let deadline = Instant::now() + SANDBOX_EXIT_LIMIT;
        let surviving = loop {
            let surviving = processes_of(&ids);
            if surviving.is_empty() || Instant::now() > deadline {
                break surviving;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ended {
            created: own.iter().map(|(_, name)| (*name).to_owned()).collect(),
            surviving: surviving
                .into_iter()
                .map(|(pid, args)| format!("{pid} {}", args.join(" ")))
                .collect(),
        }
    }
}

impl Drop for OwnSandboxes {
    fn drop(&mut self) {
        let ended = self.end();
        if !ended.surviving.is_empty() {
            eprintln!(
                "e2e: the sandboxes of this test's containers are still running: {:?}",
                ended.surviving
            );
        }
    }
}

/// Ends the `runsc` sandbox the daemon left of container `id`, and has its
/// containerd forget the container, which ends the shim. Never panics.
fn end_sandbox(id: &str) {
    for (pid, args) in processes_of(&[id]) {
        if args.first().map(String::as_str) != Some("runsc-sandbox") {
            continue;
        }
        // The state of the daemon's `runsc` is kept under the `--root` it
        // was run with, not runsc's default.
        let Some(root) = args.iter().find(|a| a.starts_with("--root=")) else {
            continue;
        };
        let runsc = std::fs::read_link(format!("/proc/{pid}/exe"))
            .unwrap_or_else(|_| PathBuf::from("runsc"));
        report_failure(
            std::process::Command::new(&runsc)
                .args([root.as_str(), "delete", "--force", id])
                .output(),
            "runsc delete",
        );
    }
    for (_, args) in processes_of(&[id]) {
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"));
        if !is_shim || flag_value(&args, "-id") != Some(id) {
            continue;
        }
        // The daemon's own containerd, which is not the system's.
        let (Some(address), Some(namespace)) = (
            flag_value(&args, "-address"),
            flag_value(&args, "-namespace"),
        ) else {
            continue;
        };
        let ctr = |what: &str| {
            std::process::Command::new("ctr")
                .args(["--address", address, "-n", namespace, what, "delete", id])
                .output()
        };
        // The task is stopped once the shim has seen the sandbox exit.
        let deadline = Instant::now() + SANDBOX_EXIT_LIMIT;
        let task = loop {
            let task = ctr("task");
            let done = matches!(&task, Ok(out) if out.status.success());
            if done || Instant::now() > deadline {
                break task;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        report_failure(task, "ctr task delete");
        report_failure(ctr("container"), "ctr container delete");
    }
}

fn report_failure(out: std::io::Result<std::process::Output>, what: &str) {
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "e2e: `{what}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("e2e: cannot run `{what}`: {e}"),
    }
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// The processes (pid, arguments) whose command line names one of the
/// container `ids`: its shim, sandbox and gofer.
pub fn processes_of(ids: &[&str]) -> Vec<(u32, Vec<String>)> {
    if ids.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // Gone meanwhile, or a kernel thread: no command line.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| ids.iter().any(|id| a.contains(id))) {
            found.push((pid, args));
        }
    }
    found
}
