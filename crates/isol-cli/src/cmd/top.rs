//! `isol top`: the watched CPUs and who interrupts them, live, on one screen.

use std::io::IsTerminal;

use isol::kernel::KernelModel;
use isol::SysRoot;

use crate::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scope: super::watch::Scope,
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
    let (_target, opts) = args.scope.prepare(root, &model)?;
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
