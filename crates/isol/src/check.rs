//! Readiness checks: is this machine ready to run isolated tasks on a set of CPUs, and what
//! to fix. Every finding has a severity, the evidence it is based on (file and value) and,
//! when something is wrong, the fix: a runtime command or a boot parameter.
//!
//! Checks are pure functions of the [`KernelModel`]: they read no files themselves, so they
//! run the same on the live system and on a snapshot.

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::kernel::{Fact, KernelModel};

/// How a finding affects readiness. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    /// The kernel file needed to decide could not be read (absent, needs root, masked).
    Unknown,
    Warn,
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
    Kernel,
    Boot,
    Cpu,
    Irq,
    Tasks,
    Services,
    Timers,
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
        }
    }
}

/// A kernel file and the value that was read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub file: String,
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
    pub kind: FixKind,
    /// What to do: a command, parameters, or a sentence.
    pub text: String,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, `area.name`.
    pub id: &'static str,
    pub area: Area,
    pub severity: Severity,
    /// One line, for people.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// Present when the severity is not `ok`.
    pub fix: Option<Fix>,
}

/// Where the target CPUs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSource {
    /// `--cpus`.
    Given,
    /// The kernel's `nohz_full` set.
    NohzFull,
    /// The kernel's domain-isolated set.
    Isolated,
    /// Nothing is isolated: isol's suggestion (every online CPU but the first core).
    Suggested,
}

/// The CPUs to check, and the housekeeping CPUs left for the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub cpus: CpuSet,
    pub source: TargetSource,
    /// Online CPUs outside the target.
    pub housekeeping: CpuSet,
}

/// A target that cannot be used; each is a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the CPU list is empty; name at least one CPU to isolate")]
    Empty,
    #[error("CPU {cpus} does not exist (possible CPUs: {possible})")]
    NotPossible { cpus: CpuSet, possible: CpuSet },
    #[error("CPU {cpus} is offline (online CPUs: {online}); bring it online with `echo 1 > /sys/devices/system/cpu/cpuN/online` or choose others")]
    Offline { cpus: CpuSet, online: CpuSet },
    #[error("isolating CPUs {cpus} leaves no online housekeeping CPU; keep at least one of {online} for the kernel")]
    NoHousekeeping { cpus: CpuSet, online: CpuSet },
    #[error("the online CPUs are unknown ({0}); pass --cpus and run as root")]
    OnlineUnknown(String),
    #[error("only one CPU is online: nothing can be isolated while keeping a housekeeping CPU")]
    SingleCpu,
}

impl Target {
    /// Validate `given`, or choose the kernel's isolated CPUs (nohz_full first, then
    /// domain-isolated), or suggest a set when none are.
    pub fn choose(model: &KernelModel, given: Option<&CpuSet>) -> Result<Target, TargetError> {
        let online = match &model.cpus.online {
            Fact::Known(s) => s.clone(),
            f => {
                return Err(TargetError::OnlineUnknown(
                    f.why_unknown().unwrap_or_default(),
                ))
            }
        };
        let (cpus, source) = match given {
            Some(g) => {
                if g.is_empty() {
                    return Err(TargetError::Empty);
                }
                if let Some(possible) = model.cpus.possible.as_ref() {
                    let bad = g.difference(possible);
                    if !bad.is_empty() {
                        return Err(TargetError::NotPossible {
                            cpus: bad,
                            possible: possible.clone(),
                        });
                    }
                }
                let offline = g.difference(&online);
                if !offline.is_empty() {
                    return Err(TargetError::Offline {
                        cpus: offline,
                        online,
                    });
                }
                (g.clone(), TargetSource::Given)
            }
            None => {
                let nohz = model.nohz_full().intersection(&online);
                let iso = model.domain_isolated().intersection(&online);
                if !nohz.is_empty() {
                    (nohz, TargetSource::NohzFull)
                } else if !iso.is_empty() {
                    (iso, TargetSource::Isolated)
                } else {
                    (suggest(model, &online)?, TargetSource::Suggested)
                }
            }
        };
        let housekeeping = online.difference(&cpus);
        if housekeeping.is_empty() {
            return Err(TargetError::NoHousekeeping { cpus, online });
        }
        Ok(Target {
            cpus,
            source,
            housekeeping,
        })
    }
}

/// Every online CPU except the first one and its SMT siblings.
fn suggest(model: &KernelModel, online: &CpuSet) -> Result<CpuSet, TargetError> {
    let first = online.first().ok_or(TargetError::SingleCpu)?;
    let core = model
        .cpus
        .detail
        .get(&first)
        .and_then(|d| d.siblings.clone())
        .unwrap_or_else(|| [first].into_iter().collect());
    let rest = online.difference(&core);
    if rest.is_empty() {
        return Err(TargetError::SingleCpu);
    }
    Ok(rest)
}

/// Counts of findings by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub unknown: usize,
}

/// The result of all checks.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// JSON schema identifier.
    pub schema: &'static str,
    /// Kernel release checked.
    pub kernel: Option<String>,
    pub target: Target,
    pub summary: Summary,
    /// `ready`, `warnings` or `not ready`.
    pub verdict: &'static str,
    /// 0 ready, 1 warnings or unknowns, 2 failures.
    pub exit_code: i32,
    pub findings: Vec<Finding>,
}

