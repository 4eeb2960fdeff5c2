//! Every check, both ways: for each id, a fixture captured from a real kernel (host 6.18,
//! lab 6.12) or a copy of it changed in one place, where the check passes, and one where
//! it does not (warn, fail or unknown). Then the whole report on both fixtures, golden.

mod common;

use std::path::{Path, PathBuf};

use isol::check::{self, Severity, Target, TargetSource};
use isol::kernel::KernelModel;
use isol::{CpuSet, SysRoot};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A change to a copy of a fixture: write `content` at `path`, or remove it (`None`).
type Edit = (&'static str, Option<&'static str>);

/// How to build the model and the target for one case.
#[derive(Clone, Copy)]
enum Given {
    /// The CPUs isol would choose itself.
    Chosen,
    /// A target built by hand (as an API user may), not validated.
    Raw {
        cpus: &'static str,
        housekeeping: &'static str,
    },
}

/// Run the checks on `fixture` changed by `edits`: the finding `id`.
fn finding(fixture: &str, edits: &[Edit], given: Given, id: &str) -> check::Finding {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    common::copy_tree(&fixtures().join(fixture), &dir);
    for (path, content) in edits {
        let p = dir.join(path.trim_start_matches('/'));
        match content {
            Some(c) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, c).unwrap();
            }
            None => std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{path}: {e}")),
        }
    }
    let model = KernelModel::load(&SysRoot::at(&dir));
    let target = match given {
        Given::Chosen => Target::choose(&model, None).unwrap(),
        Given::Raw { cpus, housekeeping } => Target {
            cpus: CpuSet::parse_list(cpus).unwrap(),
            source: TargetSource::Given,
            housekeeping: CpuSet::parse_list(housekeeping).unwrap(),
            pod: None,
        },
    };
    let report = check::run(&model, &target);
    report
        .findings
        .into_iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id}"))
}

const LAB: &str = "lab-6.12";
const HOST: &str = "host-6.18";
const LAB_CONFIG: &str = "/boot/config-6.12.117+deb12-cloud-amd64";
const HOST_CONFIG: &str = "/proc/config.gz";

/// One id: where it passes and where it does not.
struct Case {
    id: &'static str,
    pass: (&'static str, &'static [Edit], Given),
    not: (&'static str, &'static [Edit], Given),
    /// What the failing side must say (in the summary).
    says: &'static str,
}

/// Edits that add a running irqbalance (pid 999) to `fixture`, with `environ`: its files,
/// and the snapshot's listing of `/proc` that names it.
fn with_irqbalance(fixture: &'static str, environ: &'static str) -> &'static [Edit] {
    let path = fixtures().join(fixture).join("isol-snapshot.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    m["listings"]["/proc"]
        .as_array_mut()
        .unwrap()
        .push("999".into());
    m["listings"]["/proc/999/task"] = serde_json::json!(["999"]);
    let manifest: &'static str = Box::leak(m.to_string().into_boxed_str());
    Box::leak(Box::new([
        ("/isol-snapshot.json", Some(manifest)),
        (
            "/proc/999/task/999/stat",
            Some("999 (irqbalance) S 1 999 999 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 2 0 500 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
        ),
        ("/proc/999/task/999/status", Some("Name:\tirqbalance\nCpus_allowed_list:\t0\n")),
        ("/proc/999/environ", Some(environ)),
    ]))
}

/// Edits that add a kernel thread `comm` (tid 998) bound to CPU 1 to the lab fixture, with
/// the flags of its ksoftirqd/1 (a kernel thread, PF_NO_SETAFFINITY).
fn with_kthread(comm: &str) -> &'static [Edit] {
    let path = fixtures().join(LAB).join("isol-snapshot.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    m["listings"]["/proc"]
        .as_array_mut()
        .unwrap()
        .push("998".into());
    m["listings"]["/proc/998/task"] = serde_json::json!(["998"]);
    let manifest = leak(&m.to_string());
    let stat = leak(&format!("998 ({comm}) S 2 0 0 0 -1 69238848 0 0 0 0 0 0 0 0 20 0 1 0 67 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"));
    let status = leak(&format!("Name:\t{comm}\nCpus_allowed_list:\t1\n"));
    Box::leak(Box::new([
        ("/isol-snapshot.json", Some(manifest)),
        ("/proc/998/task/998/stat", Some(stat)),
        ("/proc/998/task/998/status", Some(status)),
    ]))
}

/// The lab fixture's ksoftirqd/1 (tid 29) made SCHED_FIFO at priority 11, as tuned would.
fn ksoftirqd_fifo() -> &'static [Edit] {
    let path = fixtures().join(LAB).join("proc/29/task/29/stat");
    let stat = std::fs::read_to_string(path).unwrap();
    let (head, tail) = stat.rsplit_once(") ").unwrap();
    let mut f: Vec<String> = tail.split_whitespace().map(str::to_string).collect();
    // Fields 40 and 41 of stat (rt_priority, policy), counted from the state (field 3).
    f[37] = "11".into();
    f[38] = "1".into();
    let edited = leak(&format!("{head}) {}\n", f.join(" ")));
    Box::leak(Box::new([("/proc/29/task/29/stat", Some(edited))]))
}

