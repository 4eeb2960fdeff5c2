//! `isol watch`: every interruption of the watched CPUs, live, with its cause and culprit;
//! a summary per CPU and cause; JSON lines; Prometheus metrics; recordings and replay.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};

use isol::interrupt::{Interruption, Record};
use isol::kernel::KernelModel;
use isol::tracefs::{TraceError, Tracefs};
use isol::watch::summary::{Summary, Tally};
use isol::watch::{self, Watch, WatchOptions};
use isol::{CpuSet, SysRoot};

use crate::live::{fmt_ns, parse_duration, stopped_code};
use crate::render::metrics::Metrics;
use crate::Failure;

/// JSON lines schema of `isol watch --json` (docs/watch-json.md).
pub const SCHEMA: &str = "isol.watch/v1";
const POLL: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scope: Scope,

    /// Stop after this long (`10s`, `500ms`, `2m`; a bare number is seconds). Default:
    /// until Ctrl-C.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Print JSON lines (schema `isol.watch/v1`, see docs/watch-json.md) instead of text.
    #[arg(long)]
    json: bool,

    /// Print only the summary at the end, not a line per interruption.
    #[arg(long)]
    summary: bool,

    /// Record the kernel stack of whoever sends an IPI, queues work or wakes a task onto
    /// a watched CPU.
    #[arg(long)]
    stack: bool,

    /// Serve Prometheus metrics on this address (`9184` means 127.0.0.1:9184): the
    /// interruptions, and readiness as `isol check` judges it (docs/metrics.md).
    #[arg(long, value_name = "[ADDR:]PORT")]
    metrics: Option<String>,

    /// With --metrics: check readiness again this often (`0`: only at start), and at once
    /// after an apply or restore.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_interval, requires = "metrics")]
    check_interval: Duration,

    /// With --metrics: before watching, probe the CPUs once as `isol check --probe` does
    /// (a thread on each, SCHED_FIFO then SCHED_OTHER: seconds), and serve its findings
    /// with every readiness check after. A CPU with a workload is not probed.
    #[arg(long, requires = "metrics")]
    probe: bool,

    /// Hold the kernel's network timestamping on while watching (one socket asking for
    /// timestamps, as tuned's realtime profiles keep): programs that turn timestamping on
    /// and off then no longer flip its static key, a flip that patches kernel code and
    /// interrupts every CPU. Costs a clock read per received packet.
    #[arg(long, conflicts_with = "replay")]
    hold_timestamps: bool,

    /// Keep the raw trace pages in this new directory, to replay or attach to a report.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,

    /// Decode a recording made with --record instead of tracing the live kernel.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["record", "metrics", "duration", "stack", "pod", "keep_armed"])]
    replay: Option<PathBuf>,

    /// Remove tracing instances left behind by isol runs that were killed, then exit.
    #[arg(long)]
    cleanup: bool,

    /// Remove the instance `--keep-armed` left (switching its events off), then exit.
    #[arg(long, conflicts_with_all = ["replay", "keep_armed", "cleanup"])]
    disarm: bool,

    /// Show nested interruptions (a softirq inside a task's slice ...) as their own lines.
    #[arg(long)]
    nested: bool,
}

/// A duration, or `0` for never.
fn parse_interval(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        Ok(Duration::ZERO)
    } else {
        parse_duration(s)
    }
}

