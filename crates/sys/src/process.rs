//! The process: handlers for termination signals, exit hooks, pipes, and where a child
//! lands before it runs its program.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Run `handler` on `sig` (a plain handler: it must only touch atomics). The previous
/// action is replaced.
pub fn on_signal(sig: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: the sigaction struct is zero-initialised (a valid empty mask and no flags),
    // set to a plain handler, and read by the call only.
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run `hook` when the process exits normally (`atexit`).
pub fn at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // SAFETY: registers a plain extern "C" function with no arguments; it runs once, at
    // normal process exit.
    if unsafe { libc::atexit(hook) } != 0 {
        return Err(io::Error::other("atexit refused the hook"));
    }
    Ok(())
}

/// Where a child lands, set between `fork` and `exec`: its policy first (while it still
/// runs where its parent does), then its CPU, and `keep` descriptors left open across
/// `exec` (the ends of pipes made close-on-exec).
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// SCHED_FIFO at this priority.
    pub fifo: Option<i32>,
    /// The one CPU.
    pub cpu: Option<u32>,
    /// Descriptors to keep open in the program.
    pub keep: Vec<RawFd>,
}

impl Placement {
    /// Apply this placement to the child `cmd` will start.
    pub fn apply_to(self, cmd: &mut Command) {
        let Placement { fifo, cpu, keep } = self;
        // SAFETY: the closure runs in the child between fork and exec and makes only
        // async-signal-safe system calls (sched_setscheduler, sched_setaffinity, fcntl) on
        // values moved into it; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(p) = fifo {
                    let param = libc::sched_param { sched_priority: p };
                    if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some(cpu) = cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu as usize, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                for &fd in &keep {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

/// Make a FIFO at `path`.
pub fn mkfifo(path: &std::path::Path, mode: u32) -> io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(mode),
        0,
    )
    .map_err(io::Error::from)
}

/// Cap the address space of the child `cmd` will start at `bytes` (`RLIMIT_AS`, set
/// between `fork` and `exec`): an allocation past it fails instead of growing.
pub fn limit_address_space(cmd: &mut Command, bytes: u64) {
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // setrlimit, which is async-signal-safe, on a value on its stack.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Wait for `child` if it has ended (`None` while it runs), with its peak resident memory
/// in KiB (`wait4`'s `ru_maxrss`). The child is reaped here: do not wait for it again.
pub fn try_wait_with_peak_rss(
    child: &std::process::Child,
) -> io::Result<Option<(std::process::ExitStatus, u64)>> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on a child of ours, with valid pointers to locals.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, libc::WNOHANG, &mut usage) };
    match r {
        0 => Ok(None),
        r if r < 0 => Err(io::Error::last_os_error()),
        _ => Ok(Some((
            std::process::ExitStatus::from_raw(status),
            usage.ru_maxrss as u64,
        ))),
    }
}
