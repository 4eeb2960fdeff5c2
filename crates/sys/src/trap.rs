//! The handlers strict mode runs in: SIGSYS from Syscall User Dispatch ([`crate::dispatch`])
//! and SIGTRAP from the page-fault event ([`crate::perf`]).
//!
//! [`install`] puts isol's two handlers in place once per process and keeps the actions
//! that were there: a SIGSYS or SIGTRAP that is not isol's (a debugger's breakpoint, the
//! program's own dispatch), or one the caller's function says is not its, goes to them.
//! The caller's functions run inside the signal handler: they may only touch atomics and
//! compile-time-initialised thread-locals and make [`crate::raw`] calls (no allocation, no
//! lock). The SIGSYS handler switches the thread's selector to ALLOW before anything else,
//! so that every call made while handling runs.

use std::io;
use std::sync::{Mutex, OnceLock};

/// Whether a handler function dealt with the signal, or it goes to the previous action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Dealt with.
    Yes,
    /// Not isol's: hand it to the action in place before isol's.
    NotMine,
}

/// A system call trapped by Syscall User Dispatch: the thread's registers, to read and to
/// answer.
pub struct SyscallTrap<'a> {
    #[cfg(target_arch = "x86_64")]
    gregs: &'a mut [i64; 23],
    #[cfg(not(target_arch = "x86_64"))]
    _none: std::marker::PhantomData<&'a ()>,
}

#[cfg(target_arch = "x86_64")]
impl SyscallTrap<'_> {
    /// The system call number.
    pub fn number(&self) -> i64 {
        self.gregs[libc::REG_RAX as usize]
    }

    /// Its six arguments.
    pub fn args(&self) -> [i64; 6] {
        let g = &self.gregs;
        [
            g[libc::REG_RDI as usize],
            g[libc::REG_RSI as usize],
            g[libc::REG_RDX as usize],
            g[libc::REG_R10 as usize],
            g[libc::REG_R8 as usize],
            g[libc::REG_R9 as usize],
        ]
    }

    /// Whether it ends the thread or the process (`exit`, `exit_group`).
    pub fn is_exit(&self) -> bool {
        matches!(self.number(), libc::SYS_exit | libc::SYS_exit_group)
    }

    /// The instruction after the `syscall`.
    pub fn address(&self) -> u64 {
        self.gregs[libc::REG_RIP as usize] as u64
    }

    /// The word at the top of the thread's stack: the return address into the caller when
    /// the call came from a libc wrapper.
    pub fn caller(&self) -> u64 {
        stack_top(self.gregs)
    }

    /// Make the trapped call on the thread's behalf, with its registers, and hand its
    /// result back as the call's (`rax`). Returns that result (`-errno` on failure).
    pub fn run(&mut self) -> i64 {
        // SAFETY: the thread asked for exactly this call with these registers; it would
        // have run without dispatch. Making it here changes nothing but who traps.
        let r = unsafe { crate::raw::syscall6(self.number(), self.args()) };
        self.gregs[libc::REG_RAX as usize] = r;
        r
    }
}

/// A page fault reported by the fault event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultTrap {
    /// The faulting data address.
    pub address: u64,
    /// Where the thread was when it was reported.
    pub instruction: u64,
    /// The word at the top of its stack.
    pub caller: u64,
}

/// The functions the handlers call for isol's own signals.
#[derive(Debug, Clone, Copy)]
pub struct Handlers {
    /// A trapped system call.
    pub on_syscall: fn(&mut SyscallTrap) -> Handled,
    /// A page fault of a thread whose fault event is open.
    pub on_fault: fn(&FaultTrap) -> Handled,
}

static HANDLERS: OnceLock<Handlers> = OnceLock::new();
/// The actions in place before isol's.
static PREVIOUS_SYS: Mutex<Option<libc::sigaction>> = Mutex::new(None);
static PREVIOUS_TRAP: Mutex<Option<libc::sigaction>> = Mutex::new(None);

/// `si_code` of a SIGSYS raised by Syscall User Dispatch.
const SYS_USER_DISPATCH: libc::c_int = 2;

