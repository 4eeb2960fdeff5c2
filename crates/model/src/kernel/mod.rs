//! The kernel model: a read-only picture of everything about the running kernel that matters
//! for CPU isolation, read through a [`SysRoot`].
//!
//! Each parser is a pure function over the text of one file and lives in its own module;
//! [`KernelModel::load`] reads the files and assembles the parts. A part that cannot be read
//! is a [`Fact::Unknown`] with the reason (absent, needs root, masked), never a failure of
//! the whole model.

pub mod applied;
pub mod cgroup;
pub mod cmdline;
pub mod config;
pub mod cpu;
pub mod interrupts;
mod irqbalance;
pub mod knobs;
pub mod kubelet;
pub mod place;
pub mod sched_debug;
pub mod threads;
pub mod timer_list;
pub mod tracing;
pub mod view;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cpus::CpuSet;
use crate::sysroot::{SysError, SysRoot};

pub use cmdline::BootParams;
pub use config::KernelConfig;
pub use cpu::Cpus;
pub use interrupts::{InterruptTable, IrqAffinity};
pub use irqbalance::IrqBalance;
pub use kubelet::Kubelet;
pub use place::{Place, Places};
pub use threads::ThreadInfo;
pub use timer_list::TimerList;
pub use tracing::TraceInstance;
pub use view::View;

/// Something read from the kernel, or why it could not be.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Fact<T> {
    /// The value.
    Known(T),
    /// The file could not be read, or did not parse.
    Unknown {
        /// The kernel file.
        path: String,
        /// Why (serialised as `unknown`: `absent`, `needs root`, ...).
        #[serde(rename = "unknown")]
        why: Unknown,
    },
}

/// Why a fact is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// The file does not exist on this kernel.
    Absent,
    /// Reading it needs root.
    NeedsRoot,
    /// Hidden by a container runtime (reads as empty).
    Masked,
    /// A captured tree holds something isol will not read there.
    Refused,
    /// Another I/O error.
    Error,
    /// The file was read but does not parse: why.
    Malformed(String),
}

impl Unknown {
    /// The reason behind a read error.
    pub fn of(e: &SysError) -> Unknown {
        match e {
            SysError::NotFound { .. } => Unknown::Absent,
            SysError::NeedsRoot { .. } => Unknown::NeedsRoot,
            SysError::Masked { .. } => Unknown::Masked,
            SysError::Refused { .. } => Unknown::Refused,
            SysError::Io { .. } => Unknown::Error,
        }
    }
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unknown::Absent => f.write_str("absent"),
            Unknown::NeedsRoot => f.write_str("needs root"),
            Unknown::Masked => f.write_str("masked"),
            Unknown::Refused => f.write_str("refused"),
            Unknown::Error => f.write_str("error"),
            Unknown::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

impl Serialize for Unknown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<T> Fact<T> {
    /// Read `path` and parse it; a parse failure is `Unknown` with `malformed: ...`.
    pub fn read(
        root: &SysRoot,
        path: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Fact<T> {
        match root.read(path) {
            Ok(text) => Self::parsed(path, parse(&text)),
            Err(e) => Self::from_error(&e),
        }
    }

    /// The result of a parse of `path`.
    pub fn parsed(path: &str, r: Result<T, String>) -> Fact<T> {
        match r {
            Ok(v) => Fact::Known(v),
            Err(why) => Fact::Unknown {
                path: path.to_string(),
                why: Unknown::Malformed(why),
            },
        }
    }

    /// An unreadable file.
    pub fn from_error(e: &SysError) -> Fact<T> {
        Fact::Unknown {
            path: e.path().to_string(),
            why: Unknown::of(e),
        }
    }

    /// The value, if known.
    pub fn as_ref(&self) -> Option<&T> {
        match self {
            Fact::Known(v) => Some(v),
            Fact::Unknown { .. } => None,
        }
    }

    /// The value, if known.
    pub fn ok(self) -> Option<T> {
        match self {
            Fact::Known(v) => Some(v),
            Fact::Unknown { .. } => None,
        }
    }

    /// Why it is unknown, as `path: reason`.
    pub fn why_unknown(&self) -> Option<String> {
        match self {
            Fact::Known(_) => None,
            Fact::Unknown { path, why } => Some(format!("{path}: {why}")),
        }
    }

    /// Whether the file was absent (as opposed to unreadable).
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            Fact::Unknown {
                why: Unknown::Absent,
                ..
            }
        )
    }

