//! The promise of `enter`, tested as a user meets it, on every lab kernel: the first
//! isolation after boot, with no warm-up, from a thread created SCHED_OTHER on CPU 0, through
//! the Rust API and through libisol from C, waiting by spinning and by sleeping. When enter
//! returns 0, CPU 1 takes no interrupt at all during the next 3 s (every row of
//! `/proc/interrupts`, counted from CPU 0). Each case boots its own guest, so each is truly
//! the first entry after boot.
//!
//! Also per kernel: what the fair deadline server does to a lone SCHED_OTHER task on a
//! nohz_full CPU (measured), that enter refuses such a thread where the server would tick
//! it, and that a failed enter leaves the thread's affinity, policy and locked memory as
//! they were; and, in one boot, the API's other promises: EINVAL unless pinned to an
//! isolated CPU, 10 s without an interrupt after Spin and Sleep enters, EAGAIN naming a
//! CPU-time timer or a second task, repeated entries.

use std::sync::Mutex;

use isol_lab::{lab_kernel_or_skip, Boot, Lab, Run, Scenario};

/// One guest at a time: TCG guests share the host's two CPUs.
static BOOTS: Mutex<()> = Mutex::new(());

const RT_OFF: &str = "echo -1 > /proc/sys/kernel/sched_rt_runtime_us; ";

/// Boot `lab` once (one guest at a time) and run `scenarios`.
fn boot(lab: &Lab, scenarios: &[Scenario]) -> Run {
    let _one = BOOTS.lock().unwrap_or_else(|p| p.into_inner());
    lab.run(&Boot::default(), scenarios)
        .unwrap_or_else(|e| panic!("{}: lab run failed: {e}", lab.name))
}

/// The first JSON line of scenario `name`, which must have exited 0.
fn scenario_json(run: &Run, name: &str) -> serde_json::Value {
    let r = run.result(name).unwrap();
    assert_eq!(r.status, 0, "{name}: {}", r.stdout);
    let json = r
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("{} {name}: no JSON:\n{}", run.kernel, r.stdout));
    eprintln!("lab {}: {name}: {json}", run.kernel);
    json
}

