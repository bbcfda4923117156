//! Pulling the proxy image when it is not on the daemon (a fresh machine
//! never has it): how a reference splits into the Engine API's `fromImage`
//! and `tag`, the view of a pull's progress on stderr, and what a failed pull
//! tells the user.

use std::collections::BTreeMap;
use std::fmt;

use indicatif::HumanBytes;

use super::client::{EngineError, ErrorKind};
use super::plan::{DEFAULT_PIPELOCK_IMAGE, PIPELOCK_IMAGE_ENV};
use crate::diagnostic::Diagnostic;
use crate::printer::{Printer, progress};

/// `(fromImage, tag)` for `POST /images/create`. An empty tag would pull
/// every tag of the repository, so a reference without one gets `latest`, as
/// `docker pull` does; a digest goes in `tag`, which the daemon accepts.
pub(crate) fn split_reference(image: &str) -> (String, String) {
    if let Some((name, digest)) = image.split_once('@') {
        let (repository, _tag) = split_tag(name);
        return (repository.to_owned(), digest.to_owned());
    }
    let (repository, tag) = split_tag(image);
    (repository.to_owned(), tag.unwrap_or("latest").to_owned())
}

/// A tag follows the last `:` after the last `/` (an earlier `:` is a registry port).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_component = name.rfind('/').map_or(0, |slash| slash + 1);
    match name[last_component..].rfind(':') {
        Some(colon) => {
            let colon = last_component + colon;
            (&name[..colon], Some(&name[colon + 1..]))
        }
        None => (name, None),
    }
}

/// The registry a reference names: its first component when that looks like
/// a host (a dot, a port or `localhost`), Docker Hub otherwise.
pub(crate) fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// One line of the daemon's pull output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PullEvent {
    /// A layer's short ID, or the tag on the `Pulling from` line.
    pub id: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

/// Statuses the daemon reports per layer.
const LAYER_STATUSES: [&str; 8] = [
    "Pulling fs layer",
    "Waiting",
    "Downloading",
    "Verifying Checksum",
    "Download complete",
    "Extracting",
    "Pull complete",
    "Already exists",
];

#[derive(Debug, Default)]
struct Layer {
    downloaded: u64,
    size: Option<u64>,
    done: bool,
}

/// The layers of a pull, summarised as "2/3 layers, 4.1 MiB of 9.8 MiB".
#[derive(Debug, Default)]
struct Layers {
    by_id: BTreeMap<String, Layer>,
}

fn bytes(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok()).filter(|&n| n > 0)
}

impl Layers {
    /// Records `event`; true when it was about a layer.
    fn apply(&mut self, event: &PullEvent) -> bool {
        let Some(id) = &event.id else { return false };
        if !LAYER_STATUSES.contains(&event.status.as_str()) {
            return false;
        }
        let layer = self.by_id.entry(id.clone()).or_default();
        match event.status.as_str() {
            "Downloading" => {
                layer.size = bytes(event.total).or(layer.size);
                layer.downloaded = bytes(event.current).unwrap_or(layer.downloaded);
            }
            "Verifying Checksum" | "Download complete" | "Extracting" => {
                layer.downloaded = layer.size.unwrap_or(layer.downloaded);
            }
            "Pull complete" | "Already exists" => {
                layer.downloaded = layer.size.unwrap_or(layer.downloaded);
                layer.done = true;
            }
            _ => {}
        }
        true
    }

    fn summary(&self) -> String {
        let done = self.by_id.values().filter(|l| l.done).count();
        let mut text = format!("{done}/{} layers", self.by_id.len());
        let total: u64 = self.by_id.values().filter_map(|l| l.size).sum();
        if total > 0 {
            let downloaded: u64 = self.by_id.values().map(|l| l.downloaded).sum();
            text.push_str(&format!(
                ", {} of {}",
                HumanBytes(downloaded.min(total)),
                HumanBytes(total)
            ));
        }
        text
    }
}

/// What the user sees of a pull: one summarised progress line when the
/// printer shows progress, otherwise a status line per step that matters (no
/// byte counts), which `--quiet` hides.
pub(crate) struct PullView {
    view: Option<progress::Line>,
    printer: Printer,
    layers: Layers,
}