pub fn run(root: &SysRoot, args: Args) -> Result<u8, Failure> {
    if args.cleanup {
        return cleanup(root);
    }
    if args.disarm {
        return disarm(root);
    }
    if let Some(dir) = &args.replay {
        return replay(dir, &args);
    }
    if !root.is_live() {
        return Err(Failure::usage(
            "watch traces the live kernel; --root only works with --replay",
        ));
    }
    let model = KernelModel::load(root);
    let (target, mut opts) = args.scope.prepare(root, &model)?;
    // Held from before tracing starts until the process ends.
    let _timestamping = if args.hold_timestamps {
        let s = isol_sys::net::timestamping_socket().map_err(|e| {
            Failure::runtime(format!(
                "--hold-timestamps: cannot open a UDP socket with SO_TIMESTAMP: {e} (a unit or \
                 container that forbids AF_INET sockets must allow them)"
            ))
        })?;
        crate::say!("isol: network timestamping held on (its static key will not flip)");
        Some(s)
    } else {
        None
    };
    opts.stack = args.stack;
    opts.record = args.record.clone();
    // The probe's threads run on the watched CPUs: before the watch, not under it.
    let probed = if args.probe {
        let t = isol::check::Target::choose(&model, Some(&target.cpus))
            .map_err(|e| Failure::usage(format!("--probe: {e}")))?;
        crate::cmd::check::probe(root, &model, &t, 1.0, false)?
    } else {
        Vec::new()
    };
    let metrics = match &args.metrics {
        Some(addr) => {
            let m = Metrics::serve(addr)?;
            m.readiness
                .keep_checking(
                    root.clone(),
                    target.cpus.clone(),
                    args.check_interval,
                    probed,
                )
                .map_err(|e| {
                    Failure::runtime(format!("--metrics: cannot start the checks: {e}"))
                })?;
            Some(m)
        }
        None => None,
    };
    let mut watch = start(root, opts)?;
    let mut out = Output::new(&args, target.cpus.clone(), watch.started_ns());
    // Records are counted and dropped as they come: memory stays flat over hours.
    let mut tally = Tally::new(&target.cpus);
    let began = Instant::now();
    let mut failed = out
        .header(watch.notices(), metrics.as_ref().map(|m| m.addr()), true)
        .err();
    while failed.is_none() {
        std::thread::sleep(POLL);
        if crate::live::signals::stopped() || args.duration.is_some_and(|d| began.elapsed() >= d) {
            break;
        }
        match watch.poll() {
            Ok(records) => failed = out.records(&records, metrics.as_ref(), &mut tally).err(),
            Err(e) => failed = Some(Failure::runtime(e.to_string())),
        }
    }
    // Whatever happened, stop tracing and remove the instance before reporting.
    let stats = watch.stats();
    let end = isol::monotonic_ns();
    let start_cost = watch.start_cost().clone();
    let last = watch.stop_costed();
    if let Some(f) = failed {
        return Err(f);
    }
    let (records, stop_cost) = last.map_err(|e| Failure::runtime(e.to_string()))?;
    out.records(&records, metrics.as_ref(), &mut tally)?;
    let summary = tally.summary(end.saturating_sub(out.start));
    out.summary(&summary, stats, Some([&start_cost, &stop_cost]))?;
    if let Some(dir) = &args.record {
        crate::say!("isol: recording written to {}", dir.display());
    }
    Ok(0)
}

/// What to watch and how: the flags every live watch takes (`isol watch`, `isol top`).
#[derive(clap::Args)]
pub struct Scope {
    /// CPUs to watch (`1,3-5`). Default: the nohz_full CPUs, else the isolated CPUs, else
    /// a suggestion as `isol check` makes it.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// Instead of --cpus: the CPUs kubelet's CPU manager gave a pod (all its containers')
    /// or one of its containers, named as on this node's kubelet.
    #[arg(long, value_name = "NS/NAME[/CONTAINER]", conflicts_with = "cpus")]
    pod: Option<String>,

    /// Task ids that belong on the watched CPUs: their running is not an interruption.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<i32>,

    /// Leave the events on when this watch ends (recording off), in the instance
    /// `isol-armed`, so the next watches (and `isol noise`, `isol run --watch`, libisol)
    /// start and stop without patching kernel code, which interrupts every CPU. Each traced
    /// event then costs a few hundred nanoseconds on the CPU where it fires.
    #[arg(long)]
    keep_armed: bool,

    /// Per-CPU trace buffer size in KiB (the kernel's default when not given). Raise it if
    /// events are lost.
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(4..))]
    buffer_kb: Option<u32>,

    /// Do not trace system calls on the watched CPUs.
    #[arg(long)]
    no_syscalls: bool,
}

impl Scope {
    /// What every live watch does first: check the `--pid`s, choose the CPUs, move the
    /// calling thread (and every thread it will spawn) to housekeeping CPUs; and the
    /// watch's options from the flags.
    pub(crate) fn prepare(
        &self,
        root: &SysRoot,
        model: &KernelModel,
    ) -> Result<(isol::check::Target, WatchOptions), Failure> {
        let target = prepare(
            root,
            model,
            self.cpus.as_deref(),
            self.pod.as_deref(),
            &self.pids,
        )?;
        let mut opts = WatchOptions::new(target.cpus.clone());
        opts.keep_armed = self.keep_armed;
        opts.syscalls = !self.no_syscalls;
        opts.residents = self.pids.clone();
        // Named tasks are the workload; without them, a task that arrives pinned is.
        opts.pinned_residents = self.pids.is_empty();
        opts.buffer_kb = self.buffer_kb;
        Ok((target, opts))
    }
}