/// Edits that add the tracefs instance `name` to the lab fixture, with its tracer, its
/// enabled events and `tracing_on`, and the snapshot's listing that names it.
fn with_instance(name: &str, tracer: &str, events: &str, on: &str) -> Vec<(String, String)> {
    let path = fixtures().join(LAB).join("isol-snapshot.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    m["listings"]["/sys/kernel/tracing/instances"] = serde_json::json!([name]);
    let dir = format!("/sys/kernel/tracing/instances/{name}");
    vec![
        ("/isol-snapshot.json".into(), m.to_string()),
        (format!("{dir}/current_tracer"), format!("{tracer}\n")),
        (format!("{dir}/set_event"), events.into()),
        (format!("{dir}/tracing_on"), format!("{on}\n")),
    ]
}

/// [`finding`] with edits built at run time.
fn finding_with(fixture: &str, edits: &[(String, String)], id: &str) -> check::Finding {
    let edits: Vec<Edit> = edits
        .iter()
        .map(|(p, c)| -> Edit { (leak(p), Some(leak(c))) })
        .collect();
    finding(fixture, &edits, Given::Chosen, id)
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

const fn plain(
    fixture: &'static str,
    edits: &'static [Edit],
) -> (&'static str, &'static [Edit], Given) {
    (fixture, edits, Given::Chosen)
}

/// The lab's kernel config with one option turned off.
fn lab_config_without(option: &str) -> String {
    let text = std::fs::read_to_string(
        fixtures()
            .join(LAB)
            .join(LAB_CONFIG.trim_start_matches('/')),
    )
    .unwrap();
    let on = format!("CONFIG_{option}=y\n");
    assert!(text.contains(&on), "the lab config has {on}");
    text.replace(&on, &format!("# CONFIG_{option} is not set\n"))
}

fn cases() -> Vec<Case> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let no_rcu_nocb: &'static [Edit] = Box::leak(Box::new([(
        LAB_CONFIG,
        Some(leak(lab_config_without("RCU_NOCB_CPU"))),
    )]));
    let no_isolation: &'static [Edit] = Box::leak(Box::new([(
        LAB_CONFIG,
        Some(leak(lab_config_without("CPU_ISOLATION"))),
    )]));
    vec![
        Case { id: "kernel.no_hz_full", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "without CONFIG_NO_HZ_FULL" },
        Case { id: "kernel.rcu_nocb_cpu", pass: plain(LAB, &[]), not: plain(LAB, no_rcu_nocb), says: "without CONFIG_RCU_NOCB_CPU" },
        Case { id: "kernel.cpu_isolation", pass: plain(LAB, &[]), not: plain(LAB, no_isolation), says: "without CONFIG_CPU_ISOLATION" },
        Case { id: "kernel.tracing", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "tracefs is not mounted" },
        Case { id: "boot.nohz_full", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "not nohz_full" },
        Case { id: "boot.domain_isolated", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "scheduler load balancing" },
        Case { id: "boot.rcu_nocbs", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "RCU callbacks still run" },
        Case { id: "boot.managed_irq", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "managed interrupts" },
        Case {
            id: "boot.skew_tick",
            pass: plain(LAB, &[("/proc/cmdline", Some("console=ttyS0 nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 skew_tick=1\n"))]),
            not: plain(LAB, &[]),
            says: "ticks fire on all CPUs at once",
        },
        Case { id: "boot.tsc_reliable", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "clocksource watchdog" },
        Case {
            id: "boot.rcu_normal",
            pass: plain(LAB, &[("/sys/module/rcupdate/parameters/rcu_normal_after_boot", Some("Y\n"))]),
            not: plain(LAB, &[]),
            says: "expedited RCU grace periods stay on",
        },
        Case {
            id: "cpu.online",
            pass: plain(LAB, &[]),
            not: (LAB, &[("/sys/devices/system/cpu/online", Some("0\n"))], Given::Raw { cpus: "1", housekeeping: "0" }),
            says: "offline",
        },
        Case {
            id: "cpu.housekeeping",
            pass: plain(LAB, &[]),
            not: (LAB, &[], Given::Raw { cpus: "0-1", housekeeping: "" }),
            says: "no housekeeping CPU",
        },
        Case {
            id: "cpu.smt_siblings",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/sys/devices/system/cpu/cpu1/topology/thread_siblings_list", Some("0-1\n"))]),
            says: "SMT siblings run housekeeping work",
        },
        Case {
            id: "cpu.governor",
            pass: plain(LAB, &[("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", Some("performance\n"))]),
            not: plain(LAB, &[("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", Some("powersave\n"))]),
            says: "powersave",
        },
        Case {
            id: "cpu.idle_states",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[
                ("/sys/devices/system/cpu/cpu1/cpuidle/state2/name", Some("C6\n")),
                ("/sys/devices/system/cpu/cpu1/cpuidle/state2/latency", Some("133\n")),
                ("/sys/devices/system/cpu/cpu1/cpuidle/state2/disable", Some("0\n")),
            ]),
            says: "deep idle states",
        },
        Case { id: "cpu.tsc_invariant", pass: plain(HOST, &[]), not: plain(LAB, &[]), says: "not invariant" },
        Case {
            id: "cpu.clocksource",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/sys/devices/system/clocksource/clocksource0/current_clocksource", Some("hpet\n"))]),
            says: "clocksource is hpet",
        },
        Case { id: "irq.affinity", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "may be delivered to CPU 1" },
        Case { id: "irq.effective_affinity", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "are delivered to CPU 1" },
        Case { id: "irq.managed", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "kernel-managed" },
        Case { id: "irq.default_affinity", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "new IRQs may be delivered" },
        Case {
            id: "irq.irqbalance",
            pass: plain(HOST, with_irqbalance(HOST, "PATH=/usr/bin\0IRQBALANCE_BANNED_CPULIST=1\0")),
            not: plain(HOST, with_irqbalance(HOST, "PATH=/usr/bin\0")),
            says: "irqbalance (pid 999) may move IRQs back onto CPU 1",
        },
        Case {
            id: "irq.rps",
            pass: plain(LAB, &[("/sys/class/net/eth0/queues/rx-0/rps_cpus", Some("1\n"))]),
            not: plain(LAB, &[("/sys/class/net/eth0/queues/rx-0/rps_cpus", Some("2\n"))]),
            says: "RPS steers received packets to target CPUs: eth0 rx-0",
        },
        Case {
            id: "tasks.kthreads",
            pass: plain(LAB, &[
                ("/proc/42/task/42/status", Some("Name:\tkcompactd0\nCpus_allowed:\t1\nCpus_allowed_list:\t0\n")),
                ("/proc/52/task/52/status", Some("Name:\tkswapd0\nCpus_allowed:\t1\nCpus_allowed_list:\t0\n")),
            ]),
            not: plain(LAB, &[]),
            says: "kcompactd0/42",
        },
        Case { id: "tasks.user", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "user threads may run on the target" },
        Case {
            id: "boot.rcu_nocb_poll",
            pass: plain(LAB, &[("/proc/cmdline", Some("console=ttyS0 nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 rcu_nocb_poll\n"))]),
            not: plain(LAB, &[]),
            says: "wakes its rcuog kthread",
        },
        Case {
            id: "boot.rcu_patience",
            pass: plain(LAB, &[("/sys/module/rcutree/parameters/nohz_full_patience_delay", Some("1000\n"))]),
            not: plain(LAB, &[("/sys/module/rcutree/parameters/nohz_full_patience_delay", Some("0\n"))]),
            says: "after 0 ms",
        },
        Case {
            id: "cpu.energy_perf",
            pass: plain(LAB, &[("/sys/devices/system/cpu/cpu1/power/energy_perf_bias", Some("0\n"))]),
            not: plain(LAB, &[("/sys/devices/system/cpu/cpu1/power/energy_perf_bias", Some("6\n"))]),
            says: "CPU 1's energy-performance bias is 6",
        },
        Case {
            id: "irq.nic_queues",
            // One queue for the lab's one housekeeping CPU; a bridge with four is no NIC.
            pass: plain(
                LAB,
                &[
                    ("/sys/class/net/eth0/device/uevent", Some("DRIVER=virtio_net\n")),
                    ("/sys/class/net/eth0/queues/rx-0/rps_cpus", Some("0\n")),
                    ("/sys/class/net/br0/queues/rx-0/rps_cpus", Some("0\n")),
                    ("/sys/class/net/br0/queues/rx-1/rps_cpus", Some("0\n")),
                    ("/sys/class/net/br0/queues/rx-2/rps_cpus", Some("0\n")),
                    ("/sys/class/net/br0/queues/rx-3/rps_cpus", Some("0\n")),
                ],
            ),
            not: plain(
                LAB,
                &[
                    ("/sys/class/net/eth0/device/uevent", Some("DRIVER=virtio_net\n")),
                    ("/sys/class/net/eth0/queues/rx-0/rps_cpus", Some("0\n")),
                    ("/sys/class/net/eth0/queues/rx-1/rps_cpus", Some("0\n")),
                ],
            ),
            says: "eth0 (2 queues)",
        },
        Case {
            id: "irq.rps_default_mask",
            pass: plain(LAB, &[("/proc/sys/net/core/rps_default_mask", Some("0\n"))]),
            not: plain(LAB, &[("/proc/sys/net/core/rps_default_mask", Some("2\n"))]),
            says: "steers received packets to CPU 1",
        },
        Case {
            id: "tasks.bound_kthreads",
            pass: plain(LAB, &[]),
            not: plain(LAB, with_kthread("ehca_comp/1")),
            says: "ehca_comp/1/998 on 1",
        },
        Case {
            id: "tasks.kthread_prio",
            pass: plain(LAB, ksoftirqd_fifo()),
            not: plain(LAB, &[]),
            says: "ksoftirqd/1/29 runs SCHED_OTHER",
        },
        Case { id: "tasks.init_affinity", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "PID 1 (process_api) may run on CPU 1" },
        Case {
            id: "services.kvm",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[
                ("/sys/module/kvm/parameters/kvmclock_periodic_sync", Some("Y\n")),
                ("/sys/module/kvm/parameters/nx_huge_pages", Some("N\n")),
            ]),
            says: "KVM is loaded with kvmclock_periodic_sync",
        },
        Case {
            id: "tasks.rt_throttling",
            pass: plain(LAB, &[("/proc/sys/kernel/sched_rt_runtime_us", Some("-1\n"))]),
            not: plain(LAB, &[]),
            says: "RT throttling",
        },
        Case {
            id: "tasks.fair_server",
            pass: plain(LAB, &[("/sys/kernel/debug/sched/fair_server/cpu1/runtime", Some("0\n"))]),
            not: plain(LAB, &[]),
            says: "fair deadline server",
        },
        Case {
            id: "tasks.strict_mode",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/proc/sys/kernel/osrelease", Some("5.10.0-32-cloud-amd64\n"))]),
            says: "no Syscall User Dispatch",
        },
        Case { id: "services.workqueue", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "unbound workqueue work may run" },
        Case {
            id: "services.writeback",
            pass: plain(LAB, &[("/sys/devices/virtual/workqueue/writeback/cpumask", Some("1\n"))]),
            not: plain(LAB, &[]),
            says: "writeback work may run on CPU 1",
        },
        Case {
            id: "services.workqueue_sysfs",
            pass: plain(LAB, &[("/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask", Some("3\n"))]),
            not: plain(LAB, &[
                ("/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask", Some("3\n")),
                ("/sys/devices/virtual/workqueue/cpumask", Some("3\n")),
            ]),
            says: "workqueues may run work on target CPUs: blkcg_punt_bio",
        },
        Case { id: "services.watchdog_cpumask", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "lockup watchdog" },
        Case {
            id: "services.nmi_watchdog",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/proc/sys/kernel/nmi_watchdog", Some("1\n"))]),
            says: "NMI watchdog interrupts",
        },
        Case {
            id: "services.timer_migration",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/proc/sys/kernel/timer_migration", Some("0\n"))]),
            says: "timer migration is off",
        },
        Case {
            id: "services.vmstat_interval",
            pass: plain(LAB, &[("/proc/sys/vm/stat_interval", Some("10\n"))]),
            not: plain(LAB, &[]),
            says: "vmstat_update runs every second",
        },
        Case {
            id: "services.numa_balancing",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/proc/sys/kernel/numa_balancing", Some("1\n"))]),
            says: "NUMA balancing unmaps pages",
        },
        Case {
            id: "services.thp",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/sys/kernel/mm/transparent_hugepage/enabled", Some("[always] madvise never\n"))]),
            says: "always",
        },
        Case {
            id: "services.ksm",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/sys/kernel/mm/ksm/run", Some("1\n"))]),
            says: "KSM",
        },
        Case {
            id: "services.mce_poll",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[
                ("/sys/devices/system/machinecheck/machinecheck0/check_interval", Some("300\n")),
                ("/sys/devices/system/machinecheck/machinecheck0/ignore_ce", Some("0\n")),
            ]),
            says: "machine-check poll timer fires",
        },
        Case {
            id: "services.tracing",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[(
                "/sys/kernel/tracing/set_event",
                Some("raw_syscalls:sys_enter\nraw_syscalls:sys_exit\n"),
            )]),
            says: "tracing is switched on",
        },
        Case {
            id: "services.apply_journal",
            pass: plain(LAB, &[]),
            not: plain(LAB, &[("/run/isol/journal", Some(KILLED_RUN_JOURNAL))]),
            says: "ended without undoing it",
        },
        Case {
            id: "kubelet.cpu_manager",
            pass: plain(LAB, KUBELET_NODE),
            not: plain(LAB, &[
                (KUBELET_STATE, Some(r#"{"policyName":"none","defaultCpuSet":"","checksum":3242152201}"#)),
                (KUBELET_CONFIG, Some("cpuManagerPolicy: none\n")),
            ]),
            says: "policy is none",
        },
        Case {
            id: "kubelet.exclusive_isolated",
            pass: plain(LAB, KUBELET_NODE),
            not: plain(LAB, &[
                (KUBELET_STATE, Some(r#"{"policyName":"static","defaultCpuSet":"1","entries":{"0c4a7e3c-1b2d-4e5f-8a9b-0123456789ab":{"l1":"0"}},"checksum":1}"#)),
                (KUBELET_CONFIG, Some(KUBELET_YAML)),
                (KUBELET_POD_DIR, Some("")),
            ]),
            says: "ran/du-0 l1 (CPU 0 not nohz_full, CPU 0 in load balancing)",
        },
        Case {
            id: "kubelet.reserved",
            pass: plain(LAB, KUBELET_NODE),
            not: plain(LAB, &[
                (KUBELET_STATE, Some(KUBELET_CHECKPOINT)),
                (KUBELET_CONFIG, Some("cpuManagerPolicy: static\nreservedSystemCPUs: \"0-1\"\n")),
            ]),
            says: "the system's work runs on isolated CPU 1",
        },
        Case {
            id: "kubelet.exclusive_alone",
            // The lab after `isol apply`: its two movable kernel threads moved to CPU 0.
            pass: plain(LAB, &[
                (KUBELET_STATE, Some(KUBELET_CHECKPOINT)),
                (KUBELET_CONFIG, Some(KUBELET_YAML)),
                (KUBELET_POD_DIR, Some("")),
                ("/proc/42/task/42/status", Some("Name:\tkcompactd0\nCpus_allowed_list:\t0\n")),
                ("/proc/52/task/52/status", Some("Name:\tkswapd0\nCpus_allowed_list:\t0\n")),
            ]),
            not: (HOST, KUBELET_NODE, Given::Raw { cpus: "1", housekeeping: "0" }),
            says: "others may run on a container's own CPUs: on CPU 1 of ran/du-0 l1",
        },
        Case {
            id: "kernel.view",
            pass: plain(LAB, &[]),
            // Inside a runc container (runc's default masked and read-only paths).
            not: plain(LAB, &[("/proc/self/mounts", Some(CONTAINED_MOUNTS))]),
            says: "the tick and timers of each CPU (timers.*): /proc/timer_list is masked",
        },
        Case {
            id: "tasks.shared",
            pass: plain(LAB, &[("/proc/149/task/149/status", Some(INIT_ON_1))]),
            not: plain(LAB, &[
                ("/proc/149/task/149/status", Some(INIT_ON_1)),
                ("/proc/150/task/150/status", Some("Name:\tisol\nCpus_allowed_list:\t1\n")),
            ]),
            says: "CPU 1: init/149, isol/150",
        },
        Case { id: "timers.armed", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "hrtimers armed on the target" },
        Case { id: "timers.tick", pass: plain(LAB, &[]), not: plain(HOST, &[]), says: "the tick is running on CPU 1" },
    ]
}

/// The lab's init pinned to its isolated CPU.
const INIT_ON_1: &str = "Name:\tinit\nCpus_allowed_list:\t1\n";

/// The lab's mount table as a runc container with runc's default masked and read-only
/// paths has it.
const CONTAINED_MOUNTS: &str = "proc /proc proc rw,relatime 0 0
sysfs /sys sysfs ro,nosuid,nodev,noexec,relatime 0 0
nodev /sys/kernel/tracing tracefs rw,relatime 0 0
none /sys/fs/cgroup cgroup2 rw,relatime 0 0
proc /proc/sys proc ro,relatime 0 0
tmpfs /proc/timer_list tmpfs rw,nosuid,size=65536k,mode=755 0 0
tmpfs /sys/firmware tmpfs ro,relatime 0 0
";

/// A Kubernetes node's kubelet files, in the formats kubelet writes them: its CPU
/// manager's checkpoint (`pkg/kubelet/cm/cpumanager/state/checkpoint.go`,
/// `CPUManagerCheckpoint`: `policyName`, `defaultCpuSet`, `entries` pod uid -> container ->
/// CPUs, `checksum`), its `KubeletConfiguration` (`cpuManagerPolicy`,
/// `reservedSystemCPUs`, as kubelet's CPU management documentation writes them), and the
/// log directory kubelet makes for container `l1` of pod `ran/du-0`
/// (`/var/log/pods/<namespace>_<pod>_<uid>/<container>/`). The container owns CPU 1.
const KUBELET_STATE: &str = "/var/lib/kubelet/cpu_manager_state";
const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
const KUBELET_POD_DIR: &str =
    "/var/log/pods/ran_du-0_0c4a7e3c-1b2d-4e5f-8a9b-0123456789ab/l1/0.log";
const KUBELET_CHECKPOINT: &str = r#"{"policyName":"static","defaultCpuSet":"0","entries":{"0c4a7e3c-1b2d-4e5f-8a9b-0123456789ab":{"l1":"1"}},"checksum":1552716370}"#;
const KUBELET_YAML: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncpuManagerPolicy: static\nreservedSystemCPUs: \"0\"\n";
const KUBELET_NODE: &[Edit] = &[
    (KUBELET_STATE, Some(KUBELET_CHECKPOINT)),
    (KUBELET_CONFIG, Some(KUBELET_YAML)),
    (KUBELET_POD_DIR, Some("")),
];

/// The journal of an `isol run --apply` (pid 999999) killed before it restored.
const KILLED_RUN_JOURNAL: &str = r#"{"journal":"isol-apply/1","boot_id":"b","cpus":"1","housekeeping":"0","created_unix":1,"owner":{"pid":999999,"start":7,"command":"isol run -- ./app"}}
{"setting":{"kind":"file","path":"/proc/sys/vm/stat_interval","format":"word"},"old":"1","new":"10","why":"w","fixes":null}
"#;

/// An apply whose owner still runs (pid 1 of the lab fixture, started at tick 51), and one
/// left by `isol apply`, are as they should be; the owner's pid reused by another process
/// (another start time) is not the owner.
#[test]
fn an_apply_is_judged_by_whether_its_owner_runs() {
    let alive = KILLED_RUN_JOURNAL.replace("\"pid\":999999,\"start\":7", "\"pid\":1,\"start\":51");
    let alive: &'static str = Box::leak(alive.into_boxed_str());
    let f = finding(
        LAB,
        &[("/run/isol/journal", Some(alive))],
        Given::Chosen,
        "services.apply_journal",
    );
    assert_eq!(f.severity, Severity::Ok, "{f:?}");
    assert!(f.summary.contains("until it ends"), "{}", f.summary);
    let reused = alive.replace("\"start\":51", "\"start\":52");
    let reused: &'static str = Box::leak(reused.into_boxed_str());
    let f = finding(
        LAB,
        &[("/run/isol/journal", Some(reused))],
        Given::Chosen,
        "services.apply_journal",
    );
    assert_eq!(f.severity, Severity::Warn, "{f:?}");
    assert_eq!(f.fix.unwrap().text, "isol restore");
    let by_hand = KILLED_RUN_JOURNAL.replace(
        r#","owner":{"pid":999999,"start":7,"command":"isol run -- ./app"}"#,
        "",
    );
    let by_hand: &'static str = Box::leak(by_hand.into_boxed_str());
    let f = finding(
        LAB,
        &[("/run/isol/journal", Some(by_hand))],
        Given::Chosen,
        "services.apply_journal",
    );
    assert_eq!(f.severity, Severity::Ok, "{f:?}");
    assert!(f.summary.contains("isol restore"), "{}", f.summary);
}

#[test]
fn every_check_passes_in_one_fixture_and_not_in_another() {
    let cases = cases();
    // Every id the checks produce has a case, and no case names an id they do not.
    let report_ids: Vec<&str> = {
        let model = KernelModel::load(&SysRoot::at(fixtures().join(LAB)));
        let target = Target::choose(&model, None).unwrap();
        check::run(&model, &target)
            .findings
            .iter()
            .map(|f| f.id)
            .collect()
    };
    let mut case_ids: Vec<&str> = cases.iter().map(|c| c.id).collect();
    let mut sorted = report_ids.clone();
    sorted.sort();
    case_ids.sort();
    assert_eq!(case_ids, sorted, "a case for every check id");
    let mut failures = Vec::new();
    for c in &cases {
        let (fx, edits, given) = c.pass;
        let f = finding(fx, edits, given, c.id);
        if f.severity != Severity::Ok {
            failures.push(format!(
                "{}: expected ok on {fx}, got {:?}: {}",
                c.id, f.severity, f.summary
            ));
        }
        let (fx, edits, given) = c.not;
        let f = finding(fx, edits, given, c.id);
        if f.severity == Severity::Ok || !f.summary.contains(c.says) {
            failures.push(format!(
                "{}: expected not ok on {fx} saying {:?}, got {:?}: {}",
                c.id, c.says, f.severity, f.summary
            ));
        } else if f.fix.is_none() {
            failures.push(format!("{}: not ok without a fix", c.id));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_malformed_config_is_reported_as_malformed_not_missing() {
    let f = finding(
        LAB,
        &[
            (LAB_CONFIG, None),
            ("/proc/config.gz", Some("not gzip at all")),
        ],
        Given::Chosen,
        "kernel.rcu_nocb_cpu",
    );
    // The lab has rcuo kthreads: offloading is at work whatever the config says.
    assert_eq!(f.severity, Severity::Ok, "{}", f.summary);
    assert!(
        f.evidence
            .iter()
            .any(|e| e.file == "/proc/config.gz" && e.value.starts_with("malformed: ")),
        "{:?}",
        f.evidence
    );
    let f = finding(
        HOST,
        &[(HOST_CONFIG, Some("not gzip at all"))],
        Given::Chosen,
        "kernel.rcu_nocb_cpu",
    );
    assert_eq!(f.severity, Severity::Unknown, "{}", f.summary);
    assert_eq!(f.evidence[0].file, "/proc/config.gz");
    assert!(
        f.evidence[0].value.starts_with("malformed: not gzip"),
        "{:?}",
        f.evidence
    );
    assert!(
        f.summary.contains("unknown (malformed: not gzip"),
        "{}",
        f.summary
    );
}

#[test]
fn without_a_config_the_running_kernel_decides_and_says_how() {
    // Lab 6.12: cpu/nohz_full exists, cpu/isolated is 1, rcuo kthreads run.
    for (id, by) in [
        ("kernel.no_hz_full", "/sys/devices/system/cpu/nohz_full"),
        ("kernel.cpu_isolation", "/sys/devices/system/cpu/nohz_full"),
        ("kernel.rcu_nocb_cpu", "/proc/*/task/*/comm"),
    ] {
        let f = finding(LAB, &[(LAB_CONFIG, None)], Given::Chosen, id);
        assert_eq!(f.severity, Severity::Ok, "{id}: {}", f.summary);
        assert!(
            f.summary.contains(&format!("decided by {by}")),
            "{id}: {}",
            f.summary
        );
    }
    // Host 6.18 without NO_HZ_FULL: no cpu/nohz_full file, so no CONFIG_NO_HZ_FULL.
    let f = finding(
        HOST,
        &[(HOST_CONFIG, None)],
        Given::Chosen,
        "kernel.no_hz_full",
    );
    assert_eq!(f.severity, Severity::Fail, "{}", f.summary);
    assert!(
        f.summary.contains("nohz_full being absent"),
        "{}",
        f.summary
    );
    // Nothing on the host shows RCU offloading: unknown, not a guess.
    let f = finding(
        HOST,
        &[(HOST_CONFIG, None)],
        Given::Chosen,
        "kernel.rcu_nocb_cpu",
    );
    assert_eq!(f.severity, Severity::Unknown, "{}", f.summary);
}

/// The whole report on both fixtures, as JSON. `ISOL_BLESS=1` rewrites the golden files.
#[test]
fn reports_on_both_fixtures_are_golden() {
    for fixture in [HOST, LAB] {
        let model = KernelModel::load(&SysRoot::at(fixtures().join(fixture)));
        let target = Target::choose(&model, None).unwrap();
        let report = check::run(&model, &target);
        let json = serde_json::to_string_pretty(&report).unwrap() + "\n";
        let golden = fixtures().join(format!("check-{fixture}.json"));
        if std::env::var_os("ISOL_BLESS").is_some() {
            std::fs::write(&golden, &json).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (ISOL_BLESS=1 writes it)", golden.display()));
        assert_eq!(
            json, want,
            "{fixture}: the report changed; if on purpose, ISOL_BLESS=1"
        );
    }
}

/// A nohz_full CPU whose tick device is armed is a finding naming what the model shows:
/// never ok.
#[test]
fn a_nohz_full_cpu_whose_tick_runs_is_a_warning_with_its_dependency() {
    let text = std::fs::read_to_string(fixtures().join(LAB).join("proc/timer_list")).unwrap();
    let at = text.find("Per CPU device: 1").unwrap();
    let (head, tail) = text.split_at(at);
    let ticking = format!(
        "{head}{}",
        tail.replacen(
            "next_event:     9223372036854775807 nsecs",
            "next_event:     5000000000 nsecs",
            1
        )
    );
    assert_ne!(ticking, text);
    let ticking: &'static str = Box::leak(ticking.into_boxed_str());
    let edits: &'static [Edit] = Box::leak(Box::new([("/proc/timer_list", Some(ticking))]));
    let f = finding(LAB, edits, Given::Chosen, "timers.tick");
    assert_eq!(f.severity, Severity::Warn, "{}", f.summary);
    assert!(
        f.summary.contains("nohz_full CPU 1 is armed"),
        "{}",
        f.summary
    );
    assert!(
        f.summary.contains("cpu1"),
        "names the CPU and why: {}",
        f.summary
    );
    assert!(f.fix.is_some());
}

/// `nosoftlockup` with the NMI watchdog off leaves no lockup-watchdog timer: ok even where
/// the watchdog mask covers the target; with the NMI watchdog on, still a warning.
#[test]
fn nosoftlockup_with_the_nmi_watchdog_off_is_no_watchdog() {
    // Kernel parameters go before the `--` that starts init's arguments.
    let cmdline = std::fs::read_to_string(fixtures().join(HOST).join("proc/cmdline")).unwrap();
    let with: &'static str = Box::leak(
        cmdline
            .replacen(" -- ", " nosoftlockup -- ", 1)
            .into_boxed_str(),
    );
    assert!(with.contains("nosoftlockup -- "));
    let off: &'static [Edit] = Box::leak(Box::new([("/proc/cmdline", Some(with))]));
    let f = finding(HOST, off, Given::Chosen, "services.watchdog_cpumask");
    assert_eq!(f.severity, Severity::Ok, "{}", f.summary);
    let nmi_on: &'static [Edit] = Box::leak(Box::new([
        ("/proc/cmdline", Some(with)),
        ("/proc/sys/kernel/nmi_watchdog", Some("1\n")),
    ]));
    let f = finding(HOST, nmi_on, Given::Chosen, "services.watchdog_cpumask");
    assert_eq!(f.severity, Severity::Warn, "{}", f.summary);
}

#[test]
fn tracing_left_on_is_named_with_who_left_it_and_how_to_switch_it_off() {
    const ID: &str = "services.tracing";
    let events =
        "irq:irq_handler_entry\nraw_syscalls:sys_enter\nsched:sched_switch\nipi:ipi_entry\n";
    // What `isol watch --keep-armed` leaves: events on, recording off.
    let f = finding_with(LAB, &with_instance("isol-armed", "nop", events, "0"), ID);
    assert_eq!(f.severity, Severity::Warn, "{}", f.summary);
    assert!(
        f.summary.contains(
            "instance isol-armed (4 events (irq:irq_handler_entry, raw_syscalls:sys_enter, \
             sched:sched_switch, ...), not recording, left by `isol watch --keep-armed`)"
        ),
        "{}",
        f.summary
    );
    assert_eq!(f.fix.unwrap().text, "isol watch --disarm");

    // An instance of an isol that ended without removing it (no pid 4242 in the fixture).
    let f = finding_with(LAB, &with_instance("isol-4242-0", "nop", events, "1"), ID);
    assert!(
        f.summary.contains("left by isol pid 4242, which has ended"),
        "{}",
        f.summary
    );
    assert_eq!(
        f.fix.unwrap().text,
        "rmdir /sys/kernel/tracing/instances/isol-4242-0"
    );

    // One of a running isol (pid 1 runs in the fixture): it ends with it.
    let f = finding_with(LAB, &with_instance("isol-1-0", "nop", events, "1"), ID);
    assert!(f.summary.contains("isol pid 1 is tracing"), "{}", f.summary);
    assert!(f
        .fix
        .unwrap()
        .text
        .starts_with("it ends when that isol does"));

    // A name from a crafted snapshot: quoted, and no command to paste.
    let f = finding_with(
        LAB,
        &with_instance("isol-4242-0;reboot", "nop", events, "1"),
        ID,
    );
    assert!(
        f.summary.contains("instance \"isol-4242-0;reboot\""),
        "{}",
        f.summary
    );
    let fix = f.fix.unwrap().text;
    assert!(
        !fix.contains("rmdir") && fix.contains("not safe to paste"),
        "{fix}"
    );

    // Someone else's function tracer at the top level.
    let f = finding_with(
        LAB,
        &[(
            "/sys/kernel/tracing/current_tracer".into(),
            "function\n".into(),
        )],
        ID,
    );
    assert_eq!(f.severity, Severity::Warn, "{}", f.summary);
    assert!(
        f.summary
            .contains("the top-level instance (tracer function)"),
        "{}",
        f.summary
    );
    assert_eq!(
        f.fix.unwrap().text,
        "echo nop > /sys/kernel/tracing/current_tracer"
    );
}

#[test]
fn a_latency_tracer_running_on_the_target_fails_and_elsewhere_warns() {
    const ID: &str = "services.tracing";
    let osnoise = |cpus: &str, on: &str| {
        vec![
            (
                "/sys/kernel/tracing/current_tracer".to_string(),
                "osnoise\n".to_string(),
            ),
            (
                "/sys/kernel/tracing/osnoise/cpus".into(),
                format!("{cpus}\n"),
            ),
            ("/sys/kernel/tracing/tracing_on".into(), format!("{on}\n")),
        ]
    };
    // The lab's target is CPU 1.
    let f = finding_with(LAB, &osnoise("0-1", "1"), ID);
    assert_eq!(f.severity, Severity::Fail, "{}", f.summary);
    assert!(
        f.summary.contains("a tracer runs a kernel thread on the target CPUs: the top-level instance (tracer osnoise on CPUs 0-1)"),
        "{}",
        f.summary
    );
    for (cpus, on) in [("0", "1"), ("1", "0")] {
        let f = finding_with(LAB, &osnoise(cpus, on), ID);
        assert_eq!(
            f.severity,
            Severity::Warn,
            "cpus {cpus} on {on}: {}",
            f.summary
        );
    }
}

#[test]
fn without_the_tracefs_instances_of_an_older_snapshot_tracing_is_unknown() {
    let path = fixtures().join(LAB).join("isol-snapshot.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    m["listings"]
        .as_object_mut()
        .unwrap()
        .remove("/sys/kernel/tracing/instances");
    let f = finding_with(
        LAB,
        &[("/isol-snapshot.json".into(), m.to_string())],
        "services.tracing",
    );
    assert_eq!(f.severity, Severity::Unknown, "{}", f.summary);
    assert!(f.summary.contains("absent"), "{}", f.summary);
    // The host fixture was taken with tracefs unmounted: nothing can be switched on.
    let f = finding(HOST, &[], Given::Chosen, "services.tracing");
    assert_eq!(f.severity, Severity::Ok, "{}", f.summary);
}

/// Every finding says what it read, whatever the machine lacks: each file and each
/// directory of both fixtures is taken away in turn (a kernel without cpuidle or cpufreq,
/// without a NIC's queues, without irqbalance or SMT, a masked file), and every finding of
/// every check still carries evidence naming a file. A check that ended with no evidence
/// once failed the README's tests on a machine without a cpuidle driver.
#[test]
fn every_finding_has_evidence_whatever_the_machine_lacks() {
    let mut missing = std::collections::BTreeMap::new();
    for fixture in [HOST, LAB] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let aside = tmp.path().join("aside");
        common::copy_tree(&fixtures().join(fixture), &root);
        let mut paths = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p.clone());
                }
                paths.push(p);
            }
        }
        let mut tried = 0;
        for p in paths {
            if p.file_name().is_some_and(|n| n == "isol-snapshot.json") || !p.exists() {
                continue;
            }
            std::fs::rename(&p, &aside).unwrap();
            let model = KernelModel::load(&SysRoot::at(&root));
            let target = Target::choose(&model, None).unwrap_or_else(|_| Target {
                cpus: CpuSet::parse_list("1").unwrap(),
                source: TargetSource::Given,
                housekeeping: CpuSet::parse_list("0").unwrap(),
                pod: None,
            });
            for f in check::run(&model, &target).findings {
                if f.evidence.is_empty() || f.evidence.iter().any(|e| e.file.is_empty()) {
                    let rel = p.strip_prefix(&root).unwrap().display();
                    missing.entry(f.id).or_insert_with(|| {
                        format!("{fixture} without {rel}: {:?} {}", f.severity, f.summary)
                    });
                }
            }
            std::fs::rename(&aside, &p).unwrap();
            tried += 1;
        }
        assert!(tried > 400, "{fixture}: {tried} paths");
    }
    assert!(
        missing.is_empty(),
        "findings without evidence: {missing:#?}"
    );
}

