//! Checks of what kubelet hands out: the CPU manager's policy, the CPUs containers got for
//! themselves (isolated, and theirs alone), and the CPUs it reserves for the system.

use super::*;
use crate::kernel::kubelet::{Exclusive, CPU_MANAGER_STATE};

impl Ctx<'_> {
    /// Not a Kubernetes node: every kubelet check is ok, saying so.
    fn not_a_node(&self) -> Option<Finding> {
        (!self.m.kubelet.present()).then(|| {
            self.finding(
                Severity::Ok,
                "not a Kubernetes node: no kubelet CPU manager state or configuration",
                vec![
                    ev(CPU_MANAGER_STATE, "absent"),
                    ev(self.m.kubelet.config_path.clone(), "absent"),
                ],
                None,
            )
        })
    }

    pub(super) fn kubelet_cpu_manager(&self) -> Finding {
        if let Some(f) = self.not_a_node() {
            return f;
        }
        let k = &self.m.kubelet;
        let Some(s) = k.state.as_ref() else {
            return self.unknown("kubelet's CPU manager state", &k.state);
        };
        let e = vec![ev(
            CPU_MANAGER_STATE,
            format!(
                "policy {}, shared pool {}, {} container(s) with CPUs of their own",
                s.policy,
                cpus(&s.default_cpu_set),
                k.exclusive().len()
            ),
        )];
        if s.policy.eq_ignore_ascii_case("static") {
            self.finding(
                Severity::Ok,
                "kubelet's CPU manager gives Guaranteed containers CPUs of their own (static)",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!(
                    "kubelet's CPU manager policy is {}: no container gets a CPU of its own, \
                     every pod shares every CPU of the pool",
                    s.policy
                ),
                e,
                fix(
                    FixKind::Platform,
                    format!(
                        "set cpuManagerPolicy: static in {}, drain the node, remove {CPU_MANAGER_STATE} and restart kubelet",
                        k.config_path
                    ),
                ),
            )
        }
    }

    /// Each container's own CPUs, or a finding saying there are none (or why not known).
    fn exclusive_or(&self) -> Result<Vec<Exclusive>, Finding> {
        if let Some(f) = self.not_a_node() {
            return Err(f);
        }
        let k = &self.m.kubelet;
        if k.state.as_ref().is_none() {
            return Err(self.unknown("kubelet's CPU manager state", &k.state));
        }
        let ex = k.exclusive();
        if ex.is_empty() {
            return Err(self.finding(
                Severity::Ok,
                "no container has CPUs of its own on this node",
                vec![ev(CPU_MANAGER_STATE, "no entries")],
                None,
            ));
        }
        Ok(ex)
    }

    pub(super) fn kubelet_exclusive_isolated(&self) -> Finding {
        let ex = match self.exclusive_or() {
            Ok(ex) => ex,
            Err(f) => return f,
        };
        let nohz = self.m.nohz_full();
        let iso = self.m.domain_isolated();
        let mut e = vec![ev(
            CPU_MANAGER_STATE,
            ex.iter()
                .map(|x| format!("{} on {}", x.who(), x.cpus.named()))
                .collect::<Vec<_>>()
                .join("; "),
        )];
        e.push(ev("/sys/devices/system/cpu/nohz_full", cpus(&nohz)));
        e.push(ev("/sys/devices/system/cpu/isolated", cpus(&iso)));
        let mut bad = Vec::new();
        let mut need = CpuSet::new();
        for x in &ex {
            let (not_nohz, not_iso) = (x.cpus.difference(&nohz), x.cpus.difference(&iso));
            if !not_nohz.is_empty() || !not_iso.is_empty() {
                let mut why = Vec::new();
                if !not_nohz.is_empty() {
                    why.push(format!("{} not nohz_full", not_nohz.named()));
                }
                if !not_iso.is_empty() {
                    why.push(format!("{} in load balancing", not_iso.named()));
                }
                bad.push(format!("{} ({})", x.who(), why.join(", ")));
                need = need.union(&x.cpus);
            }
        }
        if bad.is_empty() {
            self.finding(
                Severity::Ok,
                "every CPU kubelet gave a container alone is nohz_full and out of load balancing",
                e,
                None,
            )
        } else {
            let n = need.to_list();
            self.finding(
                Severity::Fail,
                format!("containers own CPUs whose tick keeps running or that the scheduler balances: {}", some_of(&bad, 3)),
                e,
                fix(FixKind::Boot, format!("nohz_full={n} isolcpus=nohz,domain,managed_irq,{n} rcu_nocbs={n} (the CPUs kubelet hands out alone)")),
            )
        }
    }

    pub(super) fn kubelet_reserved(&self) -> Finding {
        if let Some(f) = self.not_a_node() {
            return f;
        }
        let k = &self.m.kubelet;
        let Some(c) = k.config.as_ref() else {
            return self.unknown("kubelet's configuration", &k.config);
        };
        let Some(reserved) = &c.reserved_system_cpus else {
            return self.finding(
                Severity::Unknown,
                "kubelet's configuration sets no reservedSystemCPUs (set by a flag, or not at all)",
                vec![ev(k.config_path.clone(), "no reservedSystemCPUs")],
                fix(
                    FixKind::Platform,
                    format!("reservedSystemCPUs: \"{}\" in {}", self.hk(), k.config_path),
                ),
            );
        };
        let e = vec![
            ev(
                k.config_path.clone(),
                format!("reservedSystemCPUs: {}", cpus(reserved)),
            ),
            ev(
                "/sys/devices/system/cpu/online",
                format!("housekeeping {}", self.hk()),
            ),
        ];
        if *reserved == self.t.housekeeping {
            self.finding(
                Severity::Ok,
                "kubelet reserves the housekeeping CPUs for the system",
                e,
                None,
            )
        } else {
            // The system's daemons on an isolated CPU break isolation; sets that merely
            // disagree waste CPUs.
            let onto = reserved.intersection(self.target());
            self.finding(
                if onto.is_empty() { Severity::Warn } else { Severity::Fail },
                if onto.is_empty() {
                    format!(
                        "kubelet reserves {} for the system, the housekeeping CPUs are {}: the two sets disagree",
                        reserved.named(),
                        self.hk()
                    )
                } else {
                    format!(
                        "kubelet reserves {} for the system: the system's work runs on isolated {}",
                        reserved.named(),
                        onto.named()
                    )
                },
                e,
                fix(FixKind::Platform, format!("reservedSystemCPUs: \"{}\" in {} (and restart kubelet)", self.hk(), k.config_path)),
            )
        }
    }

    pub(super) fn kubelet_exclusive_alone(&self) -> Finding {
        let ex = match self.exclusive_or() {
            Ok(ex) => ex,
            Err(f) => return f,
        };
        let Some(threads) = self.m.threads.as_ref() else {
            return self.unknown("threads", &self.m.threads);
        };
        let me = std::process::id();
        let mut others = Vec::new();
        for x in &ex {
            let mut here: Vec<String> = Vec::new();
            for t in threads
                .iter()
                .filter(|t| t.affinity_settable && t.pid != me && t.allowed.intersects(&x.cpus))
            {
                let pod = t.place.as_ref().and_then(|p| p.pod.as_ref());
                let container = t
                    .place
                    .as_ref()
                    .and_then(|p| p.container.as_ref())
                    .and_then(|c| c.name.as_deref());
                let its_own = pod.is_some_and(|p| p.uid == x.pod_uid)
                    && container.is_none_or(|c| c == x.container);
                if its_own {
                    continue;
                }
                let who = match t.place.as_ref().map(|p| p.tag()) {
                    Some(tag) if !tag.is_empty() => tag,
                    _ if t.kernel_thread => format!("kernel thread {}", t.comm),
                    _ => format!("{}/{}", t.comm, t.pid),
                };
                if !here.contains(&who) {
                    here.push(who);
                }
            }
            if !here.is_empty() {
                others.push(format!(
                    "on {} of {}: {}",
                    x.cpus.named(),
                    x.who(),
                    some_of(&here, 3)
                ));
            }
        }
        let e = vec![ev(
            "/proc/*/cgroup, /proc/*/task/*/status",
            format!(
                "{} threads read, {} container(s) with CPUs of their own",
                threads.len(),
                ex.len()
            ),
        )];
        if others.is_empty() {
            self.finding(
                Severity::Ok,
                "only its container may run on the CPUs kubelet gave it",
                e,
                None,
            )
        } else {
            self.finding(
                Severity::Warn,
                format!("others may run on a container's own CPUs: {}", some_of(&others, 2)),
                e,
                fix(FixKind::Runtime, format!("keep the system on the reserved CPUs (reservedSystemCPUs, systemd's CPUAffinity={}), and isol apply --cpus CPUS moves what is left", self.hk())),
            )
        }
    }
}
