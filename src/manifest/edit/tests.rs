use proptest::prelude::*;

use super::*;
use crate::diagnostic::with_hints;
use crate::manifest::{DEFAULT_MANIFEST_JSON, ManifestSource, load_from_str};

fn rule(raw: &str) -> AllowRule {
    parse_allow_rule(raw).unwrap_or_else(|refusal| panic!("{raw}: {}", refusal.message))
}

fn rules(raw: &[&str]) -> Vec<AllowRule> {
    raw.iter().map(|r| rule(r)).collect()
}

fn add(text: &str, bottle: &str, hosts: &[&str]) -> Edited {
    add_to_allowlist(text, bottle, &rules(hosts)).unwrap()
}

fn remove(text: &str, bottle: &str, hosts: &[&str]) -> Edited {
    remove_from_allowlist(text, bottle, &rules(hosts)).unwrap()
}

/// The allowlist the manifest loader reads from `text`.
fn loaded_allowlist(text: &str, bottle: &str) -> Vec<String> {
    let manifest = load_from_str(text, ManifestSource::Embedded)
        .unwrap_or_else(|err| panic!("{}\n---\n{text}", with_hints(&err)));
    manifest.bottles[bottle]
        .egress
        .allowlist
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Carriage returns and tabs made visible, for snapshots of such files.
fn visible(text: &str) -> String {
    text.replace('\r', "␍").replace('\t', "→   ")
}

/// Asserts `after` is `before` with one piece of text inserted: nothing of
/// `before` was changed or lost.
fn assert_pure_insertion(before: &str, after: &str) {
    let prefix = before
        .bytes()
        .zip(after.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = before[prefix..]
        .bytes()
        .rev()
        .zip(after[prefix..].bytes().rev())
        .take_while(|(a, b)| a == b)
        .count();
    assert_eq!(
        prefix + suffix,
        before.len(),
        "not a pure insertion:\n{before}\n---\n{after}"
    );
}

const README_STYLE: &str = r#"{
  "bottles": {
    "default": {
      "env": {
        "GIT_AUTHOR_NAME": "Bottle \"Bot\" \u00e9",
        "GITHUB_TOKEN": "${GITHUB_TOKEN}"
      },
      "ssh": [
        { "Host": "github.com", "User": "git", "IdentityFile": "~/.ssh/id_ed25519_bottle" }
      ],
      "egress": {
        "allowlist": ["api.anthropic.com", "statsig.anthropic.com", "sentry.io"],
        "trusted_domains": [],
        "ip_cidrs": []
      }
    },
    "bare": {}
  },
  "agents": {
    "reviewer": { "bottle": "default", "skills": ["code-review"], "prompt": "You review pull requests." }
  }
}
"#;

const COMPACT: &str = r#"{"bottles":{"a":{"env":{"X":"\"q\"\u00e9"},"egress":{"allowlist":["one.example.com","two.example.com"],"ip_cidrs":[]}},"b":{"env":{}},"c":{"egress":{"trusted_domains":[]}},"d":{"egress":{"allowlist":["one.example.com"]}}},"agents":{"x":{"bottle":"a"}}}"#;

const NO_EGRESS: &str = r#"{
    "bottles": {
        "dev": {
            "env": {
                "NAME": "caf\u00e9 \"quoted\""
            },
            "image": "my/image:latest"
        }
    },
    "agents": {
        "claude": {
            "bottle": "dev"
        }
    }
}
"#;

const NO_ALLOWLIST: &str = r#"{
  "bottles": {
    "dev": {
      "egress": {
        "trusted_domains": [
          "git.internal.example.com"
        ],
        "ip_cidrs": []
      }
    }
  },
  "agents": {
    "claude": {
      "bottle": "dev"
    }
  }
}
"#;

// --- adding -----------------------------------------------------------------

