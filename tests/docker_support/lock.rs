//! Tests on one daemon coordinate through `flock`s on well-known files in
//! /tmp, which work across the separate processes nextest runs tests in and
//! across test binaries.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

/// Held exclusively by the test that runs `cleanup --yes`
/// (tests/docker_session.rs), which removes every claude-bottle resource on
/// the daemon; every test with a live session holds it shared so that
/// session is not swept away under it.
pub const CLEANUP_LOCK: &str = "/tmp/claude-bottle-test-docker-cleanup.lock";

/// Held exclusively by the tests that register runtimes with the daemon
/// (e2e_support::runtime), which restart it; every test whose outcome
/// depends on the daemon's runtimes holds it shared.
#[allow(
    dead_code,
    reason = "only the binaries whose outcome depends on the runtimes take it"
)]
pub const RUNTIME_LOCK: &str = "/tmp/claude-bottle-test-docker-runtimes.lock";

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
