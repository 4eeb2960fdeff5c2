//! Hostile input and hostile output, as a stranger's snapshot or a local user would bring
//! them: each test reproduces one way isol was once made to leak a file, write outside its
//! place, hang, grow without bound or panic, and asserts it no longer does.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{as_nobody, copy_tree, fixture, isol, text, HANG};

/// A marker no real kernel file contains: if it shows up in isol's output, isol read a
/// file it must not read.
const SECRET: &str = "SECRET-isol-hostile-7f3a";

/// The most memory (address space) a refusal may use.
const MEMORY_CAP: u64 = 1 << 30;

/// Run the built `isol` with `args`, its temporary files in `tmp`, its address space capped
/// at [`MEMORY_CAP`]; killed (and the test failed) if it runs past `limit`, which is a bound
/// on a hang, far above any honest run.
fn run_capped(args: &[&str], tmp: &Path, limit: Duration) -> Output {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("isol"));
    cmd.args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    isol_sys::process::limit_address_space(&mut cmd, MEMORY_CAP);
    let mut child = cmd.spawn().unwrap();
    let began = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "isol {args:?} still running after {limit:?}: it hangs\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Assert that `out` exited with `code`, saying `word` on stderr.
fn assert_exit(out: &Output, code: i32, word: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(word), "{err}");
}

/// Assert a refusal: exit 64, one line on stderr naming `member` and `why`, no secret
/// anywhere, no panic.
fn assert_refused(out: &Output, member: &str, why: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(member), "names {member}: {err}");
    assert!(err.contains(why), "says {why}: {err}");
    assert!(!text(&out.stdout).contains(SECRET) && !err.contains(SECRET));
}

fn assert_empty_dir(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A gzip'd tar builder, with the real host fixture's files as a base.
struct Archive {
    tar: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
}

impl Archive {
    fn new() -> Archive {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        Archive {
            tar: tar::Builder::new(gz),
        }
    }

    /// Every file of a fixture, except `skip`.
    fn with_fixture(mut self, name: &str, skip: &str) -> Archive {
        let base = fixture(name);
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(&base).unwrap().to_str().unwrap().to_string();
                if p.is_dir() {
                    stack.push(p);
                } else if rel != skip {
                    self = self.file(&rel, &std::fs::read(&p).unwrap());
                }
            }
        }
        self
    }

    fn header(ty: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(0o644);
        h.set_size(size);
        h
    }

    fn file(mut self, name: &str, data: &[u8]) -> Archive {
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64);
        self.tar.append_data(&mut h, name, data).unwrap();
        self
    }

    /// A member whose name the tar crate would refuse to write (`..`): set by hand.
    fn raw_name(mut self, name: &str, data: &[u8]) -> Archive {
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.tar.append(&h, data).unwrap();
        self
    }

    fn link(mut self, ty: tar::EntryType, name: &str, target: &str) -> Archive {
        let mut h = Self::header(ty, 0);
        self.tar.append_link(&mut h, name, target).unwrap();
        self
    }

    fn special(mut self, ty: tar::EntryType, name: &str) -> Archive {
        let mut h = Self::header(ty, 0);
        self.tar
            .append_data(&mut h, name, std::io::empty())
            .unwrap();
        self
    }

    /// A member whose header claims `size` bytes of zeros, streamed (never in memory).
    fn zeros(mut self, name: &str, size: u64) -> Archive {
        let mut h = Self::header(tar::EntryType::Regular, size);
        self.tar
            .append_data(&mut h, name, std::io::repeat(0).take(size))
            .unwrap();
        self
    }

    fn write(self, path: &Path) -> PathBuf {
        let bytes = self.tar.into_inner().unwrap().finish().unwrap();
        std::fs::write(path, bytes).unwrap();
        path.to_path_buf()
    }
}

fn clocksource() -> &'static str {
    "sys/devices/system/clocksource/clocksource0/current_clocksource"
}

