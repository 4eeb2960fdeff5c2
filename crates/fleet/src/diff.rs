//! What differs between two machines that matters for isolation: each difference in its
//! check area, with the checks it affects.
//!
//! A side is a kernel model (live, a captured directory or a snapshot) with the readiness
//! report of its target CPUs. What is compared: the kernel release and the config options
//! isolation depends on (the others counted), boot parameters, check severities, the
//! sysctls isol tunes, the CPU layout, IRQ affinities (summarised), workqueue masks, the
//! tasks that may run on the target CPUs (by unit, container and pod, else by name), and
//! tracing left on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use isol_machine::check::{Area, Report};
use isol_model::cpus::CpuSet;
use isol_model::kernel::{Fact, KernelModel, SYSCTLS};

/// JSON schema of `isol diff --json`.
pub const SCHEMA: &str = "isol.diff/v1";

/// One machine, as compared.
pub struct Side<'a> {
    /// What the user named it (`-`, a path).
    pub label: String,
    /// Its kernel model.
    pub model: &'a KernelModel,
    /// Its readiness report.
    pub report: &'a Report,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The check area it belongs to.
    pub area: &'static str,
    /// What differs (`release`, `CONFIG_NO_HZ_FULL`, `nohz_full=`, `check boot.nohz_full`).
    pub item: String,
    /// On the first machine (`-`: absent or unknown).
    pub a: String,
    /// On the second.
    pub b: String,
    /// The checks it affects.
    pub checks: Vec<&'static str>,
}

/// Everything that differs.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The first machine: label, kernel, target CPUs.
    pub a: Summary,
    /// The second.
    pub b: Summary,
    /// The differences, by area in check order.
    pub differences: Vec<Difference>,
    /// Config options that differ but no check reads, counted.
    pub other_config_options: usize,
}

/// A side, as the diff names it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What the user named it.
    pub label: String,
    /// Kernel release.
    pub kernel: Option<String>,
    /// The CPUs judged.
    pub target: String,
    /// Their verdict.
    pub verdict: &'static str,
}

/// Config options isolation depends on, with the checks that read them.
const CONFIG: &[(&str, &[&str])] = &[
    ("NO_HZ_FULL", &["kernel.no_hz_full", "boot.nohz_full"]),
    ("RCU_NOCB_CPU", &["kernel.rcu_nocb_cpu", "boot.rcu_nocbs"]),
    ("CPU_ISOLATION", &["kernel.cpu_isolation"]),
    ("HZ", &["timers.tick"]),
    ("PREEMPT_RT", &["boot.rcu_normal"]),
    ("PREEMPT", &[]),
    ("PREEMPT_DYNAMIC", &[]),
    ("FTRACE", &["kernel.tracing"]),
    ("TRACEPOINTS", &["kernel.tracing"]),
    ("OSNOISE_TRACER", &["services.tracing"]),
    ("TIMERLAT_TRACER", &["services.tracing"]),
    ("NUMA_BALANCING", &["services.numa_balancing"]),
    ("TRANSPARENT_HUGEPAGE", &["services.thp"]),
    ("KSM", &["services.ksm"]),
    ("GENERIC_ENTRY", &["tasks.strict_mode"]),
];

/// Boot parameters, with the checks that read them (others affect none by name).
const BOOT: &[(&str, &[&str])] = &[
    ("nohz_full", &["boot.nohz_full"]),
    ("isolcpus", &["boot.domain_isolated", "boot.managed_irq"]),
    ("rcu_nocbs", &["boot.rcu_nocbs"]),
    ("rcu_nocb_poll", &["boot.rcu_nocbs"]),
    ("irqaffinity", &["irq.default_affinity"]),
    ("skew_tick", &["boot.skew_tick"]),
    ("tsc", &["boot.tsc_reliable", "cpu.clocksource"]),
    ("clocksource", &["cpu.clocksource"]),
    ("rcupdate.rcu_normal_after_boot", &["boot.rcu_normal"]),
    ("nosoftlockup", &["services.watchdog_cpumask"]),
    (
        "nowatchdog",
        &["services.watchdog_cpumask", "services.nmi_watchdog"],
    ),
    ("nmi_watchdog", &["services.nmi_watchdog"]),
    ("intel_pstate", &["cpu.governor"]),
    ("idle", &["cpu.idle_states"]),
    ("processor.max_cstate", &["cpu.idle_states"]),
    ("intel_idle.max_cstate", &["cpu.idle_states"]),
    ("mce", &["services.mce_poll"]),
    ("transparent_hugepage", &["services.thp"]),
];

