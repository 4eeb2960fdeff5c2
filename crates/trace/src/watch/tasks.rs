//! What the state machine learns about tasks: names, and whether a task that arrives on a
//! watched CPU is pinned there.

use crate::interrupt::Place;
use crate::kernel::place::Places;
use crate::{CpuSet, SysRoot};

/// What the state machine asks about the tasks it meets: their names, and whether a task
/// that arrives on a watched CPU is pinned there (the CPU's workload).
pub(crate) trait TaskLookup: Send {
    /// The task's name, if it can still be found.
    fn comm(&self, pid: i32) -> Option<String>;
    /// Where the task may run: `None` when it has gone.
    fn placement(&self, pid: i32, watched: &CpuSet) -> Option<Placement>;
    /// Where the task lives (its unit, container, pod): `None` when unknown or nowhere.
    fn place(&self, pid: i32) -> Option<Place>;
}

/// Where a task may run, as far as residency goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A kernel thread: never the workload, even when bound to the CPU (a per-CPU kworker).
    Kernel,
    /// A user task allowed only on watched CPUs: it was put there, it is the workload.
    Pinned,
    /// A user task that may run elsewhere too.
    Free,
}

/// The live system: names from `/proc`, else (a task that has exited, a short-lived
/// `kill`) from the names the tracer saved as it recorded events (`saved_cmdlines` under
/// `tracefs`); placement from the task's `stat` flags and `Cpus_allowed_list`.
pub(super) struct LiveTasks {
    pub(super) root: SysRoot,
    pub(super) tracefs: String,
    /// Names kubelet's log layout gives pods and containers, read when the watch starts.
    pub(super) places: std::sync::Mutex<Places>,
}

impl LiveTasks {
    pub(super) fn new(root: &SysRoot, tracefs: &str) -> LiveTasks {
        LiveTasks {
            root: root.clone(),
            tracefs: tracefs.to_string(),
            places: std::sync::Mutex::new(Places::new(root)),
        }
    }
}

impl TaskLookup for LiveTasks {
    fn comm(&self, pid: i32) -> Option<String> {
        self.root
            .read_line(&format!("/proc/{pid}/comm"))
            .ok()
            .filter(|c| !c.is_empty())
            .or_else(|| saved_cmdline(&self.root, &self.tracefs, pid))
    }

    fn placement(&self, pid: i32, watched: &CpuSet) -> Option<Placement> {
        // `/proc/TID` resolves threads as well as processes.
        let stat = self.root.read(&format!("/proc/{pid}/stat")).ok()?;
        let status = self.root.read(&format!("/proc/{pid}/status")).ok()?;
        let t = crate::kernel::threads::thread_info(pid as u32, &stat, &status)?;
        Some(if t.kernel_thread {
            Placement::Kernel
        } else if !t.allowed.is_empty() && t.allowed.iter().all(|c| watched.contains(c)) {
            Placement::Pinned
        } else {
            Placement::Free
        })
    }

    fn place(&self, pid: i32) -> Option<Place> {
        let text = self.root.read(&format!("/proc/{pid}/cgroup")).ok()?;
        let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
        Some(places.from_cgroup(&text)).filter(|p| !p.is_empty())
    }
}

/// A recording: the names and the pinned tasks its manifest kept.
pub(super) struct RecordedTasks {
    pub(super) comms: std::collections::BTreeMap<i32, String>,
    pub(super) pinned: std::collections::HashSet<i32>,
    pub(super) places: std::collections::BTreeMap<i32, Place>,
}

impl TaskLookup for RecordedTasks {
    fn comm(&self, pid: i32) -> Option<String> {
        self.comms.get(&pid).cloned()
    }

    fn placement(&self, pid: i32, _: &CpuSet) -> Option<Placement> {
        self.pinned.contains(&pid).then_some(Placement::Pinned)
    }

    fn place(&self, pid: i32) -> Option<Place> {
        self.places.get(&pid).cloned()
    }
}

/// `pid`'s name in the tracer's `saved_cmdlines` (lines `PID COMM`).
fn saved_cmdline(root: &SysRoot, tracefs: &str, pid: i32) -> Option<String> {
    let text = root.read(&format!("{tracefs}/saved_cmdlines")).ok()?;
    text.lines().find_map(|l| {
        let (p, comm) = l.split_once(' ')?;
        (p.parse::<i32>().ok()? == pid && comm != "<...>").then(|| comm.trim().to_string())
    })
}

/// User tasks running on `cpus` right now (state R, not kernel threads): the CPUs'
/// residents, whose running is what interruptions interrupt.
pub fn residents_now(root: &SysRoot, cpus: &CpuSet) -> Vec<i32> {
    occupants_now(root, cpus)
        .into_iter()
        .map(|(tid, _, _)| tid)
        .collect()
}

/// [`residents_now`] with the CPU each runs on and its name.
pub(crate) fn occupants_now(root: &SysRoot, cpus: &CpuSet) -> Vec<(i32, u32, String)> {
    use crate::kernel::threads::{stats, PF_KTHREAD};
    stats(root)
        .filter(|st| st.state == 'R' && st.flags & PF_KTHREAD == 0 && cpus.contains(st.processor))
        .map(|st| (st.tid as i32, st.processor, st.comm))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SysRoot;

    /// A sender that has exited (a `kill` run from a shell) is named from the tracer's
    /// saved names, not printed as `?`.
    #[test]
    fn exited_tasks_are_named_from_saved_cmdlines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/41")).unwrap();
        std::fs::write(dir.path().join("proc/41/comm"), "bash\n").unwrap();
        let t = dir.path().join("sys/kernel/tracing");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("saved_cmdlines"), "172 kill\n173 <...>\n41 stale\n").unwrap();
        let lookup = LiveTasks::new(&SysRoot::at(dir.path()), "/sys/kernel/tracing");
        assert_eq!(lookup.comm(41).as_deref(), Some("bash"), "/proc first");
        assert_eq!(lookup.comm(172).as_deref(), Some("kill"));
        assert_eq!(lookup.comm(173), None, "the tracer lost that name");
        assert_eq!(lookup.comm(999), None);
    }

    /// Placement from a task's flags and allowed CPUs: a user task allowed only on watched
    /// CPUs is pinned; a kernel thread bound there (a per-CPU kworker) is not the workload.
    #[test]
    fn placement_reads_flags_and_allowed_cpus() {
        let dir = tempfile::tempdir().unwrap();
        let task = |pid: i32, flags: u64, allowed: &str| {
            let d = dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&d).unwrap();
            let stat = format!(
                "{pid} (t {pid}) R 1 1 1 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0 \
                 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
            );
            std::fs::write(d.join("stat"), stat).unwrap();
            std::fs::write(
                d.join("status"),
                format!("Name:\tt\nCpus_allowed_list:\t{allowed}\n"),
            )
            .unwrap();
        };
        task(10, 0x0040_4100, "1");
        task(11, 0x0040_4100, "0-1");
        task(12, 0x0420_8040, "1");
        let lookup = LiveTasks::new(&SysRoot::at(dir.path()), "/sys/kernel/tracing");
        let watched = CpuSet::from_iter([1, 3]);
        assert_eq!(lookup.placement(10, &watched), Some(Placement::Pinned));
        assert_eq!(lookup.placement(11, &watched), Some(Placement::Free));
        assert_eq!(lookup.placement(12, &watched), Some(Placement::Kernel));
        assert_eq!(lookup.placement(13, &watched), None, "gone");
    }
}