    /// Why it is unknown: the file and the reason.
    pub fn unknown(&self) -> Option<(&str, &Unknown)> {
        match self {
            Fact::Known(_) => None,
            Fact::Unknown { path, why } => Some((path, why)),
        }
    }
}

impl Fact<CpuSet> {
    /// A file in the CPU list form.
    pub fn list(root: &SysRoot, path: &str) -> Fact<CpuSet> {
        Fact::read(root, path, |s| {
            CpuSet::parse_list(s).map_err(|e| e.to_string())
        })
    }

    /// A file in the hex mask form.
    pub fn mask(root: &SysRoot, path: &str) -> Fact<CpuSet> {
        Fact::read(root, path, |s| {
            CpuSet::parse_mask(s).map_err(|e| e.to_string())
        })
    }
}

/// The sysctls that matter for isolation, raw (`None`: absent or unreadable).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sysctls {
    /// `kernel.timer_migration`.
    pub timer_migration: Option<String>,
    /// `kernel.watchdog_cpumask` (a CPU list).
    pub watchdog_cpumask: Option<String>,
    /// `kernel.watchdog` (soft and hard lockup detectors together).
    pub watchdog: Option<String>,
    /// `kernel.nmi_watchdog`.
    pub nmi_watchdog: Option<String>,
    /// `vm.stat_interval`, seconds.
    pub stat_interval: Option<String>,
    /// `kernel.sched_rt_runtime_us` (`-1` disables RT throttling).
    pub sched_rt_runtime_us: Option<String>,
    /// `kernel.sched_rt_period_us`.
    pub sched_rt_period_us: Option<String>,
    /// `kernel.numa_balancing`.
    pub numa_balancing: Option<String>,
}

/// Sysctl name -> path under `/proc/sys`.
pub const SYSCTLS: [(&str, &str); 8] = [
    ("kernel.timer_migration", "/proc/sys/kernel/timer_migration"),
    (
        "kernel.watchdog_cpumask",
        "/proc/sys/kernel/watchdog_cpumask",
    ),
    ("kernel.watchdog", "/proc/sys/kernel/watchdog"),
    ("kernel.nmi_watchdog", "/proc/sys/kernel/nmi_watchdog"),
    ("vm.stat_interval", "/proc/sys/vm/stat_interval"),
    (
        "kernel.sched_rt_runtime_us",
        "/proc/sys/kernel/sched_rt_runtime_us",
    ),
    (
        "kernel.sched_rt_period_us",
        "/proc/sys/kernel/sched_rt_period_us",
    ),
    ("kernel.numa_balancing", "/proc/sys/kernel/numa_balancing"),
];

impl Sysctls {
    /// The value of sysctl `name` (one of [`SYSCTLS`]).
    pub fn get(&self, name: &str) -> Option<String> {
        match name {
            "kernel.timer_migration" => self.timer_migration.clone(),
            "kernel.watchdog_cpumask" => self.watchdog_cpumask.clone(),
            "kernel.watchdog" => self.watchdog.clone(),
            "kernel.nmi_watchdog" => self.nmi_watchdog.clone(),
            "vm.stat_interval" => self.stat_interval.clone(),
            "kernel.sched_rt_runtime_us" => self.sched_rt_runtime_us.clone(),
            "kernel.sched_rt_period_us" => self.sched_rt_period_us.clone(),
            "kernel.numa_balancing" => self.numa_balancing.clone(),
            _ => None,
        }
    }

    fn load(root: &SysRoot) -> Sysctls {
        let v = |i: usize| root.read_line(SYSCTLS[i].1).ok();
        Sysctls {
            timer_migration: v(0),
            watchdog_cpumask: v(1),
            watchdog: v(2),
            nmi_watchdog: v(3),
            stat_interval: v(4),
            sched_rt_runtime_us: v(5),
            sched_rt_period_us: v(6),
            numa_balancing: v(7),
        }
    }
}

/// Memory-management background work.
#[derive(Debug, Clone, Serialize)]
pub struct Mm {
    /// The selected THP mode (`always`, `madvise`, `never`).
    pub thp_enabled: Fact<String>,
    /// `transparent_hugepage/defrag`.
    pub thp_defrag: Fact<String>,
    /// KSM `run` (0 off, 1 on, 2 unmerge).
    pub ksm_run: Fact<String>,
}

