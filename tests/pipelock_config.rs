//! The generated pipelock YAML goes through the pipelock stand-in's own
//! config model, which rejects unknown keys anywhere as pipelock does: the
//! generator emits only keys pipelock knows, with values its validator takes.

use std::net::IpAddr;
use std::time::Duration;

use claude_bottle::core::egress::EgressPolicy;
use claude_bottle::core::pipelock::render;
use claude_bottle::manifest::{
    AllowRule, Bottle, Egress, Hostname, SshEntry, SshHostName, TrustedDomain,
};
use ipnet::IpNet;
use pipelock_standin::config::Config;
use proptest::prelude::*;

fn host(s: &str) -> Hostname {
    Hostname::parse(s).unwrap()
}

fn ssh(host_name: SshHostName) -> SshEntry {
    SshEntry {
        host: "alias".into(),
        host_name,
        user: None,
        port: 22,
        identity_file: "~/.ssh/id".into(),
    }
}

fn rich_bottle() -> Bottle {
    Bottle {
        egress: Egress {
            allowlist: vec![
                AllowRule::Exact(host("api.anthropic.com")),
                AllowRule::Wildcard(host("githubusercontent.com")),
                AllowRule::Ip("203.0.113.9".parse().unwrap()),
                // Forms a careless YAML emitter would turn into keys or aliases.
                AllowRule::Ip("2001:db8::".parse().unwrap()),
                AllowRule::Ip("::1".parse().unwrap()),
            ],
            trusted_domains: vec![
                TrustedDomain::Exact(host("llm.lan")),
                TrustedDomain::Wildcard(host("corp.example.com")),
            ],
            ip_cidrs: vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        },
        ssh: vec![
            ssh(SshHostName::Dns(host("git.internal.test"))),
            ssh(SshHostName::Ip("192.0.2.7".parse().unwrap())),
            ssh(SshHostName::Ip("2001:db8::7".parse().unwrap())),
        ],
        ..Bottle::default()
    }
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn accepted(bottle: &str, policy: &EgressPolicy) -> Config {
    let yaml = render(bottle, policy).unwrap();
    match Config::from_yaml(&yaml) {
        Ok(config) => config,
        Err(e) => panic!("the stand-in refused the generated config: {e}\n{yaml}"),
    }
}

#[test]
fn generated_config_for_a_rich_bottle_is_accepted_with_its_lists_intact() {
    let policy = EgressPolicy::for_bottle("work", &rich_bottle()).unwrap();
    let config = accepted("work", &policy);

    assert_eq!(config.api_allowlist, strings(&policy.allowlist));
    assert!(config.api_allowlist.contains(&"2001:db8::".to_owned()));
    assert!(
        config
            .api_allowlist
            .contains(&"*.githubusercontent.com".to_owned())
    );
    assert_eq!(
        config.trusted_domains,
        ["llm.lan", "*.corp.example.com", "git.internal.test"]
    );
    assert_eq!(
        strings(&config.ip_allowlist),
        ["10.0.0.0/8", "fd00::/8", "192.0.2.7/32", "2001:db8::7/128"]
    );
    assert_eq!(config.listen, "0.0.0.0:8888".parse().unwrap());
    assert!(config.forward_proxy_enabled);
    assert_eq!(config.max_tunnel, Duration::from_secs(86_400));
    assert!(config.include_allowed && config.include_blocked);
}

#[test]
fn generated_config_with_a_single_entry_is_accepted() {
    let policy = EgressPolicy {
        allowlist: vec![AllowRule::Exact(host("localhost"))],
        trusted_domains: vec![],
        ip_allowlist: vec![],
    };
    let config = accepted("b", &policy);
    assert_eq!(config.api_allowlist, ["localhost"]);
    assert!(config.trusted_domains.is_empty() && config.ip_allowlist.is_empty());
}

#[test]
fn an_unknown_key_in_generated_yaml_would_be_caught() {
    let policy = EgressPolicy::for_bottle("work", &rich_bottle()).unwrap();
    let yaml = render("work", &policy).unwrap();
    let tampered = yaml.replace("  enabled: true\n", "  enabled: true\n  keep_alive: true\n");
    assert_ne!(tampered, yaml);
    let err = Config::from_yaml(&tampered).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `keep_alive`"),
        "{err}"
    );
}

/// Through the binary: a manifest wildcard in `trusted_domains` reaches the
/// printed config as it is, and pipelock's validation (the stand-in's) takes it.
#[test]
fn proxy_config_carries_a_trusted_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claude-bottle.json");
    let manifest = serde_json::json!({
        "bottles": { "b": { "egress": {
            "allowlist": ["*.corp.example.com"],
            "trusted_domains": ["*.corp.example.com"]
        } } },
        "agents": { "a": { "bottle": "b" } }
    });
    std::fs::write(&path, manifest.to_string()).unwrap();
    let out = assert_cmd::Command::cargo_bin("claude-bottle")
        .unwrap()
        .arg("--manifest")
        .arg(&path)
        .args(["proxy-config", "a"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let yaml = String::from_utf8(out.stdout).unwrap();
    let config = match Config::from_yaml(&yaml) {
        Ok(config) => config,
        Err(e) => panic!("the stand-in refused the printed config: {e}\n{yaml}"),
    };
    assert_eq!(config.trusted_domains, ["*.corp.example.com"]);
}

fn trusted_domain() -> impl Strategy<Value = TrustedDomain> {
    prop_oneof![
        hostname().prop_map(TrustedDomain::Exact),
        hostname()
            .prop_filter("wildcards need two labels", |h| h.label_count() >= 2)
            .prop_map(TrustedDomain::Wildcard),
    ]
}

fn hostname() -> impl Strategy<Value = Hostname> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){1,3}"
        .prop_map(|s| Hostname::parse(&s).unwrap())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
        // Sparse IPv6 addresses print with `::`, the forms YAML is touchy about.
        (any::<u16>(), 0usize..8).prop_map(|(word, at)| {
            let mut words = [0u16; 8];
            words[at] = word;
            IpAddr::from(words)
        }),
    ]
}

fn cidr() -> impl Strategy<Value = IpNet> {
    (ip(), any::<u8>()).prop_map(|(ip, prefix)| {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        IpNet::new(ip, 1 + prefix % max).unwrap().trunc()
    })
}

fn allow_rule() -> impl Strategy<Value = AllowRule> {
    prop_oneof![
        hostname().prop_map(AllowRule::Exact),
        hostname()
            .prop_filter("wildcards need two labels", |h| h.label_count() >= 2)
            .prop_map(AllowRule::Wildcard),
        ip().prop_map(AllowRule::Ip),
    ]
}

proptest! {
    #[test]
    fn every_generated_config_is_accepted_and_round_trips(
        allowlist in prop::collection::vec(allow_rule(), 1..8),
        trusted_domains in prop::collection::vec(trusted_domain(), 0..4),
        ip_allowlist in prop::collection::vec(cidr(), 0..4),
        bottle in "[a-z][a-z0-9_-]{0,12}",
    ) {
        let policy = EgressPolicy { allowlist, trusted_domains, ip_allowlist };
        let config = accepted(&bottle, &policy);
        prop_assert_eq!(config.api_allowlist, strings(&policy.allowlist));
        prop_assert_eq!(config.trusted_domains, strings(&policy.trusted_domains));
        prop_assert_eq!(strings(&config.ip_allowlist), strings(&policy.ip_allowlist));
    }
}
