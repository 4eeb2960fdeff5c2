//! Threads: ids, CPU affinity, scheduling policy, names, signals to one thread.
//!
//! CPU sets are plain CPU numbers here (`impl IntoIterator<Item = u32>` in, `Vec<u32>`
//! out); the richer `CpuSet` type lives above this crate.

use std::io;

/// The calling thread's id.
pub fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn to_rustix(cpus: impl IntoIterator<Item = u32>) -> rustix::thread::CpuSet {
    let mut set = rustix::thread::CpuSet::new();
    for c in cpus {
        if (c as usize) < rustix::thread::CpuSet::MAX_CPU {
            set.set(c as usize);
        }
    }
    set
}

fn from_rustix(set: &rustix::thread::CpuSet) -> Vec<u32> {
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .map(|c| c as u32)
        .collect()
}

fn pid_of(tid: u32) -> io::Result<rustix::process::Pid> {
    rustix::process::Pid::from_raw(tid as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
}

/// Restrict the calling thread to `cpus`.
pub fn pin(cpus: impl IntoIterator<Item = u32>) -> io::Result<()> {
    rustix::thread::sched_setaffinity(None, &to_rustix(cpus)).map_err(io::Error::from)
}

/// The CPUs the calling thread may run on.
pub fn affinity() -> io::Result<Vec<u32>> {
    let set = rustix::thread::sched_getaffinity(None).map_err(io::Error::from)?;
    Ok(from_rustix(&set))
}

/// The CPUs thread `tid` (of any process) may run on.
pub fn affinity_of(tid: u32) -> io::Result<Vec<u32>> {
    let set = rustix::thread::sched_getaffinity(Some(pid_of(tid)?)).map_err(io::Error::from)?;
    Ok(from_rustix(&set))
}

/// Restrict thread `tid` (of any process) to `cpus`.
pub fn set_affinity_of(tid: u32, cpus: impl IntoIterator<Item = u32>) -> io::Result<()> {
    rustix::thread::sched_setaffinity(Some(pid_of(tid)?), &to_rustix(cpus)).map_err(io::Error::from)
}

/// A thread's scheduling policy and priority, as `sched_getscheduler`/`sched_getparam`
/// give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    policy: libc::c_int,
    priority: libc::c_int,
}

impl Policy {
    /// `SCHED_FIFO` at `priority`.
    pub fn fifo(priority: i32) -> Policy {
        Policy {
            policy: libc::SCHED_FIFO,
            priority,
        }
    }

    /// `SCHED_OTHER`.
    pub fn other() -> Policy {
        Policy {
            policy: libc::SCHED_OTHER,
            priority: 0,
        }
    }

    /// The calling thread's policy.
    pub fn current() -> io::Result<Policy> {
        Policy::of(0)
    }

    /// Thread `tid`'s policy (0: the calling thread).
    pub fn of(tid: i32) -> io::Result<Policy> {
        // SAFETY: sched_getscheduler takes a tid and returns a policy; no pointers.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        if policy < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_getparam writes one sched_param into the valid, exclusive `param`.
        if unsafe { libc::sched_getparam(tid, &mut param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Policy {
            policy,
            priority: param.sched_priority,
        })
    }

    /// Whether this is the fair class (SCHED_OTHER, BATCH or IDLE).
    pub fn is_fair(self) -> bool {
        matches!(
            self.policy,
            libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE
        )
    }

    /// Whether this is SCHED_FIFO.
    pub fn is_fifo(self) -> bool {
        self.policy == libc::SCHED_FIFO
    }

    /// The priority (0 for the fair class).
    pub fn priority(self) -> i32 {
        self.priority
    }

    /// The kernel's policy number (`SCHED_OTHER` is 0, `SCHED_FIFO` 1, ...).
    pub fn number(self) -> i32 {
        self.policy
    }

    /// Give the calling thread this policy.
    pub fn apply(self) -> io::Result<()> {
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
pub fn set_fifo(priority: i32) -> io::Result<()> {
    Policy::fifo(priority).apply()
}

/// Name the calling thread (`comm`, 15 bytes kept).
pub fn set_name(name: &str) -> io::Result<()> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    rustix::thread::set_name(&c).map_err(io::Error::from)
}

/// Send `sig` to thread `tid` of this process.
pub fn signal_thread(tid: i32, sig: i32) -> io::Result<()> {
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

/// Send `sig` to process `pid`.
pub fn signal_process(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raise the calling process's nice level (negative: more CPU), as `setpriority`.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes plain integers.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_round_trips_through_pinning() {
        let before = affinity().unwrap();
        let first = before[0];
        pin([first]).unwrap();
        assert_eq!(affinity().unwrap(), [first]);
        assert_eq!(affinity_of(gettid() as u32).unwrap(), [first]);
        pin(before.iter().copied()).unwrap();
        assert_eq!(affinity().unwrap(), before);
    }

    #[test]
    fn ids_and_policies_are_the_kernels() {
        let tid = std::fs::read_link("/proc/thread-self").unwrap();
        let tid: i32 = tid.file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(gettid(), tid);
        let p = Policy::current().unwrap();
        assert!(p.is_fair() && !p.is_fifo() && p.priority() == 0);
        assert_eq!(Policy::of(tid).unwrap(), p);
    }
}
