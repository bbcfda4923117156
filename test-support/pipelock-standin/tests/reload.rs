//! Hot reload as pipelock 2.3.0 does it: on a change to the file (in place or
//! by an atomic rename) and on SIGHUP; new requests see the new allowlist,
//! open tunnels stay; downgrades of a strict config and invalid files are
//! refused and the running config stays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pipelock_standin::config::Config;
use pipelock_standin::log::{AuditLog, SharedBuffer};
use pipelock_standin::proxy::Proxy;
use pipelock_standin::reload::{
    DOWNGRADE_REJECTED, FORWARD_PROXY_REJECTED, ReloadOutcome, Reloader,
};
use serde_json::Value;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{events, read_head, start_echo};

/// A strict config admitting `allow`; `localhost` is trusted and 127.0.0.1 is
/// in the SSRF IP allowlist throughout, so only `api_allowlist` decides.
fn yaml(allow: &str) -> String {
    format!(
        "mode: strict
api_allowlist: [{allow}]
trusted_domains: [localhost]
ssrf:
  ip_allowlist: [127.0.0.1/32]
fetch_proxy:
  listen: 127.0.0.1:0
forward_proxy:
  enabled: true
"
    )
}

fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Running {
    _dir: tempfile::TempDir,
    path: PathBuf,
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    log: SharedBuffer,
    stderr: SharedBuffer,
}

/// A proxy serving `yaml` from a file in a fresh directory, with the file
/// watch running when `watch` is set (SIGHUP is left to the binary tests).
async fn start(yaml: &str, watch: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipelock.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(&path).unwrap();
    let listener = TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (log, buffer) = AuditLog::in_memory();
    let log = Arc::new(log);
    let proxy = Arc::new(Proxy::new(config, Arc::clone(&log)));
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    let stderr = SharedBuffer::default();
    let reloader = Arc::new(Reloader::new(
        path.clone(),
        Arc::clone(&proxy),
        log,
        Box::new(stderr.clone()),
    ));
    if watch {
        tokio::spawn(reloader.watch(false).unwrap());
    }
    Running {
        _dir: dir,
        path,
        addr,
        proxy,
        reloader,
        log: buffer,
        stderr,
    }
}

/// The status line of the proxy's answer to `CONNECT target`.
async fn connect_status(proxy: SocketAddr, target: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut stream))
        .await
        .expect("an answer in time");
    head.lines().next().unwrap_or_default().to_owned()
}

/// Opens a tunnel to `target` and checks it carries bytes both ways.
async fn open_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_echoes(&mut stream, b"ping").await;
    stream
}

async fn assert_echoes(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    let mut echoed = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(echoed, bytes);
}

fn assert_success_event(line: &Value, yaml: &str) {
    assert_eq!(line["event"], "config_reload");
    assert_eq!(line["level"], "info");
    assert_eq!(line["component"], "pipelock");
    assert_eq!(line["status"], "success");
    assert_eq!(line["detail"], "mode=strict");
    assert_eq!(line["config_hash"], sha256_hex(yaml));
    assert_eq!(line["message"], "configuration reloaded");
    assert!(line["time"].is_string());
}

#[tokio::test]
async fn rewriting_the_file_in_place_changes_what_is_admitted() {
    let first = yaml("localhost");
    let run = start(&first, true).await;
    let echo = start_echo().await;
    let ip_target = format!("127.0.0.1:{echo}");
    assert!(connect_status(run.addr, &ip_target).await.contains("403"));

    let second = yaml("localhost, 127.0.0.1");
    std::fs::write(&run.path, &second).unwrap();
    let reloaded = events(&run.log, "config_reload", 1).await;
    assert_success_event(&reloaded[0], &second);
    assert!(connect_status(run.addr, &ip_target).await.contains("200"));

    // Entries can be taken away as well: api_allowlist is no downgrade.
    let third = yaml("127.0.0.1");
    std::fs::write(&run.path, &third).unwrap();
    events(&run.log, "config_reload", 2).await;
    assert!(
        connect_status(run.addr, &format!("localhost:{echo}"))
            .await
            .contains("403")
    );
    assert!(run.stderr.text().is_empty(), "{}", run.stderr.text());
}