/// Put the SIGSYS and SIGTRAP handlers in place (once per process; later calls do
/// nothing and keep the first `handlers`).
pub fn install(handlers: Handlers) -> io::Result<()> {
    let mut prev = PREVIOUS_SYS.lock().unwrap_or_else(|p| p.into_inner());
    if HANDLERS.get().is_some() {
        return Ok(());
    }
    let _ = HANDLERS.set(handlers);
    let mut prev_trap = PREVIOUS_TRAP.lock().unwrap_or_else(|p| p.into_inner());
    // Page faults the SIGSYS handler itself takes (its code, its stack, when memory is not
    // locked) raise SIGTRAP: blocked while it runs, they are delivered after it, when
    // strictness has ended. Likewise for the SIGTRAP handler's own.
    *prev = Some(set_action(libc::SIGSYS, on_sigsys, libc::SIGTRAP)?);
    *prev_trap = Some(set_action(libc::SIGTRAP, on_sigtrap, libc::SIGTRAP)?);
    Ok(())
}

type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Install `handler` for `sig`, with `blocked` blocked while it runs; the previous action.
fn set_action(
    sig: libc::c_int,
    handler: Action,
    blocked: libc::c_int,
) -> io::Result<libc::sigaction> {
    // SAFETY: sigaction is plain data (all-zero is valid); sigemptyset initialises the
    // mask inside it; sigaction reads `new` and writes the previous action into `old`.
    // The handlers only touch thread-local cells and atomics and make raw system calls.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaddset(&mut new.sa_mask, blocked);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, &new, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

#[cfg(target_arch = "x86_64")]
fn stack_top(gregs: &[i64; 23]) -> u64 {
    let rsp = gregs[libc::REG_RSP as usize] as *const u64;
    // SAFETY: rsp is the trapped thread's stack pointer; the word there is mapped (the
    // stack).
    unsafe { rsp.read_unaligned() }
}

#[cfg(target_arch = "x86_64")]
extern "C" fn on_sigsys(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Strictness off before anything else: every call below (and the return from this
    // handler, rt_sigreturn) must run.
    crate::dispatch::allow();
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    let (Some(h), SYS_USER_DISPATCH) = (HANDLERS.get(), code) else {
        chain(&PREVIOUS_SYS, sig, info, ctx);
        return;
    };
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler; its general
    // registers are the trapped thread's, ours to read and to change (rax: the result).
    let gregs = unsafe { &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs };
    let mut trap = SyscallTrap { gregs };
    if (h.on_syscall)(&mut trap) == Handled::NotMine {
        chain(&PREVIOUS_SYS, sig, info, ctx);
    }
}

#[cfg(target_arch = "x86_64")]
extern "C" fn on_sigtrap(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as u64) };
    let h = HANDLERS.get();
    let (Some(h), libc::TRAP_PERF, true) = (h, code, crate::perf::watching()) else {
        chain(&PREVIOUS_TRAP, sig, info, ctx);
        return;
    };
    // SAFETY: as above, for the ucontext.
    let gregs = unsafe { &(*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs };
    let f = FaultTrap {
        address: addr,
        instruction: gregs[libc::REG_RIP as usize] as u64,
        caller: stack_top(gregs),
    };
    if (h.on_fault)(&f) == Handled::NotMine {
        chain(&PREVIOUS_TRAP, sig, info, ctx);
    }
}

#[cfg(not(target_arch = "x86_64"))]
extern "C" fn on_sigsys(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    chain(&PREVIOUS_SYS, sig, info, ctx);
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
                // taking (sig, info, ctx), which the kernel's arguments are.
                let f: Action = unsafe { std::mem::transmute(p.sa_sigaction) };
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
mod tests {
    use super::*;

    fn none(_: &mut SyscallTrap) -> Handled {
        Handled::NotMine
    }

    fn no_fault(_: &FaultTrap) -> Handled {
        Handled::NotMine
    }

    #[test]
    fn the_signal_return_trampoline_is_found_once_installed() {
        install(Handlers {
            on_syscall: none,
            on_fault: no_fault,
        })
        .unwrap();
        let at = crate::dispatch::sigreturn_trampoline();
        assert_eq!(
            at.is_some(),
            cfg!(all(target_arch = "x86_64", target_env = "gnu"))
        );
    }
}
