//! Strict mode: an isolated thread learns at once when it enters the kernel itself.
//!
//! Metcalf's v16 made a strict task's every system call (but `exit` and the call that
//! leaves isolation) a violation: the kernel turned isolation off for the task and killed
//! it, or sent the signal it chose. isol does the same from userspace with Syscall User
//! Dispatch (Linux 5.11+): while strict, a per-thread selector byte set to BLOCK makes
//! every system call raise SIGSYS instead of running. isol's handler turns strictness off
//! first (a plain store to the selector, so its own calls run), records the violation
//! (the call, the instruction address, the caller's return address) and then:
//!
//! * [`Strict::Kill`]: writes the violation to stderr in one line and kills the process
//!   with SIGKILL (v16's default);
//! * [`Strict::Signal`]: sends the chosen signal to the thread, whose handler runs at once,
//!   non-isolated; then the trapped call runs and returns its result normally (v16's
//!   restart semantics);
//! * [`Strict::Report`]: runs the trapped call and continues, non-isolated.
//!
//! Nothing but the selector is touched between entering and leaving, so a strict thread
//! that makes no system call costs nothing: no trap, no interruption. `exit` and
//! `exit_group` run without a violation; leaving isolation clears the selector before any
//! call. A program's own SIGSYS handler is kept and put back when strictness ends, and
//! SIGSYS signals that are not isol's go to it.
//!
//! Everything the handler touches is a thread-local `Cell` initialised at compile time (no
//! lazy initialisation, no destructor) and a fixed buffer: nothing allocates or locks.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};

use isol_sys::trap::{FaultTrap, Handled, Handlers, SyscallTrap};
use isol_sys::{dispatch, perf, raw};
use serde::Serialize;

use crate::slot::Slot;
use crate::IsolError;

/// What happens when an isolated thread in strict mode makes a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strict {
    /// Print the violation on stderr in one line, then kill the process (SIGKILL).
    Kill,
    /// Send this signal to the thread (its handler runs non-isolated), then run the call.
    Signal(i32),
    /// Record the violation, run the call, and continue non-isolated.
    Report,
}

/// How strict mode was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A system call.
    Syscall,
    /// A page fault (a perf software event with `sigtrap`, Linux 5.13+).
    PageFault,
}

/// One strict-mode violation: what the thread did while isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What kind.
    pub kind: ViolationKind,
    /// The isolated CPU.
    pub cpu: u32,
    /// The system call number (x86-64); -1 for a page fault.
    pub syscall: i64,
    /// Its name, when isol knows it.
    pub name: Option<&'static str>,
    /// The instruction: after the `syscall` instruction, or where the thread was when the
    /// fault was reported.
    pub address: u64,
    /// A short user backtrace: the return address at the top of the stack (the caller of
    /// the libc wrapper, usually).
    pub caller: u64,
    /// The faulting data address (page faults; 0 for system calls).
    pub fault_address: u64,
}

const NONE: u8 = 0;
const KILL: u8 = 1;
const SIGNAL: u8 = 2;
const REPORT: u8 = 3;
const REQUIET: u8 = 4;

