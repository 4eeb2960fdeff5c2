//! Boot parameters: the part of isolation only a reboot can do.

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::kernel::KernelModel;

/// One kernel command-line parameter and why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootParam {
    /// `name=value` (or a bare name).
    pub param: String,
    /// Why, in one line.
    pub why: String,
}

/// The kernel parameters that isolate `cpus` and leave `housekeeping` to the kernel.
///
/// The set follows the kernel's own documentation (`no_hz.rst`, `cpu-isolation.rst`) and
/// what tuned's cpu-partitioning and realtime profiles pass; a parameter that depends on
/// the hardware (`tsc=reliable`) is included only when the model shows it is safe.
pub fn boot_params(model: &KernelModel, cpus: &CpuSet, housekeeping: &CpuSet) -> Vec<BootParam> {
    let l = cpus.to_list();
    let p = |param: String, why: &str| BootParam {
        param,
        why: why.to_string(),
    };
    let mut out = vec![
        p(
            format!("nohz_full={l}"),
            "stop the scheduling-clock tick while one task runs there",
        ),
        p(
            format!("isolcpus=nohz,domain,managed_irq,{l}"),
            "no load balancing onto them, and managed IRQs kept off them",
        ),
        p(
            format!("rcu_nocbs={l}"),
            "RCU callbacks run in rcuo kthreads on housekeeping CPUs",
        ),
        p(
            format!("irqaffinity={}", housekeeping.to_list()),
            "device IRQs start on the housekeeping CPUs",
        ),
        p(
            "rcupdate.rcu_normal_after_boot=1".into(),
            "no expedited RCU grace periods (IPIs to every CPU) after boot",
        ),
        p(
            "skew_tick=1".into(),
            "ticks of the housekeeping CPUs do not fire all at once",
        ),
        p(
            "nosoftlockup".into(),
            "no soft-lockup watchdog hrtimer on any CPU",
        ),
        p(
            "nmi_watchdog=0".into(),
            "no periodic NMI from the hard-lockup detector",
        ),
        p(
            "mce=ignore_ce".into(),
            "no machine-check poll timer (corrected errors are not logged)",
        ),
    ];
    let flags = model.cpus.tsc_flags.as_ref();
    let invariant = flags.is_some_and(|f| {
        ["constant_tsc", "nonstop_tsc"]
            .iter()
            .all(|x| f.iter().any(|y| y == x))
    });
    if invariant {
        out.push(p(
            "tsc=reliable".into(),
            "the TSC is invariant here: no clocksource watchdog timer cross-checking it",
        ));
    }
    out
}

/// The lines to put in `/etc/default/grub.d/isol.cfg` (then `update-grub` and reboot).
pub fn grub_snippet(params: &[BootParam]) -> String {
    let line = params
        .iter()
        .map(|p| p.param.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    format!("GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT {line}\"\n")
}
