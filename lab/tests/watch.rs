//! Lab tier: `isol watch` in the order users run it, on the 6.12 and 6.1 cloud kernels
//! (CPU 1 `nohz_full`, CPUs 0 and 2 housekeeping). The watch starts first; then the
//! application starts on CPU 1 with `taskset` (it makes itself SCHED_FIFO and its sibling
//! thread unmaps pages from CPU 0), `kill` signals it from CPU 0, `tee` writes
//! `drop_caches` (draining the LRU pages the application left on CPU 1), and CPU 2 goes
//! offline and online. Every one of those must be named, the application never printed as
//! an interruption, and the interrupts `/proc/interrupts` counted on CPU 1 must equal what
//! watch reported plus its own start and stop cost. A program flipping network
//! timestamping interrupts CPU 1 at each flip, unless a watch holds it on.

use std::sync::OnceLock;

use isol::interrupt::{Interruption, Kind, Record};
use isol_lab::{lab_kernel_or_skip, Boot, Run, Scenario};

/// The user's order: watch, then the application, then what disturbs it.
const USER_ORDER: &str = r#"
echo -1 > /proc/sys/kernel/sched_rt_runtime_us
ifconfig lo 127.0.0.1 up
sleep 1
i0=$(isol-lab-guest irqsum 1)
isol watch --cpus 1 -d 16 --json > /tmp/w.jsonl 2>/tmp/w.err & W=$!
until grep -q '"start"' /tmp/w.jsonl 2>/dev/null; do sleep 0.05; done
echo "IRQS_TO_START $(( $(isol-lab-guest irqsum 1) - i0 ))"
sleep 3
taskset -c 1 isol-lab-guest app 10 > /tmp/app.json & A=$!
sleep 2
taskset -c 0 /bin/kill -USR1 $A
sleep 1
echo 3 | taskset -c 0 tee /proc/sys/vm/drop_caches > /dev/null
sleep 1
echo 0 | taskset -c 0 tee /sys/devices/system/cpu/cpu2/online > /dev/null
sleep 1
echo 1 | taskset -c 0 tee /sys/devices/system/cpu/cpu2/online > /dev/null
sleep 1
isol-lab-guest udp 1 3 > /tmp/udp.json
wait $A
wait $W; echo "WATCH_STATUS $?"
i1=$(isol-lab-guest irqsum 1)
sleep 1
echo "IRQS_AFTER_EXIT $(( $(isol-lab-guest irqsum 1) - i1 ))"
echo "IRQS $((i1-i0))"
echo "APP $(cat /tmp/app.json)"
echo "UDP $(cat /tmp/udp.json)"
sed 's/^/ERR /' /tmp/w.err
cat /tmp/w.jsonl
"#;

/// Watch's own cost, three times on an idle isolated CPU: a plain watch, one that leaves
/// its events on (`--keep-armed`), and one that finds them on. `isol check` on the armed
/// instance, and after `--disarm`.
const COST: &str = r#"
for mode in plain keep-armed reuse; do
  flag=; [ $mode = keep-armed ] && flag=--keep-armed
  a=$(isol-lab-guest irqsum 1)
  isol watch --cpus 1 -d 1 --json $flag > /tmp/c.jsonl 2>/dev/null
  echo "COST $mode $(( $(isol-lab-guest irqsum 1) - a )) $(grep '"summary"' /tmp/c.jsonl)"
done
echo "CHECK armed $(isol check --json | tr -d '\n')"
isol watch --disarm
echo "CHECK disarmed $(isol check --json | tr -d '\n')"
"#;

/// `isol noise` on the same kernel, with the disturbances `isol-lab-guest disturb` makes.
const NOISE: &str = r#"
echo -1 > /proc/sys/kernel/sched_rt_runtime_us
isol-lab-guest disturb 1 500 3 --fifo --after isol-noise-1 > /dev/null & D=$!
isol noise --cpus 1 -d 5 --fifo --json > /tmp/n.json 2>/dev/null; echo "NOISE_STATUS $?"
wait $D
echo "NOISE $(tr -d '\n' < /tmp/n.json)"
"#;

