//! `libisol`: the C ABI of isol's task isolation.
//!
//! ```c
//! struct isol_config cfg;
//! isol_config_init(&cfg);
//! cfg.cpu = 3; cfg.pin = 1;
//! int rc = isol_enter(&cfg);          /* 0, or -EINVAL, -EAGAIN, -EPERM, -EBUSY, ... */
//! if (rc) fprintf(stderr, "%s\n", isol_last_error());
//! while (work) { ...; n = isol_interruptions(); }   /* no system call */
//! struct isol_report r;
//! isol_exit(&r);
//! ```
//!
//! Isolation belongs to the calling thread: `isol_enter` and `isol_exit` act on it, and
//! `isol_interruptions` reads its counter. Errors are negative errno values, with a
//! message for the thread in `isol_last_error`. No Rust panic crosses this boundary: one
//! is caught and returned as `-EIO`.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use isol_task::{IsolatedGuard, Isolation, Strict, Wait};

/// `isol_config.wait`: spin in userspace until the CPU is quiet.
pub const ISOL_WAIT_SPIN: i32 = 0;
/// `isol_config.wait`: sleep, be woken when the CPU is quiet, re-verify spinning.
pub const ISOL_WAIT_SLEEP: i32 = 1;

/// `isol_config.strict`: no strict mode (system calls run; the watcher counts what they
/// cause).
pub const ISOL_STRICT_OFF: i32 = 0;
/// `isol_config.strict`: a system call while isolated prints the violation on stderr and
/// kills the process (SIGKILL).
pub const ISOL_STRICT_KILL: i32 = 1;
/// `isol_config.strict`: a system call while isolated sends `strict_signal` to the thread
/// (its handler runs non-isolated), then runs.
pub const ISOL_STRICT_SIGNAL: i32 = 2;
/// `isol_config.strict`: a system call while isolated is recorded, runs, and the thread
/// continues non-isolated.
pub const ISOL_STRICT_REPORT: i32 = 3;

/// How to enter isolation. Initialise with `isol_config_init`, then set fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct isol_config {
    /// The CPU; -1 means the one CPU the thread may run on.
    pub cpu: i32,
    /// Non-zero: pin the thread to `cpu` first.
    pub pin: i32,
    /// `ISOL_WAIT_SPIN` or `ISOL_WAIT_SLEEP`.
    pub wait: i32,
    /// How long to wait for quiet, in ms (0: 1000).
    pub timeout_ms: u32,
    /// Non-zero: allow a CPU that is not nohz_full (development; the tick keeps running).
    pub allow_ticking: i32,
    /// Non-zero: run SCHED_FIFO at this priority (RT throttling must be off).
    pub fifo_priority: i32,
    /// Non-zero: mlockall(MCL_CURRENT | MCL_FUTURE) first (the default).
    pub mlock: i32,
    /// `ISOL_STRICT_OFF` (the default), `ISOL_STRICT_KILL`, `ISOL_STRICT_SIGNAL` or
    /// `ISOL_STRICT_REPORT`.
    pub strict: i32,
    /// The signal for `ISOL_STRICT_SIGNAL` (e.g. SIGUSR1).
    pub strict_signal: i32,
    /// Non-zero: send this signal to the thread at the first interruption of its CPU
    /// while isolated (remote notification); `isol_notified_by` names it.
    pub notify_signal: i32,
}

/// A strict-mode violation (`isol_last_violation`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct isol_violation {
    /// The isolated CPU.
    pub cpu: u32,
    /// The system call number (x86-64).
    pub syscall: i64,
    /// The instruction after the `syscall` instruction.
    pub address: u64,
    /// The return address at the top of the stack (the caller of the libc wrapper).
    pub caller: u64,
    /// The system call's name, NUL-terminated ("" when unknown).
    pub name: [c_char; 32],
}

/// What `isol_exit` reports.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct isol_report {
    pub cpu: u32,
    /// `ISOL_WAIT_SPIN` or `ISOL_WAIT_SLEEP`.
    pub wait: i32,
    /// 1 when the CPU was not nohz_full: the tick kept running and no quiet wait was made.
    pub ticking: i32,
    /// From the start of `isol_enter` to quiet (0 when ticking).
    pub time_to_quiet_ns: u64,
    /// CPU time spent waiting.
    pub wait_cpu_ns: u64,
    /// From quiet to exit.
    pub isolated_ns: u64,
    /// Interruptions of the CPU while isolated.
    pub interruptions: u64,
    /// Strict-mode violations while isolated.
    pub violations: u64,
}

thread_local! {
    static GUARD: RefCell<Option<IsolatedGuard>> = const { RefCell::new(None) };
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn guarded(f: impl FnOnce() -> i32) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => {
            set_error("internal error (a panic in libisol); please report it");
            -libc::EIO
        }
    }
}