thread_local! {
    /// NONE, or the action while strict. Everything here is read in the signal handlers:
    /// initialised at compile time, no destructor.
    static MODE: Cell<u8> = const { Cell::new(NONE) };
    static SIGNAL_NR: Cell<i32> = const { Cell::new(0) };
    static CPU: Cell<u32> = const { Cell::new(0) };
    static LAST: Cell<Option<Violation>> = const { Cell::new(None) };
    /// The isolated thread's slot, for re-quiet waits (none when not isolated). First
    /// touched by `attach`, outside any handler.
    static SLOT: Cell<Option<std::sync::Arc<Slot>>> = const { Cell::new(None) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Where violations are also written, one line each (`isol run` reads it), or -1.
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Also write each violation, as the one line strict mode prints, to `fd` (best effort:
/// a full pipe drops lines rather than block the thread).
pub fn report_to(fd: i32) {
    REPORT_FD.store(fd, Ordering::Relaxed);
}

/// Check a strict configuration before anything changes.
pub(super) fn validate(s: Strict) -> Result<(), IsolError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(IsolError::Config(
            "strict mode is implemented for x86-64 only".into(),
        ));
    }
    if let Strict::Signal(n) = s {
        check_signal("strict mode", n)?;
    }
    Ok(())
}

/// A signal a program can catch and isol does not use itself (for `what`'s messages).
pub(super) fn check_signal(what: &str, n: i32) -> Result<(), IsolError> {
    if !(1..=libc::SIGRTMAX()).contains(&n) || n == libc::SIGKILL || n == libc::SIGSTOP {
        return Err(IsolError::Config(format!(
            "{what} signal {n} is not a signal a handler can catch; use e.g. SIGUSR1 ({}) or \
             a real-time signal ({}..={})",
            libc::SIGUSR1,
            libc::SIGRTMIN(),
            libc::SIGRTMAX()
        )));
    }
    if n == libc::SIGSYS || n == libc::SIGTRAP {
        return Err(IsolError::Config(format!(
            "{what} cannot use signal {n}: isol's strict mode handles SIGSYS and SIGTRAP"
        )));
    }
    Ok(())
}

/// Install the SIGSYS handler (once per process) and switch dispatch on for the calling
/// thread with the selector still ALLOW. [`block`] then makes it strict.
pub(super) fn arm(s: Strict, cpu: u32) -> Result<(), IsolError> {
    let (mode, sig) = match s {
        Strict::Kill => (KILL, 0),
        Strict::Signal(n) => (SIGNAL, n),
        Strict::Report => (REPORT, 0),
    };
    arm_with(mode, sig, cpu, true)
}

/// Re-quiet mode: system calls trap, run, and are followed by a wait for quiet (no fault
/// event: a fault is not waited out).
pub(super) fn arm_requiet(cpu: u32) -> Result<(), IsolError> {
    arm_with(REQUIET, 0, cpu, false)
}

fn arm_with(mode: u8, sig: i32, cpu: u32, faults: bool) -> Result<(), IsolError> {
    isol_sys::trap::install(Handlers {
        on_syscall,
        on_fault,
    })
    .map_err(|source| IsolError::Prepare {
        what: "sigaction",
        source,
        fix: "this should not fail; report it",
    })?;
    // The signal return trampoline is always allowed: every handler's return (isol's,
    // which re-blocks in re-quiet mode, and the program's) is an rt_sigreturn from it.
    let trampoline = dispatch::sigreturn_trampoline();
    if trampoline.is_none() && mode == REQUIET {
        return Err(IsolError::Config(
            "re-quiet mode needs the C library's signal return trampoline (glibc's \
             __restore_rt), which isol cannot find here"
                .into(),
        ));
    }
    if let Err(source) = dispatch::enable(trampoline) {
        return Err(IsolError::Prepare {
            what: "prctl(PR_SET_SYSCALL_USER_DISPATCH)",
            source,
            fix: "strict mode needs Syscall User Dispatch (Linux 5.11 or later, x86-64); `isol check` says whether this kernel has it",
        });
    }
    if faults {
        if let Err(source) = perf::watch_faults() {
            disarm();
            return Err(IsolError::Prepare {
                what: "perf_event_open(page faults, sigtrap)",
                source,
                fix: "strict mode traps page faults through a perf software event with sigtrap (Linux 5.13 or later); run as root or lower kernel.perf_event_paranoid",
            });
        }
    }
    SIGNAL_NR.set(sig);
    CPU.set(cpu);
    MODE.set(mode);
    Ok(())
}

/// The calling thread's selector when strict mode is armed (for the watcher's remote
/// notification, which ends strict mode through it).
pub(super) fn selector() -> Option<dispatch::Remote> {
    (MODE.get() != NONE).then(dispatch::Remote::of_this_thread)
}

/// Make the thread strict: from here every system call traps. The last thing `enter`
/// does.
/// A store, no system call: everything strict mode needs was set up by [`arm`] before the
/// CPU became quiet.
#[inline(always)]
pub(super) fn block() {
    if MODE.get() != NONE {
        dispatch::block();
    }
}

/// Stop trapping now: a store, no system call. The thread's next calls run; [`disarm`]
/// then tears strict mode down (its calls are the first untrapped ones).
pub(crate) fn stop_trapping() {
    dispatch::allow();
    MODE.set(NONE);
}

/// Leave strict mode for the calling thread now: the selector first (a store, so the
/// calls that follow run), then dispatch off. Idempotent. [`super::IsolatedGuard::exit`]
/// does it first thing.
pub(crate) fn disarm() {
    SLOT.take();
    dispatch::allow();
    MODE.set(NONE);
    perf::close();
    dispatch::disable();
}

/// Give the SIGSYS handler the thread's slot (re-quiet mode waits on it).
pub(super) fn attach(slot: &std::sync::Arc<Slot>) {
    SLOT.set(Some(slot.clone()));
}

/// The calling thread's last violation, if any.
pub fn last_violation() -> Option<Violation> {
    LAST.get()
}

/// Violations of the calling thread so far.
pub fn violations() -> u64 {
    COUNT.get()
}

/// A fixed buffer to format the violation line in, without allocating.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A trapped system call of this thread: strict mode's, or not isol's.
fn on_syscall(trap: &mut SyscallTrap) -> Handled {
    let mode = MODE.get();
    if mode == NONE {
        return Handled::NotMine;
    }
    if trap.is_exit() {
        // Allowed: ending the thread or the process is not a violation.
        trap.run();
    }
    if mode == REQUIET {
        trap.run();
        requiet();
        dispatch::block();
        return Handled::Yes;
    }
    let nr = trap.number();
    let v = Violation {
        kind: ViolationKind::Syscall,
        cpu: CPU.get(),
        syscall: nr,
        name: isol_trace::syscall_name(nr),
        address: trap.address(),
        caller: trap.caller(),
        fault_address: 0,
    };
    act(mode, v);
    trap.run();
    Handled::Yes
}

/// A page fault of this thread, its fault event open.
fn on_fault(f: &FaultTrap) -> Handled {
    let mode = MODE.get();
    if mode == NONE || !dispatch::blocking() {
        // Our event, but not while strict: before strict mode began (enter still
        // waiting), or after it ended (a fault in isol's own handlers, held back until
        // they returned). Not the program's doing.
        return Handled::Yes;
    }
    dispatch::allow();
    let v = Violation {
        kind: ViolationKind::PageFault,
        cpu: CPU.get(),
        syscall: -1,
        name: None,
        address: f.instruction,
        caller: f.caller,
        fault_address: f.address,
    };
    act(mode, v);
    Handled::Yes
}

/// After a system call in re-quiet mode: wait for quiet again, as `enter` did. Atomics,
/// the vDSO clock and `park` only (see `wait_core`): safe in the SIGSYS handler, even when
/// the call came from inside the allocator.
fn requiet() {
    // Taken and put back: nothing is dropped or allocated here.
    let Some(slot) = SLOT.take() else {
        return;
    };
    requiet_on(&slot);
    SLOT.set(Some(slot));
}

fn requiet_on(slot: &Slot) {
    use crate::slot::{wait_core, State, Waited};
    let begin = crate::os::monotonic_ns();
    slot.deadline_ns
        .store(begin + slot.timeout_ns, Ordering::Release);
    slot.rewait_until.store(u64::MAX, Ordering::Release);
    slot.rewait_at.store(begin, Ordering::Release);
    slot.state.store(State::Waiting);
    let waited = wait_core(slot, slot.wait);
    let end = crate::os::monotonic_ns();
    if !matches!(waited, Waited::Quiet { .. }) {
        slot.requiet_timeouts.fetch_add(1, Ordering::Relaxed);
    }
    slot.requiet_calls.fetch_add(1, Ordering::Relaxed);
    slot.requiet_ns
        .fetch_add(end.saturating_sub(begin), Ordering::Relaxed);
    slot.rewait_until.store(end, Ordering::Release);
    slot.state.store(State::Isolated);
}

/// Record `v`, end strictness for the thread (v16: isolation ends at a violation), and do
/// what the mode says. Only system calls and thread-local cells: safe in the handlers.
fn act(mode: u8, v: Violation) {
    LAST.set(Some(v));
    COUNT.set(COUNT.get() + 1);
    MODE.set(NONE);
    // Stop counting faults: the handlers below may fault too.
    perf::pause();
    let report_fd = REPORT_FD.load(Ordering::Relaxed);
    if mode == REPORT && report_fd < 0 {
        return;
    }
    let pid = raw::getpid();
    let tid = raw::gettid();
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let then = match mode {
        KILL => "; killed",
        SIGNAL => "; signalled",
        _ => "; reported",
    };
    let _ = match v.kind {
        ViolationKind::Syscall => writeln!(
            line,
            "isol: strict mode: thread {tid} made system call {} ({}) at {:#x} (called from {:#x}) while isolated on CPU {}{then}",
            v.name.unwrap_or("?"),
            v.syscall,
            v.address,
            v.caller,
            v.cpu
        ),
        ViolationKind::PageFault => writeln!(
            line,
            "isol: strict mode: thread {tid} took a page fault at {:#x} (instruction {:#x}) while isolated on CPU {}{then}",
            v.fault_address,
            v.address,
            v.cpu
        ),
    };
    let text = &line.buf[..line.len];
    if report_fd >= 0 {
        raw::write(report_fd, text);
    }
    match mode {
        KILL => {
            raw::write(2, text);
            raw::kill(pid, libc::SIGKILL);
        }
        SIGNAL => {
            // Delivered when this call returns: the program's handler runs now, before
            // the trapped call.
            raw::tgkill(pid, tid, SIGNAL_NR.get());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
