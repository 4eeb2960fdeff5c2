//! Readiness checks: is this machine ready to run isolated tasks on a set of CPUs, and what
//! to fix. Every finding has a severity, the evidence it is based on (file and value) and,
//! when something is wrong, the fix: a runtime command or a boot parameter.
//!
//! Checks are pure functions of the [`KernelModel`]: they read no files themselves, so they
//! run the same on the live system and on a snapshot.

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::kernel::{Fact, KernelModel, Unknown};
pub use crate::target::{Target, TargetError, TargetSource};

mod boot;
mod cpu;
mod irq;
mod kernel;
mod kubelet;
mod services;
mod tasks;
mod timers;
mod tracing;

/// How a finding affects readiness. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nothing to fix.
    Ok,
    /// The kernel file needed to decide could not be read (absent, needs root, masked).
    Unknown,
    /// Works, with a cost worth fixing.
    Warn,
    /// Isolation cannot work until fixed.
    Fail,
}

impl Severity {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Unknown => "unknown",
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        }
    }
}

/// The part of the system a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// The kernel build.
    Kernel,
    /// Boot parameters.
    Boot,
    /// CPUs: topology, frequency, idle, clocks.
    Cpu,
    /// Device interrupts.
    Irq,
    /// Tasks and scheduling.
    Tasks,
    /// Kernel services (workqueues, watchdogs, memory management).
    Services,
    /// Timers and the tick.
    Timers,
    /// What kubelet hands out (Kubernetes nodes).
    Kubelet,
    /// Measured: a thread run on each CPU (`isol check --probe`).
    Probe,
}

impl Area {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Kernel => "kernel",
            Area::Boot => "boot",
            Area::Cpu => "cpu",
            Area::Irq => "irq",
            Area::Tasks => "tasks",
            Area::Services => "services",
            Area::Timers => "timers",
            Area::Kubelet => "kubelet",
            Area::Probe => "probe",
        }
    }
}

/// A kernel file and the value that was read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The file read (a kernel path).
    pub file: String,
    /// What it held.
    pub value: String,
}

/// How to fix a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    /// A command that changes the running system (undone at reboot).
    Runtime,
    /// Kernel command-line parameters (a reboot is needed).
    Boot,
    /// A different kernel build.
    Kernel,
    /// Firmware/BIOS or hypervisor settings.
    Platform,
}

/// The fix for a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// Where the fix applies.
    pub kind: FixKind,
    /// What to do: a command, parameters, or a sentence.
    pub text: String,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, `area.name`.
    pub id: &'static str,
    /// Which part of the system.
    pub area: Area,
    /// How it affects readiness.
    pub severity: Severity,
    /// One line, for people.
    pub summary: String,
    /// The files and values that decided it.
    pub evidence: Vec<Evidence>,
    /// Present when the severity is not `ok`.
    pub fix: Option<Fix>,
}

/// Counts of findings by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Findings that are ok.
    pub ok: usize,
    /// Findings that warn.
    pub warn: usize,
    /// Findings that fail.
    pub fail: usize,
    /// Findings that could not be decided.
    pub unknown: usize,
}

/// The result of all checks.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// JSON schema identifier.
    pub schema: &'static str,
    /// Kernel release checked.
    pub kernel: Option<String>,
    /// The CPUs checked.
    pub target: Target,
    /// Findings counted by severity.
    pub summary: Summary,
    /// `ready`, `warnings` or `not ready`.
    pub verdict: &'static str,
    /// 0 ready, 1 warnings or unknowns, 2 failures.
    pub exit_code: i32,
    /// Every finding, by area.
    pub findings: Vec<Finding>,
}

/// One check: its stable id, its area, and the function that decides it.
pub(crate) struct Check {
    /// `area.name`, as in `docs/check-json.md`.
    pub(crate) id: &'static str,
    pub(crate) area: Area,
    run: fn(&Ctx) -> Finding,
}

