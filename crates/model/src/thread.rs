//! Threads and clocks in isol's types: thin wrappers over `isol-sys` (where every `unsafe`
//! system call lives) that take and give [`CpuSet`]s. Functions return
//! [`std::io::Result`]; callers add what failed and what to do next.

use std::io;

use crate::cpus::CpuSet;
pub use isol_sys::thread::is_root;
pub use isol_sys::thread::{gettid, set_fifo, signal_thread, Policy};

/// The clocks isol reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `CLOCK_MONOTONIC`: the `mono` trace clock.
    Monotonic,
    /// `CLOCK_MONOTONIC_RAW`: not slewed by NTP, for calibrating the TSC.
    MonotonicRaw,
}

/// A clock now, in ns.
pub fn clock_ns(clock: Clock) -> u64 {
    match clock {
        Clock::Monotonic => isol_sys::clock::monotonic_ns(),
        Clock::MonotonicRaw => isol_sys::clock::monotonic_raw_ns(),
    }
}

/// `CLOCK_MONOTONIC` now, in ns: the time base of the `mono` trace clock, so times taken
/// here and event timestamps compare directly.
pub fn monotonic_ns() -> u64 {
    isol_sys::clock::monotonic_ns()
}

/// Restrict the calling thread to `cpus`. The watch engine pins itself to the
/// housekeeping CPUs with it, so that it never runs on a CPU it watches.
pub fn pin_current_thread(cpus: &CpuSet) -> io::Result<()> {
    isol_sys::thread::pin(cpus.iter())
}

/// The CPUs the calling thread may run on.
pub fn affinity() -> io::Result<CpuSet> {
    Ok(isol_sys::thread::affinity()?.into_iter().collect())
}

/// The CPUs thread `tid` (any process) may run on.
pub fn affinity_of(tid: u32) -> io::Result<CpuSet> {
    Ok(isol_sys::thread::affinity_of(tid)?.into_iter().collect())
}

/// Restrict thread `tid` (any process) to `cpus`.
pub fn set_affinity_of(tid: u32, cpus: &CpuSet) -> io::Result<()> {
    isol_sys::thread::set_affinity_of(tid, cpus.iter())
}

pub use isol_sys::mem::lock_all_now as lock_all_memory_now;
pub use isol_sys::mem::{lock_all as lock_all_memory, unlock_all as unlock_all_memory};

/// `VmLck` of this process, in KiB.
pub fn locked_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_round_trips_through_pinning() {
        let before = affinity().unwrap();
        let first = before.first().unwrap();
        pin_current_thread(&CpuSet::from_iter([first])).unwrap();
        assert_eq!(affinity().unwrap(), CpuSet::from_iter([first]));
        pin_current_thread(&before).unwrap();
        assert_eq!(affinity().unwrap(), before);
    }
}
