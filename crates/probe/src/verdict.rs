//! From what the probe counted to a verdict per CPU, and to the check report's `probe.*`
//! findings: pure functions, tested on readings.

use std::collections::BTreeMap;

use serde::Serialize;

use isol_machine::check::{Area, Evidence, Finding, Fix, FixKind, Severity};
use isol_model::units::fmt_ns;
use isol_model::CpuSet;

use crate::{CpuResult, Keeper, Policy, Probe, ProbeError};

/// A local timer rate at or above this many a second is a running tick (HZ is 100 at the
/// least); below it, interrupts are kicks.
const TICKING_PER_S: f64 = 50.0;

/// What a CPU did under the probe's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No interrupt at all during the window.
    Quiet,
    /// A few interrupts during the window, the tick not running.
    Kicked,
    /// The tick ran through the window.
    Ticking,
}

/// The verdict from the window's counts: `moved` holds the CPU's `/proc/interrupts` rows
/// that moved during `window_ns`. Whether the tick device was seen disarmed does not
/// decide (the report says it apart): the counts do.
pub fn classify(moved: &BTreeMap<String, u64>, window_ns: u64) -> Outcome {
    let total: u64 = moved.values().sum();
    if total == 0 {
        return Outcome::Quiet;
    }
    let local = moved.get("LOC").copied().unwrap_or(0) as f64;
    if local * 1e9 / window_ns.max(1) as f64 >= TICKING_PER_S {
        Outcome::Ticking
    } else {
        Outcome::Kicked
    }
}

/// `LOC 1, RES 2`, busiest first.
fn rows(moved: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = moved.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A delay in whole milliseconds (`952 ms`), finer below one.
fn ms(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{} ms", (ns + 500_000) / 1_000_000)
    } else {
        fmt_ns(ns)
    }
}

fn secs(ns: u64) -> String {
    format!("{:.1} s", ns as f64 / 1e9)
}

/// What keeps the tick, for people.
fn cause(k: Option<&Keeper>, cpu: u32) -> String {
    match k {
        Some(k) => match k.dependency.as_str() {
            "NOT_NOHZ_FULL" => {
                format!("CPU {cpu} is not nohz_full: the kernel ticks it whatever runs there")
            }
            "POSIX_TIMER" => format!(
                "a CPU-time timer of the probing process keeps it (POSIX_TIMER, inferred from {})",
                k.evidence
            ),
            "SCHED" => format!(
                "another task is runnable there (SCHED, inferred: {})",
                k.evidence
            ),
            isol_task::FAIR_SERVER => format!(
                "the fair deadline server's kick, about once a second (FAIR_SERVER: {})",
                k.evidence
            ),
            other => format!("{other} ({})", k.evidence),
        },
        None => "nothing in the kernel's files names the cause".into(),
    }
}

/// Not a tick dependency: the CPU's own kernel threads had work queued and could not run.
const KERNEL_WORK: &str = "KERNEL_WORK";

/// The fix for a cause on `cpus`.
fn fix_for(k: Option<&Keeper>, cpus: &CpuSet) -> Fix {
    let list = cpus.to_list();
    let (kind, text) = match k.map(|k| k.dependency.as_str()) {
        Some("NOT_NOHZ_FULL") => (
            FixKind::Boot,
            format!(
                "boot with nohz_full={list} (`isol cmdline --cpus {list}` prints the whole line)"
            ),
        ),
        Some("POSIX_TIMER") => (
            FixKind::Runtime,
            "remove the CPU-time limit or timer of the process that runs the workload (a \
             unit's LimitCPU=, `ulimit -t`, `prlimit --pid PID --cpu=unlimited`, or a \
             timer_create on a CPU-time clock)"
                .to_string(),
        ),
        Some("SCHED") => (
            FixKind::Runtime,
            format!(
                "move the other tasks off CPU {list} (`isol apply --cpus {list}` moves what can be \
                 moved; `isol watch --cpus {list}` names what runs there)"
            ),
        ),
        Some(KERNEL_WORK) => (
            FixKind::Runtime,
            format!(
                "let the work queued on CPU {list} run before the workload spins (`isol enter` \
                 waits until it has; a SCHED_FIFO thread that never enters the kernel holds it \
                 up, and whatever waits on it); `isol watch --cpus {list}` names what queues it"
            ),
        ),
        Some(isol_task::FAIR_SERVER) => (
            FixKind::Runtime,
            format!(
                "run the workload SCHED_FIFO (`isol run` does; Isolation::fifo), or turn the \
                 fair server of CPU {list} off (`isol apply --cpus {list}` writes 0 to \
                 /sys/kernel/debug/sched/fair_server/cpuN/runtime)"
            ),
        ),
        _ => (
            FixKind::Runtime,
            format!(
                "`isol watch --cpus {list}` names every interruption of the CPU and its culprit"
            ),
        ),
    };
    Fix { kind, text }
}

