//! `isol top` as a person uses it: in a real terminal (tmux), on this machine's CPU 1,
//! with a workload and interruptions arriving after it started, read from the screen with
//! `capture-pane`, driven by keys and signals, and the terminal checked afterwards.
//! Host tier: root and tmux (`.ci/run` installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{is_root, isol, text};

/// One screen on CPU 1 at a time: two would count each other's workloads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn top_without_a_terminal_points_to_watch() {
    let out = isol().args(["top", "--cpus", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("needs a terminal") && err.contains("isol watch"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Its keys come from standard input: input that is not a terminal (in a terminal) is
/// refused at once, not read as the end of a session.
#[test]
fn top_with_its_input_redirected_says_so() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(t) = Tmux::start("--cpus 1 < /dev/null", "") else {
        return;
    };
    let s = t.until("the refusal", |s| s.contains("TOP-ENDED"));
    assert!(s.contains("standard input, which is not a terminal"), "{s}");
    assert_eq!(t.file("rc"), "64", "{s}");
}

/// A tmux server of the test's own (its own socket), killed at the end, on failure too.
struct Tmux {
    socket: String,
    dir: tempfile::TempDir,
}

impl Tmux {
    /// A session running `isol top ARGS` in a 120x30 terminal from a shell that records
    /// the terminal's modes before and after, top's pid and its exit status.
    fn start(args: &str, env: &str) -> Option<Tmux> {
        if !is_root() {
            eprintln!("skipped: top traces the kernel and needs root");
            return None;
        }
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is missing: .ci/run installs it"
            );
            eprintln!("skipped: needs tmux");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let isol = assert_cmd::cargo::cargo_bin("isol");
        let script = format!(
            "stty -g > {d}/before; sh -c 'echo $$ > {d}/pid; exec env {env} {} top {args}'; \
             echo $? > {d}/rc; stty -g > {d}/after; echo TOP-ENDED; sleep 600",
            isol.display()
        );
        let t = Tmux {
            socket: format!("isol-top-test-{}-{}", std::process::id(), {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            }),
            dir,
        };
        let ok = t
            .tmux(&[
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
                "sh",
                "-c",
                &script,
            ])
            .status
            .success();
        assert!(ok, "tmux new-session failed");
        t.tmux(&["set-option", "-g", "window-size", "manual"]);
        Some(t)
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    fn screen(&self) -> String {
        text(&self.tmux(&["capture-pane", "-p"]).stdout)
    }

    /// The screen with its escape sequences (colours).
    fn screen_escaped(&self) -> String {
        text(&self.tmux(&["capture-pane", "-p", "-e"]).stdout)
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend(keys);
        assert!(self.tmux(&args).status.success());
    }

    /// `#{alternate_on} #{cursor_flag}`: whether the pane is on the alternate screen, and
    /// whether its cursor shows.
    fn modes(&self) -> String {
        let out = self.tmux(&["display-message", "-p", "#{alternate_on} #{cursor_flag}"]);
        text(&out.stdout).trim().to_string()
    }

    /// Wait until the screen satisfies `ok`; the screen at that moment.
    fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "no {what} on the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn pid(&self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(p) = self.file("pid").parse() {
                return p;
            }
            assert!(Instant::now() < deadline, "top never started");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After top ended: its status, the terminal's modes as they were, no tracing
    /// instance of its own left.
    fn ended(&self, pid: i32) -> String {
        self.until("end of top", |s| s.contains("TOP-ENDED"));
        assert_eq!(
            self.modes(),
            "0 1",
            "the main screen and a visible cursor again"
        );
        assert_eq!(
            self.file("before"),
            self.file("after"),
            "the terminal's modes"
        );
        assert!(!self.file("before").is_empty());
        let left: Vec<String> = instances()
            .into_iter()
            .filter(|i| i.starts_with(&format!("isol-{pid}-")))
            .collect();
        assert!(left.is_empty(), "top left {left:?}");
        self.file("rc")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn instances() -> Vec<String> {
    std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A program on CPU 1 under a name of its own, killed at the end.
struct OnCpu1(Child);

impl OnCpu1 {
    /// `python3 CODE` pinned to CPU 1, named `name`.
    fn start(name: &str, code: &str) -> OnCpu1 {
        let code = format!("open('/proc/self/comm','w').write('{name}')\n{code}");
        OnCpu1(
            Command::new("taskset")
                .args(["-c", "1", "python3", "-c", &code])
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for OnCpu1 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A short program that runs on CPU 1 every 20 ms, under a name of its own: each run is a
/// `task` interruption of CPU 1's resident.
fn poker(dir: &Path) -> OnCpu1 {
    let sleep: PathBuf = dir.join("isol-poke");
    std::fs::copy("/bin/sleep", &sleep).unwrap();
    OnCpu1(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while :; do taskset -c 1 {} 0.001; sleep 0.02; done",
                sleep.display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Whether a screen captured with its escapes has red text (tmux writes the colour as
/// `38;5;1` or `31`).
fn red(escaped: &str) -> bool {
    escaped.contains("\u{1b}[31m") || escaped.contains("38;5;1m")
}

fn cpu_row(screen: &str, cpu: u32) -> Vec<String> {
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&cpu.to_string()) && l.contains('/'))
        .or_else(|| screen.lines().skip_while(|l| !l.starts_with("cpu")).nth(1))
        .unwrap_or_else(|| panic!("no row for CPU {cpu}:\n{screen}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn a_person_watches_cpu_1_presses_every_key_and_quits() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The application is named with --pid: on this machine's CPU 1, which is not
    // isolated, any task preempted there while runnable (a shell, tmux itself) becomes a
    // resident, and an application arriving after it would count as interrupting it. The
    // arrival rule is tested where CPUs are isolated, in the lab.
    let app = OnCpu1::start("isol-app", "while True: pass");
    let Some(t) = Tmux::start(&format!("--cpus 1 --pid {}", app.0.id()), "") else {
        return;
    };
    let pid = t.pid();
    let s = t.until("header", |s| s.contains("isol top  kernel"));
    assert_eq!(t.modes(), "1 0", "the alternate screen, no cursor:\n{s}");
    assert!(s.contains("1 CPU watched"), "{s}");
    assert!(s.contains("start cost: "), "{s}");
    assert!(s.contains("q quit  p pause  s sort"), "{s}");
    let t0 = t.until("the application as CPU 1's resident", |s| {
        s.contains("isol-app/")
    });
    let row = cpu_row(&t0, 1);
    assert_eq!(row[0], "1", "{t0}");

    // Something else keeps landing on its CPU.
    let poke = poker(t.dir.path());
    let s = t.until("isol-poke among the culprits", |s| {
        s.lines()
            .any(|l| l.starts_with("task") && l.contains("isol-poke"))
    });
    let row = cpu_row(&s, 1);
    // cpu 1s total tick ipi irq sirq task other longest last resident... (on this CPU,
    // which is not isolated, a task preempted there while runnable, tmux itself, may be a
    // resident too)
    assert!(row.len() >= 12, "{s}");
    let n = |i: usize| row[i].parse::<u64>().unwrap_or(u64::MAX);
    assert!(
        n(2) > 0 && n(7) > 0,
        "total and task columns count: {row:?}\n{s}"
    );
    assert!(row[11..].join(" ").contains("isol-app/"), "{row:?}");

    // Colour: a CPU interrupted in the last second shows red (NO_COLOR is tested below).
    let e = t.screen_escaped();
    assert!(red(&e), "red for the last second:\n{e}");

    // s: sorted by the next column; enter: CPU 1's last interruptions.
    t.keys(&["s"]);
    t.until("sort by 1s", |s| {
        s.contains("sorted by 1s") && s.contains("1s▼")
    });
    t.keys(&["Enter"]);
    let s = t.until("CPU 1 expanded", |s| {
        s.contains("CPU 1: last interruptions")
    });
    t.until("isol-poke in CPU 1's last interruptions", |s| {
        s.contains("CPU 1: last interruptions") && s.contains("isol-poke")
    });
    assert!(s.contains("time(s)"), "{s}");
    t.keys(&["Enter"]);
    t.until("culprits again", |s| s.contains("top culprits"));

    // p: the screen stops changing while the interruptions go on; p again resumes.
    t.keys(&["p"]);
    let a = t.until("PAUSED", |s| s.contains("PAUSED"));
    std::thread::sleep(Duration::from_millis(1500));
    let b = t.screen();
    assert_eq!(a, b, "a paused screen does not change");
    t.keys(&["p"]);
    t.until("resumed", |s| !s.contains("PAUSED") && s != b);

    // r: counting starts again.
    t.keys(&["r"]);
    let s = t.until("reset clock", |s| {
        s.contains("watched  0s") || s.contains("watched  1s")
    });
    let total: u64 = cpu_row(&s, 1)[2].parse().unwrap_or(u64::MAX);
    assert!(total < n(2).max(1000), "reset: {total}\n{s}");

    // A terminal too small says so; made larger again, the screen comes back.
    t.tmux(&["resize-window", "-x", "60", "-y", "10"]);
    t.until("too small", |s| s.contains("terminal too small (60x10)"));
    t.tmux(&["resize-window", "-x", "120", "-y", "30"]);
    t.until("the screen again", |s| s.contains("top culprits"));

    drop(poke);
    t.keys(&["q"]);
    assert_eq!(t.ended(pid), "0");
}

/// Ctrl-C, SIGTERM, SIGHUP and a panic each end top with the terminal as it was and its
/// tracing instance removed; NO_COLOR leaves colours out.
#[test]
fn every_way_out_restores_the_terminal_and_removes_the_instance() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _app = OnCpu1::start("isol-app", "import time\nwhile True: time.sleep(0.01)");
    for (how, env) in [
        ("ctrl-c", "NO_COLOR=1"),
        ("SIGTERM", ""),
        ("SIGHUP", ""),
        ("panic", "ISOL_FAULT=top-panic"),
    ] {
        let Some(t) = Tmux::start("--cpus 1", env) else {
            return;
        };
        let pid = t.pid();
        t.until("header", |s| {
            s.contains("isol top  kernel") || s.contains("panicked")
        });
        match how {
            "ctrl-c" => {
                t.until("an interruption", |s| cpu_row(s, 1)[2] != "0");
                let e = t.screen_escaped();
                assert!(!red(&e), "NO_COLOR: no red\n{e}");
                t.keys(&["C-c"]);
            }
            "SIGTERM" => {
                isol_sys::thread::signal_process(pid, libc::SIGTERM).unwrap();
            }
            "SIGHUP" => {
                isol_sys::thread::signal_process(pid, libc::SIGHUP).unwrap();
            }
            _ => {}
        }
        let rc = t.ended(pid);
        if how == "panic" {
            assert!(t.screen().contains("panicked"), "{}", t.screen());
            assert_ne!(rc, "0", "{how}");
        } else {
            assert_eq!(rc, "0", "{how}: {}", t.screen());
        }
    }
}