/// The selected word of a sysfs choice file: `always [madvise] never` -> `madvise`.
pub fn selected_choice(text: &str) -> Result<String, String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_string)
        .ok_or_else(|| format!("no [selected] word in {:?}", text.trim()))
}

/// x86 machine-check polling (`/sys/devices/system/machinecheck/machinecheck0`).
#[derive(Debug, Clone, Serialize)]
pub struct Mce {
    /// `check_interval`: seconds between polls of the MCE banks (0: no polling).
    pub check_interval: Fact<u64>,
    /// `ignore_ce`: corrected errors ignored, and the poll timer not started.
    pub ignore_ce: Fact<bool>,
}

impl Mce {
    /// Whether the poll timer runs: `Some(false)` also when the kernel has no MCE support.
    pub fn polling(&self) -> Option<bool> {
        match (&self.check_interval, &self.ignore_ce) {
            (Fact::Known(i), Fact::Known(ignore)) => Some(*i > 0 && !ignore),
            (c, _) if c.is_absent() => Some(false),
            _ => None,
        }
    }
}

/// Unbound workqueue CPU masks.
#[derive(Debug, Clone, Serialize)]
pub struct Workqueue {
    /// `/sys/devices/virtual/workqueue/cpumask`: where unbound work may run.
    pub cpumask: Fact<CpuSet>,
    /// `cpumask_requested`, what the administrator asked for (6.x).
    pub requested: Fact<CpuSet>,
    /// `cpumask_isolated`, CPUs the kernel keeps unbound work off (6.x).
    pub isolated: Fact<CpuSet>,
    /// The `writeback` workqueue's own mask.
    pub writeback: Fact<CpuSet>,
    /// Every workqueue userspace may steer (`WQ_SYSFS`: a directory with a `cpumask`),
    /// writeback included, by name.
    pub queues: BTreeMap<String, Fact<CpuSet>>,
}

/// A kernel boolean as the kernel reads one (`kstrtobool`): `Y`/`N` (module parameters),
/// `1`/`0` (control files), `y`/`n` and `on`/`off` (boot parameters).
pub fn yes_no(s: &str) -> Result<bool, String> {
    match s.trim() {
        "Y" | "y" | "1" | "on" => Ok(true),
        "N" | "n" | "0" | "off" => Ok(false),
        other => Err(format!("not Y/N, 1/0 or on/off: {other:?}")),
    }
}

/// Where the mount table `mounts` (`/proc/self/mounts`) has tracefs mounted, if it does.
/// The one reader of it: the kernel model and `Tracefs::locate` both use it.
pub fn tracefs_mount(mounts: &str) -> Option<String> {
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"tracefs")).then(|| f[1].to_string())
    })
}

/// The (major, minor) version of a kernel release (`6.12.117+deb12-cloud-amd64` ->
/// (6, 12)).
pub fn version(release: &str) -> Option<(u32, u32)> {
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    Some((nums.next()?, nums.next()?))
}

/// The first kernel with the fair deadline server: a fair task on a nohz_full CPU gets a
/// kick about once a second from it.
pub const FAIR_SERVER_SINCE: (u32, u32) = (6, 8);

/// The first release with what strict mode needs: Syscall User Dispatch (5.11) and perf
/// events with `sigtrap` (5.13).
pub const STRICT_MODE_SINCE: (u32, u32) = (5, 13);