/// Boot parameters that name the disk or the image, not the kernel's behaviour.
const BOOT_IGNORED: &[&str] = &["BOOT_IMAGE", "root", "initrd", "resume", "UUID"];

/// Sysctls, with the checks that read them.
fn sysctl_checks(name: &str) -> &'static [&'static str] {
    match name {
        "kernel.timer_migration" => &["services.timer_migration"],
        "kernel.watchdog_cpumask" | "kernel.watchdog" => &["services.watchdog_cpumask"],
        "kernel.nmi_watchdog" => &["services.nmi_watchdog"],
        "vm.stat_interval" => &["services.vmstat_interval"],
        "kernel.sched_rt_runtime_us" | "kernel.sched_rt_period_us" => &["tasks.rt_throttling"],
        "kernel.numa_balancing" => &["services.numa_balancing"],
        _ => &[],
    }
}

/// `-` for nothing.
fn or_dash(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

fn fact_text<T>(f: &Fact<T>, show: impl Fn(&T) -> String) -> String {
    match f {
        Fact::Known(v) => show(v),
        Fact::Unknown { why, .. } => format!("unknown ({why})"),
    }
}

fn list(c: &CpuSet) -> String {
    if c.is_empty() {
        "none".into()
    } else {
        c.to_list()
    }
}

struct Collect {
    out: Vec<Difference>,
}

impl Collect {
    fn add(
        &mut self,
        area: &'static str,
        item: impl Into<String>,
        a: String,
        b: String,
        checks: &[&'static str],
    ) {
        if a != b {
            self.out.push(Difference {
                area,
                item: item.into(),
                a,
                b,
                checks: checks.to_vec(),
            });
        }
    }
}

/// Compare two machines.
pub fn diff(a: &Side, b: &Side) -> Diff {
    let mut c = Collect { out: Vec::new() };
    let (ma, mb) = (a.model, b.model);

    // kernel: release and config.
    let release = |m: &KernelModel| fact_text(&m.release, String::clone);
    c.add("kernel", "release", release(ma), release(mb), &[]);
    let opt = |m: &KernelModel, name: &str| match &m.config {
        // Not mentioned is not set.
        Fact::Known(cfg) => cfg.value(name).unwrap_or("n").to_string(),
        Fact::Unknown { why, .. } => format!("unknown ({why})"),
    };
    for (name, checks) in CONFIG {
        c.add(
            "kernel",
            format!("CONFIG_{name}"),
            opt(ma, name),
            opt(mb, name),
            checks,
        );
    }
    let other_config_options = match (&ma.config, &mb.config) {
        (Fact::Known(x), Fact::Known(y)) => {
            let known: BTreeSet<String> =
                CONFIG.iter().map(|(n, _)| format!("CONFIG_{n}")).collect();
            let keys: BTreeSet<&String> = x.options.keys().chain(y.options.keys()).collect();
            keys.into_iter()
                .filter(|k| !known.contains(*k) && x.options.get(*k) != y.options.get(*k))
                .count()
        }
        _ => 0,
    };

    // boot: every parameter but the disk's and the image's.
    let params = |m: &KernelModel| -> BTreeMap<String, String> {
        m.cmdline
            .as_ref()
            .map(|p| {
                p.all
                    .iter()
                    .filter(|(n, _)| !BOOT_IGNORED.contains(&n.as_str()))
                    .map(|(n, v)| (n.clone(), v.clone().unwrap_or_else(|| "(set)".into())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (pa, pb) = (params(ma), params(mb));
    let names: BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    for n in names {
        let checks = BOOT
            .iter()
            .find(|(b, _)| b == n)
            .map(|(_, c)| *c)
            .unwrap_or(&[]);
        c.add(
            "boot",
            format!("{n}="),
            or_dash(pa.get(n).cloned()),
            or_dash(pb.get(n).cloned()),
            checks,
        );
    }

    // cpu: the layout and the clock.
    let target = |s: &Side| list(&s.report.target.cpus);
    c.add("cpu", "target CPUs", target(a), target(b), &["cpu.online"]);
    let hk = |s: &Side| list(&s.report.target.housekeeping);
    c.add(
        "cpu",
        "housekeeping CPUs",
        hk(a),
        hk(b),
        &["cpu.housekeeping"],
    );
    let online = |m: &KernelModel| fact_text(&m.cpus.online, list);
    c.add(
        "cpu",
        "online CPUs",
        online(ma),
        online(mb),
        &["cpu.online"],
    );
    let nohz = |m: &KernelModel| fact_text(&m.cpus.nohz_full, list);
    c.add(
        "cpu",
        "nohz_full CPUs",
        nohz(ma),
        nohz(mb),
        &["boot.nohz_full"],
    );
    let iso = |m: &KernelModel| fact_text(&m.cpus.isolated, list);
    c.add(
        "cpu",
        "isolated CPUs",
        iso(ma),
        iso(mb),
        &["boot.domain_isolated"],
    );
    let cs = |m: &KernelModel| fact_text(&m.cpus.clocksource, String::clone);
    c.add("cpu", "clocksource", cs(ma), cs(mb), &["cpu.clocksource"]);
    let smt = |m: &KernelModel| {
        fact_text(&m.cpus.smt_active, |b| {
            if *b {
                "on".into()
            } else {
                "off".into()
            }
        })
    };
    c.add("cpu", "SMT", smt(ma), smt(mb), &["cpu.smt_siblings"]);

    // irq: a summary per side, not a line per IRQ.
    let irqs = |s: &Side| -> String {
        match &s.model.irqs {
            Fact::Known(map) => {
                let on = map
                    .values()
                    .filter(|i| {
                        i.affinity
                            .as_ref()
                            .is_some_and(|c| c.intersects(&s.report.target.cpus))
                    })
                    .count();
                format!("{on} of {} IRQs may fire on the target", map.len())
            }
            Fact::Unknown { why, .. } => format!("unknown ({why})"),
        }
    };
    c.add("irq", "IRQ affinities", irqs(a), irqs(b), &["irq.affinity"]);
    let dflt = |m: &KernelModel| fact_text(&m.default_irq_affinity, list);
    c.add(
        "irq",
        "default IRQ affinity",
        dflt(ma),
        dflt(mb),
        &["irq.default_affinity"],
    );
    let balance = |m: &KernelModel| {
        if m.irqbalance.is_some() {
            "running".to_string()
        } else {
            "not running".into()
        }
    };
    c.add(
        "irq",
        "irqbalance",
        balance(ma),
        balance(mb),
        &["irq.irqbalance"],
    );

    // services: sysctls, workqueues, tracing.
    for (name, _) in SYSCTLS {
        let v = |m: &KernelModel| or_dash(m.sysctls.get(name));
        c.add("services", name, v(ma), v(mb), sysctl_checks(name));
    }
    let wq = |m: &KernelModel| fact_text(&m.workqueue.cpumask, list);
    c.add(
        "services",
        "workqueue cpumask",
        wq(ma),
        wq(mb),
        &["services.workqueue"],
    );
    let wb = |m: &KernelModel| fact_text(&m.workqueue.writeback, list);
    c.add(
        "services",
        "writeback cpumask",
        wb(ma),
        wb(mb),
        &["services.writeback"],
    );
    let queues = |m: &KernelModel| -> BTreeMap<String, String> {
        m.workqueue
            .queues
            .iter()
            .map(|(n, f)| (n.clone(), fact_text(f, list)))
            .collect()
    };
    let (qa, qb) = (queues(ma), queues(mb));
    let differing: Vec<&String> = qa
        .keys()
        .chain(qb.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|n| qa.get(*n) != qb.get(*n) && *n != "writeback")
        .collect();
    if !differing.is_empty() {
        let show = |q: &BTreeMap<String, String>| {
            differing
                .iter()
                .map(|n| format!("{n} {}", q.get(*n).map_or("-", String::as_str)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        c.add(
            "services",
            "workqueue masks",
            show(&qa),
            show(&qb),
            &["services.workqueue_sysfs"],
        );
    }
    let tracing = |m: &KernelModel| -> String {
        let on: Vec<String> = m
            .tracing
            .as_ref()
            .map(|all| {
                all.iter()
                    .filter(|t| t.on.as_ref() == Some(&true))
                    .filter(|t| {
                        t.tracer.as_ref().is_some_and(|tr| tr != "nop")
                            || t.events.as_ref().is_some_and(|e| !e.is_empty())
                    })
                    .map(|t| {
                        let name = if t.name.is_empty() {
                            "top level"
                        } else {
                            &t.name
                        };
                        format!(
                            "{name} ({})",
                            t.tracer.as_ref().cloned().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if on.is_empty() {
            "off".into()
        } else {
            on.join(", ")
        }
    };
    c.add(
        "services",
        "tracing on",
        tracing(ma),
        tracing(mb),
        &["services.tracing"],
    );

    // tasks: what may run on the target, by place, else by name.
    let tasks = |s: &Side| -> BTreeSet<String> {
        s.model
            .threads
            .as_ref()
            .map(|all| {
                all.iter()
                    .filter(|t| t.affinity_settable || !t.kernel_thread)
                    .filter(|t| t.allowed.intersects(&s.report.target.cpus))
                    .map(|t| match t.place.as_ref().map(|p| p.tag()) {
                        Some(tag) if !tag.is_empty() => tag,
                        _ => name_of(&t.comm),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (ta, tb) = (tasks(a), tasks(b));
    let only = |x: &BTreeSet<String>, y: &BTreeSet<String>| -> String {
        let v: Vec<&str> = x.difference(y).map(String::as_str).collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        }
    };
    if ta != tb {
        c.out.push(Difference {
            area: "tasks",
            item: "may run on the target (only here)".into(),
            a: only(&ta, &tb),
            b: only(&tb, &ta),
            checks: vec!["tasks.kthreads", "tasks.user", "tasks.shared"],
        });
    }

    // Check severities, in their own areas.
    let sev: BTreeMap<&str, (Area, String)> = a
        .report
        .findings
        .iter()
        .map(|f| (f.id, (f.area, f.severity.as_str().to_string())))
        .collect();
    for f in &b.report.findings {
        let (area, sa) = sev.get(f.id).cloned().unwrap_or((f.area, "-".into()));
        c.add(
            area.as_str(),
            format!("check {}", f.id),
            sa,
            f.severity.as_str().to_string(),
            &[],
        );
    }

    // Areas in check order, then as found.
    let order = [
        "kernel", "boot", "cpu", "irq", "tasks", "services", "timers", "kubelet",
    ];
    c.out.sort_by_key(|d| {
        order
            .iter()
            .position(|o| *o == d.area)
            .unwrap_or(order.len())
    });
    let summary = |s: &Side| Summary {
        label: s.label.clone(),
        kernel: s.report.kernel.clone(),
        target: list(&s.report.target.cpus),
        verdict: s.report.verdict,
    };
    Diff {
        schema: SCHEMA,
        a: summary(a),
        b: summary(b),
        differences: c.out,
        other_config_options,
    }
}

/// A thread's name without its per-CPU or per-instance part (`kworker/1:0H-events` ->
/// `kworker`, `ksoftirqd/3` -> `ksoftirqd`), so machines with different CPUs compare.
fn name_of(comm: &str) -> String {
    comm.split(['/', ':']).next().unwrap_or(comm).to_string()
}

impl Diff {
    /// Whether anything that matters differs.
    pub fn differs(&self) -> bool {
        !self.differences.is_empty()
    }
}
