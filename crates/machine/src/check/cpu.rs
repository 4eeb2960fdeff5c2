use super::*;

impl Ctx<'_> {
    pub(super) fn online(&self) -> Finding {
        let online = self.m.cpus.online.as_ref().cloned().unwrap_or_default();
        let e = vec![ev("/sys/devices/system/cpu/online", cpus(&online))];
        let off = self.target().difference(&online);
        if off.is_empty() {
            self.finding(
                Severity::Ok,
                format!("{} online", are(self.target())),
                e,
                None,
            )
        } else {
            self.finding(
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

    pub(super) fn housekeeping(&self) -> Finding {
        let e = vec![ev(
            "/sys/devices/system/cpu/online",
            format!("target {}, housekeeping {}", self.target(), self.hk()),
        )];
        let n = self.t.housekeeping.len();
        if n >= 1 {
            self.finding(
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
            self.finding(
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

    pub(super) fn smt(&self) -> Finding {
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
            return self.unknown(
                "SMT siblings",
                &absent("/sys/devices/system/cpu/cpuN/topology/thread_siblings_list"),
            );
        }
        if busy.is_empty() {
            self.finding(
                Severity::Ok,
                "no SMT sibling of a target CPU does housekeeping work",
                e,
                None,
            )
        } else {
            self.finding(Severity::Warn, format!("SMT siblings run housekeeping work and share the core: {}", some_of(&busy, 4)), e,
                fix(FixKind::Runtime, "take the siblings offline (echo 0 > /sys/devices/system/cpu/cpuN/online), isolate them too, or disable SMT (nosmt)"))
        }
    }

    pub(super) fn governor(&self) -> Finding {
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
            return self.finding(
                Severity::Ok,
                "no frequency scaling exposed to the kernel (a VM, or fixed frequency)",
                vec![ev("/sys/devices/system/cpu/cpuN/cpufreq", "absent")],
                None,
            );
        }
        if slow.is_empty() {
            self.finding(
                Severity::Ok,
                "target CPUs run the performance governor",
                e,
                None,
            )
        } else {
            self.finding(
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

    pub(super) fn idle_states(&self) -> Finding {
        use crate::kernel::cpu::DEEP_IDLE_US as DEEP_US;
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
        if e.is_empty() {
            // No cpuidle driver (common in VMs): the CPU idles in the architecture's
            // default way, which has no state to disable.
            let driver = match &self.m.cpus.idle_driver {
                Fact::Known(d) => d.clone(),
                Fact::Unknown { why, .. } => why.to_string(),
            };
            return self.finding(
                Severity::Ok,
                "no cpuidle states on the target: nothing exits slowly from idle",
                vec![
                    ev("/sys/devices/system/cpu/cpuidle/current_driver", driver),
                    ev(
                        format!("/sys/devices/system/cpu/cpu{}/cpuidle", self.target()),
                        "no stateN",
                    ),
                ],
                None,
            );
        }
        if deep.is_empty() {
            self.finding(
                Severity::Ok,
                format!("no enabled idle state on the target exits slower than {DEEP_US} us"),
                e,
                None,
            )
        } else {
            self.finding(Severity::Warn, format!("deep idle states add wake-up latency: {}", some_of(&deep, 4)), e,
                fix(FixKind::Runtime, "echo 1 > /sys/devices/system/cpu/cpuN/cpuidle/stateK/disable (or boot with processor.max_cstate=1 intel_idle.max_cstate=0)"))
        }
    }

    pub(super) fn tsc_invariant(&self) -> Finding {
        let Some(flags) = self.m.cpus.tsc_flags.as_ref() else {
            return self.unknown("TSC flags", &self.m.cpus.tsc_flags);
        };
        let e = vec![ev("/proc/cpuinfo", flags.join(" "))];
        let has = |f: &str| flags.iter().any(|x| x == f);
        if has("constant_tsc") && has("nonstop_tsc") {
            self.finding(
                Severity::Ok,
                "the TSC is invariant (constant_tsc, nonstop_tsc): cycle counts are time",
                e,
                None,
            )
        } else {
            self.finding(Severity::Warn, "the TSC is not invariant: noise measured in cycles is not time", e, fix(FixKind::Platform, "use hardware with an invariant TSC, or expose it to the VM (-cpu host,+invtsc)"))
        }
    }

    pub(super) fn clocksource(&self) -> Finding {
        let Some(cs) = self.m.cpus.clocksource.as_ref() else {
            return self.unknown("clocksource", &self.m.cpus.clocksource);
        };
        let e = vec![ev(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            cs.clone(),
        )];
        if cs == "tsc" {
            self.finding(
                Severity::Ok,
                "clocksource is tsc: clock_gettime needs no syscall",
                e,
                None,
            )
        } else {
            self.finding(Severity::Warn, format!("clocksource is {cs}: reading the time may enter the kernel"), e,
                fix(FixKind::Runtime, "echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource (if tsc is in available_clocksource)"))
        }
    }
}

impl Ctx<'_> {
    /// Energy-performance hints that let a busy CPU's frequency dip: the energy-performance
    /// bias of each target CPU, `intel_pstate`'s floor, and `intel_pstate=` at boot.
    pub(super) fn energy_perf(&self) -> Finding {
        let p = &self.m.knobs.power;
        let mut e = Vec::new();
        let mut wrong = Vec::new();
        for cpu in self.target().iter() {
            let path = format!("/sys/devices/system/cpu/cpu{cpu}/power/energy_perf_bias");
            if let Some(Fact::Known(v)) = p.epb.get(&cpu) {
                e.push(ev(&path, v.to_string()));
                if *v > 0 {
                    wrong.push(format!(
                        "CPU {cpu}'s energy-performance bias is {v} (0 is performance)"
                    ));
                }
            }
        }
        let pstate = "/sys/devices/system/cpu/intel_pstate";
        if let Fact::Known(status) = &p.pstate_status {
            e.push(ev(format!("{pstate}/status"), status.clone()));
            if status == "active" {
                if let Fact::Known(min) = &p.min_perf_pct {
                    e.push(ev(format!("{pstate}/min_perf_pct"), min.to_string()));
                    if *min < 100 {
                        wrong.push(format!(
                            "intel_pstate lets the frequency fall to {min}% (min_perf_pct)"
                        ));
                    }
                }
            }
        }
        if let Some(cmd) = self.m.cmdline.as_ref() {
            e.push(ev(
                "/proc/cmdline",
                cmd.intel_pstate
                    .as_ref()
                    .map_or("no intel_pstate=".into(), |v| format!("intel_pstate={v}")),
            ));
        }
        let any_epb = self
            .target()
            .iter()
            .any(|c| matches!(p.epb.get(&c), Some(Fact::Known(_))));
        if !any_epb && !matches!(p.pstate_status, Fact::Known(_)) {
            e.push(ev(
                format!("{pstate}/status"),
                p.pstate_status.why_unknown().unwrap_or_default(),
            ));
            return self.finding(
                Severity::Ok,
                "no energy-performance bias or intel_pstate here (a virtual machine, or \
                 another driver: cpu.governor judges it)",
                e,
                None,
            );
        }
        if wrong.is_empty() {
            self.finding(
                Severity::Ok,
                "the target's energy-performance hints favour performance",
                e,
                None,
            )
        } else {
            let t = self.target();
            self.finding(
                Severity::Warn,
                format!("{}: the frequency of a busy CPU can dip", wrong.join("; ")),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "for c in {}: echo 0 > /sys/devices/system/cpu/cpu$c/power/energy_perf_bias; \
                         echo 100 > {pstate}/min_perf_pct (or boot with intel_pstate=disable, as \
                         tuned's cpu-partitioning does)",
                        t.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ")
                    ),
                ),
            )
        }
    }
}
