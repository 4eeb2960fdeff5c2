//! OS noise, measured from userspace at nanosecond resolution and attributed.
//!
//! One `sampler` thread per target CPU reads the TSC in a tight loop; every difference
//! between two reads goes into a histogram, every one at or above a threshold is kept as
//! a gap. At the same time the [`crate::watch`] engine traces the same CPUs from a
//! housekeeping CPU; afterwards each gap is joined with the interruptions inside it
//! ([`attribute`]), on `CLOCK_MONOTONIC` through a TSC mapping measured at both ends of
//! the run (`tsc`). What the kernel's osnoise tracer does in the kernel, on any kernel.
//!
//! Data flow of [`run`]: validate → calibrate the TSC and measure the loop period on a
//! housekeeping CPU → spawn samplers (pinned, optionally SCHED_FIFO, buffers written and
//! locked) → start the watch with the samplers as residents → release the samplers (each
//! first waits for its CPU's tick to stop when the CPU is nohz_full, through
//! [`isol_task`]) → poll the watch every 100 ms while they run → stop → statistics and
//! attribution per CPU ([`CpuNoise`]).
//!
//! ## The default threshold
//!
//! 25 loop periods, rounded up to the next 1, 2 or 5 × 10^n ns (500 ns for loops of 8 to
//! 20 ns, 1 us up to 40 ns), so that runs on one machine share a threshold. Shorter
//! differences are the CPU's own hiccups (a cache miss, a branch mispredict, an SMT
//! sibling's burst), not the OS: entering and leaving the kernel alone costs more.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod attribute;
mod sampler;
mod steps;
mod tsc;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::interrupt::Interruption;
use crate::target::TargetError;
use crate::tracefs::TraceError;
use isol_model::{CpuSet, SysRoot};

// The layers below, by the names the code uses.
use attribute::{CauseRow, Span};
use isol_model::{kernel, target, thread as os};
use isol_trace::{interrupt, tracefs, watch};
use sampler::{Sampler, Samples};
use steps::{Held, Plan};
use tsc::Mapping;
pub use tsc::TscInfo;

/// JSON schema of [`Report`] (docs/noise-json.md).
pub const SCHEMA: &str = "isol.noise/v1";
/// Default threshold in loop periods (see [`nice_ceil`] for the rounding).
pub const THRESHOLD_LOOPS: u64 = 25;
/// How far (ns) an interruption may lie outside a gap and still explain it: the TSC
/// mapping's uncertainty.
const SLACK_NS: u64 = 500;

/// What to measure and how.
#[derive(Debug, Clone)]
pub struct NoiseOptions {
    /// The CPUs to measure.
    pub cpus: CpuSet,
    /// How long.
    pub duration: Duration,
    /// Smallest gap counted as noise, ns. None: [`THRESHOLD_LOOPS`] loop periods.
    pub threshold_ns: Option<u64>,
    /// Run the samplers SCHED_FIFO at this priority (needs RT throttling off).
    pub fifo: Option<i32>,
    /// Trace the CPUs at the same time and attribute gaps.
    pub attribute: bool,
    /// On nohz_full CPUs, wait until the tick has stopped before measuring.
    pub quiesce: bool,
    /// Gaps kept per CPU (more are counted, not kept). None: 50 000 per second of run.
    pub gap_capacity: Option<usize>,
    /// Trace buffer per CPU, KiB.
    pub buffer_kb: Option<u32>,
}

