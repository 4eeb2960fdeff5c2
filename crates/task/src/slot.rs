//! The slot: what one isolated thread shares with the process's watcher, and the wait for
//! quiet on it. The guard (the thread's side), the watcher (the tracing side) and strict
//! mode (re-quiet waits inside the SIGSYS handler) each use the slot; the slot uses none
//! of them, so the task room has no cycle.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::interrupt::Kind;
use serde::Serialize;

use crate::{os, NotQuiet};

/// How the entering thread waits for its CPU to become quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// Spin on the CPU (fastest; burns the CPU while waiting).
    Spin,
    /// Sleep until the watcher says quiet, then confirm spinning.
    Sleep,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wait::Spin => "spin",
            Wait::Sleep => "sleep",
        })
    }
}

/// Set by `abort_wait`: every wait in progress in the process returns.
pub(crate) static ABORT: AtomicBool = AtomicBool::new(false);

/// Where one isolated thread is in its isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub(crate) enum State {
    /// Waiting for the CPU to become quiet.
    #[default]
    Waiting = 0,
    /// The watcher saw the CPU quiet.
    Quiet = 1,
    /// The wait failed (timeout, watcher error): the slot's detail holds why.
    Failed = 2,
    /// Sleep strategy, woken: spinning through a second confirmation window.
    Reverify = 3,
    /// Isolated: the watcher counts the CPU's interruptions.
    Isolated = 4,
    /// The thread left isolation.
    Done = 5,
    /// The spinning thread would starve kernel work runnable on its CPU (a kworker its own
    /// setup queued, an RCU thread): it blocks until the watcher sees the work done.
    Yield = 6,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Waiting,
            1 => State::Quiet,
            2 => State::Failed,
            3 => State::Reverify,
            4 => State::Isolated,
            5 => State::Done,
            _ => State::Yield,
        }
    }
}

/// A [`State`] both threads read and write: stores release, loads acquire. One byte, so
/// that the re-quiet wait inside the SIGSYS handler can use it.
#[derive(Debug)]
pub(crate) struct AtomicState(AtomicU8);

impl AtomicState {
    pub(crate) fn new(s: State) -> AtomicState {
        AtomicState(AtomicU8::new(s as u8))
    }

