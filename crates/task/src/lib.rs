//! Task isolation: the behaviour of the never-merged `prctl(PR_TASK_ISOLATION)`, from
//! userspace, on unmodified kernels.
//!
//! A thread asks to run isolated on one CPU. [`Isolation::enter`] checks it may (one
//! allowed CPU, `nohz_full` and domain-isolated: the patch's EINVAL), prepares it (locked
//! memory, prefaulted stack, optional SCHED_FIFO, all before the thread moves
//! onto the CPU), then waits until the CPU is quiet: `/proc/timer_list` shows its tick
//! device with no event armed at all (`next_event == KTIME_MAX`, not just `tick_stopped`)
//! and no hrtimer queued on it, and the trace shows no interruption of the CPU after that
//! reading. A watcher thread on a housekeeping CPU decides that from the kernel's trace
//! events and `/proc/timer_list`, within about a millisecond of the kernel stopping the
//! tick; the isolated thread makes no system call in the final phase. If the
//! CPU does not get quiet in time, enter fails with [`IsolError::NotQuiet`] (the patch's
//! EAGAIN) naming what keeps the tick alive.
//!
//! Two ways to wait, the two sides of the 2015 design debate:
//! * [`Wait::Spin`]: the thread spins in userspace on an atomic the watcher sets (the
//!   patch's busy wait, without a loop in the kernel). A spinning SCHED_FIFO thread would
//!   starve another task runnable on its CPU (a kworker its own setup queued there, an RCU
//!   kthread on PREEMPT_RT); when the watcher sees one, the thread blocks until that task
//!   has run, then re-verifies, spinning. A task that never leaves makes enter fail
//!   (EAGAIN, SCHED, naming it);
//! * [`Wait::Sleep`]: the thread blocks, the watcher wakes it when the CPU is quiet, and
//!   the thread re-verifies by spinning until the watcher sees the CPU quiet again (the
//!   wake-wait scheme proposed in review: waking a thread disturbs the CPU it wakes on).
//!
//! A failed enter leaves the thread as it found it: affinity, scheduling policy and memory
//! locking are put back. A SCHED_OTHER thread is refused at once (EAGAIN, dependency
//! `FAIR_SERVER`) on kernels whose fair deadline server would kick its CPU (6.8 and
//! later, unless the CPU's server is turned off in debugfs).
//!
//! While isolated, [`IsolatedGuard::interruptions`] reads a counter the watcher updates,
//! without a system call. [`IsolatedGuard::exit`] returns a [`Report`].
//!
//! Three options complete v16's semantics ([`strict`]):
//! * [`Isolation::strict`]: a system call or a page fault of the isolated thread is a
//!   violation, caught at once (Syscall User Dispatch, a perf `sigtrap` event) and acted
//!   on: kill the process, signal the thread, or report;
//! * [`Isolation::on_interrupt`]: the thread is signalled when the kernel comes to its CPU
//!   (remote notification), and [`IsolatedGuard::notified_by`] names the culprit;
//! * [`Isolation::requiet`]: each system call runs, then isol waits until the CPU is quiet
//!   again before the thread runs on (the patches' wait on every return to userspace).
//!
//! ## Quiescing: what userspace can and cannot do
//! * **vmstat**: the per-CPU counters are folded by `vmstat_update` work, which the kernel
//!   no longer schedules on nohz_full CPUs once their tick is stopped; userspace has no
//!   local fold (`vm/stat_refresh` schedules work on *every* CPU, so isol never writes it).
//!   A fold that is still pending shows up as a kworker interruption during the wait and
//!   delays quiet.
//! * **LRU and mlock batches**: the per-CPU folio batches filled by the thread's own setup
//!   are drained by the kernel (locally on return paths, or by a kworker). isol does all
//!   memory setup (mlockall, prefaulting) *before* the thread moves, so the batches fill
//!   and drain on the CPU it came from; it never uses `lru_add_drain_all`-style global
//!   actions.
//! * **Timers**: the thread's own POSIX timers, CPU-time timers and perf events keep the
//!   tick (dependencies POSIX_TIMER, PERF_EVENTS); isol does not cancel them, it reports
//!   them in the NotQuiet error with the timers still armed on the CPU.
//! * **Deferred work of others** (RCU callbacks, kworkers, timers migrated in) is only
//!   observed: the window waits until it has run.
//! * **The process's own memory map**: while the thread is isolated, any `munmap`,
//!   `mremap` (a large vector growing) or `mprotect` by *another thread of the same
//!   process* flushes the TLB of every CPU running one of its threads, with an IPI to the
//!   isolated CPU. isol does not change the program's allocator; `isol noise`, which must
//!   not disturb its own samplers, keeps its memory mapped (see `isol-noise`).
//! * **Scheduling class on arrival**: a thread that runs on a nohz_full CPU as
//!   SCHED_OTHER, even briefly, starts the CPU's fair deadline server; its timer, on a
//!   housekeeping CPU, pokes the CPU up to a second later. With `pin` and `fifo`, enter
//!   makes the thread SCHED_FIFO before it moves there and starts the watcher
//!   ([`start_watcher`]) before that (a thread inherits its creator's CPU and policy).
//!
//! The first enter of a process starts its watcher, which enables tracepoints: the kernel
//! patches code and sends one IPI to every CPU. Later enters and exits send none; the
//! watcher lives until the process ends. A program that must enter fast calls
//! [`start_watcher`] and [`lock_memory`] at initialisation, so that its first enter pays
//! neither.
//!
//! ## When an enter is slow
//! `ISOL_WAIT_MARKER=FILE` makes the watcher append one line per reading and decision of
//! every wait to FILE (created if missing): the interruptions it waited out, each `/proc/timer_list` reading
//! (tick device armed or not, hrtimers queued), the task it yielded to, and the reading it
//! declared quiet from. Point it at a tracefs `trace_marker` and the lines land on the
//! kernel's own timeline, next to `tick_stop`, `sched_switch` and the timers
//! (`bench/arrival-trace.sh` does this for one arrival in the lab).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod env;
mod error;
mod guard;
pub mod infer;
mod slot;
pub mod strict;
mod watcher;