/// A program on CPU 0 turning network timestamping on and off ten times, under a watch
/// without and then with `--hold-timestamps`: what CPU 1 pays for each flip of the key.
const TIMESTAMPS: &str = r#"
for hold in no yes; do
  flag=; [ $hold = yes ] && flag=--hold-timestamps
  isol watch --cpus 1 --json $flag > /tmp/t.jsonl 2>/tmp/t.err & W=$!
  until grep -q '"start"' /tmp/t.jsonl 2>/dev/null; do sleep 0.05; done
  echo "NETSTAMP $hold $(isol-lab-guest netstamp 1 10)"
  kill -INT $W; wait $W; echo "WATCH_STATUS $hold $?"
  sed "s/^/ERR $hold /" /tmp/t.err
done
"#;

fn boot() -> Boot {
    Boot {
        isolation: "nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 \
                    irqaffinity=0,2 mce=ignore_ce"
            .into(),
        // Each watch switches about 45 tracepoints on and off: see `single_thread`.
        single_thread: true,
        ..Boot::isolated(3)
    }
}

fn run_on(kernel: &str) -> Option<Run> {
    let lab = lab_kernel_or_skip(kernel)?;
    let run = lab
        .run(
            &boot(),
            &[
                Scenario::new("user_order", USER_ORDER),
                Scenario::new("cost", COST),
                Scenario::new("noise", NOISE),
                Scenario::new("timestamps", TIMESTAMPS),
            ],
        )
        .unwrap_or_else(|e| panic!("lab run on {kernel} failed: {e}"));
    eprintln!(
        "lab: kernel {}, {:.1} s",
        run.kernel,
        run.elapsed.as_secs_f64()
    );
    Some(run)
}

/// What one run printed, parsed.
struct Seen {
    stdout: String,
    interruptions: Vec<Interruption>,
    start: serde_json::Value,
    summary: serde_json::Value,
    app: serde_json::Value,
    irqs: u64,
}

impl Seen {
    fn parse(run: &Run) -> Seen {
        let stdout = run.result("user_order").unwrap().stdout.clone();
        let field = |p: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(p))
                .unwrap_or_else(|| panic!("no {p} in\n{stdout}"))
                .trim()
                .to_string()
        };
        assert_eq!(field("WATCH_STATUS "), "0", "{stdout}");
        let mut start = serde_json::Value::Null;
        let mut summary = serde_json::Value::Null;
        let mut interruptions = Vec::new();
        for l in stdout.lines().filter(|l| l.starts_with('{')) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            match v["type"].as_str() {
                Some("start") => start = v,
                Some("summary") => summary = v,
                Some("interruption") => {
                    if let Ok(Record::Interruption(i)) = serde_json::from_value(v) {
                        interruptions.push(i);
                    }
                }
                _ => {}
            }
        }
        Seen {
            app: serde_json::from_str(&field("APP ")).unwrap(),
            irqs: field("IRQS ").parse().unwrap(),
            stdout,
            interruptions,
            start,
            summary,
        }
    }

    fn sender_named(&self, i: &Interruption, comm: &str) -> bool {
        i.senders
            .iter()
            .any(|s| s.comm == comm || s.on_behalf.as_ref().is_some_and(|b| b.comm == comm))
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.stdout)
    }
}

