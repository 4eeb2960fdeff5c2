//! Signals: every catchable termination signal (INT, TERM, HUP, QUIT, PIPE) asks the
//! running command to stop, so it removes what it set up (tracing instances, temporary
//! extractions) and reports what it has, instead of dying with things left behind.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by the first signal caught.
pub static STOP: AtomicBool = AtomicBool::new(false);
static CAUGHT: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGPIPE,
];

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = CAUGHT.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
    STOP.store(true, Ordering::Relaxed);
}

/// Catch the termination signals for the whole run of the command.
pub fn install() {
    for sig in SIGNALS {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe; the
        // sigaction struct is zero-initialised (a valid empty mask and no flags) and
        // passed by reference for the duration of the call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a signal asked the command to stop.
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// The signal that stopped the command, if any.
pub fn caught() -> Option<libc::c_int> {
    Some(CAUGHT.load(Ordering::Relaxed)).filter(|&s| s != 0)
}
