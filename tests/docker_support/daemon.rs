//! The docker CLI as the real-daemon test binaries use it (tests/docker_*.rs,
//! and tests/e2e_*.rs through e2e_support): run a command, require the daemon
//! and images a test needs, tell a live test process from a gone one, and remove
//! what a test leaves.
//!
//! The tests talk to the daemon through the CLI rather than the Engine API on
//! purpose: it is the product's job to use the API, and a second, independent
//! path to the daemon makes the checks harder to fool with a shared bug.
//!
//! A binary declares only the modules of tests/docker_support/ it uses (an
//! inline `mod docker_support { pub mod daemon; ... }`), so no helper is dead
//! code in it. Every module needs this one.

use std::process::{Command, Output, Stdio};

/// `docker ARGS`, output captured, stdin closed. Never panics on a non-zero
/// exit. Builds use the classic builder: this daemon has no BuildKit.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

/// `docker ARGS` that must succeed; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `docker ARGS` that must succeed: the lines of its stdout, blank ones dropped.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    docker_ok(args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether the daemon is Podman's Docker-compatible service (its `/version`
/// lists a component named `Podman Engine`).
#[allow(
    dead_code,
    reason = "only the binaries whose checks differ on Podman ask"
)]
pub fn is_podman() -> bool {
    let out = docker(&[
        "version",
        "--format",
        "{{range .Server.Components}}{{.Name}};{{end}}",
    ]);
    String::from_utf8_lossy(&out.stdout).contains("Podman Engine")
}

/// Whether the daemon is rootless Podman: Podman whose storage is not
/// root's (`/var/lib/containers`), the test the product makes too.
#[allow(
    dead_code,
    reason = "only the binaries whose checks differ on rootless Podman ask"
)]
pub fn is_rootless_podman() -> bool {
    if !is_podman() {
        return false;
    }
    let out = docker(&["info", "--format", "{{.DockerRootDir}}"]);
    let root = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !root.trim().is_empty() && !root.trim().starts_with("/var/lib/")
}

pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

/// Panics unless `suite`'s tests can run here: the daemon answers and has
/// every one of `images`. A real-daemon test never passes without having run
/// (SPEC §9): `scripts/test.sh` decides once, before the run, whether these
/// tests can run, and outside CI leaves them out of the run when they cannot,
/// so nextest reports them as skipped; a test that gets here anyway fails
/// with the reason.
pub fn require(suite: &str, images: &[&str]) {
    let problem = if !docker(&["info", "--format", "{{.ServerVersion}}"])
        .status
        .success()
    {
        format!(
            "the Docker daemon at `{}` does not answer",
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
        )
    } else {
        let missing: Vec<&str> = images
            .iter()
            .copied()
            .filter(|image| !image_exists(image))
            .collect();
        if missing.is_empty() {
            return;
        }
        format!("test images missing: {}", missing.join(", "))
    };
    let needs = if images.is_empty() {
        "a Docker daemon".to_owned()
    } else {
        format!("a Docker daemon with the images {}", images.join(", "))
    };
    panic!(
        "{suite}: this real-daemon test needs {needs}, and cannot run: {problem}\n  \
         hint: run ./scripts/test.sh, which builds the test images (scripts/build-test-images.sh) \
         and, outside CI, reports the real-daemon tests as skipped when no daemon answers"
    );
}

/// Whether the process a `pid` label names lives (nextest runs tests in
/// parallel processes: a resource whose maker lives belongs to a test running
/// right now). Text that is no pid names no live process.
pub fn pid_alive(pid: &str) -> bool {
    pid.trim().parse::<i32>().is_ok_and(|pid| {
        pid > 0
            && matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Ok(()) | Err(nix::errno::Errno::EPERM)
            )
    })
}

/// Removes containers (with their anonymous volumes) then networks, by name
/// or ID, ignoring ones already gone. Containers first: a network cannot go
/// while anything is attached.
pub fn remove_resources(containers: &[String], networks: &[String]) {
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        let _ = docker(&args);
    }
    for network in networks {
        let _ = docker(&["network", "rm", network]);
    }
}
