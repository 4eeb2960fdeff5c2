//! The steps of a measurement, as types: each step consumes the one before, so the order
//! the noise rules need (samplers prepared off their CPUs, the watch started from
//! housekeeping before any sampler runs, samplers released only then) is the only order
//! that compiles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sampler::Sampler;
use super::tsc::{self, Mapping, Pair, TscInfo};
use super::{
    nice_ceil, summarize, typical_loop_ticks, NoiseError, NoiseOptions, Progress, Quiesce, Report,
    SamplerOut, SCHEMA, THRESHOLD_LOOPS,
};
use crate::interrupt::{Interruption, Record};
use crate::os::{self, Clock};
use crate::target::{refuse_rt_throttling, Target, Topology};
use crate::watch::{Watch, WatchOptions};
use crate::{CpuSet, SysRoot};

/// A validated request: the caller runs on housekeeping CPUs, the counter is calibrated
/// and the threshold chosen.
pub(super) struct Plan {
    notices: Vec<String>,
    info: TscInfo,
    /// Counter ticks per second.
    hz: f64,
    threshold_ns: u64,
    threshold_ticks: u64,
    duration_ticks: u64,
    /// Gaps kept per CPU.
    capacity: usize,
    /// CPUs to wait on for a stopped tick before measuring.
    quiesce: CpuSet,
}

impl Plan {
    /// Refuse what cannot be measured, move the caller to the housekeeping CPUs and
    /// calibrate there.
    pub(super) fn validate(root: &SysRoot, opts: &NoiseOptions) -> Result<Plan, NoiseError> {
        if opts.duration.is_zero() {
            return Err(NoiseError::ZeroDuration);
        }
        if opts.cpus.is_empty() {
            return Err(NoiseError::NoCpus);
        }
        let topo = Topology::read(root);
        let target = Target::choose_in(&topo, Some(&opts.cpus))?;
        if opts.fifo.is_some() {
            refuse_rt_throttling(root)?;
        }
        let housekeeping = target.housekeeping;
        os::pin_current_thread(&housekeeping).map_err(|source| NoiseError::Housekeeping {
            cpus: housekeeping.to_list(),
            source,
        })?;
        let mut notices = Vec::new();
        let info = TscInfo::read(root);
        notices.extend(info.warning());
        let hz = tsc::calibrate(Duration::from_millis(100));
        let ns_per_tick = 1e9 / hz;
        let typical_ns = typical_loop_ticks((hz / 50.0) as u64) as f64 * ns_per_tick;
        let threshold_ns = match opts.threshold_ns {
            Some(t) if (t as f64) < typical_ns => {
                return Err(NoiseError::ThresholdBelowLoop {
                    threshold_ns: t,
                    loop_ns: typical_ns,
                    min: typical_ns.ceil() as u64,
                })
            }
            Some(t) => t,
            None => nice_ceil(THRESHOLD_LOOPS as f64 * typical_ns),
        };
        let secs = opts.duration.as_secs_f64();
        let quiesce = if opts.quiesce {
            opts.cpus.intersection(&topo.nohz_full)
        } else {
            CpuSet::new()
        };
        Ok(Plan {
            notices,
            info,
            hz,
            threshold_ns,
            threshold_ticks: ((threshold_ns as f64) * hz / 1e9).ceil() as u64,
            duration_ticks: (secs * hz) as u64,
            capacity: opts
                .gap_capacity
                .unwrap_or(((secs * 50_000.0) as usize).clamp(100_000, 8 << 20)),
            quiesce,
        })
    }

    /// The report, from what the samplers measured and the watch traced.
    pub(super) fn report(self, root: &SysRoot, opts: &NoiseOptions, run: Collected) -> Report {
        let Collected {
            outs,
            records,
            attributed,
            notices: said,
        } = run;
        let mut notices = self.notices;
        notices.extend(said);
        let cpus = outs
            .iter()
            .map(|o| {
                let irqs: Vec<Interruption> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Interruption(i) if i.cpu == o.cpu => Some(i.clone()),
                        _ => None,
                    })
                    .collect();
                let lost = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Lost { cpu, events, .. } if *cpu == o.cpu => {
                            Some(events.unwrap_or(1))
                        }
                        _ => None,
                    })
                    .sum();
                summarize(o, self.hz, self.threshold_ns, &irqs, attributed, lost)
            })
            .collect::<Vec<_>>();
        for c in &cpus {
            if c.dropped_gaps > 0 {
                notices.push(format!(
                    "CPU {}: {} gaps beyond the {} kept are counted but not attributed; raise \
                     the threshold",
                    c.cpu, c.dropped_gaps, self.capacity
                ));
            }
            if c.lost_events > 0 {
                notices.push(format!(
                    "CPU {}: the trace lost {} events: some gaps may show as unexplained; give \
                     a larger --buffer-kb",
                    c.cpu, c.lost_events
                ));
            }
        }
        Report {
            schema: SCHEMA.into(),
            kernel: root
                .read_line("/proc/sys/kernel/osrelease")
                .unwrap_or_default(),
            tsc: self.info,
            tsc_hz: self.hz,
            requested_ns: opts.duration.as_nanos() as u64,
            threshold_ns: self.threshold_ns,
            threshold_default: opts.threshold_ns.is_none(),
            fifo: opts.fifo,
            attributed,
            notices,
            cpus,
        }
    }
}

