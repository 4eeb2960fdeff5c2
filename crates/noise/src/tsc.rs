//! The time-stamp counter: the sampler's clock. Reading it costs a few ns and no syscall;
//! its rate is calibrated against `CLOCK_MONOTONIC_RAW`, and a linear mapping measured at
//! both ends of a run converts counter values to `CLOCK_MONOTONIC`, the trace clock of
//! [`crate::watch`], so gaps and interruptions are compared on one time line.

use std::time::Duration;

use crate::os::{clock_ns, Clock};
use crate::SysRoot;

/// The counter now. On x86-64 this is `rdtsc`; elsewhere `CLOCK_MONOTONIC_RAW` in ns
/// through the vDSO (slower, but the sampler stays correct).
#[inline(always)]
pub fn read() -> u64 {
    isol_sys::clock::tsc()
}

/// One counter value and the clock reading taken at the same moment (the middle of the
/// tightest of a few `rdtsc; clock_gettime; rdtsc` brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    pub tsc: u64,
    pub ns: u64,
    /// Width of the bracket in counter ticks: the pair's uncertainty.
    pub width: u64,
}

impl Pair {
    pub(crate) fn now(clock: Clock) -> Pair {
        let mut best = Pair {
            tsc: 0,
            ns: 0,
            width: u64::MAX,
        };
        for _ in 0..16 {
            let t0 = read();
            let ns = clock_ns(clock);
            let t1 = read();
            let width = t1.wrapping_sub(t0);
            if width < best.width {
                best = Pair {
                    tsc: t0 + width / 2,
                    ns,
                    width,
                };
            }
        }
        best
    }
}

/// Counter ticks per second, measured against `CLOCK_MONOTONIC_RAW` over `window`.
pub fn calibrate(window: Duration) -> f64 {
    let a = Pair::now(Clock::MonotonicRaw);
    let until = a.ns + window.as_nanos() as u64;
    while clock_ns(Clock::MonotonicRaw) < until {
        std::hint::spin_loop();
    }
    let b = Pair::now(Clock::MonotonicRaw);
    (b.tsc - a.tsc) as f64 * 1e9 / (b.ns - a.ns) as f64
}

/// A linear map from counter values to a clock, through two pairs taken far apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mapping {
    pub a: Pair,
    pub b: Pair,
}

impl Mapping {
    /// The clock at counter value `tsc` (extrapolated outside the pairs).
    pub fn ns(&self, tsc: u64) -> u64 {
        let (dt, dn) = (
            self.b.tsc as i128 - self.a.tsc as i128,
            self.b.ns as i128 - self.a.ns as i128,
        );
        if dt <= 0 {
            return self.a.ns;
        }
        let v = self.a.ns as i128 + (tsc as i128 - self.a.tsc as i128) * dn / dt;
        v.max(0) as u64
    }

    /// Counter ticks per ns of the mapped clock.
    #[cfg(test)]
    pub fn ticks_per_ns(&self) -> f64 {
        (self.b.tsc - self.a.tsc) as f64 / (self.b.ns - self.a.ns).max(1) as f64
    }
}

/// What the kernel says about the counter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TscInfo {
    /// `constant_tsc` and `nonstop_tsc`: the counter ticks at one rate in every P- and
    /// C-state (CPUID's "invariant TSC").
    pub invariant: bool,
    /// The kernel's clocksource (`tsc` means the kernel itself trusts the counter).
    pub clocksource: Option<String>,
    /// The timekeeping flags of `/proc/cpuinfo`.
    pub flags: Vec<String>,
}

impl TscInfo {
    /// What `root` says of the counter (`/proc/cpuinfo`, the clocksource).
    pub fn read(root: &SysRoot) -> TscInfo {
        let flags = root
            .read("/proc/cpuinfo")
            .map(|s| crate::kernel::cpu::tsc_flags(&s))
            .unwrap_or_default();
        let has = |f: &str| flags.iter().any(|x| x == f);
        TscInfo {
            invariant: has("constant_tsc") && has("nonstop_tsc"),
            clocksource: root
                .read_line("/sys/devices/system/clocksource/clocksource0/current_clocksource")
                .ok(),
            flags,
        }
    }

    /// Why the counter may not be a good clock, if it may not.
    pub fn warning(&self) -> Option<String> {
        if !cfg!(target_arch = "x86_64") {
            return Some(
                "no TSC on this architecture: the sampler reads CLOCK_MONOTONIC_RAW (slower loop)"
                    .into(),
            );
        }
        if self.invariant {
            return None;
        }
        let cs = self.clocksource.as_deref().unwrap_or("unknown");
        Some(format!(
            "the TSC is not marked invariant (no constant_tsc/nonstop_tsc in /proc/cpuinfo; \
             clocksource {cs}): gap lengths assume it ticks at the calibrated rate throughout"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_interpolates_and_extrapolates() {
        let m = Mapping {
            a: Pair {
                tsc: 1_000,
                ns: 10_000,
                width: 0,
            },
            b: Pair {
                tsc: 3_000,
                ns: 11_000,
                width: 0,
            },
        };
        assert_eq!(m.ns(2_000), 10_500);
        assert_eq!(m.ns(5_000), 12_000);
        assert_eq!(m.ns(0), 9_500);
        assert!((m.ticks_per_ns() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn invariance_comes_from_cpuinfo_flags() {
        let root = SysRoot::at(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/host-6.18"
        ));
        let host = TscInfo::read(&root);
        assert!(host.invariant, "{host:?}");
        assert_eq!(host.warning(), None);
        let root = SysRoot::at(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/lab-6.12"
        ));
        let lab = TscInfo::read(&root);
        assert!(!lab.invariant, "{lab:?}");
        assert!(lab.warning().unwrap().contains("not marked invariant"));
    }

    #[test]
    fn live_counter_advances_at_a_plausible_rate() {
        let hz = calibrate(Duration::from_millis(20));
        assert!(hz > 1e8 && hz < 1e11, "{hz}");
        let p = Pair::now(Clock::Monotonic);
        assert!(p.width < 1_000_000, "{p:?}");
    }
}
