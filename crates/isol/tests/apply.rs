//! apply, restore and the journal on captured trees: every setting planned, applied, and put
//! back byte for byte, also after a crash at any step.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

mod apply_support;

use apply_support::{common, *};
use isol::apply::{self, ApplyError, DirSystem, Format, Options, Outcome, Setting, System, Undo};
use isol::check::{self, Severity};
use isol::{CpuSet, SysRoot};

#[test]
fn the_plan_covers_every_setting_and_names_what_stays() {
    let dir = noisy_host();
    let plan = plan_for(dir.path(), "1", &all_options());
    let paths: Vec<String> = plan.changes.iter().map(|c| c.setting.describe()).collect();
    for want in [
        "/proc/irq/default_smp_affinity",
        "/proc/irq/24/smp_affinity_list",
        "/sys/devices/virtual/workqueue/cpumask",
        "/sys/devices/virtual/workqueue/writeback/cpumask",
        "/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask",
        "/sys/class/net/eth0/queues/rx-0/rps_cpus",
        "/proc/sys/net/core/rps_default_mask",
        "/proc/sys/kernel/watchdog_cpumask",
        "/proc/sys/kernel/nmi_watchdog",
        "/proc/sys/kernel/timer_migration",
        "/proc/sys/vm/stat_interval",
        "/proc/sys/kernel/numa_balancing",
        "/proc/sys/kernel/sched_rt_runtime_us",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "/sys/kernel/mm/ksm/run",
        "/sys/devices/system/machinecheck/machinecheck1/check_interval",
        "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
        "/sys/devices/system/cpu/cpu1/cpuidle/state2/disable",
        "/sys/kernel/debug/sched/fair_server/cpu1/runtime",
        "cpu1 offline and online",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "plan lacks {want}: {paths:#?}"
        );
    }
    // Housekeeping settings stay as they are.
    for not in [
        "/sys/class/net/eth0/queues/rx-1/rps_cpus",
        "/sys/kernel/debug/sched/fair_server/cpu0/runtime",
        "/sys/devices/system/machinecheck/machinecheck0/check_interval",
        "/proc/irq/25/smp_affinity_list",
    ] {
        assert!(!paths.iter().any(|p| p == not), "plan touches {not}");
    }
    let kthreads = plan
        .changes
        .iter()
        .filter(|c| matches!(c.setting, Setting::Affinity { kernel: true, .. }))
        .count();
    let users = plan
        .changes
        .iter()
        .filter(|c| matches!(c.setting, Setting::Affinity { kernel: false, .. }))
        .count();
    assert!(
        kthreads > 0 && users > 0,
        "{kthreads} kthreads, {users} user threads"
    );
    for c in &plan.changes {
        assert!(!c.why.is_empty());
        if let Setting::Affinity { .. } = c.setting {
            assert!(
                !cpus(&c.new).contains(1),
                "{} still on CPU 1",
                c.setting.describe()
            );
        }
    }
    let left: Vec<&str> = plan.left.iter().map(|l| l.what.as_str()).collect();
    assert!(
        left.iter().any(|w| w.starts_with("IRQ 25")),
        "managed IRQ: {left:?}"
    );
    assert!(
        left.iter()
            .any(|w| w.contains("per-CPU kernel threads") && w.contains("ksoftirqd/1")),
        "bound kthreads: {left:?}"
    );
    // Off by default.
    let default = plan_for(dir.path(), "1", &Options::default());
    assert!(default
        .changes
        .iter()
        .all(|c| !matches!(c.setting, Setting::CycleCpu { .. })
            && c.setting.describe() != "/proc/sys/kernel/sched_rt_runtime_us"));
}

