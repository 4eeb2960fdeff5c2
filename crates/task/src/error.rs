//! How entering isolation fails: the patch's EINVAL (ineligible), EAGAIN (not quiet), and
//! the rest, each with its errno for the C ABI.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::target::TargetError;
use crate::tracefs::TraceError;
use crate::CpuSet;

/// Why a thread may not be isolated (the patch's EINVAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error(
        "the thread may run on {}, not on exactly one; pin it first \
         (sched_setaffinity, `taskset -c N`, or Isolation::pin)",
        allowed.named()
    )]
    /// The thread may run on more than one CPU.
    NotPinned {
        /// The CPUs it may run on.
        allowed: CpuSet,
    },
    #[error(
        "the thread is pinned to CPU {pinned}, but asks to be isolated on CPU {asked} \
         (Isolation::cpu, ISOL_CPU): ask for CPU {pinned}, or let isol move it there \
         (Isolation::pin)"
    )]
    /// The thread is pinned to one CPU and asks to be isolated on another.
    OtherCpu {
        /// The CPU it asked for.
        asked: u32,
        /// The CPU it is pinned to.
        pinned: u32,
    },
    #[error(
        "CPU {cpu} is not a nohz_full CPU (nohz_full: {nohz_full}); its tick never stops: \
         boot with nohz_full={cpu}, or allow a ticking CPU for development"
    )]
    /// The CPU is not nohz_full: its tick never stops.
    NotNohzFull {
        /// The CPU.
        cpu: u32,
        /// The nohz_full CPUs.
        nohz_full: String,
    },
    #[error(
        "CPU {cpu} is not domain-isolated: the scheduler balances other tasks onto it; boot \
         with isolcpus=domain,{cpu} or make it an isolated cgroup v2 cpuset partition"
    )]
    /// The CPU is in scheduler load balancing.
    NotDomainIsolated {
        /// The CPU.
        cpu: u32,
    },
    /// The CPU is offline, would leave no housekeeping CPU, or SCHED_FIFO would be
    /// throttled.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// What kept the CPU from becoming quiet (the patch's EAGAIN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotQuiet {
    /// The CPU.
    pub cpu: u32,
    /// How long enter waited.
    pub waited: Duration,
    /// The last failed `tick_stop`'s dependency: POSIX_TIMER, PERF_EVENTS, SCHED, RCU ...
    pub dependency: Option<String>,
    /// Timers still armed on the CPU (`/proc/timer_list`), by function.
    pub timers: Vec<String>,
    /// What interrupted the CPU while waiting, by cause, most frequent first.
    pub interruptions: Vec<(String, u64)>,
    /// Whether the tick device still had an event armed at the end.
    pub tick_armed: Option<bool>,
    /// Other tasks running or runnable on the CPU at the end (`comm/tid`).
    pub runnable: Vec<String>,
    /// Where `dependency` comes from: `tick_stop` (the kernel's event during the wait) or
    /// `inferred` (from runnable tasks and `/proc/self/timers`, when the tick was already
    /// kept before the wait began and the kernel said nothing new).
    pub dependency_source: Option<String>,
}

/// The dependency named when a fair (SCHED_OTHER) thread asks for isolation on a kernel
/// whose fair deadline server would kick its CPU.
pub const FAIR_SERVER: &str = "FAIR_SERVER";

impl NotQuiet {
    /// A fair thread on a CPU whose fair deadline server is on (`evidence` says how that is
    /// known): refused at once, since the server's timer ticks the CPU about once a second.
    pub(super) fn fair_server(cpu: u32, evidence: String) -> NotQuiet {
        NotQuiet {
            cpu,
            waited: Duration::ZERO,
            dependency: Some(FAIR_SERVER.into()),
            timers: Vec::new(),
            interruptions: Vec::new(),
            tick_armed: None,
            runnable: Vec::new(),
            dependency_source: Some(evidence),
        }
    }
}