type SamplerThread = (u32, JoinHandle<Result<SamplerOut, NoiseError>>);

/// Samplers prepared and pinned, each waiting at the start line.
pub(super) struct Held {
    go: Arc<Barrier>,
    stop_all: Arc<AtomicBool>,
    handles: Vec<SamplerThread>,
    /// The samplers' thread ids: the measured CPUs' residents.
    tids: Vec<i32>,
    notices: Vec<String>,
}

impl Held {
    /// Start one sampler per CPU. Each allocates and faults in its buffers here (the
    /// kernel's deferred work for them, RCU callbacks and page cache refills, stays off
    /// its CPU), turns SCHED_FIFO if asked, moves to its CPU, and waits.
    pub(super) fn prepare(plan: &Plan, opts: &NoiseOptions) -> Result<Held, NoiseError> {
        keep_memory_mapped();
        let mut notices = Vec::new();
        if !plan.quiesce.is_empty() {
            // Started here, on a housekeeping CPU: started by a sampler, the watcher thread
            // would begin life on the sampler's CPU, with its scheduling policy.
            if let Err(e) = isol_task::start_watcher(None) {
                notices.push(format!(
                    "cannot wait for the tick to stop before measuring: {e}"
                ));
            }
        }
        let go = Arc::new(Barrier::new(opts.cpus.len() + 1));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let stop_all = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for cpu in opts.cpus.iter() {
            let (go, tid_tx, stop_all) = (go.clone(), tid_tx.clone(), stop_all.clone());
            let (fifo, quiesce) = (opts.fifo, plan.quiesce.contains(cpu));
            let (threshold, capacity, ticks) =
                (plan.threshold_ticks, plan.capacity, plan.duration_ticks);
            let h = std::thread::Builder::new()
                .name(format!("isol-noise-{cpu}"))
                .spawn(move || -> Result<SamplerOut, NoiseError> {
                    let sampler = Sampler::new(threshold, capacity);
                    let prepared = prepare_sampler(cpu, fifo);
                    let _ = tid_tx.send(os::gettid());
                    go.wait();
                    prepared?;
                    let (guard, mut quiesce) = if quiesce {
                        enter_quiet(cpu)
                    } else {
                        (None, None)
                    };
                    let a = Pair::now(Clock::Monotonic);
                    let samples = sampler.run(tsc::read() + ticks, &stop_all);
                    let b = Pair::now(Clock::Monotonic);
                    if let (Some(g), Some(q)) = (guard, quiesce.as_mut()) {
                        let report = g.exit();
                        q.time_to_quiet_ns = report.time_to_quiet_ns;
                        q.isolation_interruptions = Some(report.interruptions);
                    }
                    Ok(SamplerOut {
                        cpu,
                        samples,
                        mapping: Mapping { a, b },
                        quiesce,
                    })
                })
                .map_err(|source| NoiseError::Sampler {
                    cpu,
                    what: "spawn the thread",
                    source,
                })?;
            handles.push((cpu, h));
        }
        drop(tid_tx);
        Ok(Held {
            go,
            stop_all,
            tids: tids(&tid_rx, opts.cpus.len()),
            handles,
            notices,
        })
    }

    /// Start tracing the measured CPUs (if attribution is on) while every sampler is held.
    /// On failure the samplers are released to stop at once, and joined.
    pub(super) fn start_watch(
        mut self,
        root: &SysRoot,
        opts: &NoiseOptions,
    ) -> Result<(Held, Option<Watch>), NoiseError> {
        if !opts.attribute {
            return Ok((self, None));
        }
        let mut w = WatchOptions::new(opts.cpus.clone());
        w.residents = self.tids.clone();
        w.pinned_residents = false;
        w.syscalls = true;
        w.buffer_kb = opts.buffer_kb;
        match Watch::start(root, w) {
            Ok(w) => {
                self.notices.extend(w.notices().iter().cloned());
                Ok((self, Some(w)))
            }
            Err(e) => {
                self.stop_all.store(true, Ordering::Relaxed);
                self.go.wait();
                for (_, h) in self.handles {
                    let _ = h.join();
                }
                Err(NoiseError::Trace(e))
            }
        }
    }