fn check(run: &Run) {
    let seen = Seen::parse(run);
    let pid = seen.app["pid"].as_i64().unwrap();
    let sibling = seen.app["sibling"].as_i64().unwrap();
    // The application (and its sibling, while it still ran on CPU 1) is the workload.
    for i in &seen.interruptions {
        if i.kind == Kind::Task && (i.number == Some(pid) || i.number == Some(sibling)) {
            seen.fail(&format!(
                "the application printed as an interruption: {i:?}"
            ));
        }
    }
    let notices: Vec<&str> = seen.start["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let no_ipi_events: Vec<&&str> = notices
        .iter()
        .filter(|n| n.contains("no ipi:ipi_send_cpu"))
        .collect();
    let munmaps = seen.app["munmaps"].as_u64().unwrap();
    assert_eq!(seen.app["usr1"], 1, "{}", seen.stdout);
    if no_ipi_events.is_empty() {
        // TLB shootdowns from the sibling: separate top-level lines naming the flush.
        let flushes: Vec<&Interruption> = seen
            .interruptions
            .iter()
            .filter(|i| i.kind == Kind::Ipi && i.culprit().contains("flush_tlb"))
            .collect();
        if flushes.is_empty() || flushes.iter().any(|i| i.depth != 0) {
            seen.fail(&format!("{munmaps} munmaps: TLB flushes {flushes:?}"));
        }
        if !flushes.iter().any(|i| seen.sender_named(i, "sibling")) {
            seen.fail("no TLB flush names the sibling thread as its sender");
        }
        // The signal from `kill` on CPU 0.
        let kicked = seen.interruptions.iter().any(|i| {
            i.kind == Kind::Ipi && i.senders.iter().any(|s| s.comm == "kill" && s.cpu == 0)
        });
        if !kicked {
            seen.fail("no interruption names `kill` on cpu0 as its sender");
        }
    } else {
        // A kernel without IPI send events (6.1): said once at the start, and each IPI
        // says why it has no sender; the shootdowns are still separate top-level lines.
        assert_eq!(no_ipi_events.len(), 1, "{notices:?}");
        let ipis: Vec<&Interruption> = seen
            .interruptions
            .iter()
            .filter(|i| i.kind == Kind::Ipi && i.source.starts_with("call_function"))
            .collect();
        if (ipis.len() as u64) < munmaps || ipis.iter().any(|i| i.depth != 0) {
            seen.fail(&format!("{munmaps} munmaps: function-call IPIs {ipis:?}"));
        }
        if ipis
            .iter()
            .any(|i| !i.untraced.as_deref().unwrap_or("").contains("no ipi_send"))
        {
            seen.fail("an IPI on a kernel without send events does not say why it has no sender");
        }
    }
    // The LRU drain, queued by the writer of drop_caches. 6.1's drop_caches leaves the
    // other CPUs' LRU batches alone (no drain work ran on CPU 1 there); wherever one runs,
    // it names `tee`.
    let drains: Vec<&Interruption> = seen
        .interruptions
        .iter()
        .filter(|i| i.functions.iter().any(|f| f.starts_with("lru_add_drain")))
        .collect();
    if no_ipi_events.is_empty() && drains.is_empty() {
        seen.fail("drop_caches drained no LRU batch on CPU 1");
    }
    if drains.iter().any(|i| !seen.sender_named(i, "tee")) {
        seen.fail("an LRU drain does not name `tee` (the writer of drop_caches)");
    }
    // CPU 2 going offline: its stop_machine on CPU 1 traced back to `tee`.
    let hotplug = seen.interruptions.iter().any(|i| {
        i.kind == Kind::Task && i.source.starts_with("migration") && seen.sender_named(i, "tee")
    });
    if !hotplug {
        seen.fail("CPU 2's hotplug on CPU 1 does not name `tee`");
    }
    // Datagrams over loopback from CPU 0: each wakes the receiver from the sender's
    // softirq, and its line names the handler (`net_rx_action`), on both kernels.
    let udp: serde_json::Value = serde_json::from_str(
        seen.stdout
            .lines()
            .find_map(|l| l.strip_prefix("UDP "))
            .unwrap_or_else(|| panic!("no UDP line\n{}", seen.stdout)),
    )
    .unwrap();
    assert_eq!(udp["received"], 3, "{udp}");
    let woken = seen
        .interruptions
        .iter()
        .filter(|i| {
            i.kind == Kind::Task
                && i.number == udp["receiver"].as_i64()
                && i.senders.iter().any(|s| {
                    s.cpu == 0
                        && s.context == "softirq"
                        && s.handler.as_deref() == Some("net_rx_action")
                })
        })
        .count();
    if woken < 3 {
        seen.fail(&format!(
            "{woken} of 3 wakeups of the UDP receiver name net_rx_action on cpu0"
        ));
    }
    // No IPI without a sender unless it says why.
    for i in &seen.interruptions {
        let wants_sender = i.kind == Kind::Ipi && i.source != "irq_work";
        if wants_sender && i.senders.is_empty() && i.untraced.is_none() {
            seen.fail(&format!("an IPI with neither sender nor reason: {i:?}"));
        }
    }
    // Counted both ways: every interrupt the kernel counted on CPU 1 is a line, or part of
    // watch's own start and stop cost.
    let lines = seen
        .interruptions
        .iter()
        .filter(|i| {
            matches!(
                i.kind,
                Kind::LocalTimer | Kind::Ipi | Kind::Apic | Kind::Irq | Kind::Nmi
            )
        })
        .count() as u64;
    let cost = |w: &str| seen.summary["cost"][w]["interrupts"]["1"].as_u64().unwrap();
    let (start, stop) = (cost("start"), cost("stop"));
    assert_eq!(
        seen.irqs,
        start + lines + stop,
        "/proc/interrupts: {} on CPU 1; watch: {lines} interrupts + {start} to start + {stop} \
         to stop\n{}",
        seen.irqs,
        seen.stdout
    );
    assert!(seen.start["notices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().starts_with("start-up cost")));
}

fn run_612() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| run_on("6.12")).as_ref()
}

fn run_61() -> Option<&'static Run> {
    static RUN: OnceLock<Option<Run>> = OnceLock::new();
    RUN.get_or_init(|| run_on("6.1")).as_ref()
}