pub use error::{Ineligible, IsolError, NotQuiet, FAIR_SERVER};
pub use guard::{IsolatedGuard, Report};
pub use strict::{Strict, Violation};

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// The layers below, by the names the code uses.
use isol_model::target::{refuse_rt_throttling, TargetError, Topology};
use isol_model::{kernel, target, thread as os, CpuSet, SysRoot};
use isol_trace::{interrupt, tracefs, watch};
pub use slot::Wait;
use slot::{AtomicState, Slot, State};

/// How to isolate the calling thread. Build with [`Isolation::builder`].
#[derive(Debug, Clone)]
pub struct Isolation {
    cpu: Option<u32>,
    pin: bool,
    wait: Wait,
    timeout: Duration,
    confirm: Duration,
    allow_ticking: bool,
    mlock: bool,
    prefault_stack: usize,
    fifo: Option<i32>,
    strict: Option<Strict>,
    notify: Option<i32>,
    requiet: bool,
}

/// How long after a thread has arrived on the CPU a quiet reading is first believed: the
/// kernel's reactions to the arrival are synchronous or a local irq_work away, well inside.
/// (Until 2026-12 this was one tick; the arrival benchmark traced nothing after the first
/// millisecond on 6.12, 6.1 and 6.12-rt.)
const ARRIVAL_SETTLE_NS: u64 = 1_000_000;

/// Whether `enter` has done mlockall(MCL_CURRENT | MCL_FUTURE) in this process.
static LOCKED_ALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stop this process's watcher now (it also stops by itself at normal exit): its tracing
/// instance is removed and the kernel's events disabled, which patches code and sends one
/// IPI to every CPU. Threads still isolated stop being counted; a later enter starts a new
/// watcher.
pub fn shutdown_watcher() {
    watcher::shutdown();
}

