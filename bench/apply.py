#!/usr/bin/env python3
"""`isol apply` against `tuna isolate` and against doing nothing, on this machine.

Usage (from the repository root, as root, `isol` built, Debian's `tuna` installed):
    python3 bench/apply.py [SECONDS] [ROUNDS]

Load first, as users have it: three unpinned shell spinners, a timer loop (`sleep 0.01`)
and disk writes with fsync (device IRQs), all started before any isolation step. Then, for
each setup in turn (nothing, `tuna --cpus 1 --isolate`, `isol apply --cpus 1`):
interrupts per second on CPU 1 over SECONDS (default 10; summed over CPU 1's column of
/proc/interrupts) and the `isol check --cpus 1` warnings and failures left. Each setup is
undone before the next: isol with `isol restore`; tuna, which has no undo, by writing back
every IRQ and thread affinity saved before it ran. ROUNDS (default 3) repeats the three
setups in turn; the table gives the median per setup.
"""
import json, os, statistics, subprocess, sys, time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISOL = os.path.join(ROOT, "target", "release", "isol")


def cpu1_interrupts():
    with open("/proc/interrupts") as f:
        cpus = f.readline().split()
        col = cpus.index("CPU1")
        total = 0
        for line in f:
            fields = line.split()
            if len(fields) > col + 1 and fields[col + 1].isdigit():
                total += int(fields[col + 1])
        return total


def rate():
    a = cpu1_interrupts()
    time.sleep(SECONDS)
    return (cpu1_interrupts() - a) / SECONDS


def findings():
    out = subprocess.run([ISOL, "check", "--cpus", "1", "--json"], stdout=subprocess.PIPE).stdout
    return sum(1 for f in json.loads(out)["findings"] if f["severity"] in ("warn", "fail"))


def save():
    irqs = {}
    for name in os.listdir("/proc/irq"):
        p = f"/proc/irq/{name}/smp_affinity_list"
        if os.path.exists(p):
            irqs[p] = open(p).read().strip()
    threads = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                threads[int(tid)] = os.sched_getaffinity(int(tid))
        except OSError:
            pass
    return irqs, threads


def put_back(saved):
    irqs, threads = saved
    for p, v in irqs.items():
        try:
            with open(p, "w") as f:
                f.write(v)
        except OSError:
            pass
    for tid, cpus in threads.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


def load():
    procs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(3)]
    procs.append(subprocess.Popen(["sh", "-c", "while :; do sleep 0.01; done"]))
    procs.append(subprocess.Popen(
        ["sh", "-c", "while :; do dd if=/dev/zero of=/var/tmp/isol-bench bs=64k count=16 conv=fsync status=none; sleep 0.1; done"]))
    return procs


def main():
    if os.geteuid() != 0:
        sys.exit("bench/apply.py: run as root")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "isol-cli"], cwd=ROOT, check=True)
    procs = load()
    time.sleep(2)
    results = {"nothing": [], "tuna isolate": [], "isol apply": []}
    try:
        for _ in range(ROUNDS):
            results["nothing"].append((rate(), findings()))

            saved = save()
            subprocess.run(["tuna", "--cpus", "1", "--isolate"], check=True, stdout=subprocess.DEVNULL)
            results["tuna isolate"].append((rate(), findings()))
            put_back(saved)

            subprocess.run([ISOL, "apply", "--cpus", "1"], check=True, stdout=subprocess.DEVNULL)
            results["isol apply"].append((rate(), findings()))
            subprocess.run([ISOL, "restore"], check=True, stdout=subprocess.DEVNULL)
    finally:
        for p in procs:
            p.kill()
        try:
            os.unlink("/var/tmp/isol-bench")
        except OSError:
            pass
    base = statistics.median(r for r, _ in results["nothing"])
    print(f"| setup | CPU 1 interrupts/s (median of {ROUNDS} x {SECONDS:g} s) | ratio to nothing | `isol check` warnings + failures left |")
    print("|---|---:|---:|---:|")
    for name, rs in results.items():
        r = statistics.median(x for x, _ in rs)
        f = statistics.median(y for _, y in rs)
        print(f"| {name} | {r:.1f} | {r / base:.3f} | {f:g} |")


if __name__ == "__main__":
    main()