/// One CPU's result in a sentence.
fn describe(r: &CpuResult) -> String {
    let who = format!("the probe's {} thread", r.policy.name());
    let yielded = if r.yielded_to.is_empty() {
        String::new()
    } else {
        format!(
            " (it first let {} run: work queued on the CPU, which `isol enter` waits for too)",
            r.yielded_to.join(", ")
        )
    };
    let stopped = r
        .stopped_after_ns
        .map(|ns| format!("the tick stopped {} after {who} arrived{yielded}", ms(ns)));
    match r.outcome {
        Outcome::Quiet => format!(
            "CPU {}: {}; 0 interrupts in the next {}{}",
            r.cpu,
            stopped.unwrap_or_else(|| format!(
                "the tick device stayed armed under {who}, but it took no interrupt"
            )),
            secs(r.window_ns),
            if r.starved.is_empty() {
                String::new()
            } else {
                format!(
                    ", while {} waited to run all along: a thread that never yields starves \
                     what shares its CPU{}",
                    r.starved.join(", "),
                    if r.starved_kernel_threads {
                        ", here the CPU's own kernel work"
                    } else {
                        ""
                    }
                )
            }
        ),
        Outcome::Kicked => format!(
            "CPU {}: {}, then {} interrupts in the next {} ({}){}: {}",
            r.cpu,
            stopped.unwrap_or_else(|| format!("the tick device stayed armed under {who}")),
            r.total(),
            secs(r.window_ns),
            rows(&r.interrupts),
            r.first_after_ns
                .map(|f| format!(", the first {} in", ms(f)))
                .unwrap_or_default(),
            cause(r.keeper.as_ref(), r.cpu)
        ),
        Outcome::Ticking => format!(
            "CPU {}: the tick kept running ({:.0}/s) under {who}{}: {}",
            r.cpu,
            r.interrupts.get("LOC").copied().unwrap_or(0) as f64 * 1e9 / r.window_ns.max(1) as f64,
            match r.stopped_after_ns {
                Some(ns) => format!(" (it stopped {} after arrival, and came back)", ms(ns)),
                None => String::new(),
            },
            cause(r.keeper.as_ref(), r.cpu)
        ),
    }
}

fn severity(r: &CpuResult) -> Severity {
    match (r.policy, r.outcome) {
        (_, Outcome::Quiet) if r.starved.is_empty() => Severity::Ok,
        (_, Outcome::Quiet) => Severity::Warn,
        (Policy::Fifo, Outcome::Ticking) => Severity::Fail,
        // A fair task is the user's choice: SCHED_FIFO is the way to a quiet CPU.
        (_, _) => Severity::Warn,
    }
}

/// The split of a keeper's evidence into a file and a value, where it names a file.
fn keeper_evidence(k: &Keeper) -> Evidence {
    let split = k.evidence.strip_prefix('/').and_then(|_| {
        k.evidence
            .split_once(" = ")
            .or_else(|| k.evidence.split_once(": "))
    });
    match split {
        Some((file, value)) => Evidence {
            file: file.to_string(),
            value: format!("{} ({})", value, k.dependency),
        },
        None => Evidence {
            file: "(inferred)".to_string(),
            value: format!("{} ({})", k.evidence, k.dependency),
        },
    }
}