#[test]
fn watch_before_the_application_names_every_interruption_on_6_12() {
    if let Some(run) = run_612() {
        check(run);
    }
}

#[test]
fn watch_before_the_application_names_every_interruption_on_6_1() {
    let Some(run) = run_61() else { return };
    check(run);
}

/// `(interrupts /proc/interrupts counted on CPU 1, start cost, stop cost)` per mode.
fn costs(run: &Run) -> Vec<(String, u64, u64, u64)> {
    let out = &run.result("cost").unwrap().stdout;
    out.lines()
        .filter_map(|l| l.strip_prefix("COST "))
        .map(|l| {
            let mut it = l.splitn(3, ' ');
            let mode = it.next().unwrap().to_string();
            let counted: u64 = it.next().unwrap().parse().unwrap();
            let v: serde_json::Value =
                serde_json::from_str(it.next().unwrap()).unwrap_or_else(|e| panic!("{e}: {out}"));
            let c = |w: &str| v["cost"][w]["interrupts"]["1"].as_u64().unwrap();
            (mode, counted, c("start"), c("stop"))
        })
        .collect()
}

/// Starting and stopping a watch patches code for every event switched, and each patch
/// interrupts the isolated CPU: watch counts that exactly (nothing else runs there), and
/// with the events kept on (`--keep-armed`) a later watch costs nothing.
fn check_cost(run: &Run) {
    let c = costs(run);
    let out = &run.result("cost").unwrap().stdout;
    // What `isol check` says of tracing (services.tracing) while armed and once disarmed.
    let tracing = |when: &str| -> serde_json::Value {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("CHECK {when} ")))
            .unwrap_or_else(|| panic!("no check {when}\n{out}"));
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "services.tracing")
            .cloned()
            .unwrap_or_else(|| panic!("no services.tracing\n{line}"))
    };
    let armed = tracing("armed");
    assert_eq!(armed["severity"], "warn", "{armed}");
    let summary = armed["summary"].as_str().unwrap();
    assert!(
        summary.contains("instance isol-armed (") && summary.contains("not recording"),
        "{armed}"
    );
    assert_eq!(armed["fix"]["text"], "isol watch --disarm", "{armed}");
    let disarmed = tracing("disarmed");
    assert_eq!(disarmed["severity"], "ok", "{disarmed}");
    eprintln!("watch cost on {}: {c:?}", run.kernel);
    assert_eq!(c.len(), 3, "{out}");
    for (mode, counted, start, stop) in &c {
        assert_eq!(*counted, start + stop, "{mode}: counted both ways\n{out}");
    }
    let (plain, armed, reuse) = (&c[0], &c[1], &c[2]);
    assert!(
        plain.2 > 0 && plain.3 > 0,
        "switching events interrupts: {out}"
    );
    assert!(
        armed.2 > 0 && armed.3 == 0,
        "--keep-armed switches on, not off: {out}"
    );
    assert_eq!(
        (reuse.2, reuse.3),
        (0, 0),
        "the armed instance costs nothing: {out}"
    );
}

