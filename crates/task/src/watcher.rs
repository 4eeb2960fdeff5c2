//! The process's watcher: one thread on a housekeeping CPU that traces the isolated CPUs
//! (a [`Watch`] with a short hold-back), decides when a waiting CPU is quiet, counts the
//! interruptions of isolated ones, and fails waits that time out with the reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::interrupt::{Kind, Record};
use crate::kernel::timer_list;
use crate::slot::{Slot, State, ABORT};
use crate::watch::{Watch, WatchOptions};
use crate::{CpuSet, SysRoot};
use crate::{IsolError, NotQuiet};

const POLL: Duration = Duration::from_millis(1);
const HOLDBACK_NS: u64 = 1_000_000;

/// `ISOL_WAIT_MARKER=FILE`: the watcher writes one line per reading and decision of a wait
/// to FILE, meant to be a tracefs `trace_marker` (`/sys/kernel/tracing/trace_marker`), so
/// that a slow `enter` can be read on the kernel's own timeline next to `tick_stop`,
/// `sched_switch` and the timers. Unset (the default), nothing is written.
pub(crate) const ENV_WAIT_MARKER: &str = "ISOL_WAIT_MARKER";

/// Write a line to the wait marker, when there is one. One `write` per line: a trace
/// marker takes each write as one event.
macro_rules! narrate {
    ($($arg:tt)*) => {
        if let Some(mut f) = marker() {
            use std::io::Write;
            let _ = f.write_all(format!("isol: {}\n", format_args!($($arg)*)).as_bytes());
        }
    };
}

fn marker() -> Option<&'static std::fs::File> {
    static MARKER: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    MARKER
        .get_or_init(|| {
            let path = std::env::var_os(ENV_WAIT_MARKER)?;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .ok()
        })
        .as_ref()
}

struct Shared {
    stop: std::sync::atomic::AtomicBool,
    stopped: (Mutex<bool>, std::sync::Condvar),
    slots: Mutex<Vec<Arc<Slot>>>,
    new_residents: Mutex<Vec<i32>>,
    settled_ns: AtomicU64,
    error: Mutex<Option<String>>,
}

struct Handle {
    shared: Arc<Shared>,
    cpus: CpuSet,
}

static WATCHER: Mutex<Option<Handle>> = Mutex::new(None);

/// Start the watcher if it is not running.
pub(crate) fn ensure(
    root: &SysRoot,
    watched: &CpuSet,
    housekeeping: &CpuSet,
) -> Result<(), IsolError> {
    let mut w = WATCHER.lock().unwrap_or_else(|p| p.into_inner());
    if w.is_none() {
        *w = Some(start(root, watched, housekeeping)?);
    }
    Ok(())
}

/// Add a slot, starting the watcher on the first call.
pub(crate) fn register(
    root: &SysRoot,
    watched: &CpuSet,
    housekeeping: &CpuSet,
    slot: Arc<Slot>,
) -> Result<(), IsolError> {
    let mut w = WATCHER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = w.as_ref() {
        if let Some(e) = h.shared.error.lock().unwrap().clone() {
            return Err(IsolError::WatcherStopped(e));
        }
        if !h.cpus.contains(slot.cpu) {
            return Err(IsolError::Busy(format!(
                "this process's watcher traces {}, not CPU {}: isolate there \
                 (the watcher's CPUs are fixed when the first thread enters)",
                h.cpus.named(),
                slot.cpu
            )));
        }
    } else {
        *w = Some(start(root, watched, housekeeping)?);
    }
    let h = w.as_ref().expect("watcher started");
    let mut slots = h.shared.slots.lock().unwrap();
    if let Some(other) = slots.iter().find(|s| s.cpu == slot.cpu) {
        return Err(IsolError::Busy(format!(
            "CPU {} already has an isolated thread (tid {}) in this process",
            slot.cpu, other.tid
        )));
    }
    h.shared.new_residents.lock().unwrap().push(slot.tid);
    slots.push(slot);
    Ok(())
}

