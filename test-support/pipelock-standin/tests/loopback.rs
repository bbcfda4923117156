//! The stand-in on loopback: CONNECT and plain HTTP, allowed and blocked,
//! against local tokio servers; and the binary's command line.

use std::net::SocketAddr;
use std::sync::Arc;

use pipelock_standin::config::Config;
use pipelock_standin::log::{AuditLog, SharedBuffer};
use pipelock_standin::proxy::Proxy;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

mod common;
use common::{events, exchange, read_head, start_echo};

const CONFIG: &str = r#"
mode: strict
api_allowlist: [localhost, "*.allowed.test", 127.0.0.1, 127.0.0.2]
trusted_domains: [localhost]
ssrf:
  ip_allowlist: [127.0.0.1/32]
fetch_proxy:
  listen: 127.0.0.1:0
forward_proxy:
  enabled: true
  max_tunnel_seconds: 60
"#;

async fn start_proxy(yaml: &str) -> (SocketAddr, SharedBuffer) {
    let config = Config::from_yaml(yaml).unwrap();
    let listener = TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (log, buffer) = AuditLog::in_memory();
    let proxy = Arc::new(Proxy::new(config, Arc::new(log)));
    tokio::spawn(proxy.serve(listener));
    (addr, buffer)
}

/// Answers every request with `hello` and reports the raw request it received.
async fn start_http() -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let body_len = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if raw.len() >= end + 4 + body_len {
                            break;
                        }
                    }
                }
                tx.send(String::from_utf8_lossy(&raw).into_owned()).unwrap();
                stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                    )
                    .await
                    .unwrap();
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn connect_to_an_allowed_host_tunnels_both_ways_client_first() {
    let (proxy, log) = start_proxy(CONFIG).await;
    let echo = start_echo().await;
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    // The client speaks first, even in the same packet as the CONNECT (as SSH may).
    stream
        .write_all(format!("CONNECT localhost:{echo} HTTP/1.1\r\nHost: localhost:{echo}\r\n\r\nSSH-2.0-early\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut echoed = vec![0u8; 15];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"SSH-2.0-early\r\n");
    stream.write_all(b"more").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"more");
    drop(stream);

    let open = events(&log, "tunnel_open", 1).await;
    assert_eq!(open[0]["target"], format!("localhost:{echo}"));
    assert_eq!(open[0]["level"], "info");
    let close = events(&log, "tunnel_close", 1).await;
    assert_eq!(close[0]["total_bytes"], 2 * (15 + 4));
}

#[tokio::test]
async fn connect_to_an_allowlisted_ip_in_the_ssrf_allowlist_is_tunnelled() {
    let (proxy, _log) = start_proxy(CONFIG).await;
    let echo = start_echo().await;
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT 127.0.0.1:{echo} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
}

#[tokio::test]
async fn connect_to_a_host_off_the_allowlist_is_refused_with_403() {
    let (proxy, log) = start_proxy(CONFIG).await;
    let response = exchange(proxy, "CONNECT blocked.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains("CONNECT blocked: domain not in allowlist: blocked.test"));
    let blocked = events(&log, "blocked", 1).await;
    assert_eq!(blocked[0]["target"], "blocked.test:443");
    assert_eq!(blocked[0]["method"], "CONNECT");
    assert_eq!(blocked[0]["scanner"], "allowlist");
    assert_eq!(
        blocked[0]["reason"],
        "domain not in allowlist: blocked.test"
    );
    assert_eq!(blocked[0]["level"], "warn");
    // A plain entry is exact: a subdomain of an allowed host is not allowed.
    let response = exchange(proxy, "CONNECT api.localhost:443 HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
}

#[tokio::test]
async fn wildcard_entries_pass_the_allowlist_then_meet_the_ssrf_check() {
    let (proxy, log) = start_proxy(CONFIG).await;
    // *.allowed.test admits the base domain in any case with a trailing dot;
    // `.test` never resolves, so the SSRF check (after the allowlist) refuses it.
    let response = exchange(proxy, "CONNECT Allowed.Test.:443 HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let blocked = events(&log, "blocked", 1).await;
    assert_eq!(blocked[0]["scanner"], "ssrf");
    assert!(
        blocked[0]["reason"]
            .as_str()
            .unwrap()
            .contains("DNS resolution error for allowed.test"),
        "{blocked:?}"
    );
}

#[tokio::test]
async fn internal_addresses_need_trusted_domains_or_the_ip_allowlist() {
    let (proxy, log) = start_proxy(CONFIG).await;
    let echo = start_echo().await;
    // 127.0.0.2 is allowlisted but not in ssrf.ip_allowlist.
    let response = exchange(proxy, &format!("CONNECT 127.0.0.2:{echo} HTTP/1.1\r\n\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let blocked = events(&log, "blocked", 1).await;
    assert_eq!(blocked[0]["scanner"], "ssrf");
    assert_eq!(
        blocked[0]["reason"],
        "SSRF blocked: 127.0.0.2 resolves to internal IP 127.0.0.2"
    );

    // Neither trusted nor in the IP allowlist, `localhost` resolves to an internal address.
    let untrusted = CONFIG
        .replace("trusted_domains: [localhost]", "trusted_domains: []")
        .replace("ip_allowlist: [127.0.0.1/32]", "ip_allowlist: []");
    let (proxy, log) = start_proxy(&untrusted).await;
    let response = exchange(proxy, &format!("CONNECT localhost:{echo} HTTP/1.1\r\n\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    let blocked = events(&log, "blocked", 1).await;
    assert!(
        blocked[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("SSRF blocked: localhost resolves to internal IP"),
        "{blocked:?}"
    );
}

#[tokio::test]
async fn plain_http_to_an_allowed_host_is_forwarded_in_origin_form() {
    let (proxy, log) = start_proxy(CONFIG).await;
    let (port, mut requests) = start_http().await;
    let response = exchange(
        proxy,
        &format!(
            "GET http://localhost:{port}/hello?x=1 HTTP/1.1\r\nHost: localhost:{port}\r\nProxy-Connection: keep-alive\r\nX-Test: yes\r\n\r\n"
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello"), "{response}");
    let received = requests.recv().await.unwrap();
    assert!(
        received.starts_with("GET /hello?x=1 HTTP/1.1\r\n"),
        "{received}"
    );
    assert!(received.contains(&format!("Host: localhost:{port}\r\n")));
    assert!(received.contains("X-Test: yes\r\n"));
    assert!(received.contains("Connection: close\r\n"));
    assert!(!received.contains("Proxy-Connection"), "{received}");

    let forwarded = events(&log, "forward_http", 1).await;
    assert_eq!(
        forwarded[0]["url"],
        format!("http://localhost:{port}/hello?x=1")
    );
    assert_eq!(forwarded[0]["method"], "GET");
    assert_eq!(forwarded[0]["status_code"], 200);
}

#[tokio::test]
async fn plain_http_request_bodies_reach_the_server() {
    let (proxy, _log) = start_proxy(CONFIG).await;
    let (port, mut requests) = start_http().await;
    let response = exchange(
        proxy,
        &format!(
            "POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let received = requests.recv().await.unwrap();
    assert!(
        received.starts_with("POST /upload HTTP/1.1\r\n"),
        "{received}"
    );
    assert!(received.contains(&format!("Host: 127.0.0.1:{port}\r\n")));
    assert!(received.ends_with("\r\n\r\nhello world"), "{received}");
}

#[tokio::test]
async fn plain_http_to_a_host_off_the_allowlist_is_refused_with_403() {
    let (proxy, log) = start_proxy(CONFIG).await;
    let response = exchange(
        proxy,
        "GET http://blocked.test/x HTTP/1.1\r\nHost: blocked.test\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains("blocked: domain not in allowlist: blocked.test"));
    let blocked = events(&log, "blocked", 1).await;
    assert_eq!(blocked[0]["url"], "http://blocked.test/x");
    assert_eq!(blocked[0]["method"], "GET");
}

#[tokio::test]
async fn health_answers_200_with_json() {
    let (proxy, _log) = start_proxy(CONFIG).await;
    let response = exchange(proxy, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["mode"], "strict");
    let response = exchange(proxy, "GET /other HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[tokio::test]
async fn without_forward_proxy_enabled_connect_and_plain_http_are_refused() {
    let disabled = CONFIG.replace("enabled: true", "enabled: false");
    let (proxy, _log) = start_proxy(&disabled).await;
    let response = exchange(proxy, "CONNECT localhost:443 HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    let response = exchange(proxy, "GET http://localhost/ HTTP/1.1\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
}

mod binary {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use super::*;

    const BIN: &str = env!("CARGO_BIN_EXE_pipelock-standin");

    fn write_config(name: &str, yaml: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "pipelock-standin-{}-{name}.yaml",
            std::process::id()
        ));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    #[test]
    fn check_config_accepts_a_valid_file_and_names_an_unknown_key() {
        let good = write_config("good", CONFIG);
        let out = Command::new(BIN)
            .args(["check-config"])
            .arg(&good)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");

        let bad = write_config("bad", &format!("{CONFIG}dlp_typo: true\n"));
        let out = Command::new(BIN)
            .args(["check-config"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unknown field `dlp_typo`"), "{stderr}");
        let _ = std::fs::remove_file(good);
        let _ = std::fs::remove_file(bad);
    }

    #[test]
    fn run_serves_until_killed_and_healthcheck_probes_it() {
        let config = write_config("run", CONFIG);
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let startup: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(startup["event"], "startup");
        let addr = startup["listen"].as_str().unwrap().to_owned();

        let probe = Command::new(BIN)
            .args(["healthcheck", "--addr", &addr])
            .output()
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(probe.status.success(), "{probe:?}");

        // Nothing listens there any more.
        let probe = Command::new(BIN)
            .args(["healthcheck", "--addr", &addr])
            .output()
            .unwrap();
        assert_eq!(probe.status.code(), Some(1));
        let _ = std::fs::remove_file(config);
    }

    #[test]
    fn run_refuses_an_invalid_config() {
        let config = write_config("lax", "mode: audit\napi_allowlist: [x.test]\n");
        let out = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid mode `audit`"));
        let _ = std::fs::remove_file(config);
    }
}

/// The keys of a log line, sorted.
fn keys(line: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn sorted(mut keys: Vec<&str>) -> Vec<&str> {
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn log_lines_carry_exactly_pipelock_2_3_0_field_names() {
    // internal/audit/logger.go: LogBlocked, LogTunnelOpen, LogTunnelClose,
    // LogForwardHTTP; zerolog adds level, time, message; the logger adds component.
    const COMMON: [&str; 5] = ["level", "time", "component", "event", "message"];
    let with_common =
        |extra: &[&'static str]| sorted(COMMON.iter().chain(extra).copied().collect());

    let (proxy, log) = start_proxy(CONFIG).await;
    let echo = start_echo().await;
    let (port, _requests) = start_http().await;
    exchange(proxy, "CONNECT blocked.test:443 HTTP/1.1\r\n\r\n").await;
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT localhost:{echo} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
    drop(stream);
    exchange(
        proxy,
        &format!("GET http://localhost:{port}/ HTTP/1.1\r\n\r\n"),
    )
    .await;

    let blocked = &events(&log, "blocked", 1).await[0];
    assert_eq!(
        keys(blocked),
        with_common(&[
            "method",
            "target",
            "client_ip",
            "request_id",
            "scanner",
            "reason",
            "agent",
            "mitre_technique",
        ])
    );
    assert_eq!(blocked["level"], "warn");
    assert_eq!(blocked["component"], "pipelock");
    assert_eq!(blocked["message"], "request blocked");
    assert_eq!(blocked["agent"], "anonymous");
    assert_eq!(blocked["mitre_technique"], "T1071.001");
    assert_eq!(blocked["client_ip"], "127.0.0.1");
    assert!(
        blocked["request_id"].as_str().unwrap().starts_with("req-"),
        "{blocked}"
    );
    // zerolog's default time format: RFC 3339, seconds.
    let time = blocked["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-01-01T00:00:00Z".len(), "{time}");

    let open = &events(&log, "tunnel_open", 1).await[0];
    assert_eq!(
        keys(open),
        with_common(&["target", "client_ip", "request_id", "agent"])
    );
    assert_eq!(open["message"], "tunnel opened");
    let close = &events(&log, "tunnel_close", 1).await[0];
    assert_eq!(
        keys(close),
        with_common(&[
            "target",
            "client_ip",
            "request_id",
            "agent",
            "total_bytes",
            "duration_ms",
        ])
    );
    assert_eq!(close["message"], "tunnel closed");
    let forward = &events(&log, "forward_http", 1).await[0];
    assert_eq!(
        keys(forward),
        with_common(&[
            "method",
            "url",
            "client_ip",
            "request_id",
            "agent",
            "status_code",
            "size_bytes",
            "duration_ms",
        ])
    );
    assert_eq!(forward["message"], "forward proxy request");
    assert!(forward["duration_ms"].is_f64(), "{forward}");
}
