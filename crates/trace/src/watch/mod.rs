//! The watch engine: traces interruptions of a set of CPUs and reports them as
//! [`Record`]s.
//!
//! Data flow: a private tracefs [`Instance`] records the events of `decode::EVENTS` (and
//! `irq_vectors`), filtered to the watched CPUs; [`Watch::poll`], called on a timer from a
//! housekeeping CPU, reads every CPU's buffer without blocking, decodes the pages
//! ([`crate::tracefs::ring`]) into typed events, orders them by time across CPUs, and runs
//! the state machine (`machine.rs`) that turns them into interruptions. Events newer than a short hold-back
//! wait for the next poll, so an IPI sent from CPU 0 is seen before the interrupt it causes
//! on CPU 1 even when CPU 0's buffer is read later.

mod cost;
mod decode;
mod machine;
mod replay;
pub mod summary;
mod tasks;

pub use cost::Cost;
use cost::CostMeter;
pub use replay::{
    decode_only, missing_events, replay, replay_each, replay_recorded, Replay, Replayed,
};
pub use tasks::residents_now;
use tasks::LiveTasks;
pub(crate) use tasks::{Placement, TaskLookup};

use std::path::{Path, PathBuf};

use crate::interrupt::Record;
use crate::symbols::Symbols;
use crate::tracefs::record::{Recorder, TraceManifest, TRACE_FORMAT};
use crate::tracefs::ring::{Missed, Page};
use crate::tracefs::{CpuReader, Instance, PageLayout, TraceError, Tracefs, ARMED};
use crate::{CpuSet, SysRoot};
use decode::{Event, Schema, What};
use machine::Machine;

/// The trace clock isol uses: `CLOCK_MONOTONIC`, the same on every CPU and readable from
/// userspace, so event times compare with the caller's own clock.
pub const CLOCK: &str = "mono";
/// How long events wait for slower CPUs' buffers before being processed.
const HOLDBACK_NS: u64 = 20_000_000;

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The CPUs to watch.
    pub cpus: CpuSet,
    /// Leave the events on at the end, in the long-lived armed instance
    /// ([`crate::tracefs::ARMED`]), so later watches start and stop without patching code.
    /// Any watch reuses the armed instance when it exists and no other run holds it.
    pub keep_armed: bool,
    /// Record the sender's kernel stack for IPIs, queued work and wakeups.
    pub stack: bool,
    /// Trace system calls made on the watched CPUs.
    pub syscalls: bool,
    /// Trace page faults on the watched CPUs.
    pub faults: bool,
    /// Tasks that belong on the watched CPUs: their running is not an interruption. User
    /// tasks running there when the watch starts are added, and so is any task that is
    /// preempted there while it was not itself an interruption.
    pub residents: Vec<i32>,
    /// Count as residents the user tasks that arrive on the watched CPUs pinned there (the
    /// application a user starts after the watch). On by default; off where the workload
    /// is known (a task being isolated, `noise`'s samplers, `--pid`): another task pinned
    /// there then interrupts it.
    pub pinned_residents: bool,
    /// Per-CPU buffer size; the kernel's default when None.
    pub buffer_kb: Option<u32>,
    /// Keep the raw pages in this directory (see [`crate::tracefs::record`]).
    pub record: Option<PathBuf>,
    /// What the reader should know.
    pub note: String,
    /// How long events wait for slower CPUs' buffers before being processed: the latency
    /// of [`Watch::poll`]. Shorter suits a watcher that must decide fast (task isolation);
    /// IPI senders read after the hold-back are then not matched.
    pub holdback_ns: u64,
}

impl WatchOptions {
    /// Options with defaults for `cpus`.
    pub fn new(cpus: CpuSet) -> WatchOptions {
        WatchOptions {
            cpus,
            keep_armed: false,
            stack: false,
            syscalls: true,
            faults: true,
            residents: Vec::new(),
            pinned_residents: true,
            buffer_kb: None,
            record: None,
            note: String::new(),
            holdback_ns: HOLDBACK_NS,
        }
    }
}

/// Counters of the engine's own work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Ring buffer pages read.
    pub pages: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Events decoded.
    pub events: u64,
    /// Pages the kernel overwrote before they were read.
    pub lost_pages: u64,
}

