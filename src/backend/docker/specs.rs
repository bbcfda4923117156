//! What each resource of a session is made of: the two container specs and
//! the two network specs. Plain data from the plan; nothing here calls the
//! daemon.

use ipnet::Ipv4Net;

use super::client::{ContainerSpec, Ipam, NetworkSpec, SHARED_NETWORK_PREFIX};
use super::names::{Names, Role};
use super::plan::SessionPlan;
use crate::core::pipelock::LISTEN_PORT;
use crate::core::provision::container_user;

/// Pipelock's own health command (the image's HEALTHCHECK runs it too).
pub(crate) const PROXY_HEALTH_COMMAND: [&str; 2] = ["/pipelock", "healthcheck"];
/// The in-container path of the proxy config; the pipelock command line names it.
pub(crate) const PROXY_CONFIG_PATH: &str = "/etc/pipelock/pipelock.yaml";
pub(crate) const PIDS_LIMIT: i64 = 4096;
/// The agent's resolver: Docker's embedded DNS forwards to it, and nothing
/// listens there, so no query leaves (CVE-2024-29018 closed by design).
pub(crate) const AGENT_DNS: &str = "127.0.0.1";
/// The driver option that leaves the host without an address on the internal
/// bridge: with it, an internal network has no layer-3 path to the host.
pub(crate) const INHIBIT_IPV4: &str = "com.docker.network.bridge.inhibit_ipv4";

/// The internal network on `subnet`: `--internal`, and no host address on
/// its bridge.
pub(crate) fn internal_network_spec(
    plan: &SessionPlan,
    names: &Names,
    subnet: Ipv4Net,
) -> NetworkSpec {
    NetworkSpec {
        name: names.internal_network.clone(),
        internal: true,
        options: [(INHIBIT_IPV4.to_owned(), "true".to_owned())].into(),
        labels: plan.owner.labels(Role::Network),
        ipam: Some(ipam(subnet)),
    }
}

/// The egress network on `subnet`: the proxy's way out.
pub(crate) fn egress_network_spec(
    plan: &SessionPlan,
    names: &Names,
    subnet: Ipv4Net,
) -> NetworkSpec {
    NetworkSpec {
        name: names.egress_network.clone(),
        internal: false,
        options: Default::default(),
        labels: plan.owner.labels(Role::Network),
        ipam: Some(ipam(subnet)),
    }
}

/// An explicit subnet and gateway: Docker and Podman both take them as given.
pub(crate) fn ipam(subnet: Ipv4Net) -> Ipam {
    Ipam {
        subnet: subnet.to_string(),
        gateway: crate::core::subnet::gateway(&subnet).to_string(),
    }
}

fn proxy_url(names: &Names) -> String {
    format!("http://{}:{}", names.proxy, LISTEN_PORT)
}

pub(crate) fn proxy_container_spec(
    plan: &SessionPlan,
    names: &Names,
    internal_id: &str,
) -> ContainerSpec {
    ContainerSpec {
        name: names.proxy.clone(),
        image: plan.proxy_image.clone(),
        user: None,
        entrypoint: None,
        cmd: Some(vec![
            "run".to_owned(),
            "--config".to_owned(),
            PROXY_CONFIG_PATH.to_owned(),
        ]),
        working_dir: None,
        env: Vec::new(),
        labels: plan.owner.labels(Role::Proxy),
        network: internal_id.to_owned(),
        extra_hosts: Vec::new(),
        dns: Vec::new(),
        // The proxy never runs under runsc: it is ours, not the agent's.
        runtime: None,
        init: false,
        security_opt: vec!["no-new-privileges".to_owned()],
        cap_drop: vec!["ALL".to_owned()],
        cap_add: Vec::new(),
        pids_limit: Some(PIDS_LIMIT),
        no_user_namespaces: false,
    }
}

pub(crate) fn agent_container_spec(
    plan: &SessionPlan,
    names: &Names,
    internal_id: &str,
    proxy_address: &str,
) -> ContainerSpec {
    let env = crate::core::agent_env::container_env(
        &plan.spec.env,
        &plan.container_home,
        &proxy_url(names),
    );
    // A warm bottle's agent keeps its warm name until a session claims it.
    let name = if plan.owner.warm.is_some() {
        names.warm_agent()
    } else {
        names.agent.clone()
    };
    ContainerSpec {
        name,
        image: plan.image.reference().to_owned(),
        user: Some(container_user()),
        // Keeps the container alive for `docker exec`, whatever the image's
        // own entrypoint would do.
        entrypoint: Some(vec!["sleep".to_owned(), "infinity".to_owned()]),
        cmd: None,
        working_dir: None,
        env,
        labels: plan.owner.labels(Role::Agent),
        network: internal_id.to_owned(),
        // The proxy by address from /etc/hosts: no resolver is needed to find it.
        extra_hosts: vec![format!("{}:{proxy_address}", names.proxy)],
        dns: vec![AGENT_DNS.to_owned()],
        runtime: plan.runtime.name().map(str::to_owned),
        init: true,
        security_opt: vec!["no-new-privileges".to_owned()],
        cap_drop: vec!["ALL".to_owned()],
        cap_add: Vec::new(),
        pids_limit: Some(PIDS_LIMIT),
        no_user_namespaces: true,
    }
}

/// The fence: a one-shot container in the agent's network namespace, run
/// by the default runtime (under runsc the namespace is the host kernel's,
/// so rules set from outside the sandbox hold), as root with `NET_ADMIN` and
/// nothing else, that leaves the agent one way out: its proxy's port.
pub(crate) fn fence_container_spec(
    plan: &SessionPlan,
    names: &Names,
    agent_id: &str,
    proxy_address: &str,
) -> ContainerSpec {
    ContainerSpec {
        name: names.fence.clone(),
        image: plan.fence_image.clone(),
        user: Some("0:0".to_owned()),
        entrypoint: Some(super::fence::command(proxy_address)),
        cmd: None,
        working_dir: None,
        env: Vec::new(),
        labels: plan.owner.labels(Role::Fence),
        network: format!("{SHARED_NETWORK_PREFIX}{agent_id}"),
        extra_hosts: Vec::new(),
        dns: Vec::new(),
        runtime: None,
        init: false,
        security_opt: vec!["no-new-privileges".to_owned()],
        cap_drop: vec!["ALL".to_owned()],
        cap_add: vec!["NET_ADMIN".to_owned()],
        pids_limit: Some(PIDS_LIMIT),
        no_user_namespaces: false,
    }
}
