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

/// Whether the suite can run here. With `CI` set, a missing daemon or a
/// missing test image FAILS the test (SPEC §9); elsewhere the test is skipped
/// with a loud message, and returns early.
#[must_use]
pub fn ready() -> bool {
    let missing = if !docker::daemon_answers() {
        Some(format!(
            "the Docker daemon at `{}` does not answer",
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
        ))
    } else {
        let absent: Vec<&str> = [
            AGENT_IMAGE,
            HTTP_IMAGE,
            SSHD_IMAGE,
            DNS_IMAGE,
            PIPELOCK_STANDIN_IMAGE,
        ]
        .into_iter()
        .filter(|i| !docker::image_exists(i))
        .collect();
        (!absent.is_empty()).then(|| {
            format!(
                "test images missing: {}\n  hint: run scripts/build-test-images.sh",
                absent.join(", ")
            )
        })
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => panic!("e2e: {why}"),
        Some(why) => {
            eprintln!("\n!!! e2e: SKIPPED: {why}\n");
            false
        }
    }
}
