//! Strict mode on this host: what needs no isolated CPU.

use super::*;

#[test]
fn signals_a_handler_cannot_catch_are_refused() {
    assert!(validate(Strict::Signal(libc::SIGUSR1)).is_ok());
    assert!(validate(Strict::Kill).is_ok());
    for bad in [0, -3, libc::SIGKILL, libc::SIGSTOP, libc::SIGSYS, 1000] {
        let e = validate(Strict::Signal(bad)).unwrap_err();
        assert_eq!(e.errno(), -libc::EINVAL, "{bad}: {e}");
    }
}

/// On this host (no isolation needed): a thread made strict traps its next system
/// call, reports it, and the call still runs and returns its result.
#[test]
fn a_trapped_call_is_reported_and_still_runs() {
    let h = std::thread::spawn(|| {
        if arm(Strict::Report, 0).is_err() {
            return None; // no Syscall User Dispatch on this kernel
        }
        block();
        let ppid = rustix::process::getppid();
        let v = last_violation();
        let n = violations();
        disarm();
        Some((ppid, v, n))
    });
    let Some((ppid, v, n)) = h.join().unwrap() else {
        eprintln!("skipped: Syscall User Dispatch unavailable");
        return;
    };
    assert_eq!(ppid, rustix::process::getppid());
    let v = v.expect("a violation");
    assert_eq!(n, 1);
    assert_eq!(v.syscall, libc::SYS_getppid);
    assert_eq!(v.name, Some("getppid"));
    assert_ne!(v.address, 0);
}

/// A page touched for the first time while strict is a violation naming its address.
#[test]
fn a_page_fault_is_reported_with_its_address() {
    let h = std::thread::spawn(|| {
        // Everything mapped now is made present (as enter's mlockall does): the only
        // page the thread can fault on is the one mapped after.
        if crate::os::lock_all_memory_now().is_err() {
            return None;
        }
        let page = isol_sys::mem::Mapping::anonymous(4096).unwrap();
        if arm(Strict::Report, 0).is_err() {
            let _ = crate::os::unlock_all_memory();
            return None; // no Syscall User Dispatch or perf sigtrap here
        }
        block();
        page.write(0, 1);
        let v = last_violation();
        disarm();
        let _ = crate::os::unlock_all_memory();
        Some((page.addr() as u64, v))
    });
    let Some((page, v)) = h.join().unwrap() else {
        eprintln!("skipped: strict mode unavailable");
        return;
    };
    let v = v.expect("a violation");
    assert_eq!(v.kind, ViolationKind::PageFault);
    assert_eq!(v.fault_address, page);
    assert_eq!(v.syscall, -1);
}