/// Check the `--pid`s, choose the CPUs, and move the calling thread (and every thread it
/// will spawn) to housekeeping CPUs.
fn prepare(
    root: &SysRoot,
    model: &KernelModel,
    cpus: Option<&str>,
    pod: Option<&str>,
    pids: &[i32],
) -> Result<isol::check::Target, Failure> {
    if let Some(p) = pids.iter().find(|p| !root.exists(&format!("/proc/{p}"))) {
        return Err(Failure::usage(format!(
            "--pid {p}: no such task (it may have ended); give the id of a running task \
             (`ps -eLo tid,comm`)"
        )));
    }
    let target = crate::live::choose_target(model, cpus, pod)?;
    if target.housekeeping.is_empty() {
        return Err(Failure::usage(format!(
            "--cpus {} leaves no CPU for the watcher itself; leave at least one CPU out",
            target.cpus.to_list()
        )));
    }
    // Run (and spawn every helper thread) on housekeeping CPUs only.
    isol::pin_current_thread(&target.housekeeping).map_err(|e| {
        Failure::runtime(format!(
            "cannot move the watcher to housekeeping CPUs {}: {e}",
            target.housekeeping.to_list()
        ))
    })?;
    Ok(target)
}

/// Start a live watch: mount tracefs if nothing has, unless a signal came first.
pub(crate) fn start(root: &SysRoot, opts: WatchOptions) -> Result<Watch, Failure> {
    if let Err(TraceError::NotMounted) = Tracefs::locate(root) {
        Tracefs::mount_default()
            .map_err(|e| Failure::runtime(format!("{}; {e}", TraceError::NotMounted)))?;
        crate::say!("isol: mounted tracefs at {}", isol::tracefs::DEFAULT_MOUNT);
    }
    if crate::live::signals::stopped() {
        return Err(Failure::quiet(stopped_code()));
    }
    Watch::start(root, opts).map_err(|e| Failure::runtime(e.to_string()))
}

fn cleanup(root: &SysRoot) -> Result<u8, Failure> {
    if root.is_live() && !isol::is_root() {
        return Err(Failure::runtime(
            "--cleanup needs root: tracing instances can be seen and removed only by root;              run it as root",
        ));
    }
    let t = Tracefs::locate(root).map_err(|e| Failure::runtime(e.to_string()))?;
    let removed = t
        .remove_stale()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if removed.is_empty() {
        crate::output::println(&format!(
            "no stale isol tracing instances in {}/instances",
            t.mount()
        ))?;
    } else {
        crate::output::println(&format!("removed {}", removed.join(", ")))?;
    }
    Ok(0)
}

fn disarm(root: &SysRoot) -> Result<u8, Failure> {
    if !root.is_live() {
        return Err(Failure::usage(
            "--disarm acts on the live kernel; drop --root",
        ));
    }
    let t = Tracefs::locate(root).map_err(|e| Failure::runtime(e.to_string()))?;
    let removed =
        isol::tracefs::Instance::disarm(&t).map_err(|e| Failure::runtime(e.to_string()))?;
    crate::output::println(&if removed {
        format!("removed {}: its events are off", isol::tracefs::ARMED)
    } else {
        format!(
            "no {} instance in {}/instances",
            isol::tracefs::ARMED,
            t.mount()
        )
    })?;
    Ok(0)
}

fn replay(dir: &std::path::Path, args: &Args) -> Result<u8, Failure> {
    let cpus = match &args.scope.cpus {
        Some(t) => Some(CpuSet::parse_list(t).map_err(|e| Failure::usage(format!("--cpus: {e}")))?),
        None => None,
    };
    // Opened (and checked) once: the header needs its manifest before the first record.
    let rec = isol::tracefs::record::Recorded::open(dir).map_err(replay_failure)?;
    let manifest = rec.manifest.clone();
    let cpus = cpus.unwrap_or_else(|| CpuSet::parse_list(&manifest.cpus).unwrap_or_default());
    let mut out = Output::new(args, cpus.clone(), manifest.start_ns);
    let mut notices = vec![format!(
        "replaying {} (kernel {})",
        dir.display(),
        manifest.kernel
    )];
    notices.extend(watch::missing_events(&rec).map_err(replay_failure)?);
    out.header(&notices, None, false)?;
    let mut tally = Tally::new(&cpus);
    let mut failed = None;
    let r = watch::replay_recorded(rec, Some(&cpus), |batch| {
        if failed.is_none() {
            failed = out.records(&batch, None, &mut tally).err();
        }
    })
    .map_err(replay_failure)?;
    if let Some(f) = failed {
        return Err(f);
    }
    let summary = tally.summary(r.manifest.end_ns.saturating_sub(r.manifest.start_ns));
    out.summary(&summary, r.stats, None)?;
    Ok(0)
}