    pub(crate) fn load(&self) -> State {
        State::from_u8(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn store(&self, s: State) {
        self.0.store(s as u8, Ordering::Release);
    }

    /// `to` if it is `from` now; whether it was.
    pub(crate) fn replace_if(&self, from: State, to: State) -> bool {
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What one isolated thread shares with the watcher.
#[derive(Debug)]
pub(crate) struct Slot {
    pub cpu: u32,
    pub tid: i32,
    pub state: AtomicState,
    pub interruptions: AtomicU64,
    pub last_kind: AtomicU8,
    pub thread: std::thread::Thread,
    pub started_ns: u64,
    /// When the watcher gives up waiting for quiet (renewed for each re-quiet wait).
    pub deadline_ns: AtomicU64,
    /// How long a wait for quiet may take.
    pub timeout_ns: u64,
    /// How the thread waits (for re-quiet waits).
    pub wait: Wait,
    /// Re-quiet mode: the thread's system calls are waited out and counted apart
    /// (`requiet_calls`), not as interruptions.
    pub requiet: bool,
    /// When the current re-quiet wait began (0: none): interruptions during it are the
    /// call's aftermath, waited out, not counted as interruptions of the isolated task.
    pub rewait_at: AtomicU64,
    /// When the last re-quiet wait ended (`u64::MAX` while one runs).
    pub rewait_until: AtomicU64,
    /// System calls made under re-quiet, time spent re-waiting, waits that timed out.
    pub requiet_calls: AtomicU64,
    pub requiet_ns: AtomicU64,
    pub requiet_timeouts: AtomicU64,
    pub confirm_ns: u64,
    /// The thread sleeps while waiting ([`Wait::Sleep`]): the first quiet wakes it, and
    /// only the second, seen while it runs, counts.
    pub sleeps: bool,
    /// Quiet is not believed from a `/proc/timer_list` reading before this time (shortly
    /// after the thread arrived on the CPU: `ARRIVAL_SETTLE_NS`).
    pub settle_after_ns: u64,
    pub quiet_at_ns: AtomicU64,
    /// When the thread saw the CPU quiet and `enter` returned.
    pub entered_at_ns: AtomicU64,
    /// When the thread called exit: interruptions after it are not counted.
    pub exit_at_ns: AtomicU64,
    pub wait_cpu_ns: AtomicU64,
    /// The signal to send the thread at its first interruption while isolated (0: none).
    pub notify_signal: i32,
    /// Whether it was sent.
    pub notified: AtomicBool,
    /// The thread's strict-mode selector while it is strict (null otherwise): a remote
    /// notification ends strict mode through it, so that the handler and its return run.
    pub selector: Mutex<Option<isol_sys::dispatch::Remote>>,
    pub detail: Mutex<Detail>,
}

/// What the watcher knows about one slot beyond its atomics.
#[derive(Debug, Default)]
pub(crate) struct Detail {
    /// Interruptions while isolated, by kind and culprit.
    pub(crate) causes: BTreeMap<(Kind, String), u64>,
    /// The last of them.
    pub(crate) last: Option<(Kind, String)>,
    /// The one the thread was signalled for ([`crate::Isolation::on_interrupt`]).
    pub(crate) notified_by: Option<(Kind, String)>,
    /// Interruptions while waiting, by culprit.
    pub(crate) waiting: BTreeMap<String, u64>,
    pub(crate) dependency: Option<String>,
    pub(crate) failure: Option<NotQuiet>,
    pub(crate) error: Option<String>,
    pub(crate) window_start: u64,
    /// When `/proc/timer_list` last showed the CPU quiet: it is quiet once every event up
    /// to then has been seen and none came after.
    pub(crate) candidate: Option<u64>,
    /// When other runnable tasks on the CPU were last looked for, and what was found.
    pub(crate) runnable_at: u64,
    pub(crate) runnable: Vec<String>,
    pub(crate) last_state: State,
    pub(crate) started: bool,
    /// The re-quiet wait last set up (its `rewait_at`).
    pub(crate) rewait_seen: u64,
}

/// How a wait ended.
pub(crate) enum Waited {
    /// Quiet at `now`, after `spent` ns of CPU time.
    Quiet { now: u64, spent: u64 },
    /// The watcher gave up (timeout): the slot holds the failure.
    Failed,
    /// `abort_wait` was called.
    Aborted,
    /// The watcher stopped answering.
    Dead,
}

/// The wait itself: atomics, the vDSO clock and `park` only, no allocation and no lock,
/// so that the re-quiet wait can run inside the SIGSYS handler.
pub(crate) fn wait_core(slot: &Slot, wait: Wait) -> Waited {
    let begin = os::monotonic_ns();
    // CPU time of the wait, from the vDSO clock: the spinning phases run flat out, the
    // sleeping phase costs nothing.
    let mut spinning_since = begin;
    let mut spent = 0u64;
    // The watcher enforces the deadline; this one only guards against a dead watcher.
    let give_up = Instant::now()
        + Duration::from_nanos(
            slot.deadline_ns
                .load(Ordering::Acquire)
                .saturating_sub(begin),
        )
        + Duration::from_secs(2);
    if wait == Wait::Sleep {
        // An untimed wait: a timeout would arm a timer on this very CPU and keep its tick
        // device busy. The watcher always wakes us: on quiet, failure, timeout or abort.
        while slot.state.load() == State::Waiting {
            if ABORT.load(Ordering::Relaxed) {
                return Waited::Aborted;
            }
            spent = os::monotonic_ns().saturating_sub(spinning_since);
            std::thread::park();
            spinning_since = os::monotonic_ns();
        }
        // Woken because the CPU was quiet while we slept: verify it stays quiet now that
        // we run on it, spinning.
        slot.state.replace_if(State::Quiet, State::Reverify);
    }
    loop {
        match slot.state.load() {
            State::Quiet => break,
            State::Failed => return Waited::Failed,
            State::Yield => {
                // Let the starved task run: block until the watcher says it is done (it
                // then wakes us to re-verify, spinning).
                spent += os::monotonic_ns().saturating_sub(spinning_since);
                while slot.state.load() == State::Yield {
                    if ABORT.load(Ordering::Relaxed) {
                        return Waited::Aborted;
                    }
                    std::thread::park();
                }
                spinning_since = os::monotonic_ns();
                continue;
            }
            _ => {}
        }
        if ABORT.load(Ordering::Relaxed) {
            return Waited::Aborted;
        }
        if Instant::now() > give_up {
            return Waited::Dead;
        }
        std::hint::spin_loop();
    }
    let now = os::monotonic_ns();
    spent += now.saturating_sub(spinning_since);
    Waited::Quiet { now, spent }
}
