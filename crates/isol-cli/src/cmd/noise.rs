//! `isol noise`: OS noise of CPUs at nanosecond resolution, each gap attributed to the
//! interruptions the trace saw inside it; a table, JSON (docs/noise-json.md), plots and a
//! before/after comparison.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};

use isol::kernel::KernelModel;
use isol::noise::{self, attribute::UNEXPLAINED, CpuNoise, NoiseOptions, Report};
use isol::tracefs::{TraceError, Tracefs};
use isol::SysRoot;

use crate::live::signals::STOP;
use crate::live::{choose_target, fmt_ns, parse_duration};
use crate::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// CPUs to measure (`1,3-5`). Default: the nohz_full CPUs, else the isolated CPUs,
    /// else a suggestion as `isol check` makes it.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// Instead of --cpus: the CPUs kubelet's CPU manager gave a pod (all its containers')
    /// or one of its containers, named as on this node's kubelet.
    #[arg(long, value_name = "NS/NAME[/CONTAINER]", conflicts_with = "cpus")]
    pod: Option<String>,

    /// How long to measure (`10s`, `500ms`, `2m`; a bare number is seconds).
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// Smallest gap counted as noise, in ns. Default: 25 loop periods rounded up to 1, 2 or
    /// 5 x 10^n ns (500 ns on a 12 ns loop).
    #[arg(long, value_name = "NS")]
    threshold: Option<u64>,

    /// Run the samplers SCHED_FIFO at this priority (needs kernel.sched_rt_runtime_us=-1).
    #[arg(long, value_name = "PRIO", num_args = 0..=1, default_missing_value = "1",
          value_parser = clap::value_parser!(i32).range(1..=99))]
    fifo: Option<i32>,

    /// Print the report as JSON (schema `isol.noise/v1`, see docs/noise-json.md).
    #[arg(long)]
    json: bool,

    /// Draw the gap histogram and the gaps over time, coloured by cause (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Show this run next to an earlier `isol noise --json` report.
    #[arg(long, value_name = "FILE.json")]
    compare: Option<PathBuf>,

    /// Measure only: do not trace the CPUs, so gaps are not attributed.
    #[arg(long)]
    no_attribution: bool,

    /// On nohz_full CPUs, start measuring at once instead of waiting for the tick to stop.
    #[arg(long)]
    no_quiesce: bool,

    /// Per-CPU trace buffer size in KiB (the kernel's default when not given).
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(4..))]
    buffer_kb: Option<u32>,
}

pub fn run(root: &SysRoot, args: Args) -> Result<u8, Failure> {
    if !root.is_live() {
        return Err(Failure::usage(
            "noise measures the live machine; --root does not apply",
        ));
    }
    let before = match &args.compare {
        Some(p) => Some(load_report(p)?),
        None => None,
    };
    if let Some(p) = &args.plot {
        crate::render::plot::check_path(p)?;
    }
    let model = KernelModel::load(root);
    let target = choose_target(&model, args.cpus.as_deref(), args.pod.as_deref())?;
    let mut notices = Vec::new();
    let mut attribute = !args.no_attribution;
    if attribute && !isol::is_root() {
        attribute = false;
        notices.push(
            "not root: gaps are measured but not attributed (tracing needs root)".to_string(),
        );
    }
    if attribute {
        if let Err(TraceError::NotMounted) = Tracefs::locate(root) {
            Tracefs::mount_default().map_err(|e| {
                Failure::runtime(format!(
                    "{}; {e}; or measure without attribution (--no-attribution)",
                    TraceError::NotMounted
                ))
            })?;
            notices.push(format!(
                "mounted tracefs at {}",
                isol::tracefs::DEFAULT_MOUNT
            ));
        }
    }
    let mut opts = NoiseOptions::new(target.cpus.clone(), args.duration);
    opts.threshold_ns = args.threshold;
    opts.fifo = args.fifo;
    opts.attribute = attribute;
    opts.quiesce = !args.no_quiesce;
    opts.buffer_kb = args.buffer_kb;
    if !args.json {
        crate::say!(
            "isol: measuring {} for {} (Ctrl-C to stop early)",
            target.cpus.named(),
            fmt_ns(args.duration.as_nanos() as u64)
        );
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(args.duration.as_millis() as u64),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
            .expect("a valid template"),
    );
    let result = noise::run(root, &opts, &STOP, |p| {
        bar.set_position(p.elapsed.as_millis() as u64);
        if attribute {
            bar.set_message(format!("{} interruptions traced", p.interruptions));
        }
    });
    bar.finish_and_clear();
    let mut report = result.map_err(|e| match e {
        noise::NoiseError::Trace(t) => Failure::runtime(format!(
            "{t}; or measure without attribution (--no-attribution)"
        )),
        e @ (noise::NoiseError::ThresholdBelowLoop { .. }
        | noise::NoiseError::ZeroDuration
        | noise::NoiseError::NoCpus
        | noise::NoiseError::Target(_)) => Failure::usage(e.to_string()),
        e => Failure::runtime(e.to_string()),
    })?;
    notices.append(&mut report.notices);
    report.notices = notices;
    if STOP.load(Ordering::Relaxed) {
        report
            .notices
            .push("stopped early (signal): the figures cover the time measured".into());
    }
    // The report first: a plot that cannot be drawn must not cost the measurement.
    if args.json {
        let mut v = serde_json::to_value(&report).expect("reports serialize");
        if let Some(b) = &before {
            v["compare"] = serde_json::to_value(comparison(b, &report)).expect("serializes");
        }
        crate::output::println_json(&v.to_string())?;
    } else {
        crate::output::print(&render(&report))?;
        if let Some(b) = &before {
            crate::output::print(&render_compare(b, &report))?;
        }
    }
    if let Some(p) = &args.plot {
        crate::render::plot::draw(&report, p)?;
        crate::say!("isol: plot written to {}", p.display());
    }
    Ok(0)
}

