//! irqbalance, when it runs: the daemon that rewrites IRQ affinities every 10 s.

use serde::Serialize;

use super::{Fact, KernelModel, ThreadInfo};
use crate::cpus::CpuSet;
use crate::sysroot::SysRoot;

/// A running irqbalance and the CPUs it was told to leave alone.
#[derive(Debug, Clone, Serialize)]
pub struct IrqBalance {
    /// Its process id.
    pub pid: u32,
    /// `IRQBALANCE_BANNED_CPULIST` (or the older `IRQBALANCE_BANNED_CPUS` mask) from its
    /// environment; `Known(None)` when neither is set.
    pub banned: Fact<Option<CpuSet>>,
}

impl IrqBalance {
    /// The CPUs it keeps IRQs off: the model's isolated and nohz_full CPUs (irqbalance
    /// 1.8 and later skip them) and those banned in its environment, when readable.
    pub fn exempt(&self, model: &KernelModel) -> CpuSet {
        let kernel = model.nohz_full().union(&model.domain_isolated());
        match &self.banned {
            Fact::Known(Some(b)) => b.union(&kernel),
            _ => kernel,
        }
    }

    pub(super) fn find(root: &SysRoot, threads: &Fact<Vec<ThreadInfo>>) -> Option<IrqBalance> {
        let t = threads
            .as_ref()?
            .iter()
            .find(|t| t.comm == "irqbalance" && t.pid == t.tid && !t.kernel_thread)?;
        let path = format!("/proc/{}/environ", t.pid);
        let banned = Fact::read(root, &path, |text| {
            let var = |name: &str| {
                text.split('\0')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
            };
            if let Some(list) = var("IRQBALANCE_BANNED_CPULIST") {
                return CpuSet::parse_list(list)
                    .map(Some)
                    .map_err(|e| e.to_string());
            }
            if let Some(mask) = var("IRQBALANCE_BANNED_CPUS") {
                return CpuSet::parse_mask(mask)
                    .map(Some)
                    .map_err(|e| e.to_string());
            }
            Ok(None)
        });
        Some(IrqBalance { pid: t.pid, banned })
    }
}