pub(crate) fn unregister(slot: &Arc<Slot>) {
    if let Some(h) = WATCHER.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        h.shared
            .slots
            .lock()
            .unwrap()
            .retain(|s| !Arc::ptr_eq(s, slot));
    }
}

/// Wait (up to 200 ms) until the watcher has processed events up to `until`.
pub(crate) fn settle(until: u64) {
    let shared = match WATCHER.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        Some(h) => h.shared.clone(),
        None => return,
    };
    // Spin, reading the vDSO clock: a sleep here would idle the isolated CPU, and waking
    // from idle restarts its tick, which the next enter would then wait out.
    let give_up = crate::os::monotonic_ns() + 200_000_000;
    while shared.settled_ns.load(Ordering::Acquire) < until && crate::os::monotonic_ns() < give_up {
        std::hint::spin_loop();
    }
}

pub(crate) fn failure(slot: &Slot) -> IsolError {
    let d = slot.detail.lock().unwrap_or_else(|p| p.into_inner());
    match (&d.failure, &d.error) {
        (Some(nq), _) => IsolError::NotQuiet(Box::new(nq.clone())),
        (None, Some(e)) => IsolError::WatcherStopped(e.clone()),
        (None, None) => dead(),
    }
}

pub(crate) fn dead() -> IsolError {
    IsolError::WatcherStopped("the watcher thread stopped answering".into())
}

