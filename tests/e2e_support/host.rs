//! The host machine as the agent must never see it: an HTTP server on the
//! host's `0.0.0.0` (run inside the test process) and the host's own IPv4
//! addresses.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
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

/// The host's IPv4 addresses by interface, loopback excluded (what
/// `ip -o -4 addr show` lists, read with getifaddrs(3): the host needs no
/// iproute2).
pub fn host_ipv4_addresses() -> Vec<(String, String)> {
    nix::ifaddrs::getifaddrs()
        .expect("getifaddrs on the host")
        .filter_map(|entry| {
            let ip = entry.address?.as_sockaddr_in()?.ip();
            // An address label (`eth0:1`) names its device before the colon.
            let iface = entry.interface_name.split(':').next()?.to_owned();
            (!ip.is_loopback() && iface != "lo").then(|| (iface, ip.to_string()))
        })
        .collect()
}

/// The host interface carrying the IPv4 default route (e.g. `eth0`), from
/// the kernel's routing table in `/proc/net/route` (no iproute2 needed).
pub fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    default_route_in(&table)
}

/// The interface of the first default route (destination and mask 0) in the
/// text of `/proc/net/route`.
fn default_route_in(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        (fields.len() > 7 && fields[1] == "00000000" && fields[7] == "00000000")
            .then(|| fields[0].to_owned())
    })
}