#[test]
fn apply_fixes_what_check_finds_and_restore_puts_back_every_byte() {
    let dir = noisy_host();
    let r = dir.path();
    let before = tree(r);
    let findings = |root: &Path| {
        let m = model(root);
        let target = isol::target::Target::choose(&m, Some(&cpus("1"))).unwrap();
        check::run(&m, &target)
            .findings
            .into_iter()
            .map(|f| (f.id.to_string(), f.severity))
            .collect::<BTreeMap<_, _>>()
    };
    let was = findings(r);
    let plan = plan_for(r, "1", &Options::default());
    let mut sys = dir_system(r);
    let done = apply::apply(&plan, &mut sys, &state(r)).unwrap();
    assert!(
        done.steps.iter().all(|(_, o)| *o == Outcome::Done),
        "{:?}",
        done.steps
    );
    let now = findings(r);
    for id in [
        "irq.affinity",
        "irq.default_affinity",
        "services.workqueue",
        "services.writeback",
        "services.nmi_watchdog",
        "services.timer_migration",
        "services.vmstat_interval",
        "services.numa_balancing",
        "services.thp",
        "services.ksm",
        "cpu.governor",
        "cpu.idle_states",
        "tasks.kthreads",
        "tasks.user",
        "tasks.init_affinity",
        "tasks.fair_server",
        "irq.rps_default_mask",
    ] {
        assert_ne!(
            was[id],
            Severity::Ok,
            "{id} was already ok: the fixture does not test it"
        );
        assert_eq!(now[id], Severity::Ok, "{id} after apply");
    }
    for (c, _) in &done.steps {
        let fixes = c.fixes.as_deref().unwrap_or("");
        assert!(
            fixes.is_empty() || now.contains_key(fixes),
            "unknown check id {fixes}"
        );
    }
    assert!(changed_files(&before, &tree(r)).len() > 20);

    let restored = restore(&mut sys, &state(r), false).unwrap();
    assert!(restored.kept.is_none());
    assert!(
        restored.steps.iter().all(|(_, u)| *u == Undo::Restored),
        "{:?}",
        restored.steps
    );
    assert_eq!(changed_files(&before, &tree(r)), Vec::<PathBuf>::new());
    assert!(
        !state(r).journal_path().exists(),
        "the journal goes once all is back"
    );
    // Nothing left to restore.
    assert!(restore(&mut sys, &state(r), false)
        .unwrap()
        .steps
        .is_empty());
}

#[test]
fn applying_twice_changes_nothing_the_second_time() {
    let dir = noisy_host();
    let r = dir.path();
    let mut sys = dir_system(r);
    apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &state(r)).unwrap();
    let files = tree(r);
    let journal = std::fs::read(state(r).journal_path()).unwrap();
    // The same plan again (the user ran apply twice quickly) ...
    let again = apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &state(r)).unwrap();
    assert!(again.steps.iter().all(|(_, o)| *o != Outcome::Done));
    assert_eq!(changed_files(&files, &tree(r)), Vec::<PathBuf>::new());
    assert_eq!(std::fs::read(state(r).journal_path()).unwrap(), journal);
    // ... and a plan computed after the first apply is empty.
    let replanned = plan_for(r, "1", &Options::default());
    let files_left: Vec<_> = replanned
        .changes
        .iter()
        .map(|c| c.setting.describe())
        .collect();
    assert!(replanned.changes.is_empty(), "{files_left:?}");
}

/// A system that dies (panics, like a `kill -9`: no cleanup runs) at its `n`-th write,
/// before or after making it.
struct Crashing {
    inner: DirSystem,
    writes: usize,
    at: usize,
    after: bool,
}

impl Crashing {
    fn step(&mut self, write: impl FnOnce(&mut DirSystem) -> io::Result<()>) -> io::Result<()> {
        let n = self.writes;
        self.writes += 1;
        if n == self.at && !self.after {
            panic!("killed before write {n}");
        }
        let r = write(&mut self.inner);
        if n == self.at && self.after {
            panic!("killed after write {n}");
        }
        r
    }
}

impl System for Crashing {
    fn read(&self, path: &str) -> io::Result<String> {
        self.inner.read(path)
    }
    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        self.step(|s| s.write(path, value))
    }
    fn affinity(&self, pid: u32, tid: u32) -> io::Result<(CpuSet, u64)> {
        self.inner.affinity(pid, tid)
    }
    fn set_affinity(&mut self, pid: u32, tid: u32, cpus: &CpuSet) -> io::Result<()> {
        self.step(|s| s.set_affinity(pid, tid, cpus))
    }
}