/// A recording isol refuses to read is a usage error (64); one it cannot read, a failure.
fn replay_failure(e: TraceError) -> Failure {
    match e {
        TraceError::Refused(_) => Failure::usage(e.to_string()),
        e => Failure::runtime(e.to_string()),
    }
}

/// How watch prints: lines or JSON, to standard output (or standard error, where another
/// program owns standard output, as under `isol run`).
pub(crate) struct Output {
    json: bool,
    lines: bool,
    nested: bool,
    cpus: CpuSet,
    pub(crate) start: u64,
    to_stderr: bool,
}

impl Output {
    fn new(args: &Args, cpus: CpuSet, start: u64) -> Output {
        Output {
            json: args.json,
            lines: !args.summary,
            nested: args.nested,
            cpus,
            start,
            to_stderr: false,
        }
    }

    /// Human lines on standard error, for `isol run --watch`.
    pub(crate) fn on_stderr(cpus: CpuSet, start: u64) -> Output {
        Output {
            json: false,
            lines: true,
            nested: false,
            cpus,
            start,
            to_stderr: true,
        }
    }

    fn emit(&mut self, text: &str) -> Result<(), Failure> {
        if self.to_stderr {
            crate::say!("{text}");
            return Ok(());
        }
        if self.json {
            crate::output::println_json(text)
        } else {
            crate::output::println(text)
        }
    }

    pub(crate) fn header(
        &mut self,
        notices: &[String],
        metrics: Option<std::net::SocketAddr>,
        live: bool,
    ) -> Result<(), Failure> {
        if self.json {
            let v = serde_json::json!({
                "type": "start",
                "schema": SCHEMA,
                "cpus": self.cpus.to_list(),
                "clock": watch::CLOCK,
                "start_ns": self.start,
                "notices": notices,
                "metrics": metrics.map(|m| m.to_string()),
            });
            return self.emit(&v.to_string());
        }
        for n in notices {
            crate::say!("isol: {n}");
        }
        if let Some(m) = metrics {
            crate::say!("isol: Prometheus metrics on http://{m}/metrics");
        }
        if live {
            crate::say!("isol: watching {} (Ctrl-C to stop)", self.cpus.named());
        }
        if self.lines {
            self.emit(&format!(
                "{:>12}  {:>3}  {:<11}  {:<40}  {:>8}  caused by",
                "time(s)", "cpu", "kind", "what ran", "net"
            ))?;
        }
        Ok(())
    }

    /// Print `records`, count them in `tally` and the metrics.
    pub(crate) fn records(
        &mut self,
        records: &[Record],
        metrics: Option<&Metrics>,
        tally: &mut Tally,
    ) -> Result<(), Failure> {
        for r in records {
            tally.add(r);
            if let Some(m) = metrics {
                m.observe(r);
            }
            if self.json {
                self.emit(&serde_json::to_string(r).expect("records serialize"))?;
                continue;
            }
            if !self.lines {
                continue;
            }
            let t = |ns: u64| ns.saturating_sub(self.start) as f64 / 1e9;
            match r {
                Record::Interruption(i) => {
                    if i.depth > 0 && !self.nested {
                        continue;
                    }
                    let line = self.line(i, t(i.start_ns));
                    self.emit(&line)?;
                }
                Record::Lost {
                    cpu,
                    at_ns,
                    events,
                    reason,
                } => self.emit(&format!(
                    "{:>12.6}  {:>3}  LOST {}: {reason}",
                    t(*at_ns),
                    cpu,
                    events.map_or("some events".to_string(), |n| format!("{n} events"))
                ))?,
                Record::TickStop {
                    cpu,
                    at_ns,
                    success: false,
                    dependency,
                } => self.emit(&format!(
                    "{:>12.6}  {:>3}  {:<11}  tick kept running: {dependency}",
                    t(*at_ns),
                    cpu,
                    "tick"
                ))?,
                Record::TickStop { .. } => {}
            }
        }
        Ok(())
    }