/// Abort every wait in progress in this process. Async-signal-safe (one atomic store):
/// call it from a signal handler to make a spinning `enter` return [`IsolError::Aborted`].
pub fn abort_wait() {
    slot::ABORT.store(true, Ordering::SeqCst);
}

/// Lock the process's memory now (`mlockall(MCL_CURRENT | MCL_FUTURE)`), as the first
/// [`Isolation::enter`] otherwise does on its way in. Once per process: later calls, and
/// enters, find it done. With [`start_watcher`], what a program that must enter fast does
/// at initialisation: locking walks every mapping, which the arrival benchmark saw cost the
/// first enter about 10 ticks (BENCHMARKS.md).
pub fn lock_memory() -> Result<(), IsolError> {
    lock_all("run as root or raise the locked-memory limit (ulimit -l)")
}

/// [`lock_memory`], with the fix its error suggests.
fn lock_all(fix: &'static str) -> Result<(), IsolError> {
    // MCL_FUTURE keeps what comes later locked, and a second mlockall would walk every
    // mapping again, filling per-CPU batches on whichever CPU it runs.
    if LOCKED_ALL.load(Ordering::Acquire) {
        return Ok(());
    }
    os::lock_all_memory().map_err(|source| IsolError::Prepare {
        what: "mlockall(MCL_CURRENT | MCL_FUTURE)",
        source,
        fix,
    })?;
    LOCKED_ALL.store(true, Ordering::Release);
    Ok(())
}

/// The CPU layout `enter` needs: boot-time facts, read once per process (a light read;
/// the full model would walk every thread).
fn topology() -> Topology {
    static TOPO: std::sync::OnceLock<Topology> = std::sync::OnceLock::new();
    TOPO.get_or_init(|| Topology::read(&SysRoot::live()))
        .clone()
}

/// The online CPUs but `isolated`, which must leave one.
fn housekeeping(topo: &Topology, isolated: &CpuSet) -> Result<CpuSet, IsolError> {
    let online = topo.online()?;
    let housekeeping = online.difference(isolated);
    if housekeeping.is_empty() {
        return Err(IsolError::Ineligible(Ineligible::Target(
            TargetError::NoHousekeeping {
                cpus: isolated.intersection(online),
                online: online.clone(),
            },
        )));
    }
    Ok(housekeeping)
}

/// Start this process's watcher now, for the isolated CPUs of this kernel (`cpus` for a
/// development CPU that is not nohz_full). The first [`Isolation::enter`] does this
/// otherwise, and pays its start-up (enabling tracepoints, loading symbols) in its time to
/// quiet; programs that enter often or must enter fast start it at initialisation (and
/// call [`lock_memory`]).
pub fn start_watcher(cpus: Option<&CpuSet>) -> Result<(), IsolError> {
    let root = SysRoot::live();
    let topo = topology();
    let mut watched = topo.nohz_full.union(&topo.domain_isolated);
    if let Some(c) = cpus {
        watched = watched.union(c);
    }
    let housekeeping = housekeeping(&topo, &watched)?;
    watcher::ensure(&root, &watched, &housekeeping)
}

impl Isolation {
    /// Start building an isolation request.
    pub fn builder() -> Isolation {
        Isolation {
            cpu: None,
            pin: false,
            wait: Wait::Spin,
            timeout: Duration::from_secs(1),
            confirm: Duration::ZERO,
            allow_ticking: false,
            mlock: true,
            prefault_stack: 256 * 1024,
            fifo: None,
            strict: None,
            notify: None,
            requiet: false,
        }
    }

