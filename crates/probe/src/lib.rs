//! `isol check --probe`: does the tick of each isolated CPU really stop under a lone task?
//!
//! Static checks read settings; the probe measures. For each target CPU it creates a thread
//! on a housekeeping CPU (the path a program's threads take), gives it a policy, moves it to
//! the CPU and lets it spin in user space (no system call) while the prober, on
//! housekeeping, watches with the kernel's own counts only: the CPU's tick device in
//! `/proc/timer_list` (disarmed: the tick stopped) and the CPU's column of
//! `/proc/interrupts`. No tracepoint is switched on: one has been known to change the
//! answer. Two phases, each with a new thread: `SCHED_FIFO` (what isolated programs should
//! run as), then `SCHED_OTHER` (what most run as; on 6.8 and later the fair deadline server
//! kicks such a CPU about once a second). The target CPUs are probed at once, so the cost is
//! two windows and their settling, whatever their number.
//!
//! Work queued on the CPU for its own kernel threads when the tick stops (a kworker) is
//! let run first: the thread sleeps until it has, as `isol enter` does, within the
//! settling time, and the result says so.
//!
//! When the tick keeps running, the cause is named through [`isol_task::infer`], the
//! inference `enter` uses; [`findings`] turns the result into `probe.*` findings of the
//! check report. The probe leaves nothing behind: its threads end, and the prober's own
//! placement is put back.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod verdict;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use isol_model::kernel::interrupts::InterruptTable;
use isol_model::kernel::threads::{Stat, PF_KTHREAD};
use isol_model::kernel::{timer_list, KernelModel};
use isol_model::target::{Target, Topology};
use isol_model::thread::{monotonic_ns, pin_current_thread};
use isol_model::{CpuSet, SysRoot};
use isol_task::infer::{self, TickKeeper};

pub use verdict::{classify, findings, Outcome};

/// How to probe.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to count interrupts once the tick stopped (or the settling time ran out).
    pub window: Duration,
    /// How long to wait for the tick to stop after the thread arrives.
    pub settle: Duration,
    /// Probe CPUs that have a workload (a thread pinned there, or runnable there) too.
    pub busy: bool,
    /// The `SCHED_FIFO` priority of the first phase's thread.
    pub priority: i32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window: Duration::from_secs(1),
            settle: Duration::from_millis(250),
            busy: false,
            priority: 1,
        }
    }
}

impl Options {
    /// Each phase's window on `target`: the SCHED_FIFO phase counts for `window`; the
    /// SCHED_OTHER phase, where a fair deadline server is on, for three of its periods at
    /// least (it kicks about once a period; in the lab the first kick came 0.95 to 1.87
    /// periods after the tick stopped).
    pub fn windows(&self, root: &SysRoot, target: &Target) -> [(Policy, Duration); 2] {
        let period = target
            .cpus
            .iter()
            .filter(|&cpu| infer::fair_server(root, cpu).is_some())
            .map(|cpu| {
                root.read_line(&format!(
                    "/sys/kernel/debug/sched/fair_server/cpu{cpu}/period"
                ))
                .ok()
                .and_then(|p| p.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(1), Duration::from_nanos)
            })
            .max();
        let other = period.map_or(self.window, |p| self.window.max(p * 3));
        [(Policy::Fifo, self.window), (Policy::Other, other)]
    }

    /// The most the probe can take with these windows: each phase's settling and window
    /// (the CPUs are probed at once), and a little for the threads' start.
    pub fn bound(&self, windows: &[(Policy, Duration); 2]) -> Duration {
        windows
            .iter()
            .map(|(_, w)| self.settle + *w + Duration::from_millis(50))
            .sum()
    }
}

/// The policy a phase's thread runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Policy {
    /// `SCHED_FIFO`.
    #[serde(rename = "SCHED_FIFO")]
    Fifo,
    /// `SCHED_OTHER`.
    #[serde(rename = "SCHED_OTHER")]
    Other,
}

impl Policy {
    /// The kernel's name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fifo => "SCHED_FIFO",
            Policy::Other => "SCHED_OTHER",
        }
    }
}