    fn line(&self, i: &Interruption, t: f64) -> String {
        let mut what = i.culprit();
        match i.kind {
            isol::interrupt::Kind::Task => {
                what = what.replacen(
                    &i.source,
                    &format!("{}/{}", i.source, i.number.unwrap_or(0)),
                    1,
                )
            }
            isol::interrupt::Kind::PageFault => {
                what.push_str(&format!(" at {:#x}", i.address.unwrap_or(0)))
            }
            _ => {}
        }
        let net = match i.net_ns {
            Some(n) if i.complete => fmt_ns(n),
            Some(n) => format!(">{}", fmt_ns(n)),
            None => "-".into(),
        };
        let mut by: Vec<String> = i.senders.iter().map(|s| s.to_string()).collect();
        if let Some(why) = &i.untraced {
            by.push(format!("sender not traced: {why}"));
        }
        let indent = " ".repeat(2 * i.depth as usize);
        let mut line = format!(
            "{t:>12.6}  {:>3}  {indent}{:<11}  {:<40}  {net:>8}  {}",
            i.cpu,
            i.kind.as_str(),
            what,
            by.join("; ")
        );
        for s in &i.senders {
            for f in &s.stack {
                line.push_str(&format!("\n{:>24}=> {f}", ""));
            }
        }
        line.trim_end().to_string()
    }

    /// The summary; `cost` is what switching the events on and off cost the watched CPUs
    /// (a live watch).
    pub(crate) fn summary(
        &mut self,
        s: &Summary,
        stats: watch::Stats,
        cost: Option<[&watch::Cost; 2]>,
    ) -> Result<(), Failure> {
        if self.json {
            let mut v = serde_json::json!({"type": "summary", "summary": s, "engine": stats});
            if let Some([start, stop]) = cost {
                v["cost"] = serde_json::json!({"start": start, "stop": stop});
            }
            return self.emit(&v.to_string());
        }
        let secs = s.duration_ns as f64 / 1e9;
        let mut out = format!("\nSummary over {secs:.1} s\n");
        for c in &s.cpus {
            out.push_str(&format!(
                "CPU {}: {} interruptions ({:.1}/s), {} in total, longest {}",
                c.cpu,
                c.interruptions,
                s.rate(c.interruptions),
                fmt_ns(c.total_ns),
                fmt_ns(c.max_ns)
            ));
            if c.lost > 0 || c.lost_unknown {
                out.push_str(&format!(
                    "; LOST {} events: counts are lower bounds (raise --buffer-kb)",
                    if c.lost_unknown {
                        "some".to_string()
                    } else {
                        c.lost.to_string()
                    }
                ));
            }
            out.push('\n');
            for (dep, n) in &c.tick_kept {
                out.push_str(&format!("  tick kept running {n} times: {dep}\n"));
            }
            if c.causes.is_empty() {
                continue;
            }
            let mut t = Table::new();
            t.load_preset(presets::NOTHING)
                .set_content_arrangement(ContentArrangement::Disabled)
                .set_header(["kind", "what ran", "count", "per s", "total", "max"]);
            for cause in &c.causes {
                t.add_row(vec![
                    Cell::new(cause.kind.as_str()),
                    Cell::new(&cause.culprit),
                    Cell::new(cause.count).set_alignment(CellAlignment::Right),
                    Cell::new(format!("{:.2}", s.rate(cause.count)))
                        .set_alignment(CellAlignment::Right),
                    Cell::new(fmt_ns(cause.total_ns)).set_alignment(CellAlignment::Right),
                    Cell::new(fmt_ns(cause.max_ns)).set_alignment(CellAlignment::Right),
                ]);
            }
            for line in t.to_string().lines() {
                out.push_str("  ");
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        if let Some([start, stop]) = cost {
            out.push_str(&format!(
                "watch's own cost: {} interrupts to start ({}; {} events switched on), {} to \
                 stop ({}; {} switched off)\n",
                start.total(),
                start.per_cpu(),
                start.events,
                stop.total(),
                stop.per_cpu(),
                stop.events,
            ));
        }
        out.push_str(&format!(
            "engine: {} pages, {} events decoded{}\n",
            stats.pages,
            stats.events,
            if stats.lost_pages > 0 {
                format!(", {} undecodable", stats.lost_pages)
            } else {
                String::new()
            }
        ));
        if self.to_stderr {
            crate::output::eprint(&out);
            return Ok(());
        }
        crate::output::print(&out)
    }
}
