//! The calling thread and the clocks: pinning, scheduling policy, memory locking, ids.
//!
//! Every engine (watch, noise, task) moves and tunes its own threads through this one
//! room, and every `unsafe` system call for it lives here. Functions return
//! [`std::io::Result`]; callers add what failed and what to do next.

use std::io;

use crate::cpus::CpuSet;

/// The clocks isol reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// `CLOCK_MONOTONIC`: the `mono` trace clock.
    Monotonic,
    /// `CLOCK_MONOTONIC_RAW`: not slewed by NTP, for calibrating the TSC.
    MonotonicRaw,
}

/// A clock now, in ns.
pub(crate) fn clock_ns(clock: Clock) -> u64 {
    let id = match clock {
        Clock::Monotonic => rustix::time::ClockId::Monotonic,
        Clock::MonotonicRaw => rustix::time::ClockId::MonotonicRaw,
    };
    let ts = rustix::time::clock_gettime(id);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC` now, in ns: the time base of the `mono` trace clock, so times taken
/// here and event timestamps compare directly.
pub fn monotonic_ns() -> u64 {
    clock_ns(Clock::Monotonic)
}

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Restrict the calling thread to `cpus`. The watch engine pins itself to the
/// housekeeping CPUs with it, so that it never runs on a CPU it watches.
pub fn pin_current_thread(cpus: &CpuSet) -> io::Result<()> {
    rustix::thread::sched_setaffinity(None, &to_rustix(cpus)).map_err(io::Error::from)
}

/// The CPUs the calling thread may run on.
pub(crate) fn affinity() -> io::Result<CpuSet> {
    let set = rustix::thread::sched_getaffinity(None).map_err(io::Error::from)?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .map(|c| c as u32)
        .collect())
}

fn to_rustix(cpus: &CpuSet) -> rustix::thread::CpuSet {
    let mut set = rustix::thread::CpuSet::new();
    for c in cpus.iter() {
        if (c as usize) < rustix::thread::CpuSet::MAX_CPU {
            set.set(c as usize);
        }
    }
    set
}

fn thread_pid(tid: u32) -> io::Result<rustix::process::Pid> {
    rustix::process::Pid::from_raw(tid as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
}

/// The CPUs thread `tid` (any process) may run on.
pub(crate) fn affinity_of(tid: u32) -> io::Result<CpuSet> {
    let set = rustix::thread::sched_getaffinity(Some(thread_pid(tid)?)).map_err(io::Error::from)?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .map(|c| c as u32)
        .collect())
}

/// Restrict thread `tid` (any process) to `cpus`.
pub(crate) fn set_affinity_of(tid: u32, cpus: &CpuSet) -> io::Result<()> {
    rustix::thread::sched_setaffinity(Some(thread_pid(tid)?), &to_rustix(cpus))
        .map_err(io::Error::from)
}

/// A thread's scheduling policy and priority, as `sched_getscheduler`/`sched_getparam`
/// give them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    policy: libc::c_int,
    priority: libc::c_int,
}

impl Policy {
    /// `SCHED_FIFO` at `priority`.
    pub(crate) fn fifo(priority: i32) -> Policy {
        Policy {
            policy: libc::SCHED_FIFO,
            priority,
        }
    }

    /// The calling thread's policy.
    pub(crate) fn current() -> io::Result<Policy> {
        // SAFETY: sched_getscheduler takes a tid (0: this thread) and returns a policy.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_getparam writes one sched_param into the valid, exclusive `param`.
        if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Policy {
            policy,
            priority: param.sched_priority,
        })
    }

    /// Whether this is the fair class (SCHED_OTHER, BATCH or IDLE).
    pub(crate) fn is_fair(self) -> bool {
        matches!(
            self.policy,
            libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE
        )
    }

    /// Give the calling thread this policy.
    pub(crate) fn apply(self) -> io::Result<()> {
        let param = libc::sched_param {
            sched_priority: self.priority,
        };
        // SAFETY: sched_param is fully initialised; the call only reads it.
        if unsafe { libc::sched_setscheduler(0, self.policy, &param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Make the calling thread SCHED_FIFO at `priority`.
pub(crate) fn set_fifo(priority: i32) -> io::Result<()> {
    Policy::fifo(priority).apply()
}

/// Lock all of the process's memory, present and future (`mlockall(MCL_CURRENT |
/// MCL_FUTURE)`).
pub(crate) fn lock_all_memory() -> io::Result<()> {
    use rustix::mm::MlockAllFlags;
    rustix::mm::mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE).map_err(io::Error::from)
}

/// Lock (and so make present) all of the process's memory mapped now, not what comes
/// later (`mlockall(MCL_CURRENT)`).
#[cfg(test)]
pub(crate) fn lock_all_memory_now() -> io::Result<()> {
    rustix::mm::mlockall(rustix::mm::MlockAllFlags::CURRENT).map_err(io::Error::from)
}

/// Undo [`lock_all_memory`].
pub(crate) fn unlock_all_memory() -> io::Result<()> {
    rustix::mm::munlockall().map_err(io::Error::from)
}

/// Send `sig` to thread `tid` of this process.
pub(crate) fn signal_thread(tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: tgkill takes plain integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            std::process::id() as libc::c_long,
            tid as libc::c_long,
            sig as libc::c_long,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `VmLck` of this process, in KiB.
pub(crate) fn locked_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_round_trips_through_pinning() {
        let before = affinity().unwrap();
        let first = before.first().unwrap();
        pin_current_thread(&CpuSet::from_iter([first])).unwrap();
        assert_eq!(affinity().unwrap(), CpuSet::from_iter([first]));
        pin_current_thread(&before).unwrap();
        assert_eq!(affinity().unwrap(), before);
    }

    #[test]
    fn clocks_move_forward_and_ids_are_real() {
        let a = monotonic_ns();
        let b = clock_ns(Clock::Monotonic);
        assert!(b >= a);
        assert!(clock_ns(Clock::MonotonicRaw) > 0);
        assert_eq!(
            gettid(),
            std::fs::read_link("/proc/thread-self")
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<i32>()
                .unwrap()
        );
        assert!(Policy::current().is_ok());
    }
}
