//! On the real daemon: a provisioning archive uploaded to a created, not yet
//! started container (`PUT /containers/{id}/archive?path=/`) lands with owner
//! 1000:1000 and the modes it carries, so provisioning needs no `chown` exec;
//! and the image builder reports success and failure as it should.
//!
//! Needs a Docker daemon and the offline base test image
//! (scripts/build-test-images.sh), which the throwaway images here build
//! FROM; without them the tests fail (scripts/test.sh reports them as skipped
//! outside CI). Every resource carries `claude-bottle.test=1`, the suite and
//! the pid; stale ones of dead runs are swept first.

mod docker_support {
    pub mod daemon;
    pub mod test_resources;
}

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use claude_bottle::backend::docker::docker_endpoint;
use claude_bottle::backend::docker::image::{self, ImageBuildError};
use claude_bottle::core::provision::archive;
use claude_bottle::core::provision::{Item, ProvisionSet, Source};
use claude_bottle::diagnostic::Diagnostic;
use claude_bottle::printer::Printer;
use docker_support::daemon::{docker, remove_resources};
use docker_support::test_resources::{TEST_PID_LABEL, sweep_stale_test_resources};
use futures_util::StreamExt;

const SUITE: &str = "docker_provision";
/// The Debian root filesystem every test image builds FROM: it has the `sh`,
/// `sleep`, `find`, `stat` and `sort` these tests run in their containers.
const BASE_IMAGE: &str = "claude-bottle-test/base:current";

fn labels() -> Vec<(String, String)> {
    vec![
        ("claude-bottle.test".into(), "1".into()),
        ("claude-bottle.test.suite".into(), SUITE.into()),
        (TEST_PID_LABEL.into(), std::process::id().to_string()),
    ]
}

/// The daemon (the test fails without it or the base image); this suite's
/// stale resources are swept first.
async fn daemon() -> Docker {
    docker_support::daemon::require(SUITE, &[BASE_IMAGE]);
    sweep_stale_test_resources(&format!("claude-bottle.test.suite={SUITE}"));
    let docker = Docker::connect_with_defaults().expect("connect to the Docker daemon");
    docker
        .ping()
        .await
        .expect("the daemon answers the CLI but not the Engine API");
    docker
}

/// Removes what a test created, even when it fails.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_resources(&self.containers, &[]);
        for tag in &self.images {
            docker(&["rmi", "-f", tag]);
        }
    }
}

/// A throwaway image of the base test image with this test's labels, and
/// `claude-bottle.test.case=<name>-<pid>`: containers made from it (a build's
/// intermediate ones too) carry them, so a test finds exactly its own.
fn throwaway_image(cleanup: &mut Cleanup, name: &str) -> String {
    let context = tempfile::tempdir().expect("context");
    fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {BASE_IMAGE}\n"),
    )
    .expect("Dockerfile");
    let tag = format!("claude-bottle-test/{name}:{}", std::process::id());
    let mut args = vec!["build".to_owned(), "-q".into(), "-t".into(), tag.clone()];
    for (key, value) in labels() {
        args.push("--label".into());
        args.push(format!("{key}={value}"));
    }
    args.push("--label".into());
    args.push(format!(
        "claude-bottle.test.case={name}-{}",
        std::process::id()
    ));
    args.push(context.path().display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cleanup.images.push(tag.clone());
    let out = docker(&args);
    assert!(
        out.status.success(),
        "throwaway image build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

async fn create_container(docker: &Docker, cleanup: &mut Cleanup, image: &str) -> String {
    let config = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        labels: Some(labels().into_iter().collect()),
        ..Default::default()
    };
    let name = format!("claude-bottle-test-provision-{}", std::process::id());
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), config)
        .await
        .expect("create container");
    cleanup.containers.push(created.id.clone());
    created.id
}

async fn upload(docker: &Docker, id: &str, archive: Vec<u8>) {
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    docker
        .upload_to_container(id, Some(options), bollard::body_full(archive.into()))
        .await
        .expect("upload archive");
}

/// Uploads the provisioning archive of `set` as the bring-up does: streamed.
async fn upload_streamed(docker: &Docker, id: &str, set: ProvisionSet) {
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    let (chunks, writer) = archive::stream(set);
    docker
        .upload_to_container(id, Some(options), bollard::body_try_stream(chunks))
        .await
        .expect("upload archive");
    writer
        .await
        .expect("archive task")
        .expect("archive written");
}

