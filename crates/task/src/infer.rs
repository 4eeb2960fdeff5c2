//! Why a CPU's tick keeps running, or comes back, while one thread runs there: what can be
//! said from the kernel's files alone, with no tracepoint switched on (turning `tick_stop`
//! on has been known to change the answer). One inference: `enter`'s failure report and
//! `isol check --probe` both name their cause through [`tick_keeper`].

use crate::error::FAIR_SERVER;
use isol_model::{kernel, SysRoot};

/// A cause the tick is kept for, and how it was known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickKeeper {
    /// The kernel's name for the dependency (`POSIX_TIMER`, `SCHED`), or `FAIR_SERVER`.
    pub dependency: String,
    /// The file and value it was inferred from.
    pub evidence: String,
}

/// Why the tick of `cpu` is kept while thread `tid` of this process runs there (`tid_runs`:
/// it is on the CPU now, spinning), from what the kernel shows: a CPU-time timer of this
/// process, another runnable task there, or, for a fair (`SCHED_OTHER`) thread, the fair
/// deadline server. None when the files name nothing. `runnable` is what else is runnable
/// on the CPU (`comm/tid`), for the report.
pub fn tick_keeper(
    root: &SysRoot,
    cpu: u32,
    tid: i32,
    tid_runs: bool,
    fair: bool,
) -> (Option<TickKeeper>, Vec<String>) {
    let runnable = runnable_on(root, cpu, tid, tid_runs);
    let keeper = if let Some(evidence) = cpu_time_timers(root) {
        Some(TickKeeper {
            dependency: "POSIX_TIMER".into(),
            evidence,
        })
    } else if let Some(evidence) = cpu_time_limit(root) {
        Some(TickKeeper {
            dependency: "POSIX_TIMER".into(),
            evidence,
        })
    } else if !runnable.is_empty() {
        Some(TickKeeper {
            dependency: "SCHED".into(),
            evidence: format!("runnable on CPU {cpu}: {}", runnable.join(", ")),
        })
    } else if fair {
        fair_server(root, cpu).map(|evidence| TickKeeper {
            dependency: FAIR_SERVER.into(),
            evidence,
        })
    } else {
        None
    };
    (keeper, runnable)
}

/// This process's POSIX timers on a CPU-time clock (`/proc/self/timers`): each keeps the
/// tick of every CPU running one of the process's threads (the POSIX_TIMER dependency).
pub fn cpu_time_timers(root: &SysRoot) -> Option<String> {
    let text = root.read("/proc/self/timers").ok()?;
    parse_cpu_time_timers(&text)
}

/// [`cpu_time_timers`] from the file's text: CPU-time clocks are 2, 3 and the negative ids
/// `clock_getcpuclockid` makes.
pub fn parse_cpu_time_timers(text: &str) -> Option<String> {
    let clocks: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ClockID:"))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .filter(|c| *c == 2 || *c == 3 || *c < 0)
        .collect();
    (!clocks.is_empty()).then(|| format!("/proc/self/timers: CPU-time clock ids {clocks:?}"))
}

/// This process's CPU-time limit (`RLIMIT_CPU`, `/proc/self/limits`): a limit set while
/// the process runs (`prlimit --pid`, `setrlimit`) arms a process CPU-time timer, which
/// keeps the tick like any other.
pub fn cpu_time_limit(root: &SysRoot) -> Option<String> {
    let text = root.read("/proc/self/limits").ok()?;
    parse_cpu_time_limit(&text)
}

/// [`cpu_time_limit`] from the file's text: the soft limit of `Max cpu time`, unless
/// unlimited.
pub fn parse_cpu_time_limit(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("Max cpu time"))?;
    let soft = line["Max cpu time".len()..].split_whitespace().next()?;
    (soft != "unlimited").then(|| format!("/proc/self/limits: Max cpu time {soft} s"))
}

