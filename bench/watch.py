#!/usr/bin/env python3
"""isol watch against trace-cmd, in the same run, on this machine.

Usage (root, from the repository root):  python3 bench/watch.py [SECONDS] [ROUNDS]

What it measures, with CPU 1 kept busy (so this kernel ticks it at HZ, about 1000 trace
events per second on CPU 1):
  * CPU time (user + system, including child processes) of `isol watch --cpus 1` and of
    `trace-cmd record` of the same events with the same filters and clock, each for
    SECONDS, alternating, ROUNDS times;
  * irq_work interrupts (IWI) taken by CPU 1 during each run: a reader that blocks on a
    CPU's buffer is woken by an irq_work on that CPU, noise on the CPU being watched;
  * decoding speed: isol's decoder on the committed recordings (cargo bench) and
    `trace-cmd report` on the trace.dat just recorded (decode and print to /dev/null).
Needs: trace-cmd (apt-get install trace-cmd), a release build of isol (built here).
trace-cmd runs through bench/trace-cmd-wrap.sh (see there why).
"""
import json, os, re, resource, subprocess, sys, tempfile, time

SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 20
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISOL = os.path.join(ROOT, "target/release/isol")
WRAP = os.path.join(ROOT, "bench/trace-cmd-wrap.sh")

# The events and filters isol enables for --cpus 1 (watch/decode.rs), as trace-cmd flags.
TARGET = 'CPU == 1'
EVENTS = [("irq_vectors", TARGET)] + [(e, TARGET) for e in [
    "irq:irq_handler_entry", "irq:irq_handler_exit", "irq:softirq_entry", "irq:softirq_exit",
    "timer:hrtimer_expire_entry", "timer:timer_expire_entry", "timer:tick_stop",
    "csd:csd_function_entry", "sched:sched_process_fork",
    "workqueue:workqueue_execute_start", "sched:sched_switch", "nmi:nmi_handler",
    "raw_syscalls:sys_enter", "raw_syscalls:sys_exit",
    "exceptions:page_fault_user", "exceptions:page_fault_kernel"]] + [
    ("ipi:ipi_send_cpu", "cpu == 1"), ("ipi:ipi_send_cpumask", "cpumask & CPUS{1}"),
    ("workqueue:workqueue_queue_work", "cpu == 1"), ("sched:sched_wakeup", "target_cpu == 1"),
    ("task:task_rename", None)]
# isol also follows work_for_cpu_fn and hrtimer_wakeup on every CPU (filters on their
# addresses); they fire rarely and are left out here.


def iwi(cpu=1):
    for line in open("/proc/interrupts"):
        f = line.split()
        if f and f[0] == "IWI:":
            return int(f[1 + cpu])
    return 0


def run(cmd):
    """CPU seconds used by cmd and its children, wall seconds, IWI on CPU 1, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    i0, t0 = iwi(), time.monotonic()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    wall, i1 = time.monotonic() - t0, iwi()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, i1 - i0, out


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "isol-cli"], cwd=ROOT, check=True)
    spin = subprocess.Popen(["taskset", "-c", "1", "sh", "-c", "while :; do :; done"])
    tmp = tempfile.mkdtemp(prefix="isol-bench-")
    dat = os.path.join(tmp, "trace.dat")
    tc_flags = []
    for ev, flt in EVENTS:
        tc_flags += ["-e", ev] + (["-f", flt] if flt else [])
    rows = {"isol": [], "trace-cmd": []}
    try:
        time.sleep(1)
        for _ in range(ROUNDS):
            cpu, wall, w, out = run(["taskset", "-c", "0", ISOL, "watch", "--cpus", "1",
                                     "-d", f"{SECS}s", "--json", "--summary"])
            summary = json.loads(out.decode().strip().splitlines()[-1])
            rows["isol"].append((cpu, wall, w, summary["engine"]["events"]))
            cpu, wall, w, _ = run(["taskset", "-c", "0", "unshare", "-m", "sh", WRAP,
                                   "trace-cmd", "record", "-q", "-C", "mono",
                                   "-o", dat] + tc_flags + ["sleep", str(SECS)])
            rep = subprocess.run(["trace-cmd", "report", "-q", "-i", dat],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
            events = sum(1 for l in rep.splitlines() if re.match(rb"\s*\S.*\[\d+\]", l))
            rows["trace-cmd"].append((cpu, wall, w, events))
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        with open(os.devnull, "w") as null:
            subprocess.run(["trace-cmd", "report", "-q", "-i", dat], stdout=null, check=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        report_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        report_events = rows["trace-cmd"][-1][3]
    finally:
        spin.kill()
    bench = subprocess.run(["cargo", "bench", "-q", "-p", "isol", "--bench", "decode"], cwd=ROOT,
                           stdout=subprocess.PIPE, check=True).stdout.decode()
    decode = [json.loads(l) for l in bench.splitlines() if l.startswith("{")]

    print(f"## isol watch vs trace-cmd record ({SECS:.0f} s runs x {ROUNDS}, CPU 1 busy)\n")
    print("| tool | events/s recorded | CPU time per run (ms) | CPU % of one core | IWI on CPU 1 per run |")
    print("|---|---:|---:|---:|---:|")
    med = {}
    for tool, rs in rows.items():
        rs = sorted(rs)
        cpu, wall, w, ev = rs[len(rs) // 2]
        med[tool] = cpu
        print(f"| {tool} | {ev / wall:.0f} | {cpu * 1000:.0f} | {100 * cpu / wall:.2f} | "
              f"{', '.join(str(r[2]) for r in rows[tool])} |")
    print(f"\nCPU time ratio isol / trace-cmd (medians): {med['isol'] / med['trace-cmd']:.2f}\n")
    print("## Decoding\n")
    print("| decoder | input | events/s (one core) |")
    print("|---|---|---:|")
    for d in decode:
        print(f"| isol decode (pages -> typed events) | {d['recording']} | {d['decode_events_per_s']:,.0f} |")
        print(f"| isol pipeline (+ interruptions, names) | {d['recording']} | {d['pipeline_events_per_s']:,.0f} |")
    print(f"| trace-cmd report (decode + text) | last trace.dat, {report_events} events | "
          f"{report_events / max(report_cpu, 1e-9):,.0f} |")


if __name__ == "__main__":
    main()
