//! Host tier for `isol watch`: on this machine's real kernel, interruptions provoked on
//! CPU 1 on purpose (an IPI from CPU 0, a POSIX timer on CPU 1, a workqueue item, a task
//! moved onto CPU 1) are each reported with the right kind and culprit, and the recording
//! of the watch replays to exactly the same records.
//!
//! Needs root and CPU 1; tracefs is mounted for the test if it is not, and unmounted after.
//! Without root the test prints "skipped: <reason>" (with CI=true it fails instead).
//! `ISOL_UPDATE_FIXTURES=1` copies the recording to tests/fixtures/trace-host-<release>.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use isol::watch::{self, Watch, WatchOptions};
use isol::{CpuSet, SysRoot};
use isol_lab::expect::assert_provocations_named;
use isol_lab::host::tracing as host_tracing;

#[test]
fn provoked_interruptions_are_named_and_replay_identically() {
    let Some(_tracing) = host_tracing() else {
        return;
    };
    let guest = env!("CARGO_BIN_EXE_isol-lab-guest");
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("watching");
    // The resident starts spinning first, so the watch knows it; provoking starts once the
    // watch has started.
    let mut child = Command::new(guest)
        .args(["provoke", "1", "300", "--go"])
        .arg(&go)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start isol-lab-guest provoke");
    std::thread::sleep(Duration::from_millis(500));
    isol::pin_current_thread(&CpuSet::from_iter([0])).expect("pin to CPU 0");
    let rec = dir.path().join("rec");
    let mut opts = WatchOptions::new(CpuSet::from_iter([1]));
    opts.record = Some(rec.clone());
    opts.note = "host test: isol-lab-guest provoke 1 on a resident spinner".into();
    let mut watch = Watch::start(&SysRoot::live(), opts).expect("start watching CPU 1");
    std::fs::write(&go, "").unwrap();
    let mut live = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        live.extend(watch.poll().expect("poll"));
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    live.extend(watch.stop().expect("stop"));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let prov: serde_json::Value = serde_json::from_str(out.trim()).expect("provoke JSON");
    assert_eq!(prov["membarrier"]["ok"], true, "{prov}");
    assert_eq!(prov["stat_refresh"], true, "{prov}");

    assert_provocations_named(&live, &prov);

    let replayed = watch::replay(&rec, None).expect("replay the recording");
    // Live records come in per-poll batches, each sorted by start time; a replay is one
    // batch. The same records must come out.
    let key = |r: &isol::interrupt::Record| (r.at_ns(), serde_json::to_string(r).unwrap());
    let mut a: Vec<_> = live.iter().map(key).collect();
    let mut b: Vec<_> = replayed.records.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(b.len(), a.len());
    assert!(a == b, "replay differs from the live decode");

    if std::env::var_os("ISOL_UPDATE_FIXTURES").is_some() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let major: String = release.split('.').take(2).collect::<Vec<_>>().join(".");
        let to = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(format!("trace-host-{major}"));
        copy_dir(&rec, &to);
        std::fs::write(to.join("provoke.json"), format!("{prov}\n")).unwrap();
        eprintln!("updated {}", to.display());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &dst).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