#[test]
fn adds_on_lines_of_their_own_to_a_multi_line_array() {
    let edited = add(
        DEFAULT_MANIFEST_JSON,
        "default",
        &["pypi.org", "*.pythonhosted.org"],
    );
    assert_eq!(edited.changed, rules(&["pypi.org", "*.pythonhosted.org"]));
    assert!(edited.unchanged.is_empty());
    assert_pure_insertion(DEFAULT_MANIFEST_JSON, &edited.text);
    insta::assert_snapshot!(edited.text);
    let allowlist = loaded_allowlist(&edited.text, "default");
    assert_eq!(
        allowlist[allowlist.len() - 2..],
        ["pypi.org", "*.pythonhosted.org"]
    );
}

#[test]
fn adds_inline_to_a_one_line_array_with_its_separator() {
    let edited = add(README_STYLE, "default", &["pypi.org"]);
    assert_pure_insertion(README_STYLE, &edited.text);
    insta::assert_snapshot!(edited.text);
    loaded_allowlist(&edited.text, "default");
}

#[test]
fn a_compact_manifest_stays_compact() {
    let array = add(COMPACT, "a", &["new.example.com"]);
    let single = add(COMPACT, "d", &["new.example.com"]);
    let no_egress = add(COMPACT, "b", &["new.example.com"]);
    let no_allowlist = add(COMPACT, "c", &["new.example.com", "10.0.0.1"]);
    for edited in [&array, &single, &no_egress, &no_allowlist] {
        assert_pure_insertion(COMPACT, &edited.text);
        assert!(!edited.text.contains(['\n', ' ']), "{}", edited.text);
    }
    insta::assert_snapshot!(format!(
        "{}\n{}\n{}\n{}",
        array.text, single.text, no_egress.text, no_allowlist.text
    ));
    assert_eq!(
        loaded_allowlist(&no_allowlist.text, "c"),
        ["new.example.com", "10.0.0.1"]
    );
    assert_eq!(loaded_allowlist(&no_egress.text, "b"), ["new.example.com"]);
}

#[test]
fn a_one_line_manifest_with_spaces_keeps_its_spacing() {
    let text = r#"{ "bottles": { "b": { "env": {} }, "s": { "egress": { "allowlist": ["a.example.com"] } } }, "agents": { "x": { "bottle": "b" } } }"#;
    let no_egress = add(text, "b", &["new.example.com"]);
    let single = add(text, "s", &["new.example.com"]);
    insta::assert_snapshot!(format!("{}\n{}", no_egress.text, single.text));
    loaded_allowlist(&no_egress.text, "b");
    loaded_allowlist(&single.text, "s");
}

#[test]
fn creates_egress_laid_out_like_its_siblings() {
    let edited = add(NO_EGRESS, "dev", &["pypi.org", "files.pythonhosted.org"]);
    assert_pure_insertion(NO_EGRESS, &edited.text);
    insta::assert_snapshot!(edited.text);
    assert_eq!(
        loaded_allowlist(&edited.text, "dev"),
        ["pypi.org", "files.pythonhosted.org"]
    );
}