/// Everything isol knows about the kernel, read once.
#[derive(Debug, Clone, Serialize)]
pub struct KernelModel {
    /// `uname -r`.
    pub release: Fact<String>,
    /// `/proc/cmdline`, parsed.
    pub cmdline: Fact<BootParams>,
    /// The kernel config (`/proc/config.gz` or `/boot/config-*`).
    pub config: Fact<KernelConfig>,
    /// CPU lists and per-CPU detail.
    pub cpus: Cpus,
    /// `/proc/interrupts`.
    pub interrupts: Fact<InterruptTable>,
    /// `/proc/softirqs`.
    pub softirqs: Fact<InterruptTable>,
    /// Per-IRQ affinity, by IRQ number.
    pub irqs: Fact<BTreeMap<u32, IrqAffinity>>,
    /// `/proc/irq/default_smp_affinity`.
    pub default_irq_affinity: Fact<CpuSet>,
    /// `/proc/timer_list`.
    pub timer_list: Fact<TimerList>,
    /// Every thread.
    pub threads: Fact<Vec<ThreadInfo>>,
    /// Workqueue cpumasks.
    pub workqueue: Workqueue,
    /// cgroup mounts.
    pub cgroup_mounts: Fact<Vec<cgroup::CgroupMount>>,
    /// Every cpuset.
    pub cpusets: Vec<cgroup::Cpuset>,
    /// Sysctls.
    pub sysctls: Sysctls,
    /// Memory management settings.
    pub mm: Mm,
    /// Machine-check polling.
    pub mce: Mce,
    /// Where tracefs is mounted, if it is.
    pub tracefs: Option<String>,
    /// What tracing is switched on: the top-level instance first, then each of
    /// `instances/` (unknown when tracefs is not mounted).
    pub tracing: Fact<Vec<TraceInstance>>,
    /// The fair deadline server's runtime per online CPU, in ns (debugfs
    /// `sched/fair_server/cpuN/runtime`, kernels 6.8 and later; 0 means off).
    pub fair_server: BTreeMap<u32, Fact<u64>>,
    /// Receive packet steering: each `rps_cpus` mask under `/sys/class/net`, by path
    /// (absent without network devices).
    pub rps: Fact<BTreeMap<String, CpuSet>>,
    /// The receive queues of each network device backed by a bus device (a NIC, not
    /// `lo`, a bridge or a veth), by name: one queue IRQ each (absent without devices).
    pub nic_queues: Fact<BTreeMap<String, u32>>,
    /// `rcupdate.rcu_normal_after_boot` as the running kernel has it.
    pub rcu_normal_after_boot: Fact<bool>,
    /// Module parameters and power hints: RCU's patience and kthread priority, KVM,
    /// the RPS default mask, EPB and `intel_pstate`.
    pub knobs: knobs::Knobs,
    /// The irqbalance daemon, when it runs.
    pub irqbalance: Option<IrqBalance>,
    /// What kubelet hands out on this node (its CPU manager, its reserved CPUs).
    pub kubelet: kubelet::Kubelet,
    /// What isol sees of the machine from where it runs (a container hides parts);
    /// unknown when the mount table is.
    pub view: Fact<View>,
    /// The header of `isol apply`'s journal in its default place (`/run/isol/journal`):
    /// which CPUs an apply left isolated, and for whom (absent when none is in place).
    pub applied: Fact<applied::Header>,
}

