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

use session::{
    AGENT_IMAGE, DNS_IMAGE, FENCE_IMAGE, HTTP_IMAGE, PIPELOCK_STANDIN_IMAGE, SSHD_IMAGE,
};

/// Requires what the suite needs: the daemon and every test image (panics
/// otherwise, see `docker_support::daemon::require`).
pub fn require() {
    crate::docker_support::daemon::require(
        "e2e",
        &[
            AGENT_IMAGE,
            HTTP_IMAGE,
            SSHD_IMAGE,
            DNS_IMAGE,
            PIPELOCK_STANDIN_IMAGE,
            FENCE_IMAGE,
        ],
    );
}
