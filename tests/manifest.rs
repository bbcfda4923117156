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

/// A manifest with one bottle `default` (the given JSON) and one agent `a` in it.
fn with_bottle(bottle: Value) -> Value {
    json!({ "bottles": { "default": bottle }, "agents": { "a": { "bottle": "default" } } })
}

/// A manifest with bottles `default` and `dev` and one agent `a` (the given JSON).
fn with_agent(agent: Value) -> Value {
    json!({ "bottles": { "default": {}, "dev": {} }, "agents": { "a": agent } })
}

fn with_ssh(entry: Value) -> Value {
    with_bottle(json!({ "ssh": [entry] }))
}

fn with_egress(egress: Value) -> Value {
    with_bottle(json!({ "egress": egress }))
}

/// One bad manifest: the path the message must name and a fragment of what it
/// must say was expected.
struct Case {
    name: &'static str,
    manifest: Value,
    path: &'static str,
    expected: &'static str,
}

fn case(name: &'static str, manifest: Value, path: &'static str, expected: &'static str) -> Case {
    Case {
        name,
        manifest,
        path,
        expected,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // The top level.
        case(
            "bottles missing",
            json!({ "agents": { "a": { "bottle": "b" } } }),
            "bottles: required",
            "expected an object mapping bottle names",
        ),
        case(
            "agents missing",
            json!({ "bottles": { "b": {} } }),
            "agents: required",
            "expected an object mapping agent names",
        ),
        case(
            "bottles empty",
            json!({ "bottles": {}, "agents": { "a": { "bottle": "b" } } }),
            "bottles: no bottle is defined",
            "expected at least one bottle",
        ),
        case(
            "agents empty",
            json!({ "bottles": { "b": {} }, "agents": {} }),
            "agents: no agent is defined",
            "expected at least one agent",
        ),
        case(
            "unknown top-level key",
            json!({ "bottles": { "b": {} }, "agents": { "a": { "bottle": "b" } }, "agent": {} }),
            "agent: unknown field",
            "expected one of bottles, agents",
        ),
        case(
            "top level not an object",
            json!([1, 2]),
            "top level",
            "expected an object with `bottles` and `agents`, found an array",
        ),
        case(
            "bottles not an object",
            json!({ "bottles": ["default"], "agents": {} }),
            "bottles",
            "expected an object mapping bottle names to bottle objects, found an array",
        ),
        case(
            "bottle not an object",
            json!({ "bottles": { "b": "x" }, "agents": {} }),
            "bottles.b",
            "expected a bottle object with optional env, ssh, egress, image, found a string",
        ),
        case(
            "empty bottle name",
            json!({ "bottles": { "": {} }, "agents": { "a": { "bottle": "" } } }),
            "bottles[\"\"]",
            "expected a non-empty name",
        ),
        // A bottle.
        case(
            "unknown bottle key",
            with_bottle(json!({ "imag": "x" })),
            "bottles.default.imag: unknown field",
            "expected one of env, ssh, egress, image",
        ),
        case(
            "removed runtime",
            with_bottle(json!({ "runtime": "runsc" })),
            "bottles.default.runtime: the field was removed",
            "gVisor (`runsc`) is now detected automatically and used whenever the Docker daemon has it registered",
        ),
        case(
            "null is not absent",
            with_bottle(json!({ "image": null })),
            "bottles.default.image",
            "expected a string, found null",
        ),
        case(
            "image empty",
            with_bottle(json!({ "image": "" })),
            "bottles.default.image: empty image name",
            "expected an image reference",
        ),
        case(
            "image not a string",
            with_bottle(json!({ "image": 3 })),
            "bottles.default.image",
            "expected a string, found a number",
        ),
        // env
        case(
            "env not an object",
            with_bottle(json!({ "env": ["A=b"] })),
            "bottles.default.env",
            "expected an object mapping variable names to strings, found an array",
        ),
        case(
            "env name invalid",
            with_bottle(json!({ "env": { "1BAD": "x" } })),
            "bottles.default.env.1BAD",
            "expected a name matching `[A-Za-z_][A-Za-z0-9_]*`",
        ),
        case(
            "env name with a dash",
            with_bottle(json!({ "env": { "MY-VAR": "x" } })),
            "bottles.default.env.MY-VAR",
            "expected a name matching",
        ),
        case(
            "env value a number",
            with_bottle(json!({ "env": { "PORT": 8080 } })),
            "bottles.default.env.PORT",
            "expected a string, found a number",
        ),
        case(
            "env value interpolated",
            with_bottle(json!({ "env": { "URL": "a${B}c" } })),
            "bottles.default.env.URL",
            "expected a literal (with `$$` for each literal `$`), or exactly `${VAR}` or `$VAR`",
        ),
        case(
            "env value empty reference",
            with_bottle(json!({ "env": { "X": "${}" } })),
            "bottles.default.env.X",
            "`$$`",
        ),
        case(
            "env value bad reference name",
            with_bottle(json!({ "env": { "X": "$1x" } })),
            "bottles.default.env.X",
            "`$$`",
        ),
        // ssh
        case(
            "ssh not an array",
            with_bottle(json!({ "ssh": { "Host": "x" } })),
            "bottles.default.ssh",
            "expected an array of SSH entry objects, found an object",
        ),
        case(
            "ssh entry not an object",
            with_bottle(json!({ "ssh": ["github.com"] })),
            "bottles.default.ssh[0]",
            "expected an SSH entry object",
        ),
        case(
            "ssh Host missing",
            with_ssh(json!({ "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host: required",
            "expected a non-empty alias",
        ),
        case(
            "ssh Host empty",
            with_ssh(json!({ "Host": "", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host: empty alias",
            "expected a non-empty alias",
        ),
        case(
            "ssh Host with whitespace",
            with_ssh(
                json!({ "Host": "git hub", "HostName": "github.com", "IdentityFile": "~/.ssh/k" }),
            ),
            "bottles.default.ssh[0].Host",
            "without whitespace",
        ),
        case(
            "ssh Host pattern",
            with_ssh(json!({ "Host": "*", "HostName": "github.com", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host",
            "pattern characters",
        ),
        case(
            "ssh HostName invalid",
            with_ssh(
                json!({ "Host": "gh", "HostName": "https://github.com", "IdentityFile": "~/.ssh/k" }),
            ),
            "bottles.default.ssh[0].HostName",
            "expected a DNS name or an IP address",
        ),
        case(
            "ssh HostName default not a host",
            with_ssh(json!({ "Host": "-gh", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host: HostName is not set, so it defaults to Host",
            "expected a DNS name or an IP address",
        ),
        case(
            "ssh User empty",
            with_ssh(json!({ "Host": "github.com", "User": "", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].User",
            "expected a user name without whitespace",
        ),
        case(
            "ssh Port zero",
            with_ssh(json!({ "Host": "github.com", "Port": 0, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: 0 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port too large",
            with_ssh(json!({ "Host": "github.com", "Port": 65536, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: 65536 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port negative",
            with_ssh(json!({ "Host": "github.com", "Port": -22, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: -22 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port fractional",
            with_ssh(json!({ "Host": "github.com", "Port": 22.5, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: 22.5 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port a string",
            with_ssh(json!({ "Host": "github.com", "Port": "22", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port",
            "expected an integer from 1 to 65535, found a string",
        ),
        case(
            "ssh IdentityFile missing",
            with_ssh(json!({ "Host": "github.com" })),
            "bottles.default.ssh[0].IdentityFile: required",
            "expected the path of a private key file",
        ),
        case(
            "ssh IdentityFile empty",
            with_ssh(json!({ "Host": "github.com", "IdentityFile": "" })),
            "bottles.default.ssh[0].IdentityFile: empty path",
            "expected the path of a private key file",
        ),
        case(
            "ssh unknown key",
            with_ssh(
                json!({ "Host": "github.com", "Hostname": "github.com", "IdentityFile": "~/.ssh/k" }),
            ),
            "bottles.default.ssh[0].Hostname: unknown field",
            "expected one of Host, HostName, User, Port, IdentityFile",
        ),
        case(
            "ssh duplicate alias",
            with_bottle(
                json!({ "ssh": [{ "Host": "github.com", "IdentityFile": "~/.ssh/a" }, { "Host": "github.com", "IdentityFile": "~/.ssh/b" }] }),
            ),
            "bottles.default.ssh[1].Host: alias `github.com` is already used by ssh[0]",
            "expected a distinct Host alias",
        ),
        // egress
        case(
            "egress unknown key",
            with_egress(json!({ "alowlist": [] })),
            "bottles.default.egress.alowlist: unknown field",
            "expected one of allowlist, trusted_domains, ip_cidrs",
        ),
        case(
            "egress not an object",
            with_egress(json!(["api.anthropic.com"])),
            "bottles.default.egress",
            "expected an egress object with optional allowlist, trusted_domains, ip_cidrs, found an array",
        ),
        case(
            "allowlist not an array",
            with_egress(json!({ "allowlist": "github.com" })),
            "bottles.default.egress.allowlist",
            "expected an array of strings, found a string",
        ),
        case(
            "allowlist entry not a string",
            with_egress(json!({ "allowlist": ["github.com", 7] })),
            "bottles.default.egress.allowlist[1]",
            "expected a string, found a number",
        ),
        case(
            "allowlist scheme",
            with_egress(
                json!({ "allowlist": ["github.com", "x.com", "https://api.github.com/repos"] }),
            ),
            "bottles.default.egress.allowlist[2]: `https://api.github.com/repos` is a URL",
            "expected a hostname, `*.` followed by at least two labels",
        ),
        case(
            "allowlist port",
            with_egress(json!({ "allowlist": ["github.com:443"] })),
            "bottles.default.egress.allowlist[0]: `github.com:443` has a port",
            "expected a hostname",
        ),
        case(
            "allowlist path",
            with_egress(json!({ "allowlist": ["github.com/org"] })),
            "bottles.default.egress.allowlist[0]: `github.com/org` has a path",
            "expected a hostname",
        ),
        case(
            "allowlist spaces",
            with_egress(json!({ "allowlist": ["git hub.com"] })),
            "bottles.default.egress.allowlist[0]: `git hub.com` contains whitespace",
            "expected a hostname",
        ),
        case(
            "allowlist bare star",
            with_egress(json!({ "allowlist": ["*"] })),
            "bottles.default.egress.allowlist[0]: a bare `*` would admit every host",
            "expected a hostname",
        ),
        case(
            "allowlist top-level wildcard",
            with_egress(json!({ "allowlist": ["*.com"] })),
            "bottles.default.egress.allowlist[0]: `*.com` would admit a whole top-level domain",
            "`*.` followed by at least two labels",
        ),
        case(
            "allowlist inner star",
            with_egress(json!({ "allowlist": ["api.*.com"] })),
            "bottles.default.egress.allowlist[0]: `api.*.com` has a `*` that is not a leading `*.`",
            "expected a hostname",
        ),
        case(
            "allowlist empty entry",
            with_egress(json!({ "allowlist": [""] })),
            "bottles.default.egress.allowlist[0]: empty entry",
            "expected a hostname",
        ),
        case(
            "trusted domain URL",
            with_egress(json!({ "trusted_domains": ["http://git.internal"] })),
            "bottles.default.egress.trusted_domains[0]: `http://git.internal` is a URL",
            "expected an exact hostname",
        ),
        case(
            "trusted domain port",
            with_egress(json!({ "trusted_domains": ["git.internal:22"] })),
            "bottles.default.egress.trusted_domains[0]: `git.internal:22` has a port",
            "expected an exact hostname",
        ),
        case(
            "trusted domain star",
            with_egress(json!({ "trusted_domains": ["*"] })),
            "bottles.default.egress.trusted_domains[0]: a bare `*` would turn the SSRF check off",
            "expected an exact hostname such as `git.internal.example.com`, or `*.` followed by at least two labels",
        ),
        case(
            "trusted domain top-level wildcard",
            with_egress(json!({ "trusted_domains": ["*.com"] })),
            "bottles.default.egress.trusted_domains[0]: `*.com` would trust a whole top-level domain",
            "`*.` followed by at least two labels (like `*.corp.example.com`)",
        ),
        case(
            "trusted domain port after a wildcard",
            with_egress(json!({ "trusted_domains": ["*.corp.example.com", "a.com:22"] })),
            "bottles.default.egress.trusted_domains[1]: `a.com:22` has a port",
            "expected an exact hostname",
        ),
        case(
            "trusted domain https URL",
            with_egress(json!({ "trusted_domains": ["https://a.com"] })),
            "bottles.default.egress.trusted_domains[0]: `https://a.com` is a URL",
            "expected an exact hostname",
        ),
        case(
            "trusted domain inner star",
            with_egress(json!({ "trusted_domains": ["*.*.example.com"] })),
            "bottles.default.egress.trusted_domains[0]: `*.*.example.com` is not `*.` followed by a hostname",
            "expected an exact hostname",
        ),
        case(
            "trusted domain IP",
            with_egress(json!({ "trusted_domains": ["10.0.0.1"] })),
            "bottles.default.egress.trusted_domains[0]: `10.0.0.1` is an IP address",
            "expected an exact hostname",
        ),
        case(
            "ip_cidrs slash zero",
            with_egress(json!({ "ip_cidrs": ["0.0.0.0/0"] })),
            "bottles.default.egress.ip_cidrs[0]: `0.0.0.0/0` would exempt every address",
            "expected a CIDR such as `10.0.0.0/8`, not `/0`, with no host bits set",
        ),
        case(
            "ip_cidrs host bits",
            with_egress(json!({ "ip_cidrs": ["10.0.0.1/8"] })),
            "bottles.default.egress.ip_cidrs[0]: `10.0.0.1/8` has host bits set",
            "expected a CIDR",
        ),
        case(
            "ip_cidrs not a CIDR",
            with_egress(json!({ "ip_cidrs": ["10.0.0.1"] })),
            "bottles.default.egress.ip_cidrs[0]: `10.0.0.1` is not a CIDR",
            "expected a CIDR",
        ),
        // An agent.
        case(
            "agent bottle missing",
            with_agent(json!({ "prompt": "p" })),
            "agents.a.bottle: required",
            "expected the name of a bottle (defined: `default`, `dev`)",
        ),
        case(
            "agent bottle undefined",
            with_agent(json!({ "bottle": "prod" })),
            "agents.a.bottle: bottle `prod` is not defined",
            "expected one of the defined bottles: `default`, `dev`",
        ),
        case(
            "agent not an object",
            with_agent(json!("default")),
            "agents.a",
            "expected an agent object with bottle and optional skills, prompt, found a string",
        ),
        case(
            "agent unknown key",
            with_agent(json!({ "bottle": "dev", "skill": [] })),
            "agents.a.skill: unknown field",
            "expected one of bottle, skills, prompt",
        ),
        case(
            "skills not an array",
            with_agent(json!({ "bottle": "dev", "skills": 3 })),
            "agents.a.skills",
            "expected an array of strings, found a number",
        ),
        case(
            "skill with a slash",
            with_agent(json!({ "bottle": "dev", "skills": ["ok", "a/b"] })),
            "agents.a.skills[1]: `a/b` is not a skill directory name",
            "without `/` or `..`",
        ),
        case(
            "skill with dots",
            with_agent(json!({ "bottle": "dev", "skills": [".."] })),
            "agents.a.skills[0]",
            "without `/` or `..`",
        ),
        case(
            "skill empty",
            with_agent(json!({ "bottle": "dev", "skills": [""] })),
            "agents.a.skills[0]",
            "expected the name of a directory under ~/.claude/skills/",
        ),
        case(
            "prompt not a string",
            with_agent(json!({ "bottle": "dev", "prompt": ["a"] })),
            "agents.a.prompt",
            "expected a string, found an array",
        ),
    ]
}

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
