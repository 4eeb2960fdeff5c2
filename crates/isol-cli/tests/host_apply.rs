//! Host tier: `isol apply --cpus 1` then `isol restore` on this machine's real kernel. Every
//! file and thread affinity apply changes is back as it was, and apply changed nothing its
//! plan did not list. In its own test binary: the threads of this process are moved too.

mod common;

use std::collections::BTreeMap;

use common::{assert_success, is_root, isol, json};

/// Settings files apply may touch, and their neighbours it must not: every file of these
/// directories, with its text.
fn settings() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut add = |path: String| {
        if let Ok(t) = std::fs::read_to_string(&path) {
            out.insert(path, t);
        }
    };
    for dir in [
        "/proc/sys/kernel",
        "/proc/sys/vm",
        "/sys/kernel/mm/transparent_hugepage",
        "/sys/kernel/mm/ksm",
        "/sys/devices/virtual/workqueue",
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_file() {
                add(p.to_string_lossy().into_owned());
            } else if p.join("cpumask").is_file() {
                add(p.join("cpumask").to_string_lossy().into_owned());
            }
        }
    }
    for e in std::fs::read_dir("/proc/irq").unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            add(p.join("smp_affinity_list").to_string_lossy().into_owned());
        } else {
            add(p.to_string_lossy().into_owned());
        }
    }
    for cpu in std::fs::read_dir("/sys/devices/system/cpu")
        .unwrap()
        .flatten()
    {
        let p = cpu.path();
        add(p
            .join("cpufreq/scaling_governor")
            .to_string_lossy()
            .into_owned());
        for s in std::fs::read_dir(p.join("cpuidle"))
            .into_iter()
            .flatten()
            .flatten()
        {
            add(s.path().join("disable").to_string_lossy().into_owned());
        }
    }
    // Counters and random values change on their own; cpumask_requested reads back what
    // was written to cpumask.
    out.retain(|p, _| {
        ![
            "/random/",
            "/ns_last_pid",
            "/tainted",
            "/nr_",
            "/stat_refresh",
            "/drop_caches",
            "/compact_memory",
            "pages_",
            "full_scans",
            "stable_node",
            "/ksm/general_profit",
            "cpumask_requested",
        ]
        .iter()
        .any(|x| p.contains(x))
    });
    out
}

/// Every thread: (pid, tid, start time) -> Cpus_allowed_list.
fn affinities() -> BTreeMap<(u32, u32, u64), String> {
    let mut out = BTreeMap::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for t in std::fs::read_dir(p.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let (Ok(stat), Ok(status)) = (
                std::fs::read_to_string(t.path().join("stat")),
                std::fs::read_to_string(t.path().join("status")),
            ) else {
                continue;
            };
            let start: u64 = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .nth(19)
                .unwrap()
                .parse()
                .unwrap();
            if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
                out.insert(
                    (pid, tid, start),
                    l.split_whitespace().nth(1).unwrap().to_string(),
                );
            }
        }
    }
    out
}

/// Tests here change the machine: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// This machine's turn and a state directory, when it can take the test: root, with CPUs
/// 0 and 1 (exactly) online. None, after saying why, otherwise.
fn on_this_machine() -> Option<(std::sync::MutexGuard<'static, ()>, tempfile::TempDir)> {
    let one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if !is_root() || online.trim() != "0-1" {
        eprintln!(
            "skipped: needs root and CPUs 0-1 online (online: {})",
            online.trim()
        );
        return None;
    }
    Some((one, tempfile::tempdir().unwrap()))
}