#[test]
fn a_crash_at_any_step_is_restored_to_the_original_bytes() {
    let pristine = noisy_host();
    let original = tree(pristine.path());
    let n = plan_for(pristine.path(), "1", &Options::default())
        .changes
        .len();
    assert!(n > 20, "{n} changes");
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crashed = 0;
    for at in 0..n {
        for after in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let r = dir.path();
            common::copy_tree(pristine.path(), r);
            let plan = plan_for(r, "1", &Options::default());
            let mut sys = Crashing {
                inner: dir_system(r),
                writes: 0,
                at,
                after,
            };
            let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                apply::apply(&plan, &mut sys, &state(r))
            }))
            .is_err();
            assert!(died, "apply did not reach write {at}");
            crashed += 1;
            let restored = restore(&mut dir_system(r), &state(r), false)
                .unwrap_or_else(|e| panic!("restore after a crash at {at}: {e}"));
            assert!(
                restored.kept.is_none(),
                "crash at {at}: {:?}",
                restored.steps
            );
            let diff = changed_files(&original, &tree(r));
            assert!(
                diff.is_empty(),
                "crash at write {at} (after: {after}): {diff:?}"
            );
        }
    }
    std::panic::set_hook(quiet);
    assert_eq!(crashed, 2 * n);
}

#[test]
fn a_value_changed_since_apply_is_reported_not_overwritten() {
    let dir = noisy_host();
    let r = dir.path();
    let mut sys = dir_system(r);
    apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &state(r)).unwrap();
    put(r, "/proc/sys/vm/stat_interval", "30\n");
    let restored = restore(&mut sys, &state(r), false).unwrap();
    let conflicts: Vec<_> = restored
        .steps
        .iter()
        .filter(|(_, u)| matches!(u, Undo::Conflict(_)))
        .collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].1, Undo::Conflict("30".into()));
    assert_eq!(
        std::fs::read_to_string(r.join("proc/sys/vm/stat_interval")).unwrap(),
        "30\n"
    );
    assert_eq!(
        restored.kept.as_deref(),
        Some(state(r).journal_path().as_path())
    );
    // The journal now holds only that change; --force puts the old value back.
    let forced = restore(&mut sys, &state(r), true).unwrap();
    assert_eq!(forced.steps.len(), 1);
    assert_eq!(forced.steps[0].1, Undo::Restored);
    assert_eq!(
        std::fs::read_to_string(r.join("proc/sys/vm/stat_interval")).unwrap(),
        "1\n"
    );
    assert!(forced.kept.is_none());
}

#[test]
fn corrupt_foreign_and_other_boot_journals_are_refused_and_left_in_place() {
    let dir = noisy_host();
    let r = dir.path();
    let before = tree(r);
    let st = state(r);
    let mut sys = dir_system(r);
    apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &st).unwrap();
    let applied = tree(r);
    let good = std::fs::read_to_string(st.journal_path()).unwrap();
    let cases = [
        ("not json\n".to_string(), "not a journal"),
        (good.replacen("isol-apply/1", "isol-apply/2", 1), "format"),
        (
            good.replacen("/proc/sys/kernel/nmi_watchdog", "/etc/shadow", 1),
            "never writes",
        ),
    ];
    for (text, says) in cases {
        std::fs::write(st.journal_path(), &text).unwrap();
        let e = restore(&mut sys, &st, false).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("left in place"), "{e}");
        assert_eq!(std::fs::read_to_string(st.journal_path()).unwrap(), text);
        assert_eq!(changed_files(&applied, &tree(r)), Vec::<PathBuf>::new());
        let e = apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &st).unwrap_err();
        assert!(e.to_string().contains("left in place"), "{e}");
    }
    std::fs::write(st.journal_path(), &good).unwrap();
    put(r, "/proc/sys/kernel/random/boot_id", "another-boot\n");
    let e = restore(&mut sys, &st, false).unwrap_err();
    assert!(matches!(e, ApplyError::OtherBoot { .. }), "{e}");
    assert!(e.to_string().contains("--force"));
    put(
        r,
        "/proc/sys/kernel/random/boot_id",
        "5f0e7c4c-0d3e-4a5e-9f63-6c1b2f0d9a11\n",
    );
    restore(&mut sys, &st, false).unwrap();
    assert_eq!(changed_files(&before, &tree(r)), Vec::<PathBuf>::new());
    // A journal that is a link is refused.
    std::os::unix::fs::symlink("/etc/passwd", st.journal_path()).unwrap();
    let e = restore(&mut sys, &st, false).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
}

