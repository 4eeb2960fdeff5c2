//! The plan: every change that moves the kernel's work off the chosen CPUs, computed from
//! the kernel model, in the order apply makes them.
//!
//! Order matters twice. New IRQs and unbound work first get a housekeeping default (the
//! default IRQ affinity, the global workqueue mask) before the existing ones move, so that
//! nothing lands on the isolated CPUs in between; and the optional CPU offline/online cycle
//! comes last, once nothing is left to re-arm a timer there.

use std::collections::BTreeMap;

use super::{Change, Format, Left, Plan, Setting};
use crate::cpus::CpuSet;
use crate::kernel::{Fact, KernelModel};
use crate::target::{Target, TargetError};
use crate::SysRoot;

/// Choices that change what the plan contains.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Take each isolated CPU offline and online once at the end, so that timer-wheel
    /// timers stranded there move to housekeeping CPUs (the kernel documentation's remedy).
    /// Off by default: it disturbs whatever runs there.
    pub cycle_offline: bool,
    /// Turn RT throttling off (`kernel.sched_rt_runtime_us=-1`). Off by default: a
    /// runaway SCHED_FIFO task can then starve its CPU for good.
    pub rt_unthrottled: bool,
    /// Processes never moved (isol itself, the application being launched).
    pub keep_pids: Vec<u32>,
}

/// A plan that cannot be made; each is a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The CPUs cannot be isolated (empty, offline, all of them).
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Everything that moves the kernel's work off `cpus`, from the model of `root`.
pub fn plan(
    root: &SysRoot,
    model: &KernelModel,
    cpus: &CpuSet,
    opts: &Options,
) -> Result<Plan, PlanError> {
    let target = Target::choose(model, Some(cpus))?;
    let mut p = Planner {
        root,
        model,
        iso: target.cpus.clone(),
        hk: target.housekeeping.clone(),
        nr_cpus: model
            .cpus
            .possible
            .as_ref()
            .and_then(|p| p.last())
            .map_or(1, |l| l + 1),
        changes: Vec::new(),
        left: Vec::new(),
    };
    p.irqs();
    p.workqueues();
    p.rps();
    p.sysctls(opts);
    p.memory();
    p.cpus();
    p.threads(opts);
    p.irqbalance();
    if opts.cycle_offline {
        for cpu in p.iso.iter() {
            p.changes.push(Change {
                setting: Setting::CycleCpu { cpu },
                old: "1".into(),
                new: "1".into(),
                why: "timer-wheel timers armed on the CPU stay there until it goes offline".into(),
                fixes: Some("timers.armed".into()),
            });
        }
    }
    Ok(Plan {
        cpus: p.iso,
        housekeeping: p.hk,
        changes: p.changes,
        left: p.left,
    })
}

/// How apply writes the file `path`, when it is one of the files a plan can contain:
/// exactly these paths, each in one format, nothing reached another way (no `..`, no
/// `subsystem` link, no other file of the same directory). Restore writes nothing else,
/// whatever a journal says.
pub(crate) fn written_as(path: &str) -> Option<Format> {
    let number = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    let numbered = |s: &str, prefix: &str| s.strip_prefix(prefix).is_some_and(number);
    // A device or workqueue directory: a plain name, not one of sysfs's own entries.
    let name = |s: &str| {
        !s.is_empty()
            && !matches!(s, "." | ".." | "subsystem" | "power" | "device" | "uevent")
            && s.bytes().all(|b| b.is_ascii_graphic())
    };
    let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    use Format::*;
    match parts.as_slice() {
        ["proc", "irq", "default_smp_affinity"] => Some(Mask),
        ["proc", "irq", n, "smp_affinity_list"] if number(n) => Some(List),
        ["proc", "sys", "kernel", "watchdog_cpumask"] => Some(List),
        ["proc", "sys", "kernel", "nmi_watchdog" | "timer_migration" | "numa_balancing" | "sched_rt_runtime_us"] => {
            Some(Word)
        }
        ["proc", "sys", "vm", "stat_interval"] => Some(Word),
        ["proc", "sys", "net", "core", "rps_default_mask"] => Some(Mask),
        ["sys", "devices", "virtual", "workqueue", "cpumask"] => Some(Mask),
        ["sys", "devices", "virtual", "workqueue", q, "cpumask"] if name(q) => Some(Mask),
        ["sys", "class", "net", dev, "queues", rx, "rps_cpus"]
            if name(dev) && numbered(rx, "rx-") =>
        {
            Some(Mask)
        }
        ["sys", "kernel", "mm", "transparent_hugepage", "enabled" | "defrag"] => Some(Choice),
        ["sys", "kernel", "mm", "ksm", "run"] => Some(Word),
        ["sys", "devices", "system", "machinecheck", m, "check_interval"]
            if numbered(m, "machinecheck") =>
        {
            Some(Word)
        }
        ["sys", "devices", "system", "cpu", c, "cpufreq", "scaling_governor"]
            if numbered(c, "cpu") =>
        {
            Some(Word)
        }
        ["sys", "devices", "system", "cpu", c, "cpuidle", st, "disable"]
            if numbered(c, "cpu") && numbered(st, "state") =>
        {
            Some(Word)
        }
        ["sys", "kernel", "debug", "sched", "fair_server", c, "runtime"] if numbered(c, "cpu") => {
            Some(Word)
        }
        _ => None,
    }
}

