//! The proxy image pull on the real Docker daemon: a fresh machine has no
//! pipelock image, so `start` pulls it. This machine has no image registry,
//! so one test checks that a pull that cannot reach its registry fails within
//! seconds with the pull error and leaves nothing, and another serves the
//! pipelock stand-in from a registry of its own on 127.0.0.1 (the daemon
//! speaks plain HTTP to loopback registries) to check that a pulled image is
//! used as is and the session runs.
//!
//! Images: the agent test image is the bottle's `image` (no build); the
//! stand-in is what the local registry serves (scripts/build-test-images.sh
//! builds both). Without a daemon or the images these tests fail
//! (scripts/test.sh reports them as skipped outside CI).
//!
//! Resources: every agent is named `dp-<test>-<pid>-<n>`, so everything the
//! product makes carries `claude-bottle.agent=<that name>`; a [`Fixture`]
//! removes whatever is left with that label when it drops, and stale `dp-*`
//! resources of dead test processes are swept first. The only thing a test
//! makes itself is the pulled tag, which a guard untags.

mod docker_support {
    pub mod daemon;
    pub mod fixture;
    pub mod lock;
    pub mod sessions;
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use docker_support::daemon::{docker, docker_lines, image_exists};
use docker_support::fixture::Fixture;
use docker_support::lock::SessionLocks;
use docker_support::sessions::{AGENT_IMAGE, PIPELOCK_STANDIN_IMAGE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// An image no registry has, on a machine that reaches none.
const ABSENT_IMAGE: &str = "claude-bottle-test/absent:none";
/// Agents of this suite are named `dp-...`.
const AGENT_PREFIX: &str = "dp-";

/// Requires the daemon and the images (panics without them: see
/// `docker_support::daemon::require`).
fn require() {
    docker_support::fixture::require("docker_pull", AGENT_PREFIX)
}

fn image_id(image: &str) -> String {
    docker_lines(&["image", "inspect", "--format", "{{.Id}}", image]).join("")
}

// ---------------------------------------------------------------------------
// A test's home, manifest and agent

/// An agent in a bottle with the agent test image, whose proxy image is `proxy_image`.
fn fixture(tag: &str, proxy_image: &str) -> Fixture {
    let fx = Fixture::new(
        AGENT_PREFIX,
        tag,
        &[("CLAUDE_BOTTLE_PIPELOCK_IMAGE", proxy_image)],
        SessionLocks::take(),
    );
    fx.write_manifest(&json!({
        "bottles": { "dp": {
            "image": AGENT_IMAGE,
            "egress": { "allowlist": ["api.anthropic.com"] }
        } },
        "agents": { &fx.agent: { "bottle": "dp", "prompt": "" } }
    }));
    fx
}

/// What this suite adds to the shared fixture.
impl Fixture {
    /// Runs `claude-bottle ARGS` to its end, with stdin closed.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run claude-bottle")
    }
}

// ---------------------------------------------------------------------------
// A registry of one image on 127.0.0.1

/// Serves one local image over the registry API v2: its manifest under one
/// repository and tag, its config and layers as blobs, all read from
/// `docker save` (whose layers are the uncompressed diffs, so a layer's
/// digest is its diff ID, and the daemon takes uncompressed tars under the
/// gzip media type).
struct LocalRegistry {
    port: u16,
    repository: String,
    tag: String,
    /// Manifest requests received, to prove the pull came here.
    manifest_requests: Arc<AtomicUsize>,
}

/// Where a layer blob is in `docker save`'s output, and its size.
#[derive(Clone)]
struct Layer {
    entry: String,
    size: u64,
}

/// `docker save IMAGE` as a stream of tar entries.
fn saved(image: &str) -> (std::process::Child, tar::Archive<std::process::ChildStdout>) {
    let mut child = Command::new("docker")
        .args(["save", image])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run docker save");
    let stdout = child.stdout.take().expect("stdout piped");
    (child, tar::Archive::new(stdout))
}

impl LocalRegistry {
    fn serve(image: &str, repository: &str, tag: &str) -> Self {
        Self::serve_holding(image, repository, tag, None)
    }

