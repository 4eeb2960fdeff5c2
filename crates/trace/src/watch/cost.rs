//! What a watch costs the CPUs it watches: the interrupts they take while it switches its
//! events on and off.

use std::collections::BTreeMap;

use crate::{CpuSet, SysRoot};

/// What the watch itself cost the watched CPUs: the interrupts they took while it switched
/// its events on (start) or off (stop). Each tracepoint switched patches the kernel's code,
/// and each patch interrupts every online CPU, isolated or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cost {
    /// Events switched on (start) or off (stop); 0 when they were on already, or stay on,
    /// in the armed instance.
    pub events: usize,
    /// Interrupts each watched CPU took meanwhile (`/proc/interrupts`); empty when it
    /// could not be read.
    pub interrupts: BTreeMap<u32, u64>,
    /// How long switching took.
    pub elapsed_ns: u64,
}

impl Cost {
    /// Interrupts over all watched CPUs.
    pub fn total(&self) -> u64 {
        self.interrupts.values().sum()
    }

    /// `cpu1 312, cpu2 310` (or `not measured`).
    pub fn per_cpu(&self) -> String {
        if self.interrupts.is_empty() {
            return "not measured (/proc/interrupts unreadable)".into();
        }
        self.interrupts
            .iter()
            .map(|(c, n)| format!("cpu{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Measures a [`Cost`]: interrupt counts of the watched CPUs before and after.
pub(super) struct CostMeter {
    before: Option<BTreeMap<u32, u64>>,
    t0: u64,
}

impl CostMeter {
    pub(super) fn start(root: &SysRoot, cpus: &CpuSet) -> CostMeter {
        CostMeter {
            before: interrupt_counts(root, cpus),
            t0: crate::os::monotonic_ns(),
        }
    }

    pub(super) fn finish(self, root: &SysRoot, cpus: &CpuSet, events: usize) -> Cost {
        let elapsed_ns = crate::os::monotonic_ns().saturating_sub(self.t0);
        let interrupts = match (self.before, interrupt_counts(root, cpus)) {
            (Some(b), Some(a)) => a
                .iter()
                .map(|(c, n)| (*c, n.saturating_sub(b.get(c).copied().unwrap_or(0))))
                .collect(),
            _ => Default::default(),
        };
        Cost {
            events,
            interrupts,
            elapsed_ns,
        }
    }
}

/// Every interrupt each of `cpus` has taken (`/proc/interrupts`, see
/// [`crate::kernel::interrupts::InterruptTable::interrupts_on`]). Reading it takes no lock on, and sends nothing to, the CPUs counted.
fn interrupt_counts(root: &SysRoot, cpus: &CpuSet) -> Option<BTreeMap<u32, u64>> {
    let text = root.read("/proc/interrupts").ok()?;
    let t = crate::kernel::interrupts::InterruptTable::parse(&text).ok()?;
    Some(cpus.iter().map(|c| (c, t.interrupts_on(c))).collect())
}
