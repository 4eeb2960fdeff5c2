//! What the apply tests share: captured trees made noisy, plans, state directories, and
//! restore with every step kept.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use isol::apply::{self, ApplyError, Change, DirSystem, Options, Plan, StateDir, System, Undo};
use isol::kernel::KernelModel;
use isol::{CpuSet, SysRoot};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// Write a file into a captured tree, adding it to the snapshot's listing of its directory
/// when the snapshot lists that directory.
pub fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    let manifest = root.join("isol-snapshot.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let mut dir = Path::new(path);
    while let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
        if let Some(names) = m["listings"][parent.to_str().unwrap()].as_array_mut() {
            let name = serde_json::Value::from(name.to_str().unwrap());
            if !names.contains(&name) {
                names.push(name);
            }
        }
        dir = parent;
    }
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
}

/// This host's tree with every setting apply knows set the noisy way, so that the plan
/// touches each one.
pub fn noisy_host() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    common::copy_tree(&fixture("host-6.18"), r);
    for (path, text) in [
        (
            "/proc/sys/kernel/random/boot_id",
            "5f0e7c4c-0d3e-4a5e-9f63-6c1b2f0d9a11\n",
        ),
        ("/proc/sys/kernel/nmi_watchdog", "1\n"),
        ("/proc/sys/kernel/timer_migration", "0\n"),
        ("/proc/sys/kernel/numa_balancing", "1\n"),
        ("/proc/sys/vm/stat_interval", "1\n"),
        (
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        ),
        (
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "[always] defer defer+madvise madvise never\n",
        ),
        ("/sys/kernel/mm/ksm/run", "1\n"),
        (
            "/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask",
            "3\n",
        ),
        ("/sys/devices/virtual/workqueue/writeback/cpumask", "3\n"),
        ("/sys/class/net/eth0/queues/rx-0/rps_cpus", "2\n"),
        ("/sys/class/net/eth0/queues/rx-1/rps_cpus", "0\n"),
        ("/proc/sys/net/core/rps_default_mask", "3\n"),
        (
            "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "powersave\n",
        ),
        (
            "/sys/devices/system/cpu/cpu1/cpufreq/scaling_available_governors",
            "performance powersave\n",
        ),
        ("/sys/devices/system/cpu/cpu1/cpuidle/state2/name", "C6\n"),
        (
            "/sys/devices/system/cpu/cpu1/cpuidle/state2/latency",
            "133\n",
        ),
        ("/sys/devices/system/cpu/cpu1/cpuidle/state2/disable", "0\n"),
        (
            "/sys/kernel/debug/sched/fair_server/cpu0/runtime",
            "50000000\n",
        ),
        (
            "/sys/kernel/debug/sched/fair_server/cpu1/runtime",
            "50000000\n",
        ),
        (
            "/sys/devices/system/machinecheck/machinecheck0/check_interval",
            "300\n",
        ),
        (
            "/sys/devices/system/machinecheck/machinecheck0/ignore_ce",
            "0\n",
        ),
        (
            "/sys/devices/system/machinecheck/machinecheck1/check_interval",
            "300\n",
        ),
        (
            "/sys/kernel/debug/irq/irqs/24",
            "handler:  handle_edge_irq\n",
        ),
        (
            "/sys/kernel/debug/irq/irqs/25",
            "flags: 0x0\n    IRQD_AFFINITY_MANAGED\n",
        ),
    ] {
        put(r, path, text);
    }
    dir
}

pub fn model(root: &Path) -> KernelModel {
    KernelModel::load(&SysRoot::at(root))
}

pub fn cpus(list: &str) -> CpuSet {
    CpuSet::parse_list(list).unwrap()
}

pub fn plan_for(root: &Path, list: &str, opts: &Options) -> Plan {
    apply::plan(&SysRoot::at(root), &model(root), &cpus(list), opts).unwrap()
}

pub fn state(root: &Path) -> StateDir {
    StateDir::new(root.join("run/isol"))
}

pub fn dir_system(root: &Path) -> DirSystem {
    DirSystem::open(root).unwrap()
}

/// What restore did, every step kept (the journals here are small).
#[derive(Debug)]
pub struct RestoredAll {
    pub steps: Vec<(Change, Undo)>,
    pub kept: Option<PathBuf>,
}

pub fn restore(
    sys: &mut dyn System,
    st: &StateDir,
    force: bool,
) -> Result<RestoredAll, ApplyError> {
    let mut steps = Vec::new();
    let r = apply::restore(sys, st, force, &mut |c, u| {
        steps.push((c.clone(), u.clone()))
    })?;
    assert_eq!(r.counts.total(), steps.len());
    Ok(RestoredAll {
        steps,
        kept: r.kept,
    })
}

/// Every file of the tree but isol's own state, with its bytes.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(root.join("run")) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub fn changed_files(
    a: &BTreeMap<PathBuf, Vec<u8>>,
    b: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<PathBuf> {
    a.iter()
        .filter(|(p, bytes)| b.get(*p) != Some(*bytes))
        .map(|(p, _)| p.clone())
        .collect()
}

pub fn all_options() -> Options {
    Options {
        rt_unthrottled: true,
        cycle_offline: true,
        keep_pids: Vec::new(),
    }
}
