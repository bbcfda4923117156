//! Tests on one daemon coordinate through `flock`s on well-known files in
//! /tmp, which work across the separate processes nextest runs tests in and
//! across test binaries.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Held exclusively by the test that runs `cleanup --yes`
/// (tests/docker_session.rs), which removes every claude-bottle resource on
/// the daemon; every test with a live session holds it shared so that
/// session is not swept away under it.
pub const CLEANUP_LOCK: &str = "/tmp/claude-bottle-test-docker-cleanup.lock";

/// Held exclusively by the tests that register runtimes with the daemon
/// (e2e_support::runtime), which reload it; every test that starts a session
/// holds it shared through [`RuntimeLock`], since the product runs the agent
/// under whichever runtime it detects. Taken before [`CLEANUP_LOCK`] by
/// every holder of both, so the two never deadlock.
#[allow(
    dead_code,
    reason = "only the binaries whose outcome depends on the runtimes take it"
)]
pub const RUNTIME_LOCK: &str = "/tmp/claude-bottle-test-docker-runtimes.lock";

/// How many [`RuntimeLock::exclusive`] this process holds: a process that
/// registered a runtime runs its own sessions under it, and a shared `flock`
/// on a second descriptor would wait for its own exclusive one forever.
#[allow(
    dead_code,
    reason = "only the binaries whose outcome depends on the runtimes take it"
)]
static EXCLUSIVE_HERE: AtomicUsize = AtomicUsize::new(0);

/// The runtime lock ([`RUNTIME_LOCK`]).
#[allow(
    dead_code,
    reason = "only the binaries whose outcome depends on the runtimes take it"
)]
pub struct RuntimeLock {
    /// None: a shared hold inside this process's own exclusive one.
    lock: Option<FileLock>,
    exclusive: bool,
}

#[allow(
    dead_code,
    reason = "only the binaries whose outcome depends on the runtimes take it"
)]
impl RuntimeLock {
    /// Waits until no test is changing the daemon's runtimes.
    pub fn shared() -> Self {
        let lock = (EXCLUSIVE_HERE.load(Ordering::SeqCst) == 0)
            .then(|| FileLock::take(RUNTIME_LOCK, false));
        Self {
            lock,
            exclusive: false,
        }
    }

    /// Waits until no other test holds the lock, shared or exclusive.
    pub fn exclusive() -> Self {
        let lock = FileLock::take(RUNTIME_LOCK, true);
        EXCLUSIVE_HERE.fetch_add(1, Ordering::SeqCst);
        Self {
            lock: Some(lock),
            exclusive: true,
        }
    }
}

impl Drop for RuntimeLock {
    fn drop(&mut self) {
        if self.exclusive {
            EXCLUSIVE_HERE.fetch_sub(1, Ordering::SeqCst);
        }
        drop(self.lock.take());
    }
}

/// A `flock` on a well-known file, released on drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for the lock on `path`: shared, or exclusive of every other holder.
    pub fn take(path: &str, exclusive: bool) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open `{path}`: {e}"));
        let operation = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a descriptor this value owns; closing it releases the lock.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        assert_eq!(rc, 0, "flock `{path}`: {}", std::io::Error::last_os_error());
        Self { _file: file }
    }
}

/// What a test holds while a session of the product is alive: the runtime
/// lock shared (the session runs under the runtime it detects), then the
/// cleanup lock (so `cleanup --yes` does not sweep the session away).
/// Released in the reverse order.
#[allow(dead_code, reason = "only the binaries that start sessions take it")]
pub struct SessionLocks {
    _cleanup: FileLock,
    _runtime: RuntimeLock,
}

#[allow(dead_code, reason = "only the binaries that start sessions take it")]
impl SessionLocks {
    /// Both shared.
    pub fn take() -> Self {
        Self::with_cleanup(false)
    }

    /// The runtime lock shared and the cleanup lock exclusive: for the test
    /// that runs `cleanup --yes`.
    pub fn take_cleanup_exclusive() -> Self {
        Self::with_cleanup(true)
    }

    fn with_cleanup(exclusive: bool) -> Self {
        let runtime = RuntimeLock::shared();
        Self {
            _cleanup: FileLock::take(CLEANUP_LOCK, exclusive),
            _runtime: runtime,
        }
    }
}