/// Page decoding shared by live watching and replay.
struct Decoder {
    schema: Schema,
    layout: PageLayout,
    held: Vec<Event>,
    last_ts: std::collections::HashMap<u32, u64>,
    stats: Stats,
    /// Kernel addresses named by the events, kept while recording (to store their names).
    addrs: Option<std::collections::BTreeSet<u64>>,
    /// Events outside this time window are corrupt (a replayed recording's span).
    window: Option<(u64, u64)>,
}

impl Decoder {
    fn new(schema: Schema, layout: PageLayout) -> Decoder {
        Decoder {
            schema,
            layout,
            held: Vec::new(),
            last_ts: Default::default(),
            stats: Stats::default(),
            addrs: None,
            window: None,
        }
    }

    fn ingest(&mut self, cpu: u32, page: &[u8]) {
        self.stats.pages += 1;
        let last = self.last_ts.get(&cpu).copied().unwrap_or(0);
        let lost = |ts: u64, events, reason: String| Event {
            ts,
            cpu,
            pid: -1,
            flags: 0,
            what: What::Lost { events, reason },
        };
        let p = match Page::parse(&self.layout, page) {
            Ok(p) => p,
            Err(e) => {
                self.stats.lost_pages += 1;
                self.held.push(lost(last, None, e.to_string()));
                return;
            }
        };
        self.stats.bytes += p.len() as u64;
        match p.missed {
            Missed::None => {}
            Missed::Unknown => self.held.push(lost(
                p.timestamp,
                None,
                "ring buffer overflowed: events were dropped".into(),
            )),
            Missed::Count(n) => self.held.push(lost(
                p.timestamp,
                Some(n),
                "ring buffer overflowed: events were dropped".into(),
            )),
        }
        let mut ts = last;
        let mut outside = 0u64;
        for raw in p.events() {
            match raw {
                Ok(raw) => {
                    if let Some((lo, hi)) = self.window {
                        if raw.ts < lo || raw.ts > hi {
                            outside += 1;
                            continue;
                        }
                    }
                    ts = raw.ts;
                    self.stats.events += 1;
                    if let Some(e) = self.schema.decode(cpu, &raw) {
                        if let Some(a) = &mut self.addrs {
                            a.extend(e.what.addresses());
                        }
                        self.held.push(e);
                    }
                }
                Err(e) => {
                    self.stats.lost_pages += 1;
                    self.held.push(lost(ts, None, e.to_string()));
                }
            }
        }
        if outside > 0 {
            self.stats.lost_pages += 1;
            self.held.push(lost(
                ts,
                Some(outside),
                "events stamped outside the recording's time span (corrupt page)".into(),
            ));
        }
        self.last_ts.insert(cpu, ts);
    }

    /// Feed the machine every held event up to `horizon`, in time order.
    fn drain(&mut self, machine: &mut Machine, horizon: u64) {
        self.held.sort_by_key(|e| e.ts);
        let n = self.held.partition_point(|e| e.ts <= horizon);
        for e in self.held.drain(..n) {
            machine.feed(e);
        }
    }
}

/// The state machine for `targets`, told what this kernel cannot trace.
fn new_machine(
    targets: CpuSet,
    symbols: Symbols,
    schema: &Schema,
    residents: &[i32],
    tasks: Box<dyn TaskLookup>,
) -> Machine {
    let mut m = Machine::new(targets, symbols, schema.vectors.clone(), residents, tasks);
    if !schema.has_ipi_senders() {
        m.without_ipi_events();
    }
    m
}

/// A live watch. Dropping it removes the tracing instance.
pub struct Watch {
    tracefs: Tracefs,
    instance: Option<Instance>,
    readers: Vec<CpuReader>,
    traced: Vec<u32>,
    decoder: Decoder,
    machine: Machine,
    page: Vec<u8>,
    recorder: Option<Recorder>,
    opts: WatchOptions,
    residents: Vec<i32>,
    notices: Vec<String>,
    started_ns: u64,
    start_cost: Cost,
    /// Events enabled in the instance.
    enabled: usize,
}

