//! Lab tier: `isol apply` and `isol restore` on a real nohz_full kernel. CPU 1 is isolated on
//! the kernel command line with `nohz_full=1` alone (nothing else moved off it), while
//! unpinned spinners, a timer loop and console output load the machine. CPU 1's interrupts
//! are counted (from `/proc/interrupts`, and by `isol watch`) before and after apply, and
//! every setting and thread affinity is compared before apply and after restore.

use std::collections::BTreeMap;
use std::time::Duration;

use isol_lab::{lab_kernel_or_skip, Boot, Scenario};

/// Every setting apply may change, and every thread's affinity (keyed by its start time,
/// so a thread id reused in between is not compared).
const SNAP: &str = r#"
snap() {
  for f in /proc/irq/default_smp_affinity /proc/irq/*/smp_affinity_list \
      /sys/devices/virtual/workqueue/cpumask /sys/devices/virtual/workqueue/*/cpumask \
      /proc/sys/kernel/watchdog_cpumask /proc/sys/kernel/nmi_watchdog \
      /proc/sys/kernel/timer_migration /proc/sys/kernel/numa_balancing \
      /proc/sys/kernel/sched_rt_runtime_us /proc/sys/vm/stat_interval \
      /sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/transparent_hugepage/defrag \
      /sys/kernel/mm/ksm/run /sys/kernel/debug/sched/fair_server/cpu*/runtime \
      /sys/devices/system/cpu/cpu*/cpuidle/state*/disable \
      /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor \
      /sys/devices/system/machinecheck/machinecheck*/check_interval; do
    [ -f "$f" ] && echo "SET $f $(cat $f | tr ' ' '_')"
  done
  for t in /proc/[0-9]*/task/[0-9]*; do
    a=$(grep Cpus_allowed_list: $t/status 2>/dev/null | cut -f2) || continue
    s=$(sed 's/.*) //' $t/stat 2>/dev/null | cut -d' ' -f20)
    [ -n "$a" ] && echo "THR $t@$s $a"
  done
}
"#;

const SCENARIO: &str = r#"
mount -t debugfs none /sys/kernel/debug 2>/dev/null
for i in 1 2 3 4; do ( while :; do :; done ) & done
( while :; do sleep 1; echo tick > /dev/console; done ) &
sleep 2
echo "== before"; snap
b0=$(isol-lab-guest irqsum 1); sleep 5; b1=$(isol-lab-guest irqsum 1)
echo "== irqs_before $((b1-b0))"
echo "== watch_before"; isol watch --cpus 1 -d 5 --summary --json | grep '"summary"'
isol apply --cpus 1 --json > /tmp/apply.json; echo "== apply_status $?"
echo "== apply"; tr -d '\n' < /tmp/apply.json; echo
sleep 1
a0=$(isol-lab-guest irqsum 1); sleep 5; a1=$(isol-lab-guest irqsum 1)
echo "== irqs_after $((a1-a0))"
echo "== watch_after"; isol watch --cpus 1 -d 5 --summary --json | grep '"summary"'
echo "== check_after"; isol check --cpus 1 --json | tr -d '\n'; echo
echo "== restore"; isol restore; echo "== restore_status $?"
echo "== after"; snap
kill $(jobs -p) 2>/dev/null
echo "== end"
"#;

/// The sections of the scenario's output, by name (`== name [value]`).
fn sections(out: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut map = BTreeMap::new();
    let mut current: Option<(String, String, Vec<String>)> = None;
    for line in out.lines() {
        if let Some(head) = line.strip_prefix("== ") {
            if let Some((n, v, l)) = current.take() {
                map.insert(n, (v, l));
            }
            let (name, value) = head.split_once(' ').unwrap_or((head, ""));
            current = Some((name.to_string(), value.to_string(), Vec::new()));
        } else if let Some((_, _, lines)) = &mut current {
            lines.push(line.to_string());
        }
    }
    if let Some((n, v, l)) = current {
        map.insert(n, (v, l));
    }
    map
}

fn snapshot(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("SET ").or_else(|| l.strip_prefix("THR "))?;
            let (k, v) = rest.split_once(' ')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn watch_count(lines: &[String]) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.contains("\"summary\""))
        .unwrap_or_else(|| panic!("no watch summary in {lines:?}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["summary"]["cpus"][0]["interruptions"]
        .as_u64()
        .or_else(|| v["cpus"][0]["interruptions"].as_u64())
        .unwrap_or_else(|| panic!("no interruptions count in {line}"))
}

#[test]
fn apply_quiets_cpu_1_and_restore_puts_everything_back_on_6_12() {
    let Some(lab) = lab_kernel_or_skip("6.12") else {
        return;
    };
    let boot = Boot {
        isolation: "nohz_full=1".into(),
        timeout: Duration::from_secs(300),
        ..Boot::default()
    };
    let run = lab
        .run(
            &boot,
            &[Scenario::new("apply", format!("{SNAP}{SCENARIO}"))],
        )
        .unwrap_or_else(|e| panic!("lab run failed: {e}"));
    let r = run.result("apply").unwrap();
    eprintln!("{}", r.stdout);
    let s = sections(&r.stdout);
    assert!(
        s.contains_key("end"),
        "the scenario did not finish:\n{}",
        r.stdout
    );
    let num = |k: &str| -> u64 {
        s[k].0
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{k}: {:?}", s[k]))
    };
    assert_eq!(num("apply_status"), 0, "{}", r.stdout);
    assert_eq!(num("restore_status"), 0, "{}", r.stdout);
    let applied: serde_json::Value = serde_json::from_str(&s["apply"].1[0]).unwrap();
    let done = applied["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"]["outcome"] == "done")
        .count();
    assert!(done > 0, "apply did nothing: {applied}");

    let (before, after) = (num("irqs_before"), num("irqs_after"));
    let (watch_before, watch_after) = (
        watch_count(&s["watch_before"].1),
        watch_count(&s["watch_after"].1),
    );
    eprintln!(
        "lab {}: CPU 1 interrupts in 5 s: {before} before apply, {after} after \
         (/proc/interrupts); isol watch: {watch_before} interruptions before, {watch_after} \
         after; {done} changes; findings before {}, after {}",
        run.kernel, applied["findings_before"], applied["findings_after"]
    );
    assert!(
        after * 4 < before,
        "apply did not quiet CPU 1: {before} interrupts in 5 s before, {after} after"
    );
    assert!(
        watch_after < watch_before,
        "isol watch saw {watch_before} interruptions before apply, {watch_after} after"
    );

    let (s0, s1) = (snapshot(&s["before"].1), snapshot(&s["after"].1));
    assert!(
        s0.keys().any(|k| k.starts_with("/proc/irq/")),
        "no settings captured"
    );
    let mut differ = Vec::new();
    for (k, v) in &s0 {
        if let Some(now) = s1.get(k) {
            if now != v {
                differ.push(format!("{k}: {v} before apply, {now} after restore"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "restore left differences:\n{}",
        differ.join("\n")
    );
}