impl KernelModel {
    /// Read the whole model from `root`. Never fails: parts that cannot be read are
    /// [`Fact::Unknown`].
    pub fn load(root: &SysRoot) -> KernelModel {
        let Base {
            release,
            cpus,
            cmdline,
            config,
            mounts,
            cgroup_mounts,
            cpusets,
        } = Base::load(root);
        // Network devices and their queues, read once for RPS and the NIC queue counts.
        let net = rx_queues(root);
        let table = |p: &str| {
            Fact::read(root, p, |s| {
                InterruptTable::parse(s).map_err(|e| e.to_string())
            })
        };
        let tracefs = mounts.as_ref().and_then(|m| tracefs_mount(m));
        let wq = "/sys/devices/virtual/workqueue";
        let mm = "/sys/kernel/mm";
        let threads = load_threads(root);
        let irqbalance = IrqBalance::find(root, &threads);
        let kernel_threads = threads.as_ref().map(|t| t.iter().any(|t| t.kernel_thread));
        let view = match &mounts {
            Fact::Known(m) => Fact::Known(View::from(m, kernel_threads)),
            Fact::Unknown { path, why } => Fact::Unknown {
                path: path.clone(),
                why: why.clone(),
            },
        };
        KernelModel {
            release,
            cmdline,
            config,
            interrupts: table("/proc/interrupts"),
            softirqs: table("/proc/softirqs"),
            irqs: load_irqs(root),
            default_irq_affinity: Fact::mask(root, "/proc/irq/default_smp_affinity"),
            timer_list: match root.read_nonempty("/proc/timer_list") {
                Ok(t) => Fact::parsed(
                    "/proc/timer_list",
                    timer_list::parse(&t).map_err(|e| e.to_string()),
                ),
                Err(e) => Fact::from_error(&e),
            },
            threads,
            workqueue: Workqueue {
                cpumask: Fact::mask(root, &format!("{wq}/cpumask")),
                requested: Fact::mask(root, &format!("{wq}/cpumask_requested")),
                isolated: Fact::mask(root, &format!("{wq}/cpumask_isolated")),
                writeback: Fact::mask(root, &format!("{wq}/writeback/cpumask")),
                queues: root
                    .list(wq)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|n| root.exists(&format!("{wq}/{n}/cpumask")))
                    .map(|n| {
                        let mask = Fact::mask(root, &format!("{wq}/{n}/cpumask"));
                        (n, mask)
                    })
                    .collect(),
            },
            rps: load_rps(root, &net),
            nic_queues: load_nic_queues(root, &net),
            irqbalance,
            kubelet: kubelet::Kubelet::load(root, None),
            view,
            applied: {
                let path = format!("{}/journal", applied::DEFAULT_STATE_DIR);
                match root.read_first_line(&path) {
                    Ok(line) => Fact::parsed(&path, applied::Header::parse(&line)),
                    Err(e) => Fact::from_error(&e),
                }
            },
            rcu_normal_after_boot: Fact::read(
                root,
                "/sys/module/rcupdate/parameters/rcu_normal_after_boot",
                yes_no,
            ),
            knobs: knobs::Knobs::load(root, cpus.online.as_ref()),
            cgroup_mounts,
            cpusets,
            sysctls: Sysctls::load(root),
            mm: Mm {
                thp_enabled: Fact::read(
                    root,
                    &format!("{mm}/transparent_hugepage/enabled"),
                    selected_choice,
                ),
                thp_defrag: Fact::read(
                    root,
                    &format!("{mm}/transparent_hugepage/defrag"),
                    selected_choice,
                ),
                ksm_run: Fact::read(root, &format!("{mm}/ksm/run"), |s| Ok(s.trim().to_string())),
            },
            mce: Mce {
                check_interval: Fact::read(root, &format!("{MCE}/check_interval"), |s| {
                    s.trim().parse().map_err(|e| format!("{e}"))
                }),
                ignore_ce: Fact::read(root, &format!("{MCE}/ignore_ce"), |s| Ok(s.trim() != "0")),
            },
            tracing: tracing::load(root, tracefs.as_deref()),
            tracefs,
            fair_server: cpus
                .online
                .as_ref()
                .map(|on| {
                    on.iter()
                        .map(|c| {
                            let p = format!("/sys/kernel/debug/sched/fair_server/cpu{c}/runtime");
                            (
                                c,
                                Fact::read(root, &p, |s| {
                                    s.trim().parse().map_err(|e| format!("{e}"))
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            cpus,
        }
    }

    /// CPUs that are in a valid isolated cgroup v2 partition.
    pub fn partition_isolated(&self) -> CpuSet {
        partition_isolated(&self.cpusets)
    }

    /// CPUs removed from scheduler load balancing: `isolated` (boot) or an isolated
    /// cpuset partition (runtime).
    pub fn domain_isolated(&self) -> CpuSet {
        domain_isolated(&self.cpus, &self.cmdline, &self.cpusets)
    }

    /// CPUs running without the periodic tick when busy (`nohz_full`). Read from sysfs,
    /// which reflects what the kernel accepted, else from the command line.
    pub fn nohz_full(&self) -> CpuSet {
        nohz_full(&self.cpus, &self.config, &self.cmdline)
    }
}

/// The part of the model every other part depends on, and all a [`crate::target`] needs:
/// the release, the CPUs, the command line, the config and the cpusets.
pub(crate) struct Base {
    pub(crate) release: Fact<String>,
    pub(crate) cpus: Cpus,
    pub(crate) cmdline: Fact<BootParams>,
    pub(crate) config: Fact<KernelConfig>,
    mounts: Fact<String>,
    cgroup_mounts: Fact<Vec<cgroup::CgroupMount>>,
    pub(crate) cpusets: Vec<cgroup::Cpuset>,
}

impl Base {
    pub(crate) fn load(root: &SysRoot) -> Base {
        let release = Fact::read(root, "/proc/sys/kernel/osrelease", |s| {
            Ok(s.trim().to_string())
        });
        let cpus = Cpus::load(root);
        let last = cpus.last_possible();
        let cmdline = Fact::read(root, "/proc/cmdline", |s| Ok(cmdline::parse(s, last)));
        let config = load_config(root, release.as_ref().map(String::as_str));
        let mounts = Fact::read(root, "/proc/self/mounts", |s| Ok(s.to_string()));
        let cgroup_mounts = match &mounts {
            Fact::Known(m) => Fact::Known(cgroup::parse_mounts(m)),
            Fact::Unknown { path, why } => Fact::Unknown {
                path: path.clone(),
                why: why.clone(),
            },
        };
        let cpusets = cgroup_mounts
            .as_ref()
            .map(|m| cgroup::load(root, m))
            .unwrap_or_default();
        Base {
            release,
            cpus,
            cmdline,
            config,
            mounts,
            cgroup_mounts,
            cpusets,
        }
    }
}

/// CPUs removed from scheduler load balancing: `isolated` (boot, else the command line)
/// or an isolated cpuset partition (runtime).
pub(crate) fn domain_isolated(
    cpus: &Cpus,
    cmdline: &Fact<BootParams>,
    cpusets: &[cgroup::Cpuset],
) -> CpuSet {
    let boot = cpus.isolated.as_ref().cloned().unwrap_or_else(|| {
        cmdline
            .as_ref()
            .map(|c| c.domain_isolated())
            .unwrap_or_default()
    });
    boot.union(&partition_isolated(cpusets))
}

/// CPUs in a valid isolated cgroup v2 partition.
fn partition_isolated(cpusets: &[cgroup::Cpuset]) -> CpuSet {
    cpusets
        .iter()
        .filter(|c| c.isolated_partition())
        .filter_map(|c| c.effective.clone())
        .fold(CpuSet::new(), |a, b| a.union(&b))
}

/// `nohz_full` CPUs: from sysfs (what the kernel accepted), else none when the config
/// lacks `NO_HZ_FULL`, else the command line.
pub(crate) fn nohz_full(
    cpus: &Cpus,
    config: &Fact<KernelConfig>,
    cmdline: &Fact<BootParams>,
) -> CpuSet {
    match &cpus.nohz_full {
        Fact::Known(s) => s.clone(),
        _ if config.as_ref().is_some_and(|c| !c.enabled("NO_HZ_FULL")) => CpuSet::new(),
        _ => cmdline
            .as_ref()
            .and_then(|c| c.nohz_full.clone())
            .unwrap_or_default(),
    }
}

const MCE: &str = "/sys/devices/system/machinecheck/machinecheck0";

fn load_config(root: &SysRoot, release: Option<&str>) -> Fact<KernelConfig> {
    match root.read_bytes("/proc/config.gz") {
        Ok(b) => Fact::parsed(
            "/proc/config.gz",
            KernelConfig::parse_gz(&b, "/proc/config.gz").map_err(|e| format!("not gzip: {e}")),
        ),
        Err(gz_err) => {
            let Some(rel) = release else {
                return Fact::from_error(&gz_err);
            };
            let path = format!("/boot/config-{rel}");
            match root.read(&path) {
                Ok(t) => Fact::Known(KernelConfig::parse(&t, &path)),
                Err(e) => Fact::Unknown {
                    path: format!("/proc/config.gz, {path}"),
                    why: Unknown::of(&e),
                },
            }
        }
    }
}

fn load_irqs(root: &SysRoot) -> Fact<BTreeMap<u32, IrqAffinity>> {
    let names = match root.list("/proc/irq") {
        Ok(n) => n,
        Err(e) => return Fact::from_error(&e),
    };
    let debugfs = root.exists("/sys/kernel/debug/irq/irqs");
    let mut out = BTreeMap::new();
    for irq in names.iter().filter_map(|n| n.parse::<u32>().ok()) {
        let dir = format!("/proc/irq/{irq}");
        let entries = root.list(&dir).unwrap_or_default();
        let set = |f: &str| {
            entries
                .iter()
                .any(|e| e == f)
                .then(|| Fact::list(root, &format!("{dir}/{f}")).ok())
                .flatten()
        };
        let managed = if debugfs {
            root.read(&format!("/sys/kernel/debug/irq/irqs/{irq}"))
                .ok()
                .map(|t| interrupts::debugfs_says_managed(&t))
        } else {
            None
        };
        const FILES: [&str; 8] = [
            "affinity_hint",
            "effective_affinity",
            "effective_affinity_list",
            "node",
            "smp_affinity",
            "smp_affinity_list",
            "spurious",
            "default_smp_affinity",
        ];
        out.insert(
            irq,
            IrqAffinity {
                irq,
                affinity: set("smp_affinity_list"),
                effective: set("effective_affinity_list"),
                managed,
                actions: entries
                    .iter()
                    .filter(|e| !FILES.contains(&e.as_str()))
                    .cloned()
                    .collect(),
            },
        );
    }
    Fact::Known(out)
}

/// Each network device and its receive queues (`rx-N`), from `/sys/class/net`.
fn rx_queues(root: &SysRoot) -> NetQueues {
    Ok(root
        .list("/sys/class/net")?
        .into_iter()
        .map(|dev| {
            let queues = root
                .list(&format!("/sys/class/net/{dev}/queues"))
                .unwrap_or_default()
                .into_iter()
                .filter(|q| q.starts_with("rx-"))
                .collect();
            (dev, queues)
        })
        .collect())
}

/// What [`rx_queues`] found.
type NetQueues = Result<Vec<(String, Vec<String>)>, SysError>;

fn load_rps(root: &SysRoot, net: &NetQueues) -> Fact<BTreeMap<String, CpuSet>> {
    let devs = match net {
        Ok(d) => d,
        Err(e) => return Fact::from_error(e),
    };
    let mut out = BTreeMap::new();
    for (dev, queues) in devs {
        for q in queues {
            let path = format!("/sys/class/net/{dev}/queues/{q}/rps_cpus");
            if let Fact::Known(mask) = Fact::mask(root, &path) {
                out.insert(path, mask);
            }
        }
    }
    Fact::Known(out)
}

/// Devices with a bus device behind them (`device/`): NICs, not `lo`, bridges or veths.
fn load_nic_queues(root: &SysRoot, net: &NetQueues) -> Fact<BTreeMap<String, u32>> {
    match net {
        Ok(devs) => Fact::Known(
            devs.iter()
                .filter(|(dev, _)| root.exists(&format!("/sys/class/net/{dev}/device/uevent")))
                .map(|(dev, queues)| (dev.clone(), queues.len() as u32))
                .collect(),
        ),
        Err(e) => Fact::from_error(e),
    }
}

fn load_threads(root: &SysRoot) -> Fact<Vec<ThreadInfo>> {
    let tasks = match threads::tasks(root) {
        Ok(t) => t,
        Err(e) => return Fact::from_error(&e),
    };
    let mut out = Vec::new();
    let mut places = place::Places::new(root);
    for (pid, tid) in tasks {
        // Threads come and go while we read: a vanished one is simply skipped.
        let dir = format!("/proc/{pid}/task/{tid}");
        let (Ok(stat), Ok(status)) = (
            root.read(&format!("{dir}/stat")),
            root.read(&format!("{dir}/status")),
        ) else {
            continue;
        };
        if let Some(mut t) = threads::thread_info(pid, &stat, &status) {
            if !t.kernel_thread {
                t.place = places.of(pid);
            }
            out.push(t);
        }
    }
    Fact::Known(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mce_polling() {
        let known = |i: u64, ignore: bool| Mce {
            check_interval: Fact::Known(i),
            ignore_ce: Fact::Known(ignore),
        };
        assert_eq!(known(300, false).polling(), Some(true));
        assert_eq!(known(300, true).polling(), Some(false), "mce=ignore_ce");
        assert_eq!(known(0, false).polling(), Some(false));
        let none = Mce {
            check_interval: Fact::Unknown {
                path: "x".into(),
                why: Unknown::Absent,
            },
            ignore_ce: Fact::Unknown {
                path: "y".into(),
                why: Unknown::Absent,
            },
        };
        assert_eq!(none.polling(), Some(false), "no MCE support");
    }

    #[test]
    fn selected_choice_word() {
        assert_eq!(
            selected_choice("always [madvise] never\n").unwrap(),
            "madvise"
        );
        assert!(selected_choice("always madvise never").is_err());
    }
}
