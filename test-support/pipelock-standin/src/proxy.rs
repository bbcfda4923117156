//! The listener: `GET /health`, CONNECT tunnels and absolute-form HTTP
//! requests, each target checked the way pipelock's URL scanner checks it
//! (allowlist, blocklist, SSRF) before anything is dialled.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::log::{ANONYMOUS_AGENT, AuditLog, RequestContext};
use crate::rules::{self, Cidr};

/// Longest request head the stand-in reads before answering 431.
const MAX_HEAD_BYTES: u64 = 64 * 1024;
/// Pipelock's DNS ceiling for the SSRF check.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers that describe one hop and are not forwarded upstream.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

pub struct Proxy {
    /// The config new requests read. A reload swaps it; a request holds the
    /// snapshot it started with, so open tunnels are never cut by a reload.
    config: RwLock<Arc<Config>>,
    log: Arc<AuditLog>,
    core_internal: Vec<Cidr>,
    next_request: AtomicU64,
    started: Instant,
}

/// What the scanner decided about a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; dial these addresses (the ones the SSRF check saw).
    Allow(Vec<SocketAddr>),
    Block {
        scanner: &'static str,
        reason: String,
    },
}

struct RequestHead {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Proxy {
    pub fn new(config: Config, log: Arc<AuditLog>) -> Self {
        Self {
            config: RwLock::new(Arc::new(config)),
            log,
            core_internal: rules::parse_all(rules::CORE_INTERNAL),
            next_request: AtomicU64::new(1),
            started: Instant::now(),
        }
    }

