//! Lab tier: `isol run` on Debian's 6.12 cloud kernel with CPU 1 isolated at boot. A
//! program linked with isol that makes a system call under `--strict kill` is killed and
//! reported (exit 137); the well-behaved one, watched from before it starts, is never
//! shown as an interruption and its own report counts 0 interruptions; a shell's exit
//! status comes through.

use std::sync::OnceLock;

use isol_lab::{lab_or_skip, Boot, Run, Scenario};

const RT_OFF: &str = "echo -1 > /proc/sys/kernel/sched_rt_runtime_us\n";

fn lab_run() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| {
        let lab = lab_or_skip()?;
        let scenarios = [
            Scenario::new(
                "strict_kill",
                format!(
                    "{RT_OFF}isol run --cpu 1 --fifo 10 --strict kill -- isol-lab-guest under-run syscall 1; echo \"STATUS $?\""
                ),
            ),
            Scenario::new(
                "quiet_watched",
                format!(
                    "{RT_OFF}isol run --cpu 1 --fifo 10 --watch -- isol-lab-guest under-run quiet 2; echo \"STATUS $?\"; dmesg | grep -iE 'clocksource|sched_clock|unstable' | sed 's/^/DMESG /'"
                ),
            ),
            Scenario::new(
                "strict_report_json",
                format!(
                    "{RT_OFF}isol run --json --fifo 10 --strict report -- isol-lab-guest under-run syscall 1 > /tmp/run.json; echo \"STATUS $?\"; echo ==DOC; cat /tmp/run.json"
                ),
            ),
            Scenario::new("exit7", "isol run -- sh -c 'exit 7'; echo \"STATUS $?\""),
        ];
        let run = lab
            .run(&Boot::default(), &scenarios)
            .unwrap_or_else(|e| panic!("lab run failed: {e}"));
        eprintln!("lab: kernel {}, {:.1} s", run.kernel, run.elapsed.as_secs_f64());
        Some(run)
    })
    .as_ref()
}

/// The scenario's output and the status `isol run` exited with.
fn scenario(name: &str) -> (String, i32) {
    let run = lab_run().expect("lab");
    let out = run.result(name).unwrap().stdout.clone();
    let status = out
        .lines()
        .find_map(|l| l.strip_prefix("STATUS "))
        .unwrap_or_else(|| panic!("{name}: no status in\n{out}"))
        .trim()
        .parse()
        .unwrap();
    (out, status)
}

/// The program's own JSON line (`{"ok": ...}`).
fn program_json(out: &str) -> Option<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with("{\"ok\""))
        .find_map(|l| serde_json::from_str(l).ok())
}

#[test]
fn a_system_call_under_strict_kill_is_reported_and_exits_137() {
    if lab_run().is_none() {
        return;
    }
    let (out, status) = scenario("strict_kill");
    assert_eq!(status, 137, "{out}");
    assert!(
        out.contains("made system call getppid"),
        "the library's line: {out}"
    );
    assert!(
        out.contains("was killed by signal 9 after a strict mode violation"),
        "isol run's line: {out}"
    );
    assert!(
        program_json(&out).is_none(),
        "the program was killed before its report: {out}"
    );
}

#[test]
fn the_well_behaved_program_runs_with_0_interruptions_and_is_never_one() {
    if lab_run().is_none() {
        return;
    }
    let (out, status) = scenario("quiet_watched");
    assert_eq!(status, 0, "{out}");
    let v = program_json(&out).unwrap_or_else(|| panic!("no report: {out}"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["report"]["interruptions"], 0, "{v}");
    assert_eq!(v["report"]["cpu"], 1, "{v}");
    assert!(v["report"]["time_to_quiet_ns"].is_u64(), "{v}");
    // Watched from before it started: a summary, and the program itself never a line.
    assert!(out.contains("Summary over"), "{out}");
    // A line is `time cpu kind what-ran net caused-by`: the program may cause a line (its
    // helper thread moving itself away wakes migration/1), never be the one that ran.
    let as_interruption: Vec<&str> = out
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.get(2) == Some(&"task") && w.get(3).is_some_and(|t| t.starts_with("isol-lab-guest"))
        })
        .collect();
    assert!(
        as_interruption.is_empty(),
        "the program shown as an interruption: {as_interruption:?}"
    );
}

#[test]
fn json_summary_carries_the_reported_violation() {
    if lab_run().is_none() {
        return;
    }
    let (out, status) = scenario("strict_report_json");
    assert_eq!(status, 0, "{out}");
    // After the marker: the program's own line, then isol run's document.
    let doc_text: String = out
        .split_once("==DOC")
        .map(|(_, d)| d)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("{\"ok\""))
        .collect::<Vec<_>>()
        .join("\n");
    let doc: serde_json::Value = serde_json::from_str(&doc_text)
        .unwrap_or_else(|e| panic!("no isol.run/v1 document ({e}): {out}"));
    assert_eq!(doc["schema"], "isol.run/v1");
    assert_eq!(doc["cpu"], 1, "the first nohz_full CPU: {doc}");
    assert_eq!(doc["status"]["exit"], 0, "{doc}");
    let violations = doc["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{doc}");
    assert!(violations[0].as_str().unwrap().contains("getppid"), "{doc}");
}

#[test]
fn a_shell_exit_status_comes_through() {
    if lab_run().is_none() {
        return;
    }
    let (out, status) = scenario("exit7");
    assert_eq!(status, 7, "{out}");
}