impl NoiseOptions {
    /// Options with defaults for `cpus` over `duration`.
    pub fn new(cpus: CpuSet, duration: Duration) -> NoiseOptions {
        NoiseOptions {
            cpus,
            duration,
            threshold_ns: None,
            fifo: None,
            attribute: true,
            quiesce: true,
            gap_capacity: None,
            buffer_kb: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
/// Why a measurement could not run.
pub enum NoiseError {
    #[error("the duration must be more than zero")]
    /// A zero duration.
    ZeroDuration,
    #[error("no CPU to measure: give at least one")]
    /// No CPU given.
    NoCpus,
    /// An offline CPU, no housekeeping CPU left, or SCHED_FIFO throttled.
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(
        "threshold {threshold_ns} ns is below the sampler's loop period ({loop_ns:.1} ns on \
         this machine): no gap that short can be seen; give at least {min} ns"
    )]
    /// The threshold is below what the loop can see.
    ThresholdBelowLoop {
        /// The threshold asked for.
        threshold_ns: u64,
        /// The loop period.
        loop_ns: f64,
        /// The smallest usable threshold.
        min: u64,
    },
    #[error("sampler on CPU {cpu}: {what}: {source}")]
    /// A sampler thread could not be set up.
    Sampler {
        /// Its CPU.
        cpu: u32,
        /// What failed.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    #[error("cannot move isol to housekeeping CPUs {cpus}: {source}")]
    /// isol could not move to the housekeeping CPUs.
    Housekeeping {
        /// The housekeeping CPUs.
        cpus: String,
        /// Why.
        source: std::io::Error,
    },
    #[error("tracing: {0}")]
    /// Tracing failed.
    Trace(#[from] TraceError),
}

/// How a sampler's CPU was made quiet before measuring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quiesce {
    /// The tick had stopped and nothing interrupted the CPU for the confirmation window.
    pub quiet: bool,
    /// From the start of `enter` to quiet, ns.
    pub time_to_quiet_ns: Option<u64>,
    /// Why the CPU was not made quiet (not nohz_full, or what kept the tick).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Interruptions the isolation watcher counted while the sampler ran (a cross-check
    /// of the attribution, from a second tracing instance).
    pub isolation_interruptions: Option<u64>,
}

/// One gap, for plots and for a reader who wants them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapOut {
    /// From the start of this CPU's measurement, ns.
    pub at_ns: u64,
    /// Start (CLOCK_MONOTONIC ns).
    pub ns: u64,
    /// The interruption that took most of it; None: nothing explains it.
    pub cause: Option<String>,
}

/// A percentile of the gaps at or above the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    /// The percentile (`99.9`).
    pub p: f64,
    /// The gap length at it, ns.
    pub ns: u64,
}

/// Gaps nothing explains.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unexplained {
    /// How many gaps.
    pub count: u64,
    /// Their total, ns.
    pub total_ns: u64,
    /// The longest, ns.
    pub max_ns: u64,
}

/// Everything measured on one CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuNoise {
    /// The CPU.
    pub cpu: u32,
    /// How long it was measured, ns.
    pub duration_ns: u64,
    /// Start of the measurement on CLOCK_MONOTONIC (the trace clock).
    pub start_ns: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// Mean time per loop iteration: duration / iterations (as oslat computes it).
    pub loop_ns: f64,
    /// The most frequent difference between two reads: the loop's own period.
    pub typical_loop_ns: f64,
    /// Gaps shorter than this were not counted, ns.
    pub threshold_ns: u64,
    /// Gaps at or above the threshold.
    pub gaps: u64,
    /// Gaps per second.
    pub gaps_per_sec: f64,
    /// Sum of those gaps.
    pub noise_ns: u64,
    /// 100 × (1 − noise / duration).
    pub available_pct: f64,
    /// The longest gap, ns.
    pub max_ns: u64,
    /// Gap length percentiles.
    pub percentiles: Vec<Percentile>,
    /// Every difference between two reads: `[ns, count]` per non-empty bucket, ascending;
    /// exact to the counter tick below 1024 ticks, within 0.8 % above.
    pub histogram: Vec<[u64; 2]>,
    /// Per-cause table, most total time first (empty without attribution).
    pub causes: Vec<CauseRow>,
    /// Gaps no traced interruption explains.
    pub unexplained: Unexplained,
    /// Interruptions traced on this CPU during the measurement that fell in no gap
    /// (shorter than the threshold).
    pub interruptions_outside_gaps: u64,
    /// Events the trace lost on this CPU (attribution is incomplete when non-zero).
    pub lost_events: u64,
    /// The wait for a stopped tick, when asked.
    pub quiesce: Option<Quiesce>,
    /// Gaps beyond the kept capacity: in the counts and sums, not in `gap_list`.
    pub dropped_gaps: u64,
    /// Every gap kept, in time order.
    pub gap_list: Vec<GapOut>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// JSON schema identifier.
    pub schema: String,
    /// Kernel release.
    pub kernel: String,
    /// The time stamp counter.
    pub tsc: TscInfo,
    /// Its measured rate, Hz.
    pub tsc_hz: f64,
    /// The duration asked for, ns.
    pub requested_ns: u64,
    /// The threshold and whether it was the default.
    pub threshold_ns: u64,
    /// Whether the threshold was chosen by isol.
    pub threshold_default: bool,
    /// SCHED_FIFO priority of the samplers.
    pub fifo: Option<i32>,
    /// Whether gaps were attributed (tracing ran).
    pub attributed: bool,
    /// What the reader should know.
    pub notices: Vec<String>,
    /// Per CPU.
    pub cpus: Vec<CpuNoise>,
}

