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
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::IsolError;

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

/// `PR_SET_SYSCALL_USER_DISPATCH` and its arguments (linux/prctl.h).
const PR_SET_SYSCALL_USER_DISPATCH: libc::c_int = 59;
const PR_SYS_DISPATCH_OFF: libc::c_ulong = 0;
const PR_SYS_DISPATCH_ON: libc::c_ulong = 1;
const SYSCALL_DISPATCH_FILTER_ALLOW: u8 = 0;
const SYSCALL_DISPATCH_FILTER_BLOCK: u8 = 1;
/// `si_code` of a SIGSYS raised by Syscall User Dispatch.
const SYS_USER_DISPATCH: libc::c_int = 2;

thread_local! {
    /// The selector the kernel reads on every system call of this thread. Atomic: the
    /// watcher thread clears it when it notifies the thread of an interruption.
    static SELECTOR: AtomicU8 = const { AtomicU8::new(SYSCALL_DISPATCH_FILTER_ALLOW) };
    /// NONE, or the action while strict.
    static MODE: Cell<u8> = const { Cell::new(NONE) };
    static SIGNAL_NR: Cell<i32> = const { Cell::new(0) };
    static CPU: Cell<u32> = const { Cell::new(0) };
    /// Whether dispatch is switched on for this thread (strict, or tripped and not yet
    /// switched off).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LAST: Cell<Option<Violation>> = const { Cell::new(None) };
    /// The isolated thread's slot, for re-quiet waits (null when not isolated).
    static SLOT: Cell<*const super::Slot> = const { Cell::new(std::ptr::null()) };
    /// The page-fault perf event of this thread, or -1.
    static PERF_FD: Cell<i32> = const { Cell::new(-1) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// The SIGSYS and SIGTRAP actions in place before isol's handlers, for signals that are
/// not isol's (a debugger's breakpoints, a program's own dispatch).
static PREVIOUS: Mutex<Option<libc::sigaction>> = Mutex::new(None);
static PREVIOUS_TRAP: Mutex<Option<libc::sigaction>> = Mutex::new(None);
static INSTALLED: AtomicBool = AtomicBool::new(false);
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
    install()?;
    set_selector(SYSCALL_DISPATCH_FILTER_ALLOW);
    let selector = SELECTOR.with(|c| c.as_ptr());
    // The signal return trampoline is always allowed: every handler's return (isol's,
    // which re-blocks in re-quiet mode, and the program's) is an rt_sigreturn from it.
    let (offset, len) = match sigreturn_trampoline() {
        Some(at) => (at as libc::c_ulong, TRAMPOLINE_LEN as libc::c_ulong),
        None if mode == REQUIET => {
            return Err(IsolError::Config(
                "re-quiet mode needs the C library's signal return trampoline (glibc's \
                 __restore_rt), which isol cannot find here"
                    .into(),
            ))
        }
        None => (0, 0),
    };
    // SAFETY: prctl with these arguments only records, for this thread, the address of
    // the selector byte (a thread-local that lives as long as the thread, switched off by
    // `disarm` before isolation ends) and the code region whose calls always run.
    let r = unsafe {
        libc::prctl(
            PR_SET_SYSCALL_USER_DISPATCH,
            PR_SYS_DISPATCH_ON,
            offset,
            len,
            selector,
        )
    };
    if r != 0 {
        return Err(IsolError::Prepare {
            what: "prctl(PR_SET_SYSCALL_USER_DISPATCH)",
            source: std::io::Error::last_os_error(),
            fix: "strict mode needs Syscall User Dispatch (Linux 5.11 or later, x86-64); `isol check` says whether this kernel has it",
        });
    }
    ARMED.set(true);
    match faults.then(open_fault_event).transpose() {
        Ok(fd) => PERF_FD.set(fd.unwrap_or(-1)),
        Err(source) => {
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

/// The calling thread's selector when strict mode is armed, else null (for the watcher's
/// remote notification, which ends strict mode through it).
pub(super) fn selector() -> *mut AtomicU8 {
    if MODE.get() == NONE {
        return std::ptr::null_mut();
    }
    SELECTOR.with(|s| s as *const AtomicU8 as *mut AtomicU8)
}

/// End strict mode of another thread through its selector (a store): its next system
/// call runs. The thread-local stays valid while the slot holds it (cleared before the
/// thread leaves isolation).
pub(super) fn end_remotely(selector: *mut AtomicU8) {
    if !selector.is_null() {
        // SAFETY: non-null only while the owning thread is isolated (see `selector`); the
        // byte is an AtomicU8, written atomically here and there.
        unsafe { (*selector).store(SYSCALL_DISPATCH_FILTER_ALLOW, Ordering::Release) };
    }
}

/// Make the thread strict: from here every system call traps. The last thing `enter`
/// does.
/// A store, no system call: everything strict mode needs was set up by [`arm`] before the
/// CPU became quiet.
#[inline(always)]
pub(super) fn block() {
    if MODE.get() != NONE {
        set_selector(SYSCALL_DISPATCH_FILTER_BLOCK);
    }
}

/// Stop trapping now: a store, no system call. The thread's next calls run; [`disarm`]
/// then tears strict mode down (its calls are the first untrapped ones).
pub fn stop_trapping() {
    set_selector(SYSCALL_DISPATCH_FILTER_ALLOW);
    MODE.set(NONE);
}

/// Leave strict mode for the calling thread now: the selector first (a store, so the
/// calls that follow run), then dispatch off. Idempotent. [`super::IsolatedGuard::exit`]
/// does it first thing; callers that must do something before (the C ABI finding the
/// guard) call it themselves.
pub fn disarm() {
    SLOT.set(std::ptr::null());
    set_selector(SYSCALL_DISPATCH_FILTER_ALLOW);
    MODE.set(NONE);
    let fd = PERF_FD.replace(-1);
    if fd >= 0 {
        // SAFETY: our own perf event: disabled, then closed; no pointers.
        unsafe {
            libc::ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
            libc::close(fd);
        }
    }
    if ARMED.replace(false) {
        // SAFETY: switching dispatch off takes no pointer.
        unsafe {
            libc::prctl(
                PR_SET_SYSCALL_USER_DISPATCH,
                PR_SYS_DISPATCH_OFF,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
    }
}

/// `mov $15, %rax; syscall`: x86-64 glibc's `__restore_rt`, the `sa_restorer` of every
/// handler installed through it.
const TRAMPOLINE: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
/// The allowed region: up to and including the instruction after its `syscall` (the
/// kernel compares the address after the `syscall` instruction).
const TRAMPOLINE_LEN: usize = TRAMPOLINE.len() + 1;

/// Where the signal return trampoline is, read back from isol's own SIGSYS action and
/// checked byte for byte.
fn sigreturn_trampoline() -> Option<usize> {
    if !cfg!(all(target_arch = "x86_64", target_env = "gnu")) {
        return None;
    }
    // SAFETY: sigaction with a null new action only writes the current one into `cur`.
    let cur = unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGSYS, std::ptr::null(), &mut cur) != 0 {
            return None;
        }
        cur
    };
    let at = cur.sa_restorer? as usize;
    // SAFETY: `at` is the C library's code, mapped and readable for the process's life;
    // nine bytes are read.
    let code = unsafe { std::slice::from_raw_parts(at as *const u8, TRAMPOLINE.len()) };
    (code == TRAMPOLINE).then_some(at)
}

/// Set the calling thread's selector (a store the kernel reads on each system call).
#[inline(always)]
fn set_selector(v: u8) {
    SELECTOR.with(|s| s.store(v, Ordering::Release));
}

/// Whether the calling thread's system calls trap now.
fn strict_now() -> bool {
    SELECTOR.with(|s| s.load(Ordering::Acquire)) == SYSCALL_DISPATCH_FILTER_BLOCK
}

/// Give the SIGSYS handler the thread's slot (re-quiet mode waits on it).
pub(super) fn attach(slot: &std::sync::Arc<super::Slot>) {
    SLOT.set(std::sync::Arc::as_ptr(slot));
}

/// The calling thread's last violation, if any.
pub fn last_violation() -> Option<Violation> {
    LAST.get()
}

/// Violations of the calling thread so far.
pub fn violations() -> u64 {
    COUNT.get()
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

fn install() -> Result<(), IsolError> {
    let mut prev = PREVIOUS.lock().unwrap_or_else(|p| p.into_inner());
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut prev_trap = PREVIOUS_TRAP.lock().unwrap_or_else(|p| p.into_inner());
    // Page faults the SIGSYS handler itself takes (its code, its stack, when memory is not
    // locked) raise SIGTRAP: blocked while it runs, they are delivered after it, when
    // strictness has ended, and ignored. Likewise for the SIGTRAP handler's own.
    *prev = Some(set_handler(libc::SIGSYS, on_sigsys, libc::SIGTRAP)?);
    *prev_trap = Some(set_handler(libc::SIGTRAP, on_sigtrap, libc::SIGTRAP)?);
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// Install `handler` for `sig`, with `blocked` blocked while it runs; the previous action.
fn set_handler(
    sig: libc::c_int,
    handler: Handler,
    blocked: libc::c_int,
) -> Result<libc::sigaction, IsolError> {
    // SAFETY: sigaction is plain data (all-zero is valid); sigemptyset initialises the
    // mask inside it; sigaction reads `new` and writes the previous action into `old`.
    // The handlers only touch thread-local cells and make system calls.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaddset(&mut new.sa_mask, blocked);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, &new, &mut old) != 0 {
            return Err(IsolError::Prepare {
                what: "sigaction",
                source: std::io::Error::last_os_error(),
                fix: "this should not fail; report it",
            });
        }
        Ok(old)
    }
}

/// `struct perf_event_attr` up to `sig_data` (`PERF_ATTR_SIZE_VER7`, 128 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_PAGE_FAULTS: u64 = 2;
const PERF_SAMPLE_ADDR: u64 = 1 << 3;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
/// `attr.flags` bits: exclude_kernel, exclude_hv, remove_on_exec, sigtrap. Enabled at
/// once: enabling it later, once the CPU is quiet, disturbs the CPU (seen in the lab: a
/// tick and an irq_work). Faults before strict mode begins are ignored by the handler.
const PERF_FLAGS: u64 = 1 << 5 | 1 << 6 | 1 << 36 | 1 << 37;

/// A perf software event counting the calling thread's page faults, each one raising
/// SIGTRAP (`TRAP_PERF`) with the faulting address.
fn open_fault_event() -> std::io::Result<i32> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_PAGE_FAULTS,
        sample_period: 1,
        sample_type: PERF_SAMPLE_ADDR,
        flags: PERF_FLAGS,
        ..Default::default()
    };
    // SAFETY: perf_event_open reads `size` bytes of the fully initialised attr; pid 0 and
    // cpu -1 mean this thread on any CPU; no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0 as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd as i32)
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

/// The kernel's raw system call: the result as the kernel returns it (`-errno` on
/// failure), which is what the trapped instruction must see in `rax`.
#[cfg(target_arch = "x86_64")]
fn raw_syscall(nr: i64, a: [i64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the trapped program asked for exactly this call with these registers; we
    // make it on its behalf. `syscall` clobbers rcx and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

#[cfg(target_arch = "x86_64")]
extern "C" fn on_sigsys(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Strictness off before anything else: every call below (and the return from this
    // handler, rt_sigreturn) must run.
    set_selector(SYSCALL_DISPATCH_FILTER_ALLOW);
    // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    let mode = MODE.get();
    if code != SYS_USER_DISPATCH || mode == NONE {
        chain(&PREVIOUS, sig, info, ctx);
        return;
    }
    // SAFETY: as above; the ucontext's general registers are the trapped thread's, ours to
    // read and to change (rax: the call's result).
    let gregs = unsafe { &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs };
    let nr = gregs[libc::REG_RAX as usize];
    let args = [
        gregs[libc::REG_RDI as usize],
        gregs[libc::REG_RSI as usize],
        gregs[libc::REG_RDX as usize],
        gregs[libc::REG_R10 as usize],
        gregs[libc::REG_R8 as usize],
        gregs[libc::REG_R9 as usize],
    ];
    if nr == libc::SYS_exit || nr == libc::SYS_exit_group {
        // Allowed: ending the thread or the process is not a violation.
        raw_syscall(nr, args);
    }
    if mode == REQUIET {
        gregs[libc::REG_RAX as usize] = raw_syscall(nr, args);
        requiet();
        set_selector(SYSCALL_DISPATCH_FILTER_BLOCK);
        return;
    }
    let v = Violation {
        kind: ViolationKind::Syscall,
        cpu: CPU.get(),
        syscall: nr,
        name: crate::syscalls::name(nr),
        address: gregs[libc::REG_RIP as usize] as u64,
        caller: stack_top(gregs),
        fault_address: 0,
    };
    act(mode, v);
    gregs[libc::REG_RAX as usize] = raw_syscall(nr, args);
}

#[cfg(target_arch = "x86_64")]
extern "C" fn on_sigtrap(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    let mode = MODE.get();
    if code != libc::TRAP_PERF || PERF_FD.get() < 0 {
        chain(&PREVIOUS_TRAP, sig, info, ctx);
        return;
    }
    if mode == NONE || !strict_now() {
        // Our event, but not while strict: before strict mode began (enter still
        // waiting), or after it ended (a fault in isol's own handlers, held back until
        // they returned). Not the program's doing.
        return;
    }
    set_selector(SYSCALL_DISPATCH_FILTER_ALLOW);
    // SAFETY: as above.
    let gregs = unsafe { &(*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs };
    let v = Violation {
        kind: ViolationKind::PageFault,
        cpu: CPU.get(),
        syscall: -1,
        name: None,
        address: gregs[libc::REG_RIP as usize] as u64,
        caller: stack_top(gregs),
        fault_address: addr,
    };
    act(mode, v);
}

/// After a system call in re-quiet mode: wait for quiet again, as `enter` did. Atomics,
/// the vDSO clock and `park` only (see `wait_core`): safe in the SIGSYS handler, even when
/// the call came from inside the allocator.
fn requiet() {
    use super::{ISOLATED, WAITING};
    let slot = SLOT.get();
    if slot.is_null() {
        return;
    }
    // SAFETY: the slot is the isolated thread's own (this thread's), kept alive by its
    // guard until `disarm` clears the pointer.
    let slot = unsafe { &*slot };
    let begin = crate::os::monotonic_ns();
    slot.deadline_ns
        .store(begin + slot.timeout_ns, Ordering::Release);
    slot.rewait_until.store(u64::MAX, Ordering::Release);
    slot.rewait_at.store(begin, Ordering::Release);
    slot.state.store(WAITING, Ordering::Release);
    let waited = super::guard::wait_core(slot, slot.wait);
    let end = crate::os::monotonic_ns();
    if !matches!(waited, super::guard::Waited::Quiet { .. }) {
        slot.requiet_timeouts.fetch_add(1, Ordering::Relaxed);
    }
    slot.requiet_calls.fetch_add(1, Ordering::Relaxed);
    slot.requiet_ns
        .fetch_add(end.saturating_sub(begin), Ordering::Relaxed);
    slot.rewait_until.store(end, Ordering::Release);
    slot.state.store(ISOLATED, Ordering::Release);
}

/// The word at the top of the trapped thread's stack: a return address when it was in a
/// libc wrapper (a syscall), the caller's frame data otherwise.
#[cfg(target_arch = "x86_64")]
fn stack_top(gregs: &[i64]) -> u64 {
    let rsp = gregs[libc::REG_RSP as usize] as *const u64;
    // SAFETY: rsp is the trapped thread's stack pointer; the word there is mapped (the
    // stack).
    unsafe { rsp.read_unaligned() }
}

/// Record `v`, end strictness for the thread (v16: isolation ends at a violation), and do
/// what the mode says. Only system calls and thread-local cells: safe in the handlers.
#[cfg(target_arch = "x86_64")]
fn act(mode: u8, v: Violation) {
    LAST.set(Some(v));
    COUNT.set(COUNT.get() + 1);
    MODE.set(NONE);
    let fd = PERF_FD.get();
    if fd >= 0 {
        // Stop counting faults: the handlers below may fault too.
        raw_syscall(
            libc::SYS_ioctl,
            [fd as i64, PERF_EVENT_IOC_DISABLE as i64, 0, 0, 0, 0],
        );
    }
    let report_fd = REPORT_FD.load(Ordering::Relaxed);
    if mode == REPORT && report_fd < 0 {
        return;
    }
    let pid = raw_syscall(libc::SYS_getpid, [0; 6]);
    let tid = raw_syscall(libc::SYS_gettid, [0; 6]);
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
    let ptr = line.buf.as_ptr() as i64;
    if report_fd >= 0 {
        raw_syscall(
            libc::SYS_write,
            [report_fd as i64, ptr, line.len as i64, 0, 0, 0],
        );
    }
    match mode {
        KILL => {
            raw_syscall(libc::SYS_write, [2, ptr, line.len as i64, 0, 0, 0]);
            raw_syscall(libc::SYS_kill, [pid, libc::SIGKILL as i64, 0, 0, 0, 0]);
        }
        SIGNAL => {
            // Delivered when this call returns: the program's handler runs now, before
            // the trapped call.
            raw_syscall(
                libc::SYS_tgkill,
                [pid, tid, SIGNAL_NR.get() as i64, 0, 0, 0],
            );
        }
        _ => {}
    }
}

#[cfg(not(target_arch = "x86_64"))]
extern "C" fn on_sigsys(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    chain(&PREVIOUS, sig, info, ctx);
}

#[cfg(not(target_arch = "x86_64"))]
extern "C" fn on_sigtrap(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    chain(&PREVIOUS_TRAP, sig, info, ctx);
}

/// Hand a signal that is not isol's to the action in place before isol's.
fn chain(
    previous: &Mutex<Option<libc::sigaction>>,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // try_lock: never block in a signal handler; the action is only written once, at
    // install, before any strict thread exists.
    let prev = match previous.try_lock() {
        Ok(p) => *p,
        Err(_) => None,
    };
    match prev {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous action was installed with SA_SIGINFO: a handler
                // taking (sig, info, ctx).
                let f: Handler = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: a plain handler taking the signal number.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        Some(p) if p.sa_sigaction == libc::SIG_IGN => {}
        _ => {
            // The default action (SIGSYS, SIGTRAP: terminate with a core dump).
            // SAFETY: restoring the default action and re-raising takes no pointers
            // beyond the zeroed sigaction we pass.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
                libc::raise(sig);
            }
        }
    }
}

#[cfg(test)]
mod tests;
