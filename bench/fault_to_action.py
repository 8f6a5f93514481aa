#!/usr/bin/env python3
"""Time from a fault to homeostat's first remediation action.

One ../shared/bench/target.py target whose `fault_injected` gauge follows a
control file; homeostat (release build) scrapes it every second, evaluates
rules-latency.yml (`fault_injected > 0`, for: 0s) every second, and a
playbook triggered by that alert runs one `exec` step that writes the time it
started (`date +%s.%N`) to a file.

Each trial flips the fault on (noting the time), waits for the step's
timestamp, reads the run from /api/v1/runs, then clears the fault and waits
for the alert to resolve. Reported: fault -> step started (what an on-call
engineer cares about), split into fault -> alert firing (activeAt, detection)
and alert firing -> step started (the playbook engine), median/mean/min/max.

Usage:
  cargo build --release -p homeostat
  python3 bench/fault_to_action.py [--trials 20] [--shared ../shared]
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (FaultControl, Procs, alerting_workload, default_shared, ensure_free,  # noqa: E402
                      exit_on_sigterm, get_json, parse_rfc3339, resolve_binary)

TARGET_PORT = 19100
PORT = 29190


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--shared", default=default_shared())
    p.add_argument("--homeostat", default="target/release/homeostat")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    exit_on_sigterm()
    w = alerting_workload(a.shared, "rules-latency.yml", "alertmanager-latency-fast.yml")
    if w is None:
        return 0
    binary = resolve_binary(a.homeostat, "build it with cargo build --release -p homeostat")
    ensure_free(TARGET_PORT, PORT)
    rng = random.Random(a.seed)
    tmp = tempfile.mkdtemp(prefix="hs-f2a-")
    procs = Procs(tmp)
    stamp = os.path.join(tmp, "acted.txt")
    books = os.path.join(tmp, "playbooks")
    os.mkdir(books)
    with open(os.path.join(books, "act.yml"), "w") as f:
        f.write(f"""name: act
trigger:
  alert: FaultInjected
target: '{{{{ $labels.incident }}}}'
steps:
  - name: stamp
    action: exec
    params:
      argv: ['/bin/sh', '-c', 'echo "$HOMEOSTAT_TARGET $(date +%s.%N)" >> {stamp}']
""")
    cfg = os.path.join(tmp, "homeostat.yaml")
    with open(cfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
web:
  listen_address: 127.0.0.1:{PORT}
state:
  path: {tmp}/state.db
rule_files: ['{w.rules}']
playbook_files: ['{books}/*.yml']
scrape_configs:
  - job_name: target
    static_configs:
      - targets: ['127.0.0.1:{TARGET_PORT}']
""")
    rows = []
    try:
        ctl = FaultControl(os.path.join(tmp, "fault.ctl"))
        runtime = 60 + a.trials * (2 * a.timeout + 4)
        procs.start("target", [sys.executable, w.target_py, "--ports", str(TARGET_PORT), "--series", "10",
                               "--control-file", ctl.path, "--max-runtime", str(runtime)])
        procs.wait_http(f"http://127.0.0.1:{TARGET_PORT}/metrics")
        procs.start("homeostat", [binary, "run", "--config", cfg])
        procs.wait_http(f"http://127.0.0.1:{PORT}/-/ready")
        time.sleep(3)
        run_id = int(time.time()) % 1000000
        for n in range(a.trials):
            incident = f"run{run_id}-t{n}"
            t0 = ctl.write("1", incident)
            acted = None
            deadline = time.time() + a.timeout
            while time.time() < deadline and acted is None:
                procs.check_alive()
                if os.path.exists(stamp):
                    for line in open(stamp):
                        parts = line.split()
                        if len(parts) == 2 and parts[0] == incident:
                            acted = float(parts[1])
                time.sleep(0.02)
            runs = get_json(f"http://127.0.0.1:{PORT}/api/v1/runs?playbook=act&limit=5")["data"]
            run = next((r for r in runs if r["target"] == incident), None)
            fired = None
            if run and run["trigger_detail"].get("active_at_ms"):
                fired = run["trigger_detail"]["active_at_ms"] / 1000
            if acted is None:
                print(f"trial {n}: no action within {a.timeout}s")
            else:
                rows.append((acted - t0, (fired - t0) if fired else None, (acted - fired) if fired else None))
                print(f"trial {n}: fault->action {acted - t0:.3f}s"
                      + (f" (detect {fired - t0:.3f}s, engine {acted - fired:.3f}s)" if fired else ""))
            ctl.write("0")
            time.sleep(2.5 + rng.random())
    finally:
        procs.stop()
    if not rows:
        print("no successful trials")
        return 1

    def stats(xs):
        xs = [x for x in xs if x is not None]
        return (statistics.median(xs), statistics.mean(xs), min(xs), max(xs)) if xs else None

    print(f"\n{len(rows)} trials (1 s scrape, 1 s evaluation, for: 0s)")
    print("| measure | median | mean | min | max |")
    print("|---|---|---|---|---|")
    for name, i in [("fault -> first step started", 0), ("fault -> alert firing (activeAt)", 1),
                    ("alert firing -> first step started", 2)]:
        s = stats([r[i] for r in rows])
        if s:
            print(f"| {name} | {s[0]:.3f} s | {s[1]:.3f} s | {s[2]:.3f} s | {s[3]:.3f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
