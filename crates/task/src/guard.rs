//! The isolated thread's side: waiting for quiet on the CPU, then the guard held while
//! isolated, and its report.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use crate::interrupt::Kind;
use crate::os;
use crate::slot::{wait_core, Detail, Slot, State, Waited};
use crate::{watcher, IsolError, Wait};

/// What happened while a thread was isolated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The isolated CPU.
    pub cpu: u32,
    /// How the thread waited.
    pub wait: Wait,
    /// True when the CPU is not nohz_full (development mode): the tick kept running at HZ
    /// and no quiet wait was made.
    pub ticking: bool,
    /// From the start of `enter` to its return with the CPU quiet (None when ticking).
    pub time_to_quiet_ns: Option<u64>,
    /// CPU time the thread spent waiting: all of a spinning wait; for Sleep, the time before
    /// parking plus the re-verification after the wake-up (clock read through the vDSO).
    pub wait_cpu_ns: Option<u64>,
    /// From quiet (or enter, when ticking) to exit.
    pub isolated_ns: u64,
    /// Interruptions while isolated.
    pub interruptions: u64,
    /// Interruptions while isolated, by kind and culprit, most frequent first.
    pub by_cause: Vec<(Kind, String, u64)>,
    /// The kernel's HZ, to read times in ticks.
    pub hz: Option<u32>,
    /// Strict-mode violations during this isolation (0 when not strict).
    pub violations: u64,
    /// The last of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<super::Violation>,
    /// The interruption the thread was signalled for (`on_interrupt`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notified_by: Option<(Kind, String)>,
    /// Re-quiet mode: system calls waited out, the time spent waiting for quiet again
    /// after them (ns), and waits that timed out (the thread then ran on anyway).
    pub requiet_calls: u64,
    /// See `requiet_calls`.
    pub requiet_ns: u64,
    /// See `requiet_calls`.
    pub requiet_timeouts: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU {} isolated for {:.3} s",
            self.cpu,
            self.isolated_ns as f64 / 1e9
        )?;
        if self.ticking {
            write!(
                f,
                " (development mode: not nohz_full, the tick kept running at HZ)"
            )?;
        } else if let Some(q) = self.time_to_quiet_ns {
            write!(
                f,
                "; quiet after {:.2} ms ({} wait",
                q as f64 / 1e6,
                self.wait
            )?;
            if let Some(c) = self.wait_cpu_ns {
                write!(f, ", {:.2} ms CPU", c as f64 / 1e6)?;
            }
            write!(f, ")")?;
        }
        write!(f, "; {} interruptions", self.interruptions)?;
        if let Some(v) = &self.violation {
            write!(
                f,
                "; {} strict-mode violation(s), the last {} at {:#x} (CPU {})",
                self.violations,
                v.name
                    .unwrap_or(if v.syscall < 0 { "page fault" } else { "?" }),
                if v.syscall < 0 {
                    v.fault_address
                } else {
                    v.address
                },
                v.cpu
            )?;
        }
        if self.requiet_calls > 0 {
            write!(
                f,
                "; {} system calls waited out ({:.2} ms re-waiting, {} timed out)",
                self.requiet_calls,
                self.requiet_ns as f64 / 1e6,
                self.requiet_timeouts
            )?;
        }
        if let Some((k, c)) = &self.notified_by {
            write!(f, "; notified of {k} {c}")?;
        }
        for (k, c, n) in self.by_cause.iter().take(5) {
            write!(f, "\n  {n:>6}  {k} {c}")?;
        }
        Ok(())
    }
}

/// The isolated thread's side of the wait. No system call in the final (spinning) phase:
/// the clock is read through the vDSO.
pub(crate) fn wait_quiet(slot: &Slot, wait: Wait) -> Result<(), IsolError> {
    match wait_core(slot, wait) {
        Waited::Quiet { now, spent } => {
            slot.wait_cpu_ns.store(spent, Ordering::Release);
            slot.entered_at_ns.store(now, Ordering::Release);
            slot.state.store(State::Isolated);
            Ok(())
        }
        Waited::Failed => Err(watcher::failure(slot)),
        Waited::Aborted => Err(IsolError::Aborted),
        Waited::Dead => Err(watcher::dead()),
    }
}

