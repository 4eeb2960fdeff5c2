#!/usr/bin/env python3
"""Arrival on an isolated CPU: isol's enter (Spin, Sleep) against the tif peer's wait.

Usage (from the repository root, lab provisioned):
    python3 bench/arrival.py [ROUNDS] [KERNEL...]

For each lab kernel (default: 6.12 6.1 rt, see lab/provision.sh), boots the lab
(nohz_full=1) once and runs `isol-lab-guest arrive 1 --rounds ROUNDS` (default 12): each
round, for isol's Spin, isol's Sleep and tif in turn, a thread created on CPU 0 as
SCHED_OTHER goes to CPU 1 and waits for quiet (the arrival path), stays a second spinning
without a system call, waits again from there (the re-entry path) and stays another
second. The guest's main thread reads CPU 1's counts in /proc/interrupts every
millisecond from CPU 0. The process starts isol's watcher and locks its memory first
(`start_watcher`, `lock_memory`: what a program that must enter fast does at
initialisation). Before that, in the same boot, one cold arrival: the first `enter` of a
process after boot, which also starts the watcher and locks memory.

tif is Intel's Task Isolation Framework (tif_helper.c, 2020): pin, SCHED_FIFO 99, then
poll the CPU's `.tick_stopped` in /proc/timer_list from the thread itself.

Times are in ticks of the guest kernel (HZ from its config): the lab is emulated (TCG),
so tick counts and ratios carry over, milliseconds do not. "after" counts the CPU's
interrupts in the second after the return (counted by reads of /proc/interrupts that began
after it; the read that straddled the return is counted apart, since a row it read before
the return may have moved before it); "quiet for the thread from" is, from the call,
its return or, when interrupts came after it, the last of them (as seen by the next read
of /proc/interrupts): from then on the thread ran undisturbed. Ratios are isol's median
over tif's (below 1: isol sooner).

`python3 bench/arrival.py --table 6.12=FILE ...` re-renders saved runs (each run's raw
lines are kept in $TMPDIR/arrival-KERNEL.jsonl).
"""
import json, os, statistics, subprocess, sys, tempfile

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 12
KERNELS = sys.argv[2:] or ["6.12", "6.1", "rt"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = f"""echo -1 > /proc/sys/kernel/sched_rt_runtime_us
sleep 1
isol-lab-guest arrive 1 --rounds 1 --methods spin --cold | sed 's/"method":"spin"/"method":"spin (cold)"/'
isol-lab-guest arrive 1 --rounds {ROUNDS}
"""


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        # Re-render saved runs: --table KERNEL=FILE...
        header()
        for arg in sys.argv[2:]:
            kernel, path = arg.split("=", 1)
            with open(path) as f:
                table(kernel, [json.loads(l) for l in f if l.startswith("{")])
        return
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
        script.write(SCRIPT)
    header()
    for kernel in KERNELS:
        for attempt in (1, 2):
            run = subprocess.run(["cargo", "run", "-q", "-p", "isol-lab", "--", "run", script.name],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=dict(os.environ, ISOL_LAB_KERNEL=kernel))
            if run.returncode == 0:
                break
            # Under TCG, a guest switching tracepoints on was seen to run a half-patched
            # instruction and panic (lab/src/boot.rs, torn_code_patch): one more boot.
            print(f"<!-- {kernel}: run {attempt} failed (exit {run.returncode}) -->",
                  file=sys.stderr, flush=True)
        out = run.stdout.decode()
        raw = os.path.join(tempfile.gettempdir(), f"arrival-{kernel}.jsonl")
        with open(raw, "w") as keep:
            keep.write(out)
        if run.returncode != 0:
            # Say so, with what the run printed last, and go on with the next kernel.
            tail = (out + run.stderr.decode()).strip().splitlines()[-5:]
            print(f"| {kernel} | the lab run failed (exit {run.returncode}): "
                  + " / ".join(tail).replace("|", "\\|") + " |" + " |" * 15, flush=True)
        table(kernel, [json.loads(l) for l in out.splitlines() if l.startswith("{")])


def header():
    print("| kernel | path | method | rounds | failed | return, median (ticks) | p99 | max | "
          "CPU spent, median (ticks) | interrupts in the second after: median | max | rounds with any | "
          "read straddling the return saw one (rounds) | isol's own count after quiet, not the thread's calls (total) | "
          "quiet for the thread from, median (ticks) | return vs tif | quiet vs tif |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def quiet_from(j):
    """From the call, when the thread could run without a further interrupt in the
    measured second: its return, or the last interrupt after it."""
    if j["after"] and j["last_irq_ticks"] is not None:
        return max(j["return_ticks"], j["last_irq_ticks"])
    return j["return_ticks"]


def own(lines):
    """isol's own count of interruptions after quiet (its report), less the thread's own
    system calls (the benchmark reads the thread's CPU time right after the return)."""
    counts = [sum(n for kind, _, n in j["isol_counted"]["by_cause"] if kind != "syscall")
              for j in lines if isinstance(j.get("isol_counted"), dict)]
    return str(sum(counts)) if counts else ""


def table(kernel, lines):
    groups = {}
    for j in lines:
        groups.setdefault((j["path"], j["method"]), []).append(j)
    tif = {}
    for (path, m), g in groups.items():
        ok = [j for j in g if j["ok"]]
        if m == "tif" and ok:
            tif[path] = (statistics.median(j["return_ticks"] for j in ok),
                         statistics.median(quiet_from(j) for j in ok))
    order = {"spin": 0, "sleep": 1, "tif": 2}
    for (path, method), g in sorted(groups.items(),
                                    key=lambda kv: (kv[0][0] != "arrive", order.get(kv[0][1], 3), kv[0][1])):
        ok = [j for j in g if j["ok"]]
        if not ok:
            print(f"| {kernel} | {path} | {method} | {len(g)} | {len(g)} |" + " |" * 12)
            continue
        ret = [j["return_ticks"] for j in ok]
        after = [j["after"] for j in ok]
        quiet = statistics.median(quiet_from(j) for j in ok)
        vs = lambda a, b: f"{a / b:.2f}" if method != "tif" and b else ""
        r_tif, q_tif = tif.get(path, (0, 0))
        print(f"| {kernel} | {path} | {method} | {len(g)} | {len(g) - len(ok)} | "
              f"{statistics.median(ret):.2f} | {pct(ret, 99):.2f} | {max(ret):.2f} | "
              f"{statistics.median(j['cpu_ticks'] for j in ok):.2f} | "
              f"{statistics.median(after):.0f} | {max(after)} | {sum(1 for a in after if a)} | "
              f"{sum(1 for j in ok if j.get('around'))} | {own(ok)} | "
              f"{quiet:.2f} | {vs(statistics.median(ret), r_tif)} | {vs(quiet, q_tif)} |", flush=True)


if __name__ == "__main__":
    main()
