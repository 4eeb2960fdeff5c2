use super::*;

impl Ctx<'_> {
    pub(super) fn boot_nohz_full(&self) -> Finding {
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
            self.finding(
                Severity::Ok,
                format!("{} nohz_full", are(self.target())),
                e,
                None,
            )
        } else {
            self.finding(
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

    pub(super) fn domain_isolated(&self) -> Finding {
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
        // An apply in place for these CPUs moved every task off them: measured as quiet as
        // isolcpus=domain at boot (docs/apply.md), for the tasks there now.
        let applied = self
            .m
            .applied
            .as_ref()
            .and_then(|h| CpuSet::parse_list(&h.cpus).ok())
            .unwrap_or_default();
        if missing.is_empty() {
            self.finding(
                Severity::Ok,
                format!("{} out of scheduler load balancing", are(self.target())),
                e,
                None,
            )
        } else if missing.is_subset(&applied) && missing.is_subset(&self.m.nohz_full()) {
            let mut e = e;
            e.push(ev(
                format!("{}/journal", crate::apply::DEFAULT_STATE_DIR),
                format!("isol apply in place for CPUs {}", cpus(&applied)),
            ));
            self.finding(
                Severity::Warn,
                format!(
                    "{} in scheduler load balancing, but `isol apply` moved every task off \
                     them, measured as quiet as isolcpus=domain (docs/apply.md); a task started \
                     later with an affinity that includes them can still be placed there",
                    are(&missing)
                ),
                e,
                fix(
                    FixKind::Boot,
                    format!(
                        "isolcpus=nohz,domain,managed_irq,{} (or at runtime, a cgroup v2 cpuset \
                         partition of type isolated)",
                        self.target()
                    ),
                ),
            )
        } else {
            // An isolated partition the kernel turned invalid (a hotplug, a sibling's edit)
            // no longer isolates: its CPUs went back to the parent's load balancing.
            let invalid: Vec<String> = self
                .m
                .cpusets
                .iter()
                .filter(|c| c.cpus.as_ref().is_some_and(|s| s.intersects(&missing)))
                .filter_map(|c| {
                    let p = c.partition.as_deref()?;
                    p.starts_with("isolated invalid")
                        .then(|| format!("{} reads {p:?}", c.path))
                })
                .collect();
            let mut e = e;
            let why = if invalid.is_empty() {
                String::new()
            } else {
                e.push(ev("cpuset.cpus.partition", invalid.join("; ")));
                format!(
                    "; the isolated partition meant for them turned invalid: {}",
                    invalid.join("; ")
                )
            };
            self.finding(Severity::Fail, format!("{} in scheduler load balancing: other tasks get moved onto them{why}", are(&missing)), e,
                fix(FixKind::Boot, format!("isolcpus=nohz,domain,managed_irq,{} (or at runtime, a cgroup v2 cpuset partition of type isolated)", self.target())))
        }
    }

    pub(super) fn rcu_nocbs(&self) -> Finding {
        let Some(cmd) = self.m.cmdline.as_ref() else {
            return self.unknown("rcu_nocbs", &self.m.cmdline);
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
            self.finding(
                Severity::Ok,
                format!("RCU callbacks of {} are offloaded", self.target().named()),
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!("RCU callbacks still run on {}", missing.named()),
                e,
                fix(FixKind::Boot, format!("rcu_nocbs={}", self.target())),
            )
        }
    }

    pub(super) fn managed_irq(&self) -> Finding {
        let Some(cmd) = self.m.cmdline.as_ref() else {
            return self.unknown("isolcpus managed_irq", &self.m.cmdline);
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
            self.finding(
                Severity::Ok,
                "managed interrupts avoid the target CPUs (isolcpus=managed_irq)",
                e,
                None,
            )
        } else {
            self.finding(
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

    pub(super) fn skew_tick(&self) -> Finding {
        let Some(cmd) = self.m.cmdline.as_ref() else {
            return self.unknown("skew_tick", &self.m.cmdline);
        };
        let v = cmd.skew_tick.clone();
        let e = vec![ev(
            "/proc/cmdline",
            v.as_ref()
                .map_or("no skew_tick=".into(), |v| format!("skew_tick={v}")),
        )];
        if v.as_deref() == Some("1") {
            self.finding(
                Severity::Ok,
                "ticks are skewed across CPUs (less lock contention in the tick)",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                "ticks fire on all CPUs at once (jiffies lock contention when the tick runs)",
                e,
                fix(FixKind::Boot, "skew_tick=1"),
            )
        }
    }

    pub(super) fn tsc_reliable(&self) -> Finding {
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
            self.finding(
                Severity::Ok,
                "the TSC is trusted: no clocksource watchdog timer",
                e,
                None,
            )
        } else {
            self.finding(
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

    /// Expedited RCU grace periods IPI every CPU that is in the kernel; after boot the
    /// kernel can use normal grace periods only (forced on PREEMPT_RT).
    pub(super) fn rcu_normal(&self) -> Finding {
        let path = "/sys/module/rcupdate/parameters/rcu_normal_after_boot";
        let (on, e) = match &self.m.rcu_normal_after_boot {
            Fact::Known(v) => (*v, ev(path, if *v { "Y" } else { "N" })),
            f if f.is_absent() => {
                let Some(c) = self.m.cmdline.as_ref() else {
                    return self.unknown("rcu_normal_after_boot", &self.m.cmdline);
                };
                let v = c.get("rcupdate.rcu_normal_after_boot").flatten();
                let on = v.is_some_and(|v| crate::kernel::yes_no(v) == Ok(true));
                (
                    on,
                    ev(
                        "/proc/cmdline",
                        v.map_or("no rcupdate.rcu_normal_after_boot=".into(), |v| {
                            format!("rcupdate.rcu_normal_after_boot={v}")
                        }),
                    ),
                )
            }
            f => return self.unknown("rcu_normal_after_boot", f),
        };
        if on {
            self.finding(
                Severity::Ok,
                "RCU uses normal grace periods after boot: no expedited-grace-period IPIs",
                vec![e],
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                "expedited RCU grace periods stay on after boot: each sends an IPI to every \
                 CPU that is in the kernel",
                vec![e],
                fix(FixKind::Boot, "rcupdate.rcu_normal_after_boot=1"),
            )
        }
    }
}

impl Ctx<'_> {
    /// `rcu_nocb_poll`: without it, a nohz_full CPU that queues an RCU callback (in a
    /// system call, say) wakes its `rcuog` kthread; with it, the kthreads poll instead.
    pub(super) fn rcu_nocb_poll(&self) -> Finding {
        let Some(cmd) = self.m.cmdline.as_ref() else {
            return self.unknown("rcu_nocb_poll", &self.m.cmdline);
        };
        let e = vec![ev(
            "/proc/cmdline",
            if cmd.rcu_nocb_poll {
                "rcu_nocb_poll"
            } else {
                "no rcu_nocb_poll"
            },
        )];
        if cmd.rcu_nocb_poll {
            self.finding(
                Severity::Ok,
                "offloaded CPUs leave their RCU callbacks to polling kthreads (rcu_nocb_poll)",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "{} {} rcuog kthread each time {} an RCU callback (a system call that \
                     frees memory can); rcu_nocb_poll makes the kthreads poll instead, at some \
                     energy cost on the housekeeping CPUs",
                    self.target().named(),
                    if self.target().len() == 1 {
                        "wakes its"
                    } else {
                        "wake their"
                    },
                    if self.target().len() == 1 {
                        "it queues"
                    } else {
                        "they queue"
                    },
                ),
                e,
                fix(FixKind::Boot, "rcu_nocb_poll"),
            )
        }
    }

    /// `rcutree.nohz_full_patience_delay` (6.10 and later): how long RCU waits for a
    /// nohz_full CPU that entered the kernel before disturbing it for a quiescent state.
    pub(super) fn rcu_patience(&self) -> Finding {
        let fact = &self.m.knobs.rcu_patience_ms;
        let path = crate::kernel::knobs::RCU_PATIENCE;
        match fact {
            Fact::Unknown {
                why: Unknown::Absent,
                ..
            } => self.finding(
                Severity::Ok,
                "this kernel has no rcutree.nohz_full_patience_delay (before 6.10): RCU asks a \
                 nohz_full CPU in the kernel for a quiescent state as other CPUs",
                vec![ev(path, "absent")],
                None,
            ),
            Fact::Unknown { .. } => self.unknown("rcutree.nohz_full_patience_delay", fact),
            Fact::Known(ms) if *ms >= 1000 => self.finding(
                Severity::Ok,
                format!("RCU leaves a nohz_full CPU in the kernel alone for {ms} ms"),
                vec![ev(path, ms.to_string())],
                None,
            ),
            Fact::Known(ms) => self.finding(
                Severity::Warn,
                format!(
                    "RCU disturbs a nohz_full CPU that entered the kernel after {ms} ms \
                     (rcutree.nohz_full_patience_delay): an IPI or an rcuc wake-up where a \
                     short system call would have ended on its own"
                ),
                vec![ev(path, ms.to_string())],
                fix(FixKind::Boot, "rcutree.nohz_full_patience_delay=1000"),
            ),
        }
    }
}