/// What one CPU showed in one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuResult {
    /// The CPU.
    pub cpu: u32,
    /// The phase's policy.
    pub policy: Policy,
    /// The verdict.
    pub outcome: Outcome,
    /// How long after the thread arrived the tick device was first seen disarmed.
    pub stopped_after_ns: Option<u64>,
    /// How long the interrupts were counted.
    pub window_ns: u64,
    /// The CPU's interrupts during the window, by `/proc/interrupts` row (rows that moved).
    pub interrupts: BTreeMap<String, u64>,
    /// When the first of them was seen, after the window began (10 ms resolution).
    pub first_after_ns: Option<u64>,
    /// Why the tick was kept, when it was and something names it.
    pub keeper: Option<Keeper>,
    /// Other tasks runnable on the CPU at the window's end (`comm/tid`): under a SCHED_FIFO
    /// thread that never yields, they waited all along, even on a quiet CPU.
    pub starved: Vec<String>,
    /// Whether every starved task is a kernel thread (work queued on the CPU), not a
    /// program's thread.
    pub starved_kernel_threads: bool,
    /// The CPU's kernel threads the probe's thread let run before its window (`comm/tid`):
    /// work queued on the CPU when the tick stopped, which `isol enter` would also wait
    /// for. Empty when there was none.
    pub yielded_to: Vec<String>,
}

/// A cause, and how it was known (the shared inference's [`TickKeeper`], or the CPU not
/// being nohz_full at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keeper {
    /// `NOT_NOHZ_FULL`, `POSIX_TIMER`, `SCHED`, `FAIR_SERVER`.
    pub dependency: String,
    /// The file and value it was inferred from.
    pub evidence: String,
}

impl From<TickKeeper> for Keeper {
    fn from(k: TickKeeper) -> Self {
        Keeper {
            dependency: k.dependency,
            evidence: k.evidence,
        }
    }
}

impl CpuResult {
    /// Interrupts in the window, every row.
    pub fn total(&self) -> u64 {
        self.interrupts.values().sum()
    }
}

/// A CPU not probed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The CPU.
    pub cpu: u32,
    /// What is there: the workload's threads (`comm/tid`).
    pub workload: Vec<String>,
}

/// The whole probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// Each probed CPU, each phase.
    pub results: Vec<CpuResult>,
    /// CPUs left alone (a workload is there, `--probe-busy` not given).
    pub skipped: Vec<Skipped>,
    /// What the probe took, in ns.
    pub took_ns: u64,
    /// The window asked for.
    pub window_ns: u64,
}

/// Why the probe could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A file the probe needs cannot be read.
    #[error("cannot read {path}: {why}; the probe reads the kernel's own counts (run as root)")]
    Read {
        /// The file.
        path: &'static str,
        /// Why.
        why: String,
    },
    /// A thread could not be created, given its policy or placed.
    #[error("the probe thread for CPU {cpu} could not {what}: {why}; run as root (CAP_SYS_NICE), or check that CPU {cpu} is online and in this process's cpuset")]
    Thread {
        /// The CPU.
        cpu: u32,
        /// What failed.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// There is no housekeeping CPU to probe from.
    #[error("no housekeeping CPU to probe from: keep one CPU out of the target")]
    NoHousekeeping,
}