/// The most isol reads of a `--compare` report: a 10 s run's JSON with every gap is a few
/// MB; larger files are refused rather than parsed into memory.
const MAX_COMPARE: u64 = 64 << 20;

fn load_report(p: &std::path::Path) -> Result<Report, Failure> {
    let bytes = isol::confine::read_user_file(p, MAX_COMPARE)
        .map_err(|e| Failure::usage(format!("--compare {}: {e}", p.display())))?;
    #[derive(serde::Deserialize)]
    struct Schema {
        schema: Option<serde_json::Value>,
    }
    let s: Schema = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::usage(format!(
            "--compare {}: not JSON ({e}); give the output of `isol noise --json`",
            p.display()
        ))
    })?;
    let schema = s.schema.unwrap_or(serde_json::Value::Null);
    if schema != noise::SCHEMA {
        return Err(Failure::usage(format!(
            "--compare {}: schema {schema} is not {}; give the output of `isol noise --json`",
            p.display(),
            noise::SCHEMA
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::usage(format!("--compare {}: {e}", p.display())))
}

fn pct(p: f64) -> String {
    format!("p{p}")
}

fn right(s: impl ToString) -> Cell {
    Cell::new(s.to_string()).set_alignment(CellAlignment::Right)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

fn indent(out: &mut String, t: &Table) {
    for line in t.to_string().lines() {
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The human report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for n in &r.notices {
        out.push_str(&format!("note: {n}\n"));
    }
    out.push_str(&format!(
        "kernel {}, TSC {:.3} GHz{}, threshold {} ({}){}\n",
        r.kernel,
        r.tsc_hz / 1e9,
        if r.tsc.invariant { " (invariant)" } else { "" },
        fmt_ns(r.threshold_ns),
        if r.threshold_default {
            "default: 25 loop periods"
        } else {
            "given"
        },
        match r.fifo {
            Some(p) => format!(", SCHED_FIFO {p}"),
            None => String::new(),
        }
    ));
    for c in &r.cpus {
        render_cpu(&mut out, c, r.attributed);
    }
    out
}

fn render_cpu(out: &mut String, c: &CpuNoise, attributed: bool) {
    out.push_str(&format!(
        "\nCPU {}: {:.2} s, loop {:.1} ns (typical {:.1} ns)",
        c.cpu,
        c.duration_ns as f64 / 1e9,
        c.loop_ns,
        c.typical_loop_ns
    ));
    match &c.quiesce {
        Some(q) if q.quiet => out.push_str(&format!(
            ", tick stopped before measuring{}",
            q.time_to_quiet_ns
                .map(|t| format!(" (after {})", fmt_ns(t)))
                .unwrap_or_default()
        )),
        Some(q) => out.push_str(&format!(
            ", NOT quiet before measuring: {}",
            q.reason.as_deref().unwrap_or("unknown")
        )),
        None => {}
    }
    out.push('\n');
    out.push_str(&format!(
        "  {} gaps >= {} ({:.1}/s), noise {} in total, {:.5} % CPU available, longest {}\n",
        c.gaps,
        fmt_ns(c.threshold_ns),
        c.gaps_per_sec,
        fmt_ns(c.noise_ns),
        c.available_pct,
        fmt_ns(c.max_ns)
    ));
    if !c.percentiles.is_empty() {
        let mut t = table(
            &c.percentiles
                .iter()
                .map(|p| pct(p.p))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        t.add_row(
            c.percentiles
                .iter()
                .map(|p| right(fmt_ns(p.ns)))
                .collect::<Vec<_>>(),
        );
        out.push_str("  gap percentiles:\n");
        indent(out, &t);
    }
    if !attributed {
        return;
    }
    let secs = c.duration_ns as f64 / 1e9;
    let mut t = table(&["cause", "count", "per s", "total", "max", "main in gaps"]);
    for row in &c.causes {
        t.add_row(vec![
            Cell::new(noise::attribute::cause_label(row.kind, &row.culprit)),
            right(row.count),
            right(format!("{:.2}", row.count as f64 / secs)),
            right(fmt_ns(row.total_ns)),
            right(fmt_ns(row.max_ns)),
            right(row.main_in_gaps),
        ]);
    }
    let u = &c.unexplained;
    t.add_row(vec![
        Cell::new(UNEXPLAINED),
        right(u.count),
        right(format!("{:.2}", u.count as f64 / secs)),
        right(fmt_ns(u.total_ns)),
        right(fmt_ns(u.max_ns)),
        right(u.count),
    ]);
    out.push_str("  causes (net time of each interruption inside a gap):\n");
    indent(out, &t);
    if c.interruptions_outside_gaps > 0 {
        out.push_str(&format!(
            "  {} traced interruptions were shorter than the threshold (in no gap)\n",
            c.interruptions_outside_gaps
        ));
    }
}

/// One metric before and after, per CPU.
#[derive(serde::Serialize)]
struct Delta {
    cpu: u32,
    metric: String,
    before: f64,
    after: f64,
}

fn metrics(c: &CpuNoise) -> Vec<(String, f64)> {
    let mut m = vec![
        ("loop_ns".to_string(), c.loop_ns),
        ("gaps_per_sec".to_string(), c.gaps_per_sec),
        (
            "noise_ns_per_sec".to_string(),
            c.noise_ns as f64 * 1e9 / c.duration_ns.max(1) as f64,
        ),
        ("available_pct".to_string(), c.available_pct),
        ("max_ns".to_string(), c.max_ns as f64),
    ];
    for p in &c.percentiles {
        m.push((format!("{}_ns", pct(p.p)), p.ns as f64));
    }
    m
}

fn comparison(before: &Report, after: &Report) -> Vec<Delta> {
    let mut out = Vec::new();
    for a in &after.cpus {
        let Some(b) = before.cpus.iter().find(|b| b.cpu == a.cpu) else {
            continue;
        };
        let bm = metrics(b);
        for (name, av) in metrics(a) {
            if let Some((_, bv)) = bm.iter().find(|(n, _)| *n == name) {
                out.push(Delta {
                    cpu: a.cpu,
                    metric: name,
                    before: *bv,
                    after: av,
                });
            }
        }
    }
    out
}

fn render_compare(before: &Report, after: &Report) -> String {
    let deltas = comparison(before, after);
    if deltas.is_empty() {
        return "\nno CPU in common with the earlier report: nothing to compare\n".into();
    }
    let mut out = format!(
        "\nbefore (kernel {}, threshold {}) -> now:\n",
        before.kernel,
        fmt_ns(before.threshold_ns)
    );
    let mut t = table(&["cpu", "metric", "before", "now", "change"]);
    for d in &deltas {
        let change = if d.before == 0.0 {
            if d.after == 0.0 {
                "=".into()
            } else {
                "new".into()
            }
        } else {
            format!("{:+.1} %", 100.0 * (d.after - d.before) / d.before)
        };
        let show = |v: f64| {
            if d.metric == "loop_ns" {
                format!("{v:.1}ns")
            } else if d.metric.ends_with("_ns") {
                fmt_ns(v.round() as u64)
            } else {
                format!("{v:.3}")
            }
        };
        t.add_row(vec![
            right(d.cpu),
            Cell::new(&d.metric),
            right(show(d.before)),
            right(show(d.after)),
            right(change),
        ]);
    }
    indent(&mut out, &t);
    out
}
