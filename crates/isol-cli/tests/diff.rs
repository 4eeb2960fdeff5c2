//! `isol diff`: what differs between two machines, on the committed fixtures and copies of
//! them with one thing changed, and on snapshots.

mod common;

use serde_json::Value;

use common::{copy_tree, fixture, isol, json, text};

fn diff(args: &[&std::ffi::OsStr]) -> std::process::Output {
    isol().arg("diff").args(args).output().unwrap()
}

fn items(v: &Value) -> Vec<(String, String, String, String)> {
    v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["area"].as_str().unwrap().to_string(),
                d["item"].as_str().unwrap().to_string(),
                d["a"].as_str().unwrap().to_string(),
                d["b"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_host_against_the_lab() {
    let (host, lab) = (fixture("host-6.18"), fixture("lab-6.12"));
    let out = diff(&[host.as_os_str(), lab.as_os_str(), "--json".as_ref()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json(&out.stdout);
    assert_eq!(v["schema"], "isol.diff/v1");
    assert!(v["a"]["kernel"].as_str().unwrap().starts_with("6.18"));
    assert!(v["b"]["kernel"].as_str().unwrap().starts_with("6.12"));
    let all = items(&v);
    let has = |area: &str, item: &str, a: &str, b: &str| {
        assert!(
            all.iter()
                .any(|x| x == &(area.into(), item.into(), a.into(), b.into())),
            "no {area} {item} {a} -> {b} in {all:?}"
        );
    };
    has("kernel", "CONFIG_NO_HZ_FULL", "n", "y");
    has("boot", "nohz_full=", "-", "1");
    has("boot", "check boot.nohz_full", "fail", "ok");
    has("services", "kernel.watchdog_cpumask", "0-1", "0");
    has("irq", "default IRQ affinity", "0-1", "0");
    // Each difference names the checks it affects.
    let nohz = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["item"] == "nohz_full=")
        .unwrap();
    assert_eq!(nohz["checks"][0], "boot.nohz_full");
    // Grouped by area, in check order.
    let areas: Vec<&str> = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["area"].as_str().unwrap())
        .collect();
    let order = [
        "kernel", "boot", "cpu", "irq", "tasks", "services", "timers", "kubelet",
    ];
    let pos: Vec<usize> = areas
        .iter()
        .map(|a| order.iter().position(|o| o == a).unwrap())
        .collect();
    assert!(pos.windows(2).all(|w| w[0] <= w[1]), "{areas:?}");
    // The same in text: a table per area.
    let out = diff(&[host.as_os_str(), lab.as_os_str()]);
    let t = text(&out.stdout);
    for header in ["\nkernel\n", "\nboot\n", "\nservices\n"] {
        assert!(t.contains(header), "{t}");
    }
    assert!(t.contains("differences that matter for isolation"), "{t}");
}

/// A copy of the lab with one setting changed differs in that setting and the check it
/// affects, and nothing else.
#[test]
fn one_setting_changed_is_one_difference() {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&fixture("lab-6.12"), copy.path());
    std::fs::write(copy.path().join("proc/sys/kernel/timer_migration"), "0\n").unwrap();
    let lab = fixture("lab-6.12");
    let out = diff(&[lab.as_os_str(), copy.path().as_os_str(), "--json".as_ref()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let all = items(&json(&out.stdout));
    assert_eq!(
        all[0],
        (
            "services".into(),
            "kernel.timer_migration".into(),
            "1".into(),
            "0".into()
        )
    );
    assert!(
        all[1..]
            .iter()
            .all(|x| x.1 == "check services.timer_migration"),
        "{all:?}"
    );
}

/// A snapshot against itself, and a directory against its own snapshot: nothing differs.
#[test]
fn a_machine_against_itself_differs_in_nothing() {
    let lab = fixture("lab-6.12");
    let out = diff(&[lab.as_os_str(), lab.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("nothing that matters for isolation differs"));
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("lab.tar.gz");
    let out = isol()
        .arg("--root")
        .arg(&lab)
        .args(["snapshot", "-o"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = diff(&[snap.as_os_str(), snap.as_os_str(), "--json".as_ref()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(json(&out.stdout)["differences"]
        .as_array()
        .unwrap()
        .is_empty());
    let out = diff(&[lab.as_os_str(), snap.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

/// Sides are untrusted like `--root`: a link out of a tree, a missing file and a
/// non-archive are refused with exit 64, naming the side; the same machine twice and
/// `--root` are usage errors.
#[test]
fn bad_sides_are_refused() {
    let lab = fixture("lab-6.12");
    let dir = tempfile::tempdir().unwrap();
    let linked = dir.path().join("linked");
    copy_tree(&lab, &linked);
    std::os::unix::fs::symlink("/etc/passwd", linked.join("proc/cmdline.bad")).unwrap();
    std::fs::remove_file(linked.join("proc/cmdline")).unwrap();
    std::os::unix::fs::symlink("/proc/cmdline", linked.join("proc/cmdline")).unwrap();
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, "not an archive").unwrap();
    let missing = dir.path().join("missing");
    for bad in [&linked, &junk, &missing] {
        let out = diff(&[lab.as_os_str(), bad.as_os_str()]);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad:?}: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }
    assert_eq!(diff(&["-".as_ref(), "-".as_ref()]).status.code(), Some(64));
    let out = isol()
        .arg("--root")
        .arg(&lab)
        .arg("diff")
        .arg(&lab)
        .arg("-")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// `-` is this machine: against its own snapshot, the configuration does not differ.
#[test]
fn this_machine_against_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("host.tar.gz");
    let out = isol().args(["snapshot", "-o"]).arg(&snap).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = diff(&["-".as_ref(), snap.as_os_str(), "--json".as_ref()]);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        text(&out.stderr)
    );
    let v = json(&out.stdout);
    assert_eq!(v["a"]["label"], "- (this machine)");
    // What is read, not measured, is the same a moment later.
    for (area, item, a, b) in items(&v) {
        assert!(
            !["kernel", "boot"].contains(&area.as_str()) || item.starts_with("check "),
            "{area} {item}: {a} -> {b}"
        );
    }
}