#[test]
fn creates_egress_in_an_empty_bottle() {
    let edited = add(README_STYLE, "bare", &["pypi.org"]);
    insta::assert_snapshot!(edited.text);
    assert_eq!(loaded_allowlist(&edited.text, "bare"), ["pypi.org"]);
    // Arrays of this file are on one line, so the new one is too.
    assert!(edited.text.contains(r#""allowlist": ["pypi.org"]"#));
}

#[test]
fn creates_the_allowlist_in_an_existing_egress() {
    let edited = add(NO_ALLOWLIST, "dev", &["pypi.org"]);
    assert_pure_insertion(NO_ALLOWLIST, &edited.text);
    insta::assert_snapshot!(edited.text);
    assert_eq!(loaded_allowlist(&edited.text, "dev"), ["pypi.org"]);

    let trusted = r#"
        "trusted_domains": [
          "git.internal.example.com"
        ],
        "ip_cidrs": []
      "#;
    let empty_egress = NO_ALLOWLIST.replace(trusted, "");
    assert!(empty_egress.contains("\"egress\": {}"));
    let edited = add(&empty_egress, "dev", &["pypi.org"]);
    assert_pure_insertion(&empty_egress, &edited.text);
    insta::assert_snapshot!("empty_egress_on_lines", edited.text);
    assert_eq!(loaded_allowlist(&edited.text, "dev"), ["pypi.org"]);
}

#[test]
fn fills_an_empty_array() {
    let text = DEFAULT_MANIFEST_JSON.replace(
        &DEFAULT_MANIFEST_JSON[DEFAULT_MANIFEST_JSON.find("\"allowlist\": [").unwrap()
            ..DEFAULT_MANIFEST_JSON.find("],\n        \"trusted").unwrap() + 1],
        "\"allowlist\": []",
    );
    let one = add(&text, "default", &["pypi.org"]);
    let two = add(&text, "default", &["pypi.org", "10.1.2.3"]);
    assert_pure_insertion(&text, &two.text);
    assert!(one.text.contains(r#""allowlist": ["pypi.org"],"#));
    assert!(
        two.text
            .contains(r#""allowlist": ["pypi.org", "10.1.2.3"],"#)
    );
    assert_eq!(
        loaded_allowlist(&two.text, "default"),
        ["pypi.org", "10.1.2.3"]
    );

    // An empty array already over two lines gets one entry per line.
    let open = text.replace("\"allowlist\": []", "\"allowlist\": [\n        ]");
    let edited = add(&open, "default", &["pypi.org", "10.1.2.3"]);
    insta::assert_snapshot!(edited.text);
}

#[test]
fn tabs_are_kept() {
    let tabs = DEFAULT_MANIFEST_JSON.replace("  ", "\t");
    let edited = add(&tabs, "default", &["pypi.org"]);
    assert_pure_insertion(&tabs, &edited.text);
    assert!(
        edited
            .text
            .contains("\t\t\t\t\t\"*.githubusercontent.com\",\n\t\t\t\t\t\"pypi.org\"\n\t\t\t\t],")
    );
    let no_egress = NO_EGRESS.replace("    ", "\t");
    let created = add(&no_egress, "dev", &["pypi.org"]);
    insta::assert_snapshot!(visible(&created.text));
    loaded_allowlist(&created.text, "dev");
}

#[test]
fn crlf_line_ends_are_kept() {
    let crlf = DEFAULT_MANIFEST_JSON.replace('\n', "\r\n");
    let edited = add(&crlf, "default", &["pypi.org"]);
    assert_pure_insertion(&crlf, &edited.text);
    assert!(!edited.text.replace("\r\n", "").contains('\n'));
    let no_egress = NO_EGRESS.replace('\n', "\r\n");
    let created = add(&no_egress, "dev", &["pypi.org", "files.pythonhosted.org"]);
    assert!(!created.text.replace("\r\n", "").contains('\n'));
    insta::assert_snapshot!(visible(&created.text));
    loaded_allowlist(&created.text, "dev");
}

#[test]
fn a_host_already_listed_changes_nothing() {
    let edited = add(
        DEFAULT_MANIFEST_JSON,
        "default",
        &["GitHub.com.", "*.SENTRY.io", "pypi.org", "pypi.org"],
    );
    assert_eq!(edited.changed, rules(&["pypi.org"]));
    assert_eq!(
        edited.unchanged,
        rules(&["github.com", "*.sentry.io", "pypi.org"])
    );
    assert_eq!(edited.text.matches("pypi.org").count(), 1);

    let same = add(DEFAULT_MANIFEST_JSON, "default", &["api.github.com"]);
    assert!(!same.is_changed());
    assert_eq!(same.text, DEFAULT_MANIFEST_JSON);

    // An entry written in another case or with a trailing dot is the same host.
    let odd = DEFAULT_MANIFEST_JSON.replace("\"sentry.io\"", "\"Sentry.IO.\"");
    assert_eq!(add(&odd, "default", &["sentry.io"]).text, odd);
}

#[test]
fn wildcards_and_exact_hosts_are_different_entries() {
    let edited = add(DEFAULT_MANIFEST_JSON, "default", &["*.github.com"]);
    assert_eq!(edited.changed, rules(&["*.github.com"]));
}

// --- removing ---------------------------------------------------------------

const THREE: &str = r#"{
  "bottles": {
    "b": {
      "egress": {
        "allowlist": [
          "one.example.com",
          "two.example.com",
          "three.example.com"
        ]
      }
    }
  },
  "agents": {"x": {"bottle": "b"}}
}
"#;

#[test]
fn removes_the_middle_entry_on_lines() {
    let edited = remove(THREE, "b", &["two.example.com"]);
    assert_eq!(edited.changed, rules(&["two.example.com"]));
    insta::assert_snapshot!(edited.text);
    assert_eq!(
        loaded_allowlist(&edited.text, "b"),
        ["one.example.com", "three.example.com"]
    );
}

#[test]
fn removes_the_last_entry_on_lines() {
    let edited = remove(THREE, "b", &["THREE.example.com."]);
    insta::assert_snapshot!(edited.text);
    assert_eq!(
        loaded_allowlist(&edited.text, "b"),
        ["one.example.com", "two.example.com"]
    );
}

#[test]
fn removing_every_entry_leaves_an_empty_array() {
    let edited = remove(
        THREE,
        "b",
        &["three.example.com", "one.example.com", "two.example.com"],
    );
    assert_eq!(edited.changed.len(), 3);
    assert!(
        edited.text.contains(r#""allowlist": []"#),
        "{}",
        edited.text
    );
    insta::assert_snapshot!(edited.text);
    assert!(loaded_allowlist(&edited.text, "b").is_empty());
}

#[test]
fn removes_inline_entries() {
    let first = remove(README_STYLE, "default", &["api.anthropic.com"]);
    let middle = remove(README_STYLE, "default", &["statsig.anthropic.com"]);
    let last = remove(README_STYLE, "default", &["sentry.io"]);
    let line = |text: &str| {
        text.lines()
            .find(|l| l.contains("\"allowlist\""))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(
        line(&first.text),
        r#""allowlist": ["statsig.anthropic.com", "sentry.io"],"#
    );
    assert_eq!(
        line(&middle.text),
        r#""allowlist": ["api.anthropic.com", "sentry.io"],"#
    );
    assert_eq!(
        line(&last.text),
        r#""allowlist": ["api.anthropic.com", "statsig.anthropic.com"],"#
    );

    let only = remove(COMPACT, "d", &["one.example.com"]);
    assert!(only.text.contains(r#""d":{"egress":{"allowlist":[]}}"#));
    let padded = r#"{"bottles":{"b":{"egress":{"allowlist":[ "a.example.com" ]}}},"agents":{"x":{"bottle":"b"}}}"#;
    let only = remove(padded, "b", &["a.example.com"]);
    assert!(only.text.contains(r#""allowlist":[]"#), "{}", only.text);
    loaded_allowlist(&only.text, "b");
}

#[test]
fn removes_every_spelling_of_a_host() {
    let text = THREE.replace("three.example.com", "ONE.example.com.");
    let edited = remove(&text, "b", &["one.example.com"]);
    assert_eq!(edited.changed, rules(&["one.example.com"]));
    assert_eq!(loaded_allowlist(&edited.text, "b"), ["two.example.com"]);
}

#[test]
fn removing_an_absent_host_changes_nothing() {
    let edited = remove(THREE, "b", &["four.example.com", "*.one.example.com"]);
    assert!(!edited.is_changed());
    assert_eq!(edited.unchanged.len(), 2);
    assert_eq!(edited.text, THREE);
    // Nor does removing from a bottle without an allowlist.
    assert_eq!(remove(NO_EGRESS, "dev", &["pypi.org"]).text, NO_EGRESS);
    assert_eq!(
        remove(NO_ALLOWLIST, "dev", &["pypi.org"]).text,
        NO_ALLOWLIST
    );
}

#[test]
fn a_byte_order_mark_is_kept() {
    let text = format!("\u{feff}{THREE}");
    let added = add(&text, "b", &["four.example.com"]);
    assert!(added.text.starts_with('\u{feff}'));
    let removed = remove(&added.text, "b", &["four.example.com"]);
    assert_eq!(removed.text, text);
}

// --- what is left alone -----------------------------------------------------

#[test]
fn escapes_elsewhere_survive_untouched() {
    let text = r#"{
  "bottles": {
    "b": {
      "env": {"A": "say \"hi\" \/ caf\u00e9 \\ \ud83d\ude00 [not, an] {object}"},
      "egress": {"allowlist": ["x.example.com"], "trusted_domains": ["\u0067it.example.com"]}
    },
    "other": {"env": {"B": "\"allowlist\": [\"evil.example.com\"]"}}
  },
  "agents": {"x": {"bottle": "b", "prompt": "bottles.b.egress.allowlist \"]\""}}
}"#;
    let edited = add(text, "b", &["y.example.com"]);
    assert_pure_insertion(text, &edited.text);
    assert!(
        edited
            .text
            .contains(r#""allowlist": ["x.example.com", "y.example.com"]"#)
    );
    assert_eq!(remove(&edited.text, "b", &["y.example.com"]).text, text);
    let other = add(text, "other", &["y.example.com"]);
    assert!(other.text.contains(
        r#""other": {"env": {"B": "\"allowlist\": [\"evil.example.com\"]"}, "egress": {"allowlist": ["y.example.com"]}}"#
    ), "{}", other.text);
    loaded_allowlist(&other.text, "other");
}

#[test]
fn keys_are_compared_decoded() {
    let text = r#"{"bottles":{"caf\u00e9":{"egr\u0065ss":{"allowlist":[]}}},"agents":{"x":{"bottle":"café"}}}"#;
    let edited = add(text, "café", &["y.example.com"]);
    assert!(
        edited
            .text
            .contains(r#""egr\u0065ss":{"allowlist":["y.example.com"]}"#)
    );
    assert_eq!(loaded_allowlist(&edited.text, "café"), ["y.example.com"]);
}

// --- errors -----------------------------------------------------------------

#[test]
fn an_unknown_bottle_names_the_known_ones() {
    let err = add_to_allowlist(README_STYLE, "prod", &rules(&["x.example.com"])).unwrap_err();
    assert!(
        matches!(&err, EditError::UnknownBottle { known, .. } if known == &["bare", "default"])
    );
    let odd = remove_from_allowlist(README_STYLE, "my.bottle", &[]).unwrap_err();
    insta::assert_snapshot!(format!("{}\n{}", with_hints(&err), with_hints(&odd)));
    let none = add_to_allowlist(r#"{"agents": {}}"#, "prod", &[]).unwrap_err();
    assert_eq!(
        none.to_string(),
        "bottles.prod: no such bottle, the manifest defines none"
    );
}

#[test]
fn text_that_is_not_json_is_refused() {
    for text in [
        "",
        "{",
        "{\"bottles\": {}} trailing",
        "{\"bottles\": {\"b\": {\"egress\": {\"allowlist\": [\"a.example.com\",]}}}}",
        "{// a comment\n\"bottles\": {}}",
        "{bottles: {}}",
    ] {
        let err = add_to_allowlist(text, "b", &rules(&["x.example.com"])).unwrap_err();
        assert!(matches!(err, EditError::Syntax { .. }), "{text}: {err:?}");
    }
    let err = add_to_allowlist("{\n  \"bottles\": [}", "b", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid JSON at line 2, column 15: expected value"
    );
}

#[test]
fn a_wrong_type_on_the_way_is_refused() {
    for (text, path) in [
        ("[]", "top level"),
        (r#"{"bottles": []}"#, "bottles"),
        (r#"{"bottles": {"b": null}}"#, "bottles.b"),
        (r#"{"bottles": {"b": {"egress": []}}}"#, "bottles.b.egress"),
        (
            r#"{"bottles": {"b": {"egress": {"allowlist": "a.example.com"}}}}"#,
            "bottles.b.egress.allowlist",
        ),
    ] {
        let err = add_to_allowlist(text, "b", &rules(&["x.example.com"])).unwrap_err();
        assert!(
            matches!(&err, EditError::WrongType { path: p, .. } if p.to_string() == path),
            "{text}: {err:?}"
        );
    }
}

#[test]
fn a_duplicate_key_on_the_way_is_refused() {
    let text = r#"{"bottles": {"b": {"egress": {"allowlist": []}, "egress": {}}}}"#;
    let err = add_to_allowlist(text, "b", &rules(&["x.example.com"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bottles.b.egress: defined more than once, expected each key once"
    );
}

// --- writing the file -------------------------------------------------------

#[test]
fn writes_atomically_keeping_permissions() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claude-bottle.json");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    write_atomically(&path, "new").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // Nothing left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    // A link is followed: the file it names is replaced, the link stays.
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    write_atomically(&link, "newer").unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "newer");

    // A file that does not exist yet is created.
    let fresh = dir.path().join("fresh.json");
    write_atomically(&fresh, "{}").unwrap();
    assert_eq!(fs::read_to_string(&fresh).unwrap(), "{}");
}

#[test]
fn a_file_this_user_may_not_write_is_not_replaced() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claude-bottle.json");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    let written = write_atomically(&path, "new");
    if nix::unistd::geteuid().is_root() {
        // Root may write any file, as `echo > file` would.
        written.unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    } else {
        let err = written.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    }
}

// --- round trips ------------------------------------------------------------

fn host_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,6}\\.(com|org|io|example\\.net)",
        "\\*\\.[a-z][a-z0-9]{0,6}\\.(com|org)",
        (1u8..=254, 0u8..=255).prop_map(|(a, b)| format!("10.{a}.{b}.1")),
    ]
}

/// What a bottle's egress looks like on the wire.
#[derive(Debug, Clone)]
enum EgressShape {
    Missing,
    NoAllowlist,
    Allowlist(Vec<String>),
}

fn bottle_strategy() -> impl Strategy<Value = (serde_json::Value, bool)> {
    let env = proptest::collection::btree_map(
        "[A-Z_][A-Z0-9_]{0,6}",
        "[a-zA-Z0-9 \"\\\\/é\u{1F600}\\[\\]{},:\t\n]{0,12}",
        0..3,
    );
    let egress = prop_oneof![
        Just(EgressShape::Missing),
        Just(EgressShape::NoAllowlist),
        proptest::collection::vec(host_strategy(), 0..5).prop_map(EgressShape::Allowlist),
    ];
    (env, egress, any::<bool>()).prop_map(|(env, egress, with_image)| {
        let env: serde_json::Map<String, serde_json::Value> = env
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v.replace('$', "$$"))))
            .collect();
        let mut bottle = serde_json::json!({ "env": env, "ssh": [] });
        let has_allowlist = matches!(egress, EgressShape::Allowlist(_));
        match egress {
            EgressShape::Missing => {}
            EgressShape::NoAllowlist => {
                bottle["egress"] = serde_json::json!({ "trusted_domains": [], "ip_cidrs": [] });
            }
            EgressShape::Allowlist(hosts) => {
                bottle["egress"] = serde_json::json!({ "allowlist": hosts, "ip_cidrs": [] });
            }
        }
        if with_image {
            bottle["image"] = serde_json::json!("some/image:1");
        }
        (bottle, has_allowlist)
    })
}

/// A manifest as printed, the bottle to edit, and whether that bottle has
/// an allowlist. With `filled`, the bottle's allowlist has entries.
fn manifest_strategy(filled: bool) -> impl Strategy<Value = (String, String, bool)> {
    let bottles = proptest::collection::btree_map("[a-z][a-z0-9_-]{0,6}", bottle_strategy(), 1..4);
    let entries = proptest::collection::vec(host_strategy(), 1..5);
    (
        bottles,
        any::<proptest::sample::Index>(),
        entries,
        0..5usize,
    )
        .prop_map(move |(mut bottles, pick, entries, printer)| {
            let names: Vec<String> = bottles.keys().cloned().collect();
            let chosen = names[pick.index(names.len())].clone();
            if filled {
                let (bottle, has_allowlist) = bottles.get_mut(&chosen).unwrap();
                bottle["egress"] = serde_json::json!({ "allowlist": entries });
                *has_allowlist = true;
            }
            let has_allowlist = bottles[&chosen].1;
            let map: serde_json::Map<String, serde_json::Value> =
                bottles.into_iter().map(|(k, (v, _))| (k, v)).collect();
            let value = serde_json::json!({
                "bottles": map,
                "agents": { "claude": { "bottle": names[0], "skills": [], "prompt": "p \"q\"" } },
            });
            (print(&value, printer), chosen, has_allowlist)
        })
}

fn print(value: &serde_json::Value, printer: usize) -> String {
    use serde::Serialize;
    let with_indent = |indent: &[u8]| {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        value.serialize(&mut ser).unwrap();
        String::from_utf8(out).unwrap()
    };
    match printer {
        0 => serde_json::to_string(value).unwrap(),
        1 => serde_json::to_string_pretty(value).unwrap() + "\n",
        2 => with_indent(b"    "),
        3 => with_indent(b"\t"),
        // JSON strings escape their line breaks, so this touches only layout.
        _ => {
            serde_json::to_string_pretty(value)
                .unwrap()
                .replace('\n', "\r\n")
                + "\r\n"
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn adding_then_removing_an_absent_host_gives_the_file_back(
        (text, bottle, has_allowlist) in manifest_strategy(false),
        new_host in "(new|fresh)[0-9]{1,3}\\.example\\.(org|dev)",
    ) {
        let before = loaded_allowlist(&text, &bottle);
        let host = rule(&new_host);
        let added = add_to_allowlist(&text, &bottle, std::slice::from_ref(&host)).unwrap();
        prop_assert_eq!(&added.changed, std::slice::from_ref(&host));
        assert_pure_insertion(&text, &added.text);
        let mut expected = before.clone();
        expected.push(host.to_string());
        prop_assert_eq!(loaded_allowlist(&added.text, &bottle), expected);

        // Adding it again changes nothing.
        let again = add_to_allowlist(&added.text, &bottle, std::slice::from_ref(&host)).unwrap();
        prop_assert_eq!(&again.text, &added.text);

        let removed = remove_from_allowlist(&added.text, &bottle, std::slice::from_ref(&host)).unwrap();
        prop_assert_eq!(&removed.changed, std::slice::from_ref(&host));
        if has_allowlist {
            prop_assert_eq!(&removed.text, &text);
        } else {
            // The created `egress` or `allowlist` stays, empty.
            prop_assert_eq!(loaded_allowlist(&removed.text, &bottle), before);
            let reloaded = load_from_str(&removed.text, ManifestSource::Embedded).unwrap();
            let original = load_from_str(&text, ManifestSource::Embedded).unwrap();
            prop_assert_eq!(reloaded, original);
        }
    }

    #[test]
    fn removing_a_present_host_keeps_the_others_in_order(
        (text, bottle, _) in manifest_strategy(true),
        pick in any::<proptest::sample::Index>(),
    ) {
        let before = loaded_allowlist(&text, &bottle);
        let gone = before[pick.index(before.len())].clone();
        let removed = remove_from_allowlist(&text, &bottle, &[rule(&gone)]).unwrap();
        let expected: Vec<String> = before.iter().filter(|h| **h != gone).cloned().collect();
        prop_assert_eq!(loaded_allowlist(&removed.text, &bottle), expected);
    }
}