#[tokio::test]
async fn an_atomic_rename_over_the_file_is_seen() {
    let run = start(&yaml("localhost"), true).await;
    let echo = start_echo().await;
    let ip_target = format!("127.0.0.1:{echo}");
    assert!(connect_status(run.addr, &ip_target).await.contains("403"));

    // Write elsewhere in the directory, then rename over the config: the
    // config's name only ever appears as the rename's target.
    let second = yaml("localhost, 127.0.0.1");
    let temp = run.path.with_file_name(".pipelock.yaml.tmp");
    std::fs::write(&temp, &second).unwrap();
    std::fs::rename(&temp, &run.path).unwrap();
    let reloaded = events(&run.log, "config_reload", 1).await;
    assert_success_event(&reloaded[0], &second);
    assert!(connect_status(run.addr, &ip_target).await.contains("200"));
}

#[tokio::test]
async fn writes_to_other_files_in_the_directory_do_not_reload() {
    let run = start(&yaml("localhost"), true).await;
    std::fs::write(run.path.with_file_name("other.yaml"), yaml("127.0.0.1")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        run.log
            .lines()
            .iter()
            .all(|l| l["event"] != "config_reload"),
        "{:?}",
        run.log.lines()
    );
}

#[tokio::test]
async fn an_open_tunnel_survives_a_reload_that_no_longer_admits_it() {
    let run = start(&yaml("localhost"), false).await;
    let echo = start_echo().await;
    let target = format!("localhost:{echo}");
    let mut tunnel = open_tunnel(run.addr, &target).await;

    std::fs::write(&run.path, yaml("127.0.0.1")).unwrap();
    assert!(matches!(run.reloader.reload(), ReloadOutcome::Applied(_)));

    // New requests get the new allowlist; the tunnel goes on.
    assert!(connect_status(run.addr, &target).await.contains("403"));
    assert_echoes(&mut tunnel, b"still here").await;
    drop(tunnel);
    let closed = events(&run.log, "tunnel_close", 1).await;
    assert_eq!(closed[0]["total_bytes"], 2 * (4 + 10));
}

/// Checks a refused reload: the `error` event pipelock writes, no
/// `config_reload` event, and the running config unchanged.
async fn assert_refused(run: &Running, expected_error: &str, hash_before: &str) {
    let errors = events(&run.log, "error", 1).await;
    let error = errors.last().unwrap();
    assert_eq!(error["level"], "error");
    assert_eq!(error["method"], "CONFIG_RELOAD");
    assert_eq!(error["resource"], run.path.display().to_string());
    assert_eq!(error["error"], expected_error);
    assert_eq!(error["message"], "request error");
    assert!(
        run.log
            .lines()
            .iter()
            .all(|l| l["event"] != "config_reload"),
        "{:?}",
        run.log.lines()
    );
    assert_eq!(run.proxy.config().hash, hash_before);
}

#[tokio::test]
async fn adding_trusted_domains_is_refused_as_a_downgrade_and_the_old_config_stays() {
    let first = yaml("localhost, 127.0.0.1");
    let run = start(&first, false).await;
    let echo = start_echo().await;
    // Also drops 127.0.0.1 from the allowlist: that part must not apply either.
    let widened = yaml("localhost").replace(
        "trusted_domains: [localhost]",
        "trusted_domains: [localhost, Git.Internal.Test]",
    );
    std::fs::write(&run.path, &widened).unwrap();
    assert_eq!(
        run.reloader.reload(),
        ReloadOutcome::Rejected(DOWNGRADE_REJECTED.into())
    );
    assert_refused(
        &run,
        "rejected: security downgrade from strict mode",
        &sha256_hex(&first),
    )
    .await;
    assert_eq!(
        run.stderr.text(),
        "WARNING: config reload: trusted_domains - trusted domains added: git.internal.test \
         — SSRF internal-IP check bypassed for these hosts\n"
    );
    assert!(
        connect_status(run.addr, &format!("127.0.0.1:{echo}"))
            .await
            .contains("200")
    );
}

