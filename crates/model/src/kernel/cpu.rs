//! CPUs: which exist and are online, which are isolated, their topology, frequency governor,
//! idle states, and the TSC.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::kernel::Fact;
use crate::sysroot::SysRoot;

const CPU: &str = "/sys/devices/system/cpu";

/// An idle state slower than this to exit (in us) is deep: `check` warns of it and
/// `apply` disables it on isolated CPUs.
pub const DEEP_IDLE_US: u64 = 10;

/// One cpuidle state of a CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleState {
    /// `name`.
    pub name: String,
    /// Exit latency, in microseconds.
    pub latency_us: u64,
    /// Whether `disable` is set.
    pub disabled: bool,
}

/// What sysfs says about one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuDetail {
    /// The CPU number.
    pub cpu: u32,
    /// `topology/thread_siblings_list`: the SMT siblings, itself included.
    pub siblings: Option<CpuSet>,
    /// NUMA node.
    pub node: Option<u32>,
    /// `cpufreq/scaling_governor`; `None` without cpufreq (common in VMs).
    pub governor: Option<String>,
    /// `cpuidle/stateN`, in order.
    pub idle_states: Vec<IdleState>,
}

/// The CPUs of the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Cpus {
    /// `cpu/possible`.
    pub possible: Fact<CpuSet>,
    /// `cpu/present`.
    pub present: Fact<CpuSet>,
    /// `cpu/online`.
    pub online: Fact<CpuSet>,
    /// `/sys/devices/system/cpu/isolated`: domain-isolated at boot (`isolcpus=`).
    pub isolated: Fact<CpuSet>,
    /// `/sys/devices/system/cpu/nohz_full`; absent without `CONFIG_NO_HZ_FULL`.
    pub nohz_full: Fact<CpuSet>,
    /// Per online CPU.
    pub detail: BTreeMap<u32, CpuDetail>,
    /// `cpuidle/current_driver`.
    pub idle_driver: Fact<String>,
    /// CPU flags relevant to timekeeping (`constant_tsc`, `nonstop_tsc`, `tsc_reliable`,
    /// `tsc_known_freq`, `rdtscp`), from the first processor in `/proc/cpuinfo`.
    pub tsc_flags: Fact<Vec<String>>,
    /// `current_clocksource`.
    pub clocksource: Fact<String>,
    /// `available_clocksource`.
    pub available_clocksources: Fact<Vec<String>>,
    /// `smt/active`.
    pub smt_active: Fact<bool>,
}

impl Cpus {
    /// Read from the root.
    pub fn load(root: &SysRoot) -> Cpus {
        let set = |name: &str| -> Fact<CpuSet> { Fact::list(root, &format!("{CPU}/{name}")) };
        let online = set("online");
        let mut detail = BTreeMap::new();
        let nodes = numa_nodes(root);
        if let Fact::Known(on) = &online {
            for cpu in on.iter() {
                let base = format!("{CPU}/cpu{cpu}");
                let siblings =
                    Fact::list(root, &format!("{base}/topology/thread_siblings_list")).ok();
                let governor = root
                    .read_line(&format!("{base}/cpufreq/scaling_governor"))
                    .ok();
                let idle_states = idle_states(root, &base);
                let node = nodes.iter().find(|(_, s)| s.contains(cpu)).map(|(n, _)| *n);
                detail.insert(
                    cpu,
                    CpuDetail {
                        cpu,
                        siblings,
                        node,
                        governor,
                        idle_states,
                    },
                );
            }
        }
        let cs = "/sys/devices/system/clocksource/clocksource0";
        Cpus {
            possible: set("possible"),
            present: set("present"),
            isolated: set("isolated"),
            nohz_full: set("nohz_full"),
            online,
            detail,
            idle_driver: Fact::read(root, &format!("{CPU}/cpuidle/current_driver"), |s| {
                Ok(s.trim().to_string())
            }),
            tsc_flags: Fact::read(root, "/proc/cpuinfo", |s| Ok(tsc_flags(s))),
            clocksource: Fact::read(root, &format!("{cs}/current_clocksource"), |s| {
                Ok(s.trim().to_string())
            }),
            available_clocksources: Fact::read(root, &format!("{cs}/available_clocksource"), |s| {
                Ok(s.split_whitespace().map(str::to_string).collect())
            }),
            smt_active: Fact::read(root, &format!("{CPU}/smt/active"), |s| Ok(s.trim() == "1")),
        }
    }

    /// The highest possible CPU, for resolving `N` in boot parameters.
    pub fn last_possible(&self) -> Option<u32> {
        self.possible.as_ref().and_then(|s| s.last())
    }
}

fn numa_nodes(root: &SysRoot) -> Vec<(u32, CpuSet)> {
    let dir = "/sys/devices/system/node";
    let Ok(names) = root.list(dir) else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| n.strip_prefix("node")?.parse::<u32>().ok())
        .filter_map(|n| {
            let cpus = Fact::list(root, &format!("{dir}/node{n}/cpulist")).ok()?;
            Some((n, cpus))
        })
        .collect()
}

fn idle_states(root: &SysRoot, base: &str) -> Vec<IdleState> {
    let dir = format!("{base}/cpuidle");
    let Ok(names) = root.list(&dir) else {
        return Vec::new();
    };
    names
        .iter()
        .filter(|n| n.starts_with("state"))
        .filter_map(|n| {
            let s = format!("{dir}/{n}");
            Some(IdleState {
                name: root.read_line(&format!("{s}/name")).ok()?,
                latency_us: root.read_line(&format!("{s}/latency")).ok()?.parse().ok()?,
                disabled: root.read_line(&format!("{s}/disable")).ok()? != "0",
            })
        })
        .collect()
}

/// The timekeeping-related flags of the first processor in `/proc/cpuinfo`.
pub fn tsc_flags(cpuinfo: &str) -> Vec<String> {
    const WANTED: [&str; 6] = [
        "tsc",
        "constant_tsc",
        "nonstop_tsc",
        "tsc_reliable",
        "tsc_known_freq",
        "rdtscp",
    ];
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "flags").then_some(v)
        })
        .map(|v| {
            v.split_whitespace()
                .filter(|f| WANTED.contains(f))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_tsc_flags() {
        let f = tsc_flags("processor\t: 0\nflags\t\t: fpu tsc msr rdtscp lm constant_tsc nonstop_tsc tsc_known_freq pni\n\nprocessor\t: 1\nflags\t: fpu\n");
        assert_eq!(
            f,
            vec![
                "tsc",
                "rdtscp",
                "constant_tsc",
                "nonstop_tsc",
                "tsc_known_freq"
            ]
        );
        assert!(tsc_flags("").is_empty());
    }
}
