//! The built-in agent image: an embedded Dockerfile, a tag derived from its
//! content and the Claude Code version, and a build through the docker CLI
//! (`docker build --build-arg CLAUDE_CODE_VERSION=V -t TAG -`, the
//! Dockerfile on stdin, no context), aimed at the daemon the session's
//! Engine API client uses (`endpoint::docker_command`); the user's builder
//! settings apply.
//!
//! Whether the tag already exists is the caller's question (an image inspect);
//! this module only knows how to make it.

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::endpoint::docker_command;
use crate::core::provision::CONTAINER_UID;
use crate::diagnostic::Diagnostic;
use crate::printer::{Printer, progress};

/// The Dockerfile of the built-in agent image.
pub const DOCKERFILE: &str = include_str!("Dockerfile");
/// The repository part of the built-in image's tag.
pub const IMAGE_REPOSITORY: &str = "claude-bottle-agent";
/// The label the Dockerfile puts on the built-in image (`claude-bottle.managed`
/// is for session resources, which `cleanup` removes; images stay).
pub const IMAGE_LABEL: &str = "claude-bottle.image";
pub const IMAGE_LABEL_VALUE: &str = "agent";

/// The Dockerfile's build argument that carries the Claude Code version.
pub const CLAUDE_CODE_VERSION_ARG: &str = "CLAUDE_CODE_VERSION";
/// The Claude Code version the built-in image pins: the default of the
/// Dockerfile's `ARG CLAUDE_CODE_VERSION=`, read at compile time. That line
/// is the one definition of the pin; a Dockerfile without it, or with a
/// default that is not a version, does not compile.
pub const DEFAULT_CLAUDE_CODE_VERSION: &str = arg_default(DOCKERFILE, "ARG CLAUDE_CODE_VERSION=");

/// How many trailing output lines a failure quotes.
const TAIL_LINES: usize = 15;

/// `claude-bottle-agent:<first 16 hex digits of the SHA-256 of the build input>`.
pub fn tag_for(build_input: &[u8]) -> String {
    let digest = Sha256::digest(build_input);
    let hex = hex::encode(digest);
    format!("{IMAGE_REPOSITORY}:{}", &hex[..16])
}

/// What a build of `dockerfile` with Claude Code `version` depends on: the
/// Dockerfile's bytes and the build argument (the build has no context).
fn build_input(dockerfile: &str, claude_code_version: &str) -> Vec<u8> {
    let mut input = dockerfile.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(format!("{CLAUDE_CODE_VERSION_ARG}={claude_code_version}").as_bytes());
    input
}

/// The tag of the built-in agent image this binary would build with Claude
/// Code `claude_code_version`: one tag per version, so each stays cached.
pub fn built_in_tag(claude_code_version: &str) -> String {
    tag_for(&build_input(DOCKERFILE, claude_code_version))
}