    /// [`Isolation::builder`] configured from the environment `isol run` sets (see
    /// [`env`](mod@env)): the CPU, SCHED_FIFO, strict mode and where violations are reported.
    /// Without those variables, the builder's defaults; a malformed one is an error
    /// naming it.
    pub fn from_env() -> Result<Isolation, IsolError> {
        Ok(Isolation::builder().configured(&env::RunConfig::from_env()?))
    }

    /// Apply a [`env::RunConfig`] to this request.
    pub fn configured(mut self, c: &env::RunConfig) -> Self {
        if let Some(cpu) = c.cpu {
            self = self.cpu(cpu);
        }
        if let Some(p) = c.fifo {
            self = self.fifo(p);
        }
        if let Some(s) = c.strict {
            self = self.strict(s);
        }
        if let Some(fd) = c.report_fd {
            strict::report_to(fd);
        }
        if c.allow_ticking {
            self = self.allow_ticking(true);
        }
        self
    }

    /// The CPU to isolate on. Default: the one CPU the thread is allowed to run on.
    pub fn cpu(mut self, cpu: u32) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Pin the thread to the CPU first (otherwise an unpinned thread is ineligible).
    pub fn pin(mut self, yes: bool) -> Self {
        self.pin = yes;
        self
    }

    /// How to wait for quiet.
    pub fn wait(mut self, w: Wait) -> Self {
        self.wait = w;
        self
    }

    /// How long to wait for quiet before failing with NotQuiet. Default 1 s (the v16
    /// selftest's retry budget).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// An extra confirmation window: how long the CPU must have seen no interruption
    /// before the kernel's own signals (tick device disarmed, no hrtimer queued) are taken
    /// as quiet. Default zero: the kernel's signals decide, within a tick. A window buys
    /// protection from deferred work the kernel has queued but does not show (a kworker
    /// woken later, an RCU callback batch), at the price of the window in every enter.
    pub fn confirm(mut self, t: Duration) -> Self {
        self.confirm = t;
        self
    }

    /// Development mode: allow a CPU that is not nohz_full (or not isolated). Enter then
    /// succeeds without a quiet wait and the report says the tick keeps running.
    pub fn allow_ticking(mut self, yes: bool) -> Self {
        self.allow_ticking = yes;
        self
    }

    /// `mlockall(MCL_CURRENT | MCL_FUTURE)` before waiting (default on).
    pub fn mlock(mut self, yes: bool) -> Self {
        self.mlock = yes;
        self
    }

    /// Bytes of stack to touch before waiting (default 256 KiB).
    pub fn prefault_stack(mut self, bytes: usize) -> Self {
        self.prefault_stack = bytes;
        self
    }

    /// Run the thread SCHED_FIFO at this priority (checks that RT throttling is off).
    pub fn fifo(mut self, priority: i32) -> Self {
        self.fifo = Some(priority);
        self
    }

    /// Strict mode: what happens when the thread makes a system call while isolated
    /// (see [`strict`]). Default: nothing (the call runs; the watcher counts what it
    /// causes).
    pub fn strict(mut self, s: Strict) -> Self {
        self.strict = Some(s);
        self
    }

    /// Re-quiet mode, the backstop Metcalf's patches ran on every return to userspace: each
    /// system call the isolated thread makes runs, and isol returns to the thread only once
    /// the CPU is quiet again (the same rule and wait as `enter`), so that deferred work the
    /// call set in motion (a timer, a kworker, RCU) is over before the thread runs on. The
    /// report counts the calls and the time spent re-waiting; interruptions during a
    /// re-wait are the call's aftermath and are not counted as the task's. Uses Syscall
    /// User Dispatch, like [`Isolation::strict`], which it excludes.
    pub fn requiet(mut self, yes: bool) -> Self {
        self.requiet = yes;
        self
    }

