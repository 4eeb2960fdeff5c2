use super::*;

impl Ctx<'_> {
    pub(super) fn irq_affinity(&self, effective: bool) -> Finding {
        let what = if effective {
            "is delivered to"
        } else {
            "may be delivered to"
        };
        let Some(irqs) = self.m.irqs.as_ref() else {
            return self.unknown("IRQ affinity", &self.m.irqs);
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
            self.finding(
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
            self.finding(sev, format!("{} device IRQ{} {} {}: {}", hits.len(), if hits.len() == 1 { "" } else { "s" }, if hits.len() == 1 { what.to_string() } else { what.replacen("is ", "are ", 1) }, self.target().named(), some_of(&hits, 5)), e,
                fix(FixKind::Runtime, format!("for each IRQ N: echo {} > /proc/irq/N/smp_affinity_list (and stop irqbalance or ban the CPUs)", self.hk())))
        }
    }

    pub(super) fn managed_irqs(&self) -> Finding {
        let Some(irqs) = self.m.irqs.as_ref() else {
            return self.unknown("managed IRQs", &self.m.irqs);
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
            return self.finding(Severity::Unknown,
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
            self.finding(
                Severity::Ok,
                "no kernel-managed IRQ is delivered to the target CPUs",
                e,
                None,
            )
        } else {
            self.finding(Severity::Warn, format!("kernel-managed IRQs {} are delivered to the target; their affinity cannot be changed at runtime", some_of(&hits, 6)), e,
                fix(FixKind::Boot, format!("isolcpus=managed_irq,{}", self.target())))
        }
    }

    pub(super) fn default_irq_affinity(&self) -> Finding {
        let Some(d) = self.m.default_irq_affinity.as_ref() else {
            return self.unknown("default IRQ affinity", &self.m.default_irq_affinity);
        };
        let e = vec![ev("/proc/irq/default_smp_affinity", cpus(d))];
        let hit = d.intersection(self.target());
        if hit.is_empty() {
            self.finding(
                Severity::Ok,
                "new IRQs default to housekeeping CPUs",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!("new IRQs may be delivered to {}", hit.named()),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "echo {} > /proc/irq/default_smp_affinity (or boot with irqaffinity={})",
                        self.housekeeping_mask(),
                        self.hk()
                    ),
                ),
            )
        }
    }

    /// Receive packet steering hands packets to the CPUs of each queue's `rps_cpus`.
    pub(super) fn rps(&self) -> Finding {
        let masks = match &self.m.rps {
            Fact::Known(m) => m,
            f if f.is_absent() => {
                return self.finding(
                    Severity::Ok,
                    "no network device: nothing steers packets",
                    vec![ev("/sys/class/net", "absent")],
                    None,
                )
            }
            f => return self.unknown("RPS masks", f),
        };
        let hits: Vec<(&String, &CpuSet)> = masks
            .iter()
            .filter(|(_, m)| m.intersects(self.target()))
            .collect();
        if hits.is_empty() {
            return self.finding(
                Severity::Ok,
                format!(
                    "no RPS mask of {} receive queues includes a target CPU",
                    masks.len()
                ),
                masks
                    .iter()
                    .take(8)
                    .map(|(p, m)| ev(p.as_str(), cpus(m)))
                    .collect(),
                None,
            );
        }
        let names: Vec<String> = hits
            .iter()
            .map(|(p, m)| {
                let q = p
                    .trim_start_matches("/sys/class/net/")
                    .replace("/queues/", " ");
                format!("{} -> CPU {}", q.trim_end_matches("/rps_cpus"), cpus(m))
            })
            .collect();
        self.finding(
            Severity::Warn,
            format!("RPS steers received packets to target CPUs: {}", some_of(&names, 4)),
            hits.iter().map(|(p, m)| ev(p.as_str(), cpus(m))).collect(),
            fix(
                FixKind::Runtime,
                "echo 0 (or a housekeeping mask) > /sys/class/net/DEV/queues/rx-N/rps_cpus (isol apply does it)",
            ),
        )
    }

    /// A NIC's queues against the housekeeping CPUs: each queue has its IRQ, which must
    /// live on a housekeeping CPU. More queues than housekeeping CPUs, and managed queue
    /// IRQs (which the kernel spreads over every CPU) land on the target, or affinities
    /// that cannot all fit there fail; tuned sets `channels` to the housekeeping count.
    pub(super) fn nic_queues(&self) -> Finding {
        let nics = match &self.m.nic_queues {
            Fact::Known(n) => n,
            f if f.is_absent() => {
                return self.finding(
                    Severity::Ok,
                    "no network device: no queue IRQs",
                    vec![ev("/sys/class/net", "absent")],
                    None,
                )
            }
            f => return self.unknown("NIC queues", f),
        };
        let hk = self.t.housekeeping.len() as u32;
        let evidence = |dev: &String, n: &u32| {
            ev(
                format!("/sys/class/net/{dev}/queues").as_str(),
                format!("{n} receive queue{}", if *n == 1 { "" } else { "s" }),
            )
        };
        let over: Vec<(&String, &u32)> = nics.iter().filter(|(_, n)| **n > hk).collect();
        if over.is_empty() {
            return self.finding(
                Severity::Ok,
                if nics.is_empty() {
                    "no NIC (only virtual network devices): no queue IRQs".to_string()
                } else {
                    let names: Vec<String> = nics
                        .iter()
                        .map(|(d, n)| format!("{d} ({n} queue{})", if *n == 1 { "" } else { "s" }))
                        .collect();
                    format!(
                        "no NIC has more receive queues than the {hk} housekeeping CPU{}: {}",
                        if hk == 1 { "" } else { "s" },
                        some_of(&names, 4)
                    )
                },
                nics.iter().take(8).map(|(d, n)| evidence(d, n)).collect(),
                None,
            );
        }
        let names: Vec<String> = over
            .iter()
            .map(|(d, n)| format!("{d} ({n} queues)"))
            .collect();
        let cmds: Vec<String> = over
            .iter()
            .map(|(d, _)| format!("ethtool -L {d} combined {hk}"))
            .collect();
        self.finding(
            Severity::Warn,
            format!(
                "more receive queues than the {hk} housekeeping CPU{}: {}; each queue has its \
                 own IRQ, and those the kernel manages are spread over every CPU, the target \
                 included",
                if hk == 1 { "" } else { "s" },
                some_of(&names, 4)
            ),
            over.iter().map(|(d, n)| evidence(d, n)).collect(),
            fix(
                FixKind::Runtime,
                format!(
                    "{} (or `rx {hk}` where the driver has no combined channels; a udev rule or \
                     the NIC's network configuration keeps it across reboots)",
                    cmds.join("; ")
                ),
            ),
        )
    }

    /// irqbalance rewrites IRQ affinities every 10 s. Since 1.8 it leaves the kernel's
    /// isolated and nohz_full CPUs alone; any other target CPU must be banned, or it undoes
    /// what `isol apply` moved.
    pub(super) fn irqbalance(&self) -> Finding {
        let Some(ib) = &self.m.irqbalance else {
            return self.finding(
                Severity::Ok,
                "irqbalance is not running",
                vec![ev("/proc/*/stat", "no irqbalance process")],
                None,
            );
        };
        let exempt = ib.exempt(self.m);
        let path = format!("/proc/{}/environ", ib.pid);
        let e = match &ib.banned {
            Fact::Known(b) => ev(
                path.as_str(),
                b.as_ref()
                    .map_or("no IRQBALANCE_BANNED_CPULIST".into(), |b| {
                        format!("IRQBALANCE_BANNED_CPULIST={}", b.to_list())
                    }),
            ),
            // Unreadable: enough only when the kernel's own sets already cover the target.
            f if self.target().is_subset(&exempt) => {
                ev(path.as_str(), f.why_unknown().unwrap_or_default())
            }
            f => return self.unknown("irqbalance's banned CPUs", f),
        };
        let exposed = self.target().difference(&exempt);
        if exposed.is_empty() {
            self.finding(
                Severity::Ok,
                format!(
                    "irqbalance (pid {}) leaves the target alone (banned, isolated or nohz_full)",
                    ib.pid
                ),
                vec![e],
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "irqbalance (pid {}) may move IRQs back onto {}: it undoes the IRQ affinities isol apply sets",
                    ib.pid,
                    exposed.named()
                ),
                vec![e],
                fix(
                    FixKind::Runtime,
                    format!(
                        "IRQBALANCE_BANNED_CPULIST={} in /etc/default/irqbalance, then systemctl restart irqbalance (or stop it)",
                        cpus(self.target())
                    ),
                ),
            )
        }
    }
}

