//! Signals: every catchable termination signal (INT, TERM, HUP, QUIT, PIPE) asks the
//! running command to stop, so it removes what it set up (tracing instances, temporary
//! extractions) and reports what it has, instead of dying with things left behind.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

/// Set by the first signal caught.
pub static STOP: AtomicBool = AtomicBool::new(false);
static CAUGHT: AtomicI32 = AtomicI32::new(0);
static LAST: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGPIPE,
];

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = CAUGHT.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
    LAST.store(sig, Ordering::Relaxed);
    COUNT.fetch_add(1, Ordering::Release);
    STOP.store(true, Ordering::Relaxed);
}

/// Catch the termination signals for the whole run of the command.
pub fn install() {
    for sig in SIGNALS {
        // The handler only stores to atomics, which is async-signal-safe.
        let _ = isol_sys::process::on_signal(sig, on_signal);
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

/// How many signals were caught so far, and the latest: `isol run` forwards each one.
pub fn received() -> (usize, Option<libc::c_int>) {
    let n = COUNT.load(Ordering::Acquire);
    (n, Some(LAST.load(Ordering::Relaxed)).filter(|&s| s != 0))
}
