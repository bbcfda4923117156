//! The command line as a user meets it: exit codes, stdout versus stderr and
//! the main error messages. Tests here need no Docker daemon; those that do
//! live in `docker_*.rs` (that secrets never show in `start`'s output at `-vv`
//! is in `docker_cli.rs`, since only a daemon gets `start` past its plan).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

const RICH_MANIFEST: &str = r#"{
  "bottles": {
    "dev": {
      "env": {
        "GIT_AUTHOR_NAME": "Bottle Bot",
        "PRICE": "$$5",
        "API_TOKEN": "${CB_TEST_SECRET}",
        "OTHER": "$CB_TEST_OTHER"
      },
      "ssh": [
        { "Host": "forge", "HostName": "git.example.test", "User": "git", "IdentityFile": "~/.ssh/id_forge" },
        { "Host": "backup", "HostName": "192.0.2.10", "Port": 2222, "IdentityFile": "~/.ssh/id_backup" }
      ],
      "egress": {
        "allowlist": ["api.anthropic.com", "*.githubusercontent.com", "203.0.113.5"],
        "trusted_domains": ["git.example.test"],
        "ip_cidrs": ["10.20.0.0/16", "2001:db8::/48"]
      }
    },
    "bare": { "egress": { "allowlist": ["example.com"] } }
  },
  "agents": {
    "reviewer": { "bottle": "dev", "skills": ["code-review"], "prompt": "You review pull requests." },
    "helper": { "bottle": "bare" }
  }
}"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), manifest).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::create_dir_all(home.join(".claude/skills/code-review")).unwrap();
        std::fs::write(
            home.join(".claude/skills/code-review/SKILL.md"),
            "# review\n",
        )
        .unwrap();
        std::fs::write(home.join(".ssh/id_forge"), "key\n").unwrap();
        std::fs::write(home.join(".ssh/id_backup"), "key\n").unwrap();
        Self { dir }
    }

    fn manifest(&self) -> PathBuf {
        self.dir.path().join("manifest.json")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The binary with a clean, predictable environment.
    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("claude-bottle").unwrap();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path());
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", host);
        }
        cmd.arg("--manifest").arg(self.manifest());
        cmd
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn redact_dir(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "[TMP]")
}

#[test]
fn help_and_version_exit_zero_on_stdout() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx.cmd().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "start",
        "list",
        "cleanup",
        "proxy-config",
        "init",
        "--manifest",
        "--verbose",
    ] {
        assert!(help.contains(word), "help lacks {word}: {help}");
    }
    let out = fx.cmd().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("claude-bottle "));
}