/// The threads a CPU's workload is made of: user threads pinned to it alone (a program's
/// own threads, sleeping or not) and user threads that stay runnable there. This process's
/// own threads are not a workload.
pub fn workload_on(root: &SysRoot, model: &KernelModel, cpu: u32) -> Vec<String> {
    let me = std::process::id();
    let only = CpuSet::from_iter([cpu]);
    let mut found: Vec<String> = model
        .threads
        .as_ref()
        .map(|threads| {
            threads
                .iter()
                .filter(|t| !t.kernel_thread && t.pid != me && t.allowed == only)
                .map(|t| format!("{}/{}", t.comm, t.tid))
                .collect()
        })
        .unwrap_or_default();
    let mine: Vec<u32> = root
        .list(&format!("/proc/{me}/task"))
        .map(|ts| ts.iter().filter_map(|t| t.parse().ok()).collect())
        .unwrap_or_default();
    let kernel_thread = |tid: u32| {
        model
            .threads
            .as_ref()
            .is_some_and(|ts| ts.iter().any(|t| t.tid == tid && t.kernel_thread))
    };
    // What runs there for a moment (a shell's pipe, a kworker) is not a workload: a task
    // runnable in three readings 10 ms apart is.
    let mut runnable = infer::runnable_on(root, cpu, 0, false);
    for _ in 0..2 {
        if runnable.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        let again = infer::runnable_on(root, cpu, 0, false);
        runnable.retain(|r| again.contains(r));
    }
    for r in runnable {
        // A kernel thread runnable for a moment (a kworker) is not a workload; this
        // process's threads are not either.
        let tid = r.rsplit('/').next().and_then(|t| t.parse::<u32>().ok());
        let other = tid.is_some_and(|t| !kernel_thread(t) && !mine.contains(&t));
        if other && !found.contains(&r) {
            found.push(r);
        }
    }
    found
}

