//! The clocks isol reads.

/// `CLOCK_MONOTONIC` now, in ns: the time base of the `mono` trace clock, so times taken
/// here and trace event timestamps compare directly.
pub fn monotonic_ns() -> u64 {
    ns(rustix::time::ClockId::Monotonic)
}

/// `CLOCK_MONOTONIC_RAW` now, in ns: not slewed by NTP, for calibrating the TSC.
pub fn monotonic_raw_ns() -> u64 {
    ns(rustix::time::ClockId::MonotonicRaw)
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`), in ns. A system call
/// (the vDSO does not serve this clock).
pub fn thread_cpu_ns() -> u64 {
    ns(rustix::time::ClockId::ThreadCPUTime)
}

fn ns(id: rustix::time::ClockId) -> u64 {
    let ts = rustix::time::clock_gettime(id);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The time-stamp counter (`rdtsc`); `CLOCK_MONOTONIC_RAW` in ns where there is none.
#[inline(always)]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no memory effects and exists on every x86-64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        monotonic_raw_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward() {
        let (a, b) = (monotonic_ns(), monotonic_ns());
        assert!(b >= a && monotonic_raw_ns() > 0);
        let (c1, c2) = (thread_cpu_ns(), thread_cpu_ns());
        assert!(c1 > 0 && c2 >= c1);
        let (t1, t2) = (tsc(), tsc());
        assert!(t2 >= t1);
    }
}