/// A file outside any captured tree holding the secret.
fn secret_file(dir: &Path) -> PathBuf {
    let p = dir.join("shadow");
    std::fs::write(&p, format!("root:{SECRET}:20228:0:99999:7:::\n")).unwrap();
    p
}

#[test]
fn a_snapshot_member_linked_to_a_secret_is_refused_not_printed_or_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let secret = secret_file(work.path());
    for (ty, target) in [
        (tar::EntryType::Symlink, secret.to_str().unwrap()),
        (tar::EntryType::Symlink, "/etc/shadow"),
        (tar::EntryType::Link, secret.to_str().unwrap()),
    ] {
        let a = Archive::new()
            .with_fixture("host-6.18", clocksource())
            .link(ty, clocksource(), target)
            .write(&work.path().join("evil.tar.gz"));
        let a = a.to_str().unwrap();
        let out = run_capped(&["--root", a, "check", "-v"], tmp.path(), HANG);
        assert_refused(&out, "current_clocksource", "link");
        let copy = work.path().join("copy.tar.gz");
        let out = run_capped(
            &["--root", a, "snapshot", "-o", copy.to_str().unwrap()],
            tmp.path(),
            HANG,
        );
        assert_refused(&out, "current_clocksource", "link");
        assert!(!copy.exists(), "no archive is written from a refused one");
        assert_empty_dir(tmp.path());
    }
    // The same link in a directory given as --root.
    let dir = work.path().join("tree");
    copy_tree(&fixture("host-6.18"), &dir);
    let member = dir.join(clocksource());
    std::fs::remove_file(&member).unwrap();
    std::os::unix::fs::symlink(&secret, &member).unwrap();
    let out = run_capped(
        &["--root", dir.to_str().unwrap(), "check", "-v"],
        tmp.path(),
        HANG,
    );
    assert_refused(&out, "current_clocksource", "symbolic link");
}

#[test]
fn paths_that_climb_out_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // A manifest listing naming `..`.
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("host-6.18/isol-snapshot.json")).unwrap())
            .unwrap();
    m["listings"]["/proc"] = serde_json::json!(["../../etc", "1"]);
    let a = Archive::new()
        .with_fixture("host-6.18", "isol-snapshot.json")
        .file("isol-snapshot.json", m.to_string().as_bytes())
        .write(&work.path().join("listing.tar.gz"));
    let out = run_capped(&["--root", a.to_str().unwrap(), "check"], tmp.path(), HANG);
    assert_refused(&out, "listings", "not a plain file name");
    // A member named with `..`.
    let a = Archive::new()
        .with_fixture("host-6.18", "")
        .raw_name("proc/../../escape", b"x")
        .write(&work.path().join("dotdot.tar.gz"));
    let out = run_capped(&["--root", a.to_str().unwrap(), "check"], tmp.path(), HANG);
    assert_refused(&out, "escape", "..");
    // A mount table placing cgroups and tracefs outside the tree: whatever isol then reads
    // stays inside it.
    let outside = work.path().join("outside");
    std::fs::create_dir_all(outside.join("events")).unwrap();
    for f in [
        "cpuset.cpus.effective",
        "cgroup.procs",
        "events/header_page",
    ] {
        std::fs::write(outside.join(f), SECRET).unwrap();
    }
    let climb = format!("/../../../../../..{}", outside.display());
    let dir = work.path().join("tree");
    copy_tree(&fixture("host-6.18"), &dir);
    std::fs::write(
        dir.join("proc/mounts"),
        format!("cgroup2 {climb} cgroup2 rw 0 0\ntracefs {climb} tracefs rw 0 0\n"),
    )
    .unwrap();
    let out = run_capped(
        &["--root", dir.to_str().unwrap(), "check", "-v", "--json"],
        tmp.path(),
        HANG,
    );
    assert!(
        out.status.code().is_some_and(|c| c <= 2),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains(SECRET), "read outside the tree");
}