    /// Like [`serve`](Self::serve), but each manifest request waits `hold`
    /// before it is answered: a pull that stays in flight.
    fn serve_holding(image: &str, repository: &str, tag: &str, hold: Option<Duration>) -> Self {
        // One pass reads the small files; layers are only measured.
        let mut files = std::collections::BTreeMap::new();
        let mut sizes = std::collections::BTreeMap::new();
        let (mut child, mut archive) = saved(image);
        for entry in archive.entries().expect("docker save output") {
            let mut entry = entry.expect("a saved entry");
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path.ends_with("layer.tar") {
                sizes.insert(path, entry.size());
            } else if path.ends_with(".json") {
                files.insert(path, read_to_string(&mut entry).into_bytes());
            }
        }
        assert!(child.wait().unwrap().success(), "docker save {image}");
        let saved_manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let entry = &saved_manifest[0];
        let config = files[entry["Config"].as_str().expect("Config")].clone();
        let config_json: Value = serde_json::from_slice(&config).unwrap();
        let diff_ids = config_json["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff_ids");
        let mut layers = std::collections::BTreeMap::new();
        let layer_descriptors: Vec<Value> = entry["Layers"]
            .as_array()
            .expect("Layers")
            .iter()
            .zip(diff_ids)
            .map(|(path, diff_id)| {
                let path = path.as_str().unwrap().to_owned();
                let size = sizes[&path];
                let digest = diff_id.as_str().unwrap().to_owned();
                layers.insert(digest.clone(), Layer { entry: path, size });
                json!({
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": size,
                    "digest": digest,
                })
            })
            .collect();
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": layer_descriptors,
        }))
        .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the registry");
        let port = listener.local_addr().unwrap().port();
        let manifest_requests = Arc::new(AtomicUsize::new(0));
        let routes = Arc::new(Routes {
            image: image.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            manifest,
            config_digest,
            config,
            layers,
            manifest_requests: Arc::clone(&manifest_requests),
            hold,
        });
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let routes = Arc::clone(&routes);
                std::thread::spawn(move || routes.answer(stream));
            }
        });
        Self {
            port,
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            manifest_requests,
        }
    }

    fn reference(&self) -> String {
        format!("127.0.0.1:{}/{}:{}", self.port, self.repository, self.tag)
    }
}

struct Routes {
    image: String,
    repository: String,
    tag: String,
    manifest: Vec<u8>,
    config_digest: String,
    config: Vec<u8>,
    layers: std::collections::BTreeMap<String, Layer>,
    manifest_requests: Arc<AtomicUsize>,
    hold: Option<Duration>,
}

impl Routes {
    /// One request per connection (`Connection: close`).
    fn answer(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut first = [0u8; 1];
        // The daemon tries TLS first; a handshake record starts with 0x16.
        if stream
            .peek(&mut first)
            .map_or(true, |n| n == 0 || first[0] == 0x16)
        {
            return;
        }
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        });
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) if header.trim().is_empty() => break,
                Ok(_) => {}
            }
        }
        let mut words = request_line.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let head = method == "HEAD";
        let manifest_path = format!("/v2/{}/manifests/", self.repository);
        let blob_path = format!("/v2/{}/blobs/", self.repository);
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&self.manifest)));
        let ok = |content_type: &str, headers: &[(&str, &str)], length: u64| Reply {
            status: "200 OK",
            content_type: content_type.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            length,
        };
        let _ = if path == "/v2/" || path == "/v2" {
            ok("application/json", &[], 2).send(&mut stream, head, |s| s.write_all(b"{}"))
        } else if let Some(reference) = path.strip_prefix(&manifest_path) {
            if reference == self.tag || reference == manifest_digest {
                self.manifest_requests.fetch_add(1, Ordering::Relaxed);
                if let Some(hold) = self.hold {
                    std::thread::sleep(hold);
                }
                ok(
                    "application/vnd.docker.distribution.manifest.v2+json",
                    &[("Docker-Content-Digest", &manifest_digest)],
                    self.manifest.len() as u64,
                )
                .send(&mut stream, head, |s| s.write_all(&self.manifest))
            } else {
                not_found(&mut stream, head, "MANIFEST_UNKNOWN")
            }
        } else if let Some(digest) = path.strip_prefix(&blob_path) {
            if digest == self.config_digest {
                ok("application/octet-stream", &[], self.config.len() as u64).send(
                    &mut stream,
                    head,
                    |s| s.write_all(&self.config),
                )
            } else if let Some(layer) = self.layers.get(digest) {
                ok("application/octet-stream", &[], layer.size)
                    .send(&mut stream, head, |s| self.copy_layer(layer, s))
            } else {
                not_found(&mut stream, head, "BLOB_UNKNOWN")
            }
        } else {
            not_found(&mut stream, head, "NAME_UNKNOWN")
        };
    }

    /// Streams one layer out of a fresh `docker save`.
    fn copy_layer(&self, layer: &Layer, out: &mut TcpStream) -> std::io::Result<()> {
        let (mut child, mut archive) = saved(&self.image);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.path()?.to_string_lossy() == layer.entry {
                std::io::copy(&mut entry, out)?;
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }
}

struct Reply {
    status: &'static str,
    content_type: String,
    headers: Vec<(String, String)>,
    length: u64,
}

impl Reply {
    fn send(
        self,
        stream: &mut TcpStream,
        head: bool,
        body: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut text = format!(
            "HTTP/1.1 {}\r\nDocker-Distribution-API-Version: registry/2.0\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status, self.content_type, self.length
        );
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes())?;
        if !head {
            body(stream)?;
        }
        stream.flush()
    }
}

fn not_found(stream: &mut TcpStream, head: bool, code: &str) -> std::io::Result<()> {
    let body = format!("{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"unknown\"}}]}}");
    Reply {
        status: "404 Not Found",
        content_type: "application/json".to_owned(),
        headers: Vec::new(),
        length: body.len() as u64,
    }
    .send(stream, head, |s| s.write_all(body.as_bytes()))
}

/// Untags a pulled reference when dropped (the image itself is the
/// stand-in's, which keeps its own tags).
struct PulledTag(String);