impl Watch {
    /// Create the instance, enable and filter the events, and start recording.
    pub fn start(root: &SysRoot, opts: WatchOptions) -> Result<Watch, TraceError> {
        let mut notices = Vec::new();
        let tracefs = match Tracefs::locate(root) {
            // A fresh machine may not have tracefs mounted: mount it where it belongs, as
            // trace-cmd does (it costs nothing until events are enabled).
            Err(TraceError::NotMounted) if root.is_live() => {
                Tracefs::mount_default().map_err(|e| {
                    TraceError::Recording(format!("{}; {e}", TraceError::NotMounted))
                })?;
                notices.push(format!(
                    "mounted tracefs at {}",
                    crate::tracefs::DEFAULT_MOUNT
                ));
                Tracefs::locate(root)?
            }
            other => other?,
        };
        let layout = tracefs.page_layout()?;
        let schema = Schema::bind(&tracefs, opts.syscalls, opts.faults)?;
        let clocks = tracefs.clocks();
        if !clocks.iter().any(|c| c == CLOCK) {
            return Err(TraceError::Clock {
                wanted: CLOCK.into(),
                available: clocks.join(" "),
            });
        }
        notices.extend(schema.missing_notices());
        let stale = tracefs.stale_instances();
        if !stale.is_empty() {
            notices.push(format!(
                "tracing instances left by crashed isol runs: {} (remove them with `isol watch --cleanup`)",
                stale.join(", ")
            ));
        }
        let symbols = Symbols::load(root);
        if symbols.is_empty() {
            notices.push(
                "/proc/kallsyms shows no addresses (needs root, kernel.kptr_restrict < 2): \
                 functions are shown as addresses"
                    .into(),
            );
        }
        // The output directory first: a recording that cannot be written is refused before
        // anything is traced.
        let recorder = match &opts.record {
            Some(dir) => Some(Recorder::create(dir)?),
            None => None,
        };
        let meter = CostMeter::start(root, &opts.cpus);
        let inst = match Instance::take_armed(&tracefs)? {
            Some(i) => {
                notices.push(format!(
                    "using the armed tracing instance {ARMED}: its events are already on, so \
                     starting and stopping patch no kernel code"
                ));
                i
            }
            None if opts.keep_armed => match Instance::create_armed(&tracefs)? {
                Some(i) => {
                    notices.push(format!(
                        "{ARMED} keeps the events on after this watch, so the next ones start \
                         and stop without patching code; every traced event then costs a few \
                         hundred nanoseconds where it fires (`isol watch --disarm` removes it)"
                    ));
                    i
                }
                None => {
                    notices.push(format!(
                        "{ARMED} is in use by another run: this watch uses its own instance"
                    ));
                    Instance::create(&tracefs)?
                }
            },
            None => Instance::create(&tracefs)?,
        };
        if !inst.holds("trace_clock", CLOCK) {
            inst.write("trace_clock", CLOCK)?;
        }
        if let Some(kb) = opts.buffer_kb {
            inst.write("buffer_size_kb", &kb.to_string())?;
        }
        let address = |f: &str| symbols.address_of(f);
        let (mut enabled, mut switched) = (0, 0);
        for (sys, name, side) in &schema.enabled {
            let filter = decode::filter_for(name, *side, &opts.cpus, address);
            if *side == decode::Side::Proxy {
                // Only ever filtered: unfiltered, it would trace every work item.
                let Some(f) = &filter else { continue };
                if inst
                    .write(&format!("events/{sys}/{name}/filter"), f)
                    .is_err()
                {
                    continue;
                }
            }
            let was_on = inst.holds(&format!("events/{sys}/{name}/enable"), "1");
            if let Some(n) = inst.enable(sys, name, filter.as_deref())? {
                notices.push(format!("{n}; filtering in isol instead"));
            }
            enabled += 1;
            switched += usize::from(!was_on);
            if let decode::Side::Sender(_) = side {
                // Whole stacks with --stack; else the stacks of senders in an interrupt,
                // which name its handler (rare: no cost to speak of).
                let want = if opts.stack {
                    filter.clone()
                } else {
                    Some(machine::in_interrupt(filter.as_deref(), &opts.cpus))
                };
                let refused = !inst.ensure_stack_trigger(sys, name, want.as_deref())
                    && (!opts.stack || !inst.ensure_stack_trigger(sys, name, None));
                if refused {
                    notices.push(format!(
                        "{sys}:{name}: the kernel refused a stacktrace trigger{}",
                        if opts.stack {
                            ""
                        } else {
                            ": the handlers of senders in interrupts go unnamed"
                        }
                    ));
                }
            }
        }
        if inst.is_armed() {
            // Events another version of isol left on: kept on (switching them off patches
            // code), recording nothing.
            for ev in inst.enabled_events() {
                let ours = schema
                    .enabled
                    .iter()
                    .any(|(sys, name, _)| ev == format!("{sys}:{name}"));
                if let (false, Some((sys, name))) = (ours, ev.split_once(':')) {
                    let _ = inst.write(&format!("events/{sys}/{name}/filter"), "common_pid < 0");
                }
            }
        }
        let online = CpuSet::parse_list(
            root.read_line("/sys/devices/system/cpu/online")
                .unwrap_or_default()
                .as_str(),
        )
        .unwrap_or_else(|_| opts.cpus.clone());
        let mut readers = online
            .iter()
            .map(|c| inst.reader(c))
            .collect::<Result<Vec<_>, _>>()?;
        if inst.is_armed() {
            // Whatever an earlier run left unread belongs to it.
            let mut page = vec![0; layout.page_size];
            for r in &mut readers {
                while r.read_page(&mut page)? {}
            }
        }
        let start_cost = meter.finish(root, &opts.cpus, switched);
        notices.push(if switched > 0 {
            format!(
                "start-up cost: {} interrupts ({}) while {switched} of {enabled} events were \
                 switched on in {:.0} ms; each switch patches kernel code and interrupts every \
                 CPU, so start watch before the workload (or keep them on: --keep-armed)",
                start_cost.total(),
                start_cost.per_cpu(),
                start_cost.elapsed_ns as f64 / 1e6
            )
        } else {
            format!(
                "start-up cost: {} interrupts ({}) in {:.0} ms; all {enabled} events were on \
                 already",
                start_cost.total(),
                start_cost.per_cpu(),
                start_cost.elapsed_ns as f64 / 1e6
            )
        });
        // Recording starts only now, after the code patching of enabling events.
        inst.write("tracing_on", "1")?;
        let started_ns = crate::os::monotonic_ns();
        let mut residents = opts.residents.clone();
        let occupants = tasks::occupants_now(root, &opts.cpus);
        residents.extend(occupants.iter().map(|(tid, _, _)| *tid));
        let mut machine = new_machine(
            opts.cpus.clone(),
            symbols,
            &schema,
            &residents,
            Box::new(LiveTasks::new(root, tracefs.mount())),
        );
        if !opts.pinned_residents {
            machine.without_pinned_residents();
        }
        if !opts.stack {
            machine.without_stacks();
        }
        for (tid, cpu, comm) in occupants {
            machine.occupy(cpu, tid, comm);
        }
        residents.sort_unstable();
        residents.dedup();
        Ok(Watch {
            tracefs,
            instance: Some(inst),
            traced: readers.iter().map(|r| r.cpu).collect(),
            readers,
            decoder: Decoder {
                addrs: recorder.is_some().then(Default::default),
                ..Decoder::new(schema, layout)
            },
            machine,
            page: vec![0; layout.page_size],
            recorder,
            opts,
            residents,
            notices,
            started_ns,
            start_cost,
            enabled,
        })
    }