#[test]
fn devices_fifos_bombs_and_deep_paths_are_refused_quickly_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let base = || Archive::new().with_fixture("host-6.18", clocksource());
    let cases = [
        (
            base().link(tar::EntryType::Symlink, clocksource(), "/dev/zero"),
            "current_clocksource",
            "symbolic link",
        ),
        (
            base().special(tar::EntryType::Fifo, clocksource()),
            "current_clocksource",
            "FIFO",
        ),
        (
            base().special(tar::EntryType::Char, clocksource()),
            "current_clocksource",
            "device node",
        ),
        // One member claiming 1 GiB: refused on its header, nothing inflated.
        (base().zeros("proc/bomb", 1 << 30), "proc/bomb", "MiB"),
        // Many members, each under the file cap, together over the total cap.
        (
            (0..5).fold(base(), |a, i| a.zeros(&format!("proc/bomb{i}"), 60 << 20)),
            "proc/bomb4",
            "more than 256 MiB",
        ),
        (
            base().file(&("d/".repeat(2000) + "f"), b"x"),
            "d/d/d",
            "levels deep",
        ),
    ];
    for (i, (archive, member, why)) in cases.into_iter().enumerate() {
        let a = archive.write(&work.path().join(format!("case{i}.tar.gz")));
        let out = run_capped(&["--root", a.to_str().unwrap(), "check"], tmp.path(), HANG);
        assert_refused(&out, member, why);
        assert_empty_dir(tmp.path());
    }
}

#[test]
fn a_signal_during_extraction_leaves_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let a = (0..4)
        .fold(Archive::new().with_fixture("host-6.18", ""), |a, i| {
            a.zeros(&format!("proc/big{i}"), 60 << 20)
        })
        .write(&work.path().join("big.tar.gz"));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let child = Command::new(assert_cmd::cargo::cargo_bin("isol"))
            .args(["--root", a.to_str().unwrap(), "check"])
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until extraction has begun, then signal.
        let began = Instant::now();
        while std::fs::read_dir(tmp.path()).unwrap().next().is_none() && began.elapsed() < HANG {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = isol_sys::thread::signal_process(child.id() as i32, sig);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.code().is_some(),
            "exited, not killed: {:?}",
            out.status
        );
        assert_empty_dir(tmp.path());
    }
}

#[test]
fn compare_files_that_hang_or_never_end_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let fifo = work.path().join("fifo.json");
    isol_sys::process::mkfifo(&fifo, 0o644).unwrap();
    let big = work.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    for (file, why) in [
        (fifo.to_str().unwrap(), "FIFO"),
        ("/dev/zero", "device"),
        (big.to_str().unwrap(), "more than the 64 MiB"),
    ] {
        let out = run_capped(
            &["noise", "--cpus", "1", "-d", "1", "--compare", file],
            tmp.path(),
            HANG,
        );
        assert_exit(&out, 64, why);
    }
}

/// A copy of a committed recording to tamper with.
fn recording_copy(work: &Path) -> PathBuf {
    let dir = work.join("rec");
    copy_tree(&fixture("trace-lab-6.12"), &dir);
    dir
}

fn tracing(dir: &Path) -> PathBuf {
    dir.join("sys/kernel/tracing")
}