#[tokio::test]
async fn widening_the_ssrf_ip_allowlist_is_refused_and_narrowing_it_is_not() {
    let first = yaml("localhost");
    let run = start(&first, false).await;
    let widened = first.replace(
        "ip_allowlist: [127.0.0.1/32]",
        "ip_allowlist: [127.0.0.0/8]",
    );
    std::fs::write(&run.path, &widened).unwrap();
    assert_eq!(
        run.reloader.reload(),
        ReloadOutcome::Rejected(DOWNGRADE_REJECTED.into())
    );
    assert_refused(&run, DOWNGRADE_REJECTED, &sha256_hex(&first)).await;
    assert!(
        run.stderr
            .text()
            .contains("ssrf.ip_allowlist - SSRF IP allowlist expanded: 127.0.0.0/8"),
        "{}",
        run.stderr.text()
    );

    let narrowed = first.replace("ip_allowlist: [127.0.0.1/32]", "ip_allowlist: []");
    std::fs::write(&run.path, &narrowed).unwrap();
    assert!(matches!(run.reloader.reload(), ReloadOutcome::Applied(_)));
}

#[tokio::test]
async fn other_downgrades_of_a_strict_config_are_refused() {
    let first = yaml("localhost");
    let run = start(&first, false).await;
    for (downgraded, field) in [
        // A mode the stand-in does not serve is still a valid pipelock file:
        // pipelock refuses it as a downgrade, not as invalid.
        (first.replace("mode: strict", "mode: balanced"), "mode"),
        (format!("{first}enforce: false\n"), "enforce"),
        (format!("{first}internal: []\n"), "internal"),
        (
            first.replace("  enabled: true", "  enabled: false"),
            "forward_proxy.enabled",
        ),
    ] {
        std::fs::write(&run.path, &downgraded).unwrap();
        assert_eq!(
            run.reloader.reload(),
            ReloadOutcome::Rejected(DOWNGRADE_REJECTED.into()),
            "{field}"
        );
        assert!(
            run.stderr
                .text()
                .contains(&format!("WARNING: config reload: {field} - ")),
            "{field}: {}",
            run.stderr.text()
        );
    }
    assert_refused(&run, DOWNGRADE_REJECTED, &sha256_hex(&first)).await;
}

#[tokio::test]
async fn turning_the_forward_proxy_on_is_refused_as_restart_only() {
    let first = yaml("localhost").replace("  enabled: true", "  enabled: false");
    let run = start(&first, false).await;
    std::fs::write(&run.path, yaml("localhost")).unwrap();
    assert_eq!(
        run.reloader.reload(),
        ReloadOutcome::Rejected(FORWARD_PROXY_REJECTED.into())
    );
    assert_refused(
        &run,
        "rejected: forward proxy cannot be enabled via reload (requires restart)",
        &sha256_hex(&first),
    )
    .await;
}