/// The lab fixture as if booted with `nohz_full=1` alone (no `isolcpus`), and `extra`.
fn nohz_only(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut e = vec![
        (
            "/proc/cmdline".to_string(),
            "console=ttyS0 nohz_full=1 rcu_nocbs=1 irqaffinity=0\n".to_string(),
        ),
        (
            "/sys/devices/system/cpu/isolated".to_string(),
            "\n".to_string(),
        ),
    ];
    e.extend(extra.iter().cloned());
    e
}

/// After `isol apply` on a nohz_full CPU, load balancing is a warning, not a failure: apply
/// was measured as quiet as isolcpus=domain (docs/apply.md). Without it, a failure.
#[test]
fn domain_isolation_after_an_apply_agrees_with_the_measurement() {
    let f = finding_with(LAB, &nohz_only(&[]), "boot.domain_isolated");
    assert_eq!(f.severity, Severity::Fail, "{f:?}");
    let by_hand = KILLED_RUN_JOURNAL.replace(
        r#","owner":{"pid":999999,"start":7,"command":"isol run -- ./app"}"#,
        "",
    );
    let f = finding_with(
        LAB,
        &nohz_only(&[("/run/isol/journal".into(), by_hand)]),
        "boot.domain_isolated",
    );
    assert_eq!(f.severity, Severity::Warn, "{f:?}");
    assert!(
        f.summary
            .contains("but `isol apply` moved every task off them"),
        "{}",
        f.summary
    );
    assert!(f.evidence.iter().any(|e| e.file == "/run/isol/journal"));
}