#[test]
fn apply_and_restore_on_cpu_1_leave_every_setting_as_it_was() {
    let Some((_one, state)) = on_this_machine() else {
        return;
    };
    let state_dir = state.path().join("isol");
    let state_arg = state_dir.to_str().unwrap();
    let files_before = settings();
    let threads_before = affinities();

    let out = isol()
        .args(["apply", "--cpus", "1", "--json", "--state-dir", state_arg])
        .output()
        .unwrap();
    let undo = || {
        isol()
            .args(["restore", "--state-dir", state_arg])
            .output()
            .unwrap()
    };
    if out.status.code() != Some(0) {
        undo();
        panic!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let applied = json(&out.stdout);
    let files_applied = settings();
    let threads_applied = affinities();
    let listed: Vec<String> = applied["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["setting"]["kind"] == "file")
        .map(|c| c["setting"]["path"].as_str().unwrap().to_string())
        .collect();
    let restored = undo();

    // apply changed only what its plan lists, and changed something.
    let changed: Vec<&String> = files_before
        .iter()
        .filter(|(p, t)| files_applied.get(*p) != Some(*t))
        .map(|(p, _)| p)
        .collect();
    assert!(!changed.is_empty(), "apply changed no file");
    for p in &changed {
        assert!(
            listed.contains(p),
            "apply changed {p}, which its plan does not list"
        );
    }
    let moved = threads_before
        .iter()
        .filter(|(k, v)| threads_applied.get(*k).is_some_and(|a| a != *v))
        .count();
    assert!(moved > 0, "apply moved no thread");
    for (k, v) in &threads_applied {
        if threads_before.get(k).is_some_and(|b| b != v) {
            let now = isol::CpuSet::parse_list(v).unwrap();
            assert!(
                !now.contains(1),
                "thread {k:?} was moved but may still run on CPU 1: {v}"
            );
        }
    }

    // restore put back every byte and every affinity.
    assert_eq!(
        restored.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&restored.stdout),
        String::from_utf8_lossy(&restored.stderr)
    );
    let files_after = settings();
    for (p, t) in &files_before {
        assert_eq!(files_after.get(p), Some(t), "{p} after restore");
    }
    let threads_after = affinities();
    for (k, v) in &threads_before {
        if let Some(now) = threads_after.get(k) {
            assert_eq!(now, v, "affinity of thread {k:?} after restore");
        }
    }
    assert!(
        !state_dir.join("journal").exists(),
        "the journal is gone after a full restore"
    );
}

/// `isol run --apply`: the program finds the setup applied, and it is undone when the
/// program ends, also when isol run is stopped by SIGTERM.
#[test]
fn run_with_apply_restores_when_the_program_ends_or_isol_is_stopped() {
    let Some((_one, state)) = on_this_machine() else {
        return;
    };
    let state_dir = state.path().join("isol");
    let state_arg = state_dir.to_str().unwrap();
    let run_applied = [
        "run",
        "--apply",
        "--cpu",
        "1",
        "--allow-ticking",
        "--state-dir",
        state_arg,
        "--",
    ];
    let before = settings();
    let out = isol()
        .args(run_applied)
        .args([
            "sh",
            "-c",
            "cat /sys/devices/virtual/workqueue/cpumask; grep Cpus_allowed_list: /proc/1/status",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let mask = lines.next().unwrap();
    assert_eq!(
        isol::CpuSet::parse_mask(mask).unwrap().to_list(),
        "0",
        "{text}"
    );
    assert_eq!(lines.next().unwrap(), "Cpus_allowed_list:\t0", "{text}");
    let after = settings();
    for (p, t) in &before {
        assert_eq!(after.get(p), Some(t), "{p} after the program ended");
    }
    assert!(!state_dir.join("journal").exists());

    // Stopped by SIGTERM while the program runs: the program is stopped, the setup undone.
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(run_applied)
        .args(["sleep", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !state_dir.join("journal").exists() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = isol_sys::thread::signal_process(child.id() as i32, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = settings();
    for (p, t) in &before {
        assert_eq!(after.get(p), Some(t), "{p} after SIGTERM");
    }
    assert!(!state_dir.join("journal").exists());
}

/// `isol run --apply` killed with SIGKILL cannot restore: the journal names it, `isol
/// check` says its apply was left behind and how to undo it, and `isol restore` does.
#[test]
fn a_killed_run_leaves_its_apply_visible_and_restorable() {
    let Some((_one, _state)) = on_this_machine() else {
        return;
    };
    let journal = std::path::Path::new(isol::apply::DEFAULT_STATE_DIR).join("journal");
    if journal.exists() {
        eprintln!(
            "skipped: an apply is in place on this machine ({})",
            journal.display()
        );
        return;
    }
    let before = settings();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args([
            "run",
            "--apply",
            "--cpu",
            "1",
            "--allow-ticking",
            "--",
            "sleep",
            "60",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut program = None;
    for _ in 0..500 {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        program = children.split_whitespace().next().map(str::to_string);
        if journal.exists() && program.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let program = program.expect("isol run started its program");
    child.kill().unwrap();
    child.wait().unwrap();
    let kill_program = || {
        let _ = std::process::Command::new("kill")
            .args(["-9", &program])
            .status();
    };

    let check = isol()
        .args(["check", "--cpus", "1", "--json"])
        .output()
        .unwrap();
    let report = json(&check.stdout);
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "services.apply_journal")
        .cloned()
        .unwrap();
    let restored = isol().arg("restore").output().unwrap();
    kill_program();
    assert_eq!(f["severity"], "warn", "{f}");
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("(pid {pid})")) && summary.contains("ended without undoing it"),
        "{summary}"
    );
    assert_eq!(f["fix"]["text"], "isol restore", "{f}");
    assert_success(&restored);
    let after = settings();
    for (p, t) in &before {
        assert_eq!(after.get(p), Some(t), "{p} after restore");
    }
    assert!(!journal.exists());
}
