#!/usr/bin/env python3
"""Side-by-side scrape footprint: homeostat vs Prometheus 2.42 in one run.

Both scrape the same 20 synthetic targets x 5,000 series (100k series) every
5 s, served by ../shared/bench/target.py (the FOOTPRINT workload without rules,
which arrive with the rules issue). After a warm-up, CPU seconds
(utime+stime from /proc/PID/stat) and peak RSS (VmHWM) of each process are
read over the same window, and the ratio printed as a Markdown table.

Usage:
  cargo build --release -p homeostat
  python3 bench/scrape_side_by_side.py [--warmup 60] [--window 300]
      [--shared ../shared] [--homeostat target/release/homeostat]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, ensure_free, metric_value, status_kib, stop_all, wait_http  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--homeostat", default="target/release/homeostat")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--interval", default="5s")
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--window", type=int, default=300)
    a = ap.parse_args()

    target_py = os.path.join(a.shared, "bench", "target.py")
    if not os.path.exists(target_py):
        print(f"SKIP: {target_py} not found (set --shared)")
        return 0
    ensure_free(19090, 19400)
    tmp = tempfile.mkdtemp(prefix="hs-bench-")
    first = 19101
    last = first + a.targets - 1
    targets = [f"127.0.0.1:{p}" for p in range(first, last + 1)]
    total = a.warmup + a.window + 30
    ctl = os.path.join(tmp, "fault.ctl")
    with open(ctl, "w") as f:
        f.write("0\n")

    prom_cfg = os.path.join(tmp, "prometheus.yml")
    with open(prom_cfg, "w") as f:
        f.write(f"global:\n  scrape_interval: {a.interval}\n  scrape_timeout: {a.interval}\n"
                "scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: "
                + json.dumps(targets) + "\n")
    hs_cfg = os.path.join(tmp, "homeostat.yaml")
    with open(hs_cfg, "w") as f:
        f.write(f"global:\n  scrape_interval: {a.interval}\n  scrape_timeout: {a.interval}\n"
                "web:\n  listen_address: 127.0.0.1:19400\n"
                f"state:\n  path: {tmp}/state.db\n"
                "scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: "
                + json.dumps(targets) + "\n")

    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, target_py, "--ports", f"{first}-{last}",
                                       "--series", str(a.series), "--control-file", ctl,
                                       "--max-runtime", str(total)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{first}/metrics")
        prom = subprocess.Popen([a.prometheus, f"--config.file={prom_cfg}",
                                 f"--storage.tsdb.path={tmp}/prom",
                                 "--web.listen-address=127.0.0.1:19090"],
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "prom.log"), "w"))
        procs.append(prom)
        hs = subprocess.Popen([a.homeostat, "run", "--config", hs_cfg],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "hs.log"), "w"))
        procs.append(hs)
        wait_http("http://127.0.0.1:19090/-/ready")
        wait_http("http://127.0.0.1:19400/-/ready")
        print(f"warming up {a.warmup}s ...", file=sys.stderr)
        time.sleep(a.warmup)
        c0 = {p.pid: cpu_seconds(p.pid) for p in (prom, hs)}
        print(f"measuring {a.window}s ...", file=sys.stderr)
        time.sleep(a.window)
        c1 = {p.pid: cpu_seconds(p.pid) for p in (prom, hs)}
        rows = []
        for name, p in (("Prometheus 2.42", prom), ("homeostat", hs)):
            rows.append((name, c1[p.pid] - c0[p.pid], status_kib(p.pid, "VmHWM") / 1024,
                         status_kib(p.pid, "VmRSS") / 1024))
        hs_series = metric_value("http://127.0.0.1:19400/metrics", "homeostat_store_series")
        prom_series = metric_value("http://127.0.0.1:19090/metrics", "prometheus_tsdb_head_series")
        print(f"\n{a.targets} targets x {a.series} series every {a.interval}; "
              f"{a.window}s window after {a.warmup}s warm-up; series held: "
              f"Prometheus {prom_series}, homeostat {hs_series}\n")
        print("| process | CPU seconds | CPU % of one core | peak RSS (MiB) | RSS at end (MiB) |")
        print("|---|---|---|---|---|")
        for name, cpu, hwm, rss in rows:
            print(f"| {name} | {cpu:.1f} | {100 * cpu / a.window:.1f}% | {hwm:.0f} | {rss:.0f} |")
        (_, pc, ph, _), (_, hc, hh, _) = rows
        ratio = f"{hc / pc:.2f}" if pc > 0 else "n/a"
        print(f"| ratio homeostat / Prometheus | {ratio} | | {hh / ph:.2f} | |")
    finally:
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