/// Run every check for `target`.
pub fn run(model: &KernelModel, target: &Target) -> Report {
    let c = Ctx {
        m: model,
        t: target,
    };
    let mut findings = vec![
        c.kernel_config(
            "kernel.no_hz_full",
            "NO_HZ_FULL",
            Severity::Fail,
            "stop the tick on busy CPUs (nohz_full)",
        ),
        c.kernel_config(
            "kernel.rcu_nocb_cpu",
            "RCU_NOCB_CPU",
            Severity::Warn,
            "offload RCU callbacks (rcu_nocbs)",
        ),
        c.kernel_config(
            "kernel.cpu_isolation",
            "CPU_ISOLATION",
            Severity::Fail,
            "honour isolcpus= and housekeeping",
        ),
        c.tracing(),
        c.boot_nohz_full(),
        c.domain_isolated(),
        c.rcu_nocbs(),
        c.managed_irq(),
        c.skew_tick(),
        c.tsc_reliable(),
        c.online(),
        c.housekeeping(),
        c.smt(),
        c.governor(),
        c.idle_states(),
        c.tsc_invariant(),
        c.clocksource(),
        c.irq_affinity(false),
        c.irq_affinity(true),
        c.managed_irqs(),
        c.default_irq_affinity(),
        c.kthreads(),
        c.user_tasks(),
        c.rt_throttling(),
        c.fair_server(),
        c.workqueue(),
        c.writeback(),
        c.watchdog_cpumask(),
        c.nmi_watchdog(),
        c.timer_migration(),
        c.stat_interval(),
        c.numa_balancing(),
        c.thp(),
        c.ksm(),
        c.mce_poll(),
        c.armed_timers(),
        c.tick_state(),
    ];
    findings.sort_by_key(|f| f.area);
    let mut s = Summary::default();
    for f in &findings {
        match f.severity {
            Severity::Ok => s.ok += 1,
            Severity::Warn => s.warn += 1,
            Severity::Fail => s.fail += 1,
            Severity::Unknown => s.unknown += 1,
        }
    }
    let (verdict, exit_code) = if s.fail > 0 {
        ("not ready", 2)
    } else if s.warn > 0 || s.unknown > 0 {
        ("warnings", 1)
    } else {
        ("ready", 0)
    };
    Report {
        schema: "isol.check/v1",
        kernel: model.release.as_ref().cloned(),
        target: target.clone(),
        summary: s,
        verdict,
        exit_code,
        findings,
    }
}

struct Ctx<'a> {
    m: &'a KernelModel,
    t: &'a Target,
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

fn finding(
    id: &'static str,
    area: Area,
    severity: Severity,
    summary: impl Into<String>,
    evidence: Vec<Evidence>,
    fix: Option<Fix>,
) -> Finding {
    Finding {
        id,
        area,
        severity,
        summary: summary.into(),
        evidence,
        fix: if severity == Severity::Ok { None } else { fix },
    }
}

