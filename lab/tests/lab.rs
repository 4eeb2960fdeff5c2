//! Lab tier: claims about ticks, watch and noise, proven on Debian's 6.12 cloud kernel
//! booted under QEMU with `nohz_full=1`. One boot serves every test in this file. Task
//! isolation is tested on every lab kernel in `task.rs`. Without a
//! provisioned lab these tests print "skipped: <reason>"; with CI=true they fail instead.

use std::sync::OnceLock;

use isol::interrupt::Kind;
use isol_lab::expect::records;
use isol_lab::{lab_or_skip, Boot, Lab, Run, Scenario};

fn lab_run() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| {
        let lab = lab_or_skip()?;
        let scenarios = [
            Scenario::new("uname", "uname -r"),
            Scenario::new("nohz_full", "cat /sys/devices/system/cpu/nohz_full"),
            Scenario::new("check", "isol check --json"),
            // A SCHED_FIFO spinner, so RT throttling must not take the CPU away.
            Scenario::new(
                "rt_unthrottled",
                "echo -1 > /proc/sys/kernel/sched_rt_runtime_us",
            ),
            Scenario::new("ticks", "isol-lab-guest ticks --fifo 1 5 0"),
            Scenario::new("watch_quiet", WATCH_QUIET),
            Scenario::new("top_quiet", TOP_QUIET),
            Scenario::new("watch_provoked", WATCH_PROVOKED),
            Scenario::new("noise", NOISE),
        ];
        let run = lab
            .run(&Boot::default(), &scenarios)
            .unwrap_or_else(|e| panic!("lab run failed: {e}"));
        eprintln!(
            "lab: kernel {}, {:.1} s, cmdline {}",
            run.kernel,
            run.elapsed.as_secs_f64(),
            run.cmdline
        );
        Some(run)
    })
    .as_ref()
}

/// A SCHED_FIFO spinner on CPU 1; its interrupts counted from /proc/interrupts over 10 s
/// without `isol watch`, then over 10 s while `isol watch` runs (after its start-up, whose
/// tracepoint patching IPIs every CPU once), serving metrics, checking readiness every
/// second and scraped twice a second, as a node agent is.
const WATCH_QUIET: &str = r#"
ip link set lo up
isol-lab-guest spin --fifo 1 34 & S=$!
sleep 2
b0=$(isol-lab-guest irqsum 1); sleep 10; b1=$(isol-lab-guest irqsum 1)
isol watch --cpus 1 -d 16 --json --metrics 127.0.0.1:9184 --check-interval 1s > /tmp/quiet.jsonl 2>/tmp/quiet.err & W=$!
until grep -q '"start"' /tmp/quiet.jsonl 2>/dev/null; do sleep 0.05; done
sleep 1
w0=$(isol-lab-guest irqsum 1)
for i in $(seq 20); do wget -q -O /tmp/metrics.txt http://127.0.0.1:9184/metrics; sleep 0.5; done
w1=$(isol-lab-guest irqsum 1)
runs=$(grep '^isol_check_runs_total' /tmp/metrics.txt | cut -d' ' -f2)
wait $W; rc=$?
kill $S; wait $S 2>/dev/null
printf '{"type":"irqs","without":%d,"with":%d,"watch_status":%d,"check_runs":%d}\n' $((b1-b0)) $((w1-w0)) $rc ${runs:-0}
cat /tmp/quiet.jsonl /tmp/quiet.err
"#;

/// `isol top` in a pseudo-terminal on CPU 1 while a SCHED_FIFO spinner runs there: the
/// interrupts CPU 1 takes over 10 s without it, then over 10 s with its screen up (after its
/// start), redrawing ten times a second.
const TOP_QUIET: &str = r#"
isol-lab-guest spin --fifo 1 90 & S=$!
sleep 2
b0=$(isol-lab-guest irqsum 1); sleep 10; b1=$(isol-lab-guest irqsum 1)
isol-lab-guest pty 100 30 1 10 'isol top' -- isol top --cpus 1 > /tmp/top.json; rc=$?
kill $S; wait $S 2>/dev/null
printf '{"type":"irqs","without":%d,"pty_status":%d}\n' $((b1-b0)) $rc
cat /tmp/top.json
echo "INSTANCES $(ls /sys/kernel/tracing/instances | tr '\n' ' ')"
"#;