/// The check report's findings from a probe: `probe.fifo` and `probe.other`, one each,
/// every CPU in it. A probe that could not run gives both as unknown, with why.
pub fn findings(probe: &Result<Probe, ProbeError>) -> Vec<Finding> {
    [(Policy::Fifo, "probe.fifo"), (Policy::Other, "probe.other")]
        .into_iter()
        .map(|(policy, id)| match probe {
            Ok(p) => phase_finding(p, policy, id),
            Err(e) => Finding {
                id,
                area: Area::Probe,
                severity: Severity::Unknown,
                summary: format!("not probed: {e}"),
                evidence: Vec::new(),
                fix: Some(Fix {
                    kind: FixKind::Runtime,
                    text: "run `isol check --probe` as root on the machine itself".into(),
                }),
            },
        })
        .collect()
}

fn phase_finding(p: &Probe, policy: Policy, id: &'static str) -> Finding {
    let results: Vec<&CpuResult> = p.results.iter().filter(|r| r.policy == policy).collect();
    let mut severity = results
        .iter()
        .map(|r| severity(r))
        .max()
        .unwrap_or(Severity::Unknown);
    let mut lines: Vec<String> = results.iter().map(|r| describe(r)).collect();
    let mut evidence = Vec::new();
    for r in &results {
        evidence.push(Evidence {
            file: "/proc/timer_list".into(),
            value: match r.stopped_after_ns {
                Some(ns) => format!(
                    "CPU {} tick device disarmed {} after the thread arrived",
                    r.cpu,
                    ms(ns)
                ),
                None => format!("CPU {} tick device never seen disarmed", r.cpu),
            },
        });
        evidence.push(Evidence {
            file: "/proc/interrupts".into(),
            value: if r.interrupts.is_empty() {
                format!("CPU {}: no row moved in {}", r.cpu, secs(r.window_ns))
            } else {
                format!(
                    "CPU {}: {} in {}",
                    r.cpu,
                    rows(&r.interrupts),
                    secs(r.window_ns)
                )
            },
        });
        if let Some(k) = &r.keeper {
            evidence.push(keeper_evidence(k));
        }
    }
    for s in &p.skipped {
        severity = severity.max(Severity::Unknown);
        lines.push(format!(
            "CPU {}: not probed, a workload is there ({}); `--probe-busy` probes it anyway (the \
             probe's SCHED_FIFO thread takes the CPU from it for about {})",
            s.cpu,
            s.workload.join(", "),
            secs(p.window_ns)
        ));
    }
    // The fix: the first CPU that is not quiet names it, for every CPU with the same cause;
    // a quiet CPU that starved a task is given the second task's fix.
    let first_bad = results.iter().find(|r| r.outcome != Outcome::Quiet);
    let starving: CpuSet = results
        .iter()
        .filter(|r| r.outcome == Outcome::Quiet && !r.starved.is_empty())
        .map(|r| r.cpu)
        .collect();
    let fix = match first_bad {
        Some(r) => {
            let dep = r.keeper.as_ref().map(|k| k.dependency.clone());
            let same: CpuSet = results
                .iter()
                .filter(|x| {
                    x.outcome != Outcome::Quiet
                        && x.keeper.as_ref().map(|k| k.dependency.clone()) == dep
                })
                .map(|x| x.cpu)
                .collect();
            Some(fix_for(r.keeper.as_ref(), &same))
        }
        None if !starving.is_empty() => Some(fix_for(
            Some(&Keeper {
                dependency: if results
                    .iter()
                    .all(|r| r.starved.is_empty() || r.starved_kernel_threads)
                {
                    KERNEL_WORK
                } else {
                    "SCHED"
                }
                .into(),
                evidence: String::new(),
            }),
            &starving,
        )),
        None if !p.skipped.is_empty() => Some(Fix {
            kind: FixKind::Runtime,
            text: "stop the workload, or add --probe-busy".into(),
        }),
        None => None,
    };
    Finding {
        id,
        area: Area::Probe,
        severity,
        summary: if lines.is_empty() {
            "no CPU probed".into()
        } else {
            lines.join("; ")
        },
        evidence,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_counts_decide_the_outcome() {
        assert_eq!(classify(&counts(&[]), S), Outcome::Quiet);
        // The fair server's kick as measured on 6.12: a timer, a call and two reschedules.
        let kick = counts(&[("LOC", 1), ("CAL", 1), ("RES", 2)]);
        assert_eq!(classify(&kick, S), Outcome::Kicked);
        assert_eq!(classify(&counts(&[("LOC", 250)]), S), Outcome::Ticking);
        // HZ=100 still ticks; 49 a second does not.
        assert_eq!(classify(&counts(&[("LOC", 100)]), S), Outcome::Ticking);
        assert_eq!(classify(&counts(&[("LOC", 49)]), S), Outcome::Kicked);
    }

    fn result(policy: Policy, outcome: Outcome, keeper: Option<(&str, &str)>) -> CpuResult {
        let interrupts = match outcome {
            Outcome::Quiet => counts(&[]),
            Outcome::Kicked => counts(&[("LOC", 1), ("RES", 2), ("CAL", 1)]),
            Outcome::Ticking => counts(&[("LOC", 250)]),
        };
        CpuResult {
            cpu: 1,
            policy,
            outcome,
            stopped_after_ns: (outcome != Outcome::Ticking).then_some(4_000_000),
            window_ns: S,
            interrupts,
            first_after_ns: (outcome == Outcome::Kicked).then_some(952_000_000),
            keeper: keeper.map(|(d, e)| Keeper {
                dependency: d.into(),
                evidence: e.into(),
            }),
            starved: Vec::new(),
            starved_kernel_threads: false,
            yielded_to: Vec::new(),
        }
    }

    fn probe(results: Vec<CpuResult>) -> Result<Probe, ProbeError> {
        Ok(Probe {
            results,
            skipped: Vec::new(),
            took_ns: 2 * S,
            window_ns: S,
        })
    }

    #[test]
    fn a_quiet_cpu_says_when_the_tick_stopped() {
        let f = findings(&probe(vec![
            result(Policy::Fifo, Outcome::Quiet, None),
            result(Policy::Other, Outcome::Quiet, None),
        ]));
        assert_eq!(f[0].id, "probe.fifo");
        assert_eq!(f[0].severity, Severity::Ok);
        assert_eq!(
            f[0].summary,
            "CPU 1: the tick stopped 4 ms after the probe's SCHED_FIFO thread arrived; 0 interrupts in the next 1.0 s"
        );
        assert!(f[0].fix.is_none());
        assert_eq!(f[1].id, "probe.other");
        assert_eq!(f[1].severity, Severity::Ok);
    }

    #[test]
    fn the_fair_server_kick_is_measured_and_named() {
        let fs = "/sys/kernel/debug/sched/fair_server/cpu1/runtime = 50000000";
        let f = findings(&probe(vec![
            result(Policy::Fifo, Outcome::Quiet, None),
            result(Policy::Other, Outcome::Kicked, Some(("FAIR_SERVER", fs))),
        ]));
        assert_eq!(f[1].severity, Severity::Warn);
        assert!(
            f[1].summary.contains("then 4 interrupts in the next 1.0 s (RES 2, CAL 1, LOC 1), the first 952 ms in: the fair deadline server's kick"),
            "{}",
            f[1].summary
        );
        let fix = f[1].fix.as_ref().unwrap();
        assert!(fix.text.contains("SCHED_FIFO") && fix.text.contains("fair_server"));
        assert!(f[1].evidence.iter().any(|e| e.file
            == "/sys/kernel/debug/sched/fair_server/cpu1/runtime"
            && e.value == "50000000 (FAIR_SERVER)"));
    }

    #[test]
    fn a_ticking_cpu_fails_with_its_cause_and_fix() {
        let f = findings(&probe(vec![
            result(
                Policy::Fifo,
                Outcome::Ticking,
                Some((
                    "NOT_NOHZ_FULL",
                    "/sys/devices/system/cpu/nohz_full = (null)",
                )),
            ),
            result(
                Policy::Other,
                Outcome::Ticking,
                Some((
                    "NOT_NOHZ_FULL",
                    "/sys/devices/system/cpu/nohz_full = (null)",
                )),
            ),
        ]));
        assert_eq!(f[0].severity, Severity::Fail);
        assert_eq!(
            f[0].summary,
            "CPU 1: the tick kept running (250/s) under the probe's SCHED_FIFO thread: CPU 1 is not nohz_full: the kernel ticks it whatever runs there"
        );
        let fix = f[0].fix.as_ref().unwrap();
        assert_eq!(fix.kind, FixKind::Boot);
        assert!(fix.text.starts_with("boot with nohz_full=1"));
        // A fair thread ticking is a warning: SCHED_FIFO is the way.
        assert_eq!(f[1].severity, Severity::Warn);
        let sched = findings(&probe(vec![result(
            Policy::Fifo,
            Outcome::Ticking,
            Some(("SCHED", "runnable on CPU 1: spin/301")),
        )]));
        assert!(sched[0].summary.contains("another task is runnable there"));
        assert!(sched[0]
            .fix
            .as_ref()
            .unwrap()
            .text
            .contains("move the other tasks"));
        assert_eq!(sched[0].evidence.last().unwrap().file, "(inferred)");
        // Quiet, but a second task starved all along (6.1, no fair server): a warning.
        let mut quiet = result(Policy::Fifo, Outcome::Quiet, None);
        quiet.starved = vec!["spin/301".into()];
        let f = findings(&probe(vec![quiet]));
        assert_eq!(f[0].severity, Severity::Warn);
        assert!(f[0].summary.ends_with(", while spin/301 waited to run all along: a thread that never yields starves what shares its CPU"), "{}", f[0].summary);
        assert!(f[0]
            .fix
            .as_ref()
            .unwrap()
            .text
            .starts_with("move the other tasks off CPU 1"));
        // The starved one is the CPU's own kworker: no task to move, work to let run.
        let mut kworker = result(Policy::Fifo, Outcome::Quiet, None);
        kworker.starved = vec!["kworker/1:0/24".into()];
        kworker.starved_kernel_threads = true;
        let f = findings(&probe(vec![kworker]));
        assert_eq!(f[0].severity, Severity::Warn);
        assert!(
            f[0].summary.ends_with("here the CPU's own kernel work"),
            "{}",
            f[0].summary
        );
        let fix = &f[0].fix.as_ref().unwrap().text;
        assert!(fix.starts_with("let the work queued on CPU 1 run"), "{fix}");
        // Let run before the window, it is said, and the CPU is quiet: ok.
        let mut yielded = result(Policy::Fifo, Outcome::Quiet, None);
        yielded.yielded_to = vec!["kworker/1:0/24".into()];
        let f = findings(&probe(vec![yielded]));
        assert_eq!(f[0].severity, Severity::Ok);
        assert!(
            f[0].summary
                .contains("arrived (it first let kworker/1:0/24 run: work queued on the CPU"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn skipped_cpus_and_failed_probes_are_unknown() {
        let mut p = probe(vec![result(Policy::Fifo, Outcome::Quiet, None)]).unwrap();
        p.skipped.push(crate::Skipped {
            cpu: 2,
            workload: vec!["app/77".into()],
        });
        let f = findings(&Ok(p));
        assert_eq!(f[0].severity, Severity::Unknown);
        assert!(f[0]
            .summary
            .contains("CPU 2: not probed, a workload is there (app/77)"));
        // No CPU probed in the second phase: unknown, not ok.
        assert_eq!(f[1].severity, Severity::Unknown);
        let err = findings(&Err(ProbeError::NoHousekeeping));
        assert!(err.iter().all(|f| f.severity == Severity::Unknown));
        assert!(err[0].summary.contains("no housekeeping CPU"));
    }
}
