//! Lab tier: isol against the kernel's own noise referee, the osnoise tracer, on Debian's
//! 6.12 PREEMPT_RT kernel (CPU 1 isolated). The same provocations
//! (`isol-lab-guest referee`: the serial port's interrupt moved to CPU 1, a sleeper there
//! woken 5 times, a kworker, a task moved in) run twice:
//!
//! 1. **together**: osnoise samples CPU 1 while `isol watch --pid <osnoise thread>` watches
//!    it. Over the osnoise periods that lie inside the watch, the interruptions watch
//!    reports, by class, must equal osnoise's interference counters (IRQ, NMI, THREAD);
//! 2. **in turn**: osnoise alone, then `isol noise` alone (each with its own run of the
//!    provocations); the per-class table is printed for BENCHMARKS.md, and both must see
//!    every provoked class.
//!
//! Without a provisioned lab these tests print "skipped: <reason>"; with CI=true they fail.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use isol::interrupt::{Interruption, Kind, Record};
use isol_lab::{expect, lab_kernel_or_skip, Boot, Run, Scenario};

/// osnoise on CPU 1 with the `mono` clock (watch's) and a 5 us threshold.
const OSNOISE_ON: &str = r#"
T=/sys/kernel/tracing
echo mono > $T/trace_clock
echo 5 > $T/tracing_thresh
echo 1 > $T/osnoise/cpus
echo osnoise > $T/current_tracer
"#;

/// Stop osnoise and print its per-period lines with `prefix`.
fn osnoise_off(prefix: &str) -> String {
    format!(
        "echo 0 > $T/tracing_on\ngrep -v '^#' $T/trace | sed 's/^/{prefix} /'\n\
         echo nop > $T/current_tracer\necho 1 > $T/tracing_on\n"
    )
}

fn together() -> String {
    format!(
        "isol watch --cpus 1 -d 0.2 --keep-armed > /dev/null 2>&1\n{OSNOISE_ON}\
         sleep 0.5\n\
         P=$(grep -l '^osnoise/1$' /proc/[0-9]*/comm | cut -d/ -f3)\n\
         echo \"UPTIME_BEFORE_WATCH $(cat /proc/uptime)\"\n\
         isol watch --cpus 1 --pid $P -d 10 --json > /tmp/w.jsonl 2>/tmp/w.err & W=$!\n\
         until grep -q '\"start\"' /tmp/w.jsonl 2>/dev/null; do sleep 0.1; done\n\
         echo \"UPTIME_WATCHING $(cat /proc/uptime)\"\n\
         isol-lab-guest referee 1 500 > /tmp/ref.json\n\
         wait $W\n{}\
         echo \"REFEREE $(cat /tmp/ref.json)\"\n\
         sed 's/^/ERR /' /tmp/w.err\n\
         cat /tmp/w.jsonl\n",
        osnoise_off("OSNOISE")
    )
}

fn in_turn() -> String {
    format!(
        "{OSNOISE_ON}sleep 0.5\n\
         isol-lab-guest referee 1 1000 > /dev/null & R=$!\nsleep 6.5\nwait $R\n{}\
         isol-lab-guest referee 1 1000 --after isol-noise-1 > /dev/null & R=$!\n\
         isol noise --cpus 1 -d 6 --threshold 5000 --json > /tmp/noise.json 2>/tmp/noise.err\n\
         echo \"NOISE_STATUS $?\"\n\
         wait $R\n\
         echo \"NOISE $(tr -d '\\n' < /tmp/noise.json)\"\n\
         isol watch --disarm\n",
        osnoise_off("ALONE")
    )
}

fn lab_run() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| {
        let lab = lab_kernel_or_skip("rt")?;
        // A thread per vCPU: with one thread for all, osnoise's spinning vCPU starves the
        // other (a `cat /proc/kallsyms` took 14 s).
        let boot = Boot::default();
        let run = lab
            .run(
                &boot,
                &[
                    Scenario::new("together", together()),
                    Scenario::new("in_turn", in_turn()),
                ],
            )
            .unwrap_or_else(|e| panic!("lab run on the RT kernel failed: {e}"));
        eprintln!(
            "lab: kernel {}, {:.1} s",
            run.kernel,
            run.elapsed.as_secs_f64()
        );
        Some(run)
    })
    .as_ref()
}

/// osnoise's classes, in its column order.
const CLASSES: [&str; 5] = ["HW", "NMI", "IRQ", "SIRQ", "THREAD"];

/// One osnoise period: when it ended (ns, `mono`), how long it sampled, its counters.
#[derive(Debug)]
struct Period {
    end_ns: u64,
    runtime_ns: u64,
    counts: [u64; 5],
}

/// The per-period lines osnoise wrote (`... [001] ....1  6.351174: 1000000 21974 97.80 1858
/// 489 0 0 0 0`), those tagged `prefix` by the scenario.
fn periods(stdout: &str, prefix: &str) -> Vec<Period> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
        .filter_map(|l| {
            let (head, tail) = l.split_once(": ")?;
            let ts: f64 = head.split_whitespace().last()?.parse().ok()?;
            let f: Vec<u64> = tail
                .split_whitespace()
                .map(|w| w.parse::<f64>().map(|v| v as u64))
                .collect::<Result<_, _>>()
                .ok()?;
            (f.len() == 9).then(|| Period {
                end_ns: (ts * 1e9) as u64,
                runtime_ns: f[0] * 1_000,
                counts: [f[4], f[5], f[6], f[7], f[8]],
            })
        })
        .collect()
}

