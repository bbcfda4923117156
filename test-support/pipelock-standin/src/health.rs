//! `healthcheck`: pipelock's Docker HEALTHCHECK probe, `GET /health` on the
//! listener, healthy only on status 200.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Pipelock's default probe address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8888";
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("health check failed: `{addr}`: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("health check failed: `{0}` does not resolve")]
    Resolve(String),
    #[error("unhealthy: {0}")]
    Status(String),
}

pub fn check(addr: &str) -> Result<(), HealthError> {
    let io = |source| HealthError::Io {
        addr: addr.to_owned(),
        source,
    };
    let sock = addr
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| HealthError::Resolve(addr.to_owned()))?;
    let mut stream = TcpStream::connect_timeout(&sock, TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io)?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(HealthError::Status(status_line.to_owned())),
    }
}
