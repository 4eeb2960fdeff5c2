//! `isol run` on this machine: exit statuses as a shell gives them, the program pinned and
//! configured through the environment, and one clear line for each bad input. This
//! kernel cannot stop the tick, so the program runs with --allow-ticking where it must
//! run; what needs nohz_full is in lab/tests/run.rs.

mod common;

use common::{isol, json};

fn run(args: &[&str]) -> std::process::Output {
    isol().arg("run").args(args).output().unwrap()
}

/// `isol run --cpu 1 --allow-ticking ARGS`: this kernel's tick never stops.
fn ticking(args: &[&str]) -> std::process::Output {
    let mut all = vec!["--cpu", "1", "--allow-ticking"];
    all.extend_from_slice(args);
    run(&all)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The program's own status comes through, and a signal is 128 + its number.
#[test]
fn exit_statuses_are_the_programs() {
    let out = ticking(&["--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = ticking(&["--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ticking(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143));
    let err = stderr(&out);
    assert!(err.contains("killed by signal 15"), "{err}");
}

/// Pinned to exactly the CPU, with the configuration libisol reads.
#[test]
fn the_program_is_pinned_and_configured() {
    let out = ticking(&["--strict",
        "usr1",
        "--",
        "sh",
        "-c",
        "grep Cpus_allowed_list: /proc/self/status; echo \"$ISOL_CPU $ISOL_STRICT $ISOL_ALLOW_TICKING\"; test -p /proc/self/fd/$ISOL_REPORT_FD && echo pipe",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Cpus_allowed_list:\t1\n"), "{text}");
    assert!(text.contains(&format!("1 {} 1\n", libc::SIGUSR1)), "{text}");
    assert!(
        text.contains("pipe"),
        "the violation report pipe is handed over: {text}"
    );
    // The program's arguments are its own, flags included.
    let out = ticking(&["--", "sh", "-c", "echo \"$0 $1\"", "--json", "-x"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "--json -x\n");
}

#[test]
fn json_summary() {
    let out = ticking(&["--json", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out.stdout);
    assert_eq!(v["schema"], "isol.run/v1");
    assert_eq!(v["cpu"], 1);
    assert_eq!(v["status"]["exit"], 3);
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["program"][0], "sh");
    assert!(v["violations"].as_array().unwrap().is_empty());
    assert!(v["watch"].is_null() && v["apply"].is_null());
}

/// One line each, with the exit status a shell would give.
#[test]
fn bad_input_is_one_line_and_shell_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\nexit 0\n").unwrap();
    let plain = plain.to_str().unwrap();
    let cases: [(&[&str], i32, &str); 7] = [
        // An empty program name is not found, as in a shell (not a directory of PATH).
        (
            &["--cpu", "1", "--allow-ticking", "--", ""],
            127,
            "'': command not found",
        ),
        (
            &[
                "--cpu",
                "1",
                "--allow-ticking",
                "--",
                "no-such-program-isol",
            ],
            127,
            "command not found",
        ),
        (
            &["--cpu", "1", "--allow-ticking", "--", plain],
            126,
            "permission denied",
        ),
        (
            &["--cpu", "1", "--allow-ticking", "--", "/no/such/dir/prog"],
            127,
            "command not found",
        ),
        (
            &["--cpu", "64", "--allow-ticking", "--", "true"],
            64,
            "does not exist",
        ),
        (
            &[
                "--cpu",
                "1",
                "--allow-ticking",
                "--strict",
                "SIGKILL",
                "--",
                "true",
            ],
            64,
            "handler can catch",
        ),
        (
            &["--cpu", "1", "--allow-ticking", "--fifo", "0", "--", "true"],
            64,
            "1..=99",
        ),
    ];
    for (args, code, says) in cases {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // No program at all.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("PROGRAM"));
}

/// This kernel cannot stop the tick: without --allow-ticking, run refuses with the finding.
#[test]
fn a_cpu_that_cannot_be_isolated_is_refused_with_the_finding() {
    let check = isol()
        .args(["check", "--cpus", "1", "--json"])
        .output()
        .unwrap();
    let report = json(&check.stdout);
    let fails = report["summary"]["fail"].as_u64().unwrap();
    let out = run(&["--cpu", "1", "--", "true"]);
    if fails == 0 {
        eprintln!("skipped: CPU 1 passes isol check here");
        assert_eq!(out.status.code(), Some(0));
        return;
    }
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("cannot be isolated") && err.contains("--allow-ticking"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The program gets what run was asked for: ISOL_* variables of the caller's environment
/// (strict mode, a FIFO priority, a report descriptor) never reach it.
#[test]
fn the_callers_isol_variables_do_not_reach_the_program() {
    let out = isol()
        .args(["run", "--cpu", "1", "--allow-ticking", "--json", "--"])
        .args(["sh", "-c", "env | grep ^ISOL_ | sort"])
        .env("ISOL_STRICT", "kill")
        .env("ISOL_FIFO", "50")
        .env("ISOL_REPORT_FD", "1")
        .env("ISOL_SOMETHING_ELSE", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let vars: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ISOL_"))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(
        vars,
        ["ISOL_ALLOW_TICKING", "ISOL_CPU", "ISOL_REPORT_FD"],
        "{text}"
    );
    assert!(
        !text.contains("ISOL_REPORT_FD=1\n"),
        "the caller's descriptor: {text}"
    );
}

/// Every SIGINT isol gets reaches the program, not only the first: a program that handles
/// two before it exits is not left running, and isol waits for it.
#[test]
fn every_signal_is_forwarded() {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("isol"))
        .args(["run", "--cpu", "1", "--allow-ticking", "--", "sh", "-c"])
        .arg(
            "n=0; trap 'n=$((n+1)); echo got $n; [ $n -ge 3 ] && exit 0' INT; \
             echo ready; while :; do sleep 0.05; done",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // A run that stops forwarding would leave the program, and this test, waiting.
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = isol_sys::thread::signal_process(pid, libc::SIGKILL);
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    for n in 1..=3 {
        let _ = isol_sys::thread::signal_process(pid, libc::SIGINT);
        line.clear();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert_eq!(line, format!("got {n}\n"));
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}