/// Every check, in report order within each area. The one list: `run` runs it, and a test
/// holds `docs/check-json.md` to it.
pub(crate) const CHECKS: &[Check] = &[
    Check {
        id: "kernel.no_hz_full",
        area: Area::Kernel,
        run: |c| {
            c.kernel_config(
                "NO_HZ_FULL",
                Severity::Fail,
                "stop the tick on busy CPUs (nohz_full)",
            )
        },
    },
    Check {
        id: "kernel.rcu_nocb_cpu",
        area: Area::Kernel,
        run: |c| {
            c.kernel_config(
                "RCU_NOCB_CPU",
                Severity::Warn,
                "offload RCU callbacks (rcu_nocbs)",
            )
        },
    },
    Check {
        id: "kernel.cpu_isolation",
        area: Area::Kernel,
        run: |c| {
            c.kernel_config(
                "CPU_ISOLATION",
                Severity::Fail,
                "honour isolcpus= and housekeeping",
            )
        },
    },
    Check {
        id: "kernel.tracing",
        area: Area::Kernel,
        run: |c| c.tracing(),
    },
    Check {
        id: "kernel.view",
        area: Area::Kernel,
        run: |c| c.view(),
    },
    Check {
        id: "boot.nohz_full",
        area: Area::Boot,
        run: |c| c.boot_nohz_full(),
    },
    Check {
        id: "boot.domain_isolated",
        area: Area::Boot,
        run: |c| c.domain_isolated(),
    },
    Check {
        id: "boot.rcu_nocbs",
        area: Area::Boot,
        run: |c| c.rcu_nocbs(),
    },
    Check {
        id: "boot.managed_irq",
        area: Area::Boot,
        run: |c| c.managed_irq(),
    },
    Check {
        id: "boot.skew_tick",
        area: Area::Boot,
        run: |c| c.skew_tick(),
    },
    Check {
        id: "boot.tsc_reliable",
        area: Area::Boot,
        run: |c| c.tsc_reliable(),
    },
    Check {
        id: "boot.rcu_normal",
        area: Area::Boot,
        run: |c| c.rcu_normal(),
    },
    Check {
        id: "boot.rcu_nocb_poll",
        area: Area::Boot,
        run: |c| c.rcu_nocb_poll(),
    },
    Check {
        id: "boot.rcu_patience",
        area: Area::Boot,
        run: |c| c.rcu_patience(),
    },
    Check {
        id: "cpu.online",
        area: Area::Cpu,
        run: |c| c.online(),
    },
    Check {
        id: "cpu.housekeeping",
        area: Area::Cpu,
        run: |c| c.housekeeping(),
    },
    Check {
        id: "cpu.smt_siblings",
        area: Area::Cpu,
        run: |c| c.smt(),
    },
    Check {
        id: "cpu.governor",
        area: Area::Cpu,
        run: |c| c.governor(),
    },
    Check {
        id: "cpu.idle_states",
        area: Area::Cpu,
        run: |c| c.idle_states(),
    },
    Check {
        id: "cpu.tsc_invariant",
        area: Area::Cpu,
        run: |c| c.tsc_invariant(),
    },
    Check {
        id: "cpu.clocksource",
        area: Area::Cpu,
        run: |c| c.clocksource(),
    },
    Check {
        id: "cpu.energy_perf",
        area: Area::Cpu,
        run: |c| c.energy_perf(),
    },
    Check {
        id: "irq.affinity",
        area: Area::Irq,
        run: |c| c.irq_affinity(false),
    },
    Check {
        id: "irq.effective_affinity",
        area: Area::Irq,
        run: |c| c.irq_affinity(true),
    },
    Check {
        id: "irq.managed",
        area: Area::Irq,
        run: |c| c.managed_irqs(),
    },
    Check {
        id: "irq.default_affinity",
        area: Area::Irq,
        run: |c| c.default_irq_affinity(),
    },
    Check {
        id: "irq.rps",
        area: Area::Irq,
        run: |c| c.rps(),
    },
    Check {
        id: "irq.rps_default_mask",
        area: Area::Irq,
        run: |c| c.rps_default_mask(),
    },
    Check {
        id: "irq.nic_queues",
        area: Area::Irq,
        run: |c| c.nic_queues(),
    },
    Check {
        id: "irq.irqbalance",
        area: Area::Irq,
        run: |c| c.irqbalance(),
    },
    Check {
        id: "tasks.kthreads",
        area: Area::Tasks,
        run: |c| c.kthreads(),
    },
    Check {
        id: "tasks.bound_kthreads",
        area: Area::Tasks,
        run: |c| c.bound_kthreads(),
    },
    Check {
        id: "tasks.kthread_prio",
        area: Area::Tasks,
        run: |c| c.kthread_prio(),
    },
    Check {
        id: "tasks.user",
        area: Area::Tasks,
        run: |c| c.user_tasks(),
    },
    Check {
        id: "tasks.init_affinity",
        area: Area::Tasks,
        run: |c| c.init_affinity(),
    },
    Check {
        id: "tasks.shared",
        area: Area::Tasks,
        run: |c| c.shared(),
    },
    Check {
        id: "tasks.rt_throttling",
        area: Area::Tasks,
        run: |c| c.rt_throttling(),
    },
    Check {
        id: "tasks.fair_server",
        area: Area::Tasks,
        run: |c| c.fair_server(),
    },
    Check {
        id: "tasks.strict_mode",
        area: Area::Tasks,
        run: |c| c.strict_mode(),
    },
    Check {
        id: "services.workqueue",
        area: Area::Services,
        run: |c| c.workqueue(),
    },
    Check {
        id: "services.writeback",
        area: Area::Services,
        run: |c| c.writeback(),
    },
    Check {
        id: "services.workqueue_sysfs",
        area: Area::Services,
        run: |c| c.workqueue_sysfs(),
    },
    Check {
        id: "services.watchdog_cpumask",
        area: Area::Services,
        run: |c| c.watchdog_cpumask(),
    },
    Check {
        id: "services.nmi_watchdog",
        area: Area::Services,
        run: |c| c.nmi_watchdog(),
    },
    Check {
        id: "services.timer_migration",
        area: Area::Services,
        run: |c| c.timer_migration(),
    },
    Check {
        id: "services.vmstat_interval",
        area: Area::Services,
        run: |c| c.stat_interval(),
    },
    Check {
        id: "services.numa_balancing",
        area: Area::Services,
        run: |c| c.numa_balancing(),
    },
    Check {
        id: "services.thp",
        area: Area::Services,
        run: |c| c.thp(),
    },
    Check {
        id: "services.ksm",
        area: Area::Services,
        run: |c| c.ksm(),
    },
    Check {
        id: "services.mce_poll",
        area: Area::Services,
        run: |c| c.mce_poll(),
    },
    Check {
        id: "services.kvm",
        area: Area::Services,
        run: |c| c.kvm(),
    },
    Check {
        id: "services.tracing",
        area: Area::Services,
        run: |c| c.tracing_switched_on(),
    },
    Check {
        id: "services.apply_journal",
        area: Area::Services,
        run: |c| c.apply_journal(),
    },
    Check {
        id: "timers.armed",
        area: Area::Timers,
        run: |c| c.armed_timers(),
    },
    Check {
        id: "timers.tick",
        area: Area::Timers,
        run: |c| c.tick_state(),
    },
    Check {
        id: "kubelet.cpu_manager",
        area: Area::Kubelet,
        run: |c| c.kubelet_cpu_manager(),
    },
    Check {
        id: "kubelet.exclusive_isolated",
        area: Area::Kubelet,
        run: |c| c.kubelet_exclusive_isolated(),
    },
    Check {
        id: "kubelet.reserved",
        area: Area::Kubelet,
        run: |c| c.kubelet_reserved(),
    },
    Check {
        id: "kubelet.exclusive_alone",
        area: Area::Kubelet,
        run: |c| c.kubelet_exclusive_alone(),
    },
];

