//! POSIX timers that signal the calling thread: what a program arms when it wants a
//! signal later (the lab arms them on purpose, to see what the kernel does with them on
//! an isolated CPU).

use std::io;
use std::time::Duration;

/// The clock a timer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerClock {
    /// Wall time (`CLOCK_MONOTONIC`): an hrtimer.
    Monotonic,
    /// The thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): the kernel keeps the tick of
    /// the thread's CPU running for it (`POSIX_TIMER`).
    ThreadCpuTime,
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// Arm a timer on `clock` that sends `sig` to the calling thread after `first`, then every
/// `every` (zero: once). The timer lives as long as the process.
pub fn signal_me_after(
    clock: TimerClock,
    first: Duration,
    every: Duration,
    sig: i32,
) -> io::Result<()> {
    let clock = match clock {
        TimerClock::Monotonic => libc::CLOCK_MONOTONIC,
        TimerClock::ThreadCpuTime => libc::CLOCK_THREAD_CPUTIME_ID,
    };
    // SAFETY: sigevent is zero-initialised plain data with the needed fields set;
    // timer_create writes the id into a valid local, and timer_settime reads a fully
    // initialised itimerspec.
    unsafe {
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = sig;
        sev.sigev_notify_thread_id = crate::thread::gettid();
        let mut id: libc::timer_t = std::ptr::null_mut();
        if libc::timer_create(clock, &mut sev, &mut id) != 0 {
            return Err(io::Error::last_os_error());
        }
        let spec = libc::itimerspec {
            it_interval: timespec(every),
            it_value: timespec(first),
        };
        if libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