/// Probe each CPU of `target`, from its housekeeping CPUs.
pub fn probe(
    root: &SysRoot,
    model: &KernelModel,
    target: &Target,
    opts: &Options,
) -> Result<Probe, ProbeError> {
    if target.housekeeping.is_empty() {
        return Err(ProbeError::NoHousekeeping);
    }
    for path in ["/proc/timer_list", "/proc/interrupts"] {
        root.read(path).map_err(|e| ProbeError::Read {
            path,
            why: e.to_string(),
        })?;
    }
    let started = monotonic_ns();
    let mut skipped = Vec::new();
    let mut cpus = Vec::new();
    for cpu in target.cpus.iter() {
        let workload = workload_on(root, model, cpu);
        if workload.is_empty() || opts.busy {
            cpus.push(cpu);
        } else {
            skipped.push(Skipped { cpu, workload });
        }
    }
    let topo = Topology::of(model);
    // The prober runs on housekeeping, and the threads it creates start there.
    let placed = isol_model::thread::affinity().ok();
    pin_current_thread(&target.housekeeping).map_err(|e| ProbeError::Thread {
        cpu: target.housekeeping.iter().next().unwrap_or(0),
        what: "run the prober on the housekeeping CPUs",
        why: e.to_string(),
    })?;
    let mut results = Vec::new();
    let mut outcome = Ok(());
    for (policy, window) in opts.windows(root, target) {
        if cpus.is_empty() {
            break;
        }
        let phase = Phase {
            root,
            topo: &topo,
            cpus: &cpus,
            policy,
            window,
            opts,
        };
        match phase.run() {
            Ok(r) => results.extend(r),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if let Some(cpus) = placed {
        let _ = pin_current_thread(&cpus);
    }
    outcome?;
    Ok(Probe {
        results,
        skipped,
        took_ns: monotonic_ns() - started,
        window_ns: opts.window.as_nanos() as u64,
    })
}

/// One probe thread: its arrival time (0 until it is on its CPU, and while it lets the
/// CPU's kernel threads run), whether it is asked to, and what went wrong.
struct Spinner {
    arrived: AtomicU64,
    pause: AtomicBool,
    tid: AtomicU64,
    failed: Mutex<Option<(&'static str, String)>>,
}

/// Where one CPU's measurement is.
#[derive(Default)]
struct Watching {
    /// When the thread first arrived: the settling time counts from there, yields included.
    first_arrived: Option<u64>,
    /// Since when the thread has been letting the CPU's kernel threads run.
    paused: Option<u64>,
    /// The kernel threads it let run: tid, and name when first seen.
    yielded_to: Vec<(u32, String)>,
    /// When the tick device was first seen disarmed.
    stopped: Option<u64>,
    /// The window's start and the CPU's counts then.
    base: Option<(u64, BTreeMap<String, u64>)>,
    /// When a count first moved.
    first: Option<u64>,
    /// The window's end counts, once over.
    done: Option<CpuResult>,
}

/// Each CPU's column of `/proc/interrupts`, by row.
fn columns(root: &SysRoot, cpus: &[u32]) -> Option<BTreeMap<u32, BTreeMap<String, u64>>> {
    let table = InterruptTable::parse(&root.read("/proc/interrupts").ok()?).ok()?;
    Some(
        cpus.iter()
            .map(|&cpu| {
                let rows = table
                    .rows
                    .iter()
                    .filter_map(|r| Some((r.name.clone(), *r.counts.get(&cpu)?)))
                    .collect();
                (cpu, rows)
            })
            .collect(),
    )
}

/// The rows that moved between two readings.
fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, n)| {
            let d = n.saturating_sub(*before.get(name).unwrap_or(n));
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

/// One phase: a thread with `policy` on each CPU, at once, measured until each window ends.
struct Phase<'a> {
    root: &'a SysRoot,
    topo: &'a Topology,
    cpus: &'a [u32],
    policy: Policy,
    window: Duration,
    opts: &'a Options,
}

impl Phase<'_> {
    fn run(&self) -> Result<Vec<CpuResult>, ProbeError> {
        let Phase {
            cpus, policy, opts, ..
        } = *self;
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<Arc<Spinner>> = cpus
            .iter()
            .map(|_| {
                Arc::new(Spinner {
                    arrived: AtomicU64::new(0),
                    pause: AtomicBool::new(false),
                    tid: AtomicU64::new(0),
                    failed: Mutex::new(None),
                })
            })
            .collect();
        let mut handles = Vec::new();
        for (&cpu, sp) in cpus.iter().zip(&spinners) {
            let (sp, stopped, priority) = (sp.clone(), stop.clone(), opts.priority);
            let spawned = std::thread::Builder::new()
                .name(format!("isol-probe/{cpu}"))
                .spawn(move || spin(cpu, policy, priority, &sp, &stopped));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Release);
                    return Err(ProbeError::Thread {
                        cpu,
                        what: "be created",
                        why: e.to_string(),
                    });
                }
            }
        }
        let measured = self.measure(&spinners);
        stop.store(true, Ordering::Release);
        for h in handles {
            let _ = h.join();
        }
        for (&cpu, sp) in cpus.iter().zip(&spinners) {
            if let Some((what, why)) = sp.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(ProbeError::Thread { cpu, what, why });
            }
        }
        Ok(measured)
    }

    /// Watch every CPU of the phase from housekeeping until each window is over.
    fn measure(&self, spinners: &[Arc<Spinner>]) -> Vec<CpuResult> {
        let Phase {
            root,
            topo,
            cpus,
            policy,
            window,
            opts,
        } = *self;
        let settle = opts.settle.as_nanos() as u64;
        let give_up = monotonic_ns() + (opts.settle + window).as_nanos() as u64 * 2;
        let window = window.as_nanos() as u64;
        let mut w: Vec<Watching> = cpus.iter().map(|_| Watching::default()).collect();
        loop {
            let now = monotonic_ns();
            let failed = spinners
                .iter()
                .any(|s| s.failed.lock().unwrap_or_else(|p| p.into_inner()).is_some());
            if failed || now > give_up || w.iter().all(|x| x.done.is_some()) {
                break;
            }
            // A thread letting its CPU's kernel threads run comes back once they have (or
            // when the settling time is nearly spent).
            for (i, x) in w.iter_mut().enumerate() {
                let Some(since) = x.paused else { continue };
                let end = x.first_arrived.unwrap_or(since) + settle;
                let waiting = kernel_work_on(root, cpus[i], 0, false);
                if waiting.is_empty() || now + YIELD_SPARE_NS >= end {
                    x.paused = None;
                    spinners[i].pause.store(false, Ordering::Release);
                }
            }
            // The tick device of each CPU still settling.
            let settling: Vec<usize> = (0..cpus.len())
                .filter(|&i| {
                    let arrived = spinners[i].arrived.load(Ordering::Acquire);
                    arrived != 0 && w[i].base.is_none() && w[i].paused.is_none()
                })
                .collect();
            if !settling.is_empty() {
                let read_at = monotonic_ns();
                let tl = root
                    .read("/proc/timer_list")
                    .ok()
                    .and_then(|t| timer_list::parse(&t).ok());
                // Read only when a window begins: most readings find the tick still armed.
                let mut counts = None;
                for &i in &settling {
                    let arrived = spinners[i].arrived.load(Ordering::Acquire);
                    let first = *w[i].first_arrived.get_or_insert(arrived);
                    let quiet = tl
                        .as_ref()
                        .and_then(|tl| tl.tick_quiet(cpus[i]))
                        .unwrap_or(false);
                    if quiet && read_at >= first + settle.saturating_sub(YIELD_SPARE_NS) {
                        // No time left to let anything run first.
                    } else if quiet {
                        // Work queued on the CPU for its own kernel threads (a kworker after
                        // boot) would wait under a SCHED_FIFO thread all window long: let it
                        // run first, as `isol enter` does, and settle again.
                        let tid = spinners[i].tid.load(Ordering::Acquire) as i32;
                        let waiting = kernel_work_on(root, cpus[i], tid, true);
                        if !waiting.is_empty() {
                            for st in &waiting {
                                // Once per thread: a kworker's name changes with its work
                                // (`kworker/1:1-events`, `kworker/1:1+events`).
                                if !w[i].yielded_to.iter().any(|(t, _)| *t == st.tid) {
                                    w[i].yielded_to.push((st.tid, infer::name(st)));
                                }
                            }
                            w[i].stopped = None;
                            w[i].paused = Some(read_at);
                            spinners[i].arrived.store(0, Ordering::Release);
                            spinners[i].pause.store(true, Ordering::Release);
                            continue;
                        }
                    }
                    if quiet && read_at >= arrived {
                        w[i].stopped = Some(read_at - arrived);
                    }
                    if quiet || read_at >= first + settle {
                        let counts = counts.get_or_insert_with(|| columns(root, cpus));
                        if let Some(c) = counts.as_ref().and_then(|c| c.get(&cpus[i])) {
                            w[i].base = Some((monotonic_ns(), c.clone()));
                        }
                    }
                }
            }
            // The windows under way: a count that moved, and each window's end.
            if w.iter().any(|x| x.base.is_some() && x.done.is_none()) {
                let at = monotonic_ns();
                if let Some(counts) = columns(root, cpus) {
                    for (i, x) in w.iter_mut().enumerate() {
                        let (Some((start, base)), None) = (&x.base, &x.done) else {
                            continue;
                        };
                        let now_counts = &counts[&cpus[i]];
                        let m = moved(base, now_counts);
                        if x.first.is_none() && !m.is_empty() {
                            x.first = Some(at - start);
                        }
                        if at >= start + window {
                            let cpu = cpus[i];
                            let tid = spinners[i].tid.load(Ordering::Acquire) as i32;
                            let outcome = classify(&m, at - start);
                            let waiting = infer::runnable_tasks_on(root, cpu, tid, true);
                            let starved_kernel_threads = !waiting.is_empty()
                                && waiting.iter().all(|st| st.flags & PF_KTHREAD != 0);
                            let starved = waiting.iter().map(infer::name).collect();
                            let keeper = if outcome == Outcome::Quiet {
                                None
                            } else if !topo.nohz_full.contains(cpu) {
                                Some(Keeper {
                                    dependency: "NOT_NOHZ_FULL".into(),
                                    evidence: format!(
                                        "/sys/devices/system/cpu/nohz_full = {}",
                                        if topo.nohz_full.is_empty() {
                                            "(null)".to_string()
                                        } else {
                                            topo.nohz_full.to_list()
                                        }
                                    ),
                                })
                            } else {
                                // Asked while the thread still spins there: the same inference
                                // `enter` makes when its wait fails.
                                infer::tick_keeper(root, cpu, tid, true, policy == Policy::Other)
                                    .0
                                    .map(Keeper::from)
                            };
                            x.done = Some(CpuResult {
                                cpu,
                                policy,
                                outcome,
                                stopped_after_ns: x.stopped,
                                window_ns: at - start,
                                interrupts: m,
                                first_after_ns: x.first,
                                keeper,
                                starved,
                                starved_kernel_threads,
                                yielded_to: std::mem::take(&mut x.yielded_to)
                                    .into_iter()
                                    .map(|(_, name)| name)
                                    .collect(),
                            });
                        }
                    }
                }
            }
            let settling_left = (0..cpus.len()).any(|i| w[i].base.is_none());
            std::thread::sleep(Duration::from_millis(if settling_left { 2 } else { 10 }));
        }
        w.into_iter().filter_map(|x| x.done).collect()
    }
}

