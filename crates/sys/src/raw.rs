//! System calls made with the `syscall` instruction itself: safe inside a signal handler
//! (no `errno`, no lock, no allocation), and never trapped by the handler's own thread
//! after it has switched dispatch to ALLOW. Each returns what the kernel returns (`-errno`
//! on failure).

/// The kernel's raw system call.
///
/// # Safety
/// The call and its arguments must be memory-safe for this process: every pointer
/// argument valid for what the call does with it.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn syscall6(nr: i64, a: [i64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller vouches for the call (see above); `syscall` clobbers rcx and r11
    // only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// As [`syscall6`], through the C library where there is no inline version.
///
/// # Safety
/// As [`syscall6`].
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn syscall6(nr: i64, a: [i64; 6]) -> i64 {
    // SAFETY: as the caller vouches.
    let r = unsafe { libc::syscall(nr as libc::c_long, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as i64)
    } else {
        r as i64
    }
}

/// `write(fd, buf)`.
pub fn write(fd: i32, buf: &[u8]) -> i64 {
    // SAFETY: the kernel reads `buf.len()` bytes of a live slice.
    unsafe {
        syscall6(
            libc::SYS_write,
            [fd as i64, buf.as_ptr() as i64, buf.len() as i64, 0, 0, 0],
        )
    }
}

/// `getpid()`.
pub fn getpid() -> i64 {
    // SAFETY: no arguments.
    unsafe { syscall6(libc::SYS_getpid, [0; 6]) }
}

/// `gettid()`.
pub fn gettid() -> i64 {
    // SAFETY: no arguments.
    unsafe { syscall6(libc::SYS_gettid, [0; 6]) }
}

/// `kill(pid, sig)`.
pub fn kill(pid: i64, sig: i32) -> i64 {
    // SAFETY: plain integers.
    unsafe { syscall6(libc::SYS_kill, [pid, sig as i64, 0, 0, 0, 0]) }
}

/// `tgkill(pid, tid, sig)`.
pub fn tgkill(pid: i64, tid: i64, sig: i32) -> i64 {
    // SAFETY: plain integers.
    unsafe { syscall6(libc::SYS_tgkill, [pid, tid, sig as i64, 0, 0, 0]) }
}

/// `_exit(code)` of the calling thread's process (`exit_group`): no destructor, no
/// `atexit` hook, no flush, as after `fork` or in a handler.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: exit_group takes an integer and does not return.
    unsafe { syscall6(libc::SYS_exit_group, [code as i64, 0, 0, 0, 0, 0]) };
    unreachable!("exit_group returned")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_calls_answer_as_the_kernel_does() {
        assert_eq!(getpid(), std::process::id() as i64);
        assert_eq!(gettid(), crate::thread::gettid() as i64);
        assert_eq!(write(-1, b"x"), -(libc::EBADF as i64));
        assert_eq!(kill(getpid(), 0), 0);
        assert_eq!(tgkill(getpid(), gettid(), 0), 0);
    }
}
