//! The sampler: a loop that reads the TSC as fast as it can on one CPU. Every difference
//! between consecutive reads is counted in a histogram; every one at or above the
//! threshold is also kept as a gap (where, how long). Everything the loop touches is
//! allocated and written once before it starts: inside it there is no allocation, no
//! syscall, no lock and no output, so the only thing that can make a difference large is
//! the CPU being taken away.

use std::sync::atomic::{AtomicBool, Ordering};

use super::tsc;

/// Differences below this many counter ticks are counted one tick per bucket.
pub const EXACT: u64 = 1024;
/// Sub-buckets per power of two above [`EXACT`] (resolution 1/128 = 0.8 %).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const FIRST_POW: u32 = EXACT.trailing_zeros();
/// Buckets above [`EXACT`], up to 2^64 ticks.
const LARGE: usize = ((64 - FIRST_POW) as usize) << SUB_BITS;

/// A histogram of counter differences: exact below [`EXACT`], log-linear above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    pub exact: Vec<u64>,
    pub large: Vec<u64>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            exact: vec![0; EXACT as usize],
            large: vec![0; LARGE],
        }
    }
}

impl Buckets {
    #[inline(always)]
    fn large_index(d: u64) -> usize {
        let msb = 63 - d.leading_zeros();
        let sub = (d >> (msb - SUB_BITS)) - SUB;
        (((msb - FIRST_POW) as usize) << SUB_BITS) + sub as usize
    }

    /// The range of differences (ticks) that land in large bucket `i`.
    pub fn large_range(i: usize) -> (u64, u64) {
        let msb = (i >> SUB_BITS) as u32 + FIRST_POW;
        let sub = (i as u64) & (SUB - 1);
        let lo = (SUB + sub) << (msb - SUB_BITS);
        let width = 1u64 << (msb - SUB_BITS);
        (lo, lo.saturating_add(width - 1))
    }

    #[inline(always)]
    pub fn add(&mut self, d: u64) {
        if d < EXACT {
            self.exact[d as usize] += 1;
        } else {
            self.large[Self::large_index(d)] += 1;
        }
    }

    /// Every non-empty bucket as (lowest ticks, highest ticks, count), in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        let exact = self
            .exact
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(d, &c)| (d as u64, d as u64, c));
        let large = self
            .large
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let (lo, hi) = Self::large_range(i);
                (lo, hi, c)
            });
        exact.chain(large)
    }

    /// Every difference counted.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.exact.iter().chain(&self.large).sum()
    }

    /// Write every bucket, so that the pages are mapped before the loop.
    fn touch(&mut self) {
        isol_sys::mem::fill_volatile(&mut self.exact[..], 0);
        isol_sys::mem::fill_volatile(&mut self.large[..], 0);
    }
}

/// One difference at or above the threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gap {
    /// Counter value read just before the gap.
    pub start: u64,
    /// Length in counter ticks.
    pub ticks: u64,
}

/// What one run of the loop saw.
#[derive(Debug, Clone)]
pub struct Samples {
    pub start: u64,
    pub end: u64,
    pub iterations: u64,
    pub buckets: Buckets,
    /// The first gaps, up to the capacity given.
    pub gaps: Vec<Gap>,
    /// Gaps that did not fit: counted, summed and maxed, not kept.
    pub dropped: u64,
    /// Sum of every gap's ticks (kept and dropped).
    pub gap_ticks: u64,
    pub max_ticks: u64,
}

/// Memory for one run, allocated and written before the loop starts.
pub struct Sampler {
    threshold: u64,
    buckets: Buckets,
    gaps: Vec<Gap>,
}

impl Sampler {
    /// `threshold`: smallest difference (ticks) kept as a gap; `capacity`: how many gaps
    /// are kept (more are only counted).
    pub fn new(threshold: u64, capacity: usize) -> Sampler {
        let mut buckets = Buckets::default();
        buckets.touch();
        let mut gaps = vec![Gap::default(); capacity.max(1)];
        isol_sys::mem::fill_volatile(&mut gaps[..], Gap::default());
        lock(&buckets.exact);
        lock(&buckets.large);
        lock(&gaps);
        Sampler {
            threshold: threshold.max(1),
            buckets,
            gaps,
        }
    }