    /// Remote notification (v16's): at the first interruption of the CPU while isolated
    /// (an IRQ, an IPI, a timer, another task; not the thread's own calls or faults, which
    /// are [`Isolation::strict`]'s), the watcher sends this signal to the thread. Its
    /// handler runs at once; [`IsolatedGuard::notified_by`] then names the cause and the
    /// culprit. The watcher sees an interruption within about a poll (1-2 ms), so the
    /// signal follows it by that much; the signal itself reaches the CPU as one more
    /// interruption (a reschedule IPI), counted but not notified again. Default: none (the
    /// counter and the report only).
    pub fn on_interrupt(mut self, signal: i32) -> Self {
        self.notify = Some(signal);
        self
    }

    /// Check, prepare, wait until quiet. On success the calling thread is isolated until
    /// the guard's [`IsolatedGuard::exit`].
    ///
    /// The order is the promise's: everything is checked before anything changes; the
    /// watcher is started and memory is locked and prefaulted while the thread still runs
    /// where it was (off the isolated CPU when `pin` moves it); the thread becomes
    /// SCHED_FIFO before it moves (a fair task arriving on a nohz_full CPU starts the fair
    /// deadline server, whose timer kicks the CPU up to a second later); only then does it
    /// move and wait. On any error the thread's affinity, policy and memory locking are
    /// put back as they were.
    pub fn enter(self) -> Result<IsolatedGuard, IsolError> {
        let guard = self.enter_unblocked()?;
        // The last thing before returning: from here a system call is a violation.
        strict::block();
        Ok(guard)
    }

    /// [`Isolation::enter`] for callers that must keep the guard somewhere before strict
    /// mode begins (the C ABI stores it in thread-local storage, which may allocate):
    /// `keep` runs with the guard, then strict mode begins.
    pub fn enter_with(self, keep: impl FnOnce(IsolatedGuard)) -> Result<(), IsolError> {
        let guard = self.enter_unblocked()?;
        keep(guard);
        strict::block();
        Ok(())
    }

    fn enter_unblocked(self) -> Result<IsolatedGuard, IsolError> {
        let before = ThreadState::capture();
        let result = self.enter_checked();
        if result.is_err() {
            strict::disarm();
            if let Some(b) = before {
                b.restore();
            }
        }
        result
    }