/// osnoise's class of an interruption of `kind`; None for what osnoise does not count as
/// interference (a system call or page fault of the watched task).
fn class(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::LocalTimer | Kind::Ipi | Kind::Apic | Kind::Irq => "IRQ",
        Kind::Nmi => "NMI",
        Kind::Softirq => "SIRQ",
        Kind::Task => "THREAD",
        Kind::Syscall | Kind::PageFault => return None,
    })
}

/// How long the watch recorded (its summary's `duration_ns`).
fn duration(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .and_then(|v| v["summary"]["duration_ns"].as_u64())
        .unwrap_or_else(|| panic!("no summary\n{stdout}"))
}

/// When the watch started recording, and its interruptions.
fn interruptions(stdout: &str) -> (u64, Vec<Interruption>) {
    let start = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "start")
        .and_then(|v| v["start_ns"].as_u64())
        .unwrap_or_else(|| panic!("no start\n{stdout}"));
    let found = expect::records(stdout)
        .into_iter()
        .filter_map(|r| match r {
            Record::Interruption(i) => Some(i),
            _ => None,
        })
        .collect();
    (start, found)
}

/// Osnoise and watch at the same time: over the periods inside the watch, the same count
/// per class.
#[test]
fn watch_counts_what_osnoise_counts_on_the_rt_kernel() {
    let Some(run) = lab_run() else { return };
    let out = &run.result("together").unwrap().stdout;
    let all = periods(out, "OSNOISE");
    let (start, found) = interruptions(out);
    let end = start + duration(out);
    // Whole periods inside the watch, away from its last hold-back.
    let inside: Vec<&Period> = all
        .iter()
        .filter(|p| p.end_ns - p.runtime_ns >= start && p.end_ns + 200_000_000 <= end)
        .collect();
    assert!(
        inside.len() >= 4,
        "periods {all:?} watch {start}..{end}\n{out}"
    );
    let mut theirs: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ours: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &inside {
        for (c, n) in CLASSES.iter().zip(p.counts) {
            *theirs.entry(c).or_default() += n;
        }
        for i in &found {
            if (p.end_ns - p.runtime_ns..p.end_ns).contains(&i.start_ns) {
                if let Some(c) = class(i.kind) {
                    *ours.entry(c).or_default() += 1;
                }
            }
        }
    }
    eprintln!(
        "together on {} over {} periods: osnoise {theirs:?}, isol watch {ours:?}",
        run.kernel,
        inside.len()
    );
    for c in ["IRQ", "NMI", "THREAD"] {
        assert_eq!(
            theirs.get(c).copied().unwrap_or(0),
            ours.get(c).copied().unwrap_or(0),
            "{c}: osnoise {theirs:?}, isol {ours:?}\n{out}"
        );
    }
    // The provocations were seen: the serial interrupt and its thread, the kworker, the
    // task moved in, each named.
    let named = |what: &str| found.iter().any(|i| i.culprit().contains(what));
    for what in ["ttyS0", "kworker", "isol-migrant", "isol-sleeper"] {
        assert!(named(what), "{what} not named\n{out}");
    }
}

/// osnoise alone, then `isol noise` alone, over the same provocations: both see every
/// provoked class; the table (printed) is in BENCHMARKS.md with its differences explained.
#[test]
fn noise_and_osnoise_in_turn_on_the_rt_kernel() {
    let Some(run) = lab_run() else { return };
    let out = &run.result("in_turn").unwrap().stdout;
    let alone = periods(out, "ALONE");
    assert!(alone.len() >= 5, "{out}");
    let mut theirs = [0u64; 5];
    for p in &alone {
        for (t, n) in theirs.iter_mut().zip(p.counts) {
            *t += n;
        }
    }
    let secs = alone.iter().map(|p| p.runtime_ns).sum::<u64>() as f64 / 1e9;
    let doc: serde_json::Value = serde_json::from_str(
        out.lines()
            .find_map(|l| l.strip_prefix("NOISE "))
            .unwrap_or_else(|| panic!("no noise report\n{out}")),
    )
    .unwrap();
    let cpu = &doc["cpus"][0];
    let mut ours = [0u64; 5];
    for c in cpu["causes"].as_array().unwrap() {
        let kind: Kind = serde_json::from_value(c["kind"].clone()).unwrap();
        if let Some(cl) = class(kind) {
            let i = CLASSES.iter().position(|x| *x == cl).unwrap();
            ours[i] += c["count"].as_u64().unwrap();
        }
    }
    ours[0] = cpu["unexplained"]["count"].as_u64().unwrap();
    let noise_secs = cpu["duration_ns"].as_u64().unwrap() as f64 / 1e9;
    eprintln!(
        "in turn on {}: osnoise {secs:.1} s, isol noise {noise_secs:.1} s",
        run.kernel
    );
    eprintln!(
        "| class | osnoise ({secs:.1} s) | per s | isol noise ({noise_secs:.1} s) | per s |\n\
         |---|---:|---:|---:|---:|"
    );
    for (i, c) in CLASSES.iter().enumerate() {
        eprintln!(
            "| {c} | {} | {:.1} | {} | {:.1} |",
            theirs[i],
            theirs[i] as f64 / secs,
            ours[i],
            ours[i] as f64 / noise_secs
        );
    }
    // Every provoked class, seen by both: device interrupts and IPIs (IRQ), the sleeper,
    // the kworker and the task moved in (THREAD).
    for c in ["IRQ", "THREAD"] {
        let i = CLASSES.iter().position(|x| *x == c).unwrap();
        assert!(
            theirs[i] > 0 && ours[i] > 0,
            "{c}: {theirs:?} {ours:?}\n{out}"
        );
    }
}