/// Whether `value` is a Claude Code version this binary will build: digits
/// in dot-separated groups (`2.1.328`), optionally followed by a
/// `-prerelease` of ASCII letters, digits, `.` and `-`. Nothing else reaches
/// the build or the tag.
pub const fn is_claude_code_version(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    // Digits in the current dot-separated group.
    let mut digits = 0;
    while i < bytes.len() && bytes[i] != b'-' {
        match bytes[i] {
            b'0'..=b'9' => digits += 1,
            b'.' if digits > 0 => digits = 0,
            _ => return false,
        }
        i += 1;
    }
    // Empty, or an empty last group (`2.1.`).
    if digits == 0 {
        return false;
    }
    if i == bytes.len() {
        return true;
    }
    // Past the `-`: a non-empty prerelease.
    i += 1;
    if i == bytes.len() {
        return false;
    }
    while i < bytes.len() {
        let byte = bytes[i];
        if !(byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// The value after `prefix` on the line of `dockerfile` that starts with it,
/// up to the first whitespace. Panics (at compile time, in a const) when
/// there is no such line or the value is not a Claude Code version.
const fn arg_default(dockerfile: &'static str, prefix: &str) -> &'static str {
    let bytes = dockerfile.as_bytes();
    let prefix = prefix.as_bytes();
    let mut line = 0;
    while line + prefix.len() <= bytes.len() {
        if line == 0 || bytes[line - 1] == b'\n' {
            let mut k = 0;
            while k < prefix.len() && bytes[line + k] == prefix[k] {
                k += 1;
            }
            if k == prefix.len() {
                let start = line + prefix.len();
                let mut end = start;
                while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
                    end += 1;
                }
                let (_, rest) = bytes.split_at(start);
                let (value, _) = rest.split_at(end - start);
                return match std::str::from_utf8(value) {
                    Ok(value) if is_claude_code_version(value) => value,
                    _ => {
                        panic!("the Dockerfile's ARG CLAUDE_CODE_VERSION default is not a version")
                    }
                };
            }
        }
        line += 1;
    }
    panic!("the Dockerfile has no `ARG CLAUDE_CODE_VERSION=` default")
}

#[derive(Debug, thiserror::Error)]
pub enum ImageBuildError {
    #[error("could not build the agent image `{tag}`: `docker` could not be run: {source}")]
    Spawn { tag: String, source: io::Error },

    #[error("could not build the agent image `{tag}`: talking to `docker build` failed: {source}")]
    Io { tag: String, source: io::Error },

    #[error(
        "docker build ran and failed ({status}) for the agent image `{tag}`; its last lines:\n{tail}"
    )]
    Failed {
        tag: String,
        /// `exit N` or `killed by signal N`.
        status: String,
        /// The last lines of output, indented.
        tail: String,
        hints: Vec<String>,
    },
}

impl Diagnostic for ImageBuildError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::Spawn { .. } => {
                vec!["install the Docker CLI and make sure `docker` is on PATH".to_owned()]
            }
            Self::Io { .. } => Vec::new(),
            Self::Failed { hints, .. } => hints.clone(),
        }
    }
}

/// Builds the built-in agent image with Claude Code `claude_code_version`
/// as `tag` (which `built_in_tag` made of that version). Output goes through
/// the printer: a one-line progress view when it shows progress, the build's
/// own lines otherwise. Dropping the future kills the build.
pub async fn build(
    endpoint: &str,
    tag: &str,
    claude_code_version: &str,
    printer: &Printer,
) -> Result<(), ImageBuildError> {
    let build_args = [(CLAUDE_CODE_VERSION_ARG, claude_code_version)];
    build_dockerfile(endpoint, DOCKERFILE, tag, &[], &build_args, printer).await
}

/// The `docker build` of a Dockerfile given on stdin (no context) as `tag`,
/// with extra `labels` and `build_args`, on the daemon at `endpoint`.
fn build_command(
    endpoint: &str,
    tag: &str,
    labels: &[(&str, &str)],
    build_args: &[(&str, &str)],
) -> Command {
    let mut command = docker_command(endpoint);
    // `--force-rm`: a failed classic build otherwise leaves its intermediate
    // container behind.
    command.arg("build").arg("--force-rm").arg("--tag").arg(tag);
    for (key, value) in labels {
        command.arg("--label").arg(format!("{key}={value}"));
    }
    for (key, value) in build_args {
        command.arg("--build-arg").arg(format!("{key}={value}"));
    }
    command
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Builds `dockerfile` (no context) as `tag` with extra `labels` and
/// `build_args`, on the daemon at `endpoint`.
pub async fn build_dockerfile(
    endpoint: &str,
    dockerfile: &str,
    tag: &str,
    labels: &[(&str, &str)],
    build_args: &[(&str, &str)],
    printer: &Printer,
) -> Result<(), ImageBuildError> {
    let mut command = build_command(endpoint, tag, labels, build_args);
    let mut child = command.spawn().map_err(|source| ImageBuildError::Spawn {
        tag: tag.to_owned(),
        source,
    })?;
    let io_error = |source| ImageBuildError::Io {
        tag: tag.to_owned(),
        source,
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(io_error(io::Error::other(
            "the build's pipes were not set up",
        )));
    };

    printer.status(format_args!("building the agent image `{tag}`"));
    let mut view = BuildView::new(printer);
    let feed = async {
        let written = stdin.write_all(dockerfile.as_bytes()).await;
        // Closing stdin tells docker the Dockerfile is complete.
        drop(stdin);
        written
    };
    let (fed, read) = tokio::join!(feed, pump_output(stdout, stderr, &mut view));
    let status = child.wait().await.map_err(io_error)?;
    view.finish();
    // A build that fails early may close stdin before reading it all; its
    // exit status and output say more than the broken pipe.
    if status.success() {
        fed.map_err(io_error)?;
        read.map_err(io_error)?;
        printer.status(format_args!("built the agent image `{tag}`"));
        return Ok(());
    }
    Err(ImageBuildError::Failed {
        tag: tag.to_owned(),
        status: describe_status(status),
        tail: view.tail_text(),
        hints: failure_hints(dockerfile, view.tail.iter().map(String::as_str)),
    })
}

/// Reads both pipes line by line until both close. The classic builder writes
/// its steps to stdout, BuildKit to stderr.
async fn pump_output(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    view: &mut BuildView,
) -> io::Result<()> {
    let mut out = BufReader::new(stdout).split(b'\n');
    let mut err = BufReader::new(stderr).split(b'\n');
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            segment = out.next_segment(), if out_open => match segment? {
                Some(bytes) => view.line(&String::from_utf8_lossy(&bytes)),
                None => out_open = false,
            },
            segment = err.next_segment(), if err_open => match segment? {
                Some(bytes) => view.line(&String::from_utf8_lossy(&bytes)),
                None => err_open = false,
            },
        }
    }
    Ok(())
}