/// A malformed `ISOL_*` variable seen by `isol_config_init`: `isol_enter` refuses with it.
static ENV_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Fill `cfg` with the defaults (the thread's one CPU, no pin, spin, 1 s, mlock on), then
/// with what `isol run` asks for in the environment: `ISOL_CPU`, `ISOL_FIFO`, `ISOL_STRICT`
/// and `ISOL_REPORT_FD`. A malformed variable makes the next `isol_enter` fail with
/// `-EINVAL`, naming it.
///
/// # Safety
/// `cfg` must point to writable memory for one `struct isol_config`.
#[no_mangle]
pub unsafe extern "C" fn isol_config_init(cfg: *mut isol_config) {
    if cfg.is_null() {
        return;
    }
    let mut c = isol_config {
        cpu: -1,
        pin: 0,
        wait: ISOL_WAIT_SPIN,
        timeout_ms: 0,
        allow_ticking: 0,
        fifo_priority: 0,
        mlock: 1,
        strict: ISOL_STRICT_OFF,
        strict_signal: 0,
        notify_signal: 0,
    };
    let env = catch_unwind(isol_task::env::RunConfig::from_env)
        .unwrap_or_else(|_| Ok(Default::default()));
    let mut error = ENV_ERROR.lock().unwrap_or_else(|p| p.into_inner());
    match env {
        Ok(run) => {
            *error = None;
            if let Some(cpu) = run.cpu {
                c.cpu = cpu as i32;
            }
            if let Some(p) = run.fifo {
                c.fifo_priority = p;
            }
            match run.strict {
                None => {}
                Some(Strict::Kill) => c.strict = ISOL_STRICT_KILL,
                Some(Strict::Report) => c.strict = ISOL_STRICT_REPORT,
                Some(Strict::Signal(n)) => {
                    c.strict = ISOL_STRICT_SIGNAL;
                    c.strict_signal = n;
                }
            }
            if let Some(fd) = run.report_fd {
                isol_task::strict::report_to(fd);
            }
            if run.allow_ticking {
                c.allow_ticking = 1;
            }
        }
        Err(e) => *error = Some(e.to_string()),
    }
    // SAFETY: non-null, and the caller promised it points to a writable isol_config.
    unsafe { cfg.write(c) };
}

/// Enter isolation on the calling thread. Returns 0, or a negative errno: `-EINVAL` (the
/// thread may not be isolated: not pinned to one nohz_full, isolated CPU), `-EAGAIN` (the
/// CPU did not become quiet in time), `-EPERM` (tracing or mlock needs privileges),
/// `-EBUSY` (already isolated, or the CPU is taken), `-ENODEV` (no tracefs), `-EIO`.
///
/// # Safety
/// `cfg` must be null (defaults) or point to an initialised `struct isol_config`.
#[no_mangle]
pub unsafe extern "C" fn isol_enter(cfg: *const isol_config) -> i32 {
    let cfg = if cfg.is_null() {
        let mut c = std::mem::MaybeUninit::uninit();
        // SAFETY: MaybeUninit provides writable storage for one isol_config, which
        // isol_config_init fully initialises before assume_init.
        unsafe {
            isol_config_init(c.as_mut_ptr());
            c.assume_init()
        }
    } else {
        // SAFETY: the caller promised an initialised isol_config; it is Copy.
        unsafe { *cfg }
    };
    guarded(|| {
        if GUARD.with(|g| g.borrow().is_some()) {
            set_error("this thread is already isolated; call isol_exit first");
            return -libc::EBUSY;
        }
        if let Some(e) = ENV_ERROR.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            set_error(&e);
            return -libc::EINVAL;
        }
        let mut b = Isolation::builder()
            .wait(if cfg.wait == ISOL_WAIT_SLEEP {
                Wait::Sleep
            } else {
                Wait::Spin
            })
            .pin(cfg.pin != 0)
            .allow_ticking(cfg.allow_ticking != 0)
            .mlock(cfg.mlock != 0);
        if cfg.cpu >= 0 {
            b = b.cpu(cfg.cpu as u32);
        }
        if cfg.timeout_ms > 0 {
            b = b.timeout(Duration::from_millis(cfg.timeout_ms.into()));
        }
        if cfg.fifo_priority > 0 {
            b = b.fifo(cfg.fifo_priority);
        }
        match cfg.strict {
            ISOL_STRICT_OFF => {}
            ISOL_STRICT_KILL => b = b.strict(Strict::Kill),
            ISOL_STRICT_SIGNAL => b = b.strict(Strict::Signal(cfg.strict_signal)),
            ISOL_STRICT_REPORT => b = b.strict(Strict::Report),
            other => {
                set_error(&format!(
                    "isol_config.strict = {other}: use ISOL_STRICT_OFF, _KILL, _SIGNAL or _REPORT"
                ));
                return -libc::EINVAL;
            }
        }
        if cfg.notify_signal != 0 {
            b = b.on_interrupt(cfg.notify_signal);
        }
        // The guard is stored (which may allocate) before strict mode begins.
        let stored = b.enter_with(|guard| {
            GUARD.with(|g| *g.borrow_mut() = Some(guard));
            set_error("");
        });
        match stored {
            Ok(()) => 0,
            Err(e) => {
                set_error(&e.to_string());
                e.errno()
            }
        }
    })
}

