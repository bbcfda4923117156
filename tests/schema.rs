//! The JSON Schema of `claude-bottle schema` agrees with the loader: every
//! manifest the loader accepts validates, and every bad manifest of the
//! loader's table fails validation, except the few whose rule a schema cannot
//! state, which are named here.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use claude_bottle::manifest::{
    DEFAULT_MANIFEST_JSON, LOADER_ONLY_RULES, ManifestSource, json_schema, load_from_str,
};
use serde_json::{Value, json};

#[path = "manifest_support/mod.rs"]
mod manifest_support;

use manifest_support::{cases, with_agent, with_bottle, with_egress, with_ssh};

/// The table's bad manifests that only the loader refuses, each with the rule
/// of [`LOADER_ONLY_RULES`] it breaks. A new rule in the table that the schema
/// lets through fails the test until it is either expressed in the schema or
/// named here.
const SEMANTIC_ONLY: &[(&str, &str)] = &[
    (
        "agent bottle undefined",
        "must name one of the manifest's bottles",
    ),
    ("ssh duplicate alias", "must be distinct"),
    ("ip_cidrs host bits", "no host bits set"),
];

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&json_schema()).expect("the schema compiles")
}

fn loads(manifest: &Value) -> bool {
    load_from_str(
        &manifest.to_string(),
        ManifestSource::File(PathBuf::from("/m.json")),
    )
    .is_ok()
}

