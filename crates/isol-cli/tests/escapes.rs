//! Names isol prints come from the machine or from a stranger's snapshot or recording: a
//! thread name or an IRQ name can hold terminal escape sequences. Fed such names, check,
//! watch and noise write no control character to the terminal: text shows them escaped
//! (`\x1b`), JSON as `\u001b`, and the JSON still reads back to the same name.

mod common;

use common::{copy_tree, fixture, isol, text};

/// An escape sequence that clears the screen, and a bidirectional override.
const EVIL: &str = "ev\u{1b}[2Jil\u{202e}";

/// Whether `out` holds anything a terminal would act on (a control character other than
/// newline and tab, or a bidirectional override).
fn acts_on_terminal(out: &str) -> bool {
    out.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c)
    })
}

#[test]
fn check_escapes_irq_and_thread_names_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    copy_tree(&fixture("host-6.18"), r);
    // IRQ 24's action (listed in the manifest) and a thread's name.
    let manifest = r.join("isol-snapshot.json");
    let m = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        m.replace(
            "ACPI:Ged",
            &EVIL
                .replace('\u{1b}', "\\u001b")
                .replace('\u{202e}', "\\u202e"),
        ),
    )
    .unwrap();
    let irq = std::fs::read_to_string(r.join("proc/interrupts")).unwrap();
    std::fs::write(r.join("proc/interrupts"), irq.replace("ACPI:Ged", EVIL)).unwrap();
    let mut renamed = 0;
    for e in std::fs::read_dir(r.join("proc")).unwrap().flatten() {
        for t in std::fs::read_dir(e.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in ["stat", "status", "comm"] {
                let p = t.path().join(f);
                if let Ok(s) = std::fs::read_to_string(&p) {
                    if s.contains("spawner") {
                        std::fs::write(&p, s.replace("spawner", EVIL)).unwrap();
                        renamed += 1;
                    }
                }
            }
        }
    }
    assert!(renamed > 0, "no thread renamed");
    let root = r.to_str().unwrap();
    let out = isol()
        .args(["--root", root, "check", "-v"])
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(said.contains("ev\\x1b[2Jil\\u{202e}"), "{said}");
    assert!(!acts_on_terminal(&said), "{said}");
    let out = isol()
        .args(["--root", root, "check", "--json"])
        .output()
        .unwrap();
    let json = text(&out.stdout);
    assert!(!acts_on_terminal(&json));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v.to_string().contains("\\u001b[2Jil\u{202e}"),
        "the JSON keeps the name"
    );
}

#[test]
fn watch_escapes_names_from_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    copy_tree(&fixture("trace-host-6.18"), r);
    // The task's name as the trace events carry it (a fixed-size comm field): the same
    // length, with an escape sequence inside.
    let mut patched = 0;
    for cpu in ["cpu0", "cpu1"] {
        let p = r
            .join("sys/kernel/tracing/per_cpu")
            .join(cpu)
            .join("trace_pipe_raw");
        let mut pages = std::fs::read(&p).unwrap();
        let (from, to) = (b"isol-migrant", b"isol\x1b[2Jrant");
        let mut i = 0;
        while let Some(at) = pages[i..].windows(from.len()).position(|w| w == from) {
            pages[i + at..i + at + to.len()].copy_from_slice(to);
            i += at + to.len();
            patched += 1;
        }
        std::fs::write(&p, pages).unwrap();
    }
    assert!(patched > 0);
    let root = r.to_str().unwrap();
    let out = isol().args(["watch", "--replay", root]).output().unwrap();
    let said = text(&out.stdout);
    assert!(said.contains("isol\\x1b[2Jrant"), "{said}");
    assert!(!acts_on_terminal(&said) && !acts_on_terminal(&text(&out.stderr)));
    let out = isol()
        .args(["watch", "--replay", root, "--json"])
        .output()
        .unwrap();
    let said = text(&out.stdout);
    assert!(!acts_on_terminal(&said));
    assert!(said.contains("isol\\u001b[2Jrant"), "{said}");
}

/// Live (root): a task named with an escape sequence wakes on CPU 1 while watch and noise
/// run; both print it escaped.
#[test]
fn live_watch_and_noise_escape_a_task_name() {
    if !common::is_root() {
        eprintln!("skipped: tracing needs root");
        return;
    }
    let mut waker = std::process::Command::new("taskset")
        .args(["-c", "1", "sh", "-c"])
        .arg(r#"printf 'ev\033[2Jil' > /proc/self/comm; while :; do sleep 0.02; done"#)
        .spawn()
        .unwrap();
    // The task is pinned to CPU 1: named as the workload (--pid), it would be the CPU's
    // resident, not an interruption.
    let me = std::process::id().to_string();
    let watch = isol()
        .args(["watch", "--cpus", "1", "-d", "1s", "--pid", &me])
        .output()
        .unwrap();
    let noise = isol()
        .args(["noise", "--cpus", "1", "-d", "1s"])
        .output()
        .unwrap();
    waker.kill().unwrap();
    waker.wait().unwrap();
    for (what, out) in [("watch", &watch), ("noise", &noise)] {
        let said = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out.stderr));
        assert!(
            said.contains("ev\\x1b[2Jil"),
            "{what} names the task:\n{said}"
        );
        assert!(
            !acts_on_terminal(&said) && !acts_on_terminal(&text(&out.stderr)),
            "{what}"
        );
    }
}
