//! `isol check --probe` on this machine's real kernel (host tier). The probe only runs
//! threads of its own, which end with it. This host may have no nohz_full CPU (then every
//! probed CPU must be found ticking, and named so); the lab tests the nohz_full verdicts on
//! three kernels (lab/tests/probe.rs).

mod common;

use common::{as_nobody, finding, http_get, is_root, isol, json};

/// One probe at a time: two would find each other's threads on the CPU.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The last online CPU, and whether it is nohz_full, read without isol.
fn last_cpu() -> Option<(u32, bool)> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    let last: u32 = online.trim().rsplit([',', '-']).next()?.parse().ok()?;
    if last == 0 {
        return None;
    }
    let nohz = std::fs::read_to_string("/sys/devices/system/cpu/nohz_full").unwrap_or_default();
    let nohz = isol::CpuSet::parse_list(nohz.trim()).unwrap_or_default();
    Some((last, nohz.contains(last)))
}

/// The CPU to probe (the last online one) and whether it is nohz_full; None, said, where
/// the probe cannot run (not root, one CPU).
fn probe_cpu() -> Option<(u32, bool)> {
    if !is_root() {
        eprintln!("skipped: the probe needs root");
        return None;
    }
    let found = last_cpu();
    if found.is_none() {
        eprintln!("skipped: one CPU only");
    }
    found
}

#[test]
fn the_probe_measures_the_host_and_names_why_it_ticks() {
    let Some((cpu, nohz_full)) = probe_cpu() else {
        return;
    };
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let c = cpu.to_string();
    // --probe-busy: a host's CPUs run other work now and then.
    let out = isol()
        .args([
            "check",
            "--cpus",
            &c,
            "--probe",
            "--probe-busy",
            "--probe-window",
            "0.5",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The cost is said before, and what it took after.
    assert!(err.contains(&format!("probing CPUs {c} from ")), "{err}");
    assert!(
        err.contains("s in all)") && err.contains("probed in "),
        "{err}"
    );
    let r = json(&out.stdout);
    assert_eq!(r["exit_code"], out.status.code().unwrap());
    let fifo = finding(&r, "probe.fifo");
    let other = finding(&r, "probe.other");
    eprintln!("host: {}\nhost: {}", fifo["summary"], other["summary"]);
    for f in [fifo, other] {
        assert_eq!(f["area"], "probe");
        let e = f["evidence"].to_string();
        assert!(
            e.contains("/proc/timer_list") && e.contains("/proc/interrupts"),
            "{f}"
        );
    }
    if nohz_full {
        eprintln!("host: CPU {cpu} is nohz_full here: the ticking verdict is not tested");
        return;
    }
    // Not nohz_full: the tick runs whatever runs there, and the probe says so.
    assert_eq!(fifo["severity"], "fail", "{fifo}");
    let s = fifo["summary"].as_str().unwrap();
    assert!(
        s.starts_with(&format!("CPU {cpu}: the tick kept running ("))
            && s.contains(&format!("CPU {cpu} is not nohz_full")),
        "{fifo}"
    );
    assert_eq!(fifo["fix"]["kind"], "boot");
    assert!(fifo["fix"]["text"]
        .as_str()
        .unwrap()
        .contains(&format!("nohz_full={cpu}")));
    assert_eq!(other["severity"], "warn", "{other}");
    assert_eq!(r["verdict"], "not ready");
    // Nothing is left behind: no thread of the probe's in any process.
    let left = std::process::Command::new("sh")
        .arg("-c")
        .arg("cat /proc/[0-9]*/task/*/comm 2>/dev/null | grep -c '^isol-probe' || true")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "0");
}

#[test]
fn without_root_the_probe_is_unknown_and_says_why() {
    let Some(out) = as_nobody(&["check", "--cpus", "1", "--probe", "--json"]) else {
        return;
    };
    let r = json(&out.stdout);
    for id in ["probe.fifo", "probe.other"] {
        let f = finding(&r, id);
        assert_eq!(f["severity"], "unknown", "{f}");
        let s = f["summary"].as_str().unwrap();
        assert!(
            s.starts_with("not probed: cannot read /proc/timer_list"),
            "{f}"
        );
        assert!(s.contains("run as root"), "{f}");
    }
}

#[test]
fn a_window_out_of_range_is_a_usage_error() {
    let out = isol()
        .args(["check", "--cpus", "1", "--probe", "--probe-window", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--probe-window 0: give seconds between 0.01 and 60"),
        "{err}"
    );
    // The probe's options need --probe.
    let out = isol().args(["check", "--probe-busy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// The node agent's form: `isol watch --metrics --probe` probes once, before it watches,
/// and serves the probe's findings with the checks' (docs/metrics.md).
#[test]
fn watch_serves_the_probe_with_readiness() {
    let Some((cpu, _)) = probe_cpu() else {
        return;
    };
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let port = 20000 + (std::process::id() % 20000) as u16;
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args([
            "watch",
            "--cpus",
            &cpu.to_string(),
            "--summary",
            "-d",
            "20",
            "--probe",
        ])
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard, far above the probe's few seconds.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut body = String::new();
    while std::time::Instant::now() < until {
        if let Some((_, b)) = http_get(port, "/metrics") {
            if b.contains("probe.other") {
                body = b;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // SIGTERM: the watch ends cleanly, its tracing instance removed.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("probed in "), "{err}");
    let t = isol::tracefs::Tracefs::locate(&isol::SysRoot::live()).unwrap();
    assert_eq!(t.stale_instances(), Vec::<String>::new());
    for id in ["probe.fifo", "probe.other"] {
        let series = format!("isol_check_severity{{check=\"{id}\",area=\"probe\"}} ");
        let line = body.lines().find(|l| l.starts_with(&series));
        let value: Option<u8> = line.and_then(|l| l.rsplit(' ').next()?.parse().ok());
        // 0 ok .. 3 fail: present, whatever this host's verdict.
        assert!(
            value.is_some_and(|v| v <= 3),
            "{id} not served:\n{body}\n{err}"
        );
    }
}