    fn enter_checked(&self) -> Result<IsolatedGuard, IsolError> {
        let t0 = os::monotonic_ns();
        let root = SysRoot::live();
        let topo = topology();
        // 1. Check, changing nothing.
        if let Some(s) = self.strict {
            strict::validate(s)?;
            if self.requiet {
                return Err(IsolError::Config(
                    "strict mode and re-quiet mode exclude each other: a strict thread's \
                     system call is a violation, a re-quiet thread's is waited out"
                        .into(),
                ));
            }
        }
        if let Some(n) = self.notify {
            strict::check_signal("on_interrupt", n)?;
        }
        let cpu = self.target_cpu(topo.online()?)?;
        let nohz = topo.nohz_full.contains(cpu);
        let isolated = topo.domain_isolated.contains(cpu);
        let ticking = !(nohz && isolated);
        if ticking && !self.allow_ticking {
            return Err(IsolError::Ineligible(if !nohz {
                Ineligible::NotNohzFull {
                    cpu,
                    nohz_full: match &topo.nohz_full {
                        s if s.is_empty() => "none".to_string(),
                        s => s.to_list(),
                    },
                }
            } else {
                Ineligible::NotDomainIsolated { cpu }
            }));
        }
        if self.fifo.is_some() {
            refuse_rt_throttling(&root)?;
        }
        let mut isolated_cpus = topo.nohz_full.union(&topo.domain_isolated);
        isolated_cpus.insert(cpu);
        let housekeeping = housekeeping(&topo, &isolated_cpus)?;
        if !ticking && self.fifo.is_none() && os::Policy::current().is_ok_and(|p| p.is_fair()) {
            if let Some(fs) = infer::fair_server(&root, cpu) {
                return Err(IsolError::NotQuiet(Box::new(NotQuiet::fair_server(
                    cpu, fs,
                ))));
            }
        }
        // 2. Set up while still off the CPU: the watcher (a new thread starts where its
        // creator runs), locked and prefaulted memory (their per-CPU batches are drained
        // here, not there).
        let _ = start_watcher(Some(&isolated_cpus));
        self.prepare()?;
        if let Some(s) = self.strict {
            // Dispatch on, selector still ALLOW: nothing traps until `block` at the end.
            strict::arm(s, cpu)?;
        } else if self.requiet {
            strict::arm_requiet(cpu)?;
        }
        // 3. The policy before the move, then the move.
        if let Some(p) = self.fifo {
            set_fifo(p)?;
        }
        let moved = self.pin && get_affinity().map(|a| a.len() != 1 || !a.contains(cpu))?;
        if self.pin {
            set_affinity(cpu)?;
        }
        // 4. Wait on the CPU until it is quiet.
        let hz = topo.hz;
        // `sched_setaffinity` returns on the new CPU: the thread has arrived. The kernel's
        // reaction to the arrival is immediate (leaving idle re-evaluates the tick; a tick
        // dependency the thread carries kicks the CPU through a local irq_work), so a
        // reading is believed from ARRIVAL_SETTLE_NS after it, never one taken before
        // (a CPU woken from a polling idle gets no IPI, which would have shown the arrival).
        let settle_after_ns = if moved {
            os::monotonic_ns() + ARRIVAL_SETTLE_NS
        } else {
            0
        };
        let tid = os::gettid();
        let timeout = self.timeout.as_nanos() as u64;
        let slot = Arc::new(Slot {
            cpu,
            tid,
            state: AtomicState::new(if ticking {
                State::Isolated
            } else {
                State::Waiting
            }),
            interruptions: AtomicU64::new(0),
            last_kind: AtomicU8::new(u8::MAX),
            thread: std::thread::current(),
            started_ns: t0,
            // The timeout is for the CPU to get quiet: it starts once the watcher runs (its
            // start-up, enabling tracepoints, is paid once per process).
            deadline_ns: AtomicU64::new(os::monotonic_ns() + timeout),
            timeout_ns: timeout,
            wait: self.wait,
            requiet: self.requiet,
            rewait_at: AtomicU64::new(0),
            rewait_until: AtomicU64::new(0),
            requiet_calls: AtomicU64::new(0),
            requiet_ns: AtomicU64::new(0),
            requiet_timeouts: AtomicU64::new(0),
            confirm_ns: self.confirm.as_nanos() as u64,
            sleeps: self.wait == Wait::Sleep,
            settle_after_ns,
            quiet_at_ns: AtomicU64::new(if ticking { t0 } else { 0 }),
            entered_at_ns: AtomicU64::new(t0),
            exit_at_ns: AtomicU64::new(u64::MAX),
            wait_cpu_ns: AtomicU64::new(0),
            notify_signal: self.notify.unwrap_or(0),
            notified: Default::default(),
            selector: Mutex::new(strict::selector()),
            detail: Default::default(),
        });
        watcher::register(&root, &isolated_cpus, &housekeeping, slot.clone())?;
        // The SIGSYS handler's way to the slot, for re-quiet waits (the guard keeps the
        // slot alive until it detaches).
        strict::attach(&slot);
        slot::ABORT.store(false, Ordering::SeqCst);
        if ticking {
            slot.quiet_at_ns
                .store(os::monotonic_ns(), Ordering::Release);
        } else if let Err(e) = guard::wait_quiet(&slot, self.wait) {
            watcher::unregister(&slot);
            strict::disarm();
            return Err(e);
        }
        let guard = IsolatedGuard {
            slot,
            wait: self.wait,
            ticking,
            hz,
            violations_at: strict::violations(),
            _not_send: std::marker::PhantomData,
        };
        Ok(guard)
    }

