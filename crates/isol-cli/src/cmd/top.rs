//! `isol top`: the watched CPUs and who interrupts them, live, on one screen.

use std::io::IsTerminal;

use isol::kernel::KernelModel;
use isol::watch::WatchOptions;
use isol::SysRoot;

use crate::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// CPUs to watch (`1,3-5`). Default: the nohz_full CPUs, else the isolated CPUs, else
    /// a suggestion as `isol check` makes it.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// Instead of --cpus: the CPUs kubelet's CPU manager gave a pod or one of its
    /// containers.
    #[arg(long, value_name = "NS/NAME[/CONTAINER]", conflicts_with = "cpus")]
    pod: Option<String>,

    /// Task ids that belong on the watched CPUs: their running is not an interruption.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<i32>,

    /// Leave the events on at the end, in the instance `isol-armed`, as `isol watch
    /// --keep-armed` does.
    #[arg(long)]
    keep_armed: bool,

    /// Per-CPU trace buffer size in KiB (the kernel's default when not given).
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(4..))]
    buffer_kb: Option<u32>,

    /// Do not trace system calls on the watched CPUs.
    #[arg(long)]
    no_syscalls: bool,
}

pub fn run(root: &SysRoot, args: Args) -> Result<u8, Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "top draws a full screen and needs a terminal on standard output; for a \
             pipe or a file, use `isol watch` (a line per interruption) or `isol watch --json`",
        ));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "top reads its keys from standard input, which is not a terminal here; run it \
             from a terminal without redirecting its input (for a pipe or a file, use \
             `isol watch`)",
        ));
    }
    if !root.is_live() {
        return Err(Failure::usage(
            "top traces the live kernel; drop --root (to read a recording: isol watch --replay)",
        ));
    }
    let model = KernelModel::load(root);
    let target = super::watch::prepare(
        root,
        &model,
        args.cpus.as_deref(),
        args.pod.as_deref(),
        &args.pids,
    )?;
    let mut opts = WatchOptions::new(target.cpus.clone());
    opts.keep_armed = args.keep_armed;
    opts.syscalls = !args.no_syscalls;
    opts.residents = args.pids.clone();
    opts.pinned_residents = args.pids.is_empty();
    opts.buffer_kb = args.buffer_kb;
    let mut watch = super::watch::start(root, opts)?;
    let cost = watch.start_cost();
    let list = |c: isol::CpuSet| {
        if c.is_empty() {
            "none".to_string()
        } else {
            c.to_list()
        }
    };
    let header = isol_top::Header {
        kernel: model
            .release
            .as_ref()
            .cloned()
            .unwrap_or_else(|| "?".into()),
        nohz_full: list(model.nohz_full()),
        isolated: list(model.domain_isolated()),
        start_cost: if cost.events == 0 {
            "nothing (the armed instance's events were on already)".into()
        } else {
            format!(
                "{} interrupts ({}) to switch {} events on",
                cost.total(),
                cost.per_cpu(),
                cost.events
            )
        },
        // The start's cost is in the header already.
        notices: watch
            .notices()
            .iter()
            .filter(|n| !n.starts_with("start-up cost"))
            .cloned()
            .collect(),
    };
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Fault injection for the tests: a panic once the screen is up, to show that the
    // terminal and the tracing instance are restored whatever ends the run.
    let fault = std::env::var("ISOL_FAULT").is_ok_and(|f| f == "top-panic");
    let polls = std::cell::Cell::new(0u32);
    let stopped = || {
        polls.set(polls.get() + 1);
        assert!(
            !(fault && polls.get() > 20),
            "fault injected (ISOL_FAULT=top-panic)"
        );
        crate::live::signals::stopped()
    };
    let shown = isol_top::run(&mut watch, &header, color, &stopped);
    // Whatever ended the screen, stop tracing and remove the instance.
    let stopped = watch.stop();
    shown.map_err(|e| Failure::runtime(format!("top: {e}")))?;
    stopped.map_err(|e| Failure::runtime(e.to_string()))?;
    Ok(0)
}
