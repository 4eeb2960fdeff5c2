#!/usr/bin/env python3
"""Fleet figures: what isol's exporter costs the housekeeping CPU, against Prometheus' node
exporter measured in the same run, the series it serves, and `isol diff` on two snapshots
against `diff -r` of the same snapshots extracted.

Usage (root, from the repository root, release build of isol):
    python3 bench/fleet.py [IDLE_SECONDS] [SCRAPES]

1. `isol watch --cpus 1 --summary --metrics` (readiness re-checked every 5 min, the default)
   and `prometheus-node-exporter` (Debian's, default collectors) run side by side while CPU 1
   runs a task waking every millisecond. Each one's CPU time (utime + stime of the process,
   /proc/PID/task/*/schedstat, ns) and RSS are read: over IDLE_SECONDS (default 60) with no scrape, then over
   SCRAPES (default 200) scrapes of each, one after the other, from this script.
2. The series each serves after that, counted from a scrape.
3. `isol diff` of two snapshots (this machine taken twice, then the committed lab fixture's
   snapshot against this machine's), 10 runs each, against what a person does by hand:
   extract both with tar and `diff -r` them.
"""
import os, socket, statistics, subprocess, sys, tempfile, time

IDLE = float(sys.argv[1]) if len(sys.argv) > 1 else 60
SCRAPES = int(sys.argv[2]) if len(sys.argv) > 2 else 200
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISOL = os.environ.get("ISOL", os.path.join(ROOT, "target/release/isol"))


def cpu_seconds(pid):
    """Time on a CPU of every thread of `pid`, in ns precision (schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except OSError:
            pass
    return total / 1e9


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(port, path="/metrics"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode(errors="replace").split("\r\n\r\n", 1)[-1]


def wait_answering(port):
    for _ in range(300):
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on {port}")


def series(body):
    return sum(1 for l in body.splitlines() if l and not l.startswith("#"))


def exporters():
    load = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c",
                             "import time\nwhile True: time.sleep(0.001)"])
    ip, np_ = free_port(), free_port()
    isol = subprocess.Popen([ISOL, "watch", "--cpus", "1", "--summary", "--metrics", f"127.0.0.1:{ip}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{np_}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_answering(ip)
        wait_answering(np_)
        time.sleep(2)
        rows = {}
        for name, p in (("isol", isol), ("node_exporter", node)):
            rows[name] = {"cpu0": cpu_seconds(p.pid)}
        time.sleep(IDLE)
        for name, p in (("isol", isol), ("node_exporter", node)):
            rows[name]["idle"] = cpu_seconds(p.pid) - rows[name]["cpu0"]
        for name, p, port in (("isol", isol, ip), ("node_exporter", node, np_)):
            c0 = cpu_seconds(p.pid)
            lat = []
            for _ in range(SCRAPES):
                t = time.perf_counter()
                body = scrape(port)
                lat.append(time.perf_counter() - t)
            rows[name]["per_scrape_ms"] = (cpu_seconds(p.pid) - c0) / SCRAPES * 1e3
            rows[name]["latency_ms"] = statistics.median(lat) * 1e3
            rows[name]["rss"] = rss_mb(p.pid)
            rows[name]["series"] = series(body)
            rows[name]["bytes"] = len(body)
            rows[name]["check_ms"] = next((float(l.split()[-1]) * 1e3 for l in body.splitlines()
                                           if l.startswith("isol_check_duration_seconds ")), None)
        return rows
    finally:
        for p in (isol, node, load):
            p.terminate()
            p.wait()


def timed(cmd, runs=10):
    t = []
    for _ in range(runs):
        s = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t.append(time.perf_counter() - s)
    return statistics.median(t) * 1e3


def diffs():
    d = tempfile.mkdtemp(prefix="isol-fleet-")
    a, b = os.path.join(d, "a.tar.gz"), os.path.join(d, "b.tar.gz")
    lab = os.path.join(d, "lab.tar.gz")
    subprocess.run([ISOL, "snapshot", "-o", a], check=True, stdout=subprocess.DEVNULL)
    time.sleep(1)
    subprocess.run([ISOL, "snapshot", "-o", b], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([ISOL, "--root", os.path.join(ROOT, "tests/fixtures/lab-6.12"), "snapshot", "-o", lab],
                   check=True, stdout=subprocess.DEVNULL)
    out = {}
    for name, x, y in (("host twice", a, b), ("lab against host", lab, a)):
        ex, ey = os.path.join(d, name + "-x"), os.path.join(d, name + "-y")
        for arc, to in ((x, ex), (y, ey)):
            os.makedirs(to)
            subprocess.run(["tar", "-xzf", arc, "-C", to], check=True)
        count = subprocess.run([ISOL, "diff", x, y, "--json"], capture_output=True, text=True).stdout.count('"area"')
        by_hand = ["sh", "-c", f"rm -rf {d}/h && mkdir -p {d}/h/x {d}/h/y && tar -xzf {x} -C {d}/h/x "
                   f"&& tar -xzf {y} -C {d}/h/y && diff -r {d}/h/x {d}/h/y"]
        out[name] = (timed([ISOL, "diff", x, y]), timed(by_hand), count,
                     os.path.getsize(x), os.path.getsize(y))
    subprocess.run(["rm", "-rf", d])
    return out


def main():
    rows = exporters()
    print(f"exporters: {IDLE:.0f} s idle, then {SCRAPES} scrapes each")
    print(f"{'':14} {'CPU s/h idle':>12} {'CPU ms/scrape':>13} {'median scrape ms':>16} {'RSS MB':>7} {'series':>7} {'bytes':>8}")
    for name, r in rows.items():
        print(f"{name:14} {r['idle'] / IDLE * 3600:12.1f} {r['per_scrape_ms']:13.2f} {r['latency_ms']:16.2f} "
              f"{r['rss']:7.1f} {r['series']:7d} {r['bytes']:8d}")
    i, n = rows["isol"], rows["node_exporter"]
    print(f"isol's readiness check: {i['check_ms']:.1f} ms of a housekeeping CPU each, 12 an hour at the "
          f"default --check-interval 5m ({i['check_ms'] * 12 / 1e3:.2f} s/h)")
    print(f"ratio isol/node_exporter: CPU per scrape {i['per_scrape_ms'] / n['per_scrape_ms']:.2f}, "
          f"RSS {i['rss'] / n['rss']:.2f}, series {i['series'] / n['series']:.2f}")
    print()
    print("isol diff against tar -x twice and diff -r (median of 10, ms)")
    for name, (isol_ms, diff_ms, count, sa, sb) in diffs().items():
        print(f"{name:18} isol diff {isol_ms:7.1f}  tar+diff -r {diff_ms:7.1f}  ratio {isol_ms / diff_ms:5.2f}  "
              f"({count} differences; snapshots {sa // 1024} and {sb // 1024} KiB)")


if __name__ == "__main__":
    main()
