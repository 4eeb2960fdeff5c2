use super::*;

impl Ctx<'_> {
    pub(super) fn mask_check(&self, what: &str, fact: &Fact<CpuSet>, file: &str) -> Finding {
        let Some(mask) = fact.as_ref() else {
            return self.unknown(what, fact);
        };
        let e = vec![ev(file, cpus(mask))];
        let hit = mask.intersection(self.target());
        if hit.is_empty() {
            self.finding(
                Severity::Ok,
                format!("{what} stays on housekeeping CPUs"),
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!("{what} may run on {}", hit.named()),
                e,
                fix(
                    FixKind::Runtime,
                    format!("echo {} > {file}", self.housekeeping_mask()),
                ),
            )
        }
    }

    pub(super) fn workqueue(&self) -> Finding {
        self.mask_check(
            "unbound workqueue work",
            &self.m.workqueue.cpumask,
            "/sys/devices/virtual/workqueue/cpumask",
        )
    }

    /// Every other `WQ_SYSFS` workqueue. Its work runs on its mask within the global
    /// unbound mask, so only CPUs in both count.
    pub(super) fn workqueue_sysfs(&self) -> Finding {
        const WQ: &str = "/sys/devices/virtual/workqueue";
        let global = self.m.workqueue.cpumask.as_ref();
        let mut hits = Vec::new();
        let mut e = Vec::new();
        for (name, mask) in self
            .m
            .workqueue
            .queues
            .iter()
            .filter(|(n, _)| *n != "writeback")
        {
            let Some(mask) = mask.as_ref() else { continue };
            let effective = global.map_or(mask.clone(), |g| mask.intersection(g));
            e.push(ev(format!("{WQ}/{name}/cpumask"), cpus(mask)));
            if effective.intersects(self.target()) {
                hits.push(format!(
                    "{name} (CPU {})",
                    cpus(&effective.intersection(self.target()))
                ));
            }
        }
        if let Some(g) = global {
            e.push(ev(format!("{WQ}/cpumask"), cpus(g)));
        }
        let steerable = e.len() - usize::from(global.is_some());
        if steerable == 0 {
            e.push(ev(WQ, "no workqueue directory with a cpumask"));
        }
        if hits.is_empty() {
            self.finding(
                Severity::Ok,
                format!("no other steerable workqueue ({steerable}) runs work on the target"),
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "workqueues may run work on target CPUs: {}",
                    some_of(&hits, 4)
                ),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "echo {} > {WQ}/NAME/cpumask for each (isol apply does it)",
                        self.housekeeping_mask()
                    ),
                ),
            )
        }
    }

    pub(super) fn writeback(&self) -> Finding {
        self.mask_check(
            "writeback work",
            &self.m.workqueue.writeback,
            "/sys/devices/virtual/workqueue/writeback/cpumask",
        )
    }

    pub(super) fn sysctl(
        &self,
        path: &str,
        value: &Option<String>,
        good: impl Fn(&str) -> bool,
        [ok, bad, fix_cmd]: [&str; 3],
    ) -> Finding {
        let Some(v) = value else {
            return self.unknown(path, &absent(path));
        };
        let e = vec![ev(path, v.clone())];
        if good(v) {
            self.finding(Severity::Ok, ok, e, None)
        } else {
            self.finding(Severity::Warn, bad, e, fix(FixKind::Runtime, fix_cmd))
        }
    }

    pub(super) fn watchdog_cpumask(&self) -> Finding {
        let s = &self.m.sysctls;
        // The hrtimer runs while either detector is on: `nosoftlockup` turns the soft one
        // off, and with the NMI (hard) one off too, no timer is left.
        let cmd = self.m.cmdline.as_ref();
        let soft_off = cmd.is_some_and(|c| c.nosoftlockup);
        let hard_off = s.nmi_watchdog.as_deref().is_none_or(|v| v == "0");
        let off = s.watchdog.as_deref() == Some("0")
            || cmd.is_some_and(|c| c.nowatchdog)
            || (soft_off && hard_off);
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
            _ if off => self.finding(Severity::Ok, "the lockup watchdog is off", e, None),
            Some(m) if !m.intersects(self.target()) => self.finding(
                Severity::Ok,
                "the lockup watchdog runs only on housekeeping CPUs",
                e,
                None,
            ),
            Some(m) => self.finding(
                Severity::Warn,
                format!(
                    "the lockup watchdog's hrtimer fires on {}",
                    m.intersection(self.target()).named()
                ),
                e,
                fix(
                    FixKind::Runtime,
                    format!("sysctl -w kernel.watchdog_cpumask={}", self.hk()),
                ),
            ),
            None => self.finding(
                Severity::Unknown,
                "the lockup watchdog's CPUs are unknown",
                e,
                fix(FixKind::Runtime, "run isol as root"),
            ),
        }
    }

    pub(super) fn nmi_watchdog(&self) -> Finding {
        self.sysctl(
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

    pub(super) fn timer_migration(&self) -> Finding {
        self.sysctl(
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

    pub(super) fn stat_interval(&self) -> Finding {
        self.sysctl(
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

    pub(super) fn numa_balancing(&self) -> Finding {
        let v = self
            .m
            .sysctls
            .numa_balancing
            .clone()
            .or_else(|| Some("absent (no NUMA balancing)".into()));
        self.sysctl("/proc/sys/kernel/numa_balancing", &v, |v| v == "0" || v.starts_with("absent"),
            ["automatic NUMA balancing is off", "automatic NUMA balancing unmaps pages to sample them: page faults on the isolated task", "sysctl -w kernel.numa_balancing=0"])
    }

    pub(super) fn thp(&self) -> Finding {
        let Some(mode) = self.m.mm.thp_enabled.as_ref() else {
            if self.m.mm.thp_enabled.is_absent() {
                return self.finding(
                    Severity::Ok,
                    "no transparent huge pages in this kernel",
                    vec![ev("/sys/kernel/mm/transparent_hugepage/enabled", "absent")],
                    None,
                );
            }
            return self.unknown("transparent huge pages", &self.m.mm.thp_enabled);
        };
        let mut e = vec![ev(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            mode.clone(),
        )];
        let defrag = self.m.mm.thp_defrag.as_ref();
        if let Some(d) = defrag {
            e.push(ev("/sys/kernel/mm/transparent_hugepage/defrag", d.clone()));
        }
        if mode != "never" && defrag.is_some_and(|d| d == "always") {
            return self.finding(
                Severity::Warn,
                "THP defrag is always: a fault that wants a huge page stalls in direct compaction",
                e,
                fix(
                    FixKind::Runtime,
                    "echo madvise > /sys/kernel/mm/transparent_hugepage/defrag",
                ),
            );
        }
        if mode == "always" {
            self.finding(
                Severity::Warn,
                "transparent huge pages are always on: khugepaged and compaction disturb tasks",
                e,
                fix(
                    FixKind::Runtime,
                    "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (or never)",
                ),
            )
        } else {
            self.finding(
                Severity::Ok,
                format!("transparent huge pages: {mode}"),
                e,
                None,
            )
        }
    }

    pub(super) fn ksm(&self) -> Finding {
        let Some(run) = self.m.mm.ksm_run.as_ref() else {
            if self.m.mm.ksm_run.is_absent() {
                return self.finding(
                    Severity::Ok,
                    "no KSM in this kernel",
                    vec![ev("/sys/kernel/mm/ksm/run", "absent")],
                    None,
                );
            }
            return self.unknown("KSM", &self.m.mm.ksm_run);
        };
        let e = vec![ev("/sys/kernel/mm/ksm/run", run.clone())];
        if run == "0" {
            self.finding(Severity::Ok, "KSM page merging is off", e, None)
        } else if run == "2" {
            // 2: stopped, and every merged page unmerged: ksmd scans nothing.
            self.finding(
                Severity::Ok,
                "KSM is stopped and its pages unmerged (run=2)",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                "KSM scans and merges pages: write faults and TLB shootdowns",
                e,
                fix(FixKind::Runtime, "echo 0 > /sys/kernel/mm/ksm/run"),
            )
        }
    }

    pub(super) fn mce_poll(&self) -> Finding {
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
            Some(false) => self.finding(Severity::Ok, "no machine-check poll timer runs", e, None),
            Some(true) => self.finding(Severity::Warn,
                "the machine-check poll timer fires on every CPU (every check_interval seconds) and keeps the tick device armed", e,
                fix(FixKind::Runtime, format!(
                    "isol apply --cpus {} (writes 0 to check_interval, one value for every CPU: the poll stops; isol restore puts it back), or at boot mce=ignore_ce (corrected memory errors are then not logged)",
                    self.target()
                ))),
            None if mce.check_interval.as_ref().is_some() => {
                self.unknown("machine-check polling", &mce.ignore_ce)
            }
            None => self.unknown("machine-check polling", &mce.check_interval),
        }
    }

    /// An apply left in place: by hand it is meant to stay, but an apply whose owner (`isol
    /// run --apply`) is gone was meant to be undone when it ended, and was not.
    pub(super) fn apply_journal(&self) -> Finding {
        let path = format!("{}/journal", crate::apply::DEFAULT_STATE_DIR);
        let h = match &self.m.applied {
            Fact::Known(h) => h,
            Fact::Unknown {
                why: Unknown::Absent,
                ..
            } => {
                return self.finding(
                    Severity::Ok,
                    "no runtime setup by isol apply is in place",
                    vec![ev(path, "absent")],
                    None,
                )
            }
            other => return self.unknown("the apply journal", other),
        };
        let cpus = CpuSet::parse_list(&h.cpus).map_or_else(|_| h.cpus.clone(), |c| c.named());
        let mut e = vec![ev(
            &path,
            format!(
                "{cpus} isolated, housekeeping {}, written at {} (unix time){}",
                h.housekeeping,
                h.created_unix,
                h.owner
                    .as_ref()
                    .map(|o| format!(
                        ", by pid {} ({}) started at tick {}",
                        o.pid, o.command, o.start
                    ))
                    .unwrap_or_default()
            ),
        )];
        let Some(owner) = &h.owner else {
            return self.finding(
                Severity::Ok,
                format!("isol apply keeps {cpus} isolated at run time (`isol restore` undoes it)"),
                e,
                None,
            );
        };
        let Some(threads) = self.m.threads.as_ref() else {
            return self.unknown("whether the apply's owner still runs", &self.m.threads);
        };
        let alive = threads
            .iter()
            .any(|t| t.tid == owner.pid && t.start_time == owner.start);
        e.push(ev(
            format!("/proc/{}/stat", owner.pid),
            if alive {
                "running".into()
            } else {
                format!("no process {} started at tick {}", owner.pid, owner.start)
            },
        ));
        if alive {
            self.finding(
                Severity::Ok,
                format!(
                    "{} (pid {}) keeps {cpus} isolated at run time until it ends",
                    owner.command, owner.pid
                ),
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "{} (pid {}) isolated {cpus} at run time and ended without undoing it \
                     (it was killed): the setup stays until restored",
                    owner.command, owner.pid
                ),
                e,
                fix(FixKind::Runtime, "isol restore"),
            )
        }
    }
}

impl Ctx<'_> {
    /// KVM's host options that put work on the CPUs while guests run.
    pub(super) fn kvm(&self) -> Finding {
        let kvm = &self.m.knobs.kvm;
        let dir = "/sys/module/kvm/parameters";
        if kvm.kvmclock_periodic_sync.is_absent() && kvm.nx_huge_pages.is_absent() {
            return self.finding(
                Severity::Ok,
                "KVM is not loaded",
                vec![ev(dir, "absent")],
                None,
            );
        }
        let show = |f: Option<String>, why: Option<String>| f.or(why).unwrap_or_default();
        let e = vec![
            ev(
                format!("{dir}/kvmclock_periodic_sync"),
                show(
                    kvm.kvmclock_periodic_sync
                        .as_ref()
                        .map(|v| if *v { "Y" } else { "N" }.to_string()),
                    kvm.kvmclock_periodic_sync.why_unknown(),
                ),
            ),
            ev(
                format!("{dir}/nx_huge_pages"),
                show(
                    kvm.nx_huge_pages.as_ref().cloned(),
                    kvm.nx_huge_pages.why_unknown(),
                ),
            ),
        ];
        let mut ticking = Vec::new();
        if kvm.kvmclock_periodic_sync.as_ref() == Some(&true) {
            ticking.push("kvmclock_periodic_sync (a work item per VM every 300 s)");
        }
        if kvm
            .nx_huge_pages
            .as_ref()
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "y" | "force"))
        {
            ticking.push(
                "nx_huge_pages (huge pages split for the iTLB multihit mitigation, and a \
                 recovery thread per VM that wakes to put them back)",
            );
        }
        if ticking.is_empty() {
            self.finding(
                Severity::Ok,
                "KVM's periodic clock sync and NX huge page recovery are off",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "KVM is loaded with {}: work for the host's CPUs while guests run",
                    ticking.join(" and ")
                ),
                e,
                fix(
                    FixKind::Boot,
                    "options kvm kvmclock_periodic_sync=0 nx_huge_pages=0 in \
                     /etc/modprobe.d/ (reload kvm), or kvm.kvmclock_periodic_sync=0 \
                     kvm.nx_huge_pages=off on the kernel command line (nx_huge_pages=off \
                     drops the iTLB multihit mitigation: only on CPUs not affected, or for \
                     trusted guests)",
                ),
            )
        }
    }
}
