//! A packet capture on every interface of the host's network namespace
//! (AF_PACKET, ETH_P_ALL: eth0, docker0, every bridge and every container's
//! veth end), looking for given byte strings. It shows whether a packet
//! carrying, e.g., a unique DNS query name appeared ANYWHERE outside the
//! container that made it: on its way to a resolver, through dockerd's
//! forwarder, or out of the host.
//!
//! Under rootless Podman the containers' bridges and veths are in Podman's
//! rootless network namespace, whose only way to the host is slirp4netns:
//! the capture then listens there too.
//!
//! Needs root (CAP_NET_RAW in the host namespace); `start` returns None
//! without it. Dropped packets would hide a leak, so [`PacketCapture::finish`]
//! reports the kernel's drop count and the caller asserts it is zero.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: libc::c_uint,
    tp_drops: libc::c_uint,
}

pub struct PacketCapture {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<bool>>>,
    packets: Arc<Mutex<(u64, u64)>>,
    threads: Vec<JoinHandle<()>>,
}

/// What the capture saw.
#[derive(Debug)]
pub struct Captured {
    /// Per needle: whether any packet carried it.
    pub seen: Vec<bool>,
    pub packets: u64,
    pub drops: u64,
}

impl PacketCapture {
    pub fn start(needles: Vec<Vec<u8>>) -> Option<Self> {
        let host = packet_socket()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(vec![false; needles.len()]));
        let packets = Arc::new(Mutex::new((0u64, 0u64)));
        let needles = Arc::new(needles);
        let mut threads = Vec::new();
        let (stop2, seen2, packets2, needles2) =
            (stop.clone(), seen.clone(), packets.clone(), needles.clone());
        threads.push(std::thread::spawn(move || {
            listen(host, &needles2, &stop2, &seen2, &packets2);
        }));
        if let Some(dir) = rootless_netns_dir() {
            let (stop, seen, packets, needles) =
                (stop.clone(), seen.clone(), packets.clone(), needles.clone());
            threads.push(std::thread::spawn(move || {
                // Podman makes the namespace with the first container on one
                // of its networks, and removes it with the last: wait for it.
                // The session's containers keep it for the whole test.
                while !join_rootless_netns(&dir) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let fd = packet_socket()
                    .expect("a packet socket in Podman's rootless network namespace");
                listen(fd, &needles, &stop, &seen, &packets);
            }));
        }
        Some(Self {
            stop,
            seen,
            packets,
            threads,
        })
    }

    /// Whether needle `index` was seen so far.
    pub fn seen(&self, index: usize) -> bool {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())[index]
    }

    pub fn finish(mut self) -> Captured {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let (packets, drops) = *self.packets.lock().unwrap_or_else(|p| p.into_inner());
        Captured {
            seen: self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            packets,
            drops,
        }
    }
}

impl Drop for PacketCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// An AF_PACKET socket on every interface of this thread's network
/// namespace; none without CAP_NET_RAW.
fn packet_socket() -> Option<libc::c_int> {
    // SAFETY: plain socket syscalls on a descriptor owned by this code.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as libc::c_int,
        )
    };
    if fd < 0 {
        eprintln!(
            "e2e: no packet capture (AF_PACKET socket: {})",
            std::io::Error::last_os_error()
        );
        return None;
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    let rcvbuf: libc::c_int = 16 << 20;
    // SAFETY: valid pointers to locals of the right sizes.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    Some(fd)
}

/// Reads `fd` until `stop`, marking the needles seen; then adds its packet
/// and drop counts to `packets`, and closes it.
fn listen(
    fd: libc::c_int,
    needles: &[Vec<u8>],
    stop: &AtomicBool,
    seen: &Mutex<Vec<bool>>,
    packets: &Mutex<(u64, u64)>,
) {
    let mut buf = vec![0u8; 65536];
    let mut count = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        count += 1;
        let packet = &buf[..n as usize];
        for (i, needle) in needles.iter().enumerate() {
            if packet.windows(needle.len()).any(|w| w == needle.as_slice()) {
                seen.lock().unwrap_or_else(|p| p.into_inner())[i] = true;
            }
        }
    }
    let mut stats = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: stats/len are valid out-pointers of the right size.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut TpacketStats).cast(),
            &mut len,
        );
        libc::close(fd);
    }
    let mut total = packets.lock().unwrap_or_else(|p| p.into_inner());
    total.0 += count;
    total.1 += u64::from(stats.tp_drops);
}

/// The runtime directory of rootless Podman's service, when the daemon is
/// rootless Podman (`DOCKER_HOST` is
/// `unix://$XDG_RUNTIME_DIR/podman/podman.sock`).
fn rootless_netns_dir() -> Option<std::path::PathBuf> {
    if !crate::docker_support::daemon::is_rootless_podman() {
        return None;
    }
    let host = std::env::var("DOCKER_HOST").expect("rootless Podman is reached by DOCKER_HOST");
    let socket = std::path::PathBuf::from(host.trim_start_matches("unix://"));
    let run = socket
        .parent()
        .and_then(std::path::Path::parent)
        .expect("a socket at $XDG_RUNTIME_DIR/podman/podman.sock");
    Some(run.to_owned())
}

/// Moves this thread (alone) into Podman's rootless network namespace, if
/// it exists yet; whether it did. The namespace is bind-mounted at
/// `$XDG_RUNTIME_DIR/netns/rootless-netns-*` in the mount namespace of
/// Podman's pause process, so it is reached through that process's root.
fn join_rootless_netns(run: &std::path::Path) -> bool {
    let Ok(pause) = std::fs::read_to_string(run.join("libpod/tmp/pause.pid")) else {
        return false;
    };
    let dir = std::path::Path::new("/proc")
        .join(pause.trim())
        .join("root")
        .join(run.strip_prefix("/").unwrap_or(run))
        .join("netns");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return false;
    };
    let Some(netns) = entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rootless-netns-"))
    }) else {
        return false;
    };
    let Ok(file) = std::fs::File::open(&netns) else {
        return false;
    };
    // SAFETY: setns on a descriptor this thread owns; it changes the calling
    // thread's namespace alone. It fails (EINVAL) on a file that is not (or
    // no longer) a namespace.
    unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) == 0 }
}
