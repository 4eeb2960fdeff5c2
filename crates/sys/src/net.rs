//! Network timestamping held on.
//!
//! The kernel stamps received packets only while some socket asks for it, and turns that
//! on and off with a static key (`netstamp_needed_key`): each flip rewrites kernel code,
//! and every rewrite interrupts every CPU, isolated ones included (an IPI to make the new
//! instructions visible). A program that opens and closes a timestamping socket (PTP
//! clients, packet capture, some trading feeds) flips it each time. One socket that asks
//! for timestamps and stays open keeps the key on, so nothing flips it: what tuned's
//! realtime profiles do with their `rtentsk` plugin.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A UDP socket with `SO_TIMESTAMP` on, never bound: while it is open, the network
/// timestamping key stays on. Close it (drop it) to let go.
pub fn timestamping_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments and no pointer; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor socket(2) just returned, owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor, and a pointer to a live `c_int` with its size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMP,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_asks_for_timestamps() {
        let s = timestamping_socket().unwrap();
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid descriptor, and pointers to a live `c_int` and its length.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMP,
                (&mut on as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        assert_eq!(on, 1);
    }
}