/// The probe thread: its policy, set while still on housekeeping, then its CPU; then it
/// spins in user space until told to stop, and ends.
fn spin(cpu: u32, policy: Policy, priority: i32, sp: &Spinner, stop: &AtomicBool) {
    let fail = |what, e: std::io::Error| {
        *sp.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some((what, e.to_string()));
    };
    sp.tid
        .store(isol_sys::thread::gettid() as u64, Ordering::Release);
    let set = match policy {
        Policy::Fifo => isol_sys::thread::Policy::fifo(priority).apply(),
        Policy::Other => isol_sys::thread::Policy::other().apply(),
    };
    if let Err(e) = set {
        return fail("take its policy", e);
    }
    if let Err(e) = pin_current_thread(&CpuSet::from_iter([cpu])) {
        return fail("move to its CPU", e);
    }
    sp.arrived.store(monotonic_ns(), Ordering::Release);
    while !stop.load(Ordering::Relaxed) {
        if sp.pause.load(Ordering::Relaxed) {
            // Off the CPU, so that its kernel threads run; back when the prober says.
            while sp.pause.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            sp.arrived.store(monotonic_ns(), Ordering::Release);
        }
        std::hint::spin_loop();
    }
}

/// How much of the settling time is kept for the tick to stop again after a yield.
const YIELD_SPARE_NS: u64 = 50_000_000;

