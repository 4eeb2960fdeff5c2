//! Which CPUs to isolate, and which are left for the kernel's housekeeping.
//!
//! Every engine starts here: `check` judges a [`Target`], `watch` and `noise` trace and
//! measure one, and task isolation refuses a CPU the same way. The CPU layout comes from a
//! light read ([`Topology::read`]: CPU lists, command line, config, cpusets; no walk of
//! every thread), or from a full [`KernelModel`] already loaded.

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::kernel::{Base, Fact, KernelModel};
use crate::SysRoot;

/// The CPU layout of a kernel, as far as choosing CPUs goes.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Online CPUs; why not, when unreadable.
    pub online: Result<CpuSet, String>,
    /// Possible CPUs, when readable.
    pub possible: Option<CpuSet>,
    /// CPUs whose tick stops when they run one task.
    pub nohz_full: CpuSet,
    /// CPUs outside scheduler load balancing (boot or cpuset partition).
    pub domain_isolated: CpuSet,
    /// SMT siblings of each online CPU, when known.
    pub siblings: std::collections::BTreeMap<u32, CpuSet>,
    /// `CONFIG_HZ`, when the config is readable.
    pub hz: Option<u32>,
}

impl Topology {
    /// Read the layout from `root`.
    pub fn read(root: &SysRoot) -> Topology {
        let b = Base::load(root);
        Topology::from_parts(&b.cpus, &b.cmdline, &b.config, &b.cpusets)
    }

    /// The layout of a loaded model.
    pub fn of(model: &KernelModel) -> Topology {
        Topology::from_parts(&model.cpus, &model.cmdline, &model.config, &model.cpusets)
    }

    fn from_parts(
        cpus: &crate::kernel::cpu::Cpus,
        cmdline: &Fact<crate::kernel::cmdline::BootParams>,
        config: &Fact<crate::kernel::config::KernelConfig>,
        cpusets: &[crate::kernel::cgroup::Cpuset],
    ) -> Topology {
        Topology {
            online: match &cpus.online {
                Fact::Known(s) => Ok(s.clone()),
                f => Err(f.why_unknown().unwrap_or_default()),
            },
            possible: cpus.possible.as_ref().cloned(),
            nohz_full: crate::kernel::nohz_full(cpus, config, cmdline),
            domain_isolated: crate::kernel::domain_isolated(cpus, cmdline, cpusets),
            siblings: cpus
                .detail
                .iter()
                .filter_map(|(c, d)| Some((*c, d.siblings.clone()?)))
                .collect(),
            hz: config.as_ref().and_then(|c| c.hz()),
        }
    }

    /// The online CPUs, or why they are unknown.
    pub fn online(&self) -> Result<&CpuSet, TargetError> {
        self.online
            .as_ref()
            .map_err(|why| TargetError::OnlineUnknown(why.clone()))
    }
}

/// Where the target CPUs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSource {
    /// `--cpus`.
    Given,
    /// The kernel's `nohz_full` set.
    NohzFull,
    /// The kernel's domain-isolated set.
    Isolated,
    /// Nothing is isolated: isol's suggestion (every online CPU but the first core).
    Suggested,
    /// `--pod`: the CPUs kubelet's CPU manager gave a pod or one of its containers.
    Pod,
}

/// The CPUs to isolate, and the housekeeping CPUs left for the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The CPUs to isolate (check, watch, measure).
    pub cpus: CpuSet,
    /// Where they came from.
    pub source: TargetSource,
    /// Online CPUs outside the target.
    pub housekeeping: CpuSet,
    /// With [`TargetSource::Pod`]: `namespace/name[/container]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// A target that cannot be used; each is a usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No CPU was named.
    #[error("the CPU list is empty; name at least one CPU to isolate")]
    Empty,
    /// A CPU beyond the possible ones.
    #[error("{} {} not exist (possible CPUs: {possible})", cpus.named(), if cpus.len() == 1 { "does" } else { "do" })]
    NotPossible {
        /// The CPUs that do not exist.
        cpus: CpuSet,
        /// The possible CPUs.
        possible: CpuSet,
    },
    /// An offline CPU.
    #[error("{} {} offline (online: {online}); bring {} online with `echo 1 > /sys/devices/system/cpu/cpuN/online` or choose others", cpus.named(), if cpus.len() == 1 { "is" } else { "are" }, if cpus.len() == 1 { "it" } else { "them" })]
    Offline {
        /// The offline CPUs asked for.
        cpus: CpuSet,
        /// The online CPUs.
        online: CpuSet,
    },
    /// Every online CPU would be isolated.
    #[error("isolating {} leaves no online housekeeping CPU; keep at least one of {online} for the kernel", cpus.named())]
    NoHousekeeping {
        /// The CPUs to isolate.
        cpus: CpuSet,
        /// The online CPUs.
        online: CpuSet,
    },
    /// The online CPUs could not be read.
    #[error("the online CPUs are unknown ({0}); pass --cpus and run as root")]
    OnlineUnknown(String),
    /// `--pod` names no pod with CPUs of its own.
    #[error("--pod: {0}")]
    Pod(String),
    /// One CPU online: nothing to isolate.
    #[error("only one CPU is online: nothing can be isolated while keeping a housekeeping CPU")]
    SingleCpu,
    /// SCHED_FIFO asked for while the RT throttle is on.
    #[error(
        "SCHED_FIFO was asked for but RT throttling is on (kernel.sched_rt_runtime_us = \
         {runtime_us}): the throttle takes the CPU away for part of every period (5 % by \
         default) and shows up as noise; set it to -1 (`sysctl kernel.sched_rt_runtime_us=-1`) \
         or do without SCHED_FIFO"
    )]
    RtThrottled {
        /// `kernel.sched_rt_runtime_us`.
        runtime_us: i64,
    },
}