struct Planner<'a> {
    root: &'a SysRoot,
    model: &'a KernelModel,
    iso: CpuSet,
    hk: CpuSet,
    nr_cpus: u32,
    changes: Vec<Change>,
    left: Vec<Left>,
}

impl Planner<'_> {
    fn push(
        &mut self,
        path: &str,
        format: Format,
        old: &str,
        new: String,
        why: String,
        fixes: &str,
    ) {
        if format.same(old, &new) {
            return;
        }
        self.changes.push(Change {
            setting: Setting::File {
                path: path.to_string(),
                format,
            },
            old: format.value_of(old),
            new,
            why,
            fixes: (!fixes.is_empty()).then(|| fixes.to_string()),
        });
    }

    /// The CPUs of `set` outside the isolated ones, or every housekeeping CPU when none
    /// would be left.
    fn without_isolated(&self, set: &CpuSet) -> CpuSet {
        let rest = set.difference(&self.iso);
        if rest.is_empty() {
            self.hk.clone()
        } else {
            rest
        }
    }

    /// A mask file: drop the isolated CPUs when it has any.
    /// A mask the model read: drop the isolated CPUs when it has any.
    fn mask_file(&mut self, path: &str, now: Option<&CpuSet>, why: String, fixes: &str) {
        let Some(now) = now.filter(|n| n.intersects(&self.iso)) else {
            return;
        };
        let new = self.without_isolated(now).to_mask(self.nr_cpus);
        let old = now.to_mask(self.nr_cpus);
        self.push(path, Format::Mask, &old, new, why, fixes);
    }

    fn word_file(&mut self, path: &str, new: &str, why: &str, fixes: &str) {
        if let Ok(text) = self.root.read(path) {
            self.push(
                path,
                Format::Word,
                &text,
                new.to_string(),
                why.to_string(),
                fixes,
            );
        }
    }

    fn irqs(&mut self) {
        let hk_mask = self.hk.to_mask(self.nr_cpus);
        if let Fact::Known(d) = &self.model.default_irq_affinity {
            if d.intersects(&self.iso) {
                let path = "/proc/irq/default_smp_affinity";
                let old = d.to_mask(self.nr_cpus);
                self.push(
                    path,
                    Format::Mask,
                    &old,
                    hk_mask,
                    "IRQs requested from now on start on the housekeeping CPUs".into(),
                    "irq.default_affinity",
                );
            }
        }
        let Fact::Known(irqs) = &self.model.irqs else {
            return;
        };
        for (irq, a) in irqs {
            let Some(aff) = &a.affinity else { continue };
            if !aff.intersects(&self.iso) {
                continue;
            }
            let name = if a.actions.is_empty() {
                format!("IRQ {irq}")
            } else {
                format!("IRQ {irq} ({})", a.actions.join(", "))
            };
            if a.managed == Some(true) {
                self.left.push(Left {
                    what: name,
                    why: "a managed IRQ: the kernel owns its affinity and refuses a new one; \
                          boot with isolcpus=managed_irq,CPUS to keep it off isolated CPUs"
                        .into(),
                });
                continue;
            }
            let path = format!("/proc/irq/{irq}/smp_affinity_list");
            let new = self.without_isolated(aff).to_list();
            let why = format!(
                "{name} may be delivered to {}",
                aff.intersection(&self.iso).named()
            );
            self.push(
                &path,
                Format::List,
                &aff.to_list(),
                new,
                why,
                "irq.affinity",
            );
        }
    }

    /// irqbalance is a service, not a setting: apply leaves it running and says when it
    /// will move the IRQs back.
    fn irqbalance(&mut self) {
        let Some(ib) = &self.model.irqbalance else {
            return;
        };
        let exposed = self.iso.difference(&ib.exempt(self.model));
        if !exposed.is_empty() {
            self.left.push(Left {
                what: format!("irqbalance (pid {})", ib.pid),
                why: format!(
                    "it will move IRQs back onto {}: set IRQBALANCE_BANNED_CPULIST={} in \
                     /etc/default/irqbalance and restart it, or stop it (restore then reports \
                     the IRQs it moved as changed by someone else)",
                    exposed.named(),
                    self.iso.to_list()
                ),
            });
        }
    }

    fn workqueues(&mut self) {
        const WQ: &str = "/sys/devices/virtual/workqueue";
        let wq = &self.model.workqueue;
        self.mask_file(
            &format!("{WQ}/cpumask"),
            wq.cpumask.as_ref(),
            "unbound workqueue items (kworker/u*) may run on the isolated CPUs".into(),
            "services.workqueue",
        );
        for (name, mask) in &wq.queues {
            let fixes = if name == "writeback" {
                "services.writeback"
            } else {
                "services.workqueue_sysfs"
            };
            self.mask_file(
                &format!("{WQ}/{name}/cpumask"),
                mask.as_ref(),
                format!("work queued on the {name} workqueue may run on the isolated CPUs"),
                fixes,
            );
        }
    }

    fn rps(&mut self) {
        let Fact::Known(masks) = &self.model.rps else {
            return;
        };
        for (path, mask) in masks {
            let queue = path
                .trim_start_matches("/sys/class/net/")
                .trim_end_matches("/rps_cpus")
                .replace("/queues/", " ");
            self.mask_file(
                path,
                Some(mask),
                format!("packets received on {queue} are steered to the isolated CPUs (RPS)"),
                "irq.rps",
            );
        }
        if let Fact::Known(mask) = &self.model.knobs.rps_default_mask {
            self.mask_file(
                "/proc/sys/net/core/rps_default_mask",
                Some(mask),
                "network devices created from now on would steer packets to the isolated CPUs \
                 (RPS)"
                    .into(),
                "irq.rps_default_mask",
            );
        }
    }

    fn sysctls(&mut self, opts: &Options) {
        let s = &self.model.sysctls;
        if let Some(now) = s.watchdog_cpumask.clone() {
            if let Ok(set) = CpuSet::parse_list(now.trim()) {
                if set.intersects(&self.iso) {
                    let new = self.without_isolated(&set).to_list();
                    self.push(
                        "/proc/sys/kernel/watchdog_cpumask",
                        Format::List,
                        &now,
                        new,
                        "the soft-lockup watchdog's hrtimer runs on every CPU of the mask".into(),
                        "services.watchdog_cpumask",
                    );
                }
            }
        }
        self.word_file(
            "/proc/sys/kernel/nmi_watchdog",
            "0",
            "the NMI watchdog interrupts every CPU periodically",
            "services.nmi_watchdog",
        );
        self.word_file(
            "/proc/sys/kernel/timer_migration",
            "1",
            "unpinned timers then move to busy housekeeping CPUs",
            "services.timer_migration",
        );
        if let Some(now) = s.stat_interval.clone() {
            if now.trim().parse::<u64>().is_ok_and(|n| n < 10) {
                self.push(
                    "/proc/sys/vm/stat_interval",
                    Format::Word,
                    &now,
                    "10".into(),
                    "vmstat_update folds per-CPU counters every stat_interval seconds".into(),
                    "services.vmstat_interval",
                );
            }
        }
        self.word_file(
            "/proc/sys/kernel/numa_balancing",
            "0",
            "NUMA balancing unmaps pages to sample them: page faults",
            "services.numa_balancing",
        );
        if opts.rt_unthrottled {
            self.word_file("/proc/sys/kernel/sched_rt_runtime_us", "-1",
                "asked for (--rt-unthrottled): RT throttling takes the CPU from a SCHED_FIFO task for 5 % of every second", "tasks.rt_throttling");
        }
    }

    fn memory(&mut self) {
        const THP: &str = "/sys/kernel/mm/transparent_hugepage";
        for (file, why) in [
            ("enabled", "THP for every mapping means khugepaged scans and collapses pages: faults and TLB shootdowns"),
            ("defrag", "synchronous compaction on a fault stalls the faulting task"),
        ] {
            let path = format!("{THP}/{file}");
            if let Ok(text) = self.root.read(&path) {
                if Format::Choice.value_of(&text) == "always" {
                    let fixes = "services.thp";
                    self.push(&path, Format::Choice, &text, "madvise".into(), why.into(), fixes);
                }
            }
        }
        if let Ok(text) = self.root.read("/sys/kernel/mm/ksm/run") {
            if text.trim() == "1" {
                self.push(
                    "/sys/kernel/mm/ksm/run",
                    Format::Word,
                    &text,
                    "0".into(),
                    "KSM scans and merges pages: write faults and TLB shootdowns".into(),
                    "services.ksm",
                );
            }
        }
        if self.model.mce.polling() == Some(true) {
            for cpu in self.iso.clone().iter() {
                let path =
                    format!("/sys/devices/system/machinecheck/machinecheck{cpu}/check_interval");
                self.word_file(
                    &path,
                    "0",
                    "the machine-check poll is a timer on every CPU",
                    "services.mce_poll",
                );
            }
        }
    }

    fn cpus(&mut self) {
        use crate::kernel::cpu::DEEP_IDLE_US as DEEP_US;
        for cpu in self.iso.clone().iter() {
            let base = format!("/sys/devices/system/cpu/cpu{cpu}");
            let Some(d) = self.model.cpus.detail.get(&cpu) else {
                continue;
            };
            if let Some(gov) = &d.governor {
                let avail = self
                    .root
                    .read(&format!("{base}/cpufreq/scaling_available_governors"))
                    .unwrap_or_default();
                if gov != "performance" && avail.split_whitespace().any(|g| g == "performance") {
                    self.push(
                        &format!("{base}/cpufreq/scaling_governor"),
                        Format::Word,
                        gov,
                        "performance".into(),
                        "frequency changes stall the CPU and cost work on it".into(),
                        "cpu.governor",
                    );
                }
            }
            let states = d.idle_states.clone();
            for (i, s) in states.iter().enumerate() {
                if !s.disabled && s.latency_us > DEEP_US {
                    self.push(
                        &format!("{base}/cpuidle/state{i}/disable"),
                        Format::Word,
                        "0",
                        "1".into(),
                        format!("{} takes {} us to wake from", s.name, s.latency_us),
                        "cpu.idle_states",
                    );
                }
            }
            if let Some(Fact::Known(r)) = self.model.fair_server.get(&cpu) {
                if *r > 0 {
                    self.push(
                        &format!("/sys/kernel/debug/sched/fair_server/cpu{cpu}/runtime"),
                        Format::Word,
                        &r.to_string(),
                        "0".into(),
                        "the fair deadline server kicks a SCHED_OTHER task about once a second"
                            .into(),
                        "tasks.fair_server",
                    );
                }
            }
        }
    }

    fn threads(&mut self, opts: &Options) {
        let Fact::Known(threads) = &self.model.threads else {
            return;
        };
        let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in threads {
            if opts.keep_pids.contains(&t.pid) || !t.allowed.intersects(&self.iso) {
                continue;
            }
            if t.kernel_thread && !t.affinity_settable {
                bound
                    .entry(t.allowed.to_list())
                    .or_default()
                    .push(t.comm.clone());
                continue;
            }
            if !t.kernel_thread && t.allowed.is_subset(&self.iso) {
                self.left.push(Left {
                    what: format!("{}/{} (pinned to {})", t.comm, t.tid, t.allowed.named()),
                    why: "runs only on isolated CPUs: the workload, left where it is".into(),
                });
                continue;
            }
            let (why, fixes) = if t.kernel_thread {
                (
                    "a kernel thread that may run on the isolated CPUs",
                    "tasks.kthreads",
                )
            } else {
                (
                    "a thread that may be scheduled on the isolated CPUs",
                    "tasks.user",
                )
            };
            self.changes.push(Change {
                setting: Setting::Affinity {
                    pid: t.pid,
                    tid: t.tid,
                    comm: t.comm.clone(),
                    start: t.start_time,
                    kernel: t.kernel_thread,
                },
                old: t.allowed.to_list(),
                new: self.without_isolated(&t.allowed).to_list(),
                why: why.into(),
                fixes: Some(fixes.into()),
            });
        }
        for (cpus, names) in bound {
            let single = CpuSet::parse_list(&cpus).is_ok_and(|c| c.len() == 1);
            self.left.push(if single {
                Left {
                    what: format!("{} per-CPU kernel threads of CPU {cpus} ({})", names.len(), names.join(", ")),
                    why: "bound to their CPU by the kernel; they run only when that CPU has work for them".into(),
                }
            } else {
                Left {
                    what: format!("{} kernel threads on CPUs {cpus} whose affinity the kernel manages ({})", names.len(), names.join(", ")),
                    why: "workqueue workers: they follow the workqueue cpumasks set above".into(),
                }
            });
        }
    }
}