#[test]
fn other_cpus_and_a_held_lock_are_refused() {
    let dir = noisy_host();
    let r = dir.path();
    let mut sys = dir_system(r);
    let st = state(r);
    let held = st.lock().unwrap();
    let e = apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &st).unwrap_err();
    assert!(
        e.to_string().contains("another isol apply or restore"),
        "{e}"
    );
    drop(held);
    apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &st).unwrap();
    let mut other = plan_for(r, "1", &Options::default());
    other.cpus = cpus("0");
    let e = apply::apply(&other, &mut sys, &st).unwrap_err();
    assert!(matches!(e, ApplyError::OtherCpus { .. }), "{e}");
    assert!(e.to_string().contains("isol restore"));
}

#[test]
fn bad_cpu_lists_are_refused_before_anything_is_written() {
    let dir = noisy_host();
    let r = dir.path();
    let before = tree(r);
    let m = model(r);
    let root = SysRoot::at(r);
    for (list, says) in [
        ("0-1", "no online housekeeping"),
        ("5", "does not exist"),
        ("", "empty"),
    ] {
        let set = if list.is_empty() {
            CpuSet::new()
        } else {
            cpus(list)
        };
        let e = apply::plan(&root, &m, &set, &Options::default()).unwrap_err();
        assert!(e.to_string().contains(says), "{list}: {e}");
    }
    assert_eq!(changed_files(&before, &tree(r)), Vec::<PathBuf>::new());
    assert!(!r.join("run").exists());
}

/// A system where writes fail with `errno`: EIO from the `from`-th write on (the kernel
/// refusing), EACCES at that one write only (one file root may write).
struct Failing {
    inner: DirSystem,
    writes: usize,
    from: usize,
    errno: i32,
}

impl System for Failing {
    fn read(&self, path: &str) -> io::Result<String> {
        self.inner.read(path)
    }
    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        self.writes += 1;
        if self.writes > self.from && (self.errno != libc::EACCES || self.writes == self.from + 1) {
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        self.inner.write(path, value)
    }
    fn affinity(&self, pid: u32, tid: u32) -> io::Result<(CpuSet, u64)> {
        self.inner.affinity(pid, tid)
    }
    fn set_affinity(&mut self, pid: u32, tid: u32, cpus: &CpuSet) -> io::Result<()> {
        self.inner.set_affinity(pid, tid, cpus)
    }
}

#[test]
fn refused_values_are_reported_and_a_permission_error_undoes_the_run() {
    let dir = noisy_host();
    let r = dir.path();
    let before = tree(r);
    // The kernel refuses (EIO, as for IRQ 0 or a managed IRQ): the run goes on.
    let mut sys = Failing {
        inner: dir_system(r),
        writes: 0,
        from: 3,
        errno: libc::EIO,
    };
    let done = apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &state(r)).unwrap();
    assert!(done
        .steps
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Refused(_))));
    assert!(done.steps.iter().any(|(_, o)| *o == Outcome::Done));
    restore(&mut dir_system(r), &state(r), false).unwrap();
    assert_eq!(changed_files(&before, &tree(r)), Vec::<PathBuf>::new());
    // No permission (not root): stop, undo, and say so.
    let mut sys = Failing {
        inner: dir_system(r),
        writes: 0,
        from: 4,
        errno: libc::EACCES,
    };
    let e = apply::apply(&plan_for(r, "1", &Options::default()), &mut sys, &state(r)).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("run it as root") && text.contains("4 change(s)"),
        "{text}"
    );
    assert_eq!(changed_files(&before, &tree(r)), Vec::<PathBuf>::new());
    assert!(!state(r).journal_path().exists());
}

