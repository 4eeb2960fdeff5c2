//! The calling thread's page faults, each raising SIGTRAP (`TRAP_PERF`, Linux 5.13+) with
//! the faulting address: a perf software event with `sigtrap`, one per thread, owned
//! here so that no raw descriptor leaves this module.

use std::cell::Cell;
use std::io;

thread_local! {
    /// The calling thread's event, or -1. Read in signal handlers: initialised at compile
    /// time, no destructor.
    static FD: Cell<i32> = const { Cell::new(-1) };
}

/// `struct perf_event_attr` up to `sig_data` (`PERF_ATTR_SIZE_VER7`, 128 bytes). The
/// bitfield word (`flags`) is set from named bits below; `perf-event-open-sys` has the same
/// layout with generated setters, a dependency for four bits.
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
const PERF_EVENT_IOC_DISABLE: i64 = 0x2401;
/// The bit positions of `perf_event_attr`'s bitfield (include/uapi/linux/perf_event.h).
const EXCLUDE_KERNEL: u64 = 1 << 5;
const EXCLUDE_HV: u64 = 1 << 6;
const REMOVE_ON_EXEC: u64 = 1 << 36;
const SIGTRAP: u64 = 1 << 37;

/// Open the calling thread's page-fault event, enabled at once (enabling it later, once
/// its CPU is quiet, disturbs that CPU: a tick and an irq_work, seen in the lab). Faults
/// before the caller cares are the caller's to ignore. Replaces an event already open.
pub fn watch_faults() -> io::Result<()> {
    close();
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_PAGE_FAULTS,
        sample_period: 1,
        sample_type: PERF_SAMPLE_ADDR,
        flags: EXCLUDE_KERNEL | EXCLUDE_HV | REMOVE_ON_EXEC | SIGTRAP,
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
        return Err(io::Error::last_os_error());
    }
    FD.set(fd as i32);
    Ok(())
}

/// Whether the calling thread's fault event is open.
pub fn watching() -> bool {
    FD.get() >= 0
}

/// Stop counting the calling thread's faults now (the event stays open). Safe in a signal
/// handler.
pub fn pause() {
    let fd = FD.get();
    if fd >= 0 {
        // SAFETY: an ioctl on our own perf event, taking no pointer.
        unsafe {
            crate::raw::syscall6(
                libc::SYS_ioctl,
                [fd as i64, PERF_EVENT_IOC_DISABLE, 0, 0, 0, 0],
            )
        };
    }
}

/// Stop and close the calling thread's fault event, if open. Idempotent.
pub fn close() {
    pause();
    let fd = FD.replace(-1);
    if fd >= 0 {
        // SAFETY: our own descriptor, closed once (FD no longer holds it).
        unsafe { libc::close(fd) };
    }
}