struct BuildView {
    /// The tag is in the status line above; the view keeps its width for the step.
    view: Option<progress::Line>,
    printer: Printer,
    tail: VecDeque<String>,
}

impl BuildView {
    fn new(printer: &Printer) -> Self {
        Self {
            view: printer.progress_line("building the agent image"),
            printer: printer.clone(),
            tail: VecDeque::with_capacity(TAIL_LINES),
        }
    }

    fn line(&mut self, raw: &str) {
        // Progress output redraws with `\r`; the last frame is the one that counts.
        let line = raw.rsplit('\r').next().unwrap_or(raw).trim_end();
        if line.is_empty() {
            return;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
        match &self.view {
            Some(view) => {
                if let Some(step) = step_of(line) {
                    view.set_message(step);
                }
            }
            None => self.printer.status(line),
        }
    }

    fn finish(&mut self) {
        // Dropping the view clears it.
        self.view = None;
    }

    fn tail_text(&self) -> String {
        if self.tail.is_empty() {
            return "    (no output)".to_owned();
        }
        let lines: Vec<String> = self
            .tail
            .iter()
            .map(|line| format!("    | {line}"))
            .collect();
        lines.join("\n")
    }
}

/// The step a build output line starts, as `[n/m] INSTRUCTION`: classic
/// builder `Step 2/7 : RUN ...` or BuildKit `#6 [2/7] RUN ...`.
fn step_of(line: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix("Step ") {
        let (counter, instruction) = rest.split_once(" : ")?;
        return Some(format!("[{counter}] {instruction}"));
    }
    let rest = line.strip_prefix('#')?;
    let (_, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix('[')?;
    let (counter, instruction) = rest.split_once("] ")?;
    // `[internal] load ...` and `[stage 2/7]` are BuildKit chatter, not steps.
    let (done, total) = counter.rsplit(' ').next()?.split_once('/')?;
    (done.parse::<u32>().is_ok() && total.parse::<u32>().is_ok())
        .then(|| format!("[{counter}] {instruction}"))
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown status".to_owned(),
    }
}

/// The image of the Dockerfile's first `FROM`.
fn base_image(dockerfile: &str) -> Option<&str> {
    dockerfile.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let keyword = words.next()?;
        if !keyword.eq_ignore_ascii_case("FROM") {
            return None;
        }
        words.find(|word| !word.starts_with("--"))
    })
}

