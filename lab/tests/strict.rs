//! Strict mode on every lab kernel, mirroring the v16 selftests: a worker created on CPU 0
//! enters isolation on nohz_full CPU 1 (pinned, SCHED_FIFO) in strict mode, and then:
//! a system call kills the process with the violation printed (Kill); runs the chosen
//! signal's handler with isolation off and then the call, which succeeds (Signal); or is
//! reported and runs (Report). `_exit` while strict is allowed; leaving isolation and then
//! writing is no violation; strict mode armed costs CPU 1 nothing over 10 s; a bad signal
//! and a nested enter are refused with nothing left armed; touching an unfaulted page of a
//! file mapping is a violation naming its address.

use std::sync::Mutex;

use isol_lab::{lab_kernel_or_skip, Boot, Run, Scenario};

/// One guest at a time: TCG guests share the host's two CPUs.
static BOOTS: Mutex<()> = Mutex::new(());

const RT_OFF: &str = "echo -1 > /proc/sys/kernel/sched_rt_runtime_us; ";

fn json(run: &Run, name: &str, status: i32) -> serde_json::Value {
    let r = run.result(name).unwrap();
    assert_eq!(r.status, status, "{} {name}: {}", run.kernel, r.stdout);
    let v = r
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("{} {name}: no JSON:\n{}", run.kernel, r.stdout));
    eprintln!("lab {}: {name}: {v}", run.kernel);
    v
}

