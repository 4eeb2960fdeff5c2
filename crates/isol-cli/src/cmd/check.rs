//! `isol check`: readiness of the target CPUs, as a table grouped by area or as JSON.

use comfy_table::{Cell, CellAlignment};

use isol::check::{self, Report, Severity, Target, TargetSource};
use isol::kernel::{KernelModel, Kubelet};
use isol::probe;
use isol::SysRoot;

use crate::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// CPUs to check, in the kernel's list syntax (`2-7,10`). Default: the nohz_full CPUs,
    /// else the isolated CPUs, else a suggestion.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// Instead of --cpus: the CPUs kubelet's CPU manager gave a pod (all its containers')
    /// or one of its containers, named as on this node's kubelet.
    #[arg(long, value_name = "NS/NAME[/CONTAINER]", conflicts_with = "cpus")]
    pod: Option<String>,

    /// kubelet's configuration file, for its reserved CPUs (default
    /// /var/lib/kubelet/config.yaml; under --root, a path inside the root).
    #[arg(long, value_name = "PATH")]
    kubelet_config: Option<String>,

    /// Print the report as JSON (schema `isol.check/v1`, see docs/check-json.md).
    #[arg(long)]
    json: bool,

    /// Show the evidence (file and value) behind each finding.
    #[arg(short, long)]
    verbose: bool,

    /// Measure as well: on each CPU, a thread created on housekeeping runs alone, first
    /// SCHED_FIFO then SCHED_OTHER; the CPU's tick device and interrupt counts say whether
    /// its tick stops, and for how long it stays quiet (root; the CPUs at once, about
    /// twice the window in all).
    #[arg(long)]
    probe: bool,

    /// How long the probe counts interrupts on each CPU once its tick stopped, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, requires = "probe")]
    probe_window: f64,

    /// Probe CPUs where a workload runs too (the probe's SCHED_FIFO thread takes the CPU
    /// from it for the window).
    #[arg(long, requires = "probe")]
    probe_busy: bool,
}

pub fn run(root: &SysRoot, args: Args) -> Result<u8, Failure> {
    let mut model = KernelModel::load(root);
    if let Some(path) = &args.kubelet_config {
        model.kubelet = Kubelet::load(root, Some(path));
        if let Some(why) = model.kubelet.config.why_unknown() {
            return Err(Failure::usage(format!(
                "--kubelet-config {}: {why}",
                crate::output::escape(path)
            )));
        }
    }
    let target = crate::live::choose_target(&model, args.cpus.as_deref(), args.pod.as_deref())?;
    let mut report = check::run(&model, &target);
    if args.probe {
        report.add(probe(
            root,
            &model,
            &target,
            args.probe_window,
            args.probe_busy,
        )?);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::runtime(format!("cannot encode the report: {e}")))?;
        crate::output::println_json(&text)?;
    } else {
        crate::output::print(&render(&report, args.verbose))?;
    }
    Ok(report.exit_code as u8)
}

/// `--probe` (here and in `isol watch --metrics`): the measurement, said before it starts
/// (it takes seconds), as findings.
pub fn probe(
    root: &SysRoot,
    model: &KernelModel,
    target: &Target,
    window: f64,
    busy: bool,
) -> Result<Vec<check::Finding>, Failure> {
    if !(window.is_finite() && (0.01..=60.0).contains(&window)) {
        return Err(Failure::usage(format!(
            "--probe-window {window}: give seconds between 0.01 and 60"
        )));
    }
    let opts = probe::Options {
        window: std::time::Duration::from_secs_f64(window),
        busy,
        ..probe::Options::default()
    };
    let windows = opts.windows(root, target);
    eprintln!(
        "isol: probing CPUs {} from {}: a SCHED_FIFO thread on each for {:.2} s, then a \
         SCHED_OTHER one for {:.2} s (at most {:.1} s in all)",
        target.cpus,
        target.housekeeping,
        windows[0].1.as_secs_f64(),
        windows[1].1.as_secs_f64(),
        opts.bound(&windows).as_secs_f64()
    );
    let measured = probe::probe(root, model, target, &opts);
    if let Ok(p) = &measured {
        eprintln!("isol: probed in {:.1} s", p.took_ns as f64 / 1e9);
    }
    Ok(probe::findings(&measured))
}

fn source_text(t: &Target) -> String {
    match t.source {
        TargetSource::Given => "as given".into(),
        TargetSource::NohzFull => "the kernel's nohz_full CPUs".into(),
        TargetSource::Isolated => "the kernel's isolated CPUs".into(),
        TargetSource::Suggested => {
            "suggested: no CPU is isolated on this kernel; choose with --cpus".into()
        }
        TargetSource::Pod => format!(
            "kubelet's CPUs of pod {}",
            crate::output::escape(t.pod.as_deref().unwrap_or("?"))
        ),
    }
}

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "ok",
        Severity::Warn => "WARN",
        Severity::Fail => "FAIL",
        Severity::Unknown => "?",
    }
}

/// The human report: a header, one table per area, and the verdict.
pub fn render(r: &Report, verbose: bool) -> String {
    let mut out = format!(
        "isol check: {} {} ({}); housekeeping {}; kernel {}\n",
        if r.target.cpus.len() == 1 {
            "CPU"
        } else {
            "CPUs"
        },
        r.target.cpus,
        source_text(&r.target),
        if r.target.housekeeping.is_empty() {
            "none".into()
        } else {
            r.target.housekeeping.to_list()
        },
        r.kernel.as_deref().unwrap_or("unknown")
    );
    let mut areas: Vec<_> = r.findings.iter().map(|f| f.area).collect();
    areas.dedup();
    for area in areas {
        let mut table = crate::output::area_table();
        for f in r.findings.iter().filter(|f| f.area == area) {
            let mut text = f.summary.clone();
            if let Some(fix) = &f.fix {
                let kind = serde_json::to_value(fix.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                text.push_str(&format!("\nfix ({kind}): {}", fix.text));
            }
            if verbose {
                for e in &f.evidence {
                    text.push_str(&format!("\n· {} = {}", e.file, e.value));
                }
            }
            table.add_row(vec![
                Cell::new(mark(f.severity)).set_alignment(CellAlignment::Right),
                Cell::new(f.id),
                Cell::new(text),
            ]);
        }
        out.push_str(&crate::output::area_section(area.as_str(), &table));
    }
    let s = &r.summary;
    out.push_str(&format!(
        "\n{}: {} ok, {} warn, {} fail, {} unknown\n",
        r.verdict, s.ok, s.warn, s.fail, s.unknown
    ));
    out
}