    /// The config in force for new requests.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `config` in force for new requests; requests already admitted
    /// (open tunnels included) keep the config they started with.
    pub fn replace_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    /// Accepts connections until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors and similar: back off rather than spin or die.
                Err(e) if is_transient_accept_error(&e) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let proxy = Arc::clone(&self);
            tokio::spawn(async move { proxy.handle(stream, peer).await });
        }
    }

    async fn handle(&self, stream: TcpStream, peer: SocketAddr) {
        let mut reader = BufReader::new(stream);
        let head = match read_head(&mut reader).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(HeadError::TooLarge) => {
                let _ = respond(reader.get_mut(), 431, "request head too large").await;
                return;
            }
            Err(HeadError::Malformed) => {
                let _ = respond(reader.get_mut(), 400, "malformed request").await;
                return;
            }
            Err(HeadError::Io) => return,
        };
        let config = self.config();
        let ctx = RequestContext {
            method: head.method.clone(),
            client_ip: peer.ip().to_string(),
            // Pipelock's `requestMeta`: a process-wide counter.
            request_id: format!("req-{}", self.next_request.fetch_add(1, Ordering::Relaxed)),
            agent: ANONYMOUS_AGENT.to_owned(),
            ..RequestContext::default()
        };
        if head.method.eq_ignore_ascii_case("CONNECT") {
            if !config.forward_proxy_enabled {
                let _ = respond(reader.get_mut(), 405, "CONNECT not supported").await;
                return;
            }
            self.connect(&config, reader, head, ctx).await;
        } else if head.target.contains("://") {
            if !config.forward_proxy_enabled {
                let _ = respond(reader.get_mut(), 405, "forward proxy not enabled").await;
                return;
            }
            self.forward(&config, reader, head, ctx).await;
        } else if path_of(&head.target) == "/health" {
            let body = serde_json::json!({
                "status": "healthy",
                "version": concat!("standin-", env!("CARGO_PKG_VERSION")),
                "mode": "strict",
                "uptime_seconds": self.started.elapsed().as_secs_f64(),
                "forward_proxy_enabled": config.forward_proxy_enabled,
            });
            let _ =
                respond_with(reader.get_mut(), 200, "application/json", &body.to_string()).await;
        } else {
            let _ = respond(reader.get_mut(), 404, "404 page not found").await;
        }
    }

    async fn connect(
        &self,
        config: &Config,
        reader: BufReader<TcpStream>,
        head: RequestHead,
        mut ctx: RequestContext,
    ) {
        let (host, port) = match split_authority(&head.target, 443) {
            Some(hp) => hp,
            None => {
                let mut stream = reader.into_inner();
                let _ = respond(&mut stream, 400, "missing target host").await;
                return;
            }
        };
        ctx.target = Some(join_host_port(&host, port));
        let started = Instant::now();
        let addrs = match self.decide(config, &host, port).await {
            Verdict::Allow(addrs) => addrs,
            Verdict::Block { scanner, reason } => {
                self.log.blocked(&ctx, scanner, &reason);
                let mut stream = reader.into_inner();
                let _ = respond(&mut stream, 403, &format!("CONNECT blocked: {reason}")).await;
                return;
            }
        };
        let mut upstream = match dial(&addrs).await {
            Ok(upstream) => upstream,
            Err(e) => {
                self.log.error(&ctx, &e.to_string());
                let mut stream = reader.into_inner();
                let _ = respond(&mut stream, 502, "tunnel dial failed").await;
                return;
            }
        };
        // Bytes the client sent right after the head (it may speak first) are
        // already buffered; they belong to the tunnel.
        let early = reader.buffer().to_vec();
        let mut client = reader.into_inner();
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        self.log.tunnel_open(&ctx);
        let relay = async {
            upstream.write_all(&early).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
        };
        // Pipelock's max_tunnel_seconds is an absolute lifetime, not an idle timer.
        let total = match tokio::time::timeout(config.max_tunnel, relay).await {
            Ok(Ok((up, down))) => early.len() as u64 + up + down,
            Ok(Err(_)) | Err(_) => early.len() as u64,
        };
        self.log.tunnel_close(&ctx, total, started.elapsed());
    }

    async fn forward(
        &self,
        config: &Config,
        mut reader: BufReader<TcpStream>,
        head: RequestHead,
        mut ctx: RequestContext,
    ) {
        ctx.url = Some(head.target.clone());
        let started = Instant::now();
        let url = match AbsoluteUrl::parse(&head.target) {
            Ok(url) => url,
            Err(UrlError::Scheme(scheme)) if scheme == "https" => {
                let _ = respond(
                    reader.get_mut(),
                    501,
                    "the pipelock stand-in forwards only http:// URLs; use CONNECT for https",
                )
                .await;
                return;
            }
            Err(UrlError::Scheme(scheme)) => {
                let reason = format!("scheme {scheme:?} not allowed: only http and https");
                self.log.blocked(&ctx, "scheme", &reason);
                let _ = respond(reader.get_mut(), 403, &format!("blocked: {reason}")).await;
                return;
            }
            Err(UrlError::Malformed) => {
                self.log.blocked(&ctx, "parser", "invalid URL");
                let _ = respond(reader.get_mut(), 403, "blocked: invalid URL").await;
                return;
            }
        };
        let addrs = match self.decide(config, &url.host, url.port).await {
            Verdict::Allow(addrs) => addrs,
            Verdict::Block { scanner, reason } => {
                self.log.blocked(&ctx, scanner, &reason);
                let _ = respond(reader.get_mut(), 403, &format!("blocked: {reason}")).await;
                return;
            }
        };
        let upstream = match dial(&addrs).await {
            Ok(upstream) => upstream,
            Err(e) => {
                self.log.error(&ctx, &e.to_string());
                let _ = respond(reader.get_mut(), 502, "upstream dial failed").await;
                return;
            }
        };

        let mut request = format!("{} {} HTTP/1.1\r\n", head.method, url.path_and_query);
        let mut has_host = false;
        for (name, value) in &head.headers {
            let lower = name.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&lower.as_str()) {
                continue;
            }
            has_host |= lower == "host";
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !has_host {
            request.push_str(&format!("Host: {}\r\n", url.authority));
        }
        // One request per upstream connection: the response ends when the
        // server closes, so bodies of any framing pass through untouched.
        request.push_str("Connection: close\r\n\r\n");

        let early = reader.buffer().to_vec();
        let client = reader.into_inner();
        let (mut client_read, mut client_write) = client.into_split();
        let (mut upstream_read, mut upstream_write) = upstream.into_split();
        let upload = async {
            upstream_write.write_all(request.as_bytes()).await?;
            upstream_write.write_all(&early).await?;
            tokio::io::copy(&mut client_read, &mut upstream_write).await
        };
        let (status, size) = {
            let download = relay_response(&mut upstream_read, &mut client_write);
            tokio::pin!(upload, download);
            // The exchange is over when the server closes; the client may still
            // hold its side open for keep-alive.
            tokio::select! {
                done = &mut download => done,
                _ = &mut upload => download.await,
            }
        };
        let _ = client_write.shutdown().await;
        self.log.forward_http(&ctx, status, size, started.elapsed());
    }

    /// Pipelock's scanner order for a target: allowlist, blocklist, then the
    /// SSRF check on the literal or the resolved addresses.
    pub async fn decide(&self, config: &Config, host: &str, port: u16) -> Verdict {
        let host = rules::normalize_host(host);
        if !rules::matches_any(&host, &config.api_allowlist) {
            return Verdict::Block {
                scanner: "allowlist",
                reason: format!("domain not in allowlist: {host}"),
            };
        }
        if let Some(pattern) = config
            .blocklist
            .iter()
            .find(|p| rules::match_domain(&host, p))
        {
            return Verdict::Block {
                scanner: "blocklist",
                reason: format!("domain blocked: {host} matches {pattern}"),
            };
        }
        let ips: Vec<IpAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            if config.internal.is_empty() && is_refused(config, ip, &self.core_internal) {
                return Verdict::Block {
                    scanner: "core_ssrf",
                    reason: format!("core SSRF: {host} is a private/internal IP address"),
                };
            }
            vec![ip]
        } else {
            match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
                .await
            {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                Ok(Err(e)) => return dns_failure(&host, &e.to_string()),
                Err(_) => return dns_failure(&host, "timed out"),
            }
        };
        let trusted = rules::is_trusted_domain(&host, &config.trusted_domains);
        if !trusted
            && let Some(ip) = ips
                .iter()
                .find(|ip| is_refused(config, **ip, &config.internal))
        {
            return Verdict::Block {
                scanner: "ssrf",
                reason: format!("SSRF blocked: {host} resolves to internal IP {ip}"),
            };
        }
        Verdict::Allow(
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        )
    }
}

