//! Threads (`/proc/PID/task/TID/{stat,status}`): where they may run and where they ran last.

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::sysroot::{SysError, SysRoot};

/// `PF_KTHREAD` in the task flags.
pub const PF_KTHREAD: u64 = 0x0020_0000;
/// `PF_NO_SETAFFINITY`: userspace may not change the affinity (bound per-CPU kthreads).
pub const PF_NO_SETAFFINITY: u64 = 0x0400_0000;

/// Every thread under `/proc` of `root`, as `(pid, tid)`. Threads come and go while it is
/// read: a process that ends between listing `/proc` and its `task/` is skipped. `Err` only
/// when `/proc` itself cannot be listed. The one walk of the threads: the kernel model, the
/// watch engine, the task watcher and the lab go through it.
pub fn tasks(root: &SysRoot) -> Result<Vec<(u32, u32)>, SysError> {
    let mut out = Vec::new();
    for pid in root
        .list("/proc")?
        .iter()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        let Ok(tids) = root.list(&format!("/proc/{pid}/task")) else {
            continue;
        };
        out.extend(
            tids.iter()
                .filter_map(|t| t.parse::<u32>().ok())
                .map(|t| (pid, t)),
        );
    }
    Ok(out)
}

/// Every thread's `stat`, parsed (what vanished or does not parse is skipped).
pub fn stats(root: &SysRoot) -> impl Iterator<Item = Stat> + '_ {
    tasks(root)
        .unwrap_or_default()
        .into_iter()
        .filter_map(move |(pid, tid)| {
            parse_stat(&root.read(&format!("/proc/{pid}/task/{tid}/stat")).ok()?)
        })
}

/// Scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// SCHED_OTHER.
    Other,
    /// SCHED_FIFO.
    Fifo,
    /// SCHED_RR.
    Rr,
    /// SCHED_BATCH.
    Batch,
    /// SCHED_IDLE.
    Idle,
    /// SCHED_DEADLINE.
    Deadline,
    /// A number this version does not know.
    Unknown,
}

impl Policy {
    fn from_number(n: u32) -> Policy {
        match n {
            0 => Policy::Other,
            1 => Policy::Fifo,
            2 => Policy::Rr,
            3 => Policy::Batch,
            5 => Policy::Idle,
            6 => Policy::Deadline,
            _ => Policy::Unknown,
        }
    }

    /// Whether this is a real-time policy.
    pub fn is_realtime(self) -> bool {
        matches!(self, Policy::Fifo | Policy::Rr | Policy::Deadline)
    }
}

/// One thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadInfo {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// `comm`.
    pub comm: String,
    /// State letter (`R`, `S`, `D`, `I`, ...).
    pub state: char,
    /// A kernel thread (`PF_KTHREAD`).
    pub kernel_thread: bool,
    /// The CPU it last ran on.
    pub last_cpu: u32,
    /// `Cpus_allowed_list`.
    pub allowed: CpuSet,
    /// Scheduling policy.
    pub policy: Policy,
    /// Real-time priority.
    pub rt_priority: u32,
    /// Whether userspace may change its affinity (false for bound per-CPU kthreads).
    pub affinity_settable: bool,
    /// When it started (clock ticks after boot): with the tid, it names one thread even
    /// after the tid is reused.
    pub start_time: u64,
    /// Where it lives (its unit, container, pod), for user threads whose cgroup says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<super::place::Place>,
}

/// The parts of `stat` isol uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Thread id.
    pub tid: u32,
    /// `comm`.
    pub comm: String,
    /// State letter (`R`, `S`, ...).
    pub state: char,
    /// `PF_*` flags.
    pub flags: u64,
    /// Start time, in clock ticks after boot.
    pub start_time: u64,
    /// The CPU it last ran on.
    pub processor: u32,
    /// Real-time priority.
    pub rt_priority: u32,
    /// Policy number.
    pub policy: u32,
}

/// Parse `/proc/PID/task/TID/stat`. The comm may contain spaces and parentheses, so it
/// runs from the first `(` to the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let tid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    Some(Stat {
        tid,
        comm,
        state: field(3)?.chars().next()?,
        flags: field(9)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
        processor: field(39)?.parse().ok()?,
        rt_priority: field(40)?.parse().ok()?,
        policy: field(41)?.parse().ok()?,
    })
}

/// `Cpus_allowed_list` from a `status` file.
pub fn parse_status_allowed(text: &str) -> Option<CpuSet> {
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|v| CpuSet::parse_list(v.trim()).ok())
}

/// Combine `stat` and `status` of one thread.
pub fn thread_info(pid: u32, stat: &str, status: &str) -> Option<ThreadInfo> {
    let s = parse_stat(stat)?;
    let allowed = parse_status_allowed(status)?;
    Some(ThreadInfo {
        pid,
        tid: s.tid,
        comm: s.comm,
        state: s.state,
        kernel_thread: s.flags & PF_KTHREAD != 0,
        last_cpu: s.processor,
        allowed,
        policy: Policy::from_number(s.policy),
        rt_priority: s.rt_priority,
        affinity_settable: s.flags & PF_NO_SETAFFINITY == 0,
        start_time: s.start_time,
        place: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // ksoftirqd/1 on this host's 6.18 kernel.
    const KSOFTIRQD: &str = "22 (ksoftirqd/1) S 2 0 0 0 -1 69238848 0 0 0 0 2 0 0 0 20 0 1 0 20 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_kernel_thread_stat() {
        let s = parse_stat(KSOFTIRQD).unwrap();
        assert_eq!(s.tid, 22);
        assert_eq!(s.comm, "ksoftirqd/1");
        assert_eq!(s.state, 'S');
        assert_eq!(s.processor, 1);
        assert_eq!(s.start_time, 20);
        assert_eq!(s.policy, 0);
        let t = thread_info(22, KSOFTIRQD, "Name:\tksoftirqd/1\nCpus_allowed_list:\t1\n").unwrap();
        assert!(t.kernel_thread);
        assert!(
            !t.affinity_settable,
            "bound per-CPU kthreads have PF_NO_SETAFFINITY"
        );
        assert_eq!(t.allowed.to_list(), "1");
    }

    #[test]
    fn comm_with_spaces_and_parens() {
        let stat = "4242 (my (weird) prog) R 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 -51 0 1 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 50 1 0 0 0 0 0 0 0 0 0 0 0\n";
        let t = thread_info(4242, stat, "Cpus_allowed_list:\t0-1\n").unwrap();
        assert_eq!(t.comm, "my (weird) prog");
        assert_eq!(
            t.start_time, 100,
            "field 22, counted after the comm's last parenthesis"
        );
        assert!(parse_stat("garbage").is_none());
        assert!(!t.kernel_thread && t.affinity_settable);
        assert_eq!(t.policy, Policy::Fifo);
        assert_eq!(t.rt_priority, 50);
        assert!(t.policy.is_realtime());
    }

    #[test]
    fn truncated_stat_is_none() {
        assert!(parse_stat("1 (init) S 0").is_none());
        assert!(parse_stat("garbage").is_none());
        assert!(thread_info(1, KSOFTIRQD, "Name: x\n").is_none());
    }
}