    /// The watched CPUs.
    pub fn cpus(&self) -> &CpuSet {
        &self.opts.cpus
    }

    /// The residents that live on each watched CPU now (the workload, as the engine
    /// understands it from the events so far): task id and name, by CPU. A CPU with
    /// none runs nothing of its own.
    pub fn occupants(&self) -> std::collections::BTreeMap<u32, Vec<(i32, String)>> {
        self.machine.occupants()
    }

    /// Things the user should know about this watch (missing events, dropped filters).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Declare `tid` a resident of the watched CPUs from now on: its running there is not
    /// an interruption.
    pub fn add_resident(&mut self, tid: i32) {
        self.machine.add_resident(tid);
        if !self.residents.contains(&tid) {
            self.residents.push(tid);
        }
    }

    /// What switching the events on cost the watched CPUs.
    pub fn start_cost(&self) -> &Cost {
        &self.start_cost
    }

    /// When recording started (CLOCK_MONOTONIC ns).
    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    /// What was read so far.
    pub fn stats(&self) -> Stats {
        self.decoder.stats
    }

    /// The tracing instance's directory.
    pub fn instance_dir(&self) -> Option<&Path> {
        self.instance.as_ref().map(|i| i.dir())
    }

    fn read_all(&mut self) -> Result<(), TraceError> {
        for r in &mut self.readers {
            while r.read_page(&mut self.page)? {
                if let Some(rec) = &mut self.recorder {
                    rec.page(r.cpu, &self.page)?;
                }
                self.decoder.ingest(r.cpu, &self.page);
            }
        }
        Ok(())
    }