/// `isol-lab-guest provoke` under `isol watch`: every provocation must be named.
const WATCH_PROVOKED: &str = r#"
isol-lab-guest provoke 1 300 --go /tmp/watching > /tmp/prov.json & P=$!
sleep 1
isol watch --cpus 1 -d 6 --json > /tmp/prov.jsonl & W=$!
until grep -q '"start"' /tmp/prov.jsonl 2>/dev/null; do sleep 0.05; done
touch /tmp/watching
wait $W
wait $P
cat /tmp/prov.jsonl
echo "PROVOKE $(cat /tmp/prov.json)"
"#;

/// `isol noise` on the isolated CPU for 10 s while `isol-lab-guest disturb` (another
/// process) wakes a thread there 5 times and moves a task onto it, 1 s after the measurement
/// began.
const NOISE: &str = r#"
isol-lab-guest disturb 1 1000 5 --fifo --after isol-noise-1 > /tmp/disturb.json & D=$!
isol noise --cpus 1 -d 10 --fifo --json > /tmp/noise.json; rc=$?
wait $D
echo "DISTURB $(cat /tmp/disturb.json)"
echo "NOISE_STATUS $rc"
cat /tmp/noise.json
"#;

fn lab_hz(lab: &Lab) -> u64 {
    let config =
        std::fs::read_to_string(lab.vmlinuz.with_file_name("config")).expect("lab kernel config");
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.parse().ok())
        .expect("CONFIG_HZ in the lab kernel config")
}

#[test]
fn lab_boots_the_provisioned_kernel() {
    let Some(run) = lab_run() else { return };
    let r = run.result("uname").unwrap();
    assert_eq!(r.status, 0);
    assert_eq!(r.stdout.trim(), run.kernel);
}

#[test]
fn kernel_model_agrees_with_sysfs_nohz_full() {
    let Some(run) = lab_run() else { return };
    let sysfs = run.result("nohz_full").unwrap().stdout.trim().to_string();
    assert_eq!(sysfs, "1");
    let check = run.result("check").unwrap();
    let r = check.json();
    assert_eq!(r["target"]["source"], "nohz_full");
    assert_eq!(r["target"]["cpus"], sysfs);
    let sev = |id: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()["severity"]
            .clone()
    };
    for id in [
        "kernel.no_hz_full",
        "boot.nohz_full",
        "boot.domain_isolated",
        "boot.rcu_nocbs",
        "irq.effective_affinity",
    ] {
        assert_eq!(sev(id), "ok", "{id}: {check:?}");
    }
    assert_eq!(r["summary"]["fail"], 0);
    assert_eq!(check.status, r["exit_code"].as_i64().unwrap() as i32);
}

#[test]
fn busy_isolated_cpu_gets_no_ticks_while_cpu0_gets_hz() {
    let Some(run) = lab_run() else { return };
    let lab = Lab::open().unwrap();
    assert_eq!(run.result("rt_unthrottled").unwrap().status, 0);
    let t = run.result("ticks").unwrap();
    assert_eq!(t.status, 0, "{}", t.stdout);
    let j = t.json();
    let secs = j["seconds"].as_f64().unwrap();
    assert!(secs >= 5.0, "measured over {secs} s");
    // Independent source 1: /proc/interrupts.
    assert_eq!(
        j["loc"]["1"], 0,
        "local timer interrupts on the isolated CPU: {j}"
    );
    // Independent source 2: /proc/timer_list.
    assert_eq!(j["tick_stopped"], true, "{j}");
    assert_eq!(
        j["next_event_is_ktime_max"], true,
        "tick device still armed: {j}"
    );
    assert_eq!(j["next_event"].as_i64(), Some(i64::MAX));
    // The busy housekeeping CPU ticks at about HZ (the guest clock follows the host's).
    let hz = lab_hz(&lab) as f64;
    let rate = j["loc"]["0"].as_u64().unwrap() as f64 / secs;
    assert!(
        rate > 0.7 * hz && rate < 1.3 * hz,
        "CPU 0 ticked {rate:.0}/s, HZ={hz}"
    );
}

