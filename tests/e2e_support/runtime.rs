//! The daemon's runtimes are shared by every test on the machine. One test
//! (e2e_runsc) registers an alias of runc named `runsc` and reloads dockerd,
//! which changes what every concurrently starting session detects. So:
//!
//! - a test that depends on which runtime the product detects holds
//!   [`RuntimeLock::shared`] for its whole session;
//! - a test that changes the daemon's runtimes holds [`RuntimeLock::exclusive`],
//!   which waits until no shared holder is left.
//!
//! The lock is a `flock` on a well-known file in /tmp, so it works across the
//! separate processes nextest runs tests in, and across test binaries (the
//! Docker backend's own tests can take it too).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::docker::{docker_ok, wait_for};

pub const RUNTIME_LOCK_PATH: &str = "/tmp/claude-bottle-test-docker-runtimes.lock";
/// Held exclusively by the Docker backend's test that runs `cleanup --yes`
/// (tests/docker_session.rs), which removes every claude-bottle resource on
/// the daemon; a live e2e session holds it shared so it is not swept away.
pub const CLEANUP_LOCK_PATH: &str = "/tmp/claude-bottle-test-docker-cleanup.lock";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const DOCKERD_PID: &str = "/var/run/docker.pid";

/// A `flock` on a well-known file, released on drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn shared(path: &str) -> Self {
        Self::take(path, libc::LOCK_SH)
    }

    pub fn exclusive(path: &str) -> Self {
        Self::take(path, libc::LOCK_EX)
    }

    fn take(path: &str, operation: libc::c_int) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open `{path}`: {e}"));
        // SAFETY: flock on a descriptor we own; it is released when `file` closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        assert_eq!(rc, 0, "flock `{path}`: {}", std::io::Error::last_os_error());
        Self { _file: file }
    }
}

/// The runtime lock (see the module comment).
pub struct RuntimeLock {
    _lock: FileLock,
}

impl RuntimeLock {
    pub fn shared() -> Self {
        Self {
            _lock: FileLock::shared(RUNTIME_LOCK_PATH),
        }
    }

    pub fn exclusive() -> Self {
        Self {
            _lock: FileLock::exclusive(RUNTIME_LOCK_PATH),
        }
    }
}

/// The runtimes the daemon has registered, by name.
pub fn registered_runtimes() -> Vec<String> {
    let json = docker_ok(&["info", "--format", "{{json .Runtimes}}"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("docker info runtimes JSON");
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// While alive, the daemon has a runtime named `runsc`: the real gVisor when
/// it is already registered (then nothing is changed), otherwise an alias of
/// runc written into daemon.json and loaded with SIGHUP. Drop restores the
/// file byte for byte and reloads again, even when the test panicked.
pub struct RunscRegistered {
    /// The original daemon.json (None: there was none), when we changed it.
    restore: Option<Option<Vec<u8>>>,
    pub is_alias_of_runc: bool,
    _lock: RuntimeLock,
}

impl RunscRegistered {
    pub fn ensure() -> Self {
        let lock = RuntimeLock::exclusive();
        if registered_runtimes().iter().any(|r| r == "runsc") {
            return Self {
                restore: None,
                is_alias_of_runc: false,
                _lock: lock,
            };
        }
        let path = Path::new(DAEMON_JSON);
        let original = std::fs::read(path).ok();
        let mut config: serde_json::Value = match &original {
            Some(bytes) => serde_json::from_slice(bytes).expect("daemon.json is JSON"),
            None => serde_json::json!({}),
        };
        let runc = which("runc").expect("runc on PATH (the alias points at it)");
        config
            .as_object_mut()
            .expect("daemon.json is an object")
            .entry("runtimes")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .expect("daemon.json runtimes is an object")
            .insert(
                "runsc".into(),
                serde_json::json!({ "path": runc.to_string_lossy() }),
            );
        let guard = Self {
            restore: Some(original),
            is_alias_of_runc: true,
            _lock: lock,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&config).expect("serialize"))
            .expect("write daemon.json");
        assert!(reload_dockerd(), "could not reload dockerd");
        wait_for(
            "dockerd to register `runsc`",
            Duration::from_secs(30),
            || {
                registered_runtimes()
                    .iter()
                    .any(|r| r == "runsc")
                    .then_some(())
            },
        );
        guard
    }
}

impl Drop for RunscRegistered {
    fn drop(&mut self) {
        let Some(original) = self.restore.take() else {
            return;
        };
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
        if let Err(e) = unregistered {
            eprintln!(
                "e2e: CANNOT RESTORE `{DAEMON_JSON}`: {e}; restore it by hand and SIGHUP dockerd"
            );
        }
        reload_dockerd();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while registered_runtimes().iter().any(|r| r == "runsc") {
            if std::time::Instant::now() > deadline {
                eprintln!("e2e: dockerd still lists `runsc` after restoring `{DAEMON_JSON}`");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let restored = match original {
            Some(bytes) => std::fs::write(path, bytes),
            None => std::fs::remove_file(path),
        };
        if let Err(e) = restored {
            eprintln!(
                "e2e: CANNOT RESTORE `{DAEMON_JSON}`: {e}; restore it by hand and SIGHUP dockerd"
            );
        }
        // Without `runtimes` in the file this reload changes no runtime; it
        // makes the daemon's view of its file current again.
        reload_dockerd();
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

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}
