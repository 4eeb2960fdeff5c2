//! `isol watch`: replay of the committed recordings (unit tier), usage errors, and a short
//! live watch of this machine's CPU 1 (host tier, root only).

mod common;

use serde_json::Value;

use common::{as_nobody, assert_success, fixture, interrupted, is_root, isol, replay};

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn replay_prints_one_line_per_interruption_and_a_summary() {
    let text = replay(&[], "trace-host-6.18");
    assert!(text.lines().next().unwrap().contains("what ran"), "{text}");
    assert!(text.contains("local_timer  posix_timer_fn"), "{text}");
    assert!(text.contains("call_function_single: membarrier_private_expedited"));
    assert!(text.contains("isol-migrant/"));
    assert!(text.contains("Summary over"));
    assert!(text.contains("CPU 1: "));
    assert!(text.lines().all(|l| l == l.trim_end()), "trailing spaces");
}

#[test]
fn replay_json_lines_follow_the_schema() {
    let v = lines(replay(&["--json"], "trace-lab-6.12").as_bytes());
    assert_eq!(v[0]["type"], "start");
    assert_eq!(v[0]["schema"], "isol.watch/v1");
    assert_eq!(v[0]["cpus"], "1");
    let last = v.last().unwrap();
    assert_eq!(last["type"], "summary");
    let cpu1 = &last["summary"]["cpus"][0];
    assert_eq!(cpu1["cpu"], 1);
    let n = v.iter().filter(|l| l["type"] == "interruption").count() as u64;
    assert_eq!(cpu1["interruptions"].as_u64().unwrap(), n);
    assert!(cpu1["tick_kept"]["SCHED"].as_u64().unwrap() > 0);
    for l in &v[1..v.len() - 1] {
        let t = l["type"].as_str().unwrap();
        assert!(["interruption", "tick_stop", "lost"].contains(&t), "{l}");
        assert!(l["cpu"].is_u64());
    }
    // Interruption records carry kind, source and timing.
    let i = v.iter().find(|l| l["type"] == "interruption").unwrap();
    for f in [
        "start_ns",
        "duration_ns",
        "net_ns",
        "depth",
        "complete",
        "kind",
        "source",
    ] {
        assert!(!i[f].is_null(), "{f} missing in {i}");
    }
}

#[test]
fn summary_only_prints_the_table() {
    let text = replay(&["--summary"], "trace-host-6.18");
    assert!(!text.contains("time(s)"), "{text}");
    assert!(text.contains("kind"));
    assert!(text.contains("tick_nohz_handler"));
}

#[test]
fn usage_errors_say_what_to_do() {
    let cases: [(&[&str], &str); 3] = [
        (&["watch", "-d", "0s"], "more than zero"),
        (&["watch", "-d", "5 parsecs"], "unknown unit"),
        (
            &["watch", "--cpus", "0-1"],
            "leaves no online housekeeping CPU",
        ),
    ];
    for (args, want) in cases {
        let out = isol().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = isol()
        .arg("--root")
        .arg(fixture("host-6.18"))
        .args(["watch", "-d", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only works with --replay"));
    let out = isol()
        .args(["watch", "--replay", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70));
    assert!(String::from_utf8_lossy(&out.stderr).contains("isol watch --record DIR"));
}

#[test]
fn unprivileged_watch_says_it_needs_root() {
    let Some(out) = as_nobody(&["watch", "--cpus", "1", "-d", "1"]) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(err.contains("root"), "{err}");
}

#[test]
fn live_watch_of_cpu1_sees_the_tick_of_this_kernel() {
    // Host tier: root, and CPU 1 online. This kernel has no NO_HZ_FULL: a busy CPU 1 is
    // ticked at HZ, which watch must report as local timer interrupts.
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if !is_root() || !isol::CpuSet::parse_list(online.trim()).is_ok_and(|s| s.contains(1)) {
        eprintln!("skipped: needs root and CPU 1");
        return;
    }
    let mut spin = std::process::Command::new("taskset")
        .args(["-c", "1", "sh", "-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let out = isol()
        .args(["watch", "--cpus", "1", "-d", "1", "--json"])
        .output()
        .unwrap();
    let _ = spin.kill();
    let _ = spin.wait();
    assert_success(&out);
    let v = lines(&out.stdout);
    let ticks = v
        .iter()
        .filter(|l| l["type"] == "interruption" && l["kind"] == "local_timer")
        // The tick's own handler: other timers on CPU 1 (tasks of tests running alongside
        // sleeping there) are interruptions too, but not the tick.
        .filter(|l| {
            l["functions"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|f| f.as_str().is_some_and(|f| f.starts_with("tick_")))
            })
        })
        .count();
    let hz: f64 = isol::kernel::KernelModel::load(&isol::SysRoot::live())
        .config
        .ok()
        .and_then(|c| c.hz())
        .map(|h| h as f64)
        .unwrap_or(250.0);
    assert!(
        (ticks as f64) > 0.5 * hz && (ticks as f64) < 1.5 * hz,
        "{ticks} ticks in 1 s at HZ={hz}"
    );
    // The instance is gone afterwards.
    let t = isol::tracefs::Tracefs::locate(&isol::SysRoot::live()).unwrap();
    assert_eq!(t.stale_instances(), Vec::<String>::new());
}

#[test]
fn ctrl_c_ends_with_the_summary() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let out = interrupted(
        &["watch", "--cpus", "1", "--json"],
        std::time::Duration::from_millis(1500),
    );
    assert_success(&out);
    let v = lines(&out.stdout);
    assert_eq!(v[0]["type"], "start");
    assert_eq!(v.last().unwrap()["type"], "summary");
}
