//! The manifest as a user writes it: what loads, what is refused, and how the
//! refusal reads. Every rule of SPEC §3 has a bad manifest here whose message
//! must name the JSON path and what was expected there.

use std::path::{Path, PathBuf};

use claude_bottle::diagnostic::Diagnostic;
use claude_bottle::manifest::{
    AllowRule, DEFAULT_MANIFEST_JSON, Discovery, EnvName, EnvValue, Hostname, Manifest,
    ManifestError, ManifestSource, Problem, SkillName, SshHostName, TrustedDomain, load_from_str,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn source() -> ManifestSource {
    ManifestSource::File(PathBuf::from("/home/u/claude-bottle.json"))
}

fn load(value: &Value) -> Result<Manifest, ManifestError> {
    load_from_str(&value.to_string(), source())
}

/// `err`'s message followed by one `\n  hint: ...` line per hint, as the
/// printer lays them out under `error:`: the whole text a user reads.
fn with_hints(err: &dyn Diagnostic) -> String {
    let mut text = err.to_string();
    for hint in err.hints() {
        text.push_str("\n  hint: ");
        text.push_str(&hint);
    }
    text
}

fn error_of(value: &Value) -> ManifestError {
    match load(value) {
        Ok(manifest) => panic!("expected an error for {value}, loaded {manifest:?}"),
        Err(err) => err,
    }
}

#[path = "manifest_support/mod.rs"]
mod manifest_support;

use manifest_support::{cases, with_agent, with_bottle, with_egress};

#[test]
fn every_rule_names_the_path_and_the_expectation() {
    let mut failures = Vec::new();
    for case in cases() {
        let message = error_of(&case.manifest).to_string();
        let file_named = message.starts_with("manifest `/home/u/claude-bottle.json`: ");
        if !file_named || !message.contains(case.path) || !message.contains(case.expected) {
            failures.push(format!(
                "{}: wanted path {:?} and {:?} in:\n{message}",
                case.name, case.path, case.expected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The same table through the binary: each bad manifest exits 2 with the
/// JSON path and the expectation on stderr, and nothing on stdout.
#[test]
fn every_rule_exits_two_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in cases() {
        let path = dir
            .path()
            .join(format!("{}.json", case.name.replace(' ', "_")));
        std::fs::write(&path, case.manifest.to_string()).unwrap();
        let out = assert_cmd::Command::cargo_bin("claude-bottle")
            .unwrap()
            .env("NO_COLOR", "1")
            .arg("--manifest")
            .arg(&path)
            .args(["proxy-config", "a"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2)
            || !out.stdout.is_empty()
            || !stderr.contains(case.path)
            || !stderr.contains(case.expected)
        {
            failures.push(format!(
                "{}: exit {:?}, wanted path {:?} and {:?} in:\n{stderr}",
                case.name,
                out.status.code(),
                case.path,
                case.expected
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// All the messages of the table in one reviewable file.
#[test]
fn error_messages_snapshot() {
    let rendered: Vec<String> = cases()
        .into_iter()
        .map(|case| {
            format!(
                "## {}\n{}\n=> {}",
                case.name,
                case.manifest,
                with_hints(&error_of(&case.manifest))
            )
        })
        .collect();
    insta::assert_snapshot!("error_messages", rendered.join("\n\n"));
}

#[test]
fn unknown_field_message_matches_the_spec_example() {
    let err = error_of(&with_egress(json!({ "alowlist": ["x.com"] })));
    insta::assert_snapshot!("unknown_field", with_hints(&err));
    let problem = &err.problems()[0];
    assert_eq!(
        problem.to_string(),
        "bottles.default.egress.alowlist: unknown field, expected one of allowlist, trusted_domains, ip_cidrs"
    );
    assert_eq!(problem.hints(), ["did you mean `allowlist`?"]);
}

#[test]
fn wrong_type_message_matches_the_spec_example() {
    let manifest =
        json!({ "bottles": { "b": {} }, "agents": { "rev": { "bottle": "b", "skills": 1 } } });
    assert_eq!(
        error_of(&manifest).problems()[0].to_string(),
        "agents.rev.skills: expected an array of strings, found a number"
    );
}

#[test]
fn a_bottle_with_runtime_gets_the_targeted_error() {
    let manifest = json!({
        "bottles": { "secure": { "runtime": "runsc", "egress": { "allowlist": ["x.com"] } } },
        "agents": { "a": { "bottle": "secure" } }
    });
    let err = error_of(&manifest);
    assert!(
        matches!(err.problems(), [Problem::RemovedRuntime { bottle, .. }] if bottle == "secure"),
        "{err:?}"
    );
    insta::assert_snapshot!("removed_runtime", with_hints(&err));
    // `runtime` anywhere else is just an unknown field.
    let err = error_of(&with_agent(json!({ "bottle": "dev", "runtime": "runsc" })));
    assert!(
        matches!(err.problems(), [Problem::UnknownField { .. }]),
        "{err:?}"
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let text = "{\n  \"bottles\": {\n    \"default\": {},\n  },\n  \"agents\": {}\n}";
    let err = load_from_str(text, source()).unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::Syntax {
                line: 4,
                column: 3,
                ..
            }
        ),
        "{err:?}"
    );
    insta::assert_snapshot!("syntax_error", err.to_string());

    let err = load_from_str("", source()).unwrap_err().to_string();
    assert!(err.contains("the file is empty"), "{err}");
    let err = load_from_str("{\"bottles\": {}", source()).unwrap_err();
    assert!(
        matches!(err, ManifestError::Syntax { line: 1, .. }),
        "{err:?}"
    );
    let err = load_from_str(&format!("{DEFAULT_MANIFEST_JSON}\n{{}}"), source()).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Syntax { message, .. } if message.contains("trailing characters")),
        "{err:?}"
    );
}

#[test]
fn odd_but_harmless_input_is_handled() {
    // A byte order mark, as some editors write, is not a syntax error.
    let with_bom = format!("\u{feff}{DEFAULT_MANIFEST_JSON}");
    assert!(load_from_str(&with_bom, source()).is_ok());
    // Deep nesting is refused without exhausting the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = load_from_str(&deep, source()).unwrap_err().to_string();
    assert!(err.contains("top level: expected an object"), "{err}");
    let deep = format!(r#"{{"bottles": {}"#, "[".repeat(100_000));
    assert!(load_from_str(&deep, source()).is_err());
    // A number too large for any type is a syntax error with its position.
    let big = DEFAULT_MANIFEST_JSON.replace(r#""ssh": []"#, r#""ssh": [{"Port": 1e400}]"#);
    let err = load_from_str(&big, source()).unwrap_err();
    assert!(
        matches!(err, ManifestError::Syntax { line: 5, .. }),
        "{err:?}"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let text = r#"{"bottles": {"b": {}, "b": {"image": "x"}}, "agents": {"a": {"bottle": "b"}}}"#;
    let err = load_from_str(text, source()).unwrap_err().to_string();
    assert!(err.contains("bottles.b: defined more than once"), "{err}");
    let text =
        r#"{"bottles": {"b": {"env": {"A": "1", "A": "2"}}}, "agents": {"a": {"bottle": "b"}}}"#;
    let err = load_from_str(text, source()).unwrap_err().to_string();
    assert!(
        err.contains("bottles.b.env.A: defined more than once"),
        "{err}"
    );
    let text =
        r#"{"bottles": {"b": {"image": "x", "image": "y"}}, "agents": {"a": {"bottle": "b"}}}"#;
    let err = load_from_str(text, source()).unwrap_err().to_string();
    assert!(
        err.contains("bottles.b.image: defined more than once"),
        "{err}"
    );
}

#[test]
fn value_problems_are_all_reported_at_once() {
    let manifest = json!({
        "bottles": {
            "default": {
                "env": { "OK": "x", "BAD": "a$b" },
                "egress": { "allowlist": ["*.com", "github.com"], "ip_cidrs": ["10.0.0.1/8"] }
            }
        },
        "agents": {
            "a": { "bottle": "nope" },
            "b": { "bottle": "default", "skills": ["../x"] }
        }
    });
    let err = error_of(&manifest);
    let paths: Vec<String> = err
        .problems()
        .iter()
        .map(|p| p.path().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "bottles.default.env.BAD",
            "bottles.default.egress.allowlist[0]",
            "bottles.default.egress.ip_cidrs[0]",
            "agents.a.bottle",
            "agents.b.skills[0]",
        ]
    );
    insta::assert_snapshot!("several_problems", err.to_string());
}

#[test]
fn env_values_never_appear_in_messages() {
    let secret = "hunter2-$-not-escaped";
    let err = error_of(&with_bottle(json!({ "env": { "TOKEN": secret } }))).to_string();
    assert!(err.contains("bottles.default.env.TOKEN"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let err = error_of(&with_bottle(json!({ "image": "hunter2", "imag": 1 }))).to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn the_spec_example_loads_with_its_defaults_filled_in() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests/spec-example.json");
    let discovery = Discovery {
        explicit: Some(path.clone()),
        cwd: PathBuf::from("/"),
        ..Discovery::default()
    };
    let manifest = discovery.load().unwrap();
    assert_eq!(manifest.source, ManifestSource::File(path));

    let bottle = &manifest.bottles["default"];
    let name = |n: &str| EnvName::parse(n).unwrap();
    assert_eq!(
        bottle.env[&name("GIT_AUTHOR_NAME")],
        EnvValue::Literal("Bottle Bot".into())
    );
    assert_eq!(
        bottle.env[&name("GITHUB_TOKEN")],
        EnvValue::HostVar(name("GITHUB_TOKEN"))
    );
    assert_eq!(
        bottle.env[&name("PRICE")],
        EnvValue::Literal("$5 or ${FREE}".into())
    );

    let [github, backup] = &bottle.ssh[..] else {
        panic!("two ssh entries expected: {:?}", bottle.ssh)
    };
    assert_eq!(github.host, "github.com");
    assert_eq!(
        github.host_name,
        SshHostName::Dns(Hostname::parse("github.com").unwrap())
    );
    assert_eq!(github.user.as_deref(), Some("git"));
    assert_eq!(github.port, 22);
    assert_eq!(github.identity_file, "~/.ssh/id_ed25519_bottle");
    assert_eq!(
        backup.host_name,
        SshHostName::Ip("192.0.2.10".parse().unwrap())
    );
    assert_eq!(backup.port, 2222);
    assert_eq!(backup.user, None);

    let allow: Vec<String> = bottle
        .egress
        .allowlist
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        allow,
        [
            "api.anthropic.com",
            "statsig.anthropic.com",
            "sentry.io",
            "*.githubusercontent.com",
            "203.0.113.5"
        ]
    );
    assert!(matches!(bottle.egress.allowlist[3], AllowRule::Wildcard(_)));
    assert!(matches!(bottle.egress.allowlist[4], AllowRule::Ip(_)));
    assert_eq!(
        bottle.egress.trusted_domains,
        [TrustedDomain::Exact(
            Hostname::parse("git.internal.example").unwrap()
        )]
    );
    assert_eq!(bottle.egress.ip_cidrs, ["10.20.0.0/16".parse().unwrap()]);
    assert_eq!(bottle.image.as_deref(), Some("optional/prebuilt-image:tag"));

    let reviewer = &manifest.agents["reviewer"];
    assert_eq!(reviewer.bottle, "default");
    assert_eq!(reviewer.skills, [SkillName::parse("code-review").unwrap()]);
    assert_eq!(reviewer.prompt, "You review pull requests.");
    assert_eq!(manifest.bottle_of(reviewer), bottle);

    let minimal = &manifest.agents["minimal"];
    assert!(minimal.skills.is_empty());
    assert_eq!(minimal.prompt, "");
    assert_eq!(manifest.bottles["bare"], Default::default());
}

/// Pipelock's `ValidateTrustedDomains` takes `*.` wildcards, and so does the
/// manifest, normalised the way pipelock normalises them.
#[test]
fn trusted_domains_take_exact_hosts_and_wildcards() {
    let manifest = load(&with_egress(json!({
        "trusted_domains": ["*.corp.example.com", "Git.Internal.Example.", "*.LAN.example."]
    })))
    .unwrap();
    let host = |h: &str| Hostname::parse(h).unwrap();
    assert_eq!(
        manifest.bottles["default"].egress.trusted_domains,
        [
            TrustedDomain::Wildcard(host("corp.example.com")),
            TrustedDomain::Exact(host("git.internal.example")),
            TrustedDomain::Wildcard(host("lan.example")),
        ]
    );
    let shown: Vec<String> = manifest.bottles["default"]
        .egress
        .trusted_domains
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "*.corp.example.com",
            "git.internal.example",
            "*.lan.example"
        ]
    );
}

#[test]
fn the_embedded_default_has_exactly_the_spec_hosts() {
    let manifest = load_from_str(DEFAULT_MANIFEST_JSON, ManifestSource::Embedded).unwrap();
    assert_eq!(manifest.source, ManifestSource::Embedded);
    assert_eq!(manifest.agents.keys().collect::<Vec<_>>(), ["claude"]);
    assert_eq!(manifest.bottles.keys().collect::<Vec<_>>(), ["default"]);
    let claude = &manifest.agents["claude"];
    assert_eq!(claude.bottle, "default");
    assert!(claude.skills.is_empty());
    assert_eq!(claude.prompt, "");

    let bottle = &manifest.bottles["default"];
    let hosts: Vec<String> = bottle
        .egress
        .allowlist
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        hosts,
        [
            "api.anthropic.com",
            "statsig.anthropic.com",
            "statsig.com",
            "sentry.io",
            "*.sentry.io",
            "claude.ai",
            "console.anthropic.com",
            "registry.npmjs.org",
            "github.com",
            "api.github.com",
            "codeload.github.com",
            "*.githubusercontent.com",
        ]
    );
    assert!(bottle.env.is_empty() && bottle.ssh.is_empty() && bottle.image.is_none());
    assert!(bottle.egress.trusted_domains.is_empty() && bottle.egress.ip_cidrs.is_empty());
}

#[test]
fn explicit_manifest_paths_that_do_not_exist_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let discovery = Discovery {
        explicit: Some("nowhere.json".into()),
        cwd: dir.path().to_path_buf(),
        ..Discovery::default()
    };
    let err = discovery.load().unwrap_err();
    insta::assert_snapshot!(
        "explicit_path_missing",
        with_hints(&err).replace(&dir.path().display().to_string(), "[DIR]")
    );
}

// ---------------------------------------------------------------------------
// Robustness: whatever the input, loading returns Ok or Err, never panics, and
// what loads keeps the invariants the rest of the program relies on.

fn check_never_panics(text: &str) -> Result<(), TestCaseError> {
    match load_from_str(text, ManifestSource::Embedded) {
        Ok(manifest) => {
            prop_assert!(!manifest.bottles.is_empty() && !manifest.agents.is_empty());
            for agent in manifest.agents.values() {
                prop_assert!(manifest.bottles.contains_key(&agent.bottle));
            }
        }
        Err(err) => prop_assert!(!err.to_string().is_empty()),
    }
    Ok(())
}

/// Keys and strings a manifest is made of, plus near misses.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "bottles",
            "agents",
            "default",
            "env",
            "ssh",
            "egress",
            "image",
            "runtime",
            "allowlist",
            "trusted_domains",
            "ip_cidrs",
            "bottle",
            "skills",
            "prompt",
            "Host",
            "HostName",
            "User",
            "Port",
            "IdentityFile",
            "GITHUB_TOKEN",
            "${GITHUB_TOKEN}",
            "$X",
            "$$",
            "a${B}c",
            "${}",
            "*",
            "*.com",
            "*.example.com",
            "github.com",
            "https://x.com",
            "x.com:443",
            "10.0.0.0/8",
            "10.0.0.1/8",
            "0.0.0.0/0",
            "::1",
            "~/.ssh/id",
            "..",
            "a/b",
            "",
            " ",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![0i64, 1, 22, 65535, 65536, -1]).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(word(), inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Manifest-shaped documents: right skeleton, arbitrary leaves, so that the
/// validation behind the shape checks is reached often.
fn manifest_like() -> impl Strategy<Value = Value> {
    let bottle = (
        prop::collection::btree_map(word(), word(), 0..3),
        prop::collection::vec(
            (json_value(), word(), json_value()).prop_map(|(host, file, port)| {
                json!({ "Host": host, "IdentityFile": file, "Port": port })
            }),
            0..2,
        ),
        prop::collection::vec(word(), 0..4),
        prop::collection::vec(word(), 0..2),
    )
        .prop_map(|(env, ssh, allow, cidrs)| {
            json!({ "env": env, "ssh": ssh, "egress": { "allowlist": allow, "ip_cidrs": cidrs } })
        });
    let agent = (word(), prop::collection::vec(word(), 0..3), json_value()).prop_map(
        |(bottle, skills, prompt)| json!({ "bottle": bottle, "skills": skills, "prompt": prompt }),
    );
    (
        prop::collection::btree_map(word(), bottle, 0..3),
        prop::collection::btree_map(word(), agent, 0..3),
    )
        .prop_map(|(bottles, agents)| json!({ "bottles": bottles, "agents": agents }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_never_panics(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        check_never_panics(&value.to_string())?;
    }

    #[test]
    fn manifest_shaped_json_never_panics(value in manifest_like()) {
        check_never_panics(&value.to_string())?;
    }

    /// Any text, written with `$$` for each `$`, loads as exactly that text.
    #[test]
    fn escaped_literals_round_trip(text in "\\PC{0,20}") {
        let escaped = text.replace('$', "$$");
        let manifest = load(&with_bottle(json!({ "env": { "V": escaped } }))).unwrap();
        let value = &manifest.bottles["default"].env[&EnvName::parse("V").unwrap()];
        prop_assert_eq!(value, &EnvValue::Literal(text));
    }
}
