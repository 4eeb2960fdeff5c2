use super::*;

impl Ctx<'_> {
    pub(super) fn armed_timers(&self) -> Finding {
        let Some(tl) = self.m.timer_list.as_ref() else {
            return self.unknown("armed timers", &self.m.timer_list);
        };
        const TICK: [&str; 3] = [
            "tick_nohz_handler",
            "tick_sched_timer",
            "tick_handle_periodic",
        ];
        let mut hits = Vec::new();
        let mut wheel = Vec::new();
        for cpu in self.target().iter() {
            if let Some(c) = tl.cpus.get(&cpu) {
                for t in c
                    .timers
                    .iter()
                    .filter(|t| !TICK.contains(&t.function.as_str()))
                {
                    hits.push(format!("cpu{cpu} {}", t.function));
                }
                // Timer-wheel timers are not listed. A CPU whose tick is stopped keeps the
                // time of its next timer in `.next_timer`: later than now, and no hrtimer
                // expires then, it is a wheel timer's (a stranded one, often).
                let (Some(true), Some(next), Some(now)) = (c.tick_stopped, c.next_timer, tl.now_ns)
                else {
                    continue;
                };
                let hrtimer = c.timers.iter().any(|t| t.expires_ns == Some(next));
                if next != crate::kernel::timer_list::KTIME_MAX && next > now && !hrtimer {
                    wheel.push(format!(
                        "cpu{cpu} a timer-wheel timer in {:.1} s (.next_timer)",
                        (next - now) as f64 / 1e9
                    ));
                }
            }
        }
        hits.extend(wheel.iter().cloned());
        let e = vec![ev(
            "/proc/timer_list",
            if hits.is_empty() {
                "only the tick".into()
            } else {
                hits.join(", ")
            },
        )];
        if hits.is_empty() {
            self.finding(
                Severity::Ok,
                "no timer other than the tick is armed on the target CPUs",
                e,
                None,
            )
        } else {
            let stranded = if wheel.is_empty() {
                String::new()
            } else {
                format!(
                    "; timer-wheel timers are not listed by the kernel: `isol apply --cpus {} \
                     --cycle-offline` takes the CPUs offline and back once, which moves the timers \
                     stranded there",
                    self.target()
                )
            };
            let what = if hits.len() == wheel.len() {
                "timers"
            } else {
                "hrtimers"
            };
            self.finding(Severity::Warn, format!("{what} armed on the target will interrupt it: {}", some_of(&hits, 5)), e,
                fix(FixKind::Runtime, format!("move the tasks that own them (hrtimer_wakeup: sleeping tasks) and set kernel.watchdog_cpumask; the dl_server timer needs a quiet CPU{stranded}")))
        }
    }

    pub(super) fn tick_state(&self) -> Finding {
        let Some(tl) = self.m.timer_list.as_ref() else {
            return self.unknown("tick state", &self.m.timer_list);
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
            self.finding(
                Severity::Ok,
                "the tick device of every target CPU is quiet (next_event = KTIME_MAX)",
                e,
                None,
            )
        } else if nohz {
            self.finding(
                Severity::Warn,
                format!(
                    "the tick is running on {} and cannot stop (not nohz_full)",
                    ticking.iter().copied().collect::<CpuSet>().named()
                ),
                e,
                fix(FixKind::Boot, self.boot_line()),
            )
        } else {
            let why: Vec<String> = ticking.iter().map(|&c| self.tick_dependency(c)).collect();
            self.finding(
                Severity::Warn,
                format!("the tick device of nohz_full CPU {} is armed: {}", ticking.iter().map(u32::to_string).collect::<Vec<_>>().join(","), why.join("; ")),
                e,
                fix(FixKind::Runtime, "leave one task on each isolated CPU (isol apply moves the others) and end what keeps the tick; `isol watch` names the dependency at each tick_stop"),
            )
        }
    }

    /// What keeps the tick of a nohz_full CPU armed, as far as the model shows: more than
    /// one runnable task (SCHED), one task with a dependency, or a pending timer.
    fn tick_dependency(&self, cpu: u32) -> String {
        let runnable: Vec<String> = self
            .m
            .threads
            .as_ref()
            .map(|ts| {
                ts.iter()
                    .filter(|t| t.state == 'R' && t.last_cpu == cpu)
                    .map(|t| format!("{}/{}", t.comm, t.tid))
                    .collect()
            })
            .unwrap_or_default();
        match runnable.len() {
            0 => format!("cpu{cpu} is idle with a timer pending (timers.armed lists them)"),
            1 => format!(
                "one task runs on cpu{cpu} ({}) and the tick still runs: a dependency \
                 (POSIX_TIMER, PERF_EVENTS, RCU, the fair server) or a timer",
                runnable[0]
            ),
            n => format!(
                "SCHED: {n} runnable tasks on cpu{cpu} ({})",
                some_of(&runnable, 3)
            ),
        }
    }
}