/// Leave isolation; fill `report` if it is not null. Returns 0, or `-EINVAL` when the
/// thread is not isolated.
///
/// # Safety
/// `report` must be null or point to writable memory for one `struct isol_report`.
#[no_mangle]
pub unsafe extern "C" fn isol_exit(report: *mut isol_report) -> i32 {
    // Finding the guard makes no system call (a thread-local touched when the thread
    // entered); its exit ends strictness before anything else.
    guarded(|| {
        let Some(guard) = GUARD.with(|g| g.borrow_mut().take()) else {
            set_error("this thread is not isolated");
            return -libc::EINVAL;
        };
        let r = guard.exit();
        if !report.is_null() {
            let out = isol_report {
                cpu: r.cpu,
                wait: if r.wait == Wait::Sleep {
                    ISOL_WAIT_SLEEP
                } else {
                    ISOL_WAIT_SPIN
                },
                ticking: r.ticking as i32,
                time_to_quiet_ns: r.time_to_quiet_ns.unwrap_or(0),
                wait_cpu_ns: r.wait_cpu_ns.unwrap_or(0),
                isolated_ns: r.isolated_ns,
                interruptions: r.interruptions,
                violations: r.violations,
            };
            // SAFETY: non-null, and the caller promised writable memory for one report.
            unsafe { report.write(out) };
        }
        0
    })
}

/// Interruptions of the calling thread's CPU since it became isolated (0 when it is not
/// isolated). An atomic load: no system call.
#[no_mangle]
pub extern "C" fn isol_interruptions() -> u64 {
    GUARD
        .try_with(|g| g.borrow().as_ref().map_or(0, |g| g.interruptions()))
        .unwrap_or(0)
}

/// The calling thread's last strict-mode violation: fills `out` and returns 0, or returns
/// `-ENOENT` when the thread has had none. Safe to call from the signal handler of
/// `ISOL_STRICT_SIGNAL` (no allocation, no lock).
///
/// # Safety
/// `out` must be null or point to writable memory for one `struct isol_violation`.
#[no_mangle]
pub unsafe extern "C" fn isol_last_violation(out: *mut isol_violation) -> i32 {
    let Some(v) = isol_task::strict::last_violation() else {
        return -libc::ENOENT;
    };
    let mut name = [0 as c_char; 32];
    for (d, s) in name.iter_mut().zip(v.name.unwrap_or("").bytes().take(31)) {
        *d = s as c_char;
    }
    if !out.is_null() {
        // SAFETY: non-null, and the caller promised writable memory for one violation.
        unsafe {
            out.write(isol_violation {
                cpu: v.cpu,
                syscall: v.syscall,
                address: v.address,
                caller: v.caller,
                name,
            })
        };
    }
    0
}

/// The interruption the calling thread was signalled for (`notify_signal`): writes "KIND
/// CULPRIT" (NUL-terminated, cut to `len`) into `buf` and returns 1; returns 0 when it was
/// not notified, `-EINVAL` when it is not isolated. Takes a lock and may allocate: call it
/// from the thread's normal flow, not from the signal handler.
///
/// # Safety
/// `buf` must be null or point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn isol_notified_by(buf: *mut c_char, len: usize) -> i32 {
    guarded(|| {
        let Some(cause) = GUARD.with(|g| g.borrow().as_ref().map(|g| g.notified_by())) else {
            return -libc::EINVAL;
        };
        let Some((kind, culprit)) = cause else {
            return 0;
        };
        if !buf.is_null() && len > 0 {
            let text = format!("{kind} {culprit}");
            let n = text.len().min(len - 1);
            // SAFETY: the caller promised `len` writable bytes at `buf`; n < len.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr().cast(), buf, n);
                *buf.add(n) = 0;
            }
        }
        1
    })
}

/// Start the process's watcher now, so that the first `isol_enter` does not pay for it.
/// Returns 0 or a negative errno.
#[no_mangle]
pub extern "C" fn isol_start_watcher() -> i32 {
    guarded(|| match isol_task::start_watcher(None) {
        Ok(()) => 0,
        Err(e) => {
            set_error(&e.to_string());
            e.errno()
        }
    })
}

/// Lock the process's memory now (`mlockall(MCL_CURRENT | MCL_FUTURE)`), so that the first
/// `isol_enter` does not pay for it; once per process. Returns 0 or a negative errno.
#[no_mangle]
pub extern "C" fn isol_lock_memory() -> i32 {
    guarded(|| match isol_task::lock_memory() {
        Ok(()) => 0,
        Err(e) => {
            set_error(&e.to_string());
            e.errno()
        }
    })
}

/// Stop the process's watcher (it also stops by itself at normal exit): its tracing
/// instance is removed. Call it before `_exit` or `execve`, which skip exit handlers.
#[no_mangle]
pub extern "C" fn isol_shutdown() {
    let _ = catch_unwind(isol_task::shutdown_watcher);
}

/// Make a waiting `isol_enter` return `-EINTR`. Async-signal-safe.
#[no_mangle]
pub extern "C" fn isol_abort_wait() {
    isol_task::abort_wait();
}

/// The calling thread's last error message ("" after a success). Valid until the thread's
/// next libisol call.
#[no_mangle]
pub extern "C" fn isol_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"libisol: thread is exiting".as_ptr())
}