impl fmt::Display for NotQuiet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU {} did not become quiet within {:.0?}",
            self.cpu, self.waited
        )?;
        if let Some(d) = &self.dependency {
            write!(f, "; the tick is kept by the {d} dependency")?;
            match self.dependency_source.as_deref() {
                Some("inferred") => write!(f, " (inferred)")?,
                Some(e) if d == FAIR_SERVER => write!(
                    f,
                    " ({e}): a SCHED_OTHER thread on a nohz_full CPU starts the fair deadline \
                     server, whose timer kicks the CPU about once a second"
                )?,
                _ => {}
            }
        }
        if !self.runnable.is_empty() {
            write!(f, "; also runnable there: {}", self.runnable.join(", "))?;
        }
        if !self.timers.is_empty() {
            write!(f, "; timers armed there: {}", self.timers.join(", "))?;
        }
        if !self.interruptions.is_empty() {
            let list: Vec<String> = self
                .interruptions
                .iter()
                .take(5)
                .map(|(c, n)| format!("{c} x{n}"))
                .collect();
            write!(f, "; interrupted by {}", list.join(", "))?;
        }
        let fix = match self.dependency.as_deref() {
            Some("POSIX_TIMER") => {
                "; cancel the thread's POSIX or CPU-time timers, or lift the process's CPU-time \
                 limit (RLIMIT_CPU: a unit's LimitCPU=, ulimit -t)"
            }
            Some("PERF_EVENTS") => "; close perf events counting on this CPU",
            Some("SCHED") => "; another task is runnable on the CPU: move it away",
            Some("RCU") | Some("RCU_EXP") => "; boot with rcu_nocbs for this CPU",
            Some(FAIR_SERVER) => {
                "; enter as SCHED_FIFO (Isolation::fifo, with kernel.sched_rt_runtime_us=-1), \
                 or turn the CPU's fair server off (write 0 to \
                 /sys/kernel/debug/sched/fair_server/cpuN/runtime)"
            }
            _ => "; retry, or see `isol watch` for what disturbs the CPU",
        };
        f.write_str(fix)
    }
}

/// Why entering isolation failed. [`IsolError::errno`] gives the C ABI's code.
#[derive(Debug, thiserror::Error)]
pub enum IsolError {
    #[error("cannot isolate this thread: {0}")]
    /// The thread may not be isolated (EINVAL).
    Ineligible(Ineligible),
    #[error("{0}")]
    /// The CPU did not become quiet in time (EAGAIN).
    NotQuiet(Box<NotQuiet>),
    #[error("{what} failed: {source}; {fix}")]
    /// Preparing the thread failed (mlockall, sched_setscheduler, ...).
    Prepare {
        /// What failed.
        what: &'static str,
        #[source]
        /// Why.
        source: std::io::Error,
        /// What to do.
        fix: &'static str,
    },
    #[error("the watcher cannot trace the kernel: {0}")]
    /// The watcher cannot trace (EPERM without root).
    Watcher(#[from] TraceError),
    #[error("{0}")]
    /// Another isolation is in the way (EBUSY).
    Busy(String),
    #[error("{0}")]
    /// The request itself is invalid (EINVAL): a bad strict-mode signal, for one.
    Config(String),
    #[error("the wait was aborted (abort_wait was called, e.g. from a signal handler)")]
    /// [`abort_wait`](super::abort_wait) was called (EINTR).
    Aborted,
    #[error("the isolation watcher stopped: {0}")]
    /// The watcher thread ended (EIO).
    WatcherStopped(String),
}

impl IsolError {
    /// The negative errno the C ABI returns for this error.
    pub fn errno(&self) -> i32 {
        -match self {
            IsolError::Ineligible(_) => libc::EINVAL,
            IsolError::NotQuiet(_) => libc::EAGAIN,
            IsolError::Prepare { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            IsolError::Watcher(TraceError::NeedsRoot { .. }) => libc::EPERM,
            IsolError::Watcher(TraceError::NotMounted) => libc::ENODEV,
            IsolError::Watcher(_) => libc::EIO,
            IsolError::Busy(_) => libc::EBUSY,
            IsolError::Config(_) => libc::EINVAL,
            IsolError::Aborted => libc::EINTR,
            IsolError::WatcherStopped(_) => libc::EIO,
        }
    }
}

impl From<TargetError> for IsolError {
    fn from(e: TargetError) -> Self {
        IsolError::Ineligible(Ineligible::Target(e))
    }
}