fn unknown<T>(id: &'static str, area: Area, what: &str, fact: &Fact<T>) -> Finding {
    let why = fact.why_unknown().unwrap_or_default();
    let (file, reason) = why.rsplit_once(": ").unwrap_or((why.as_str(), ""));
    let next = if reason == "needs root" {
        "run isol as root"
    } else {
        "this kernel does not expose it"
    };
    finding(
        id,
        area,
        Severity::Unknown,
        format!("{what}: unknown ({reason})"),
        vec![ev(file, reason)],
        fix(FixKind::Runtime, next),
    )
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
        unknown: "absent".into(),
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
    fn target(&self) -> &CpuSet {
        &self.t.cpus
    }

    fn hk(&self) -> String {
        cpus(&self.t.housekeeping)
    }

    /// The boot parameters that isolate the target fully.
    fn boot_line(&self) -> String {
        let t = self.target().to_list();
        format!(
            "nohz_full={t} isolcpus=nohz,domain,managed_irq,{t} rcu_nocbs={t} irqaffinity={}",
            self.hk()
        )
    }

    fn kernel_config(&self, id: &'static str, option: &str, bad: Severity, what: &str) -> Finding {
        let Some(cfg) = self.m.config.as_ref() else {
            return unknown(
                id,
                Area::Kernel,
                &format!("CONFIG_{option}"),
                &self.m.config,
            );
        };
        let value = cfg.value(option).unwrap_or("not mentioned").to_string();
        let evidence = vec![ev(&cfg.source, format!("CONFIG_{option}={value}"))];
        if cfg.enabled(option) {
            finding(
                id,
                Area::Kernel,
                Severity::Ok,
                format!("kernel built with CONFIG_{option}"),
                evidence,
                None,
            )
        } else {
            finding(
                id,
                Area::Kernel,
                bad,
                format!("kernel built without CONFIG_{option}: it cannot {what}"),
                evidence,
                fix(FixKind::Kernel, format!("boot a kernel built with CONFIG_{option}=y (Debian's linux-image-cloud-amd64 and -rt kernels have it)")),
            )
        }
    }

    fn tracing(&self) -> Finding {
        let id = "kernel.tracing";
        let tp = self
            .m
            .config
            .as_ref()
            .map(|c| c.enabled("TRACEPOINTS") || c.enabled("FTRACE"));
        let mut e = vec![ev(
            "/proc/self/mounts",
            self.m
                .tracefs
                .clone()
                .map_or("tracefs not mounted".into(), |p| format!("tracefs at {p}")),
        )];
        if let Some(c) = self.m.config.as_ref() {
            let on: Vec<String> = c
                .tracing()
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| n.to_string())
                .collect();
            e.push(ev(
                &c.source,
                format!(
                    "enabled: {}",
                    if on.is_empty() {
                        "none".into()
                    } else {
                        on.join(" ")
                    }
                ),
            ));
        }
        match (tp, &self.m.tracefs) {
            (Some(false), _) => finding(
                id,
                Area::Kernel,
                Severity::Warn,
                "kernel built without tracepoints: interruptions cannot be attributed",
                e,
                fix(
                    FixKind::Kernel,
                    "boot a kernel with CONFIG_FTRACE=y and CONFIG_TRACEPOINTS=y",
                ),
            ),
            (_, None) => finding(
                id,
                Area::Kernel,
                Severity::Warn,
                "tracefs is not mounted: interruptions cannot be attributed",
                e,
                fix(
                    FixKind::Runtime,
                    "mount -t tracefs nodev /sys/kernel/tracing",
                ),
            ),
            (_, Some(_)) => finding(
                id,
                Area::Kernel,
                Severity::Ok,
                "tracefs is mounted: interruptions can be attributed",
                e,
                None,
            ),
        }
    }

    fn boot_nohz_full(&self) -> Finding {
        let id = "boot.nohz_full";
        let nohz = self.m.nohz_full();
        let mut e = vec![ev(
            "/sys/devices/system/cpu/nohz_full",
            match &self.m.cpus.nohz_full {
                Fact::Known(s) => cpus(s),
                f => f.why_unknown().unwrap_or_default(),
            },
        )];
        if let Some(c) = self.m.cmdline.as_ref() {
            e.push(ev(
                "/proc/cmdline",
                c.nohz_full
                    .as_ref()
                    .map_or("no nohz_full=".into(), |s| format!("nohz_full={s}")),
            ));
        }
        let missing = self.target().difference(&nohz);
        if missing.is_empty() {
            finding(
                id,
                Area::Boot,
                Severity::Ok,
                format!("{} nohz_full", are(self.target())),
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Boot,
                Severity::Fail,
                format!(
                    "{} not nohz_full: the tick keeps interrupting it",
                    are(&missing)
                ),
                e,
                fix(FixKind::Boot, self.boot_line()),
            )
        }
    }

    fn domain_isolated(&self) -> Finding {
        let id = "boot.domain_isolated";
        let iso = self.m.domain_isolated();
        let e = vec![
            ev(
                "/sys/devices/system/cpu/isolated",
                self.m.cpus.isolated.as_ref().map_or_else(
                    || self.m.cpus.isolated.why_unknown().unwrap_or_default(),
                    cpus,
                ),
            ),
            ev(
                "cpuset.cpus.partition",
                format!(
                    "isolated partitions: {}",
                    cpus(&self.m.partition_isolated())
                ),
            ),
        ];
        let missing = self.target().difference(&iso);
        if missing.is_empty() {
            finding(
                id,
                Area::Boot,
                Severity::Ok,
                format!("{} out of scheduler load balancing", are(self.target())),
                e,
                None,
            )
        } else {
            finding(id, Area::Boot, Severity::Fail, format!("{} in scheduler load balancing: other tasks get moved onto them", are(&missing)), e,
                fix(FixKind::Boot, format!("isolcpus=nohz,domain,managed_irq,{} (or at runtime, a cgroup v2 cpuset partition of type isolated)", self.target())))
        }
    }

    fn rcu_nocbs(&self) -> Finding {
        let id = "boot.rcu_nocbs";
        let Some(cmd) = self.m.cmdline.as_ref() else {
            return unknown(id, Area::Boot, "rcu_nocbs", &self.m.cmdline);
        };
        // nohz_full= implies RCU callback offloading for those CPUs.
        let offloaded = cmd
            .rcu_nocbs
            .clone()
            .unwrap_or_default()
            .union(&self.m.nohz_full());
        let e = vec![ev(
            "/proc/cmdline",
            format!(
                "rcu_nocbs={} nohz_full={}",
                cmd.rcu_nocbs.as_ref().map_or("(unset)".into(), cpus),
                cmd.nohz_full.as_ref().map_or("(unset)".into(), cpus)
            ),
        )];
        let missing = self.target().difference(&offloaded);
        if missing.is_empty() {
            finding(
                id,
                Area::Boot,
                Severity::Ok,
                format!("RCU callbacks of CPUs {} are offloaded", self.target()),
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Boot,
                Severity::Warn,
                format!("RCU callbacks still run on CPUs {missing}"),
                e,
                fix(FixKind::Boot, format!("rcu_nocbs={}", self.target())),
            )
        }
    }

    fn managed_irq(&self) -> Finding {
        let id = "boot.managed_irq";
        let Some(cmd) = self.m.cmdline.as_ref() else {
            return unknown(id, Area::Boot, "isolcpus managed_irq", &self.m.cmdline);
        };
        let covered = cmd
            .isolcpus
            .as_ref()
            .filter(|i| i.managed_irq)
            .map(|i| i.cpus.clone())
            .unwrap_or_default();
        let e = vec![ev(
            "/proc/cmdline",
            cmd.get("isolcpus")
                .flatten()
                .map_or("no isolcpus=".into(), |v| format!("isolcpus={v}")),
        )];
        if self.target().is_subset(&covered) {
            finding(
                id,
                Area::Boot,
                Severity::Ok,
                "managed interrupts avoid the target CPUs (isolcpus=managed_irq)",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Boot,
                Severity::Warn,
                "managed interrupts (multi-queue devices) may be placed on the target CPUs",
                e,
                fix(
                    FixKind::Boot,
                    format!("isolcpus=nohz,domain,managed_irq,{}", self.target()),
                ),
            )
        }
    }

    fn skew_tick(&self) -> Finding {
        let id = "boot.skew_tick";
        let Some(cmd) = self.m.cmdline.as_ref() else {
            return unknown(id, Area::Boot, "skew_tick", &self.m.cmdline);
        };
        let v = cmd.skew_tick.clone();
        let e = vec![ev(
            "/proc/cmdline",
            v.as_ref()
                .map_or("no skew_tick=".into(), |v| format!("skew_tick={v}")),
        )];
        if v.as_deref() == Some("1") {
            finding(
                id,
                Area::Boot,
                Severity::Ok,
                "ticks are skewed across CPUs (less lock contention in the tick)",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Boot,
                Severity::Warn,
                "ticks fire on all CPUs at once (jiffies lock contention when the tick runs)",
                e,
                fix(FixKind::Boot, "skew_tick=1"),
            )
        }
    }

    fn tsc_reliable(&self) -> Finding {
        let id = "boot.tsc_reliable";
        let cmd_tsc = self.m.cmdline.as_ref().and_then(|c| c.tsc.clone());
        let flag = self
            .m
            .cpus
            .tsc_flags
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == "tsc_reliable"));
        let e = vec![
            ev(
                "/proc/cmdline",
                cmd_tsc
                    .as_ref()
                    .map_or("no tsc=".into(), |v| format!("tsc={v}")),
            ),
            ev(
                "/proc/cpuinfo",
                if flag {
                    "tsc_reliable"
                } else {
                    "no tsc_reliable flag"
                },
            ),
        ];
        if flag || matches!(cmd_tsc.as_deref(), Some("reliable") | Some("nowatchdog")) {
            finding(
                id,
                Area::Boot,
                Severity::Ok,
                "the TSC is trusted: no clocksource watchdog timer",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Boot,
                Severity::Warn,
                "the clocksource watchdog periodically checks the TSC with a timer",
                e,
                fix(
                    FixKind::Boot,
                    "tsc=reliable (only on machines whose TSC is invariant)",
                ),
            )
        }
    }

    fn online(&self) -> Finding {
        let id = "cpu.online";
        let online = self.m.cpus.online.as_ref().cloned().unwrap_or_default();
        let e = vec![ev("/sys/devices/system/cpu/online", cpus(&online))];
        let off = self.target().difference(&online);
        if off.is_empty() {
            finding(
                id,
                Area::Cpu,
                Severity::Ok,
                format!("{} online", are(self.target())),
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Cpu,
                Severity::Fail,
                format!("{} offline", are(&off)),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "echo 1 > /sys/devices/system/cpu/cpu{}/online",
                        off.first().unwrap_or(0)
                    ),
                ),
            )
        }
    }

    fn housekeeping(&self) -> Finding {
        let id = "cpu.housekeeping";
        let e = vec![ev(
            "/sys/devices/system/cpu/online",
            format!("target {}, housekeeping {}", self.target(), self.hk()),
        )];
        let n = self.t.housekeeping.len();
        if n >= 1 {
            finding(
                id,
                Area::Cpu,
                Severity::Ok,
                format!(
                    "{n} housekeeping CPU{} ({}) take{} the kernel's background work",
                    if n == 1 { "" } else { "s" },
                    self.hk(),
                    if n == 1 { "s" } else { "" }
                ),
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Cpu,
                Severity::Fail,
                "no housekeeping CPU left",
                e,
                fix(
                    FixKind::Boot,
                    "keep at least one CPU out of nohz_full= and isolcpus=",
                ),
            )
        }
    }

    fn smt(&self) -> Finding {
        let id = "cpu.smt_siblings";
        let mut busy = Vec::new();
        let mut e = Vec::new();
        for cpu in self.target().iter() {
            let Some(sib) = self
                .m
                .cpus
                .detail
                .get(&cpu)
                .and_then(|d| d.siblings.clone())
            else {
                continue;
            };
            e.push(ev(
                format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"),
                cpus(&sib),
            ));
            for s in sib
                .difference(self.target())
                .intersection(&self.t.housekeeping)
                .iter()
            {
                busy.push(format!("{s} (sibling of {cpu})"));
            }
        }
        if e.is_empty() {
            return unknown(
                id,
                Area::Cpu,
                "SMT siblings",
                &absent("/sys/devices/system/cpu/cpuN/topology/thread_siblings_list"),
            );
        }
        if busy.is_empty() {
            finding(
                id,
                Area::Cpu,
                Severity::Ok,
                "no SMT sibling of a target CPU does housekeeping work",
                e,
                None,
            )
        } else {
            finding(id, Area::Cpu, Severity::Warn, format!("SMT siblings run housekeeping work and share the core: {}", some_of(&busy, 4)), e,
                fix(FixKind::Runtime, "take the siblings offline (echo 0 > /sys/devices/system/cpu/cpuN/online), isolate them too, or disable SMT (nosmt)"))
        }
    }

    fn governor(&self) -> Finding {
        let id = "cpu.governor";
        let mut e = Vec::new();
        let mut slow = Vec::new();
        for cpu in self.target().iter() {
            if let Some(g) = self
                .m
                .cpus
                .detail
                .get(&cpu)
                .and_then(|d| d.governor.clone())
            {
                e.push(ev(
                    format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
                    g.clone(),
                ));
                if g != "performance" {
                    slow.push(format!("{cpu} ({g})"));
                }
            }
        }
        if e.is_empty() {
            return finding(
                id,
                Area::Cpu,
                Severity::Ok,
                "no frequency scaling exposed to the kernel (a VM, or fixed frequency)",
                vec![ev("/sys/devices/system/cpu/cpuN/cpufreq", "absent")],
                None,
            );
        }
        if slow.is_empty() {
            finding(
                id,
                Area::Cpu,
                Severity::Ok,
                "target CPUs run the performance governor",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Cpu,
                Severity::Warn,
                format!("frequency changes on CPUs {}", some_of(&slow, 4)),
                e,
                fix(
                    FixKind::Runtime,
                    "echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
                ),
            )
        }
    }

    fn idle_states(&self) -> Finding {
        let id = "cpu.idle_states";
        const DEEP_US: u64 = 10;
        let mut deep = Vec::new();
        let mut e = Vec::new();
        for cpu in self.target().iter() {
            let Some(d) = self.m.cpus.detail.get(&cpu) else {
                continue;
            };
            for (i, s) in d.idle_states.iter().enumerate() {
                e.push(ev(
                    format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle/state{i}"),
                    format!(
                        "{} latency {} us{}",
                        s.name,
                        s.latency_us,
                        if s.disabled { " disabled" } else { "" }
                    ),
                ));
                if !s.disabled && s.latency_us > DEEP_US {
                    deep.push(format!("cpu{cpu} {} ({} us)", s.name, s.latency_us));
                }
            }
        }
        if deep.is_empty() {
            finding(
                id,
                Area::Cpu,
                Severity::Ok,
                format!("no enabled idle state on the target exits slower than {DEEP_US} us"),
                e,
                None,
            )
        } else {
            finding(id, Area::Cpu, Severity::Warn, format!("deep idle states add wake-up latency: {}", some_of(&deep, 4)), e,
                fix(FixKind::Runtime, "echo 1 > /sys/devices/system/cpu/cpuN/cpuidle/stateK/disable (or boot with processor.max_cstate=1 intel_idle.max_cstate=0)"))
        }
    }

    fn tsc_invariant(&self) -> Finding {
        let id = "cpu.tsc_invariant";
        let Some(flags) = self.m.cpus.tsc_flags.as_ref() else {
            return unknown(id, Area::Cpu, "TSC flags", &self.m.cpus.tsc_flags);
        };
        let e = vec![ev("/proc/cpuinfo", flags.join(" "))];
        let has = |f: &str| flags.iter().any(|x| x == f);
        if has("constant_tsc") && has("nonstop_tsc") {
            finding(
                id,
                Area::Cpu,
                Severity::Ok,
                "the TSC is invariant (constant_tsc, nonstop_tsc): cycle counts are time",
                e,
                None,
            )
        } else {
            finding(id, Area::Cpu, Severity::Warn, "the TSC is not invariant: noise measured in cycles is not time", e, fix(FixKind::Platform, "use hardware with an invariant TSC, or expose it to the VM (-cpu host,+invtsc)"))
        }
    }

    fn clocksource(&self) -> Finding {
        let id = "cpu.clocksource";
        let Some(cs) = self.m.cpus.clocksource.as_ref() else {
            return unknown(id, Area::Cpu, "clocksource", &self.m.cpus.clocksource);
        };
        let e = vec![ev(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            cs.clone(),
        )];
        if cs == "tsc" {
            finding(
                id,
                Area::Cpu,
                Severity::Ok,
                "clocksource is tsc: clock_gettime needs no syscall",
                e,
                None,
            )
        } else {
            finding(id, Area::Cpu, Severity::Warn, format!("clocksource is {cs}: reading the time may enter the kernel"), e,
                fix(FixKind::Runtime, "echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource (if tsc is in available_clocksource)"))
        }
    }

    fn irq_affinity(&self, effective: bool) -> Finding {
        let (id, what) = if effective {
            ("irq.effective_affinity", "is delivered to")
        } else {
            ("irq.affinity", "may be delivered to")
        };
        let Some(irqs) = self.m.irqs.as_ref() else {
            return unknown(id, Area::Irq, "IRQ affinity", &self.m.irqs);
        };
        let mut hits = Vec::new();
        let mut e = Vec::new();
        for a in irqs.values() {
            // Managed IRQs are judged by their own check.
            if a.managed == Some(true) {
                continue;
            }
            let set = if effective {
                a.effective.as_ref()
            } else {
                a.affinity.as_ref()
            };
            if let Some(s) = set.filter(|s| s.intersects(self.target())) {
                let name = if a.actions.is_empty() {
                    String::new()
                } else {
                    format!(" {}", a.actions.join(","))
                };
                hits.push(format!("{}{}", a.irq, name));
                e.push(ev(
                    format!(
                        "/proc/irq/{}/{}",
                        a.irq,
                        if effective {
                            "effective_affinity_list"
                        } else {
                            "smp_affinity_list"
                        }
                    ),
                    cpus(s),
                ));
            }
        }
        if hits.is_empty() {
            finding(
                id,
                Area::Irq,
                Severity::Ok,
                format!("no device IRQ {what} the target CPUs ({} IRQs)", irqs.len()),
                vec![ev("/proc/irq/*", format!("{} IRQs", irqs.len()))],
                None,
            )
        } else {
            let sev = if effective {
                Severity::Fail
            } else {
                Severity::Warn
            };
            finding(id, Area::Irq, sev, format!("{} device IRQ{} {} CPUs {}: {}", hits.len(), if hits.len() == 1 { "" } else { "s" }, if hits.len() == 1 { what.to_string() } else { what.replacen("is ", "are ", 1) }, self.target(), some_of(&hits, 5)), e,
                fix(FixKind::Runtime, format!("for each IRQ N: echo {} > /proc/irq/N/smp_affinity_list (and stop irqbalance or ban the CPUs)", self.hk())))
        }
    }

    fn managed_irqs(&self) -> Finding {
        let id = "irq.managed";
        let Some(irqs) = self.m.irqs.as_ref() else {
            return unknown(id, Area::Irq, "managed IRQs", &self.m.irqs);
        };
        let on_target = |a: &&crate::kernel::IrqAffinity| {
            a.effective
                .as_ref()
                .is_some_and(|s| s.intersects(self.target()))
        };
        let undecided = irqs
            .values()
            .filter(on_target)
            .filter(|a| a.managed.is_none())
            .count();
        if undecided > 0 {
            return finding(
                id,
                Area::Irq,
                Severity::Unknown,
                format!("{undecided} IRQs delivered to the target may be kernel-managed (unchangeable); the kernel does not say"),
                vec![ev("/sys/kernel/debug/irq/irqs", "absent: debugfs not mounted, or CONFIG_GENERIC_IRQ_DEBUGFS off")],
                fix(FixKind::Runtime, "mount -t debugfs none /sys/kernel/debug"),
            );
        }
        let hits: Vec<String> = irqs
            .values()
            .filter(on_target)
            .filter(|a| a.managed == Some(true))
            .map(|a| a.irq.to_string())
            .collect();
        let e = vec![ev(
            "/sys/kernel/debug/irq/irqs/*",
            format!("{} managed IRQs on the target", hits.len()),
        )];
        if hits.is_empty() {
            finding(
                id,
                Area::Irq,
                Severity::Ok,
                "no kernel-managed IRQ is delivered to the target CPUs",
                e,
                None,
            )
        } else {
            finding(id, Area::Irq, Severity::Warn, format!("kernel-managed IRQs {} are delivered to the target; their affinity cannot be changed at runtime", some_of(&hits, 6)), e,
                fix(FixKind::Boot, format!("isolcpus=managed_irq,{}", self.target())))
        }
    }

    fn default_irq_affinity(&self) -> Finding {
        let id = "irq.default_affinity";
        let Some(d) = self.m.default_irq_affinity.as_ref() else {
            return unknown(
                id,
                Area::Irq,
                "default IRQ affinity",
                &self.m.default_irq_affinity,
            );
        };
        let e = vec![ev("/proc/irq/default_smp_affinity", cpus(d))];
        let hit = d.intersection(self.target());
        if hit.is_empty() {
            finding(
                id,
                Area::Irq,
                Severity::Ok,
                "new IRQs default to housekeeping CPUs",
                e,
                None,
            )
        } else {
            let nr = self
                .m
                .cpus
                .possible
                .as_ref()
                .and_then(|p| p.last())
                .map_or(1, |l| l + 1);
            finding(
                id,
                Area::Irq,
                Severity::Warn,
                format!("new IRQs may be delivered to CPUs {hit}"),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "echo {} > /proc/irq/default_smp_affinity (or boot with irqaffinity={})",
                        self.t.housekeeping.to_mask(nr),
                        self.hk()
                    ),
                ),
            )
        }
    }

    fn movable_on_target(&self, kernel: bool) -> Option<Vec<String>> {
        let threads = self.m.threads.as_ref()?;
        let me = std::process::id();
        Some(
            threads
                .iter()
                .filter(|t| t.kernel_thread == kernel && t.affinity_settable && t.pid != me)
                .filter(|t| {
                    t.allowed.intersects(self.target()) && !t.allowed.is_subset(self.target())
                })
                .map(|t| format!("{}/{}", t.comm, t.tid))
                .collect(),
        )
    }

    fn kthreads(&self) -> Finding {
        let id = "tasks.kthreads";
        let Some(hits) = self.movable_on_target(true) else {
            return unknown(id, Area::Tasks, "kernel threads", &self.m.threads);
        };
        let e = vec![ev(
            "/proc/*/task/*/status",
            format!(
                "{} movable kernel threads allowed on the target",
                hits.len()
            ),
        )];
        if hits.is_empty() {
            finding(
                id,
                Area::Tasks,
                Severity::Ok,
                "no movable kernel thread may run on the target CPUs",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Tasks,
                Severity::Warn,
                format!(
                    "{} kernel threads may run on the target: {}",
                    hits.len(),
                    some_of(&hits, 4)
                ),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "taskset -pc {} PID for each (isolcpus=domain does this at boot)",
                        self.hk()
                    ),
                ),
            )
        }
    }

    fn user_tasks(&self) -> Finding {
        let id = "tasks.user";
        let Some(hits) = self.movable_on_target(false) else {
            return unknown(id, Area::Tasks, "user tasks", &self.m.threads);
        };
        let e = vec![ev(
            "/proc/*/task/*/status",
            format!("{} user threads allowed on the target", hits.len()),
        )];
        if hits.is_empty() {
            finding(
                id,
                Area::Tasks,
                Severity::Ok,
                "no user task may run on the target CPUs",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Tasks,
                Severity::Warn,
                format!(
                    "{} user threads may run on the target: {}",
                    hits.len(),
                    some_of(&hits, 4)
                ),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "taskset -apc {} PID for each (or isolcpus=domain / a cpuset partition)",
                        self.hk()
                    ),
                ),
            )
        }
    }

    fn rt_throttling(&self) -> Finding {
        let id = "tasks.rt_throttling";
        let Some(v) = self.m.sysctls.sched_rt_runtime_us.clone() else {
            return unknown(
                id,
                Area::Tasks,
                "RT throttling",
                &absent("/proc/sys/kernel/sched_rt_runtime_us"),
            );
        };
        let e = vec![ev("/proc/sys/kernel/sched_rt_runtime_us", v.clone())];
        if v == "-1" {
            finding(
                id,
                Area::Tasks,
                Severity::Ok,
                "RT throttling is off: a SCHED_FIFO loop keeps its CPU",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Tasks,
                Severity::Warn,
                format!(
                    "RT throttling takes the CPU from a SCHED_FIFO loop beyond {v} us per period"
                ),
                e,
                fix(FixKind::Runtime, "sysctl -w kernel.sched_rt_runtime_us=-1"),
            )
        }
    }

    /// Since 6.8, a SCHED_OTHER task on a nohz_full CPU starts the CPU's fair deadline
    /// server, whose timer kicks the CPU about once a second (measured in the lab: 4 local
    /// timer interrupts in 4 s on 6.12 and 6.12-rt, none on 6.1).
    fn fair_server(&self) -> Finding {
        let id = "tasks.fair_server";
        let what = "the fair deadline server";
        let on: Vec<(u32, u64)> = self
            .target()
            .iter()
            .filter_map(|c| self.m.fair_server.get(&c)?.as_ref().map(|r| (c, *r)))
            .collect();
        let fix_text = "run the isolated thread SCHED_FIFO (isol's enter does with fifo), or turn \
                        the server off on those CPUs: echo 0 > \
                        /sys/kernel/debug/sched/fair_server/cpuN/runtime";
        if !on.is_empty() {
            let e = on
                .iter()
                .map(|(c, r)| {
                    ev(
                        format!("/sys/kernel/debug/sched/fair_server/cpu{c}/runtime"),
                        r.to_string(),
                    )
                })
                .collect();
            let ticking: CpuSet = on.iter().filter(|(_, r)| *r > 0).map(|(c, _)| *c).collect();
            return if ticking.is_empty() {
                finding(
                    id,
                    Area::Tasks,
                    Severity::Ok,
                    "the fair deadline server is off on the target CPUs",
                    e,
                    None,
                )
            } else {
                finding(
                    id,
                    Area::Tasks,
                    Severity::Warn,
                    format!(
                        "the fair deadline server is on for CPU {}: a SCHED_OTHER task there is \
                         kicked about once a second",
                        ticking.to_list()
                    ),
                    e,
                    fix(FixKind::Runtime, fix_text),
                )
            };
        }
        // No debugfs: decide from the kernel's version.
        let Some(release) = self.m.release.as_ref() else {
            return unknown(id, Area::Tasks, what, &self.m.release);
        };
        let version = crate::kernel::version(release).unwrap_or((0, 0));
        let e = vec![ev("/proc/sys/kernel/osrelease", release.clone())];
        if version < crate::kernel::FAIR_SERVER_SINCE {
            finding(
                id,
                Area::Tasks,
                Severity::Ok,
                "this kernel has no fair deadline server (before 6.8)",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Tasks,
                Severity::Warn,
                "this kernel (6.8 or later) has a fair deadline server: a SCHED_OTHER task on a \
                 nohz_full CPU is kicked about once a second (mount debugfs to see its runtime)",
                e,
                fix(FixKind::Runtime, fix_text),
            )
        }
    }

    fn mask_check(&self, id: &'static str, what: &str, fact: &Fact<CpuSet>, file: &str) -> Finding {
        let Some(mask) = fact.as_ref() else {
            return unknown(id, Area::Services, what, fact);
        };
        let e = vec![ev(file, cpus(mask))];
        let hit = mask.intersection(self.target());
        if hit.is_empty() {
            finding(
                id,
                Area::Services,
                Severity::Ok,
                format!("{what} stays on housekeeping CPUs"),
                e,
                None,
            )
        } else {
            let nr = self
                .m
                .cpus
                .possible
                .as_ref()
                .and_then(|p| p.last())
                .map_or(1, |l| l + 1);
            finding(
                id,
                Area::Services,
                Severity::Warn,
                format!("{what} may run on CPUs {hit}"),
                e,
                fix(
                    FixKind::Runtime,
                    format!("echo {} > {file}", self.t.housekeeping.to_mask(nr)),
                ),
            )
        }
    }

    fn workqueue(&self) -> Finding {
        self.mask_check(
            "services.workqueue",
            "unbound workqueue work",
            &self.m.workqueue.cpumask,
            "/sys/devices/virtual/workqueue/cpumask",
        )
    }

    fn writeback(&self) -> Finding {
        self.mask_check(
            "services.writeback",
            "writeback work",
            &self.m.workqueue.writeback,
            "/sys/devices/virtual/workqueue/writeback/cpumask",
        )
    }

    fn sysctl(
        &self,
        id: &'static str,
        path: &str,
        value: &Option<String>,
        good: impl Fn(&str) -> bool,
        [ok, bad, fix_cmd]: [&str; 3],
    ) -> Finding {
        let Some(v) = value else {
            return unknown(id, Area::Services, path, &absent(path));
        };
        let e = vec![ev(path, v.clone())];
        if good(v) {
            finding(id, Area::Services, Severity::Ok, ok, e, None)
        } else {
            finding(
                id,
                Area::Services,
                Severity::Warn,
                bad,
                e,
                fix(FixKind::Runtime, fix_cmd),
            )
        }
    }

    fn watchdog_cpumask(&self) -> Finding {
        let id = "services.watchdog_cpumask";
        let s = &self.m.sysctls;
        let off = s.watchdog.as_deref() == Some("0")
            || self.m.cmdline.as_ref().is_some_and(|c| c.nowatchdog);
        let mask = s
            .watchdog_cpumask
            .as_deref()
            .and_then(|m| CpuSet::parse_list(m).ok());
        let e = vec![
            ev(
                "/proc/sys/kernel/watchdog",
                s.watchdog.clone().unwrap_or_else(|| "absent".into()),
            ),
            ev(
                "/proc/sys/kernel/watchdog_cpumask",
                s.watchdog_cpumask
                    .clone()
                    .unwrap_or_else(|| "absent".into()),
            ),
        ];
        match mask {
            _ if off => finding(
                id,
                Area::Services,
                Severity::Ok,
                "the lockup watchdog is off",
                e,
                None,
            ),
            Some(m) if !m.intersects(self.target()) => finding(
                id,
                Area::Services,
                Severity::Ok,
                "the lockup watchdog runs only on housekeeping CPUs",
                e,
                None,
            ),
            Some(m) => finding(
                id,
                Area::Services,
                Severity::Warn,
                format!(
                    "the lockup watchdog's hrtimer fires on CPUs {}",
                    m.intersection(self.target())
                ),
                e,
                fix(
                    FixKind::Runtime,
                    format!("sysctl -w kernel.watchdog_cpumask={}", self.hk()),
                ),
            ),
            None => finding(
                id,
                Area::Services,
                Severity::Unknown,
                "the lockup watchdog's CPUs are unknown",
                e,
                fix(FixKind::Runtime, "run isol as root"),
            ),
        }
    }

    fn nmi_watchdog(&self) -> Finding {
        self.sysctl(
            "services.nmi_watchdog",
            "/proc/sys/kernel/nmi_watchdog",
            &self.m.sysctls.nmi_watchdog,
            |v| v == "0",
            [
                "the NMI watchdog is off",
                "the NMI watchdog interrupts every CPU periodically (perf NMI)",
                "sysctl -w kernel.nmi_watchdog=0",
            ],
        )
    }

    fn timer_migration(&self) -> Finding {
        self.sysctl(
            "services.timer_migration",
            "/proc/sys/kernel/timer_migration",
            &self.m.sysctls.timer_migration,
            |v| v == "1",
            [
                "timer migration is on: unpinned timers move to busy housekeeping CPUs",
                "timer migration is off: unpinned timers stay on the CPU that armed them",
                "sysctl -w kernel.timer_migration=1",
            ],
        )
    }

    fn stat_interval(&self) -> Finding {
        self.sysctl(
            "services.vmstat_interval",
            "/proc/sys/vm/stat_interval",
            &self.m.sysctls.stat_interval,
            |v| v.parse::<u64>().is_ok_and(|n| n >= 10),
            [
                "vmstat folds per-CPU counters every 10 s or less often",
                "vmstat_update runs every second on CPUs with dirty counters",
                "sysctl -w vm.stat_interval=10",
            ],
        )
    }

    fn numa_balancing(&self) -> Finding {
        let v = self
            .m
            .sysctls
            .numa_balancing
            .clone()
            .or_else(|| Some("absent (no NUMA balancing)".into()));
        self.sysctl("services.numa_balancing", "/proc/sys/kernel/numa_balancing", &v, |v| v == "0" || v.starts_with("absent"),
            ["automatic NUMA balancing is off", "automatic NUMA balancing unmaps pages to sample them: page faults on the isolated task", "sysctl -w kernel.numa_balancing=0"])
    }

    fn thp(&self) -> Finding {
        let id = "services.thp";
        let Some(mode) = self.m.mm.thp_enabled.as_ref() else {
            if self.m.mm.thp_enabled.is_absent() {
                return finding(
                    id,
                    Area::Services,
                    Severity::Ok,
                    "no transparent huge pages in this kernel",
                    vec![ev("/sys/kernel/mm/transparent_hugepage/enabled", "absent")],
                    None,
                );
            }
            return unknown(
                id,
                Area::Services,
                "transparent huge pages",
                &self.m.mm.thp_enabled,
            );
        };
        let e = vec![ev(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            mode.clone(),
        )];
        if mode == "always" {
            finding(
                id,
                Area::Services,
                Severity::Warn,
                "transparent huge pages are always on: khugepaged and compaction disturb tasks",
                e,
                fix(
                    FixKind::Runtime,
                    "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (or never)",
                ),
            )
        } else {
            finding(
                id,
                Area::Services,
                Severity::Ok,
                format!("transparent huge pages: {mode}"),
                e,
                None,
            )
        }
    }

    fn ksm(&self) -> Finding {
        let id = "services.ksm";
        let Some(run) = self.m.mm.ksm_run.as_ref() else {
            if self.m.mm.ksm_run.is_absent() {
                return finding(
                    id,
                    Area::Services,
                    Severity::Ok,
                    "no KSM in this kernel",
                    vec![ev("/sys/kernel/mm/ksm/run", "absent")],
                    None,
                );
            }
            return unknown(id, Area::Services, "KSM", &self.m.mm.ksm_run);
        };
        let e = vec![ev("/sys/kernel/mm/ksm/run", run.clone())];
        if run == "0" {
            finding(
                id,
                Area::Services,
                Severity::Ok,
                "KSM page merging is off",
                e,
                None,
            )
        } else {
            finding(
                id,
                Area::Services,
                Severity::Warn,
                "KSM scans and merges pages: write faults and TLB shootdowns",
                e,
                fix(FixKind::Runtime, "echo 0 > /sys/kernel/mm/ksm/run"),
            )
        }
    }

    fn mce_poll(&self) -> Finding {
        let id = "services.mce_poll";
        let mce = &self.m.mce;
        let text = |known: Option<String>, why: Option<String>| known.or(why).unwrap_or_default();
        let dir = "/sys/devices/system/machinecheck/machinecheck0";
        let e = vec![
            ev(
                format!("{dir}/check_interval"),
                text(
                    mce.check_interval.as_ref().map(u64::to_string),
                    mce.check_interval.why_unknown(),
                ),
            ),
            ev(
                format!("{dir}/ignore_ce"),
                text(
                    mce.ignore_ce.as_ref().map(|v| (*v as u8).to_string()),
                    mce.ignore_ce.why_unknown(),
                ),
            ),
        ];
        match mce.polling() {
            Some(false) => finding(id, Area::Services, Severity::Ok, "no machine-check poll timer runs", e, None),
            Some(true) => finding(id, Area::Services, Severity::Warn,
                "the machine-check poll timer fires on every CPU (every check_interval seconds) and keeps the tick device armed", e,
                fix(FixKind::Boot, "mce=ignore_ce (corrected memory errors are then not logged)")),
            None => unknown(id, Area::Services, "machine-check polling", &mce.check_interval),
        }
    }

    fn armed_timers(&self) -> Finding {
        let id = "timers.armed";
        let Some(tl) = self.m.timer_list.as_ref() else {
            return unknown(id, Area::Timers, "armed timers", &self.m.timer_list);
        };
        const TICK: [&str; 3] = [
            "tick_nohz_handler",
            "tick_sched_timer",
            "tick_handle_periodic",
        ];
        let mut hits = Vec::new();
        for cpu in self.target().iter() {
            if let Some(c) = tl.cpus.get(&cpu) {
                for t in c
                    .timers
                    .iter()
                    .filter(|t| !TICK.contains(&t.function.as_str()))
                {
                    hits.push(format!("cpu{cpu} {}", t.function));
                }
            }
        }
        let e = vec![ev(
            "/proc/timer_list",
            if hits.is_empty() {
                "only the tick".into()
            } else {
                hits.join(", ")
            },
        )];
        if hits.is_empty() {
            finding(
                id,
                Area::Timers,
                Severity::Ok,
                "no hrtimer other than the tick is armed on the target CPUs",
                e,
                None,
            )
        } else {
            finding(id, Area::Timers, Severity::Warn, format!("hrtimers armed on the target will interrupt it: {}", some_of(&hits, 5)), e,
                fix(FixKind::Runtime, "move the tasks that own them (hrtimer_wakeup: sleeping tasks) and set kernel.watchdog_cpumask; the dl_server timer needs a quiet CPU"))
        }
    }

    fn tick_state(&self) -> Finding {
        let id = "timers.tick";
        let Some(tl) = self.m.timer_list.as_ref() else {
            return unknown(id, Area::Timers, "tick state", &self.m.timer_list);
        };
        let mut ticking = Vec::new();
        let mut e = Vec::new();
        for cpu in self.target().iter() {
            let stopped = tl.cpus.get(&cpu).and_then(|c| c.tick_stopped);
            let next = tl.tick_device(cpu).and_then(|d| d.next_event);
            e.push(ev(
                "/proc/timer_list",
                format!(
                    "cpu{cpu} tick_stopped={} next_event={}",
                    stopped.map_or("?".into(), |s| (s as u8).to_string()),
                    next.map_or("?".into(), |n| {
                        if n == crate::kernel::timer_list::KTIME_MAX {
                            "KTIME_MAX".into()
                        } else {
                            n.to_string()
                        }
                    })
                ),
            ));
            if tl.tick_quiet(cpu) != Some(true) {
                ticking.push(cpu);
            }
        }
        let nohz = !self.target().difference(&self.m.nohz_full()).is_empty();
        if ticking.is_empty() {
            finding(
                id,
                Area::Timers,
                Severity::Ok,
                "the tick device of every target CPU is quiet (next_event = KTIME_MAX)",
                e,
                None,
            )
        } else if nohz {
            finding(
                id,
                Area::Timers,
                Severity::Warn,
                format!(
                    "the tick is running on CPUs {} and cannot stop (not nohz_full)",
                    ticking
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                e,
                fix(FixKind::Boot, self.boot_line()),
            )
        } else {
            finding(id, Area::Timers, Severity::Ok, format!("the tick device is armed on CPUs {}; nohz_full stops it once a single task runs there", ticking.iter().map(u32::to_string).collect::<Vec<_>>().join(",")), e, None)
        }
    }
}