#[test]
fn watch_reports_its_own_cost_and_an_armed_instance_removes_it_on_6_12() {
    if let Some(run) = run_612() {
        check_cost(run);
    }
}

#[test]
fn watch_reports_its_own_cost_and_an_armed_instance_removes_it_on_6_1() {
    if let Some(run) = run_61() {
        check_cost(run);
    }
}

/// Each time a program turns network timestamping on or off, the kernel patches its code
/// and interrupts CPU 1; with the watch holding timestamping on, nothing flips.
fn check_timestamps(run: &Run) {
    let out = &run.result("timestamps").unwrap().stdout;
    let cal = |hold: &str| -> u64 {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("NETSTAMP {hold} ")))
            .unwrap_or_else(|| panic!("no netstamp {hold}\n{out}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["netstamp"], 10, "{line}");
        v["cal"].as_u64().unwrap()
    };
    for hold in ["no", "yes"] {
        assert!(out.contains(&format!("WATCH_STATUS {hold} 0")), "{out}");
    }
    assert!(
        out.contains("ERR yes isol: network timestamping held on"),
        "{out}"
    );
    let (free, held) = (cal("no"), cal("yes"));
    eprintln!(
        "lab {}: 10 timestamping sockets opened and closed on CPU 0: {free} function-call \
         IPIs on CPU 1, {held} with the key held",
        run.kernel
    );
    if run.kernel.starts_with("6.12.") {
        // Debian's 6.12 cloud kernel holds timestamping on from boot (a kprobe on
        // net_enable_timestamp reads netstamp_wanted = 1 before any socket asks): the key
        // never flips there, held or not. Should that change, this says so.
        assert!(
            free <= 2 && held <= 2,
            "6.12 flipped its timestamping key: {out}"
        );
    } else {
        assert!(
            free >= 10,
            "each flip patches code and interrupts CPU 1: {out}"
        );
        assert!(
            held <= 2 && held * 5 < free,
            "held, the key does not flip: {out}"
        );
    }
}

#[test]
fn holding_timestamps_keeps_code_patching_off_the_cpu_on_6_12() {
    if let Some(run) = run_612() {
        check_timestamps(run);
    }
}

#[test]
fn holding_timestamps_keeps_code_patching_off_the_cpu_on_6_1() {
    if let Some(run) = run_61() {
        check_timestamps(run);
    }
}

/// `isol noise` runs on each kernel, attributes what it can, and on a kernel without IPI
/// send events says so once.
fn check_noise(run: &Run) {
    let out = &run.result("noise").unwrap().stdout;
    assert!(out.contains("NOISE_STATUS 0"), "{out}");
    let doc: serde_json::Value = serde_json::from_str(
        out.lines()
            .find_map(|l| l.strip_prefix("NOISE "))
            .unwrap_or_else(|| panic!("no report\n{out}")),
    )
    .unwrap();
    assert_eq!(doc["attributed"], true, "{out}");
    let notices: Vec<&str> = doc["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let said = notices
        .iter()
        .filter(|n| n.contains("no ipi:ipi_send_cpu"))
        .count();
    let old = run.kernel.starts_with("6.1.");
    assert_eq!(said, usize::from(old), "{notices:?}");
    let causes = doc["cpus"][0]["causes"].as_array().unwrap();
    let sleeper = causes
        .iter()
        .find(|c| c["culprit"].as_str().unwrap_or("").contains("isol-sleeper"))
        .unwrap_or_else(|| panic!("the woken thread is not a cause\n{out}"));
    assert!(
        !sleeper["senders"].as_array().unwrap().is_empty(),
        "who woke it is named, even on 6.1 (sched_wakeup): {out}"
    );
}

#[test]
fn noise_attributes_and_says_what_it_cannot_on_6_12() {
    if let Some(run) = run_612() {
        check_noise(run);
    }
}

#[test]
fn noise_attributes_and_says_what_it_cannot_on_6_1() {
    if let Some(run) = run_61() {
        check_noise(run);
    }
}