    /// Run until the counter passes `end` or `stop` is set (checked on every gap and
    /// every 2^16 iterations).
    pub fn run(self, end: u64, stop: &AtomicBool) -> Samples {
        let Sampler {
            threshold,
            mut buckets,
            mut gaps,
        } = self;
        let capacity = gaps.len();
        let (mut kept, mut dropped, mut gap_ticks, mut max_ticks) = (0usize, 0u64, 0u64, 0u64);
        let fast = threshold.min(EXACT);
        let mut iterations = 0u64;
        let start = tsc::read();
        let mut prev = start;
        loop {
            let now = tsc::read();
            let d = now.wrapping_sub(prev);
            iterations += 1;
            if d < fast {
                buckets.exact[d as usize] += 1;
            } else {
                buckets.add(d);
                if d >= threshold {
                    if kept < capacity {
                        gaps[kept] = Gap {
                            start: prev,
                            ticks: d,
                        };
                        kept += 1;
                    } else {
                        dropped += 1;
                    }
                    gap_ticks += d;
                    max_ticks = max_ticks.max(d);
                    if now >= end || stop.load(Ordering::Relaxed) {
                        prev = now;
                        break;
                    }
                }
            }
            prev = now;
            if iterations & 0xffff == 0 && (now >= end || stop.load(Ordering::Relaxed)) {
                break;
            }
        }
        gaps.truncate(kept);
        Samples {
            start,
            end: prev,
            iterations,
            buckets,
            gaps,
            dropped,
            gap_ticks,
            max_ticks,
        }
    }
}

/// Keep a buffer in RAM (best effort: without CAP_IPC_LOCK and a large enough
/// RLIMIT_MEMLOCK it stays pageable, which only matters under memory pressure).
fn lock<T>(v: &[T]) {
    isol_sys::mem::lock(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buckets_cover_every_value_once_in_order() {
        let mut last_hi = EXACT - 1;
        for i in 0..LARGE {
            let (lo, hi) = Buckets::large_range(i);
            assert_eq!(lo, last_hi + 1, "bucket {i}");
            assert_eq!(Buckets::large_index(lo), i);
            assert_eq!(Buckets::large_index(hi), i);
            last_hi = hi;
        }
        assert_eq!(last_hi, u64::MAX);
    }

    #[test]
    fn buckets_resolve_within_one_percent() {
        for i in 0..LARGE {
            let (lo, hi) = Buckets::large_range(i);
            assert!((hi - lo) as f64 <= lo as f64 / 100.0, "{lo}..{hi}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_difference_is_counted_in_its_bucket(ds in proptest::collection::vec(0u64..1 << 40, 0..200)) {
            let mut b = Buckets::default();
            for &d in &ds {
                b.add(d);
            }
            proptest::prop_assert_eq!(b.total(), ds.len() as u64);
            for (lo, hi, c) in b.iter() {
                let n = ds.iter().filter(|&&d| d >= lo && d <= hi).count() as u64;
                proptest::prop_assert_eq!(c, n);
            }
        }
    }

    #[test]
    fn the_loop_counts_every_iteration_and_keeps_gaps_in_order() {
        let hz = tsc::calibrate(std::time::Duration::from_millis(10));
        let s = Sampler::new((hz / 1e6) as u64, 4); // 1 us
        let end = tsc::read() + (hz / 50.0) as u64; // 20 ms
        let stop = AtomicBool::new(false);
        let r = s.run(end, &stop);
        assert_eq!(r.buckets.total(), r.iterations);
        assert!(r.end >= end);
        assert!(r.gaps.len() <= 4);
        assert!(r.gaps.windows(2).all(|w| w[0].start < w[1].start));
        let kept: u64 = r.gaps.iter().map(|g| g.ticks).sum();
        assert!(r.gap_ticks >= kept);
        assert_eq!(r.gaps.len() as u64 + r.dropped > 0, r.max_ticks > 0);
    }
}