impl Target {
    /// Validate `given`, or choose the kernel's isolated CPUs (nohz_full first, then
    /// domain-isolated), or suggest a set when none are.
    pub fn choose(model: &KernelModel, given: Option<&CpuSet>) -> Result<Target, TargetError> {
        Target::choose_in(&Topology::of(model), given)
    }

    /// [`Target::choose`] on a topology read on its own.
    pub fn choose_in(topo: &Topology, given: Option<&CpuSet>) -> Result<Target, TargetError> {
        let online = topo.online()?;
        let (cpus, source) = match given {
            Some(g) => (Target::given(topo, g)?, TargetSource::Given),
            None => {
                let nohz = topo.nohz_full.intersection(online);
                let iso = topo.domain_isolated.intersection(online);
                if !nohz.is_empty() {
                    (nohz, TargetSource::NohzFull)
                } else if !iso.is_empty() {
                    (iso, TargetSource::Isolated)
                } else {
                    (suggest(topo, online)?, TargetSource::Suggested)
                }
            }
        };
        let housekeeping = online.difference(&cpus);
        if housekeeping.is_empty() {
            return Err(TargetError::NoHousekeeping {
                cpus,
                online: online.clone(),
            });
        }
        Ok(Target {
            cpus,
            source,
            housekeeping,
            pod: None,
        })
    }

    /// The CPUs kubelet gave `pod` (`namespace/name[/container]`), validated as
    /// [`Target::choose`] validates given ones.
    pub fn of_pod(model: &KernelModel, pod: &str) -> Result<Target, TargetError> {
        let (namespace, rest) = pod
            .split_once('/')
            .filter(|(ns, rest)| !ns.is_empty() && !rest.is_empty())
            .ok_or_else(|| {
                TargetError::Pod(format!("{pod:?} is not NAMESPACE/NAME[/CONTAINER]"))
            })?;
        let (name, container) = match rest.split_once('/') {
            Some((n, c)) if !n.is_empty() && !c.is_empty() && !c.contains('/') => (n, Some(c)),
            Some(_) => {
                return Err(TargetError::Pod(format!(
                    "{pod:?} is not NAMESPACE/NAME[/CONTAINER]"
                )))
            }
            None => (rest, None),
        };
        let cpus = model
            .kubelet
            .cpus_of(namespace, name, container)
            .map_err(TargetError::Pod)?;
        let mut t = Target::choose(model, Some(&cpus))?;
        t.source = TargetSource::Pod;
        t.pod = Some(pod.to_string());
        Ok(t)
    }

    /// `given` if every CPU in it exists and is online.
    fn given(topo: &Topology, given: &CpuSet) -> Result<CpuSet, TargetError> {
        let online = topo.online()?;
        if given.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(possible) = &topo.possible {
            let bad = given.difference(possible);
            if !bad.is_empty() {
                return Err(TargetError::NotPossible {
                    cpus: bad,
                    possible: possible.clone(),
                });
            }
        }
        let offline = given.difference(online);
        if !offline.is_empty() {
            return Err(TargetError::Offline {
                cpus: offline,
                online: online.clone(),
            });
        }
        Ok(given.clone())
    }
}

/// Every online CPU except the first one and its SMT siblings.
fn suggest(topo: &Topology, online: &CpuSet) -> Result<CpuSet, TargetError> {
    let first = online.first().ok_or(TargetError::SingleCpu)?;
    let core = topo
        .siblings
        .get(&first)
        .cloned()
        .unwrap_or_else(|| [first].into_iter().collect());
    let rest = online.difference(&core);
    if rest.is_empty() {
        return Err(TargetError::SingleCpu);
    }
    Ok(rest)
}

/// Refuse SCHED_FIFO while the RT throttle is on: it would take the CPU away.
pub fn refuse_rt_throttling(root: &SysRoot) -> Result<(), TargetError> {
    let runtime = root
        .read_line("/proc/sys/kernel/sched_rt_runtime_us")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(-1);
    if runtime == -1 {
        Ok(())
    } else {
        Err(TargetError::RtThrottled {
            runtime_us: runtime,
        })
    }
}
