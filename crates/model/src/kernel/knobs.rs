//! Module parameters and power knobs that matter for an isolated CPU, each read raw:
//! RCU's patience with nohz_full CPUs, KVM's ticking options, receive packet steering's
//! default mask, and the energy-performance hints (EPB, `intel_pstate`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{yes_no, Fact};
use crate::cpus::CpuSet;
use crate::SysRoot;

fn number(s: &str) -> Result<u64, String> {
    s.trim().parse().map_err(|e| format!("not a number: {e}"))
}

fn word(s: &str) -> Result<String, String> {
    Ok(s.trim().to_string())
}

/// `rcutree.nohz_full_patience_delay` (ms; 6.10 and later): how long RCU lets a nohz_full
/// CPU that entered the kernel be before it asks for a quiescent state with an IPI or
/// `rcuc` wake-up (0: at once).
pub const RCU_PATIENCE: &str = "/sys/module/rcutree/parameters/nohz_full_patience_delay";

/// `rcutree.kthread_prio`: the SCHED_FIFO priority of RCU's kernel threads (0: SCHED_OTHER).
pub const RCU_KTHREAD_PRIO: &str = "/sys/module/rcutree/parameters/kthread_prio";

/// KVM's host module options that put work on every CPU while guests run.
#[derive(Debug, Clone, Serialize)]
pub struct Kvm {
    /// `kvm.kvmclock_periodic_sync`: a work item per VM every 300 s.
    pub kvmclock_periodic_sync: Fact<bool>,
    /// `kvm.nx_huge_pages`: `Y`/`force` split huge pages for the iTLB multihit
    /// mitigation, and a recovery thread per VM puts them back.
    pub nx_huge_pages: Fact<String>,
}

/// The energy-performance hints of the CPUs.
#[derive(Debug, Clone, Serialize)]
pub struct Power {
    /// Each online CPU's energy-performance bias (0 performance .. 15 power saving).
    pub epb: BTreeMap<u32, Fact<u64>>,
    /// `intel_pstate/status` (`active`, `passive`, `off`).
    pub pstate_status: Fact<String>,
    /// `intel_pstate/min_perf_pct`.
    pub min_perf_pct: Fact<u64>,
    /// `intel_pstate/max_perf_pct`.
    pub max_perf_pct: Fact<u64>,
}

/// The parameters read by this module.
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    /// [`RCU_PATIENCE`].
    pub rcu_patience_ms: Fact<u64>,
    /// [`RCU_KTHREAD_PRIO`].
    pub rcu_kthread_prio: Fact<u64>,
    /// KVM (`/sys/module/kvm/parameters`; absent when KVM is not loaded).
    pub kvm: Kvm,
    /// `net.core.rps_default_mask` (6.2 and later): the RPS mask new network devices'
    /// receive queues get.
    pub rps_default_mask: Fact<CpuSet>,
    /// Power hints.
    pub power: Power,
}

impl Knobs {
    /// Read them, for the `online` CPUs.
    pub fn load(root: &SysRoot, online: Option<&CpuSet>) -> Knobs {
        let kvm = "/sys/module/kvm/parameters";
        let pstate = "/sys/devices/system/cpu/intel_pstate";
        Knobs {
            rcu_patience_ms: Fact::read(root, RCU_PATIENCE, number),
            rcu_kthread_prio: Fact::read(root, RCU_KTHREAD_PRIO, number),
            kvm: Kvm {
                kvmclock_periodic_sync: Fact::read(
                    root,
                    &format!("{kvm}/kvmclock_periodic_sync"),
                    yes_no,
                ),
                nx_huge_pages: Fact::read(root, &format!("{kvm}/nx_huge_pages"), word),
            },
            rps_default_mask: Fact::read(root, "/proc/sys/net/core/rps_default_mask", |s| {
                CpuSet::parse_mask(s).map_err(|e| e.to_string())
            }),
            power: Power {
                epb: online
                    .map(|on| {
                        on.iter()
                            .map(|c| {
                                let p = format!(
                                    "/sys/devices/system/cpu/cpu{c}/power/energy_perf_bias"
                                );
                                (c, Fact::read(root, &p, number))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                pstate_status: Fact::read(root, &format!("{pstate}/status"), word),
                min_perf_pct: Fact::read(root, &format!("{pstate}/min_perf_pct"), number),
                max_perf_pct: Fact::read(root, &format!("{pstate}/max_perf_pct"), number),
            },
        }
    }
}