#[tokio::test]
async fn an_invalid_file_is_refused_on_stderr_only_and_the_old_config_stays() {
    let first = yaml("localhost");
    let run = start(&first, true).await;
    let echo = start_echo().await;
    std::fs::write(
        &run.path,
        format!("{}sentinel_path: x\n", yaml("127.0.0.1")),
    )
    .unwrap();
    // The watch reloads; pipelock's Load fails and it says so on stderr.
    for _ in 0..250 {
        if !run.stderr.text().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stderr = run.stderr.text();
    assert!(
        stderr.starts_with("pipelock: config reload failed: ") && stderr.contains("sentinel_path"),
        "{stderr}"
    );
    // No audit event at all, as in pipelock.
    assert!(run.log.lines().is_empty(), "{:?}", run.log.lines());
    assert_eq!(run.proxy.config().hash, sha256_hex(&first));
    assert!(
        connect_status(run.addr, &format!("127.0.0.1:{echo}"))
            .await
            .contains("403")
    );

    // A missing file is a load failure too.
    std::fs::remove_file(&run.path).unwrap();
    assert!(matches!(
        run.reloader.reload(),
        ReloadOutcome::LoadFailed(_)
    ));
}

#[tokio::test]
async fn the_same_file_twice_within_two_seconds_reloads_once() {
    let run = start(&yaml("localhost"), false).await;
    let second = yaml("localhost, 127.0.0.1");
    std::fs::write(&run.path, &second).unwrap();
    assert_eq!(
        run.reloader.reload(),
        ReloadOutcome::Applied(sha256_hex(&second))
    );
    assert_eq!(run.reloader.reload(), ReloadOutcome::Skipped);
    assert_eq!(events(&run.log, "config_reload", 1).await.len(), 1);
}

mod binary {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;

    use super::*;

    const BIN: &str = env!("CARGO_BIN_EXE_pipelock-standin");

    struct Standin {
        child: Child,
        lines: mpsc::Receiver<Value>,
        startup: Value,
        addr: SocketAddr,
    }

    impl Standin {
        fn start(config: &Path) -> Self {
            let mut child = Command::new(BIN)
                .args(["run", "--config"])
                .arg(config)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in stdout.lines().map_while(Result::ok) {
                    if let Ok(value) = serde_json::from_str(&line)
                        && tx.send(value).is_err()
                    {
                        break;
                    }
                }
            });
            let mut standin = Self {
                child,
                lines,
                startup: Value::Null,
                addr: "0.0.0.0:0".parse().unwrap(),
            };
            standin.startup = standin.next("startup");
            standin.addr = standin.startup["listen"].as_str().unwrap().parse().unwrap();
            standin
        }

        /// The next line with `event`, skipping others.
        fn next(&self, event: &str) -> Value {
            loop {
                let line = self
                    .lines
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| panic!("no {event} line in time"));
                if line["event"] == event {
                    return line;
                }
            }
        }

        fn sighup(&self) {
            let pid = libc::pid_t::try_from(self.child.id()).unwrap();
            // SAFETY: kill(2) with a valid signal on our own child.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        }
    }

    impl Drop for Standin {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn the_binary_reloads_on_sighup_and_on_a_rename_replace() {
        // The config path is a symlink into another directory (as a mounted
        // Kubernetes ConfigMap is): writing the target fires no event in the
        // watched directory, so only SIGHUP can reload it.
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("watched");
        std::fs::create_dir(&watched).unwrap();
        let real = dir.path().join("real.yaml");
        std::fs::write(&real, yaml("localhost")).unwrap();
        let config = watched.join("pipelock.yaml");
        std::os::unix::fs::symlink(&real, &config).unwrap();

        let standin = Standin::start(&config);
        assert_eq!(
            standin.startup["config_hash"],
            sha256_hex(&yaml("localhost"))
        );
        assert_eq!(standin.startup["mode"], "strict");
        let echo = start_echo().await;
        let ip_target = format!("127.0.0.1:{echo}");
        assert!(
            connect_status(standin.addr, &ip_target)
                .await
                .contains("403")
        );

        let second = yaml("localhost, 127.0.0.1");
        std::fs::write(&real, &second).unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            connect_status(standin.addr, &ip_target)
                .await
                .contains("403"),
            "nothing but SIGHUP should have reloaded"
        );
        standin.sighup();
        assert_success_event(&standin.next("config_reload"), &second);
        assert!(
            connect_status(standin.addr, &ip_target)
                .await
                .contains("200")
        );

        // Replacing the symlink by a rename is a change in the watched directory.
        let third = yaml("127.0.0.1");
        let temp = watched.join("pipelock.yaml.new");
        std::fs::write(&temp, &third).unwrap();
        std::fs::rename(&temp, &config).unwrap();
        assert_success_event(&standin.next("config_reload"), &third);
        assert!(
            connect_status(standin.addr, &format!("localhost:{echo}"))
                .await
                .contains("403")
        );
    }
}
