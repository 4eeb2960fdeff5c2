//! Syscall User Dispatch (Linux 5.11+, x86-64): while a thread's selector byte says BLOCK,
//! each of its system calls raises SIGSYS instead of running (see [`crate::trap`]).
//!
//! Each thread that switches dispatch on gets its own selector byte, allocated once and
//! never freed (one byte per such thread for the life of the process): the kernel reads
//! it on every system call while dispatch is on, and another thread may clear it
//! ([`Remote`]) at any time, so it must outlive every reader. Storing to it is a plain
//! atomic store, safe in a signal handler.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

/// `PR_SET_SYSCALL_USER_DISPATCH` and its arguments (linux/prctl.h).
const PR_SET_SYSCALL_USER_DISPATCH: libc::c_int = 59;
const PR_SYS_DISPATCH_OFF: libc::c_ulong = 0;
const PR_SYS_DISPATCH_ON: libc::c_ulong = 1;
const ALLOW: u8 = 0;
const BLOCK: u8 = 1;

thread_local! {
    /// The calling thread's selector, once it has one. Initialised at compile time (no
    /// lazy initialisation, no destructor): read inside signal handlers.
    static SELECTOR: Cell<Option<&'static AtomicU8>> = const { Cell::new(None) };
    /// Whether dispatch is switched on for this thread.
    static ON: Cell<bool> = const { Cell::new(false) };
}

/// The calling thread's selector, allocated on first use (not in a signal handler).
fn selector() -> &'static AtomicU8 {
    SELECTOR.with(|s| match s.get() {
        Some(sel) => sel,
        None => {
            let sel: &'static AtomicU8 = Box::leak(Box::new(AtomicU8::new(ALLOW)));
            s.set(Some(sel));
            sel
        }
    })
}

/// Let the calling thread's system calls run (a store). Safe in a signal handler.
#[inline(always)]
pub fn allow() {
    if let Some(s) = SELECTOR.get() {
        s.store(ALLOW, Ordering::Release);
    }
}

/// Make the calling thread's system calls trap (a store), when dispatch is on.
#[inline(always)]
pub fn block() {
    if let Some(s) = SELECTOR.get() {
        s.store(BLOCK, Ordering::Release);
    }
}

/// Whether the calling thread's system calls trap now.
pub fn blocking() -> bool {
    SELECTOR
        .get()
        .is_some_and(|s| s.load(Ordering::Acquire) == BLOCK)
}

/// A handle on one thread's selector, for another thread to let its calls run.
#[derive(Debug, Clone, Copy)]
pub struct Remote(&'static AtomicU8);

impl Remote {
    /// The calling thread's selector (allocated if it has none yet).
    pub fn of_this_thread() -> Remote {
        Remote(selector())
    }

    /// Let the owning thread's system calls run (a store): its next call runs.
    pub fn allow(&self) {
        self.0.store(ALLOW, Ordering::Release);
    }
}

/// Switch dispatch on for the calling thread, its selector at ALLOW; calls from
/// `always_allowed` (start, length), if given, never trap.
pub fn enable(always_allowed: Option<(usize, usize)>) -> io::Result<()> {
    let sel = selector();
    sel.store(ALLOW, Ordering::Release);
    let (offset, len) = always_allowed.unwrap_or((0, 0));
    // SAFETY: prctl with these arguments only records, for this thread, the address of the
    // selector byte (allocated for the life of the process) and the code region whose
    // calls always run.
    let r = unsafe {
        libc::prctl(
            PR_SET_SYSCALL_USER_DISPATCH,
            PR_SYS_DISPATCH_ON,
            offset as libc::c_ulong,
            len as libc::c_ulong,
            sel as *const AtomicU8,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    ON.set(true);
    Ok(())
}

/// Switch dispatch off for the calling thread (its selector first, so that the call
/// itself runs). Idempotent.
pub fn disable() {
    allow();
    if ON.replace(false) {
        // SAFETY: switching dispatch off takes no pointer.
        unsafe {
            libc::prctl(
                PR_SET_SYSCALL_USER_DISPATCH,
                PR_SYS_DISPATCH_OFF,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
    }
}

/// `mov $15, %rax; syscall`: x86-64 glibc's `__restore_rt`, the `sa_restorer` of every
/// handler installed through it.
const TRAMPOLINE: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Where the C library's signal return trampoline is, as (start, length) for
/// [`enable`]: every handler returns through it (`rt_sigreturn`), so its call must never
/// trap. Read back from the current SIGSYS action (install a handler first) and checked
/// byte for byte. `None` where it cannot be found (not x86-64 glibc).
pub fn sigreturn_trampoline() -> Option<(usize, usize)> {
    if !cfg!(all(target_arch = "x86_64", target_env = "gnu")) {
        return None;
    }
    // SAFETY: sigaction with a null new action only writes the current one into `cur`.
    let cur = unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGSYS, std::ptr::null(), &mut cur) != 0 {
            return None;
        }
        cur
    };
    let at = cur.sa_restorer? as usize;
    // SAFETY: `at` is the C library's code, mapped and readable for the process's life;
    // nine bytes are read.
    let code = unsafe { std::slice::from_raw_parts(at as *const u8, TRAMPOLINE.len()) };
    // The allowed region: up to and including the byte after its `syscall` (the kernel
    // compares the address after the `syscall` instruction).
    (code == TRAMPOLINE).then_some((at, TRAMPOLINE.len() + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_is_the_threads_own() {
        std::thread::spawn(|| {
            assert!(!blocking());
            let r = Remote::of_this_thread();
            block();
            assert!(blocking());
            r.allow();
            assert!(!blocking());
            disable();
        })
        .join()
        .unwrap();
    }
}