impl Drop for PulledTag {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", &self.0]);
    }
}

fn read_to_string(mut reader: impl Read) -> String {
    let mut text = String::new();
    let _ = reader.read_to_string(&mut text);
    text
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn start_with_a_proxy_image_no_registry_has_fails_fast_and_leaves_nothing() {
    require();
    assert!(
        !image_exists(ABSENT_IMAGE),
        "`{ABSENT_IMAGE}` exists on this daemon; this test needs it absent"
    );
    let fx = fixture("absent", ABSENT_IMAGE);
    let clock = Instant::now();
    let out = fx.run(&["start", &fx.agent, "--yes", "--", "-p", "hello"]);
    let elapsed = clock.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("failed start took {elapsed:?}");
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        elapsed < Duration::from_secs(15),
        "took {elapsed:?}\n{stderr}"
    );
    assert!(
        stderr.contains("(claude-bottle-test/absent:none, will be pulled)"),
        "the plan says the image will be pulled:\n{stderr}"
    );
    assert!(
        stderr.contains("pulling the proxy image `claude-bottle-test/absent:none`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "could not pull the proxy image `claude-bottle-test/absent:none` from its registry: `docker.io` could not be reached ("
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "\n  hint: pull it yourself with `docker pull claude-bottle-test/absent:none`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("`CLAUDE_BOTTLE_PIPELOCK_IMAGE`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "stdout is for data only");
    assert!(!image_exists(ABSENT_IMAGE));
    fx.assert_nothing_left();
}

#[test]
fn a_dry_run_with_an_absent_proxy_image_plans_the_pull_and_pulls_nothing() {
    require();
    let fx = fixture("dry", ABSENT_IMAGE);
    let out = fx.run(&["start", &fx.agent, "--dry-run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A pull here cannot succeed, so success means none was tried.
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "proxy: claude-bottle-pipelock-{} (claude-bottle-test/absent:none, will be pulled)\n",
            fx.agent
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("pulling the proxy image"), "{stderr}");
    fx.assert_nothing_left();
}

#[test]
fn a_proxy_image_pulled_from_a_registry_is_used_as_is() {
    require();
    let registry = LocalRegistry::serve(
        PIPELOCK_STANDIN_IMAGE,
        "claude-bottle-test/pulled-standin",
        &format!("p{}", std::process::id()),
    );
    let reference = registry.reference();
    assert!(!image_exists(&reference), "`{reference}` exists already");
    let _untag = PulledTag(reference.clone());
    let fx = fixture("pulled", &reference);
    let out = fx.run(&[
        "start",
        &fx.agent,
        "--yes",
        "--",
        "--stub-exit",
        "7",
        "-p",
        "hi",
    ]);
    let stderr = read_to_string(&out.stderr[..]);
    assert_eq!(out.status.code(), Some(7), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("({reference}, will be pulled)")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pulled the proxy image `{reference}` in ")),
        "{stderr}"
    );
    assert!(
        registry.manifest_requests.load(Ordering::Relaxed) > 0,
        "the daemon did not ask the registry"
    );
    // The very image the registry served: pulled, tagged, nothing rebuilt.
    assert_eq!(image_id(&reference), image_id(PIPELOCK_STANDIN_IMAGE));
    fx.assert_nothing_left();

    // Present now: the next start plans no pull and makes none.
    let served = registry.manifest_requests.load(Ordering::Relaxed);
    let again = fixture("pulled-again", &reference);
    let out = again.run(&["start", &again.agent, "--yes", "--", "-p", "hi"]);
    let stderr = read_to_string(&out.stderr[..]);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains(&format!("({reference})\n")), "{stderr}");
    assert_eq!(registry.manifest_requests.load(Ordering::Relaxed), served);
    again.assert_nothing_left();
}

#[test]
fn sigterm_while_the_proxy_image_is_pulled_leaves_nothing() {
    require();
    let registry = LocalRegistry::serve_holding(
        PIPELOCK_STANDIN_IMAGE,
        "claude-bottle-test/held-standin",
        &format!("p{}", std::process::id()),
        Some(Duration::from_secs(60)),
    );
    let reference = registry.reference();
    let _untag = PulledTag(reference.clone());
    let fx = fixture("held", &reference);
    let mut child = fx
        .command(&["start", &fx.agent, "--yes", "--", "-p", "hi"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn claude-bottle");
    let deadline = Instant::now() + Duration::from_secs(30);
    while registry.manifest_requests.load(Ordering::Relaxed) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "claude-bottle exited before it pulled"
        );
        assert!(
            Instant::now() < deadline,
            "the daemon never asked the registry"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let clock = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if clock.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("claude-bottle did not exit within 20 s of SIGTERM during the pull");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = read_to_string(child.stderr.take().expect("stderr piped"));
    eprintln!("exit after SIGTERM took {:?}", clock.elapsed());
    assert_eq!(status.code(), Some(128 + 15), "stderr:\n{stderr}");
    assert!(
        clock.elapsed() < Duration::from_secs(10),
        "teardown waited for the pull: {:?}",
        clock.elapsed()
    );
    assert!(!image_exists(&reference));
    fx.assert_nothing_left();
}