#[test]
fn bad_arguments_exit_two() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx.cmd().args(["start", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = fx.cmd().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn proxy_config_prints_yaml_on_stdout_only() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx
        .cmd()
        .args(["proxy-config", "reviewer"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("mode: strict"), "{yaml}");
    insta::assert_snapshot!("proxy_config_rich", yaml);
}

#[test]
fn unknown_agent_lists_the_known_ones() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx.cmd().args(["proxy-config", "nobody"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = redact_dir(&stderr_of(&out), fx.dir.path());
    insta::assert_snapshot!("unknown_agent", err);
}

#[test]
fn agent_may_be_omitted_only_when_there_is_one() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx.cmd().args(["proxy-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = redact_dir(&stderr_of(&out), fx.dir.path());
    insta::assert_snapshot!("agent_required", err);

    let single = Fixture::new(
        r#"{"bottles":{"b":{"egress":{"allowlist":["example.com"]}}},"agents":{"solo":{"bottle":"b"}}}"#,
    );
    let out = single.cmd().args(["proxy-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

#[test]
fn unknown_backend_exits_two_listing_known_backends() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx
        .cmd()
        .env("CLAUDE_BOTTLE_BACKEND", "kubernetes")
        .env("CB_TEST_SECRET", "x")
        .env("CB_TEST_OTHER", "y")
        .args(["start", "reviewer", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("unknown_backend", stderr_of(&out));
}

/// Runs a dry-run `start` with `var` set to `value` and a daemon address
/// where no daemon is, and asserts the refusal: exit 2, naming the variable
/// and its value, without the daemon ever reached. Returns the stderr.
fn refuses_before_the_daemon(fx: &Fixture, var: &str, value: &str) -> String {
    let out = fx
        .cmd()
        // No daemon there: the refusal must come first.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env(var, value)
        .env("CB_TEST_SECRET", "x")
        .env("CB_TEST_OTHER", "y")
        .args(["start", "reviewer", "--dry-run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
    assert!(
        stderr.contains(&format!("`{var}` is `{value}`")),
        "{stderr}"
    );
    assert!(!stderr.contains("nonexistent"), "{stderr}");
    stderr
}

#[test]
fn a_malformed_claude_code_version_exits_two_before_the_daemon_is_reached() {
    let fx = Fixture::new(RICH_MANIFEST);
    for bad in ["latest", "2.1.328; rm -rf /", "v2.1.328"] {
        refuses_before_the_daemon(&fx, "CLAUDE_BOTTLE_CLAUDE_CODE_VERSION", bad);
    }
}

#[test]
fn a_malformed_address_pool_exits_2_before_the_daemon_and_names_the_fix() {
    let fx = Fixture::new(RICH_MANIFEST);
    for (bad, fix) in [
        ("10.213.0.0", "such as `10.213.0.0/16`"),
        ("10.213.7.9/16", "set it to `10.213.0.0/16`"),
        ("10.213.0.0/29", "such as `10.213.0.0/16`"),
    ] {
        let stderr = refuses_before_the_daemon(&fx, "CLAUDE_BOTTLE_ADDRESS_POOL", bad);
        assert!(stderr.contains(fix), "{stderr}");
    }
}

#[test]
fn help_lists_the_claude_code_version_variable_with_its_default() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx.cmd().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.contains("CLAUDE_BOTTLE_CLAUDE_CODE_VERSION"))
        .unwrap_or_else(|| panic!("not in --help: {help}"));
    assert!(line.contains("(default: 2.1.328)"), "{line}");
}

#[test]
fn empty_effective_allowlist_is_refused_before_anything_runs() {
    let fx = Fixture::new(r#"{"bottles":{"b":{}},"agents":{"a":{"bottle":"b"}}}"#);
    let out = fx.cmd().args(["proxy-config", "a"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("empty_allowlist", stderr_of(&out));
}

#[test]
fn unset_host_variable_without_terminal_names_it_and_the_bottle() {
    let fx = Fixture::new(RICH_MANIFEST);
    let out = fx
        .cmd()
        .env("CB_TEST_OTHER", "y")
        .args(["start", "reviewer", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("unset_host_variable", stderr_of(&out));
}

#[test]
fn manifest_errors_exit_two_with_the_json_path() {
    let fx = Fixture::new(
        r#"{"bottles":{"b":{"egress":{"alowlist":[]}}},"agents":{"a":{"bottle":"b"}}}"#,
    );
    for args in [
        &["proxy-config", "a"][..],
        &["start", "a", "--dry-run"],
        &["list"],
    ] {
        let out = fx.cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr_of(&out);
        assert!(err.contains("bottles.b.egress.alowlist"), "{err}");
    }
    let fx = Fixture::new(
        r#"{"bottles":{"b":{"runtime":"runsc","egress":{"allowlist":["x.com"]}}},"agents":{"a":{"bottle":"b"}}}"#,
    );
    let out = fx.cmd().args(["proxy-config", "a"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("runsc"), "{}", stderr_of(&out));
}

#[test]
fn syntax_errors_give_line_and_column() {
    let fx = Fixture::new("{\n  \"bottles\": {,\n}");
    let out = fx.cmd().args(["proxy-config", "a"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("column"), "{err}");
}

#[test]
fn init_writes_the_default_manifest_and_never_clobbers() {
    let fx = Fixture::new(RICH_MANIFEST);
    let mut cmd = Command::cargo_bin("claude-bottle").unwrap();
    cmd.current_dir(fx.dir.path())
        .env("NO_COLOR", "1")
        .arg("init");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let written = std::fs::read_to_string(fx.dir.path().join("claude-bottle.json")).unwrap();
    assert_eq!(written, claude_bottle::manifest::DEFAULT_MANIFEST_JSON);

    std::fs::write(fx.dir.path().join("claude-bottle.json"), "mine").unwrap();
    let out = Command::cargo_bin("claude-bottle")
        .unwrap()
        .current_dir(fx.dir.path())
        .env("NO_COLOR", "1")
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--force"));
    let kept = std::fs::read_to_string(fx.dir.path().join("claude-bottle.json")).unwrap();
    assert_eq!(kept, "mine");
    let leftovers: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}

#[test]
fn the_embedded_default_is_used_without_any_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("claude-bottle")
        .unwrap()
        .env_clear()
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .current_dir(dir.path())
        .args(["proxy-config", "claude"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("api.anthropic.com"), "{yaml}");
}

/// The bash script, sourced into a real bash, offers the subcommands for the
/// first word. Its completion function is found through `complete -p`, so the
/// test does not depend on how clap_complete spells the function's name.
#[test]
fn bash_completions_offer_the_subcommands() {
    let bin = assert_cmd::cargo::cargo_bin("claude-bottle");
    let dir = bin.parent().unwrap();
    let script = r#"
source <(claude-bottle completions bash) || exit 3
fn=$(complete -p claude-bottle | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
[ -n "$fn" ] || exit 4
COMP_WORDS=(claude-bottle "")
COMP_CWORD=1
COMP_LINE="claude-bottle "
COMP_POINT=${#COMP_LINE}
"$fn" claude-bottle "" claude-bottle
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out =
        std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", script])
            .env(
                "PATH",
                std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(
                    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
                ))
                .unwrap(),
            )
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for expected in ["start", "list", "cleanup", "allow", "init", "completions"] {
        assert!(
            words.iter().any(|w| w == expected),
            "`{expected}` not offered: {words:?}"
        );
    }
}

#[test]
fn completions_for_every_shell_go_to_stdout() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::cargo_bin("claude-bottle")
            .unwrap()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr_of(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("cleanup"), "{shell}: {script}");
        assert!(out.stderr.is_empty(), "{shell}: {}", stderr_of(&out));
    }
    let out = Command::cargo_bin("claude-bottle")
        .unwrap()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