/// Run every check for `target`.
pub fn run(model: &KernelModel, target: &Target) -> Report {
    let findings: Vec<Finding> = CHECKS
        .iter()
        .map(|check| {
            (check.run)(&Ctx {
                m: model,
                t: target,
                id: check.id,
                area: check.area,
            })
        })
        .collect();
    let mut report = Report {
        schema: "isol.check/v1",
        kernel: model.release.as_ref().cloned(),
        target: target.clone(),
        summary: Summary::default(),
        verdict: "ready",
        exit_code: 0,
        findings: Vec::new(),
    };
    report.add(findings);
    report
}

impl Report {
    /// Add findings made outside the checks (`isol check --probe`'s measurements), by area,
    /// and count the summary, verdict and exit code again.
    pub fn add(&mut self, findings: Vec<Finding>) {
        self.findings.extend(findings);
        self.findings.sort_by_key(|f| f.area);
        let mut s = Summary::default();
        for f in &self.findings {
            match f.severity {
                Severity::Ok => s.ok += 1,
                Severity::Warn => s.warn += 1,
                Severity::Fail => s.fail += 1,
                Severity::Unknown => s.unknown += 1,
            }
        }
        (self.verdict, self.exit_code) = if s.fail > 0 {
            ("not ready", 2)
        } else if s.warn > 0 || s.unknown > 0 {
            ("warnings", 1)
        } else {
            ("ready", 0)
        };
        self.summary = s;
    }
}

/// What one check sees: the model, the target, and its own id and area.
pub(crate) struct Ctx<'a> {
    m: &'a KernelModel,
    t: &'a Target,
    id: &'static str,
    area: Area,
}