/// Every kernel's cases, in one test per kernel so that a kernel's failures read together.
fn first_entries(kernel: &str) {
    let Some(lab) = lab_kernel_or_skip(kernel) else {
        return;
    };
    let cases = [
        // The watcher also narrates this wait into a file (ISOL_WAIT_MARKER), printed after.
        (
            "rust_spin",
            format!(
                "{RT_OFF}ISOL_WAIT_MARKER=/tmp/wait.log isol-lab-guest isolate 1 3 --first --fifo --wait spin && cat /tmp/wait.log"
            ),
        ),
        (
            "rust_sleep",
            format!("{RT_OFF}isol-lab-guest isolate 1 3 --first --fifo --wait sleep"),
        ),
        (
            "c_spin",
            format!("{RT_OFF}isol-first-entry-c 1 3 --fifo 10"),
        ),
        (
            "c_sleep",
            format!("{RT_OFF}isol-first-entry-c 1 3 --sleep --fifo 10"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, cmd) in cases {
        let run = boot(&lab, &[Scenario::new(name, cmd)]);
        let v = scenario_json(&run, name);
        if name == "rust_spin" {
            // The narration: the readings of /proc/timer_list, the last of them disarmed
            // and believed, and quiet declared from it.
            let out = &run.result(name).unwrap().stdout;
            let said: Vec<&str> = out
                .lines()
                .filter(|l| l.starts_with("isol: cpu 1 "))
                .collect();
            let quiet = said
                .iter()
                .rposition(|l| l.contains("quiet from the reading at "));
            let disarmed = said.iter().rposition(|l| {
                l.contains("/proc/timer_list read at ")
                    && l.contains("tick device disarmed, hrtimers []")
                    && !l.contains("before the arrival's settling time")
            });
            // The number after `at `: the reading's time.
            let at = |l: &str| {
                l.split(" at ")
                    .nth(1)
                    .and_then(|r| r.split([':', ' ']).next())
                    .and_then(|n| n.parse::<u64>().ok())
            };
            let believed = match (disarmed, quiet) {
                (Some(d), Some(q)) => d < q && at(said[d]).is_some() && at(said[d]) == at(said[q]),
                _ => false,
            };
            if !believed {
                failures.push(format!(
                    "{name}: the wait's narration does not end in a disarmed reading that quiet was declared from:\n{}",
                    said.join("\n")
                ));
            }
        }
        let ok = v["ok"]
            .as_bool()
            .unwrap_or_else(|| v["entries"][0]["ok"].as_bool().unwrap_or(false));
        if !ok {
            failures.push(format!("{name}: enter failed: {v}"));
            continue;
        }
        if v["irqs"] != 0 {
            failures.push(format!(
                "{name}: CPU 1 took {} interrupts in the 3 s after enter returned: {}",
                v["irqs"], v["rows"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "kernel {}:\n{}",
        lab.kernel,
        failures.join("\n")
    );
}

#[test]
fn first_entry_is_quiet_on_6_12() {
    first_entries("6.12");
}

#[test]
fn first_entry_is_quiet_on_6_1() {
    first_entries("6.1");
}

#[test]
fn first_entry_is_quiet_on_6_12_rt() {
    first_entries("rt");
}

/// A SCHED_OTHER thread: what the fair server does to it (ticks of CPU 1 over 4 s while
/// it spins alone), and what enter says; then a failed enter (a CPU-time timer keeps the
/// tick: EAGAIN) leaves the thread as it was.
fn fair_class_and_failure(kernel: &str) {
    let Some(lab) = lab_kernel_or_skip(kernel) else {
        return;
    };
    let run = boot(
        &lab,
        &[
            Scenario::new("ticks_other", "isol-lab-guest ticks 1 4"),
            Scenario::new("enter_other", "isol-lab-guest isolate 1 0.2 --first"),
            Scenario::new(
                "enter_timer",
                format!("{RT_OFF}isol-lab-guest isolate 1 0.2 --first --fifo --timer"),
            ),
        ],
    );
    let ticks = scenario_json(&run, "ticks_other");
    let enter = scenario_json(&run, "enter_other");
    let timer = scenario_json(&run, "enter_timer");
    eprintln!(
        "lab {kernel} ({}): ticks_other {ticks}\nenter_other {enter}\nenter_timer {timer}",
        run.kernel
    );
    // The fair server, measured: a lone SCHED_OTHER spinner on CPU 1 for 4 s.
    let loc = ticks["loc"]["1"].as_u64().unwrap();
    let has_server = kernel != "6.1";
    let e = &enter["entries"][0];
    if has_server {
        assert!(
            loc >= 2,
            "{kernel}: the fair server should tick a fair task: {ticks}"
        );
        assert_eq!(e["ok"], false, "{kernel}: {enter}");
        assert_eq!(e["errno"], -libc::EAGAIN, "{enter}");
        assert!(
            e["error"].as_str().unwrap().contains("FAIR_SERVER"),
            "{enter}"
        );
    } else {
        assert!(loc <= 1, "{kernel}: no fair server, no ticks: {ticks}");
        assert_eq!(e["ok"], true, "{kernel}: {enter}");
    }
    // A failed enter puts the thread back: CPU 0 only, SCHED_OTHER, nothing locked.
    let t = &timer["entries"][0];
    assert_eq!(t["ok"], false, "{timer}");
    assert_eq!(t["errno"], -libc::EAGAIN, "{timer}");
    assert_eq!(t["state_after"], t["state_before"], "{timer}");
}

#[test]
fn fair_class_and_failed_enter_on_6_12() {
    fair_class_and_failure("6.12");
}

#[test]
fn fair_class_and_failed_enter_on_6_1() {
    fair_class_and_failure("6.1");
}

#[test]
fn fair_class_and_failed_enter_on_6_12_rt() {
    fair_class_and_failure("rt");
}

/// The API's promises beyond the first entry, in one boot of `kernel`.
fn promises(kernel: &str) {
    let Some(lab) = lab_kernel_or_skip(kernel) else {
        return;
    };
    let scenarios = [
        Scenario::new("rt_unthrottled", RT_OFF),
        Scenario::new("isolate_unpinned", "isol-lab-guest isolate 1 0.2 --no-pin"),
        Scenario::new("isolate_housekeeping", "isol-lab-guest isolate 0 0.2"),
        Scenario::new(
            "isolate_spin",
            "isol-lab-guest isolate 1 10 --wait spin --fifo",
        ),
        Scenario::new(
            "isolate_sleep",
            "isol-lab-guest isolate 1 10 --wait sleep --fifo",
        ),
        Scenario::new(
            "isolate_posix_timer",
            "isol-lab-guest isolate 1 0.2 --timer --fifo",
        ),
        // SCHED_FIFO: a fair thread is refused at once on kernels with a fair server; the
        // second, fair task on the CPU is then what keeps it from being quiet (SCHED).
        Scenario::new(
            "isolate_shared_cpu",
            "isol-lab-guest isolate 1 0.2 --share --fifo",
        ),
        Scenario::new(
            "isolate_repeat",
            "isol-lab-guest isolate 1 0.2 --repeat 10 --wait sleep --fifo",
        ),
    ];
    let run = boot(&lab, &scenarios);
    eprintln!(
        "lab {kernel}: kernel {}, {:.1} s",
        run.kernel,
        run.elapsed.as_secs_f64()
    );
    // EINVAL unless pinned to one nohz_full, domain-isolated CPU.
    for (name, want) in [
        ("isolate_unpinned", "not on exactly one"),
        ("isolate_housekeeping", "not a nohz_full CPU"),
    ] {
        let v = scenario_json(&run, name);
        let e = &v["entries"][0];
        assert_eq!(e["ok"], false, "{kernel} {name}: {v}");
        assert_eq!(e["errno"], -22, "{kernel} {name}: {v}");
        assert!(
            e["error"].as_str().unwrap().contains(want),
            "{kernel} {name}: {v}"
        );
    }
    // Both strategies enter, then nothing interrupts for 10 s.
    for name in ["isolate_spin", "isolate_sleep"] {
        let v = scenario_json(&run, name);
        let e = &v["entries"][0];
        assert_eq!(e["ok"], true, "{kernel} {name}: {v}");
        let r = &e["report"];
        assert_eq!(r["ticking"], false, "{kernel} {name}: {v}");
        // How long it took is a benchmark's business (bench/isolation.py), not a test's.
        assert!(
            r["time_to_quiet_ns"].as_u64().is_some(),
            "{kernel} {name}: {v}"
        );
        // Counted independently: /proc/interrupts over 10 s, read from CPU 0.
        assert!(v["window_s"].as_f64().unwrap() >= 10.0);
        assert_eq!(v["irqs"], 0, "{kernel} {name}: {v}");
        // And by the watcher's counter.
        assert_eq!(r["interruptions"], 0, "{kernel} {name}: {v}");
    }
    // EAGAIN naming what keeps the tick: a CPU-time timer, a second task (named).
    for (name, dep) in [
        ("isolate_posix_timer", "POSIX_TIMER"),
        ("isolate_shared_cpu", "SCHED"),
    ] {
        let v = scenario_json(&run, name);
        let e = &v["entries"][0];
        assert_eq!(e["ok"], false, "{kernel} {name}: {v}");
        assert_eq!(e["errno"], -11, "{kernel} {name}: {v}");
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains(&format!("{dep} dependency")),
            "{kernel} {name}: {msg}"
        );
    }
    let v = scenario_json(&run, "isolate_shared_cpu");
    assert!(
        v["entries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("isol-lab-guest/"),
        "{kernel}: {v}"
    );
    // Repeated entries all succeed.
    let v = scenario_json(&run, "isolate_repeat");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 10, "{kernel}: {v}");
    for e in entries {
        assert_eq!(e["ok"], true, "{kernel}: {v}");
        assert_eq!(e["report"]["ticking"], false, "{kernel}: {v}");
    }
}

#[test]
fn promises_hold_on_6_12() {
    promises("6.12");
}

#[test]
fn promises_hold_on_6_1() {
    promises("6.1");
}

#[test]
fn promises_hold_on_6_12_rt() {
    promises("rt");
}