impl Ctx<'_> {
    /// `net.core.rps_default_mask`: the RPS mask of every network device created later
    /// (a container's veth, a VF).
    pub(super) fn rps_default_mask(&self) -> Finding {
        let path = "/proc/sys/net/core/rps_default_mask";
        let mask = match &self.m.knobs.rps_default_mask {
            Fact::Known(m) => m,
            f if f.is_absent() => {
                return self.finding(
                    Severity::Ok,
                    "this kernel has no net.core.rps_default_mask (before 6.2): new devices \
                     start without RPS",
                    vec![ev(path, "absent")],
                    None,
                )
            }
            f => return self.unknown("net.core.rps_default_mask", f),
        };
        let e = vec![ev(path, cpus(mask))];
        let on = mask.intersection(self.target());
        if on.is_empty() {
            self.finding(
                Severity::Ok,
                if mask.is_empty() {
                    "network devices created from now on start without RPS".to_string()
                } else {
                    format!("network devices created from now on steer packets to {mask} only")
                },
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "every network device created from now on (a container's veth, say) \
                     steers received packets to {} (RPS): NET_RX softirqs and IPIs there",
                    on.named()
                ),
                e,
                fix(
                    FixKind::Runtime,
                    format!(
                        "sysctl net.core.rps_default_mask={}",
                        self.housekeeping_mask()
                    ),
                ),
            )
        }
    }
}