/// What the caller sees while the run goes on.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// The duration asked for.
    pub total: Duration,
    /// Interruptions of the measured CPUs traced so far.
    pub interruptions: u64,
}

struct SamplerOut {
    cpu: u32,
    samples: Samples,
    mapping: Mapping,
    quiesce: Option<Quiesce>,
}

/// The loop's typical period on the calling CPU, in counter ticks: the most frequent
/// difference over `window`.
pub fn typical_loop_ticks(window_ticks: u64) -> u64 {
    let s = Sampler::new(u64::MAX, 1);
    let r = s.run(tsc::read() + window_ticks, &AtomicBool::new(false));
    r.buckets
        .iter()
        .max_by_key(|b| b.2)
        .map(|b| b.0.max(1))
        .unwrap_or(1)
}

/// Measure. `stop` ends the run early (Ctrl-C); `progress` is called about every 100 ms
/// from the calling thread, which runs on housekeeping CPUs from the start.
///
/// The steps, in the only order the types allow: `Plan::validate` (refusals, the caller
/// moved to housekeeping CPUs, the counter calibrated); `Held::prepare` (each sampler's
/// memory set up on a housekeeping CPU, then SCHED_FIFO, then pinned, then held);
/// `Held::start_watch` (tracing started from housekeeping, with the samplers as the CPUs'
/// residents); `Held::release`; `Running::collect`; `Plan::report`.
pub fn run(
    root: &SysRoot,
    opts: &NoiseOptions,
    stop: &AtomicBool,
    progress: impl FnMut(Progress),
) -> Result<Report, NoiseError> {
    let plan = Plan::validate(root, opts)?;
    let held = Held::prepare(&plan, opts)?;
    let (held, watch) = held.start_watch(root, opts)?;
    let running = held.release();
    let collected = running.collect(watch, opts.duration, stop, progress)?;
    Ok(plan.report(root, opts, collected))
}

/// The smallest 1, 2 or 5 × 10^n at or above `v` (at least 10).
pub fn nice_ceil(v: f64) -> u64 {
    let mut base = 10u64;
    loop {
        for m in [1, 2, 5] {
            if (base * m) as f64 >= v {
                return base * m;
            }
        }
        base *= 10;
    }
}

const PERCENTILES: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999];