fn start(root: &SysRoot, watched: &CpuSet, housekeeping: &CpuSet) -> Result<Handle, IsolError> {
    let shared = Arc::new(Shared {
        stop: std::sync::atomic::AtomicBool::new(false),
        stopped: (Mutex::new(false), std::sync::Condvar::new()),
        slots: Mutex::new(Vec::new()),
        new_residents: Mutex::new(Vec::new()),
        settled_ns: AtomicU64::new(0),
        error: Mutex::new(None),
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let (root, cpus, hk, sh) = (
        root.clone(),
        watched.clone(),
        housekeeping.clone(),
        shared.clone(),
    );
    std::thread::Builder::new()
        .name("isol-watcher".into())
        .spawn(move || {
            let started = crate::os::pin_current_thread(&hk)
                .map_err(|e| {
                    IsolError::Busy(format!(
                        "cannot pin the watcher to CPUs {}: {e}",
                        hk.to_list()
                    ))
                })
                .and_then(|_| {
                    // Instances left by isol processes that were killed: theirs to remove.
                    if let Ok(t) = crate::tracefs::Tracefs::locate(&root) {
                        let _ = t.remove_stale();
                    }
                    let mut opts = WatchOptions::new(cpus.clone());
                    opts.holdback_ns = HOLDBACK_NS;
                    // The isolated threads are the workload; any other task interrupts them.
                    opts.pinned_residents = false;
                    Watch::start(&root, opts).map_err(IsolError::from)
                });
            match started {
                Ok(watch) => {
                    warm_up(&root, &cpus);
                    let _ = tx.send(Ok(()));
                    run(watch, &root, &sh);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(|e| IsolError::Busy(format!("cannot start the watcher thread: {e}")))?;
    rx.recv().map_err(|_| dead())??;
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        let _ = isol_sys::process::at_exit(at_exit);
    });
    Ok(Handle {
        shared,
        cpus: watched.clone(),
    })
}

extern "C" fn at_exit() {
    shutdown();
}

/// Stop the watcher: remove its tracing instance (disabling the events) and end its
/// thread. Runs by itself at normal process exit; a killed process leaves an instance that
/// the next watcher (or `isol watch --cleanup`) removes. A later enter starts a new one.
pub(crate) fn shutdown() {
    let handle = match WATCHER.try_lock() {
        Ok(mut w) => w.take(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let Some(h) = handle else {
        return;
    };
    h.shared.stop.store(true, Ordering::SeqCst);
    let (lock, cv) = &h.shared.stopped;
    let done = lock.lock().unwrap_or_else(|p| p.into_inner());
    let _ = cv.wait_timeout_while(done, Duration::from_secs(2), |d| !*d);
}

fn run(mut watch: Watch, root: &SysRoot, shared: &Shared) {
    let mut pause = POLL;
    loop {
        std::thread::sleep(pause);
        if shared.stop.load(Ordering::SeqCst) {
            let _ = watch.stop();
            for s in shared.slots.lock().unwrap().iter() {
                s.detail.lock().unwrap().error = Some("the watcher was shut down".into());
                s.state.store(State::Failed);
                s.thread.unpark();
            }
            let (lock, cv) = &shared.stopped;
            *lock.lock().unwrap() = true;
            cv.notify_all();
            return;
        }
        for tid in shared.new_residents.lock().unwrap().drain(..) {
            watch.add_resident(tid);
        }
        let now = crate::os::monotonic_ns();
        let horizon = now.saturating_sub(HOLDBACK_NS);
        let records = match watch.poll() {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                *shared.error.lock().unwrap() = Some(msg.clone());
                for s in shared.slots.lock().unwrap().iter() {
                    s.detail.lock().unwrap().error = Some(msg.clone());
                    s.state.store(State::Failed);
                    s.thread.unpark();
                }
                return;
            }
        };
        let slots: Vec<Arc<Slot>> = shared.slots.lock().unwrap().clone();
        for r in &records {
            for s in slots.iter().filter(|s| s.cpu == r.cpu()) {
                account(s, r);
            }
        }
        for s in &slots {
            check(s, root, now, horizon);
        }
        shared.settled_ns.store(horizon, Ordering::Release);
        // A quiet reading taken at r is believed once every event up to r has been read,
        // at a horizon of r: poll again as soon as that is possible, not a whole POLL later
        // (under emulation, reading and deciding take longer than the hold-back).
        // Only for a wait still undecided; never less than 50 us, so that nothing here can
        // become a busy loop on the housekeeping CPU.
        let after = crate::os::monotonic_ns();
        pause = slots
            .iter()
            .filter(|s| matches!(s.state.load(), State::Waiting | State::Reverify))
            .filter_map(|s| s.detail.lock().unwrap().candidate)
            .map(|r| Duration::from_nanos((r + HOLDBACK_NS).saturating_sub(after)))
            .fold(POLL, Duration::min)
            .max(Duration::from_micros(50));
    }
}

/// Read once, at start, what every wait reads, so that the first wait does not pay for this
/// thread's first buffers (with memory locked, each new page of its heap is faulted in
/// when it is mapped): the arrival benchmark's first enter of a process took 10 ticks
/// longer than the next ones without this.
fn warm_up(root: &SysRoot, cpus: &CpuSet) {
    if let Ok(text) = root.read("/proc/timer_list") {
        let _ = std::hint::black_box(timer_list::parse(&text));
    }
    let _ = root.read("/proc/stat");
    for cpu in cpus.iter() {
        let _ = crate::kernel::sched_debug::nr_running(root, cpu);
    }
    let _ = crate::infer::cpu_time_timers(root).is_some();
}

/// Count one record against a slot.
fn account(s: &Slot, r: &Record) {
    let state = s.state.load();
    let mut d = s.detail.lock().unwrap();
    match r {
        Record::Interruption(i) => {
            // From the moment the CPU was declared quiet, every interruption counts, even
            // one the watcher sees only after telling the thread.
            let quiet_at = s.quiet_at_ns.load(Ordering::Acquire);
            // During a re-quiet wait (and up to its end), interruptions are the system
            // call's aftermath being waited out: not the isolated task's.
            let rewaiting = i.start_ns >= s.rewait_at.load(Ordering::Acquire)
                && i.start_ns < s.rewait_until.load(Ordering::Acquire);
            // In re-quiet mode the thread's own calls (and the handler's return, an
            // rt_sigreturn) are counted as `requiet_calls`, not as interruptions.
            let own_call = s.requiet && i.kind == Kind::Syscall;
            if own_call {
                return;
            }
            if quiet_at != 0 && i.start_ns >= quiet_at && !rewaiting {
                if i.start_ns < s.exit_at_ns.load(Ordering::Acquire) {
                    s.interruptions.fetch_add(1, Ordering::Relaxed);
                    let k = Kind::ALL.iter().position(|k| *k == i.kind).unwrap_or(0);
                    s.last_kind.store(k as u8, Ordering::Relaxed);
                    let cause = (i.kind, i.culprit());
                    *d.causes.entry(cause.clone()).or_default() += 1;
                    let remote = !matches!(i.kind, Kind::Syscall | Kind::PageFault);
                    if s.notify_signal != 0
                        && remote
                        && state == State::Isolated
                        && !s.notified.swap(true, Ordering::AcqRel)
                    {
                        d.notified_by = Some(cause.clone());
                        // v16: notification ends isolation's strictness, so that the
                        // handler (and its return) run.
                        if let Some(sel) = *s.selector.lock().unwrap_or_else(|p| p.into_inner()) {
                            sel.allow();
                        }
                        let _ = crate::os::signal_thread(s.tid, s.notify_signal);
                    }
                    d.last = Some(cause);
                }
                return;
            }
            if matches!(
                state,
                State::Waiting | State::Reverify | State::Quiet | State::Yield
            ) {
                if matches!(i.kind, Kind::Syscall | Kind::PageFault) {
                    // The thread's own setup, before the final phase.
                    return;
                }
                let end = i.start_ns + i.duration_ns.unwrap_or(0);
                d.window_start = d.window_start.max(end);
                narrate!(
                    "cpu {} waiting: {} {} at {} ends at {}: quiet must show after it",
                    s.cpu,
                    i.kind,
                    i.culprit(),
                    i.start_ns,
                    end
                );
                *d.waiting
                    .entry(format!("{} {}", i.kind, i.culprit()))
                    .or_default() += 1;
            }
        }
        Record::TickStop {
            success,
            dependency,
            ..
        } => {
            if *success {
                d.dependency = None;
            } else {
                d.dependency = Some(dependency.clone());
            }
            if matches!(state, State::Waiting | State::Reverify | State::Yield) {
                narrate!(
                    "cpu {} tick_stop success={} dependency={}",
                    s.cpu,
                    success,
                    dependency
                );
            }
        }
        Record::Lost { at_ns, .. } => {
            // Unknown gap: quiet must be shown again after it.
            d.window_start = d.window_start.max(*at_ns);
        }
    }
}

/// Decide quiet or failure for a waiting slot.
fn check(s: &Slot, root: &SysRoot, now: u64, horizon: u64) {
    let state = s.state.load();
    if !matches!(state, State::Waiting | State::Reverify | State::Yield) {
        return;
    }
    let deadline = s.deadline_ns.load(Ordering::Acquire);
    if ABORT.load(Ordering::Relaxed) {
        // A sleeping thread cannot see the flag: wake it.
        s.thread.unpark();
    }
    // Whether the thread is on the CPU now (spinning), or parked (sleeping or yielding).
    let spinning = state == State::Reverify || (state == State::Waiting && !s.sleeps);
    let mut d = s.detail.lock().unwrap();
    if !d.started {
        d.started = true;
        d.window_start = d.window_start.max(s.started_ns);
        // A CPU-time POSIX timer of this process keeps the tick of every CPU running one
        // of its threads (POSIX_TIMER): the CPU can never be quiet, whatever it shows now.
        if crate::infer::cpu_time_timers(root).is_some() {
            d.dependency = Some("POSIX_TIMER".into());
            let runnable = crate::infer::runnable_on(root, s.cpu, s.tid, spinning);
            d.failure = Some(NotQuiet {
                cpu: s.cpu,
                waited: Duration::from_nanos(now.saturating_sub(s.started_ns)),
                dependency: Some("POSIX_TIMER".into()),
                timers: Vec::new(),
                interruptions: Vec::new(),
                tick_armed: None,
                runnable,
                dependency_source: Some("inferred".into()),
            });
            s.state.store(State::Failed);
            s.thread.unpark();
            return;
        }
    }
    // A re-quiet wait (after a system call) keeps the isolation's quiet time: what
    // happens during it is waited out, not counted, and counting resumes after it.
    let rewait = s.rewait_at.load(Ordering::Acquire);
    if state == State::Reverify && d.last_state != State::Reverify {
        // The woken thread now runs on the CPU: show quiet again from here.
        d.window_start = d.window_start.max(now);
        d.candidate = None;
        if rewait == 0 {
            s.quiet_at_ns.store(0, Ordering::Release);
        }
    }
    d.last_state = state;
    if rewait != 0 && d.rewait_seen != rewait && state == State::Waiting {
        // A new re-quiet wait: quiet must be shown again from its start.
        d.rewait_seen = rewait;
        d.window_start = d.window_start.max(rewait);
        d.candidate = None;
        d.failure = None;
        d.dependency = None;
        d.waiting.clear();
    }
    // Quiet, from the kernel's own signals: /proc/timer_list showed the tick device
    // disarmed (`next_event == KTIME_MAX`) and no hrtimer queued on the CPU at time `r`,
    // every event up to `r` has been seen, and none came after it. No fixed window: the
    // optional confirmation window only asks for that much silence before `r`.
    if let Some(r) = d.candidate {
        if d.window_start > r {
            d.candidate = None;
        } else if horizon >= r {
            // A sleeping thread is only woken by the first quiet (its wake-up disturbs the
            // CPU); quiet counts from the second, seen while it runs there.
            if !(s.sleeps && state == State::Waiting) && rewait == 0 {
                s.quiet_at_ns.store(r, Ordering::Release);
            }
            narrate!(
                "cpu {} quiet from the reading at {r} (every event up to {horizon} seen)",
                s.cpu
            );
            s.state.store(State::Quiet);
            s.thread.unpark();
            return;
        }
    }
    let settled = horizon >= d.window_start + s.confirm_ns;
    // Other tasks runnable on the CPU. Looking reads all of /proc, so it is done only where
    // it matters: before believing a quiet reading (below), while the kernel says SCHED
    // keeps the tick, and while the thread yields to them.
    let sched_kept = d.dependency.as_deref() == Some("SCHED");
    if ((settled && spinning && sched_kept) || state == State::Yield)
        && now >= d.runnable_at + 2_000_000
    {
        d.runnable_at = now;
        d.runnable = crate::infer::runnable_on(root, s.cpu, s.tid, spinning);
    }
    if spinning && settled && !d.runnable.is_empty() && now <= deadline {
        narrate!("cpu {} yields to {:?}", s.cpu, d.runnable);
        // A spinning SCHED_FIFO thread would starve them, and they would come back.
        d.candidate = None;
        s.state.store(State::Yield);
        return;
    }
    if state == State::Yield && now <= deadline {
        if d.runnable.is_empty() {
            // The work ran: back onto the CPU, and show quiet again from there.
            s.state.store(State::Reverify);
            s.thread.unpark();
        }
        return;
    }
    let mut timers = Vec::new();
    let mut armed = None;
    if (settled && d.candidate.is_none()) || now > deadline {
        let read_at = crate::os::monotonic_ns();
        if let Ok(text) = root.read("/proc/timer_list") {
            if let Ok(tl) = timer_list::parse(&text) {
                armed = tl.tick_quiet(s.cpu).map(|q| !q);
                if let Some(c) = tl.cpus.get(&s.cpu) {
                    timers = c.timers.iter().map(|t| t.function.clone()).collect();
                }
            }
        }
        narrate!(
            "cpu {} /proc/timer_list read at {read_at}: tick device {}, hrtimers {:?}{}",
            s.cpu,
            match armed {
                Some(true) => "armed",
                Some(false) => "disarmed",
                None => "unknown",
            },
            timers,
            if read_at < s.settle_after_ns {
                format!(", before the arrival's settling time {}", s.settle_after_ns)
            } else {
                String::new()
            }
        );
        if settled && armed == Some(false) && timers.is_empty() && read_at >= s.settle_after_ns {
            // Another runnable task there: a SCHED_FIFO thread lets the tick stop while it
            // starves a fair task, but the fair server (6.8+) or the task's own wake-ups
            // will come for it. Not quiet (a spinning thread yields to it, above); the
            // failure names it.
            d.runnable_at = crate::os::monotonic_ns();
            d.runnable = crate::infer::runnable_on(root, s.cpu, s.tid, spinning);
            if d.runnable.is_empty() {
                d.candidate = Some(read_at);
                return;
            }
        }
    }
    if now > deadline {
        let mut interruptions: Vec<(String, u64)> =
            d.waiting.iter().map(|(k, v)| (k.clone(), *v)).collect();
        interruptions.sort_by_key(|e| std::cmp::Reverse(e.1));
        timers.retain(|t| !t.is_empty());
        timers.dedup();
        // The kernel's own word (a failed `tick_stop` seen during the wait) first; else what
        // the files show, through the inference `isol check --probe` uses too. (A fair
        // thread is refused before waiting where the fair server would kick it.)
        let (keeper, runnable) = crate::infer::tick_keeper(root, s.cpu, s.tid, spinning, false);
        let (dependency, source) = match (&d.dependency, keeper) {
            (Some(dep), _) => (Some(dep.clone()), Some("tick_stop".to_string())),
            (None, Some(k)) => (Some(k.dependency), Some("inferred".to_string())),
            (None, None) => (None, None),
        };
        d.failure = Some(NotQuiet {
            cpu: s.cpu,
            waited: Duration::from_nanos(now - s.started_ns),
            dependency,
            timers,
            interruptions,
            tick_armed: armed,
            runnable,
            dependency_source: source,
        });
        s.state.store(State::Failed);
        s.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use crate::infer::runnable_on;
    use crate::SysRoot;

    /// A root with `procs_running` = 2: the watcher and one starved task on CPU 1.
    fn root_with_starved_task() -> (tempfile::TempDir, SysRoot) {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("proc/300/task/301");
        std::fs::create_dir_all(&task).unwrap();
        std::fs::write(
            dir.path().join("proc/stat"),
            "cpu  1 2 3\nprocs_running 2\n",
        )
        .unwrap();
        // Field 39 (processor) = 1, state R, SCHED_OTHER.
        let stat = "301 (starved) R 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 2 0 100 0 0 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        std::fs::write(task.join("stat"), stat).unwrap();
        let root = SysRoot::at(dir.path());
        (dir, root)
    }

    #[test]
    fn a_starved_task_is_found_while_the_isolated_thread_is_parked() {
        let (_dir, root) = root_with_starved_task();
        // Parked (yielding or sleeping): two runnable tasks are the watcher and another one.
        assert_eq!(runnable_on(&root, 1, 200, false), vec!["starved/301"]);
        // Spinning: two runnable tasks are the watcher and the isolated thread itself.
        assert!(runnable_on(&root, 1, 200, true).is_empty());
    }

    #[test]
    fn the_run_queue_length_spares_the_walk_only_when_it_says_nothing_else_is_there() {
        let (dir, root) = root_with_starved_task();
        // Housekeeping is busy (procs_running 5), CPU 1's run queue holds the spinning
        // thread alone: nothing to name, and the walk (which would find `starved`) is not
        // made.
        std::fs::write(dir.path().join("proc/stat"), "procs_running 5\n").unwrap();
        let debug = dir.path().join("sys/kernel/debug/sched");
        std::fs::create_dir_all(&debug).unwrap();
        let queue = |n: u32| {
            format!("cpu#0, 2599.987 MHz\n  .nr_running : 4\ncpu#1, 2599.987 MHz\n  .nr_running : {n}\n")
        };
        std::fs::write(debug.join("debug"), queue(1)).unwrap();
        assert!(runnable_on(&root, 1, 200, true).is_empty());
        // Two there: the walk names the other one.
        std::fs::write(debug.join("debug"), queue(2)).unwrap();
        assert_eq!(runnable_on(&root, 1, 200, true), vec!["starved/301"]);
        // Parked, one there: it is another task.
        std::fs::write(debug.join("debug"), queue(1)).unwrap();
        assert_eq!(runnable_on(&root, 1, 200, false), vec!["starved/301"]);
    }
}
