//! Resources a test makes itself (not through the product) carry
//! `claude-bottle.test=1`, a label of their suite, and the pid of the test
//! process that made them; those whose process is gone are stale.

use super::daemon::{docker, docker_lines, pid_alive, remove_resources};

/// The label key of the pid of the test process that made a resource.
pub const TEST_PID_LABEL: &str = "claude-bottle.test.pid";

/// Removes the containers, networks and images carrying `label` (`key=value`)
/// whose test process is gone: what a crashed earlier run left. Those of tests
/// running right now, and any without a pid label, stay.
pub fn sweep_stale_test_resources(label: &str) {
    let filter = format!("label={label}");
    let format = format!("{{{{.ID}}}}\t{{{{.Label \"{TEST_PID_LABEL}\"}}}}");
    let stale = |list: &[&str]| -> Vec<String> {
        let mut args = list.to_vec();
        args.extend(["--filter", &filter, "--format", &format]);
        docker_lines(&args)
            .iter()
            .filter_map(|line| {
                let (id, pid) = line.split_once('\t')?;
                made_by_gone_test(pid).then(|| id.to_owned())
            })
            .collect()
    };
    let containers = stale(&["ps", "-a"]);
    let networks = stale(&["network", "ls"]);
    // `docker images` has no label column: each image's pid is inspected.
    let pid_format = format!("{{{{index .Config.Labels \"{TEST_PID_LABEL}\"}}}}");
    // One line per tag: an image with several comes more than once.
    let mut images = docker_lines(&["images", "-q", "--filter", &filter]);
    images.sort();
    images.dedup();
    images.retain(|id| {
        let pid = docker(&["image", "inspect", "--format", &pid_format, id]);
        made_by_gone_test(&String::from_utf8_lossy(&pid.stdout))
    });
    if !containers.is_empty() || !networks.is_empty() || !images.is_empty() {
        eprintln!(
            "sweeping stale test resources ({label}): containers {containers:?}, networks {networks:?}, images {images:?}"
        );
    }
    remove_resources(&containers, &networks);
    for image in &images {
        let _ = docker(&["rmi", "-f", image]);
    }
}

fn made_by_gone_test(pid: &str) -> bool {
    pid.trim().parse::<i32>().is_ok() && !pid_alive(pid)
}