fn errors(validator: &jsonschema::Validator, manifest: &Value) -> Vec<String> {
    validator
        .iter_errors(manifest)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_schema_is_draft_2020_12_and_describes_the_loader_only_rules() {
    let schema = json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
    let description = schema["description"].as_str().unwrap();
    for rule in LOADER_ONLY_RULES {
        assert!(description.contains(rule), "{rule} not described");
    }
    for (_, rule) in SEMANTIC_ONLY {
        assert!(
            LOADER_ONLY_RULES.iter().any(|r| r.contains(rule)),
            "{rule} is not among LOADER_ONLY_RULES"
        );
    }
}

#[test]
fn every_bad_manifest_of_the_table_fails_validation_unless_semantic() {
    let validator = validator();
    let mut failures = Vec::new();
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    for (name, _) in SEMANTIC_ONLY {
        assert!(names.contains(name), "no case `{name}` in the table");
    }
    for case in cases() {
        assert!(
            !loads(&case.manifest),
            "{}: the loader accepts it",
            case.name
        );
        let valid = validator.is_valid(&case.manifest);
        let semantic = SEMANTIC_ONLY.iter().any(|(name, _)| *name == case.name);
        match (valid, semantic) {
            (true, false) => failures.push(format!("{}: the schema accepts it", case.name)),
            (false, true) => failures.push(format!(
                "{}: listed as semantic-only, yet the schema refuses it",
                case.name
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The first ```json block under the README's "The manifest".
fn readme_example() -> Value {
    let readme = std::fs::read_to_string(fixture("README.md")).unwrap();
    let section = &readme[readme.find("## The manifest").expect("the section")..];
    let start = section.find("```json\n").expect("a json block") + "```json\n".len();
    let end = start + section[start..].find("```").unwrap();
    serde_json::from_str(&section[start..end]).expect("the README example is JSON")
}

fn good_manifests() -> Vec<(String, Value)> {
    let mut good = vec![
        ("README example".to_owned(), readme_example()),
        (
            "embedded default".to_owned(),
            serde_json::from_str(DEFAULT_MANIFEST_JSON).unwrap(),
        ),
        (
            "spec example".to_owned(),
            serde_json::from_str(
                &std::fs::read_to_string(fixture("tests/fixtures/manifests/spec-example.json"))
                    .unwrap(),
            )
            .unwrap(),
        ),
        (
            "$schema key".to_owned(),
            json!({
                "$schema": "./schema.json",
                "bottles": { "b": {} },
                "agents": { "a": { "bottle": "b" } }
            }),
        ),
        (
            "names with spaces and dots".to_owned(),
            json!({ "bottles": { "my bottle.v2": {} }, "agents": { " a ": { "bottle": "my bottle.v2" } } }),
        ),
        (
            "env values".to_owned(),
            with_bottle(json!({ "env": {
                "A": "${HOME}", "_b": "$PATH", "C1": "pa$$word", "D": "", "E": "$${X}",
                "F": "line\nbreak", "G": "$$$$", "H": "unicodé ✓"
            } })),
        ),
        (
            "egress hosts".to_owned(),
            with_egress(json!({
                "allowlist": [
                    "API.Anthropic.com.", "*.githubusercontent.com", "*.b.c.", "x_y.example",
                    "10.1.2.3", "::1", "2001:db8::1", "fe80::", "::ffff:1.2.3.4",
                    "1:2:3:4:5:6:7:8", "1::2:3:4:5:6:7", "1:2::1.2.3.4", "localhost",
                    "*.1.2.3.4.", "a-b.c"
                ],
                "trusted_domains": ["git.internal.example.com", "*.Corp.Example.com.", "10.0.0.1.", "localhost"],
                "ip_cidrs": ["10.0.0.0/8", "192.168.1.0/24", "1.2.3.4/32", "fd00::/8", "2001:db8::/48", "::1/128"]
            })),
        ),
        (
            "ssh entries".to_owned(),
            with_bottle(json!({ "ssh": [
                { "Host": "github.com", "IdentityFile": "~/.ssh/k" },
                { "Host": "forge", "HostName": "git.example.test", "User": "git", "Port": 2222, "IdentityFile": "~/.ssh/id forge" },
                { "Host": "backup", "HostName": "192.0.2.10", "Port": 65535, "IdentityFile": "/k" },
                { "Host": "v6", "HostName": "2001:db8::2", "Port": 1, "IdentityFile": "k" },
                { "Host": "10.0.0.9", "IdentityFile": "k" }
            ] })),
        ),
        (
            "agent fields".to_owned(),
            with_agent(
                json!({ "bottle": "dev", "skills": ["code-review", "a.b", ".hidden", "x y"], "prompt": "" }),
            ),
        ),
        (
            "image".to_owned(),
            with_bottle(json!({ "image": "ghcr.io/a/b:1@sha256:00" })),
        ),
    ];
    let long_label = "a".repeat(63);
    let long_host = [long_label.as_str(); 4].join(".")[..253]
        .trim_end_matches('.')
        .to_owned();
    good.push((
        "long hostname".to_owned(),
        with_egress(json!({ "allowlist": [long_host.clone(), format!("{long_host}.")] })),
    ));
    good
}

#[test]
fn every_good_manifest_loads_and_validates() {
    let validator = validator();
    let mut failures = Vec::new();
    for (name, manifest) in good_manifests() {
        if let Err(err) = load_from_str(
            &manifest.to_string(),
            ManifestSource::File(PathBuf::from("/m.json")),
        ) {
            failures.push(format!("{name}: the loader refuses it: {err}"));
        }
        let errors = errors(&validator, &manifest);
        if !errors.is_empty() {
            failures.push(format!("{name}: {}", errors.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Single entries beyond the table, each refused by both.
#[test]
fn more_bad_entries_are_refused_by_both() {
    let validator = validator();
    let too_long = ["a"; 127].join(".") + ".ab";
    let bad = [
        with_egress(json!({ "allowlist": ["*.1.2.3.4"] })),
        with_egress(json!({ "allowlist": ["-x.com"] })),
        with_egress(json!({ "allowlist": ["[::1]:22"] })),
        with_egress(json!({ "allowlist": [":::"] })),
        with_egress(json!({ "allowlist": ["1:2:3:4:5:6:7:8:9"] })),
        with_egress(json!({ "allowlist": ["a..b"] })),
        with_egress(json!({ "allowlist": [too_long] })),
        with_egress(json!({ "allowlist": ["*."] })),
        with_egress(json!({ "trusted_domains": ["::1"] })),
        with_egress(json!({ "trusted_domains": ["*"] })),
        with_egress(json!({ "ip_cidrs": ["0.0.0.0/0"] })),
        with_egress(json!({ "ip_cidrs": ["10.0.0.0/33"] })),
        with_egress(json!({ "ip_cidrs": ["::/0"] })),
        with_bottle(json!({ "env": { "A": "$$$" } })),
        with_bottle(json!({ "env": { "A": "$A$B" } })),
        with_bottle(json!({ "env": { "A": "${A-B}" } })),
        with_bottle(json!({ "image": "a\u{7}b" })),
        with_ssh(json!({ "Host": "a,b", "HostName": "x.com", "IdentityFile": "k" })),
        with_ssh(json!({ "Host": "x.com", "IdentityFile": " " })),
        with_ssh(json!({ "Host": "x.com", "IdentityFile": "a\u{1}" })),
        with_ssh(json!({ "Host": "x.com", "User": "a b", "IdentityFile": "k" })),
        with_agent(json!({ "bottle": "dev", "skills": ["."] })),
        with_agent(json!({ "bottle": "dev", "skills": ["a..b"] })),
        json!({ "$schema": 1, "bottles": { "b": {} }, "agents": { "a": { "bottle": "b" } } }),
        json!({ "bottles": { " ": {} }, "agents": { "a": { "bottle": " " } } }),
    ];
    let mut failures = Vec::new();
    for manifest in bad {
        if loads(&manifest) {
            failures.push(format!("the loader accepts {manifest}"));
        }
        if validator.is_valid(&manifest) {
            failures.push(format!("the schema accepts {manifest}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_schema_command_prints_the_schema_on_stdout() {
    let out = Command::cargo_bin("claude-bottle")
        .unwrap()
        .arg("schema")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, json_schema());
}