impl PullView {
    pub fn new(image: &str, printer: &Printer) -> Self {
        Self {
            view: printer.progress_line(format!("pulling `{image}`")),
            printer: printer.clone(),
            layers: Layers::default(),
        }
    }

    pub fn update(&mut self, event: &PullEvent) {
        let about_a_layer = self.layers.apply(event);
        match &self.view {
            Some(view) => view.set_message(self.layers.summary()),
            None => {
                if let Some(line) = plain_line(event, about_a_layer) {
                    self.printer.status(line);
                }
            }
        }
    }
}

/// The line a plain log shows for `event`: a layer once it is in place, and
/// the pull's own messages (`Pulling from`, `Digest`, `Status`).
fn plain_line(event: &PullEvent, about_a_layer: bool) -> Option<String> {
    let finished = matches!(event.status.as_str(), "Pull complete" | "Already exists");
    if (about_a_layer && !finished) || event.status.is_empty() {
        return None;
    }
    Some(match &event.id {
        Some(id) => format!("{id}: {}", event.status),
        None => event.status.clone(),
    })
}

/// Why a pull failed, by what the user can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullFailure {
    /// No route, name or answer from the registry.
    RegistryUnreachable,
    /// The registry has no such image, or will not show it without a login.
    NoSuchImage,
    /// The image exists, but not for this machine's platform.
    WrongPlatform,
    InvalidReference,
    Other,
}

impl PullFailure {
    fn of(err: &EngineError) -> Self {
        let detail = err.detail.to_ascii_lowercase();
        let mentions = |needles: &[&str]| needles.iter().any(|n| detail.contains(n));
        if mentions(&["no matching manifest for"]) {
            Self::WrongPlatform
        } else if mentions(&["invalid reference format", "invalid repository name"]) {
            Self::InvalidReference
        } else if mentions(&[
            "no such host",
            "dial tcp",
            "connection refused",
            "i/o timeout",
            "tls handshake timeout",
            "network is unreachable",
            "no route to host",
            "server misbehaving",
            "temporary failure in name resolution",
            "connection reset",
            "context deadline exceeded",
            "while awaiting headers",
        ]) {
            Self::RegistryUnreachable
        } else if err.kind == ErrorKind::NotFound
            || mentions(&[
                "manifest unknown",
                "not found",
                "pull access denied",
                "repository does not exist",
                "unauthorized",
                "authentication required",
                "denied: requested access",
            ])
        {
            Self::NoSuchImage
        } else {
            Self::Other
        }
    }
}

/// A failed pull of the proxy image, worded for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyPullError {
    pub image: String,
    pub failure: PullFailure,
    /// The daemon's own words.
    pub detail: String,
}

impl ProxyPullError {
    /// The pull's error, unless the daemon itself could not be reached: the
    /// engine's own error says that better.
    pub fn classify(image: &str, err: EngineError) -> Result<Self, EngineError> {
        if err.kind == ErrorKind::Unreachable {
            return Err(err);
        }
        Ok(Self {
            image: image.to_owned(),
            failure: PullFailure::of(&err),
            detail: err.detail,
        })
    }
}

impl fmt::Display for ProxyPullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let image = &self.image;
        let registry = registry_of(image);
        let detail = &self.detail;
        write!(
            f,
            "could not pull the proxy image `{image}` from its registry: "
        )?;
        match self.failure {
            PullFailure::RegistryUnreachable => {
                write!(f, "`{registry}` could not be reached ({detail})")
            }
            PullFailure::NoSuchImage => write!(
                f,
                "`{registry}` has no such image or refused access to it ({detail})"
            ),
            PullFailure::WrongPlatform => {
                write!(f, "it has no build for this machine's platform ({detail})")
            }
            PullFailure::InvalidReference => {
                write!(f, "`{image}` is not a valid image reference ({detail})")
            }
            PullFailure::Other => write!(f, "{detail}"),
        }
    }
}

