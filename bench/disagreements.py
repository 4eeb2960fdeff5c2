#!/usr/bin/env python3
"""Where the authorities disagree, measured: interrupts on an isolated CPU under each choice.

Usage (from the repository root, lab provisioned):
    python3 bench/disagreements.py [SECONDS] [KERNEL...]

For each lab kernel (default: 6.12 6.1 rt), three setups of CPU 1:
  boot       nohz_full, isolcpus=nohz,domain,managed_irq, rcu_nocbs, irqaffinity=0 at boot;
  apply      nohz_full=1 alone at boot, then `isol apply --cpus 1` with the load running;
  partition  as apply, and the workload in a cgroup v2 cpuset partition of type isolated
             (the runtime alternative to isolcpus=domain).
In each, load on CPU 0 (a 20 ms sleep loop, a write-and-sync loop, a busy shell) and a
SCHED_FIFO spinner on CPU 1 (the workload); then CPU 1's interrupts (/proc/interrupts) are
counted over SECONDS (default 20) as set up, with kernel.timer_migration flipped, with
vm.stat_interval flipped (1 <-> 10), and as set up again. Counts are guest-kernel truths;
TCG timing is not real time, so only the counts matter.
"""
import os, re, subprocess, sys, tempfile

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
KERNELS = sys.argv[2:] or ["6.12", "6.1", "rt"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = """echo -1 > /proc/sys/kernel/sched_rt_runtime_us
( while :; do sleep 0.02; done ) &
( while :; do echo x > /tmp/f; sync; done ) &
( while :; do :; done ) &
sleep 1
"""
APPLY = "isol apply --cpus 1 > /dev/null || echo APPLY_FAILED\n"
PARTITION = """mkdir -p /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/iso; echo 1 > /sys/fs/cgroup/iso/cpuset.cpus
echo isolated > /sys/fs/cgroup/iso/cpuset.cpus.partition
echo "PARTITION $(cat /sys/fs/cgroup/iso/cpuset.cpus.partition)"
echo $$ > /sys/fs/cgroup/iso/cgroup.procs
"""
MEASURE = f"""isol-lab-guest spin --fifo 1 {4 * SECONDS + 30} > /dev/null & S=$!
echo $$ > /sys/fs/cgroup/cgroup.procs 2>/dev/null
sleep 5
measure() {{ a=$(isol-lab-guest irqsum 1); sleep {SECONDS}; b=$(isol-lab-guest irqsum 1); echo "RESULT $1 $((b-a))"; }}
tm=$(cat /proc/sys/kernel/timer_migration); si=$(cat /proc/sys/vm/stat_interval)
measure "as-set-up(timer_migration=$tm,stat_interval=$si)"
echo $((1-tm)) > /proc/sys/kernel/timer_migration; measure timer_migration=$((1-tm)); echo $tm > /proc/sys/kernel/timer_migration
nsi=10; [ "$si" -ge 10 ] && nsi=1
echo $nsi > /proc/sys/vm/stat_interval; measure stat_interval=$nsi; echo $si > /proc/sys/vm/stat_interval
measure as-set-up-again
kill $S
"""
SETUPS = {
    "boot": ([], LOAD + MEASURE),
    "apply": (["--", "nohz_full=1"], LOAD + APPLY + MEASURE),
    "partition": (["--", "nohz_full=1"], LOAD + APPLY + PARTITION + MEASURE),
}


def main():
    print(f"| kernel | setup | setting | CPU 1 interrupts in {SECONDS} s |")
    print("|---|---|---|---:|")
    for kernel in KERNELS:
        for setup, (extra, script) in SETUPS.items():
            with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
                f.write(script)
            p = subprocess.run(["cargo", "run", "-q", "-p", "isol-lab", "--", "run", f.name] + extra,
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, ISOL_LAB_KERNEL=kernel))
            out, err = p.stdout.decode(), p.stderr.decode()
            release = re.search(r"isol-lab: kernel (\S+),", err)
            rel = release.group(1) if release else "?"
            if "APPLY_FAILED" in out:
                print(f"| {kernel} | {setup} | apply failed | |")
            part = re.search(r"^PARTITION (.*)$", out, re.M)
            label = setup if not part else f"{setup} ({part.group(1).strip()})"
            for m in re.finditer(r"^RESULT (\S+) (\d+)$", out, re.M):
                print(f"| {kernel} ({rel}) | {label} | {m.group(1)} | {m.group(2)} |", flush=True)


if __name__ == "__main__":
    main()
