#!/usr/bin/env python3
"""What `isol watch --keep-armed` trades: its start and stop cost against what armed
tracepoints cost every system call, measured on this machine in one run.

Usage (root, from the repository root):  python3 bench/armed.py [ROUNDS]

  * start/stop: interrupts CPU 1 took while `isol watch --cpus 1 -d 1` switched its events
    on and off (its own report, `cost` in the JSON summary), with a private instance and
    with the armed instance, ROUNDS times each;
  * per system call: a C loop pinned to CPU 1 calls getppid() 2,000,000 times, ROUNDS
    times, with nothing traced, with the events armed but no watch running, and while a
    watch records (private instance, then armed). raw_syscalls tracepoints put every task
    on the slow system-call path while they are on, whoever enabled them.
Needs: cc, a release build of isol (built here). Leaves nothing armed.
"""
import json, os, statistics, subprocess, sys, tempfile, time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISOL = os.path.join(ROOT, "target/release/isol")
LOOP = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    cpu_set_t s; CPU_ZERO(&s); CPU_SET(1, &s); sched_setaffinity(0, sizeof s, &s);
    struct timespec a, b; const long n = 2000000;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) getppid();
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
"""


def isol(*args, **kw):
    return subprocess.run([ISOL, *args], capture_output=True, text=True, **kw)


def cost(extra=()):
    out = isol("watch", "--cpus", "1", "-d", "1", "--json", *extra).stdout
    s = [json.loads(l) for l in out.splitlines() if '"summary"' in l][0]["cost"]
    return s["start"]["interrupts"]["1"], s["stop"]["interrupts"]["1"]


def per_call(loop):
    return statistics.median(float(subprocess.check_output([loop])) for _ in range(ROUNDS))


def while_watching(loop):
    w = subprocess.Popen([ISOL, "watch", "--cpus", "1", "--summary"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    try:
        return per_call(loop)
    finally:
        w.terminate()
        w.wait()


def main():
    if os.geteuid() != 0:
        sys.exit("run as root: tracing needs it")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "isol-cli"], cwd=ROOT, check=True)
    isol("watch", "--disarm")
    tmp = tempfile.mkdtemp()
    src, loop = os.path.join(tmp, "loop.c"), os.path.join(tmp, "loop")
    open(src, "w").write(LOOP)
    subprocess.run(["cc", "-O2", "-o", loop, src], check=True)

    private = [cost() for _ in range(ROUNDS)]
    isol("watch", "--cpus", "1", "-d", "0.5", "--keep-armed")
    armed = [cost() for _ in range(ROUNDS)]
    isol("watch", "--disarm")

    calls = {"nothing traced": per_call(loop), "watching (private instance)": while_watching(loop)}
    isol("watch", "--cpus", "1", "-d", "0.5", "--keep-armed")
    calls["armed, no watch running"] = per_call(loop)
    calls["watching (armed instance)"] = while_watching(loop)
    isol("watch", "--disarm")

    kernel = os.uname().release
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    print(f"kernel {kernel}, {ROUNDS} rounds, medians\n")
    print("| watch on CPU 1 | interrupts to start | to stop | ratio to private |")
    print("|---|---:|---:|---:|")
    p = med(private, 0) + med(private, 1)
    for name, xs in [("private instance", private), ("armed instance", armed)]:
        t = med(xs, 0) + med(xs, 1)
        print(f"| {name} | {med(xs, 0):.0f} | {med(xs, 1):.0f} | {t / p:.2f} |")
    print("\n| getppid() on CPU 1 | ns per call | ratio to nothing traced |")
    print("|---|---:|---:|")
    base = calls["nothing traced"]
    for name, ns in calls.items():
        print(f"| {name} | {ns:.1f} | {ns / base:.2f} |")


main()
