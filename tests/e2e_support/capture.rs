//! A packet capture on every interface of the host's network namespace
//! (AF_PACKET, ETH_P_ALL: eth0, docker0, every bridge and every container's
//! veth end), looking for given byte strings. It shows whether a packet
//! carrying, e.g., a unique DNS query name appeared ANYWHERE outside the
//! container that made it: on its way to a resolver, through dockerd's
//! forwarder, or out of the host.
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
    thread: Option<JoinHandle<()>>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(vec![false; needles.len()]));
        let packets = Arc::new(Mutex::new((0u64, 0u64)));
        let (stop2, seen2, packets2) = (stop.clone(), seen.clone(), packets.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut count = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                // SAFETY: buf is valid for its length.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    continue;
                }
                count += 1;
                let packet = &buf[..n as usize];
                for (i, needle) in needles.iter().enumerate() {
                    if packet.windows(needle.len()).any(|w| w == needle.as_slice()) {
                        seen2.lock().unwrap_or_else(|p| p.into_inner())[i] = true;
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
            *packets2.lock().unwrap_or_else(|p| p.into_inner()) =
                (count, u64::from(stats.tp_drops));
        });
        Some(Self {
            stop,
            seen,
            packets,
            thread: Some(thread),
        })
    }

    /// Whether needle `index` was seen so far.
    pub fn seen(&self, index: usize) -> bool {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())[index]
    }

    pub fn finish(mut self) -> Captured {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
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
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