    /// Read what the kernel has recorded so far and return the records that are complete.
    /// Never blocks; call it every 100 ms or so from a housekeeping CPU.
    pub fn poll(&mut self) -> Result<Vec<Record>, TraceError> {
        let horizon = crate::os::monotonic_ns().saturating_sub(self.opts.holdback_ns);
        self.read_all()?;
        self.decoder.drain(&mut self.machine, horizon);
        Ok(self.machine.take())
    }

    /// Stop recording, report everything left, remove the instance and finish the
    /// recording if one was asked for.
    pub fn stop(self) -> Result<Vec<Record>, TraceError> {
        self.stop_costed().map(|(records, _)| records)
    }

    /// [`Watch::stop`], also measuring what switching the events off cost the watched
    /// CPUs.
    pub fn stop_costed(mut self) -> Result<(Vec<Record>, Cost), TraceError> {
        let end = crate::os::monotonic_ns();
        if let Some(i) = &self.instance {
            i.write("tracing_on", "0")?;
        }
        // From here on nothing is recorded: what the CPUs take is the stop's cost.
        let root = self.tracefs.sysroot().clone();
        let meter = CostMeter::start(&root, &self.opts.cpus);
        self.read_all()?;
        self.decoder.drain(&mut self.machine, u64::MAX);
        self.machine.finish(end);
        let records = self.machine.take();
        // Open readers keep the instance busy.
        self.readers.clear();
        let armed = self.instance.as_ref().is_some_and(|i| i.is_armed());
        let switched_off = if armed { 0 } else { self.enabled };
        if let Some(i) = self.instance.take() {
            let triggers: Vec<(String, String)> = self
                .decoder
                .schema
                .enabled
                .iter()
                .filter(|(_, _, side)| self.opts.stack && matches!(side, decode::Side::Sender(_)))
                .map(|(sys, name, _)| (sys.clone(), name.clone()))
                .collect();
            i.remove(&triggers)?;
        }
        let cost = meter.finish(&root, &self.opts.cpus, switched_off);
        if let Some(rec) = self.recorder.take() {
            self.finish_recording(rec, end)?;
        }
        Ok((records, cost))
    }

    fn finish_recording(&self, rec: Recorder, end: u64) -> Result<(), TraceError> {
        let root = self.tracefs.sysroot();
        let mount = self.tracefs.mount().to_string();
        let header = root
            .read(&format!("{mount}/events/header_page"))
            .map_err(|e| TraceError::Recording(e.to_string()))?;
        let addrs = self.decoder.addrs.iter().flatten().copied();
        let recorded_layout = self.decoder.layout;
        let traced = self.traced.clone();
        let kallsyms = Symbols::load(root).subset(addrs);
        let manifest = TraceManifest {
            format: TRACE_FORMAT.into(),
            isol_version: env!("CARGO_PKG_VERSION").into(),
            kernel: root
                .read_line("/proc/sys/kernel/osrelease")
                .unwrap_or_default(),
            cpus: self.opts.cpus.to_list(),
            traced_cpus: traced,
            clock: CLOCK.into(),
            page_size: recorded_layout.page_size,
            pages: Default::default(),
            start_ns: self.started_ns,
            end_ns: end,
            comms: self
                .machine
                .comms()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            places: self.machine.places().map(|(k, v)| (k, v.clone())).collect(),
            residents: self.residents.clone(),
            pinned: self.machine.pinned(),
            stacks: self.opts.stack,
            note: self.opts.note.clone(),
        };
        rec.finish(
            &header,
            &self.decoder.schema.formats,
            |f| {
                root.read(&format!("{mount}/events/{}/{}/format", f.system, f.name))
                    .ok()
            },
            &kallsyms,
            manifest,
        )?;
        Ok(())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Open readers keep the instance busy: close them before the instance goes.
        self.readers.clear();
    }
}