fn is_refused(config: &Config, ip: IpAddr, internal: &[Cidr]) -> bool {
    internal.iter().any(|c| c.contains(ip)) && !config.ip_allowlist.iter().any(|c| c.contains(ip))
}

fn dns_failure(host: &str, error: &str) -> Verdict {
    Verdict::Block {
        scanner: "ssrf",
        reason: format!("SSRF check failed: DNS resolution error for {host}: {error}"),
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 24 || code == 23) // EMFILE, ENFILE
}

async fn dial(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to dial");
    for addr in addrs {
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("dial {addr} timed out"),
                )
            }
        }
    }
    Err(last)
}

/// Copies the upstream response to the client, noting its status code.
async fn relay_response<R, W>(upstream: &mut R, client: &mut W) -> (Option<u16>, u64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = Vec::new();
    let mut total = 0u64;
    loop {
        let n = match upstream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if first.len() < 16 {
            first.extend_from_slice(&buf[..n.min(16 - first.len())]);
        }
        if client.write_all(&buf[..n]).await.is_err() {
            break;
        }
        total += n as u64;
    }
    (parse_status(&first), total)
}

fn parse_status(start: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(start).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

enum HeadError {
    TooLarge,
    Malformed,
    Io,
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Option<RequestHead>, HeadError> {
    let mut lines = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let mut line = Vec::new();
        let n = (&mut *reader)
            .take(budget)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|_| HeadError::Io)?;
        if n == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(HeadError::Malformed)
            };
        }
        if !line.ends_with(b"\n") {
            return Err(HeadError::TooLarge);
        }
        budget -= n as u64;
        let text = String::from_utf8(line).map_err(|_| HeadError::Malformed)?;
        let text = text.trim_end_matches(['\r', '\n']).to_owned();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // tolerated blank line before the request line
            }
            break;
        }
        lines.push(text);
    }
    let mut request_line = lines[0].split_whitespace();
    let (Some(method), Some(target), Some(version), None) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(HeadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed);
    }
    let headers = lines[1..]
        .iter()
        .map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .ok_or(HeadError::Malformed)
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
    }))
}

async fn respond(stream: &mut TcpStream, status: u16, text: &str) -> std::io::Result<()> {
    respond_with(
        stream,
        status,
        "text/plain; charset=utf-8",
        &format!("{text}\n"),
    )
    .await
}

async fn respond_with(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn path_of(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

/// Splits `host:port`, `[v6]:port`, or a bare host (which gets `default_port`,
/// as pipelock gives a port-less CONNECT target 443).
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Some((authority.to_owned(), default_port)),
        Some((host, port)) if !host.is_empty() => Some((host.to_owned(), port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority.to_owned(), default_port)),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

struct AbsoluteUrl {
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

enum UrlError {
    Scheme(String),
    Malformed,
}

impl AbsoluteUrl {
    fn parse(raw: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = raw.split_once("://").ok_or(UrlError::Malformed)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" {
            return Err(UrlError::Scheme(scheme));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::Malformed);
        }
        let (host, port) = split_authority(authority, 80).ok_or(UrlError::Malformed)?;
        let tail = tail.split('#').next().unwrap_or("");
        let path_and_query = match tail.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{tail}"),
            Some(_) => tail.to_owned(),
        };
        Ok(Self {
            host,
            port,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_like_pipelock() {
        assert_eq!(split_authority("x.com:22", 443), Some(("x.com".into(), 22)));
        assert_eq!(split_authority("x.com", 443), Some(("x.com".into(), 443)));
        assert_eq!(
            split_authority("[2001:db8::7]:22", 443),
            Some(("2001:db8::7".into(), 22))
        );
        assert_eq!(
            split_authority("2001:db8::7", 443),
            Some(("2001:db8::7".into(), 443))
        );
        assert_eq!(split_authority("x.com:http", 443), None);
        assert_eq!(split_authority(":22", 443), None);
        assert_eq!(split_authority("", 443), None);
    }

    #[test]
    fn absolute_urls_parse() {
        let url = AbsoluteUrl::parse("http://Example.com:8080/a/b?q=1#frag")
            .ok()
            .unwrap();
        assert_eq!((url.host.as_str(), url.port), ("Example.com", 8080));
        assert_eq!(url.path_and_query, "/a/b?q=1");
        let url = AbsoluteUrl::parse("http://x.test").ok().unwrap();
        assert_eq!((url.port, url.path_and_query.as_str()), (80, "/"));
        let url = AbsoluteUrl::parse("http://[::1]:81?x").ok().unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 81));
        assert_eq!(url.path_and_query, "/?x");
        assert!(matches!(
            AbsoluteUrl::parse("ftp://x.test/"),
            Err(UrlError::Scheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            AbsoluteUrl::parse("http://user@x.test/"),
            Err(UrlError::Malformed)
        ));
    }

    #[test]
    fn status_codes_are_read_from_the_response_start() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 404 "), Some(404));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
    }
}
