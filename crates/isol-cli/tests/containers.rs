//! Host tier, with a real container runtime (Debian's runc): tasks in containers are named
//! by their pod, container and unit, from `/proc/PID/cgroup` and kubelet's log layout as
//! these tests lay it out; isol itself runs in a container.

mod common;
mod runc;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::{isol, text, wait_started};
use runc::{one_at_a_time, CgroupParents, Container, PodLogs, Spec, LOG_LINE};

/// A program that wakes every 10 ms for `secs` seconds.
fn waker(secs: u32) -> Vec<String> {
    vec![
        "python3".into(),
        "-c".into(),
        format!("import time\nfor _ in range({secs} * 100): time.sleep(0.01)"),
    ]
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    text(out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A program in a pod-shaped cgroup (cgroupfs driver, Burstable) and one in a unit-shaped
/// cgroup, both pinned to CPU 1 by their cpuset, interrupt a task already there: the watch
/// on the host started before them names the pod, its container and the unit. The
/// recording names them again once the containers and the log layout are gone; a
/// snapshot keeps their cgroups and kubelet's names, not the log.
#[test]
fn a_watch_names_the_pod_container_and_unit_of_each_task() {
    if !runc::usable() || !runc::have("python3") {
        return;
    }
    let _one = one_at_a_time();
    let uid = format!("{:08x}-1b2d-4e5f-8a9b-0123456789ab", std::process::id());
    let id = format!(
        "{:064x}",
        0xc0ffee_u64 << 32 | u64::from(std::process::id())
    );
    let unit = format!("isol-test-{}.service", std::process::id());
    let _logs = PodLogs::lay_out("isoltest", "du-0", &uid, "l1", &id);
    let pod_cgroup = format!("/kubepods/burstable/pod{uid}/{id}");
    let _parents = CgroupParents(vec![
        format!("/kubepods/burstable/pod{uid}"),
        "/kubepods/burstable".into(),
        "/kubepods".into(),
        format!("/system.slice/{unit}"),
    ]);
    let recording = tempfile::tempdir().unwrap();
    let rec = recording.path().join("rec");

    // The watch first, as users start it; then a task on CPU 1; then the containers.
    let mut watch = Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(["watch", "--cpus", "1", "--json", "-d", "60s", "--record"])
        .arg(&rec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = wait_started(&mut watch);
    // Drained as the watch writes: a full pipe would stall it.
    let drained = std::thread::spawn(move || {
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        rest
    });
    let mut resident = Command::new("taskset")
        .args([
            "-c",
            "1",
            "python3",
            "-c",
            "import time\nt = time.time()\nwhile time.time() - t < 30: pass",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut pod = Spec::new(&[]);
    pod.args = waker(3);
    pod.cgroups_path = Some(pod_cgroup.clone());
    pod.cpus = Some("1".into());
    let mut service = pod.clone();
    service.cgroups_path = Some(format!("/system.slice/{unit}"));
    let mut a = Container::start(&pod);
    let mut b = Container::start(&service);

    // While they run: a snapshot, from the housekeeping CPU (its thousands of reads on
    // CPU 1 would be interruptions of their own).
    std::thread::sleep(Duration::from_millis(1000));
    let snap = recording.path().join("snap.tar.gz");
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(assert_cmd::cargo::cargo_bin("isol"))
        .args(["snapshot", "-o"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (ra, rb) = (a.wait(), b.wait());
    assert!(ra.status.success() && rb.status.success(), "{ra:?} {rb:?}");
    let _ = resident.kill();
    let _ = resident.wait();
    let _ = isol_sys::thread::signal_process(watch.id() as i32, libc::SIGINT);
    let rest = drained.join().unwrap();
    let status = watch.wait().unwrap();
    let mut err = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");

    let lines = json_lines(&rest);
    let places: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "interruption" && l["kind"] == "task")
        .filter_map(|l| l.get("place"))
        .collect();
    let in_pod = places
        .iter()
        .find(|p| p["pod"]["uid"] == uid.as_str())
        .unwrap_or_else(|| {
            let tasks: Vec<String> = lines
                .iter()
                .filter(|l| l["kind"] == "task")
                .map(|l| format!("{}/{} {}", l["source"], l["number"], l["place"]))
                .collect();
            panic!("no interruption by the pod's task: {places:?}; tasks: {tasks:?}; {err}")
        });
    assert_eq!(in_pod["pod"]["namespace"], "isoltest");
    assert_eq!(in_pod["pod"]["name"], "du-0");
    assert_eq!(in_pod["pod"]["qos"], "burstable");
    assert_eq!(in_pod["container"]["id"], id.as_str());
    assert_eq!(in_pod["container"]["name"], "l1");
    assert!(
        places.iter().any(|p| p["unit"] == unit.as_str()),
        "no interruption by the unit's task: {places:?}"
    );

    // The recording names them as the live watch did, with the containers and the layout
    // gone.
    drop(a);
    drop(b);
    drop(_logs);
    let replay = isol()
        .args(["watch", "--replay"])
        .arg(&rec)
        .output()
        .unwrap();
    let shown = text(&replay.stdout);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert!(shown.contains("[isoltest/du-0 l1]"), "{shown}");
    assert!(shown.contains(&format!("[{unit}]")), "{shown}");

    // The snapshot: replayed, it names the tasks as the live system did (their cgroups
    // and kubelet's names are in it); the log is not.
    let replayed = isol()
        .args(["check", "--json", "--cpus", "1", "--root"])
        .arg(&snap)
        .output()
        .unwrap();
    let report = text(&replayed.stdout);
    assert!(report.contains("[isoltest/du-0 l1]"), "{report}");
    assert!(report.contains(&format!("[{unit}]")), "{report}");
    let unpacked = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&snap)
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(st.success());
    let all = Command::new("grep")
        .args(["-rl", LOG_LINE])
        .arg(unpacked.path())
        .output()
        .unwrap();
    assert!(
        all.stdout.is_empty(),
        "a log was captured: {}",
        text(&all.stdout)
    );
    let names = Command::new("grep")
        .args(["-rl", &format!("isoltest_du-0_{uid}")])
        .arg(unpacked.path())
        .output()
        .unwrap();
    assert!(
        !names.stdout.is_empty(),
        "kubelet's names are not in the snapshot"
    );
}

/// `isol run` in a pod's container says where the program lives.
#[test]
fn run_names_the_pod_its_program_runs_in() {
    if !runc::usable() {
        return;
    }
    let _one = one_at_a_time();
    let uid = format!("{:08x}-2b2d-4e5f-8a9b-0123456789ab", std::process::id());
    let id = format!("{:064x}", 0xbeef_u64 << 32 | u64::from(std::process::id()));
    let _logs = PodLogs::lay_out("isoltest", "run-0", &uid, "app", &id);
    let _parents = CgroupParents(vec![format!("/kubepods/pod{uid}"), "/kubepods".into()]);
    let mut spec = Spec::new(&[
        "/isol",
        "run",
        "--cpu",
        "1",
        "--allow-ticking",
        "--json",
        "--",
        "true",
    ]);
    spec.cgroups_path = Some(format!("/kubepods/pod{uid}/{id}"));
    let spec = spec
        .bind(assert_cmd::cargo::cargo_bin("isol"), "/isol", false)
        .bind("/var/log/pods", "/var/log/pods", false)
        .bind("/var/log/containers", "/var/log/containers", false);
    let out = Container::run(&spec);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["place"]["pod"]["uid"], uid.as_str(), "{v}");
    assert_eq!(v["place"]["pod"]["qos"], "guaranteed");
    assert_eq!(v["place"]["pod"]["name"], "run-0");
    assert_eq!(v["place"]["container"]["name"], "app");
}
