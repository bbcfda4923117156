//! The host machine as the agent must never see it: an HTTP server on the
//! host's `0.0.0.0` (run inside the test process) and the host's own IPv4
//! addresses.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP server on `0.0.0.0:<ephemeral>` standing in for any service a
/// developer runs on their machine (a database, a dev server, sshd). It
/// answers every request with 200 and a body naming itself, and records the
/// address of every peer that connected, so a test can prove that something
/// did NOT reach it.
pub struct HostListener {
    pub port: u16,
    /// A random token in every answer, so a probe's output proves it talked
    /// to THIS server and not something else on the port.
    pub token: String,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
}

impl HostListener {
    pub fn start() -> Self {
        let listener = TcpListener::bind("0.0.0.0:0").expect("bind 0.0.0.0:0 on the host");
        listener
            .set_nonblocking(true)
            .expect("non-blocking host listener");
        let port = listener.local_addr().expect("listener address").port();
        let token = format!("host-listener-{:016x}", rand_u64());
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (peers2, stop2, token2) = (peers.clone(), stop.clone(), token.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        peers2
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(peer.ip());
                        let token = token2.clone();
                        std::thread::spawn(move || answer(stream, &token));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            token,
            peers,
            stop,
        }
    }

    /// Every peer address that connected so far.
    pub fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(stream: std::net::TcpStream, token: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // Read the request head; any bytes at all are enough to answer.
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        if line == "\r\n" || line == "\n" {
            break;
        }
        line.clear();
    }
    let body = format!("{token}\n");
    let _ = (&stream).write_all(
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// A random number from the kernel, for tokens and secret values.
pub fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let mut file = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
    std::io::Read::read_exact(&mut file, &mut bytes).expect("read /dev/urandom");
    u64::from_le_bytes(bytes)
}

/// The host's IPv4 addresses by interface, loopback excluded, as
/// `ip -o -4 addr show` lists them.
pub fn host_ipv4_addresses() -> Vec<(String, String)> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("run `ip -o -4 addr show` on the host");
    assert!(out.status.success(), "`ip -o -4 addr show` failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // "2: eth0    inet 192.0.2.2/24 brd ... scope global eth0"
            let mut words = line.split_whitespace();
            let iface = words.nth(1)?.to_owned();
            let addr = words.skip_while(|w| *w != "inet").nth(1)?;
            let ip = addr.split('/').next()?.to_owned();
            (iface != "lo").then_some((iface, ip))
        })
        .collect()
}

/// The host interface carrying the default route (e.g. `eth0`).
pub fn default_route_interface() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "dev")?;
    words.next().map(str::to_owned)
}