impl Diagnostic for ProxyPullError {
    fn hints(&self) -> Vec<String> {
        let image = &self.image;
        let registry = registry_of(image);
        let specific = match self.failure {
            PullFailure::RegistryUnreachable => Some(format!(
                "this machine may have no access to `{registry}`: bring the image from one that has, with `docker save` and `docker load`"
            )),
            PullFailure::NoSuchImage => Some(format!(
                "check the name and tag; if the registry needs a login, run `docker login {registry}`"
            )),
            PullFailure::WrongPlatform => {
                Some("use a pipelock image built for this platform".to_owned())
            }
            PullFailure::InvalidReference => Some(format!(
                "`{PIPELOCK_IMAGE_ENV}` must name an image such as `{DEFAULT_PIPELOCK_IMAGE}`"
            )),
            PullFailure::Other => None,
        };
        specific
            .into_iter()
            .chain([format!(
                "pull it yourself with `docker pull {image}` (which uses your registry logins), or set `{PIPELOCK_IMAGE_ENV}` to a pipelock image present locally (see `docker images`)"
            )])
            .collect()
    }
}

impl std::error::Error for ProxyPullError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag_or_digest() {
        let split = |image| {
            let (repository, tag) = split_reference(image);
            format!("{repository} {tag}")
        };
        assert_eq!(
            split("ghcr.io/luckypipewrench/pipelock:2.3.0"),
            "ghcr.io/luckypipewrench/pipelock 2.3.0"
        );
        assert_eq!(split("pipelock"), "pipelock latest");
        assert_eq!(
            split("localhost:5000/team/pipelock"),
            "localhost:5000/team/pipelock latest"
        );
        assert_eq!(
            split("localhost:5000/pipelock:v2"),
            "localhost:5000/pipelock v2"
        );
        assert_eq!(
            split("ghcr.io/x/pipelock:2.3.0@sha256:0123abcd"),
            "ghcr.io/x/pipelock sha256:0123abcd"
        );
        assert_eq!(
            split("claude-bottle-test/absent:none"),
            "claude-bottle-test/absent none"
        );
    }

    #[test]
    fn the_registry_is_the_first_component_when_it_is_a_host() {
        assert_eq!(
            registry_of("ghcr.io/luckypipewrench/pipelock:2.3.0"),
            "ghcr.io"
        );
        assert_eq!(registry_of("localhost:5000/p"), "localhost:5000");
        assert_eq!(registry_of("localhost/p"), "localhost");
        assert_eq!(registry_of("claude-bottle-test/absent:none"), "docker.io");
        assert_eq!(registry_of("pipelock"), "docker.io");
    }

    fn event(id: &str, status: &str, progress: Option<(i64, i64)>) -> PullEvent {
        PullEvent {
            id: (!id.is_empty()).then(|| id.to_owned()),
            status: status.to_owned(),
            current: progress.map(|p| p.0),
            total: progress.map(|p| p.1),
        }
    }

    #[test]
    fn layers_are_summarised_by_count_and_bytes() {
        let mut layers = Layers::default();
        assert!(!layers.apply(&event(
            "2.3.0",
            "Pulling from luckypipewrench/pipelock",
            None
        )));
        assert!(layers.apply(&event("aaa", "Pulling fs layer", None)));
        assert!(layers.apply(&event("bbb", "Pulling fs layer", None)));
        assert!(layers.apply(&event("ccc", "Already exists", None)));
        assert_eq!(layers.summary(), "1/3 layers");
        layers.apply(&event("aaa", "Downloading", Some((1024, 4096))));
        layers.apply(&event("bbb", "Downloading", Some((0, 2048))));
        assert_eq!(layers.summary(), "1/3 layers, 1.00 KiB of 6.00 KiB");
        layers.apply(&event("aaa", "Download complete", None));
        layers.apply(&event("aaa", "Extracting", Some((100, 4096))));
        layers.apply(&event("aaa", "Pull complete", None));
        assert_eq!(layers.summary(), "2/3 layers, 4.00 KiB of 6.00 KiB");
        layers.apply(&event("bbb", "Pull complete", None));
        assert_eq!(layers.summary(), "3/3 layers, 6.00 KiB of 6.00 KiB");
    }

    #[test]
    fn a_plain_log_shows_finished_layers_and_the_pulls_messages_only() {
        let lines: Vec<String> = [
            event("2.3.0", "Pulling from luckypipewrench/pipelock", None),
            event("aaa", "Pulling fs layer", None),
            event("aaa", "Downloading", Some((1, 2))),
            event("aaa", "Verifying Checksum", None),
            event("aaa", "Extracting", Some((1, 2))),
            event("aaa", "Pull complete", None),
            event("bbb", "Already exists", None),
            event("", "Digest: sha256:feed", None),
            event(
                "",
                "Status: Downloaded newer image for ghcr.io/luckypipewrench/pipelock:2.3.0",
                None,
            ),
        ]
        .iter()
        .filter_map(|e| {
            let mut layers = Layers::default();
            plain_line(e, layers.apply(e))
        })
        .collect();
        assert_eq!(
            lines,
            [
                "2.3.0: Pulling from luckypipewrench/pipelock",
                "aaa: Pull complete",
                "bbb: Already exists",
                "Digest: sha256:feed",
                "Status: Downloaded newer image for ghcr.io/luckypipewrench/pipelock:2.3.0",
            ]
        );
    }

    fn failure(kind: ErrorKind, detail: &str) -> PullFailure {
        PullFailure::of(&EngineError::new(kind, "pull", detail))
    }

    #[test]
    fn failures_are_told_apart_by_the_daemons_words() {
        // What Docker 20.10 answers on a machine without a registry.
        assert_eq!(
            failure(
                ErrorKind::Other,
                "Get \"https://ghcr.io/v2/\": dial tcp: lookup ghcr.io on 10.255.255.53:53: no such host"
            ),
            PullFailure::RegistryUnreachable
        );
        assert_eq!(
            failure(
                ErrorKind::Other,
                "Get \"http://localhost:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused"
            ),
            PullFailure::RegistryUnreachable
        );
        assert_eq!(
            failure(
                ErrorKind::NotFound,
                "pull access denied for nope/pipelock, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"
            ),
            PullFailure::NoSuchImage
        );
        assert_eq!(
            failure(
                ErrorKind::Other,
                "manifest for ghcr.io/x/pipelock:9.9.9 not found: manifest unknown: manifest unknown"
            ),
            PullFailure::NoSuchImage
        );
        assert_eq!(
            failure(
                ErrorKind::Other,
                "no matching manifest for linux/riscv64 in the manifest list entries"
            ),
            PullFailure::WrongPlatform
        );
        assert_eq!(
            failure(ErrorKind::Other, "invalid reference format"),
            PullFailure::InvalidReference
        );
        assert_eq!(
            failure(
                ErrorKind::Other,
                "write /var/lib/docker/tmp/x: no space left on device"
            ),
            PullFailure::Other
        );
    }

    #[test]
    fn every_failure_names_the_image_and_both_ways_out() {
        for failure in [
            PullFailure::RegistryUnreachable,
            PullFailure::NoSuchImage,
            PullFailure::WrongPlatform,
            PullFailure::InvalidReference,
            PullFailure::Other,
        ] {
            let err = ProxyPullError {
                image: "ghcr.io/luckypipewrench/pipelock:2.3.0".into(),
                failure,
                detail: "the daemon's words".into(),
            };
            let text = err.to_string();
            let hints = err.hints().join("\n");
            assert!(
                text.starts_with(
                    "could not pull the proxy image `ghcr.io/luckypipewrench/pipelock:2.3.0` from its registry: "
                ),
                "{text}"
            );
            assert!(text.contains("the daemon's words"), "{text}");
            assert!(
                hints.contains("`docker pull ghcr.io/luckypipewrench/pipelock:2.3.0`"),
                "{hints}"
            );
            assert!(hints.contains("`CLAUDE_BOTTLE_PIPELOCK_IMAGE`"), "{hints}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn an_unreachable_daemon_keeps_the_engines_own_error() {
        let err = EngineError::new(
            ErrorKind::Unreachable,
            "pull the image `p`",
            "connection refused",
        );
        let kept = ProxyPullError::classify("p", err.clone()).unwrap_err();
        assert_eq!(kept, err);
    }
}
