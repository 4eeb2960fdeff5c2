//! Lab tier: claims about ticks and isolation, proven on Debian's 6.12 cloud kernel booted
//! under QEMU with `nohz_full=1`. One boot serves every test in this file. Without a
//! provisioned lab these tests print "skipped: <reason>"; with CI=true they fail instead.

use std::sync::OnceLock;

use isol_lab::{lab_or_skip, Boot, Lab, Run, Scenario};

fn lab_run() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| {
        let lab = lab_or_skip()?;
        let scenarios = [
            Scenario::new("uname", "uname -r"),
            Scenario::new("nohz_full", "cat /sys/devices/system/cpu/nohz_full"),
            Scenario::new("check", "isol check --json"),
            // A SCHED_FIFO spinner, so RT throttling must not take the CPU away.
            Scenario::new(
                "rt_unthrottled",
                "echo -1 > /proc/sys/kernel/sched_rt_runtime_us",
            ),
            Scenario::new("ticks", "isol-lab-guest ticks --fifo 1 5 0"),
        ];
        let run = lab
            .run(&Boot::default(), &scenarios)
            .unwrap_or_else(|e| panic!("lab run failed: {e}"));
        eprintln!(
            "lab: kernel {}, {:.1} s, cmdline {}",
            run.kernel,
            run.elapsed.as_secs_f64(),
            run.cmdline
        );
        Some(run)
    })
    .as_ref()
}

fn lab_hz(lab: &Lab) -> u64 {
    let config =
        std::fs::read_to_string(lab.vmlinuz.with_file_name("config")).expect("lab kernel config");
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.parse().ok())
        .expect("CONFIG_HZ in the lab kernel config")
}

#[test]
fn lab_boots_the_provisioned_kernel() {
    let Some(run) = lab_run() else { return };
    let r = run.result("uname").unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.stdout.trim(), run.kernel);
}

#[test]
fn kernel_model_agrees_with_sysfs_nohz_full() {
    let Some(run) = lab_run() else { return };
    let sysfs = run.result("nohz_full").unwrap().stdout.trim().to_string();
    assert_eq!(sysfs, "1");
    let check = run.result("check").unwrap();
    let r = check.json();
    assert_eq!(r["target"]["source"], "nohz_full");
    assert_eq!(r["target"]["cpus"], sysfs);
    let sev = |id: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()["severity"]
            .clone()
    };
    for id in [
        "kernel.no_hz_full",
        "boot.nohz_full",
        "boot.domain_isolated",
        "boot.rcu_nocbs",
        "irq.effective_affinity",
    ] {
        assert_eq!(sev(id), "ok", "{id}: {check:?}");
    }
    assert_eq!(r["summary"]["fail"], 0);
    assert_eq!(check.status, r["exit_code"].as_i64().unwrap() as i32);
}

#[test]
fn busy_isolated_cpu_gets_no_ticks_while_cpu0_gets_hz() {
    let Some(run) = lab_run() else { return };
    let lab = Lab::open().unwrap();
    assert_eq!(run.result("rt_unthrottled").unwrap().status, 0);
    let t = run.result("ticks").unwrap();
    assert_eq!(t.status, 0, "{}", t.stdout);
    let j = t.json();
    let secs = j["seconds"].as_f64().unwrap();
    assert!(secs >= 5.0, "measured over {secs} s");
    // Independent source 1: /proc/interrupts.
    assert_eq!(
        j["loc"]["1"], 0,
        "local timer interrupts on the isolated CPU: {j}"
    );
    // Independent source 2: /proc/timer_list.
    assert_eq!(j["tick_stopped"], true, "{j}");
    assert_eq!(
        j["next_event_is_ktime_max"], true,
        "tick device still armed: {j}"
    );
    assert_eq!(j["next_event"].as_i64(), Some(i64::MAX));
    // The busy housekeeping CPU ticks at about HZ (the guest clock follows the host's).
    let hz = lab_hz(&lab) as f64;
    let rate = j["loc"]["0"].as_u64().unwrap() as f64 / secs;
    assert!(
        rate > 0.7 * hz && rate < 1.3 * hz,
        "CPU 0 ticked {rate:.0}/s, HZ={hz}"
    );
}
