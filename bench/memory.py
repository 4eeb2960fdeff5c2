#!/usr/bin/env python3
"""Memory of a long `isol watch` on a busy CPU: resident set size over time.

Usage (root, from the repository root):
    python3 bench/memory.py [MINUTES] [EARLIER_ISOL] [EARLIER_MINUTES]

CPU 1 runs a task that makes a system call every 50 us (about 20,000 traced interruptions
a second). `isol watch --cpus 1 --summary` (the release build here) watches it for MINUTES
(default 30); its RSS is sampled every minute. When EARLIER_ISOL is given (the binary of an
earlier isol, for comparison in the same run), it watches the same CPU at the same time for
EARLIER_MINUTES (default 5), then is stopped.
"""
import os, signal, subprocess, sys, time

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 30
EARLIER = sys.argv[2] if len(sys.argv) > 2 else None
EARLIER_MINUTES = float(sys.argv[3]) if len(sys.argv) > 3 else 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISOL = os.environ.get("ISOL", os.path.join(ROOT, "target/release/isol"))

LOAD = """
import os, time
while True:
    os.getppid()
    t = time.perf_counter() + 50e-6
    while time.perf_counter() < t:
        pass
"""


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def watch(binary):
    return subprocess.Popen([binary, "watch", "--cpus", "1", "--summary"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def stop(p):
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=120)[0]
    for line in out.splitlines():
        if line.startswith("CPU 1:"):
            return line
    return out.strip()[:200]


def main():
    load = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", LOAD])
    time.sleep(1)
    new = watch(ISOL)
    old = watch(EARLIER) if EARLIER else None
    print(f"{'minute':>6}  {'isol RSS MB':>11}  {'earlier RSS MB':>14}", flush=True)
    start = time.monotonic()
    minute = 0
    old_line = None
    try:
        while minute < MINUTES:
            minute += 1
            time.sleep(max(0, start + 60 * minute - time.monotonic()))
            o = rss_mb(old.pid) if old else None
            print(f"{minute:>6}  {rss_mb(new.pid):>11.1f}  "
                  f"{'' if o is None else f'{o:.1f}':>14}", flush=True)
            if old and minute >= EARLIER_MINUTES:
                old_line = stop(old)
                old = None
    finally:
        if old:
            old_line = stop(old)
        new_line = stop(new)
        load.kill()
    print(f"isol:    {new_line}")
    if old_line:
        print(f"earlier: {old_line} (stopped after {EARLIER_MINUTES:g} min)")


if __name__ == "__main__":
    main()
