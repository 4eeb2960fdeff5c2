#!/usr/bin/env python3
"""Task isolation: time from enter to quiet and CPU time spent waiting, Spin against Sleep.

Usage (from the repository root, lab provisioned):
    python3 bench/isolation.py [ENTRIES] [KERNEL...]

For each lab kernel (default: 6.12 6.1 rt, see lab/provision.sh), boots the lab
(nohz_full=1) once and, in one process per strategy, enters and exits isolation ENTRIES
times (default 60) on CPU 1 with the library API (`isol-lab-guest isolate 1 0.2 --repeat N
--wait spin|sleep --fifo --warm`): every entry after the first starts from a CPU that is
already quiet. Times are given in ticks of the guest kernel (HZ from its config) because
the lab is emulated (TCG): ratios and tick counts carry over, absolute milliseconds do not.
"""
import json, os, statistics, subprocess, sys, tempfile

N = int(sys.argv[1]) if len(sys.argv) > 1 else 60
KERNELS = sys.argv[2:] or ["6.12", "6.1", "rt"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = f"""echo -1 > /proc/sys/kernel/sched_rt_runtime_us
isol-lab-guest isolate 1 0.2 --fifo --warm > /dev/null
for w in spin sleep; do isol-lab-guest isolate 1 0.2 --repeat {N} --wait $w --fifo --warm; done
"""


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(SCRIPT)
    print("| kernel | wait | entries | failed | to quiet, median (ticks) | p99 | wait CPU, median (ticks) | p99 | interruptions while isolated (all entries) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kernel in KERNELS:
        out = subprocess.run(["cargo", "run", "-q", "-p", "isol-lab", "--", "run", f.name],
                             cwd=ROOT, stdout=subprocess.PIPE, check=True,
                             env=dict(os.environ, ISOL_LAB_KERNEL=kernel)).stdout.decode()
        table(kernel, out)


def table(kernel, out):
    rows = {}
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        reps = [e["report"] for e in j["entries"] if e["ok"]]
        fails = [e for e in j["entries"] if not e["ok"]]
        hz = reps[0]["hz"] or 250
        tick = 1e9 / hz
        q = [r["time_to_quiet_ns"] / tick for r in reps]
        c = [r["wait_cpu_ns"] / tick for r in reps]
        rows[j["wait"]] = dict(n=len(reps), fails=len(fails), hz=hz,
                               q50=statistics.median(q), q99=pct(q, 99),
                               c50=statistics.median(c), c99=pct(c, 99),
                               after=sum(r["interruptions"] for r in reps))
    for w, r in rows.items():
        print(f"| {kernel} | {w} | {r['n']} | {r['fails']} | {r['q50']:.2f} | {r['q99']:.2f} | "
              f"{r['c50']:.2f} | {r['c99']:.2f} | {r['after']} |", flush=True)


if __name__ == "__main__":
    main()
