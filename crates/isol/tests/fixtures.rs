//! The kernel model and the checks replayed on trees captured by `isol snapshot` from real
//! kernels: this development host (6.18, no NO_HZ_FULL) and the lab (Debian 6.12 cloud,
//! booted with `nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1`).

mod common;

use std::path::PathBuf;

use isol::check::{self, Severity, Target, TargetSource};
use isol::kernel::{Fact, KernelModel};
use isol::{CpuSet, SysRoot};

fn fixture(name: &str) -> KernelModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    assert!(dir.is_dir(), "missing fixture {}", dir.display());
    KernelModel::load(&SysRoot::at(dir))
}

fn severity(r: &check::Report, id: &str) -> Severity {
    r.findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id}"))
        .severity
}

#[test]
fn host_model() {
    let m = fixture("host-6.18");
    assert!(m.release.as_ref().unwrap().starts_with("6.18"));
    assert_eq!(m.cpus.online.as_ref().unwrap().to_list(), "0-1");
    assert!(
        m.cpus.nohz_full.is_absent(),
        "no nohz_full file without CONFIG_NO_HZ_FULL"
    );
    assert_eq!(m.cpus.isolated.as_ref().unwrap(), &CpuSet::new());
    let cfg = m.config.as_ref().unwrap();
    assert_eq!(cfg.source, "/proc/config.gz");
    assert!(!cfg.enabled("NO_HZ_FULL"));
    assert_eq!(cfg.hz(), Some(250));
    let cmd = m.cmdline.as_ref().unwrap();
    assert!(cmd.nohz_full.is_none() && cmd.isolcpus.is_none());
    let irq = m.interrupts.as_ref().unwrap();
    assert_eq!(irq.cpus, vec![0, 1]);
    assert!(irq.count("LOC", 1).unwrap() > 0);
    assert!(irq.devices().count() > 5);
    assert!(m.softirqs.as_ref().unwrap().count("TIMER", 0).is_some());
    let tl = m.timer_list.as_ref().unwrap();
    assert_eq!(tl.version, "v0.10");
    assert_eq!(tl.cpus.len(), 2);
    assert_eq!(
        tl.tick_quiet(1),
        Some(false),
        "the tick never stops on this kernel"
    );
    let threads = m.threads.as_ref().unwrap();
    assert!(threads
        .iter()
        .any(|t| t.kernel_thread && t.comm == "ksoftirqd/1" && !t.affinity_settable));
    assert!(threads.iter().any(|t| !t.kernel_thread));
    assert!(m.cpusets.iter().any(|c| c.path == "/sys/fs/cgroup/cpuset"));
    assert_eq!(m.sysctls.stat_interval.as_deref(), Some("1"));
    assert_eq!(
        m.mm.thp_enabled.as_ref().map(String::as_str),
        Some("madvise")
    );
    assert_eq!(m.workqueue.cpumask.as_ref().unwrap().to_list(), "0-1");
    assert!(m
        .irqs
        .as_ref()
        .unwrap()
        .values()
        .any(|a| a.actions == vec!["ttyS0".to_string()]));
}

#[test]
fn host_check_fails_without_nohz_full() {
    let m = fixture("host-6.18");
    let t = Target::choose(&m, None).unwrap();
    assert_eq!(t.source, TargetSource::Suggested);
    assert_eq!(
        (t.cpus.to_list(), t.housekeeping.to_list()),
        ("1".into(), "0".into())
    );
    let r = check::run(&m, &t);
    assert!(r.findings.len() >= 25);
    assert_eq!(severity(&r, "kernel.no_hz_full"), Severity::Fail);
    let f = r
        .findings
        .iter()
        .find(|f| f.id == "kernel.no_hz_full")
        .unwrap();
    assert!(f.fix.as_ref().unwrap().text.contains("CONFIG_NO_HZ_FULL=y"));
    assert_eq!(f.evidence[0].value, "CONFIG_NO_HZ_FULL=n");
    assert_eq!(severity(&r, "boot.nohz_full"), Severity::Fail);
    assert_eq!(severity(&r, "irq.effective_affinity"), Severity::Fail);
    assert_eq!(r.exit_code, 2);
    // Every non-ok finding says how to fix it.
    assert!(r
        .findings
        .iter()
        .all(|f| f.severity == Severity::Ok || f.fix.is_some()));
}