/// Held while the thread is isolated. Not `Send`: isolation belongs to the thread that
/// entered it.
#[derive(Debug)]
pub struct IsolatedGuard {
    pub(super) slot: Arc<Slot>,
    pub(super) wait: Wait,
    pub(super) ticking: bool,
    pub(super) hz: Option<u32>,
    /// The thread's strict-mode violations before this isolation.
    pub(super) violations_at: u64,
    pub(super) _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for IsolatedGuard {
    /// A guard dropped without [`IsolatedGuard::exit`] (a panic, an early return, a thread
    /// ending with the C ABI's guard in its thread-local storage) still leaves isolation:
    /// strict mode torn down and the watcher told, so nothing stays armed or registered.
    fn drop(&mut self) {
        if self.slot.state.load() != State::Done {
            self.leave();
        }
    }
}

impl IsolatedGuard {
    /// The CPU the thread is isolated on.
    pub fn cpu(&self) -> u32 {
        self.slot.cpu
    }

    /// Interruptions of the CPU since it became quiet. A plain atomic load: no system call.
    pub fn interruptions(&self) -> u64 {
        self.slot.interruptions.load(Ordering::Relaxed)
    }

    /// The kind of the last interruption, if any. No system call.
    pub fn last_cause(&self) -> Option<Kind> {
        Kind::ALL
            .get(self.slot.last_kind.load(Ordering::Relaxed) as usize)
            .copied()
    }

    /// End strict mode now, staying isolated: a store, no system call. The thread's next
    /// system calls (and page faults) run as usual; the interruption counter goes on. Call
    /// it before anything that may enter the kernel while strict (allocating, printing,
    /// [`IsolatedGuard::last_interruption`]). [`IsolatedGuard::exit`] does it first thing.
    pub fn end_strict(&self) {
        super::strict::stop_trapping();
    }

    /// Leave: strictness off first (a store), then the time (vDSO), then strict mode torn
    /// down (its system calls fall after the end and are not counted), then the watcher
    /// told. The end time.
    fn leave(&self) -> u64 {
        super::strict::stop_trapping();
        let end = os::monotonic_ns();
        // From here nothing counts, whenever the watcher reads it.
        self.slot.exit_at_ns.store(end, Ordering::Release);
        // The watcher no longer writes to this thread's selector.
        *self.slot.selector.lock().unwrap_or_else(|p| p.into_inner()) = None;
        super::strict::disarm();
        // Let the watcher account for what happened up to now (waiting here may itself
        // disturb the CPU; that is after `end` and not counted).
        watcher::settle(end);
        self.slot.state.store(State::Done);
        watcher::unregister(&self.slot);
        end
    }

    /// The last interruption while isolated: its kind and culprit. Takes a lock: call it
    /// from the thread's normal flow, not from a signal handler.
    pub fn last_interruption(&self) -> Option<(Kind, String)> {
        self.detail().last.clone()
    }

    /// The interruption the thread was signalled for ([`super::Isolation::on_interrupt`]),
    /// once the watcher has sent the signal. Takes a lock, like
    /// [`IsolatedGuard::last_interruption`].
    pub fn notified_by(&self) -> Option<(Kind, String)> {
        self.detail().notified_by.clone()
    }

    /// What the watcher keeps about this isolation (locked).
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.slot.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leave isolation and report.
    pub fn exit(self) -> Report {
        let end = self.leave();
        let violations = super::strict::violations() - self.violations_at;
        let s = &self.slot;
        let quiet_at = s.quiet_at_ns.load(Ordering::Acquire);
        let detail = self.detail();
        let mut by_cause: Vec<(Kind, String, u64)> = detail
            .causes
            .iter()
            .map(|((k, c), n)| (*k, c.clone(), *n))
            .collect();
        by_cause.sort_by_key(|e| std::cmp::Reverse(e.2));
        let wait_cpu = s.wait_cpu_ns.load(Ordering::Acquire);
        Report {
            cpu: s.cpu,
            wait: self.wait,
            ticking: self.ticking,
            time_to_quiet_ns: (!self.ticking).then(|| {
                s.entered_at_ns
                    .load(Ordering::Acquire)
                    .saturating_sub(s.started_ns)
            }),
            wait_cpu_ns: (!self.ticking).then_some(wait_cpu),
            isolated_ns: end.saturating_sub(quiet_at),
            interruptions: s.interruptions.load(Ordering::Relaxed),
            by_cause,
            hz: self.hz,
            violations,
            violation: (violations > 0)
                .then(super::strict::last_violation)
                .flatten(),
            notified_by: detail.notified_by.clone(),
            requiet_calls: s.requiet_calls.load(Ordering::Acquire),
            requiet_ns: s.requiet_ns.load(Ordering::Acquire),
            requiet_timeouts: s.requiet_timeouts.load(Ordering::Acquire),
        }
    }
}