    /// Let the samplers run.
    pub(super) fn release(self) -> Running {
        self.go.wait();
        Running {
            stop_all: self.stop_all,
            handles: self.handles,
            notices: self.notices,
            started: Instant::now(),
        }
    }
}

/// Collect the samplers' thread ids, one per sampler that started.
fn tids(rx: &Receiver<i32>, n: usize) -> Vec<i32> {
    (0..n).filter_map(|_| rx.recv().ok()).collect()
}

/// What a run measured and traced.
pub(super) struct Collected {
    outs: Vec<SamplerOut>,
    records: Vec<Record>,
    /// Whether the watch ran (gaps can be attributed).
    attributed: bool,
    /// Said while preparing and tracing.
    notices: Vec<String>,
}

/// Samplers measuring.
pub(super) struct Running {
    stop_all: Arc<AtomicBool>,
    handles: Vec<SamplerThread>,
    notices: Vec<String>,
    started: Instant,
}

impl Running {
    /// Poll the watch and report progress until every sampler ends (or `stop`), then
    /// stop the watch: what each sampler measured, every record, and whether the gaps
    /// could be attributed.
    pub(super) fn collect(
        self,
        mut watch: Option<Watch>,
        total: Duration,
        stop: &AtomicBool,
        mut progress: impl FnMut(Progress),
    ) -> Result<Collected, NoiseError> {
        let mut records: Vec<Record> = Vec::new();
        let mut seen = 0u64;
        while !self.handles.iter().all(|(_, h)| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            if stop.load(Ordering::Relaxed) {
                self.stop_all.store(true, Ordering::Relaxed);
            }
            if let Some(w) = watch.as_mut() {
                let r = w.poll()?;
                seen += r
                    .iter()
                    .filter(|r| matches!(r, Record::Interruption(_)))
                    .count() as u64;
                records.extend(r);
            }
            progress(Progress {
                elapsed: self.started.elapsed(),
                total,
                interruptions: seen,
            });
        }
        let mut outs = Vec::new();
        for (cpu, h) in self.handles {
            let r = h.join().map_err(|_| NoiseError::Sampler {
                cpu,
                what: "the sampler thread",
                source: std::io::Error::other("it panicked"),
            })?;
            outs.push(r?);
        }
        let attributed = watch.is_some();
        if let Some(w) = watch.take() {
            // Let the last events reach the buffers.
            std::thread::sleep(Duration::from_millis(20));
            records.extend(w.stop()?);
        }
        Ok(Collected {
            outs,
            records,
            attributed,
            notices: self.notices,
        })
    }
}

/// Make the calling thread SCHED_FIFO if asked, then pin it to `cpu`. In that order: a
/// thread that runs on a nohz_full CPU as SCHED_OTHER, even briefly, starts the CPU's fair
/// deadline server, whose timer (on a housekeeping CPU) pokes the CPU up to a second later
/// (seen in the lab as an irq_work IPI from `irq_work_queue_on`).
fn prepare_sampler(cpu: u32, fifo: Option<i32>) -> Result<(), NoiseError> {
    if let Some(p) = fifo {
        os::set_fifo(p).map_err(|source| NoiseError::Sampler {
            cpu,
            what: "sched_setscheduler(SCHED_FIFO)",
            source,
        })?;
    }
    os::pin_current_thread(&CpuSet::from_iter([cpu])).map_err(|source| NoiseError::Sampler {
        cpu,
        what: "sched_setaffinity",
        source,
    })
}

/// Wait, through task isolation, until the CPU's tick has stopped.
fn enter_quiet(cpu: u32) -> (Option<isol_task::IsolatedGuard>, Option<Quiesce>) {
    use isol_task::{Isolation, Wait};
    let r = Isolation::builder()
        .cpu(cpu)
        .pin(true)
        .mlock(false)
        .prefault_stack(0)
        .wait(Wait::Spin)
        .timeout(Duration::from_secs(5))
        .enter();
    let quiesce = |quiet: bool, reason: Option<String>| Quiesce {
        quiet,
        time_to_quiet_ns: None,
        reason,
        isolation_interruptions: None,
    };
    match r {
        Ok(g) => (Some(g), Some(quiesce(true, None))),
        Err(e) => (None, Some(quiesce(false, Some(e.to_string())))),
    }
}

/// Make this process's allocator keep what it maps (glibc: one arena, no `mmap` below
/// 32 MiB, no trimming). Unmapping memory, or moving it with `mremap` when a vector grows,
/// flushes the TLB of every CPU running a thread of the process: an IPI to each sampler,
/// measured as noise isol made itself. The setting stays for the life of the process.
fn keep_memory_mapped() {
    isol_sys::mem::keep_allocations_mapped();
}
