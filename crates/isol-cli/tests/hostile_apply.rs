//! The second round of hostile input, against what changes a machine: `--root` trees and
//! journals for apply and restore, and the directory `isol man` writes. Each test
//! reproduces one way isol was made to write where it must not, hang, or grow without
//! bound, and asserts it no longer does.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{copy_tree, fixture, isol, text, HANG};

/// Run the built `isol` with `args`; killed (and the test failed) past `limit`, a bound on
/// a hang far above any honest run. Returns its output and its peak resident memory (KiB).
// The child is reaped by wait4, which std's Child does not see.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str], limit: Duration) -> (Output, u64) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (
        std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut out, &mut b).unwrap();
            b
        }),
        std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut err, &mut b).unwrap();
            b
        }),
    );
    let began = Instant::now();
    let (status, peak_kib) = loop {
        if let Some(done) = isol_sys::process::try_wait_with_peak_rss(&child).unwrap() {
            break done;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isol {args:?} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: readers.0.join().unwrap(),
        stderr: readers.1.join().unwrap(),
    };
    (output, peak_kib)
}

fn lab_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("lab-6.12"), dir.path());
    dir
}

/// The private state directory `run/isol` of a tree, with `journal` holding `text`.
fn plant_journal(root: &Path, text: &str) -> std::path::PathBuf {
    let st = root.join("run/isol");
    std::fs::create_dir_all(&st).unwrap();
    std::fs::set_permissions(&st, std::fs::Permissions::from_mode(0o700)).unwrap();
    let j = st.join("journal");
    std::fs::write(&j, text).unwrap();
    std::fs::set_permissions(&j, std::fs::Permissions::from_mode(0o600)).unwrap();
    j
}

fn boot_id(root: &Path) -> String {
    std::fs::read_to_string(root.join("proc/sys/kernel/random/boot_id"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn header(root: &Path) -> String {
    format!(
        r#"{{"journal":"isol-apply/1","boot_id":"{}","cpus":"1","housekeeping":"0","created_unix":1}}"#,
        boot_id(root)
    )
}

/// `--root` naming the running system's `/` through a link is not taken for the live
/// system (restore would then have written `/run/isol` and the machine's settings).
#[test]
fn a_root_that_is_slash_through_a_link_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let link = t.path().join("machine");
    std::os::unix::fs::symlink("/", &link).unwrap();
    for args in [vec!["restore"], vec!["apply", "--cpus", "1", "--dry-run"]] {
        let out = isol()
            .arg("--root")
            .arg(&link)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("leave out --root"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// A journal that is a FIFO would block restore in open() for ever, deaf to SIGTERM: it
/// is refused before it is opened. (Inside a `--root` tree the up-front check refuses any
/// FIFO already; a state directory given with `--state-dir` is not part of the tree.)
#[test]
fn a_fifo_journal_is_refused_without_blocking() {
    let dir = lab_copy();
    let state = tempfile::tempdir().unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let j = state.path().join("journal");
    isol_sys::process::mkfifo(&j, 0o600).unwrap();
    let root = dir.path().to_str().unwrap();
    let sd = state.path().to_str().unwrap();
    for args in [
        vec!["--root", root, "restore", "--state-dir", sd],
        vec!["--root", root, "apply", "--cpus", "1", "--state-dir", sd],
    ] {
        let (out, _) = run_measured(&args, HANG);
        assert_eq!(
            out.status.code(),
            Some(70),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("FIFO"), "{}", text(&out.stderr));
    }
}

/// A journal naming a file apply never writes is refused whole; the file keeps its bytes.
#[test]
fn a_journal_naming_other_files_is_refused_and_nothing_written() {
    let dir = lab_copy();
    let r = dir.path();
    std::fs::write(r.join("proc/sys/kernel/core_pattern"), "core\n").unwrap();
    let line = r#"{"setting":{"kind":"file","path":"/proc/sys/kernel/core_pattern","format":"word"},"old":"|/tmp/evil","new":"core","why":"","fixes":null}"#;
    plant_journal(r, &format!("{}\n{line}\n", header(r)));
    let out = isol()
        .args(["--root", r.to_str().unwrap(), "restore", "--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a file apply never writes"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(r.join("proc/sys/kernel/core_pattern")).unwrap(),
        "core\n"
    );
}

/// A journal of 400,000 changes is restored as a stream: memory stays flat (it took
/// 217 MB when the journal was read whole), and the JSON names every step.
#[test]
fn a_long_journal_is_restored_in_bounded_memory() {
    let dir = lab_copy();
    let r = dir.path();
    let now = std::fs::read_to_string(r.join("proc/sys/vm/stat_interval")).unwrap();
    let now = now.trim();
    let line = format!(
        r#"{{"setting":{{"kind":"file","path":"/proc/sys/vm/stat_interval","format":"word"}},"old":"{now}","new":"{now}","why":"","fixes":null}}"#
    );
    const LINES: usize = 400_000;
    // Written as a stream: this test's own memory is counted in the child's peak (fork).
    let j = plant_journal(r, &format!("{}\n", header(r)));
    let mut w = std::io::BufWriter::new(std::fs::OpenOptions::new().append(true).open(&j).unwrap());
    for _ in 0..LINES {
        std::io::Write::write_all(&mut w, format!("{line}\n").as_bytes()).unwrap();
    }
    std::io::Write::flush(&mut w).unwrap();
    drop(w);
    let (out, peak_kib) = run_measured(
        &["--root", r.to_str().unwrap(), "restore", "--json"],
        Duration::from_secs(600),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["steps"].as_array().unwrap().len(), LINES);
    assert_eq!(doc["counts"]["not_changed"], LINES);
    assert!(!r.join("run/isol/journal").exists());
    eprintln!(
        "restore of {LINES} changes: peak {} MiB resident",
        peak_kib >> 10
    );
    assert!(
        peak_kib < 48 << 10,
        "restore of {LINES} changes held {peak_kib} KiB"
    );
}

/// `isol man DIR` creates each page `O_EXCL | O_NOFOLLOW`: a link planted in DIR is not
/// written through (it once overwrote a file as root).
#[test]
fn man_pages_are_not_written_through_a_planted_link() {
    let t = tempfile::tempdir().unwrap();
    let scratch = t.path().join("scratch");
    std::fs::write(&scratch, "mine\n").unwrap();
    let dir = t.path().join("man");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&scratch, dir.join("isol.1")).unwrap();
    let out = isol().arg("man").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(70), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&scratch).unwrap(), "mine\n");
    // A new directory gets every page.
    let fresh = t.path().join("fresh/man1");
    isol().arg("man").arg(&fresh).assert().success();
    assert!(fresh.join("isol.1").is_file() && fresh.join("isol-run.1").is_file());
}