fn summarize(
    o: &SamplerOut,
    hz: f64,
    threshold_ns: u64,
    irqs: &[Interruption],
    attributed: bool,
    lost_events: u64,
) -> CpuNoise {
    let s = &o.samples;
    let ns = |ticks: u64| (ticks as f64 * 1e9 / hz).round() as u64;
    let duration_ns = ns(s.end - s.start);
    let threshold_ticks = (threshold_ns as f64 * hz / 1e9).ceil() as u64;
    // All differences in ns, and those at or above the threshold.
    let mut all = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant figures");
    let mut above = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant figures");
    let mut typical = (0u64, 0u64);
    for (lo, hi, count) in s.buckets.iter() {
        let v = ns((lo + hi) / 2).max(1);
        all.record_n(v, count).expect("auto-resizing histogram");
        if lo >= threshold_ticks {
            above.record_n(v, count).expect("auto-resizing histogram");
        }
        if count > typical.1 {
            typical = (lo, count);
        }
    }
    let histogram = all
        .iter_recorded()
        .map(|v| {
            [
                all.lowest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            ]
        })
        .collect();
    let percentiles = if above.is_empty() {
        Vec::new()
    } else {
        PERCENTILES
            .iter()
            .map(|&p| Percentile {
                p,
                ns: above.value_at_quantile(p / 100.0),
            })
            .collect()
    };
    let gaps = s.gaps.len() as u64 + s.dropped;
    let noise_ns = ns(s.gap_ticks);
    let spans: Vec<Span> = s
        .gaps
        .iter()
        .map(|g| {
            let start_ns = o.mapping.ns(g.start);
            Span {
                start_ns,
                len_ns: o.mapping.ns(g.start + g.ticks).saturating_sub(start_ns),
            }
        })
        .collect();
    let start_ns = o.mapping.ns(s.start);
    let end_ns = o.mapping.ns(s.end);
    let during: Vec<Interruption> = irqs
        .iter()
        .filter(|i| i.start_ns + i.duration_ns.unwrap_or(0) >= start_ns && i.start_ns <= end_ns)
        .cloned()
        .collect();
    let joined = attribute::join(&spans, &during, SLACK_NS);
    let (causes, main) = attribute::causes(&during, &joined);
    let mut unexplained = Unexplained::default();
    let gap_list = s
        .gaps
        .iter()
        .zip(main)
        .map(|(g, cause)| {
            let len = ns(g.ticks);
            if attributed && cause.is_none() {
                unexplained.count += 1;
                unexplained.total_ns += len;
                unexplained.max_ns = unexplained.max_ns.max(len);
            }
            GapOut {
                at_ns: ns(g.start - s.start),
                ns: len,
                cause,
            }
        })
        .collect();
    CpuNoise {
        cpu: o.cpu,
        duration_ns,
        start_ns,
        iterations: s.iterations,
        loop_ns: duration_ns as f64 / s.iterations.max(1) as f64,
        typical_loop_ns: typical.0 as f64 * 1e9 / hz,
        threshold_ns,
        gaps,
        gaps_per_sec: gaps as f64 * 1e9 / duration_ns.max(1) as f64,
        noise_ns,
        available_pct: 100.0 * (1.0 - noise_ns as f64 / duration_ns.max(1) as f64),
        max_ns: ns(s.max_ticks),
        percentiles,
        histogram,
        causes,
        unexplained,
        interruptions_outside_gaps: joined.outside.len() as u64,
        lost_events,
        quiesce: o.quiesce.clone(),
        dropped_gaps: s.dropped,
        gap_list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::Kind;
    use sampler::{Buckets, Gap};
    use tsc::Pair;

    #[test]
    fn default_thresholds_are_round_numbers() {
        assert_eq!(nice_ceil(1.0), 10);
        assert_eq!(nice_ceil(290.0), 500);
        assert_eq!(nice_ceil(500.0), 500);
        assert_eq!(nice_ceil(501.0), 1000);
        assert_eq!(nice_ceil(1500.0), 2000);
    }

    fn irq(start: u64, dur: u64, kind: Kind, source: &str) -> Interruption {
        attribute::test_irq(start, dur, dur, kind, source)
    }

    /// A 1 GHz counter (1 tick = 1 ns) mapped onto the trace clock 1 s later: one second
    /// of 10 ns loops with three gaps, two of them explained.
    #[test]
    fn statistics_and_attribution_of_a_known_run() {
        let mut buckets = Buckets::default();
        let gaps = [
            Gap {
                start: 100_000,
                ticks: 4_000,
            },
            Gap {
                start: 500_000,
                ticks: 20_000,
            },
            Gap {
                start: 900_000,
                ticks: 1_000,
            },
        ];
        let loops = 99_000_000u64;
        for _ in 0..loops {
            buckets.add(10);
        }
        for g in &gaps {
            buckets.add(g.ticks);
        }
        let o = SamplerOut {
            cpu: 1,
            samples: Samples {
                start: 0,
                end: 1_000_000_000,
                iterations: loops + 3,
                buckets,
                gaps: gaps.to_vec(),
                dropped: 0,
                gap_ticks: 25_000,
                max_ticks: 20_000,
            },
            mapping: Mapping {
                a: Pair {
                    tsc: 0,
                    ns: 1_000_000_000,
                    width: 0,
                },
                b: Pair {
                    tsc: 1_000_000_000,
                    ns: 2_000_000_000,
                    width: 0,
                },
            },
            quiesce: None,
        };
        let irqs = [
            irq(1_000_100_500, 3_000, Kind::LocalTimer, "tick"),
            irq(1_000_501_000, 18_000, Kind::Task, "kworker/1:1"),
            irq(1_000_700_000, 100, Kind::Ipi, "short"),
            irq(5_000_000_000, 100, Kind::Ipi, "after the run"),
        ];
        let c = summarize(&o, 1e9, 500, &irqs, true, 0);
        assert_eq!(c.duration_ns, 1_000_000_000);
        assert_eq!(c.gaps, 3);
        assert!((c.gaps_per_sec - 3.0).abs() < 1e-9);
        assert_eq!(c.noise_ns, 25_000);
        assert_eq!(c.max_ns, 20_000);
        assert!((c.available_pct - 99.9975).abs() < 1e-9);
        assert!((c.typical_loop_ns - 10.0).abs() < 1e-9);
        assert!((c.loop_ns - 1e9 / (loops + 3) as f64).abs() < 1e-9);
        assert_eq!(c.start_ns, 1_000_000_000);
        let h: u64 = c.histogram.iter().map(|b| b[1]).sum();
        assert_eq!(h, loops + 3);
        assert_eq!(c.histogram[0], [10, loops]);
        // Percentiles of the three gaps: within the histogram's 0.8 % buckets.
        let p50 = c.percentiles.iter().find(|p| p.p == 50.0).unwrap().ns;
        assert!((3_950..=4_050).contains(&p50), "{p50}");
        let p99 = c.percentiles.iter().find(|p| p.p == 99.0).unwrap().ns;
        assert!((19_800..=20_200).contains(&p99), "{p99}");
        assert_eq!(c.causes.len(), 2);
        assert_eq!(c.causes[0].culprit, "kworker/1:1");
        assert_eq!(c.causes[1].culprit, "tick");
        assert_eq!(
            c.unexplained,
            Unexplained {
                count: 1,
                total_ns: 1_000,
                max_ns: 1_000
            }
        );
        assert_eq!(c.interruptions_outside_gaps, 1);
        let causes: Vec<_> = c.gap_list.iter().map(|g| g.cause.as_deref()).collect();
        assert_eq!(
            causes,
            [Some("local_timer: tick"), Some("task: kworker/1:1"), None]
        );
        assert_eq!(c.gap_list[1].at_ns, 500_000);
        // Without attribution nothing is called unexplained.
        let c = summarize(&o, 1e9, 500, &[], false, 0);
        assert_eq!(c.unexplained, Unexplained::default());
        assert!(c.causes.is_empty());
    }
}

#[cfg(test)]
mod validation {
    use super::*;

    fn root(online: &str) -> (tempfile::TempDir, SysRoot) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sys/devices/system/cpu");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("online"), format!("{online}\n")).unwrap();
        let root = SysRoot::at(dir.path());
        (dir, root)
    }

    fn run_on(online: &str, cpus: &str, duration: Duration) -> Result<Report, NoiseError> {
        let (_dir, root) = root(online);
        let opts = NoiseOptions::new(CpuSet::parse_list(cpus).unwrap(), duration);
        run(&root, &opts, &AtomicBool::new(false), |_| {})
    }

    #[test]
    fn bad_requests_are_refused_before_anything_runs() {
        let second = Duration::from_secs(1);
        assert!(matches!(
            run_on("0-3", "1", Duration::ZERO),
            Err(NoiseError::ZeroDuration)
        ));
        assert!(matches!(run_on("0-3", "", second), Err(NoiseError::NoCpus)));
        let e = run_on("0,2-3", "1-2", second).unwrap_err();
        assert!(
            matches!(&e, NoiseError::Target(TargetError::Offline { cpus, .. }) if cpus.contains(1)),
            "{e}"
        );
        assert!(e.to_string().contains("online: 0,2-3"), "{e}");
        let e = run_on("0-1", "0-1", second).unwrap_err();
        assert!(e.to_string().contains("housekeeping"), "{e}");
    }

    #[test]
    fn a_threshold_below_the_loop_period_is_refused() {
        let (_dir, root) = root("0-1");
        let mut opts = NoiseOptions::new(CpuSet::from_iter([1]), Duration::from_secs(1));
        opts.threshold_ns = Some(1);
        let e = run(&root, &opts, &AtomicBool::new(false), |_| {}).unwrap_err();
        let NoiseError::ThresholdBelowLoop { loop_ns, min, .. } = e else {
            panic!("{e}")
        };
        assert!(loop_ns > 1.0 && min as f64 >= loop_ns, "{loop_ns} {min}");
    }

    #[test]
    fn fifo_with_rt_throttling_on_is_refused() {
        let (dir, root) = root("0-1");
        let p = dir.path().join("proc/sys/kernel");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("sched_rt_runtime_us"), "950000\n").unwrap();
        let mut opts = NoiseOptions::new(CpuSet::from_iter([1]), Duration::from_secs(1));
        opts.fifo = Some(1);
        let e = run(&root, &opts, &AtomicBool::new(false), |_| {}).unwrap_err();
        assert!(
            matches!(
                e,
                NoiseError::Target(TargetError::RtThrottled { runtime_us: 950000 })
            ),
            "{e}"
        );
    }
}