#[test]
fn crafted_recordings_are_refused_or_replayed_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    // Replay `dir`: it must end with `code`, saying `word`.
    let replay = |dir: &Path, code: i32, word: &str| {
        let out = run_capped(
            &["watch", "--replay", dir.to_str().unwrap()],
            tmp.path(),
            HANG,
        );
        assert_exit(&out, code, word);
    };
    // A zero-size page layout.
    let work = tempfile::tempdir().unwrap();
    let dir = recording_copy(work.path());
    std::fs::write(
        tracing(&dir).join("events/header_page"),
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
         \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
         \tfield: char data;\toffset:0;\tsize:0;\tsigned:0;\n",
    )
    .unwrap();
    replay(&dir, 70, "not a ring-buffer page");

    // `sys` linked to the live /sys: refused, never read (the live trace_pipe_raw blocks).
    let work = tempfile::tempdir().unwrap();
    let dir = recording_copy(work.path());
    std::fs::remove_dir_all(dir.join("sys")).unwrap();
    std::os::unix::fs::symlink("/sys", dir.join("sys")).unwrap();
    replay(&dir, 64, "symbolic link");

    // A 5 GiB page file and a 100 MiB symbol table (sparse): refused by size, not read.
    let work = tempfile::tempdir().unwrap();
    let dir = recording_copy(work.path());
    let pages = tracing(&dir).join("per_cpu/cpu1/trace_pipe_raw");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    replay(&dir, 64, "trace_pipe_raw");
    let work = tempfile::tempdir().unwrap();
    let dir = recording_copy(work.path());
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("proc/kallsyms"))
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    replay(&dir, 64, "kallsyms");

    // A page stamped 52 days after the recording ends: its events are dropped and said to
    // be lost, and no interruption lasts longer than the recording.
    let work = tempfile::tempdir().unwrap();
    let dir = recording_copy(work.path());
    let pages = tracing(&dir).join("per_cpu/cpu1/trace_pipe_raw");
    let mut bytes = std::fs::read(&pages).unwrap();
    let ts = u64::from_le_bytes(bytes[4096..4104].try_into().unwrap());
    bytes[4096..4104].copy_from_slice(&(ts + 4_512_495_000_000_000).to_le_bytes());
    std::fs::write(&pages, bytes).unwrap();
    let out = run_capped(
        &["watch", "--json", "--replay", dir.to_str().unwrap()],
        tmp.path(),
        HANG,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("isol-trace.json")).unwrap()).unwrap();
    let span = m["end_ns"].as_u64().unwrap() - m["start_ns"].as_u64().unwrap();
    let mut lost = false;
    for l in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["type"] == "interruption" {
            assert!(
                v["duration_ns"].as_u64().unwrap_or(0) <= span + 1_000_000_000,
                "{l}"
            );
        }
        lost |= v["type"] == "lost" && v["reason"].as_str().unwrap().contains("outside");
    }
    assert!(lost, "the corrupt page is reported");
    assert_empty_dir(tmp.path());
}

#[test]
fn overflowing_durations_are_usage_errors() {
    for cmd in ["watch", "noise"] {
        let out = isol()
            .args([cmd, "--cpus", "1", "-d", "18446744073709551615"])
            .output()
            .unwrap();
        assert_exit(&out, 64, "longer than");
    }
}

#[test]
fn a_full_disk_on_stdout_is_an_error_and_a_closed_pipe_ends_quietly() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let host = fixture("host-6.18");
    let rec = fixture("trace-host-6.18");
    let runs: [Vec<&str>; 3] = [
        vec!["--root", host.to_str().unwrap(), "check"],
        vec!["--root", host.to_str().unwrap(), "check", "--json"],
        vec!["watch", "--json", "--replay", rec.to_str().unwrap()],
    ];
    for args in &runs {
        let out = Command::new(assert_cmd::cargo::cargo_bin("isol"))
            .args(args)
            .stdout(full())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(70), "{args:?}: {err}");
        assert!(err.contains("cannot write to standard output"), "{err}");
        assert!(!err.contains("panicked"), "{err}");

        // A reader that has gone: nothing on stderr, the status a shell gives SIGPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(assert_cmd::cargo::cargo_bin("isol"))
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(141),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn cleanup_without_root_says_it_cannot_see_instances() {
    let Some(out) = as_nobody(&["watch", "--cleanup"]) else {
        return;
    };
    assert_exit(&out, 70, "needs root");
}

#[test]
fn an_unwritable_plot_is_refused_before_measuring() {
    let tmp = tempfile::tempdir().unwrap();
    // An hour's measurement: if the path were checked after it, the run would hang here.
    let out = run_capped(
        &[
            "noise",
            "--cpus",
            "1",
            "-d",
            "1h",
            "--plot",
            "/nonexistent/dir/noise.svg",
        ],
        tmp.path(),
        HANG,
    );
    let err = text(&out.stderr);
    if err.contains("TrueType font") {
        eprintln!("skipped: no font for plots on this machine");
        return;
    }
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("cannot write it"), "{err}");
}