fn failure_hints<'a>(dockerfile: &str, tail: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    let mentions = |needles: &[&str]| {
        tail.clone().any(|line| {
            let line = line.to_ascii_lowercase();
            needles.iter().any(|needle| line.contains(needle))
        })
    };
    let mut hints = Vec::new();
    if mentions(&[
        "cannot connect to the docker daemon",
        "is the docker daemon running",
    ]) {
        hints.push(
            "the Docker daemon is not reachable; start it, or check `DOCKER_HOST`".to_owned(),
        );
    } else if mentions(&[
        "pull access denied",
        "manifest unknown",
        "not found: manifest",
        "failed to resolve",
        "no such host",
        "dial tcp",
        "i/o timeout",
        "tls handshake timeout",
        "toomanyrequests",
        "server misbehaving",
        "error response from daemon: get",
    ]) {
        let base = base_image(dockerfile).unwrap_or("the base image");
        hints.push(format!(
            "the base image `{base}` could not be pulled; this machine may have no access to its registry"
        ));
    }
    hints.push(format!(
        "to skip this build, set `image` in the bottle to an agent image built locally (see `docker images`): it needs `claude`, git, openssh-client, netcat-openbsd and a user with uid {CONTAINER_UID}"
    ));
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_a_stable_prefix_of_the_inputs_sha256() {
        // A change of scheme would silently rebuild every user's image.
        let tag = tag_for(b"FROM scratch\n");
        assert_eq!(tag, tag_for(b"FROM scratch\n"));
        let expected = hex::encode(Sha256::digest(b"FROM scratch\n"));
        assert_eq!(tag, format!("claude-bottle-agent:{}", &expected[..16]));
        assert_eq!(tag.len(), "claude-bottle-agent:".len() + 16);
    }

    #[test]
    fn the_tag_changes_with_the_dockerfile() {
        assert_ne!(tag_for(b"FROM scratch\n"), tag_for(b"FROM scratch\n\n"));
        let edited = DOCKERFILE.replace("ripgrep", "fd-find");
        let version = DEFAULT_CLAUDE_CODE_VERSION;
        assert_ne!(
            built_in_tag(version),
            tag_for(&build_input(&edited, version))
        );
        assert_eq!(
            built_in_tag(version),
            tag_for(&build_input(DOCKERFILE, version))
        );
    }

    #[test]
    fn the_tag_is_stable_per_version_and_differs_between_versions() {
        assert_eq!(built_in_tag("2.1.328"), built_in_tag("2.1.328"));
        assert_ne!(built_in_tag("2.1.328"), built_in_tag("2.1.329"));
        assert_ne!(built_in_tag("2.1.328"), built_in_tag("2.1.328-beta.1"));
        // The version is hashed after the Dockerfile, behind a separator.
        let mut expected = DOCKERFILE.as_bytes().to_vec();
        expected.extend_from_slice(b"\0CLAUDE_CODE_VERSION=2.1.328");
        assert_eq!(built_in_tag("2.1.328"), tag_for(&expected));
    }

    #[test]
    fn the_pin_is_the_dockerfiles_arg_default_and_the_install_uses_the_arg() {
        assert_eq!(DEFAULT_CLAUDE_CODE_VERSION, "2.1.328");
        assert!(DOCKERFILE.contains(&format!(
            "\nARG {CLAUDE_CODE_VERSION_ARG}={DEFAULT_CLAUDE_CODE_VERSION}\n"
        )));
        // The install takes the version from the argument, and nothing else
        // names one: the ARG default is the only place the pin is written.
        assert!(
            DOCKERFILE
                .contains("npm install -g \"@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}\"")
        );
        assert_eq!(DOCKERFILE.matches("@anthropic-ai/claude-code@").count(), 1);
        assert_eq!(
            DOCKERFILE.matches(DEFAULT_CLAUDE_CODE_VERSION).count(),
            1,
            "the pin is written once"
        );
        assert_eq!(
            arg_default("FROM x\nARG V=1.2.3 \nRUN y\n", "ARG V="),
            "1.2.3"
        );
    }

    #[test]
    fn versions_are_digits_and_dots_with_an_optional_prerelease() {
        for good in [
            "2.1.328",
            "2",
            "10.0.0",
            "2.1.328-beta",
            "2.1.328-rc.1",
            "2.1.328-alpha-2.X",
        ] {
            assert!(is_claude_code_version(good), "{good}");
        }
        for bad in [
            "",
            "latest",
            "v2.1.328",
            "2.1.",
            ".2.1",
            "2..1",
            "2.1.328-",
            "2.1.328+build",
            "2.1.328-beta_1",
            "-beta",
            "2.1.328 ",
            " 2.1.328",
            "2.1.328\n",
            "2.1.328;rm",
            "2.1.328-b\u{e9}ta",
            "^2.1.0",
            "2.x",
        ] {
            assert!(!is_claude_code_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_build_command_carries_the_tag_labels_and_build_args() {
        let command = build_command(
            "unix:///run/docker.sock",
            "claude-bottle-agent:abc",
            &[("k", "v")],
            &[(CLAUDE_CODE_VERSION_ARG, "2.1.400")],
        );
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "build",
                "--force-rm",
                "--tag",
                "claude-bottle-agent:abc",
                "--label",
                "k=v",
                "--build-arg",
                "CLAUDE_CODE_VERSION=2.1.400",
                "-"
            ]
        );
        assert_eq!(command.as_std().get_program(), "docker");
    }

    #[test]
    fn the_dockerfile_has_what_spec_requires() {
        let base = base_image(DOCKERFILE).expect("FROM");
        assert!(base.starts_with("node:22."), "{base}");
        assert!(base.contains("-bookworm-slim@sha256:"), "{base}");
        for package in [
            "git",
            "openssh-client",
            "netcat-openbsd",
            "ca-certificates",
            "curl",
        ] {
            assert!(
                DOCKERFILE
                    .lines()
                    .any(|l| l.trim().trim_end_matches('\\').trim_end() == package),
                "{package} missing"
            );
        }
        assert!(DOCKERFILE.contains("npm install -g \"@anthropic-ai/claude-code@"));
        assert!(!DOCKERFILE.contains("@latest"));
        assert!(DOCKERFILE.contains("USER node\n"));
        assert!(DOCKERFILE.contains("ENV HOME=/home/node\n"));
        assert!(DOCKERFILE.contains("WORKDIR /home/node/workspace\n"));
        assert!(DOCKERFILE.contains(&format!("LABEL {IMAGE_LABEL}=\"{IMAGE_LABEL_VALUE}\"")));
    }

    #[test]
    fn steps_from_both_builders() {
        assert_eq!(
            step_of("Step 3/9 : RUN apt-get update"),
            Some("[3/9] RUN apt-get update".into())
        );
        assert_eq!(
            step_of("#6 [2/5] RUN npm install -g x"),
            Some("[2/5] RUN npm install -g x".into())
        );
        assert_eq!(
            step_of("#7 [build 3/4] COPY . ."),
            Some("[build 3/4] COPY . .".into())
        );
        assert_eq!(step_of("#1 [internal] load build definition"), None);
        assert_eq!(step_of(" ---> Running in 1234"), None);
        assert_eq!(step_of("#6 0.345 Get:1 http://deb.debian.org"), None);
    }

    #[test]
    fn pull_failures_get_the_pull_hint_and_every_failure_the_image_hint() {
        let pull = failure_hints(
            "# c\nFROM --platform=linux/amd64 node:22@sha256:abc\n",
            ["Step 1/2 : FROM node:22", "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host"].into_iter(),
        )
        .join("\n");
        assert!(
            pull.contains("the base image `node:22@sha256:abc` could not be pulled"),
            "{pull}"
        );
        assert!(pull.contains("set `image` in the bottle"), "{pull}");

        let other =
            failure_hints(DOCKERFILE, ["E: Unable to locate package nope"].into_iter()).join("\n");
        assert!(!other.contains("could not be pulled"), "{other}");
        assert!(other.contains("set `image` in the bottle"), "{other}");

        let daemon = failure_hints(
            DOCKERFILE,
            ["Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"].into_iter(),
        )
        .join("\n");
        assert!(daemon.contains("`DOCKER_HOST`"), "{daemon}");
    }

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let mut view = BuildView::new(&Printer::capture(false));
        for n in 0..40 {
            view.line(&format!("line {n}"));
        }
        view.line("progress 10%\rprogress 100%");
        assert_eq!(view.tail.len(), TAIL_LINES);
        assert_eq!(view.tail.back().map(String::as_str), Some("progress 100%"));
        assert_eq!(view.tail.front().map(String::as_str), Some("line 26"));
    }
}
