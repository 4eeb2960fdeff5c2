#!/usr/bin/env python3
"""isol noise against oslat (rt-tests) on the same CPU, alternating in one run.

Usage: python3 bench/noise.py [SECONDS] [ROUNDS] [CPU]   (defaults 10 3 1; root)

Each round runs, one after the other on CPU, for SECONDS each: oslat, isol noise (with
attribution, as users run it) and isol noise --no-attribution (the sampler alone).
Reported per run: loop period (oslat: duration / iterations of its --json histogram; isol:
its loop_ns), the smallest gap each can resolve (oslat: its 1 us buckets; isol: one loop
iteration, counted to the TSC tick), the longest gap, and the number of gaps over 1 us
(oslat: every bucket above 1 us; isol: its histogram above 1000 ns). Prints a Markdown
table for BENCHMARKS.md.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
CPU = sys.argv[3] if len(sys.argv) > 3 else "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def isol_bin():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "isol-cli"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/release/isol")


def oslat(tmp):
    out = os.path.join(tmp, "oslat.json")
    subprocess.run(
        ["oslat", "--cpu-list", CPU, "-D", str(SECS), "-q", f"--json={out}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    t = json.load(open(out))["thread"]["0"]
    hist = {int(k): v for k, v in t["histogram"].items()}
    iterations = sum(hist.values())
    return {
        "tool": "oslat",
        "loop_ns": t["duration"] * 1e9 / iterations,
        "resolution_ns": 1000.0,
        "max_ns": t["max"] * 1000.0,
        # Bucket k holds gaps in ((k-1) us, k us]; the last one everything above.
        "over_1us": sum(v for k, v in hist.items() if k >= 2),
        "duration_s": t["duration"],
    }


def isol(binary, extra):
    out = subprocess.run(
        [binary, "noise", "--cpus", CPU, "-d", str(SECS), "--json"] + extra,
        check=True, capture_output=True, text=True,
    ).stdout
    c = json.loads(out)["cpus"][0]
    return {
        "tool": "isol" + (" " + " ".join(extra) if extra else ""),
        "loop_ns": c["loop_ns"],
        "resolution_ns": c["typical_loop_ns"],
        "max_ns": c["max_ns"],
        "over_1us": sum(n for ns, n in c["histogram"] if ns > 1000),
        "duration_s": c["duration_ns"] / 1e9,
        "explained": sum(1 for g in c["gap_list"] if g["cause"]),
        "gaps": c["gaps"],
    }


def main():
    if os.geteuid() != 0:
        sys.exit("run as root (oslat and isol's tracing need it)")
    if not shutil.which("oslat"):
        sys.exit("oslat not found: apt-get install rt-tests")
    binary = isol_bin()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ROUNDS):
            for f in (lambda: oslat(tmp), lambda: isol(binary, []),
                      lambda: isol(binary, ["--no-attribution"])):
                x = f()
                x["round"] = r + 1
                runs.append(x)
                print(json.dumps(x), file=sys.stderr)
    kernel = os.uname().release
    print(f"`python3 bench/noise.py {SECS} {ROUNDS} {CPU}` on kernel {kernel}, CPU {CPU}, "
          f"{SECS} s per run, tools alternating:\n")
    print("| round | tool | loop period | smallest gap resolved | longest gap | gaps > 1 us | gaps > 1 us per s |")
    print("|---|---|---|---|---|---|---|")
    for x in runs:
        print(f"| {x['round']} | {x['tool']} | {x['loop_ns']:.1f} ns | {x['resolution_ns']:.1f} ns | "
              f"{x['max_ns']/1000:.1f} us | {x['over_1us']} | {x['over_1us']/x['duration_s']:.1f} |")
    def med(tool, key):
        return statistics.median(x[key] for x in runs if x["tool"] == tool)
    o, i, n = "oslat", "isol", "isol --no-attribution"
    print()
    print(f"Medians over {ROUNDS} rounds, isol / oslat:")
    print(f"- loop period: isol {med(i, 'loop_ns'):.1f} ns, without attribution "
          f"{med(n, 'loop_ns'):.1f} ns, oslat {med(o, 'loop_ns'):.1f} ns: "
          f"ratio {med(i, 'loop_ns') / med(o, 'loop_ns'):.2f} (target <= 1)")
    print(f"- smallest gap resolved: isol {med(i, 'resolution_ns'):.1f} ns (one loop; histogram "
          f"exact to the TSC tick), oslat 1000 ns (its buckets): "
          f"{1000 / med(i, 'resolution_ns'):.0f}x finer (target >= 10x)")
    print(f"- longest gap: isol {med(i, 'max_ns')/1000:.1f} us, oslat {med(o, 'max_ns')/1000:.1f} us")
    print(f"- gaps > 1 us per s: isol {statistics.median(x['over_1us']/x['duration_s'] for x in runs if x['tool']==i):.1f}, "
          f"without attribution {statistics.median(x['over_1us']/x['duration_s'] for x in runs if x['tool']==n):.1f}, "
          f"oslat {statistics.median(x['over_1us']/x['duration_s'] for x in runs if x['tool']==o):.1f}")
    ex = [x for x in runs if x["tool"] == i]
    print(f"- isol attributed {sum(x['explained'] for x in ex)} of {sum(x['gaps'] for x in ex)} gaps "
          f"above its threshold to a kernel cause; the rest are unexplained (hypervisor)")


if __name__ == "__main__":
    main()