/// The kernel threads runnable on `cpu` (other than thread `tid`): work queued there.
fn kernel_work_on(root: &SysRoot, cpu: u32, tid: i32, tid_runs: bool) -> Vec<Stat> {
    infer::runnable_tasks_on(root, cpu, tid, tid_runs)
        .into_iter()
        .filter(|st| st.flags & PF_KTHREAD != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rows_that_moved_are_kept() {
        let before = BTreeMap::from([("LOC".to_string(), 10), ("RES".to_string(), 3)]);
        let after = BTreeMap::from([
            ("LOC".to_string(), 10),
            ("RES".to_string(), 5),
            ("CAL".to_string(), 1),
        ]);
        // A row that appears between the readings counts from its first reading.
        assert_eq!(moved(&before, &after), BTreeMap::from([("RES".into(), 2)]));
    }

    #[test]
    fn the_fair_phase_outlasts_three_server_periods() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::at(dir.path());
        let target = Target {
            cpus: CpuSet::from_iter([1]),
            source: isol_model::target::TargetSource::Given,
            housekeeping: CpuSet::from_iter([0]),
            pod: None,
        };
        let o = Options::default();
        let s = Duration::from_secs(1);
        // No fair server (6.1, or a kernel whose files say nothing): one window each.
        assert_eq!(
            o.windows(&root, &target),
            [(Policy::Fifo, s), (Policy::Other, s)]
        );
        let fs = dir.path().join("sys/kernel/debug/sched/fair_server/cpu1");
        std::fs::create_dir_all(&fs).unwrap();
        std::fs::write(fs.join("runtime"), "50000000\n").unwrap();
        std::fs::write(fs.join("period"), "1000000000\n").unwrap();
        let w = o.windows(&root, &target);
        assert_eq!(w, [(Policy::Fifo, s), (Policy::Other, 3 * s)]);
        assert_eq!(o.bound(&w), Duration::from_millis(4600));
        // A server turned off (runtime 0) kicks nothing.
        std::fs::write(fs.join("runtime"), "0\n").unwrap();
        assert_eq!(o.windows(&root, &target)[1], (Policy::Other, s));
    }
}
