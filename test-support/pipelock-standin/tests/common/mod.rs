//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::net::SocketAddr;
use std::time::Duration;

use pipelock_standin::log::SharedBuffer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every byte back, like a server that answers what the client says first.
pub async fn start_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// Sends `request` and reads until the proxy closes the connection.
pub async fn exchange(proxy: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("proxy closed the connection in time")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads a response head, byte by byte so nothing after it is consumed.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.unwrap();
        assert_ne!(n, 0, "connection closed inside the head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The log lines with `event`, waiting briefly for ones written after a close.
pub async fn events(log: &SharedBuffer, event: &str, at_least: usize) -> Vec<Value> {
    for _ in 0..250 {
        let found: Vec<Value> = log
            .lines()
            .into_iter()
            .filter(|l| l["event"] == event)
            .collect();
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {event} line in {:?}", log.lines());
}
