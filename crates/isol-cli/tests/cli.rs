//! The `isol` command on this machine's real kernel (read-only) and on committed fixtures.

mod common;

use serde_json::Value;

use common::{as_nobody, finding, fixture, isol, json};

/// Whether the running kernel was built with NO_HZ_FULL, read independently of isol.
fn host_has_nohz_full() -> Option<bool> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.is_empty() {
        return None;
    }
    Some(text.lines().any(|l| l == "CONFIG_NO_HZ_FULL=y"))
}

#[test]
fn host_check_json_reports_no_hz_full_truthfully() {
    let out = isol().args(["check", "--json"]).output().unwrap();
    let code = out.status.code().unwrap();
    let r = json(&out.stdout);
    assert_eq!(r["schema"], "isol.check/v1");
    assert_eq!(r["exit_code"], code);
    assert!(r["findings"].as_array().unwrap().len() >= 25);
    let f = finding(&r, "kernel.no_hz_full");
    match host_has_nohz_full() {
        Some(false) => {
            assert_eq!(f["severity"], "fail");
            assert_eq!(f["fix"]["kind"], "kernel");
            assert_eq!(code, 2);
        }
        Some(true) => assert_eq!(f["severity"], "ok"),
        None => assert_eq!(f["severity"], "unknown"),
    }
    for f in r["findings"].as_array().unwrap() {
        assert!(["ok", "warn", "fail", "unknown"].contains(&f["severity"].as_str().unwrap()));
        assert!(
            !f["evidence"].as_array().unwrap().is_empty(),
            "{} has evidence",
            f["id"]
        );
        assert!(
            f["severity"] == "ok" || f["fix"].is_object(),
            "{} has a fix",
            f["id"]
        );
    }
}

#[test]
fn human_output_is_grouped_by_area() {
    let out = isol()
        .args(["check", "--root"])
        .arg(fixture("host-6.18"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for area in [
        "\nkernel\n",
        "\nboot\n",
        "\ncpu\n",
        "\nirq\n",
        "\ntasks\n",
        "\nservices\n",
        "\ntimers\n",
    ] {
        assert!(text.contains(area), "area header {area:?} in:\n{text}");
    }
    assert!(text.contains("FAIL  kernel.no_hz_full"));
    assert!(text.contains("fix (kernel): boot a kernel built with CONFIG_NO_HZ_FULL=y"));
    assert!(
        text.trim_end().ends_with("unknown"),
        "ends with the verdict line"
    );
}

#[test]
fn lab_fixture_is_isolated_and_ready() {
    let out = isol()
        .args(["check", "--json", "--root"])
        .arg(fixture("lab-6.12"))
        .output()
        .unwrap();
    let r = json(&out.stdout);
    assert_eq!(r["target"]["cpus"], "1");
    assert_eq!(r["target"]["source"], "nohz_full");
    assert_eq!(r["summary"]["fail"], 0);
    for id in ["boot.nohz_full", "boot.domain_isolated", "timers.tick"] {
        assert_eq!(finding(&r, id)["severity"], "ok", "{id}");
    }
    assert_eq!(
        out.status.code(),
        Some(1),
        "warnings remain (writeback, vmstat, RT throttling)"
    );
}

#[test]
fn usage_errors_are_one_line_and_exit_64() {
    for (args, needle) in [
        (vec!["check", "--cpus", "0-x"], "at position 2"),
        (vec!["check", "--cpus", "1-0"], "ends before it starts"),
        (
            vec!["check", "--cpus", "0-1"],
            "leaves no online housekeeping CPU",
        ),
        (vec!["check", "--cpus", "9"], "does not exist"),
        (vec!["check", "--cpus", ""], "empty"),
        // A non-ASCII digit is named whole, and a control character escaped.
        (vec!["check", "--cpus", "\u{661}"], "found '\u{661}'"),
        (
            vec!["check", "--cpus", "1\u{1b}[2J"],
            "unexpected '\\u{1b}'",
        ),
    ] {
        let out = isol()
            .args(&args)
            .arg("--root")
            .arg(fixture("lab-6.12"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "{err}");
    }
    isol().args(["check", "--bogus"]).assert().code(64);
    // A task that does not exist, before any tracing (so also without root).
    let out = isol()
        .args(["watch", "--pid", "2147483600", "-d", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("--pid 2147483600: no such task"), "{err}");
    isol()
        .args(["--root", "/nonexistent/dir", "check"])
        .assert()
        .code(64);
}

/// Help and version are output like any other: a full disk is an error (exit 70).
#[test]
fn help_and_version_to_a_full_disk_fail() {
    for arg in ["--help", "--version"] {
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("isol"))
            .arg(arg)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(70), "{arg}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("No space left"));
        isol().arg(arg).assert().success();
    }
}

#[test]
fn offline_cpu_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = dir.path().join("sys/devices/system/cpu");
    std::fs::create_dir_all(&cpu).unwrap();
    std::fs::write(cpu.join("possible"), "0-3\n").unwrap();
    std::fs::write(cpu.join("online"), "0-2\n").unwrap();
    let out = isol()
        .args(["check", "--cpus", "3", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CPU 3 is offline"));
}

#[test]
fn snapshot_of_the_host_replays_like_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("snap.tar.gz");
    let out = isol()
        .args(["snapshot", "-o"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("files"));
    let live = json(&isol().args(["check", "--json"]).output().unwrap().stdout);
    let replay = json(
        &isol()
            .args(["check", "--json", "--root"])
            .arg(&archive)
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(live["kernel"], replay["kernel"]);
    assert_eq!(live["target"], replay["target"]);
    // Configuration findings do not change between two reads a moment apart.
    for id in [
        "kernel.no_hz_full",
        "boot.nohz_full",
        "cpu.online",
        "irq.default_affinity",
        "services.workqueue",
    ] {
        assert_eq!(
            finding(&live, id)["severity"],
            finding(&replay, id)["severity"],
            "{id}"
        );
        assert_eq!(
            finding(&live, id)["evidence"],
            finding(&replay, id)["evidence"],
            "{id}"
        );
    }
}

#[test]
fn not_root_reads_degrade_to_unknown() {
    // Replays a manifest that says /proc/timer_list needed root, as it does for users.
    let src = fixture("host-6.18");
    let dir = tempfile::tempdir().unwrap();
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copy.success());
    std::fs::remove_file(dir.path().join("proc/timer_list")).unwrap();
    let manifest_path = dir.path().join("isol-snapshot.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    m["unreadable"]["/proc/timer_list"] =
        serde_json::json!({"kind": "needs root", "detail": "permission denied"});
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = isol()
        .args(["check", "--json", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    let r = json(&out.stdout);
    let f = finding(&r, "timers.tick");
    assert_eq!(f["severity"], "unknown");
    assert!(f["summary"].as_str().unwrap().contains("needs root"));
    assert_eq!(f["fix"]["text"], "run isol as root");
}

#[test]
fn as_an_unprivileged_user_root_only_files_are_unknown() {
    // Host tier: needs root to drop to `nobody` with setpriv; otherwise it says so.
    let Some(out) = as_nobody(&["check", "--json"]) else {
        return;
    };
    let r = json(&out.stdout);
    let f = finding(&r, "timers.tick");
    assert_eq!(f["severity"], "unknown", "/proc/timer_list is root-only");
    assert!(f["summary"].as_str().unwrap().contains("needs root"));
    assert!(out.status.code() != Some(101), "no panic");
}