fn strict_mode(kernel: &str) {
    let Some(lab) = lab_kernel_or_skip(kernel) else {
        return;
    };
    let scenarios: Vec<Scenario> = [
        ("after", "after 1 10"),
        ("kill", "kill 1 0.5"),
        ("signal", "signal 1 0.5"),
        ("report", "report 1 0.5"),
        ("exit", "exit 1 0.5"),
        ("badsignal", "badsignal 1 0.2"),
        ("nested", "nested 1 0.2"),
        ("fault", "fault 1 0.2"),
        ("faultkill", "faultkill 1 0.2"),
    ]
    .iter()
    .map(|(name, args)| Scenario::new(*name, format!("{RT_OFF}isol-lab-guest strict {args}")))
    .chain(["tlb", "tlbstrict", "task"].iter().map(|m| {
        Scenario::new(
            format!("notify_{m}"),
            format!("{RT_OFF}isol-lab-guest notify {m} 1"),
        )
    }))
    .chain(
        [("timer", ""), ("write", ""), ("write_sleep", "--sleep")]
            .iter()
            .map(|(name, flag)| {
                let mode = name.trim_end_matches("_sleep");
                Scenario::new(
                    format!("requiet_{name}"),
                    format!("{RT_OFF}isol-lab-guest requiet {mode} 1 {flag}"),
                )
            }),
    )
    .collect();
    let run = {
        let _one = BOOTS.lock().unwrap_or_else(|p| p.into_inner());
        lab.run(&Boot::default(), &scenarios)
            .unwrap_or_else(|e| panic!("{kernel}: lab run failed: {e}"))
    };
    for s in &scenarios {
        let r = run.result(&s.name).unwrap();
        eprintln!(
            "lab {kernel}: {} (exit {}):\n{}",
            s.name,
            r.status,
            r.stdout.trim_end()
        );
    }

    // Armed and doing nothing forbidden: CPU 1 takes no interrupt in 10 s (counted from
    // CPU 0 and by the library); leaving isolation, then writing, is no violation.
    let v = json(&run, "after", 0);
    assert_eq!(v["ok"], true, "{kernel}: {v}");
    assert!(v["window_s"].as_f64().unwrap() >= 10.0, "{kernel}: {v}");
    assert_eq!(
        v["irqs"], 0,
        "{kernel}: strict mode armed disturbed CPU 1: {v}"
    );
    assert_eq!(v["isolated_irqs"], 0, "{kernel}: {v}");
    assert_eq!(v["write_ret"], 1, "{kernel}: {v}");
    assert_eq!(v["violations_after"], 0, "{kernel}: {v}");
    assert_eq!(v["report"]["violations"], 0, "{kernel}: {v}");

    // Kill: dead by SIGKILL (the shell's 137), the violation named on stderr.
    let r = run.result("kill").unwrap();
    assert_eq!(r.status, 137, "{kernel} kill: {}", r.stdout);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("isol: strict mode:"))
        .unwrap_or_else(|| panic!("{kernel} kill: no violation line:\n{}", r.stdout));
    assert!(line.contains("getppid (110)"), "{kernel}: {line}");
    assert!(
        line.contains("isolated on CPU 1; killed"),
        "{kernel}: {line}"
    );

    // Signal: the handler ran first, with isolation off (its own call was no violation),
    // then the trapped write ran and returned its byte count.
    let v = json(&run, "signal", 0);
    assert_eq!(v["handled"], true, "{kernel}: {v}");
    assert_eq!(v["handler_saw_violation"], true, "{kernel}: {v}");
    assert_eq!(v["handler_syscall_ok"], true, "{kernel}: {v}");
    assert_eq!(v["write_ret"], 1, "{kernel}: {v}");
    assert_eq!(v["report"]["violations"], 1, "{kernel}: {v}");
    assert_eq!(v["report"]["violation"]["name"], "write", "{kernel}: {v}");

    // Report: the call ran (the right parent pid) and the report names it.
    let v = json(&run, "report", 0);
    assert_eq!(v["ppid_right"], true, "{kernel}: {v}");
    assert_eq!(v["report"]["violations"], 1, "{kernel}: {v}");
    assert_eq!(v["report"]["violation"]["name"], "getppid", "{kernel}: {v}");
    assert_eq!(v["report"]["violation"]["cpu"], 1, "{kernel}: {v}");

    // _exit while strict: allowed, no violation printed.
    let r = run.result("exit").unwrap();
    assert_eq!(r.status, 7, "{kernel} exit: {}", r.stdout);
    assert!(!r.stdout.contains("isol: strict"), "{kernel}: {}", r.stdout);

    // Bad input: refused before anything changed, nothing armed (a call afterwards runs).
    let v = json(&run, "badsignal", 0);
    assert_eq!(v["ok"], false, "{kernel}: {v}");
    assert_eq!(v["errno"], -22, "{kernel}: {v}");
    assert!(
        v["error"].as_str().unwrap().contains("signal 1000"),
        "{kernel}: {v}"
    );
    assert_eq!(v["violations"], 0, "{kernel}: {v}");
    assert!(v["ppid"].as_i64().unwrap() > 0, "{kernel}: {v}");

    // Nested: entering again while isolated is itself a system call (reported), and is
    // refused (EBUSY: the CPU has its isolated thread); the outer isolation exits cleanly.
    let v = json(&run, "nested", 0);
    assert_eq!(v["nested_errno"], -16, "{kernel}: {v}");
    assert!(
        v["nested_error"]
            .as_str()
            .unwrap()
            .contains("already has an isolated thread"),
        "{kernel}: {v}"
    );
    assert_eq!(v["report"]["violations"], 1, "{kernel}: {v}");

    // Remote notification: a TLB shootdown from a sibling thread and another process's
    // threads arriving on the CPU are signalled to the task, with what and who.
    for name in ["notify_tlb", "notify_tlbstrict"] {
        let v = json(&run, name, 0);
        assert_eq!(v["notified"], true, "{kernel} {name}: {v}");
        assert_eq!(v["notified_by"][0], "ipi", "{kernel} {name}: {v}");
        // Notification ends strict mode: the handler and its return ran, no violation.
        assert_eq!(v["violations"], 0, "{kernel} {name}: {v}");
    }
    let v = json(&run, "notify_task", 0);
    assert_eq!(v["notified"], true, "{kernel}: {v}");
    let causes = v["report"]["by_cause"].to_string();
    assert!(
        causes.contains("isol-"),
        "{kernel}: the other process is named: {v}"
    );

    // Re-quiet: arming a timer or writing a file returns once the CPU is quiet again, and
    // the CPU then takes nothing for 3 s.
    for name in ["requiet_timer", "requiet_write", "requiet_write_sleep"] {
        let v = json(&run, name, 0);
        assert_eq!(v["ok"], true, "{kernel} {name}: {v}");
        assert!(v["ret"].as_i64().unwrap() >= 0, "{kernel} {name}: {v}");
        let r = &v["report"];
        assert_eq!(r["requiet_calls"], 1, "{kernel} {name}: {v}");
        assert_eq!(r["requiet_timeouts"], 0, "{kernel} {name}: {v}");
        assert!(
            r["requiet_ns"].as_u64().unwrap() > 0,
            "{kernel} {name}: {v}"
        );
        assert_eq!(v["irqs_after"], 0, "{kernel} {name}: {v}");
        // Nothing counted after the call returned, and the call itself is counted apart.
        assert_eq!(
            v["counted_after"], v["counted_at_return"],
            "{kernel} {name}: {v}"
        );
        assert_eq!(r["interruptions"], 0, "{kernel} {name}: {v}");
        // Isolated from enter to exit: a re-wait keeps the isolation's quiet time (the
        // scenario lasts about 3.5 s).
        let isolated = r["isolated_ns"].as_u64().unwrap();
        assert!(isolated < 30_000_000_000, "{kernel} {name}: {v}");
    }

    // A page fault: touching an unfaulted page of a file mapping, reported with its
    // address (Report), or fatal (Kill).
    let v = json(&run, "fault", 0);
    assert_eq!(v["report"]["violations"], 1, "{kernel}: {v}");
    let f = &v["report"]["violation"];
    assert_eq!(f["kind"], "page_fault", "{kernel}: {v}");
    assert_eq!(f["fault_address"], v["mapping"], "{kernel}: {v}");
    assert_eq!(v["byte"], 0, "{kernel}: {v}");
    let r = run.result("faultkill").unwrap();
    assert_eq!(r.status, 137, "{kernel} faultkill: {}", r.stdout);
    assert!(
        r.stdout.contains("took a page fault at 0x") && r.stdout.contains("; killed"),
        "{kernel} faultkill: {}",
        r.stdout
    );
}

#[test]
fn strict_mode_on_6_12() {
    strict_mode("6.12");
}

#[test]
fn strict_mode_on_6_1() {
    strict_mode("6.1");
}

#[test]
fn strict_mode_on_6_12_rt() {
    strict_mode("rt");
}