    /// The CPU the thread will be isolated on, checked without moving it: the CPU asked
    /// for with `pin`, else the one CPU it is already restricted to.
    fn target_cpu(&self, online: &CpuSet) -> Result<u32, IsolError> {
        let cpu = if self.pin {
            self.cpu.ok_or_else(|| {
                IsolError::Busy("Isolation::pin needs Isolation::cpu to say which CPU".into())
            })?
        } else {
            let allowed = get_affinity()?;
            if allowed.len() != 1 {
                return Err(IsolError::Ineligible(Ineligible::NotPinned { allowed }));
            }
            let cpu = allowed.first().expect("one CPU");
            if let Some(asked) = self.cpu.filter(|&want| want != cpu) {
                return Err(IsolError::Ineligible(Ineligible::OtherCpu {
                    asked,
                    pinned: cpu,
                }));
            }
            cpu
        };
        if !online.contains(cpu) {
            return Err(IsolError::Ineligible(Ineligible::Target(
                TargetError::Offline {
                    cpus: CpuSet::from_iter([cpu]),
                    online: online.clone(),
                },
            )));
        }
        Ok(cpu)
    }

    fn prepare(&self) -> Result<(), IsolError> {
        // Once per process: MCL_FUTURE keeps what comes later locked, and a second
        // mlockall would walk every mapping again, filling per-CPU batches on this CPU.
        if self.mlock {
            lock_all(
                "run as root or raise the locked-memory limit (ulimit -l), or disable with Isolation::mlock(false)",
            )?;
        }
        prefault_stack(self.prefault_stack);
        Ok(())
    }
}

/// What `enter` may change of the calling thread, to put back when it fails.
struct ThreadState {
    affinity: CpuSet,
    policy: os::Policy,
    /// Whether the process had memory locked before (then `enter` never unlocks it).
    locked: bool,
}

impl ThreadState {
    fn capture() -> Option<ThreadState> {
        Some(ThreadState {
            affinity: os::affinity().ok()?,
            policy: os::Policy::current().ok()?,
            locked: os::locked_kib() != 0,
        })
    }

    /// Put the thread back as it was; best effort (the caller reports the first error).
    fn restore(&self) {
        let _ = self.policy.apply();
        let _ = os::pin_current_thread(&self.affinity);
        if !self.locked && os::locked_kib() != 0 {
            let _ = os::unlock_all_memory();
            LOCKED_ALL.store(false, Ordering::Release);
        }
    }
}

/// Touch `bytes` of stack below the current frame, 16 KiB per call.
#[inline(never)]
fn prefault_stack(bytes: usize) {
    let mut block = [0u8; 16 * 1024];
    std::hint::black_box(&mut block);
    if bytes > block.len() {
        prefault_stack(bytes - block.len());
    }
}

pub(crate) fn set_fifo(priority: i32) -> Result<(), IsolError> {
    os::set_fifo(priority).map_err(|source| IsolError::Prepare {
        what: "sched_setscheduler(SCHED_FIFO)",
        source,
        fix: "run as root (CAP_SYS_NICE) or drop Isolation::fifo",
    })
}

fn set_affinity(cpu: u32) -> Result<(), IsolError> {
    os::pin_current_thread(&CpuSet::from_iter([cpu])).map_err(|e| IsolError::Prepare {
        what: "sched_setaffinity",
        source: e,
        fix: "check that the CPU is online and in the thread's cpuset",
    })
}

