use super::*;

impl Ctx<'_> {
    pub(super) fn movable_on_target(&self, kernel: bool) -> Option<Vec<String>> {
        let threads = self.m.threads.as_ref()?;
        let me = std::process::id();
        Some(
            threads
                .iter()
                .filter(|t| t.kernel_thread == kernel && t.affinity_settable && t.pid != me)
                .filter(|t| {
                    t.allowed.intersects(self.target()) && !t.allowed.is_subset(self.target())
                })
                .map(|t| {
                    let tag = t.place.as_ref().map(|p| p.tag()).unwrap_or_default();
                    let sep = if tag.is_empty() { "" } else { " " };
                    format!("{}/{}{sep}{tag}", t.comm, t.tid)
                })
                .collect(),
        )
    }

    pub(super) fn kthreads(&self) -> Finding {
        let Some(hits) = self.movable_on_target(true) else {
            return self.unknown("kernel threads", &self.m.threads);
        };
        let e = vec![ev(
            "/proc/*/task/*/status",
            format!(
                "{} movable kernel threads allowed on the target",
                hits.len()
            ),
        )];
        if hits.is_empty() {
            self.finding(
                Severity::Ok,
                "no movable kernel thread may run on the target CPUs",
                e,
                None,
            )
        } else {
            self.finding(
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

    pub(super) fn user_tasks(&self) -> Finding {
        let Some(hits) = self.movable_on_target(false) else {
            return self.unknown("user tasks", &self.m.threads);
        };
        let e = vec![ev(
            "/proc/*/task/*/status",
            format!("{} user threads allowed on the target", hits.len()),
        )];
        if hits.is_empty() {
            self.finding(
                Severity::Ok,
                "no user task may run on the target CPUs",
                e,
                None,
            )
        } else {
            self.finding(
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

    /// The workload pinned to each target CPU: user threads allowed there alone, by CPU,
    /// one entry per process (`comm/pid [place]`).
    fn workload(&self) -> Option<std::collections::BTreeMap<u32, Vec<String>>> {
        let threads = self.m.threads.as_ref()?;
        let me = std::process::id();
        let mut by_cpu: std::collections::BTreeMap<u32, Vec<(u32, String)>> = Default::default();
        for t in threads.iter().filter(|t| !t.kernel_thread && t.pid != me) {
            let cpus = t.allowed.intersection(self.target());
            if cpus.len() != t.allowed.len() || cpus.is_empty() {
                continue;
            }
            for cpu in cpus.iter() {
                let procs = by_cpu.entry(cpu).or_default();
                if !procs.iter().any(|(pid, _)| *pid == t.pid) {
                    let tag = t.place.as_ref().map(|p| p.tag()).unwrap_or_default();
                    let sep = if tag.is_empty() { "" } else { " " };
                    procs.push((t.pid, format!("{}/{}{sep}{tag}", t.comm, t.pid)));
                }
            }
        }
        Some(
            by_cpu
                .into_iter()
                .map(|(c, p)| (c, p.into_iter().map(|(_, n)| n).collect()))
                .collect(),
        )
    }

    pub(super) fn shared(&self) -> Finding {
        let Some(work) = self.workload() else {
            return self.unknown("user tasks", &self.m.threads);
        };
        let e = vec![ev(
            "/proc/*/task/*/status",
            if work.is_empty() {
                "no user task pinned to the target".to_string()
            } else {
                work.iter()
                    .map(|(c, p)| format!("cpu{c}: {}", p.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        )];
        let shared: Vec<String> = work
            .iter()
            .filter(|(_, p)| p.len() > 1)
            .map(|(c, p)| format!("CPU {c}: {}", some_of(p, 4)))
            .collect();
        if shared.is_empty() {
            let each = if work.is_empty() {
                "no user task is pinned to the target CPUs".to_string()
            } else {
                format!(
                    "each target CPU runs one process at most: {}",
                    work.iter()
                        .map(|(c, p)| format!("CPU {c}: {}", p[0]))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            return self.finding(Severity::Ok, each, e, None);
        }
        self.finding(
            Severity::Warn,
            format!(
                "processes share an isolated CPU, taking turns (and keeping the tick on nohz_full): {}",
                shared.join("; ")
            ),
            e,
            fix(
                FixKind::Runtime,
                "give each latency-critical process a CPU of its own (taskset, a cpuset, or a Guaranteed pod with whole CPUs); move the others to the housekeeping CPUs",
            ),
        )
    }

    pub(super) fn rt_throttling(&self) -> Finding {
        let Some(v) = self.m.sysctls.sched_rt_runtime_us.clone() else {
            return self.unknown(
                "RT throttling",
                &absent("/proc/sys/kernel/sched_rt_runtime_us"),
            );
        };
        let e = vec![ev("/proc/sys/kernel/sched_rt_runtime_us", v.clone())];
        if v == "-1" {
            self.finding(
                Severity::Ok,
                "RT throttling is off: a SCHED_FIFO loop keeps its CPU",
                e,
                None,
            )
        } else {
            self.finding(
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
    pub(super) fn fair_server(&self) -> Finding {
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
                self.finding(
                    Severity::Ok,
                    "the fair deadline server is off on the target CPUs",
                    e,
                    None,
                )
            } else {
                self.finding(
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
            return self.unknown(what, &self.m.release);
        };
        let version = crate::kernel::version(release).unwrap_or((0, 0));
        let e = vec![ev("/proc/sys/kernel/osrelease", release.clone())];
        if version < crate::kernel::FAIR_SERVER_SINCE {
            self.finding(
                Severity::Ok,
                "this kernel has no fair deadline server (before 6.8)",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                "this kernel (6.8 or later) has a fair deadline server: a SCHED_OTHER task on a \
                 nohz_full CPU is kicked about once a second (mount debugfs to see its runtime)",
                e,
                fix(FixKind::Runtime, fix_text),
            )
        }
    }

    /// Strict mode traps system calls with Syscall User Dispatch (Linux 5.11+, x86-64) and
    /// page faults with a perf event's `sigtrap` (5.13+); without them isol refuses strict
    /// mode (there is no fallback).
    pub(super) fn strict_mode(&self) -> Finding {
        let what = "strict mode (Syscall User Dispatch)";
        let Some(release) = self.m.release.as_ref() else {
            return self.unknown(what, &self.m.release);
        };
        let e = vec![ev("/proc/sys/kernel/osrelease", release.clone())];
        let since = crate::kernel::STRICT_MODE_SINCE;
        match crate::kernel::version(release) {
            Some(v) if v >= since && cfg!(target_arch = "x86_64") => self.finding(
                Severity::Ok,
                "strict mode is available: Syscall User Dispatch traps an isolated task's system calls",
                e,
                None,
            ),
            Some(_) => self.finding(
                Severity::Warn,
                format!("strict mode is unavailable: kernel {release} has no Syscall User Dispatch (5.11) or perf sigtrap (5.13) on x86-64; isol refuses strict mode"),
                e,
                fix(FixKind::Kernel, "boot Linux 5.13 or later to use strict mode"),
            ),
            None => self.unknown(what, &self.m.release),
        }
    }
}

/// Per-CPU kernel threads that do work for their CPU when it enters the kernel: starved by
/// a real-time loop above them, their work waits, then comes in a burst.
const PER_CPU_WORKERS: [&str; 3] = ["ksoftirqd/", "rcuc/", "ktimers/"];

/// The per-CPU kernel threads every kernel binds to each CPU (`cpuhp`, `migration`, ...),
/// the workers above, bound kworkers and IRQ threads (the `irq.*` checks judge those).
const ORDINARY_BOUND: [&str; 10] = [
    "cpuhp/",
    "migration/",
    "ksoftirqd/",
    "rcuc/",
    "ktimers/",
    "kworker/",
    "irq/",
    "idle_inject/",
    "watchdog/",
    "posixcputmr/",
];

impl Ctx<'_> {
    /// The priorities of `ksoftirqd/N`, `rcuc/N` and `ktimers/N` on the target: a
    /// SCHED_OTHER one is starved by any SCHED_FIFO workload there.
    pub(super) fn kthread_prio(&self) -> Finding {
        let Some(threads) = self.m.threads.as_ref() else {
            return self.unknown("per-CPU kernel thread priorities", &self.m.threads);
        };
        let workers: Vec<&isol_model::kernel::ThreadInfo> = threads
            .iter()
            .filter(|t| t.kernel_thread && t.allowed.len() == 1)
            .filter(|t| t.allowed.is_subset(self.target()))
            .filter(|t| PER_CPU_WORKERS.iter().any(|p| t.comm.starts_with(p)))
            .collect();
        let show = |t: &&isol_model::kernel::ThreadInfo| {
            format!("{}/{} {:?} {}", t.comm, t.tid, t.policy, t.rt_priority)
        };
        let mut e = vec![ev(
            "/proc/*/stat",
            if workers.is_empty() {
                "no ksoftirqd, rcuc or ktimers thread bound to the target".to_string()
            } else {
                some_of(&workers.iter().map(show).collect::<Vec<_>>(), 6)
            },
        )];
        if let Fact::Known(p) = &self.m.knobs.rcu_kthread_prio {
            e.push(ev(
                isol_model::kernel::knobs::RCU_KTHREAD_PRIO,
                p.to_string(),
            ));
        }
        let fair: Vec<String> = workers
            .iter()
            .filter(|t| !t.policy.is_realtime())
            .map(|t| format!("{}/{}", t.comm, t.tid))
            .collect();
        if fair.is_empty() {
            self.finding(
                Severity::Ok,
                if workers.is_empty() {
                    "no per-CPU softirq, RCU or timer thread is bound to the target".to_string()
                } else {
                    format!(
                        "the target's softirq, RCU and timer threads run real-time ({})",
                        some_of(&workers.iter().map(show).collect::<Vec<_>>(), 4)
                    )
                },
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "{} {} SCHED_OTHER: a SCHED_FIFO workload on the CPU starves {}, so the \
                     softirqs and RCU work {} wait, then come in a burst (and RCU may report a \
                     stall)",
                    some_of(&fair, 4),
                    if fair.len() == 1 { "runs" } else { "run" },
                    if fair.len() == 1 { "it" } else { "them" },
                    if fair.len() == 1 {
                        "it carries"
                    } else {
                        "they carry"
                    },
                ),
                e,
                fix(
                    FixKind::Runtime,
                    "chrt -f -p 11 PID for each, above the workload's priority (tuned and the \
                     OpenShift node tuning operator use 11); at boot, rcutree.kthread_prio=11 \
                     for rcuc",
                ),
            )
        }
    }

    /// PID 1's own CPUs: every service systemd starts later inherits them.
    pub(super) fn init_affinity(&self) -> Finding {
        let Some(threads) = self.m.threads.as_ref() else {
            return self.unknown("PID 1's CPUs", &self.m.threads);
        };
        let Some(init) = threads.iter().find(|t| t.tid == 1) else {
            return self.finding(
                Severity::Unknown,
                "PID 1 is not visible from here (a PID namespace of its own)",
                vec![ev("/proc/1/status", "absent")],
                fix(FixKind::Runtime, "run isol in the host's PID namespace"),
            );
        };
        let e = vec![ev(
            "/proc/1/status",
            format!("{} Cpus_allowed_list {}", init.comm, cpus(&init.allowed)),
        )];
        let on = init.allowed.intersection(self.target());
        if on.is_empty() {
            self.finding(
                Severity::Ok,
                format!(
                    "PID 1 ({}) runs on {} only: what it starts later does too",
                    init.comm,
                    cpus(&init.allowed)
                ),
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "PID 1 ({}) may run on {}: every service it starts later inherits that and \
                     can land on the target",
                    init.comm,
                    on.named()
                ),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "isol apply --cpus {} narrows it now; to last, CPUAffinity={} in \
                         /etc/systemd/system.conf (or systemd.cpu_affinity={} on the kernel \
                         command line)",
                        self.target(),
                        self.hk(),
                        self.hk()
                    ),
                ),
            )
        }
    }

    /// Kernel threads bound to a target CPU that are not the ones every kernel has there:
    /// a driver's or a subsystem's per-CPU work.
    pub(super) fn bound_kthreads(&self) -> Finding {
        let Some(threads) = self.m.threads.as_ref() else {
            return self.unknown("bound kernel threads", &self.m.threads);
        };
        let unusual: Vec<String> = threads
            .iter()
            .filter(|t| t.kernel_thread && !t.affinity_settable)
            .filter(|t| !t.allowed.is_empty() && t.allowed.is_subset(self.target()))
            .filter(|t| !ORDINARY_BOUND.iter().any(|p| t.comm.starts_with(p)))
            .map(|t| format!("{}/{} on {}", t.comm, t.tid, cpus(&t.allowed)))
            .collect();
        let e = vec![ev(
            "/proc/*/task/*/status",
            format!(
                "{} kernel threads bound to the target besides cpuhp, migration, ksoftirqd, \
                 rcuc, ktimers, kworker, irq, idle_inject",
                unusual.len()
            ),
        )];
        if unusual.is_empty() {
            self.finding(
                Severity::Ok,
                "no kernel thread but the usual ones is bound to the target",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "kernel threads of a driver or subsystem are bound to the target: {}; each \
                     runs there when its work comes",
                    some_of(&unusual, 4)
                ),
                e,
                fix(
                    FixKind::Runtime,
                    "find what creates them (the driver or subsystem in the name) and keep its \
                     work off the target, or unload it; `isol watch` names them when they run",
                ),
            )
        }
    }
}