/// Tasks in state R whose last CPU is `cpu`, other than `tid`: `comm/tid`. `tid_runs` says
/// whether thread `tid` itself is runnable now (it spins), or parked (it sleeps or
/// yields); `tid` 0 names no thread (everything runnable there is listed).
pub fn runnable_on(root: &SysRoot, cpu: u32, tid: i32, tid_runs: bool) -> Vec<String> {
    runnable_tasks_on(root, cpu, tid, tid_runs)
        .iter()
        .map(name)
        .collect()
}

/// A task as the reports name it: `comm/tid`.
pub fn name(st: &kernel::threads::Stat) -> String {
    format!("{}/{}", st.comm, st.tid)
}

/// [`runnable_on`], each task with its `stat` line (its flags tell a kernel thread).
pub fn runnable_tasks_on(
    root: &SysRoot,
    cpu: u32,
    tid: i32,
    tid_runs: bool,
) -> Vec<kernel::threads::Stat> {
    // Fast path: `procs_running` counts the runnable tasks of all CPUs, the reader (this
    // thread) included, and thread `tid` while it spins. No more than those: nothing else
    // is runnable anywhere, and all of /proc need not be read. (A parked thread is not
    // counted: with it, one starved task would make the count look like the spinning case.)
    let running = root.read("/proc/stat").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("procs_running "))
            .and_then(|n| n.trim().parse::<u64>().ok())
    });
    if running.is_some_and(|n| n <= 1 + u64::from(tid_runs)) {
        return Vec::new();
    }
    // Second fast path, for a busy housekeeping CPU: the CPU's own run queue length, from
    // the scheduler's debug file (one read, where walking every task's `stat` costs
    // milliseconds on a machine of thousands of threads). Nothing but thread `tid` (when it
    // runs) is there: nothing to name.
    if kernel::sched_debug::nr_running(root, cpu).is_some_and(|n| n <= u64::from(tid_runs)) {
        return Vec::new();
    }
    kernel::threads::stats(root)
        .filter(|st| st.state == 'R' && st.processor == cpu && st.tid as i32 != tid)
        .collect()
}

/// The fair deadline server of `cpu`, when this kernel has one that is enabled: what it
/// is and how it was known. Since 6.8 a fair task on a nohz_full CPU starts the server,
/// whose timer (queued on a housekeeping CPU) kicks the CPU back into the tick about once
/// a second: a lone SCHED_OTHER thread cannot be quiet there.
pub fn fair_server(root: &SysRoot, cpu: u32) -> Option<String> {
    let debugfs = format!("/sys/kernel/debug/sched/fair_server/cpu{cpu}/runtime");
    if let Ok(v) = root.read_line(&debugfs) {
        return (v.trim() != "0").then(|| format!("{debugfs} = {}", v.trim()));
    }
    let release = root.read_line("/proc/sys/kernel/osrelease").ok()?;
    let version = kernel::version(&release)?;
    (version >= kernel::FAIR_SERVER_SINCE).then(|| format!("kernel {release} (6.8 or later)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_timers_are_told_from_wall_clock_ones() {
        let wall = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.12\nClockID: 1\n";
        assert_eq!(parse_cpu_time_timers(wall), None);
        let cpu = format!("{wall}ID: 1\nsignal: 27/0\nnotify: signal/pid.12\nClockID: 2\n");
        assert_eq!(
            parse_cpu_time_timers(&cpu).as_deref(),
            Some("/proc/self/timers: CPU-time clock ids [2]")
        );
        assert!(parse_cpu_time_timers("ClockID: -6\n").is_some());
    }

    #[test]
    fn a_cpu_time_limit_is_read_from_limits() {
        let head =
            "Limit                     Soft Limit           Hard Limit           Units     \n";
        let none = format!("{head}Max cpu time              unlimited            unlimited            seconds   \n");
        assert_eq!(parse_cpu_time_limit(&none), None);
        let set = format!("{head}Max cpu time              3600                 unlimited            seconds   \n");
        assert_eq!(
            parse_cpu_time_limit(&set).as_deref(),
            Some("/proc/self/limits: Max cpu time 3600 s")
        );
    }
}
