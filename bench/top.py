#!/usr/bin/env python3
"""What `isol top` costs a housekeeping CPU against `isol watch`, measured in the same run.

Usage (root, from the repository root, release build of isol, tmux installed):
    python3 bench/top.py [SECONDS] [ROUNDS]

CPU 1 runs a spinner, named as its workload with `--pid`, and a second task pinned there
that wakes every millisecond: each wakeup interrupts the spinner (the interruptions per
second are printed, read from `isol watch --summary`). Each round runs, one after the other, in a tmux terminal of 120x30:
`isol watch --cpus 1` (a line per interruption, printed to the terminal), `isol watch
--cpus 1 --summary` (the engine alone, nothing printed), and `isol top --cpus 1` (redrawn
ten times a second), SECONDS each (default 30) after a 3 s start. Read for each: CPU time
of the isol process (schedstat of every thread, ns) and of the tmux server (the terminal's
own work of drawing what isol writes), per second of watching. ROUNDS (default 3)
alternate the three; the medians are printed.
"""
import os, re, statistics, subprocess, sys, time

SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 30
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISOL = os.environ.get("ISOL", os.path.join(ROOT, "target/release/isol"))
SOCKET = f"isol-bench-top-{os.getpid()}"


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import cpu_seconds  # noqa: E402  (CPU time of every thread of a process)


def cpu_ns(pid):
    return cpu_seconds(pid) * 1e9


def tmux(*args):
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)


def server_pid():
    return int(tmux("display-message", "-p", "#{pid}").stdout.strip())


def measure(cmd):
    """CPU seconds per second of (isol, tmux server) while `cmd` runs in the pane."""
    pidfile = f"/tmp/{SOCKET}.pid"
    if os.path.exists(pidfile):
        os.remove(pidfile)
    tmux("respawn-pane", "-k", "sh", "-c", f"echo $$ > {pidfile}; exec {cmd}")
    while not os.path.exists(pidfile) or not open(pidfile).read().strip():
        time.sleep(0.05)
    pid = int(open(pidfile).read())
    time.sleep(3)
    server = server_pid()
    i0, s0, t0 = cpu_ns(pid), cpu_ns(server), time.monotonic()
    time.sleep(SECS)
    i1, s1, t1 = cpu_ns(pid), cpu_ns(server), time.monotonic()
    os.kill(pid, 15)
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.1)
    return (i1 - i0) / 1e9 / (t1 - t0), (s1 - s0) / 1e9 / (t1 - t0)


def main():
    load = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    waker = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c",
                              "import time\nwhile True: time.sleep(0.001)"])
    tmux("new-session", "-d", "-x", "120", "-y", "30", "sleep 1000000")
    tmux("set-option", "-g", "remain-on-exit", "on")
    # The spinner is named as CPU 1's workload: the waker's every run interrupts it,
    # whatever else this CPU (not isolated) runs.
    app = f"--pid {load.pid}"
    runs = {"watch (lines)": f"{ISOL} watch --cpus 1 {app}",
            "watch --summary": f"{ISOL} watch --cpus 1 --summary {app}",
            "top": f"{ISOL} top --cpus 1 {app}"}
    got = {k: [] for k in runs}
    rates = []
    try:
        for _ in range(ROUNDS):
            for name, cmd in runs.items():
                got[name].append(measure(cmd))
                if name == "watch --summary":
                    time.sleep(1)
                    rates.extend(re.findall(r"CPU 1: \d+ interruptions \(([\d.]+)/s\)",
                                            tmux("capture-pane", "-p", "-S", "-100").stdout))
    finally:
        tmux("kill-server")
        load.kill()
        waker.kill()
    load_rate = statistics.median(float(r) for r in rates) if rates else float("nan")
    print(f"isol top against isol watch: CPU 1's spinner interrupted {load_rate:.0f} times a second, "
          f"{ROUNDS} rounds of {SECS:.0f} s, medians (CPU ms per second of watching)")
    print(f"{'':18} {'isol':>8} {'tmux':>8} {'both':>8}")
    med = {}
    for name, xs in got.items():
        i = statistics.median(x[0] for x in xs) * 1e3
        s = statistics.median(x[1] for x in xs) * 1e3
        med[name] = (i, s)
        print(f"{name:18} {i:8.1f} {s:8.1f} {i + s:8.1f}")
    t, w = med["top"], med["watch (lines)"]
    print(f"ratio top / watch (lines): isol {t[0] / w[0]:.2f}, with the terminal {(t[0] + t[1]) / (w[0] + w[1]):.2f}")
    print(f"ratio top / watch --summary: isol {t[0] / med['watch --summary'][0]:.2f}")


if __name__ == "__main__":
    main()