#[test]
fn a_thread_that_exits_or_whose_id_is_reused_is_not_touched() {
    let dir = noisy_host();
    let r = dir.path();
    let plan = plan_for(r, "1", &Options::default());
    let mut sys = dir_system(r);
    apply::apply(&plan, &mut sys, &state(r)).unwrap();
    let moved = plan
        .changes
        .iter()
        .find_map(|c| match &c.setting {
            Setting::Affinity {
                pid,
                tid,
                kernel: false,
                ..
            } => Some((*pid, *tid)),
            _ => None,
        })
        .unwrap();
    // The thread id now names another thread (a later start time), pinned to CPU 1.
    let stat_path = r.join(format!("proc/{}/task/{}/stat", moved.0, moved.1));
    let stat = std::fs::read_to_string(&stat_path).unwrap();
    let (head, tail) = stat.split_at(stat.rfind(')').unwrap() + 1);
    let mut fields: Vec<String> = tail.split_whitespace().map(String::from).collect();
    fields[19] = "999999999".into();
    std::fs::write(&stat_path, format!("{head} {}\n", fields.join(" "))).unwrap();
    let restored = restore(&mut sys, &state(r), false).unwrap();
    let gone: Vec<_> = restored
        .steps
        .iter()
        .filter(|(_, u)| *u == Undo::Gone)
        .collect();
    assert_eq!(gone.len(), 1, "{gone:?}");
    let status =
        std::fs::read_to_string(r.join(format!("proc/{}/task/{}/status", moved.0, moved.1)))
            .unwrap();
    assert!(
        status.contains("Cpus_allowed_list:\t0\n"),
        "the new thread was left alone: {status}"
    );
}

#[test]
fn value_formats_compare_as_the_kernel_reads_them() {
    assert!(Format::List.same("0-1", "0,1"));
    assert!(Format::Mask.same("3", "00000003"));
    assert!(!Format::Mask.same("3", "1"));
    assert!(Format::Choice.same("always [madvise] never", "madvise"));
    assert_eq!(
        Format::Choice.value_of("[always] madvise never\n"),
        "always"
    );
    assert!(Format::Word.same("10\n", "10"));
}

#[test]
fn boot_parameters_for_the_lab_and_this_host() {
    let m = model(&fixture("lab-6.12"));
    let params = apply::boot_params(&m, &cpus("1"), &cpus("0"));
    let line: Vec<&str> = params.iter().map(|p| p.param.as_str()).collect();
    for want in [
        "nohz_full=1",
        "isolcpus=nohz,domain,managed_irq,1",
        "rcu_nocbs=1",
        "irqaffinity=0",
        "skew_tick=1",
        "nosoftlockup",
        "mce=ignore_ce",
        "rcupdate.rcu_normal_after_boot=1",
    ] {
        assert!(line.contains(&want), "{want} missing from {line:?}");
    }
    assert!(params.iter().all(|p| !p.why.is_empty()));
    let grub = apply::grub_snippet(&params);
    assert!(
        grub.starts_with("GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT nohz_full=1 ")
    );
    // tsc=reliable only where the TSC is invariant.
    let host = model(&fixture("host-6.18"));
    let flags = host.cpus.tsc_flags.as_ref().unwrap().clone();
    let invariant =
        flags.iter().any(|f| f == "constant_tsc") && flags.iter().any(|f| f == "nonstop_tsc");
    let host_params = apply::boot_params(&host, &cpus("1"), &cpus("0"));
    assert_eq!(
        host_params.iter().any(|p| p.param == "tsc=reliable"),
        invariant
    );
}

/// irqbalance is left running, and the plan says it will undo the IRQ moves unless the
/// CPUs are banned.
#[test]
fn a_running_irqbalance_is_named_unless_it_bans_the_cpus() {
    let dir = noisy_host();
    let r = dir.path();
    put(r, "/proc/999/task/999/stat", "999 (irqbalance) S 1 999 999 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 2 0 500 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
    put(
        r,
        "/proc/999/task/999/status",
        "Name:\tirqbalance\nCpus_allowed_list:\t0\n",
    );
    put(r, "/proc/999/environ", "PATH=/usr/bin\0");
    let plan = plan_for(r, "1", &Options::default());
    let left = plan.left.iter().find(|l| l.what == "irqbalance (pid 999)");
    assert!(
        left.is_some_and(|l| l.why.contains("IRQBALANCE_BANNED_CPULIST=1")),
        "{:?}",
        plan.left
    );
    put(
        r,
        "/proc/999/environ",
        "PATH=/usr/bin\0IRQBALANCE_BANNED_CPULIST=1\0",
    );
    let plan = plan_for(r, "1", &Options::default());
    assert!(plan.left.iter().all(|l| !l.what.starts_with("irqbalance")));
}