fn ev(file: impl Into<String>, value: impl Into<String>) -> Evidence {
    Evidence {
        file: file.into(),
        value: value.into(),
    }
}

fn fix(kind: FixKind, text: impl Into<String>) -> Option<Fix> {
    Some(Fix {
        kind,
        text: text.into(),
    })
}

/// Render a set of CPUs for a message, `none` when empty.
fn cpus(s: &CpuSet) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.to_list()
    }
}

/// A fact whose file does not exist.
fn absent(path: &str) -> Fact<()> {
    Fact::Unknown {
        path: path.to_string(),
        why: Unknown::Absent,
    }
}

/// "CPU 1 is" or "CPUs 1-3 are", for messages.
fn are(s: &CpuSet) -> String {
    if s.len() == 1 {
        format!("CPU {s} is")
    } else {
        format!("CPUs {s} are")
    }
}

/// Limit a list of items in a message.
fn some_of(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!(
            "{}, and {} more",
            items[..max].join(", "),
            items.len() - max
        )
    }
}

impl Ctx<'_> {
    /// A finding of this check.
    fn finding(
        &self,
        severity: Severity,
        summary: impl Into<String>,
        evidence: Vec<Evidence>,
        fix: Option<Fix>,
    ) -> Finding {
        Finding {
            id: self.id,
            area: self.area,
            severity,
            summary: summary.into(),
            evidence,
            fix: if severity == Severity::Ok { None } else { fix },
        }
    }

    /// This check could not decide: `fact`, about `what`, could not be read.
    fn unknown<T>(&self, what: &str, fact: &Fact<T>) -> Finding {
        let (file, why) = fact.unknown().unwrap_or(("", &Unknown::Error));
        let next = match why {
            Unknown::NeedsRoot => "run isol as root",
            Unknown::Malformed(_) | Unknown::Refused => {
                "the file does not read as the kernel writes it; attach `isol snapshot` to a bug report"
            }
            Unknown::Masked => "run isol outside the container, or unmask the path",
            Unknown::Absent | Unknown::Error => "this kernel does not expose it",
        };
        self.finding(
            Severity::Unknown,
            format!("{what}: unknown ({why})"),
            vec![ev(file, why.to_string())],
            fix(FixKind::Runtime, next),
        )
    }

    pub(super) fn target(&self) -> &CpuSet {
        &self.t.cpus
    }

    /// The housekeeping CPUs as a hex mask as wide as the possible CPUs (for `echo` into
    /// a cpumask file).
    pub(super) fn housekeeping_mask(&self) -> String {
        let nr = self
            .m
            .cpus
            .possible
            .as_ref()
            .and_then(|p| p.last())
            .map_or(1, |l| l + 1);
        self.t.housekeeping.to_mask(nr)
    }

    pub(super) fn hk(&self) -> String {
        cpus(&self.t.housekeeping)
    }

    /// The boot parameters that isolate the target fully.
    pub(super) fn boot_line(&self) -> String {
        let t = self.target().to_list();
        format!(
            "nohz_full={t} isolcpus=nohz,domain,managed_irq,{t} rcu_nocbs={t} irqaffinity={}",
            self.hk()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids documented in `docs/check-json.md`, in order: the rows of its table of
    /// checks (`| \`area.name\` | ... |`).
    fn documented() -> Vec<String> {
        let doc = include_str!("../../../../docs/check-json.md");
        let areas = [
            Area::Kernel,
            Area::Boot,
            Area::Cpu,
            Area::Irq,
            Area::Tasks,
            Area::Services,
            Area::Timers,
            Area::Kubelet,
        ];
        doc.lines()
            .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(id, _)| id))
            .filter(|id| {
                id.split_once('.')
                    .is_some_and(|(area, _)| areas.iter().any(|a| a.as_str() == area))
            })
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_docs_list_every_check_in_the_table_and_no_other() {
        let table: Vec<String> = CHECKS.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(
            documented(),
            table,
            "docs/check-json.md and CHECKS disagree"
        );
        // The README counts them too.
        let readme = include_str!("../../../../README.md");
        let said = format!("runs {} checks", CHECKS.len());
        assert!(readme.contains(&said), "README.md does not say {said:?}");
    }

    #[test]
    fn each_id_is_in_its_area_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CHECKS {
            assert!(seen.insert(c.id), "{} twice", c.id);
            let (area, _) = c.id.split_once('.').unwrap();
            assert_eq!(area, c.area.as_str(), "{}", c.id);
        }
    }
}