fn get_affinity() -> Result<CpuSet, IsolError> {
    os::affinity().map_err(|source| IsolError::Prepare {
        what: "sched_getaffinity",
        source,
        fix: "this should not fail; report it",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracefs::TraceError;

    fn not_quiet(dep: Option<&str>, source: &str) -> NotQuiet {
        NotQuiet {
            cpu: 3,
            waited: Duration::from_secs(1),
            dependency: dep.map(str::to_string),
            timers: vec!["posix_timer_fn".into()],
            interruptions: vec![("local_timer tick_nohz_handler".into(), 250)],
            tick_armed: Some(true),
            runnable: vec!["spin/42".into()],
            dependency_source: dep.map(|_| source.to_string()),
        }
    }

    #[test]
    fn not_quiet_names_the_dependency_timers_culprits_and_a_fix() {
        let m = not_quiet(Some("POSIX_TIMER"), "tick_stop").to_string();
        assert!(m.starts_with("CPU 3 did not become quiet within 1s"), "{m}");
        assert!(m.contains("kept by the POSIX_TIMER dependency;"), "{m}");
        assert!(m.contains("timers armed there: posix_timer_fn"), "{m}");
        assert!(m.contains("also runnable there: spin/42"), "{m}");
        assert!(m.contains("tick_nohz_handler x250"), "{m}");
        assert!(
            m.ends_with(
                "cancel the thread's POSIX or CPU-time timers, or lift the process's CPU-time \
                 limit (RLIMIT_CPU: a unit's LimitCPU=, ulimit -t)"
            ),
            "{m}"
        );
        let m = not_quiet(Some("SCHED"), "inferred").to_string();
        assert!(m.contains("SCHED dependency (inferred)"), "{m}");
        assert!(m.ends_with("move it away"), "{m}");
    }

    #[test]
    fn errors_map_to_the_patch_errno_values() {
        let e = IsolError::Ineligible(Ineligible::Target(TargetError::SingleCpu));
        assert_eq!(e.errno(), -libc::EINVAL);
        let e = IsolError::NotQuiet(Box::new(not_quiet(None, "")));
        assert_eq!(e.errno(), -libc::EAGAIN);
        let e = IsolError::Watcher(TraceError::NeedsRoot {
            op: "read",
            path: "x".into(),
        });
        assert_eq!(e.errno(), -libc::EPERM);
        assert_eq!(IsolError::Busy("x".into()).errno(), -libc::EBUSY);
        assert_eq!(IsolError::Aborted.errno(), -libc::EINTR);
        let e = IsolError::Prepare {
            what: "mlockall",
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
            fix: "raise the limit",
        };
        assert_eq!(e.errno(), -libc::ENOMEM);
        assert!(e.to_string().contains("raise the limit"));
    }

    #[test]
    fn bad_strict_requests_are_refused_before_anything_changes() {
        let before = os::affinity().unwrap();
        for (b, word) in [
            (
                Isolation::builder().strict(Strict::Kill).requiet(true),
                "exclude each other",
            ),
            (
                Isolation::builder().strict(Strict::Signal(1000)),
                "signal 1000",
            ),
            (Isolation::builder().on_interrupt(libc::SIGSYS), "SIGSYS"),
        ] {
            let e = b.cpu(0).pin(true).enter().unwrap_err();
            assert_eq!(e.errno(), -libc::EINVAL, "{e}");
            assert!(e.to_string().contains(word), "{e}");
            assert_eq!(strict::violations(), 0);
        }
        assert_eq!(os::affinity().unwrap(), before, "nothing moved");
    }

    #[test]
    fn ineligibility_says_how_to_fix_it() {
        let m = Ineligible::NotDomainIsolated { cpu: 5 }.to_string();
        assert!(m.contains("isolcpus=domain,5"), "{m}");
        let m = Ineligible::Target(TargetError::RtThrottled { runtime_us: 950000 }).to_string();
        assert!(m.contains("sched_rt_runtime_us=-1"), "{m}");
        // ISOL_CPU=0 for a thread pinned to CPU 1 says so (not "may run on CPUs 1").
        let m = Ineligible::OtherCpu {
            asked: 0,
            pinned: 1,
        }
        .to_string();
        assert!(
            m.contains("pinned to CPU 1, but asks to be isolated on CPU 0"),
            "{m}"
        );
        let m = Ineligible::NotPinned {
            allowed: CpuSet::from_iter([0, 1]),
        }
        .to_string();
        assert!(m.contains("may run on CPUs 0-1"), "{m}");
    }
}