/// `path -> (uid, gid, mode, kind)` as the daemon reports them in a download.
async fn download(
    docker: &Docker,
    id: &str,
    path: &str,
) -> BTreeMap<String, (u64, u64, u32, String)> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(id, Some(options));
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("download chunk"));
    }
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let name = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => "dir".to_owned(),
            tar::EntryType::Symlink => format!(
                "link->{}",
                entry.link_name().expect("link").expect("target").display()
            ),
            _ => {
                let mut data = String::new();
                entry.read_to_string(&mut data).expect("data");
                format!("file:{data}")
            }
        };
        out.insert(
            name,
            (
                header.uid().expect("uid"),
                header.gid().expect("gid"),
                header.mode().expect("mode") & 0o7777,
                kind,
            ),
        );
    }
    out
}

async fn exec(docker: &Docker, id: &str, user: &str, cmd: &[&str]) -> (i64, String) {
    let created = docker
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                user: Some(user.to_owned()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create exec");
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .expect("start exec")
    {
        while let Some(chunk) = output.next().await {
            text.push_str(&chunk.expect("exec output").to_string());
        }
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .expect("inspect exec");
    (inspect.exit_code.unwrap_or(-1), text)
}

fn provision_fixture(host: &Path) -> ProvisionSet {
    let tree = host.join("project");
    fs::create_dir_all(tree.join(".git/objects")).expect("mkdir");
    fs::write(tree.join(".git/HEAD"), "ref: refs/heads/main\n").expect("HEAD");
    fs::write(tree.join("run.sh"), "#!/bin/sh\n").expect("run.sh");
    fs::set_permissions(tree.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(tree.join("notes.txt"), "notes").expect("notes");
    fs::set_permissions(tree.join("notes.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    fs::set_permissions(tree.join(".git/objects"), fs::Permissions::from_mode(0o700))
        .expect("chmod");
    symlink("notes.txt", tree.join("readme")).expect("symlink");
    let key = host.join("id_ed25519");
    fs::write(&key, "PRIVATE").expect("key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    ProvisionSet {
        dirs: vec![
            ("/home/node".into(), 0o755),
            ("/home/node/.ssh".into(), 0o700),
        ],
        items: vec![
            Item {
                dest: "/home/node/.claude-bottle-prompt.txt".into(),
                mode: 0o600,
                source: Source::Bytes(b"be kind".to_vec()),
            },
            Item {
                dest: "/home/node/.ssh/id_github".into(),
                mode: 0o600,
                source: Source::HostFile(key),
            },
            Item {
                dest: "/home/node/workspace".into(),
                mode: 0o755,
                source: Source::HostTree(tree),
            },
        ],
        prompt_file: Some("/home/node/.claude-bottle-prompt.txt".into()),
    }
}

#[tokio::test]
async fn an_uploaded_archive_keeps_owner_and_modes_before_and_after_start() {
    let docker = daemon().await;
    let mut cleanup = Cleanup::default();
    let id = create_container(&docker, &mut cleanup, BASE_IMAGE).await;

    // An existing home owned by root with another mode, as an image may have it:
    // the provisioning archive must take it over.
    let mut pre = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o750);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    pre.append_data(&mut header, "home/node", std::io::empty())
        .expect("pre-existing home");
    upload(&docker, &id, pre.into_inner().expect("tar")).await;

    let host = tempfile::tempdir().expect("host");
    let set = provision_fixture(host.path());
    upload_streamed(&docker, &id, set).await;

    let expected: BTreeMap<&str, (u32, &str)> = [
        ("node", (0o755, "dir")),
        ("node/.ssh", (0o700, "dir")),
        ("node/.ssh/id_github", (0o600, "file:PRIVATE")),
        ("node/.claude-bottle-prompt.txt", (0o600, "file:be kind")),
        ("node/workspace", (0o755, "dir")),
        ("node/workspace/.git", (0o755, "dir")),
        (
            "node/workspace/.git/HEAD",
            (0o644, "file:ref: refs/heads/main\n"),
        ),
        ("node/workspace/.git/objects", (0o700, "dir")),
        ("node/workspace/notes.txt", (0o640, "file:notes")),
        ("node/workspace/readme", (0o777, "link->notes.txt")),
        ("node/workspace/run.sh", (0o755, "file:#!/bin/sh\n")),
    ]
    .into_iter()
    .collect();

    // Before start, as the daemon stores it.
    let stored = download(&docker, &id, "/home/node").await;
    let stored_view: BTreeMap<&str, (u64, u64, u32, &str)> = stored
        .iter()
        .map(|(path, (uid, gid, mode, kind))| (path.as_str(), (*uid, *gid, *mode, kind.as_str())))
        .collect();
    let expected_view: BTreeMap<&str, (u64, u64, u32, &str)> = expected
        .iter()
        .map(|(path, (mode, kind))| (*path, (1000, 1000, *mode, *kind)))
        .collect();
    assert_eq!(stored_view, expected_view, "before start");

    // After start, as processes in the container see it.
    docker.start_container(&id, None).await.expect("start");
    let (code, listing) = exec(
        &docker,
        &id,
        "0",
        &[
            "sh",
            "-c",
            "cd /home && find node | sort | while read p; do stat -c '%n %u:%g %a %F' \"$p\"; done",
        ],
    )
    .await;
    assert_eq!(code, 0, "{listing}");
    let seen: BTreeMap<String, String> = listing
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(path, rest)| (path.to_owned(), rest.to_owned()))
        .collect();
    for (path, (mode, kind)) in &expected {
        let file_type = match *kind {
            "dir" => "directory",
            k if k.starts_with("link") => "symbolic link",
            _ => "regular file",
        };
        assert_eq!(
            seen.get(*path).map(String::as_str),
            Some(format!("1000:1000 {mode:o} {file_type}").as_str()),
            "{path} in:\n{listing}"
        );
    }
    assert_eq!(seen.len(), expected.len(), "unexpected entries:\n{listing}");

    // uid 1000 reads its 0600 files and writes its workspace without any chown.
    let (code, out) = exec(
        &docker,
        &id,
        "1000:1000",
        &[
            "sh",
            "-c",
            "cat /home/node/.claude-bottle-prompt.txt && touch /home/node/workspace/new && cat /home/node/.ssh/id_github",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "be kindPRIVATE"));
}

#[tokio::test]
async fn the_builder_builds_and_reports_failures() {
    let _docker = daemon().await;
    let mut cleanup = Cleanup::default();
    let base = throwaway_image(&mut cleanup, "image-base");
    let pid = std::process::id().to_string();
    let labels = [
        ("claude-bottle.test", "1"),
        ("claude-bottle.test.suite", SUITE),
        (TEST_PID_LABEL, pid.as_str()),
    ];

    let quiet = Printer::capture(false);
    let good = format!("FROM {base}\nRUN echo built > /marker\n");
    let tag = image::tag_for(good.as_bytes())
        .replace("claude-bottle-agent", "claude-bottle-test/agent-build");
    cleanup.images.push(tag.clone());
    image::build_dockerfile(&docker_endpoint(), &good, &tag, &labels, &[], &quiet)
        .await
        .expect("a good build");
    let out = docker(&[
        "run",
        "--rm",
        "--label",
        "claude-bottle.test=1",
        &tag,
        "cat",
        "/marker",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built\n");

    let bad = format!("FROM {base}\nRUN echo about to fail && exit 3\n");
    let bad_tag = format!("claude-bottle-test/agent-bad:{pid}");
    cleanup.images.push(bad_tag.clone());
    let err = image::build_dockerfile(&docker_endpoint(), &bad, &bad_tag, &labels, &[], &quiet)
        .await
        .expect_err("a failing build");
    let ImageBuildError::Failed { status, tail, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    // Older CLIs exit 1 for any failed step, newer ones with the step's code.
    assert!(matches!(status.as_str(), "exit 1" | "exit 3"), "{err}");
    assert!(tail.contains("about to fail"), "{err}");
    assert!(tail.contains("returned a non-zero code: 3"), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "docker build ran and failed ({status}) for the agent image `{bad_tag}`"
        )),
        "{message}"
    );
    assert!(!message.contains("hint:"), "hints are data: {message}");
    let hints = err.hints().join("\n");
    assert!(hints.contains("set `image` in the bottle"), "{hints}");

    let leftovers = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=claude-bottle.test.case=image-base-{pid}"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&leftovers.stdout).trim(),
        "",
        "a failed build left its intermediate container"
    );
}