/// A partition the kernel turned `isolated invalid` is named with the kernel's reason.
#[test]
fn an_invalid_isolated_partition_is_named_with_its_reason() {
    let path = fixtures().join(LAB).join("isol-snapshot.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    m["listings"]["/sys/fs/cgroup"]
        .as_array_mut()
        .unwrap()
        .push("rt".into());
    m["listings"]["/sys/fs/cgroup/rt"] = serde_json::json!([
        "cpuset.cpus",
        "cpuset.cpus.effective",
        "cpuset.cpus.partition"
    ]);
    let why = "isolated invalid (Cpu list in cpuset.cpus not exclusive)";
    let f = finding_with(
        LAB,
        &nohz_only(&[
            ("/isol-snapshot.json".into(), m.to_string()),
            ("/sys/fs/cgroup/rt/cpuset.cpus".into(), "1\n".into()),
            (
                "/sys/fs/cgroup/rt/cpuset.cpus.effective".into(),
                "0\n".into(),
            ),
            (
                "/sys/fs/cgroup/rt/cpuset.cpus.partition".into(),
                format!("{why}\n"),
            ),
        ]),
        "boot.domain_isolated",
    );
    assert_eq!(f.severity, Severity::Fail, "{f:?}");
    assert!(
        f.summary.contains(&format!(
            "the isolated partition meant for them turned invalid: /sys/fs/cgroup/rt reads {why:?}"
        )),
        "{}",
        f.summary
    );
}

/// KSM's `run` 2 is stopped with its pages unmerged: nothing scans, nothing to fix.
#[test]
fn ksm_stopped_and_unmerged_is_ok() {
    for (run, ok) in [("0", true), ("2", true), ("1", false)] {
        let f = finding_with(
            LAB,
            &[("/sys/kernel/mm/ksm/run".into(), format!("{run}\n"))],
            "services.ksm",
        );
        assert_eq!(f.severity == Severity::Ok, ok, "run={run}: {f:?}");
    }
}

/// A timer-wheel timer is not listed in /proc/timer_list, but a CPU whose tick is stopped
/// shows when its next timer is due: later than now with no hrtimer then, it is a wheel
/// timer, and the fix names `--cycle-offline`.
#[test]
fn a_timer_wheel_timer_is_seen_from_the_next_timer() {
    let text = std::fs::read_to_string(fixtures().join(LAB).join("proc/timer_list")).unwrap();
    let cpu1 = text.find("cpu: 1\n").unwrap();
    let (head, tail) = text.split_at(cpu1);
    // "now at 3329795663 nsecs": a wheel timer 5 s later.
    let tail = tail.replacen(
        ".next_timer     : 9223372036854775807",
        ".next_timer     : 8329795663",
        1,
    );
    let f = finding_with(
        LAB,
        &[("/proc/timer_list".into(), format!("{head}{tail}"))],
        "timers.armed",
    );
    assert_eq!(f.severity, Severity::Warn, "{f:?}");
    assert!(
        f.summary
            .contains("cpu1 a timer-wheel timer in 5.0 s (.next_timer)"),
        "{}",
        f.summary
    );
    assert!(f.fix.unwrap().text.contains("--cycle-offline"));
}
