//! Hostile output and signals on the live system (host tier, root): watch and noise
//! asked to write where they must not, interrupted, or left with tracing instances, as a
//! local user would try.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{is_root, isol, text, wait_started, HANG};

fn instances() -> Vec<String> {
    std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("isol-"))
                .collect()
        })
        .unwrap_or_default()
}

fn own_instances(pid: u32) -> Vec<String> {
    let prefix = format!("isol-{pid}-");
    instances()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn spawn_watch(args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(["watch", "--cpus", "1", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let began = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if began.elapsed() > HANG {
            let _ = child.kill();
            panic!("isol watch did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_catchable_signal_removes_the_tracing_instance() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    for sig in [
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGPIPE,
    ] {
        let mut child = spawn_watch(&[]);
        let _stdout = wait_started(&mut child);
        assert_eq!(own_instances(child.id()).len(), 1);
        let _ = isol_sys::thread::signal_process(child.id() as i32, sig);
        let status = wait_bounded(&mut child);
        assert!(status.code().is_some(), "signal {sig}: {status:?}");
        assert!(
            own_instances(child.id()).is_empty(),
            "signal {sig} left an instance"
        );
    }
}

#[test]
fn watch_into_a_closed_pipe_ends_and_cleans_up() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut child = spawn_watch(&[]);
    let stdout = wait_started(&mut child);
    drop(stdout); // `| head -1`
                  // The summary line at the latest meets the closed pipe.
    let _ = isol_sys::thread::signal_process(child.id() as i32, libc::SIGINT);
    let status = wait_bounded(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(status.code(), Some(0) | Some(141)),
        "{status:?} {err}"
    );
    assert!(own_instances(child.id()).is_empty());
}

#[test]
fn record_refuses_directories_others_control() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // Owned by another user (who could plant links in it later).
    let theirs = work.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    // Writable by everyone.
    let open = work.path().join("open");
    std::fs::create_dir(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // A link to a directory.
    let link = work.path().join("link");
    std::os::unix::fs::symlink(&open, &link).unwrap();
    for (dir, why) in [
        (&theirs, "belongs to uid 65534"),
        (&open, "others may write"),
        (&link, "symbolic link"),
    ] {
        let out = isol()
            .args(["watch", "--cpus", "1", "-d", "1", "--record"])
            .arg(dir)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(70), "{err}");
        assert!(err.contains(why), "{err}");
        assert!(
            std::fs::read_dir(dir).unwrap().next().is_none(),
            "nothing written"
        );
    }
}

#[test]
fn a_live_watch_into_dev_full_fails_and_cleans_up() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(["watch", "--cpus", "1", "--json", "-d", "30"])
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(70), "{err}");
    assert!(err.contains("cannot write to standard output"), "{err}");
    assert!(own_instances(child.id()).is_empty());
}

#[test]
fn a_recording_that_fills_its_disk_fails_and_cleans_up() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k",
            "isol-test",
            mnt.path().to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a small tmpfs here");
        return;
    }
    // A busy CPU 1 fills 64 KiB of pages within seconds.
    let mut load = Command::new("taskset")
        .args(["-c", "1", "sh", "-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(["watch", "--cpus", "1", "--summary", "-d", "50", "--record"])
        .arg(mnt.path().join("rec"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child);
    let _ = load.kill();
    let _ = load.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = Command::new("umount").arg(mnt.path()).status();
    assert_eq!(status.code(), Some(70), "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert!(own_instances(child.id()).is_empty());
}
