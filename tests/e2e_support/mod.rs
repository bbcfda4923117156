//! Test support of claude-bottle's end-to-end isolation suite (tests/e2e_*.rs):
//! real `claude-bottle start` sessions on the real Docker daemon, with the
//! offline test images (scripts/build-test-images.sh, SPEC §9), egress-side
//! test hosts, controls that show each blocked path is otherwise open, and
//! RAII guards that remove everything the tests made.
#![allow(dead_code)]

pub mod capture;
pub mod docker;
pub mod host;
pub mod no_way_to_host;
pub mod runtime;
pub mod session;
pub mod stub;

use session::{AGENT_IMAGE, DNS_IMAGE, HTTP_IMAGE, PIPELOCK_STANDIN_IMAGE, SSHD_IMAGE};

/// Whether the suite can run here: the daemon answers and has every test
/// image (see `docker_support::daemon::ready`: with `CI` set a miss FAILS the
/// test, elsewhere it is skipped loudly and returns early).
#[must_use]
pub fn ready() -> bool {
    crate::docker_support::daemon::ready(
        "e2e",
        &[
            AGENT_IMAGE,
            HTTP_IMAGE,
            SSHD_IMAGE,
            DNS_IMAGE,
            PIPELOCK_STANDIN_IMAGE,
        ],
    )
}
