//! Host tier for `isol noise`: on this machine's real kernel (no nohz_full, HZ ticks), two
//! seconds of noise on CPU 1 show the tick at HZ, attributed to it, and the disturbances
//! another process makes on purpose (a sleeping thread woken onto CPU 1, a vmstat work
//! item, a task moved onto CPU 1), each attributed to its culprit.
//!
//! Needs root and CPUs 0 and 1; tracefs is mounted for the test if it is not. Without root
//! the test prints "skipped: <reason>" (with CI=true it fails instead).

use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use isol::interrupt::Kind;
use isol::noise::{self, NoiseOptions};
use isol::{CpuSet, SysRoot};

fn hz() -> u64 {
    let model = isol::kernel::KernelModel::load(&SysRoot::live());
    model
        .config
        .as_ref()
        .and_then(|c| c.hz())
        .expect("CONFIG_HZ of the host kernel") as u64
}

#[test]
fn tick_and_provoked_disturbances_are_attributed() {
    let Some(_tracing) = isol_lab::host::tracing() else {
        return;
    };
    let guest = env!("CARGO_BIN_EXE_isol-lab-guest");
    let wakeups = 5;
    let child = Command::new(guest)
        .args(["disturb", "1", "300", &wakeups.to_string(), "--refresh"])
        .args(["--after", "isol-noise-1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start isol-lab-guest disturb");
    let asked = Duration::from_secs(2);
    let opts = NoiseOptions::new(CpuSet::from_iter([1]), asked);
    let report = noise::run(&SysRoot::live(), &opts, &AtomicBool::new(false), |_| {})
        .expect("measure noise on CPU 1");
    let out = child.wait_with_output().expect("disturb ends");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("disturb JSON");
    assert_eq!(d["stat_refresh"], true, "{d}");

    assert!(report.attributed);
    assert!(
        report.tsc.invariant,
        "this host's TSC is invariant: {:?}",
        report.tsc
    );
    let c = &report.cpus[0];
    assert_eq!(c.cpu, 1);
    // The run measured for the time it was asked (less the samplers' start).
    let secs = c.duration_ns as f64 / 1e9;
    assert!(
        secs >= 0.95 * asked.as_secs_f64(),
        "measured {secs} s of {asked:?}"
    );
    let table = || {
        c.causes
            .iter()
            .map(|r| format!("{:>6} {} {}", r.count, r.kind, r.culprit))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The tick: HZ local timer interrupts per second running tick_nohz_handler, each
    // inside a gap.
    let ticks = c
        .causes
        .iter()
        .find(|r| r.kind == Kind::LocalTimer && r.culprit == "tick_nohz_handler")
        .unwrap_or_else(|| panic!("no tick among the causes:\n{}", table()));
    let expected = hz() as f64 * secs;
    assert!(
        (ticks.count as f64) > 0.9 * expected && (ticks.count as f64) < 1.05 * expected,
        "{} ticks attributed, {expected:.0} expected:\n{}",
        ticks.count,
        table()
    );
    // The woken sleeper, once per wakeup at least.
    let sleeper = c
        .causes
        .iter()
        .find(|r| r.kind == Kind::Task && r.culprit == "isol-sleeper")
        .unwrap_or_else(|| panic!("the woken sleeper is not among the causes:\n{}", table()));
    assert!(sleeper.count >= wakeups, "{}", table());
    // The vmstat work item, run by CPU 1's kworker, queued by the disturbing process.
    let pid = d["pid"].as_i64().unwrap();
    let work = c
        .causes
        .iter()
        .find(|r| r.kind == Kind::Task && r.culprit.contains("refresh_vm_stats"))
        .unwrap_or_else(|| panic!("no kworker running refresh_vm_stats:\n{}", table()));
    assert!(
        work.senders
            .iter()
            .any(|s| s.contains(&format!("/{pid} on cpu0"))),
        "{:?}",
        work.senders
    );
    // The task moved onto CPU 1.
    assert!(
        c.causes
            .iter()
            .any(|r| r.kind == Kind::Task && r.culprit == "isol-migrant"),
        "the migrated task is not among the causes:\n{}",
        table()
    );
    // Every gap is either explained or counted as unexplained; nothing was dropped.
    let explained = c.gap_list.iter().filter(|g| g.cause.is_some()).count() as u64;
    assert_eq!(explained + c.unexplained.count, c.gaps);
    assert_eq!(c.dropped_gaps, 0);
    // The loop's speed is a benchmark figure (BENCHMARKS.md); here it is only measured.
    assert!(c.loop_ns > 0.0, "{}", c.loop_ns);
    // How much of the CPU was left depends on the machine's load (a CPU hog takes half):
    // only its range is asserted.
    assert!(
        c.available_pct > 0.0 && c.available_pct < 100.0,
        "{}",
        c.available_pct
    );
}