#[test]
fn lab_model_sees_nohz_full() {
    let m = fixture("lab-6.12");
    assert!(m.release.as_ref().unwrap().starts_with("6.12"));
    assert_eq!(m.cpus.nohz_full.as_ref().unwrap().to_list(), "1");
    assert_eq!(m.cpus.isolated.as_ref().unwrap().to_list(), "1");
    let cfg = m.config.as_ref().unwrap();
    assert!(cfg.source.starts_with("/boot/config-6.12"));
    assert!(cfg.enabled("NO_HZ_FULL") && cfg.enabled("RCU_NOCB_CPU"));
    let cmd = m.cmdline.as_ref().unwrap();
    let iso = cmd.isolcpus.as_ref().unwrap();
    assert!(iso.nohz && iso.domain && iso.managed_irq);
    assert_eq!(cmd.irqaffinity.as_ref().unwrap().to_list(), "0");
    assert_eq!(
        m.timer_list.as_ref().unwrap().tick_quiet(1),
        Some(true),
        "idle nohz_full CPU"
    );
    assert!(matches!(m.cpus.nohz_full, Fact::Known(_)));
}

#[test]
fn lab_check_reports_cpu1_isolated_and_ready() {
    let m = fixture("lab-6.12");
    let t = Target::choose(&m, None).unwrap();
    assert_eq!(t.source, TargetSource::NohzFull);
    assert_eq!(t.cpus.to_list(), "1");
    let r = check::run(&m, &t);
    for id in [
        "kernel.no_hz_full",
        "boot.nohz_full",
        "boot.domain_isolated",
        "boot.rcu_nocbs",
        "boot.managed_irq",
        "irq.effective_affinity",
        "irq.default_affinity",
        "tasks.user",
        "timers.tick",
    ] {
        assert_eq!(severity(&r, id), Severity::Ok, "{id} in the lab");
    }
    assert_eq!(r.summary.fail, 0);
}

#[test]
fn checking_the_housekeeping_cpu_of_the_lab_fails() {
    let m = fixture("lab-6.12");
    let t = Target::choose(&m, Some(&CpuSet::parse_list("0").unwrap())).unwrap();
    let r = check::run(&m, &t);
    assert_eq!(severity(&r, "boot.nohz_full"), Severity::Fail);
    assert_eq!(severity(&r, "boot.domain_isolated"), Severity::Fail);
}

#[test]
fn unusable_targets_are_refused() {
    let m = fixture("lab-6.12");
    let set = |s: &str| CpuSet::parse_list(s).unwrap();
    assert!(matches!(
        Target::choose(&m, Some(&set("0-1"))),
        Err(check::TargetError::NoHousekeeping { .. })
    ));
    assert!(matches!(
        Target::choose(&m, Some(&set("7"))),
        Err(check::TargetError::NotPossible { .. })
    ));
    assert!(matches!(
        Target::choose(&m, Some(&CpuSet::new())),
        Err(check::TargetError::Empty)
    ));
}

#[test]
fn unreadable_files_are_unknown_not_fatal() {
    // A tree with almost nothing: every part of the model is Unknown, checks still run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sys/devices/system/cpu")).unwrap();
    std::fs::write(dir.path().join("sys/devices/system/cpu/online"), "0-3\n").unwrap();
    let m = KernelModel::load(&SysRoot::at(dir.path()));
    let t = Target::choose(&m, None).unwrap();
    assert_eq!(t.cpus.to_list(), "1-3");
    let r = check::run(&m, &t);
    assert!(r.summary.unknown > 5);
}

/// `tasks.fair_server` both ways: from debugfs where it is mounted (on, off), else from the
/// kernel's version (6.8 and later have the server, 6.1 does not).
#[test]
fn fair_server_check_reads_debugfs_else_the_kernel_version() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lab-6.12");
    let tree = tempfile::tempdir().unwrap();
    common::copy_tree(&src, tree.path());
    let with = |release: &str, runtime: Option<&str>| {
        std::fs::write(tree.path().join("proc/sys/kernel/osrelease"), release).unwrap();
        let dir = tree.path().join("sys/kernel/debug/sched/fair_server/cpu1");
        let _ = std::fs::remove_dir_all(tree.path().join("sys/kernel/debug"));
        if let Some(r) = runtime {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("runtime"), r).unwrap();
        }
        let m = KernelModel::load(&SysRoot::at(tree.path()));
        let t = Target::choose(&m, Some(&CpuSet::from_iter([1]))).unwrap();
        severity(&check::run(&m, &t), "tasks.fair_server")
    };
    assert_eq!(with("6.12.117+deb12-cloud-amd64\n", None), Severity::Warn);
    assert_eq!(with("6.1.0-56-cloud-amd64\n", None), Severity::Ok);
    assert_eq!(
        with("6.12.117+deb12-rt-amd64\n", Some("50000000\n")),
        Severity::Warn
    );
    assert_eq!(
        with("6.12.117+deb12-cloud-amd64\n", Some("0\n")),
        Severity::Ok
    );
}
