//! Bytes this process has sent and received over TCP, from the kernel's per-socket
//! counters (`TCP_INFO`: `tcpi_bytes_acked`, `tcpi_bytes_received`), summed over every
//! TCP socket the process holds. The bench's only sockets are its connections, so the
//! growth of these sums over a phase is its traffic: TCP payload, i.e. frames (and TLS
//! records when TLS is on), without TCP/IP headers. Linux only; `None` elsewhere or
//! when `/proc/self/fd` cannot be read.

/// `(sent, received)` bytes summed over the process's TCP sockets.
#[cfg(target_os = "linux")]
pub fn tcp_bytes() -> Option<(u64, u64)> {
    use std::ffi::c_void;

    extern "C" {
        fn getsockopt(fd: i32, level: i32, name: i32, value: *mut c_void, len: *mut u32) -> i32;
    }
    const SOL_TCP: i32 = 6;
    const TCP_INFO: i32 = 11;
    // Offsets in `struct tcp_info` (linux/tcp.h, stable since Linux 4.2).
    const BYTES_ACKED: usize = 120;
    const BYTES_RECEIVED: usize = 128;

    let mut sent = 0u64;
    let mut received = 0u64;
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let Ok(entry) = entry else { continue };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        let mut info = [0u8; 256];
        let mut len = info.len() as u32;
        // SAFETY: `info` is a writable buffer of `len` bytes and `len` a valid u32 the
        // kernel updates; getsockopt writes at most `len` bytes. A stale or reused fd
        // only makes the call fail (or describe another socket), never touch memory
        // beyond the buffer.
        let rc = unsafe { getsockopt(fd, SOL_TCP, TCP_INFO, info.as_mut_ptr().cast(), &mut len) };
        if rc != 0 || (len as usize) < BYTES_RECEIVED + 8 {
            continue;
        }
        let field = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&info[at..at + 8]);
            u64::from_ne_bytes(b)
        };
        sent += field(BYTES_ACKED);
        received += field(BYTES_RECEIVED);
    }
    Some((sent, received))
}

#[cfg(not(target_os = "linux"))]
pub fn tcp_bytes() -> Option<(u64, u64)> {
    None
}