#[test]
fn watch_sees_no_interruption_of_a_quiet_isolated_cpu_and_adds_none_nor_do_its_metrics_and_checks()
{
    let Some(run) = lab_run() else { return };
    let r = run.result("watch_quiet").unwrap();
    assert_eq!(r.status, 0, "{}", r.stdout);
    let irqs: serde_json::Value = r
        .stdout
        .lines()
        .find(|l| l.contains(r#""type":"irqs""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no irq counts:\n{}", r.stdout));
    assert_eq!(irqs["watch_status"], 0, "{}", r.stdout);
    assert!(r.stdout.contains(r#""type":"start""#), "{}", r.stdout);
    assert!(r.stdout.contains(r#""type":"summary""#), "{}", r.stdout);
    // The exporter answered and re-checked readiness meanwhile (every second of guest
    // time, each check slower under TCG).
    assert!(
        irqs["check_runs"].as_u64().unwrap() >= 3,
        "{irqs}\n{}",
        r.stdout
    );
    // /proc/interrupts: the same count for CPU 1 with and without watch, its metrics and
    // its checks (both zero).
    assert_eq!(irqs["without"], 0, "{irqs}");
    // watch itself: zero interruptions of CPU 1 and nothing lost.
    let recs = records(&r.stdout);
    assert_eq!(irqs["with"], irqs["without"], "{irqs}: {recs:?}");
    assert!(recs.is_empty(), "watch reported on a quiet CPU: {recs:?}");
}

/// `isol top` costs an isolated CPU what watch costs it: nothing after its start, with its
/// screen redrawn ten times a second; the idle CPU's row reads zero; it quits on `q` with
/// the terminal back on its main screen and no tracing instance left.
#[test]
fn top_reads_zero_for_a_quiet_isolated_cpu_and_adds_nothing() {
    let Some(run) = lab_run() else { return };
    let r = run.result("top_quiet").unwrap();
    assert_eq!(r.status, 0, "{}", r.stdout);
    let line = |marker: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no {marker}:\n{}", r.stdout))
    };
    let irqs: serde_json::Value = serde_json::from_str(line(r#""type":"irqs""#)).unwrap();
    assert_eq!(irqs["pty_status"], 0, "{}", r.stdout);
    let top: serde_json::Value = serde_json::from_str(line(r#""screen""#)).unwrap();
    let screen = top["screen"].as_str().unwrap();
    eprintln!("{screen}");
    assert_eq!(irqs["without"], 0, "{irqs}");
    assert_eq!(top["irqs"], irqs["without"], "with top's screen up: {top}");
    // The row: cpu 1s total tick ipi irq sirq task other longest last resident.
    let row: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.starts_with("cpu"))
        .nth(1)
        .unwrap_or_else(|| panic!("no CPU row:\n{screen}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..11],
        ["1", "0", "0", "0", "0", "0", "0", "0", "0", "-", "-"],
        "{screen}"
    );
    assert_ne!(
        row.get(11),
        Some(&"(none)"),
        "the spinner is CPU 1's resident: {screen}"
    );
    assert!(screen.contains("nohz_full 1"), "{screen}");
    assert_eq!(top["status"], 0, "{top}");
    assert_eq!(top["alternate_after"], false, "{top}");
    assert_eq!(top["cursor_hidden_after"], false, "{top}");
    let instances = line("INSTANCES");
    assert!(!instances.contains("isol-"), "{instances}");
}

#[test]
fn watch_names_every_provoked_interruption_in_the_lab() {
    let Some(run) = lab_run() else { return };
    let r = run.result("watch_provoked").unwrap();
    assert_eq!(r.status, 0, "{}", r.stdout);
    let prov: serde_json::Value = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("PROVOKE "))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no provoke output:\n{}", r.stdout));
    isol_lab::expect::assert_provocations_named(&records(&r.stdout), &prov);
}

#[test]
fn noise_on_the_isolated_cpu_attributes_only_what_the_test_provoked() {
    let Some(run) = lab_run() else { return };
    let r = run.result("noise").unwrap();
    let line = |tag: &str| {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag} line:\n{}", r.stdout))
            .trim()
            .to_string()
    };
    assert_eq!(line("NOISE_STATUS "), "0", "{}", r.stdout);
    let d: serde_json::Value = serde_json::from_str(&line("DISTURB ")).unwrap();
    let report: isol::noise::Report = serde_json::from_str(
        r.stdout
            .lines()
            .find(|l| l.starts_with('{') && l.contains("isol.noise/v1"))
            .expect("the noise report"),
    )
    .unwrap();
    assert!(report.attributed);
    let c = &report.cpus[0];
    assert_eq!(c.cpu, 1);
    let q = c
        .quiesce
        .as_ref()
        .expect("CPU 1 is nohz_full: quiesced first");
    assert!(q.quiet, "{q:?}");
    let pid = d["pid"].as_i64().unwrap();
    let by_disturb = format!("/{pid} on cpu0");
    let table = || serde_json::to_string_pretty(&c.causes).unwrap();
    // Nothing outside the time the test was disturbing the CPU: every explained gap lies
    // between the first wakeup and the migrated task's end (the kernel's own follow-up
    // work, such as the reschedule IPIs that bring the tasks, is part of it).
    let (begin, end) = (
        d["begin_ns"].as_u64().unwrap(),
        d["end_ns"].as_u64().unwrap(),
    );
    for g in c.gap_list.iter().filter(|g| g.cause.is_some()) {
        let at = c.start_ns + g.at_ns;
        assert!(
            at + 5_000_000 >= begin && at <= end + 5_000_000,
            "a gap the test did not provoke, {:.3} s before/after its window: {g:?}\n{}",
            if at < begin {
                (begin - at) as f64 / 1e9
            } else {
                (at - end) as f64 / 1e9
            },
            table()
        );
    }
    let count = |kind: Kind, culprit: &str| {
        c.causes
            .iter()
            .filter(|r| r.kind == kind && r.culprit == culprit)
            .map(|r| r.count)
            .sum::<u64>()
    };
    assert!(
        count(Kind::Task, "isol-sleeper") >= d["wakeups"].as_u64().unwrap(),
        "{}",
        table()
    );
    assert!(count(Kind::Task, "isol-migrant") >= 1, "{}", table());
    assert!(
        c.causes
            .iter()
            .any(|r| r.kind == Kind::Ipi && r.senders.iter().any(|s| s.ends_with(&by_disturb))),
        "no IPI from the disturbing process:\n{}",
        table()
    );
    // The isolation watcher's own count (a second tracing instance) agrees.
    let attributed: u64 =
        c.causes.iter().map(|r| r.count).sum::<u64>() + c.interruptions_outside_gaps;
    assert_eq!(q.isolation_interruptions, Some(attributed), "{}", table());
    // The rest of the gaps are TCG's own (emulation, not the kernel): unexplained.
    let explained = c.gap_list.iter().filter(|g| g.cause.is_some()).count() as u64;
    assert_eq!(explained + c.unexplained.count, c.gaps);
    eprintln!(
        "lab noise: {} gaps, {} explained, loop {:.1} ns (TCG), causes:\n{}",
        c.gaps,
        explained,
        c.loop_ns,
        table()
    );
}
