#!/usr/bin/env python3
"""Side-by-side detection latency: homeostat vs Prometheus 2.42 in one run.

The LATENCY setting: one ../shared/bench/target.py target on 127.0.0.1:19100
whose `fault_injected` gauge is read from a control file on every scrape. Both
stacks watch that SAME target, so one flip is seen by both at the same instant:

  Prometheus 19090 (prometheus-latency-fast.yml: 1 s scrape, 1 s evaluation)
      -> Alertmanager A 19093 (alertmanager-latency-fast.yml) -> webhook A 19095
  homeostat 29090 (same target, 1 s scrape, 1 s evaluation)
      -> Alertmanager B 29093 (same file, webhook URL on 29095) -> webhook B 29095

both with rules-latency.yml (`fault_injected > 0`, for: 0s).

Each trial writes "1 run<id>-t<n>" to the control file atomically (the
incident label makes each trial's alert unique) and notes the flip time, waits
until both webhooks have logged a firing notification for an alert with that
incident label (--timeout per trial; a miss counts as a timeout), reads the
alert's activeAt from each daemon's /api/v1/alerts, writes "0", waits for both
resolved notifications (at most --resolve-timeout), then pauses a random 1-3 s
so the flip falls at a uniformly distributed phase of the scrape cycle.

Reported (median, mean, min, max, Markdown table): fault flip -> webhook for
Prometheus+Alertmanager and homeostat+Alertmanager, and flip -> activeAt (when
the daemon itself marked the alert active, i.e. firing with for: 0s) for each,
with the ratio of medians homeostat / Prometheus. --csv writes every trial.

Usage:
  cargo build --release -p homeostat
  python3 bench/detection_latency.py [--trials 20] [--timeout 15]
      [--only both|prometheus|homeostat] [--shared ../shared]
      [--homeostat target/release/homeostat] [--csv trials.csv]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.dont_write_bytecode = True  # no bench/__pycache__ in the working tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (FaultControl, Procs, alerting_workload, default_shared, ensure_free, exit_on_sigterm,  # noqa: E402
                      get_json, parse_rfc3339, prometheus_config_with_abs_rules, resolve_binary)

TARGET_PORT = 19100


class WebhookLog:
    """Follows one webhook.py JSONL log; remembers, per incident label, the
    recv_time of the first firing and the first resolved notification."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = b""
        self.firing = {}
        self.resolved = {}
        self.lines = 0

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.pos += len(chunk)
        data = self.partial + chunk
        *complete, self.partial = data.split(b"\n")
        for line in complete:
            if not line.strip():
                continue
            self.lines += 1
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            body = rec.get("body")
            if not isinstance(body, dict):
                continue
            for alert in body.get("alerts") or ():
                incident = (alert.get("labels") or {}).get("incident")
                if not incident:
                    continue
                seen = self.firing if alert.get("status") == "firing" else self.resolved
                seen.setdefault(incident, rec["recv_time"])


class Stack:
    def __init__(self, name, prefix, port, am_port, hook_port):
        self.name, self.prefix = name, prefix
        self.port, self.am_port, self.hook_port = port, am_port, hook_port
        self.base = f"http://127.0.0.1:{port}"
        self.hook = None
        self.e2e = []        # seconds, flip -> webhook recv
        self.active = []     # seconds, flip -> activeAt
        self.timeouts = 0
        self.no_active = 0
        self.unresolved = 0


def active_at(stack, incident):
    """activeAt (epoch seconds) of the daemon's alert carrying this incident
    label, or None."""
    try:
        alerts = get_json(f"{stack.base}/api/v1/alerts", timeout=5)["data"]["alerts"]
    except Exception as e:  # noqa: BLE001
        print(f"{stack.name}: /api/v1/alerts failed: {e}", file=sys.stderr)
        return None
    for alert in alerts:
        if (alert.get("labels") or {}).get("incident") == incident and alert.get("activeAt"):
            try:
                return parse_rfc3339(alert["activeAt"])
            except ValueError as e:
                print(f"{stack.name}: {e}", file=sys.stderr)
    return None


def wait_scraped(stack, deadline):
    """Waits until the daemon answers `fault_injected` from the target, so the
    first trial does not measure start-up."""
    url = f"{stack.base}/api/v1/query?" + urllib.parse.urlencode({"query": "fault_injected"})
    while time.time() < deadline:
        try:
            if get_json(url, timeout=2)["data"]["result"]:
                return
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.5)
    raise SystemExit(f"{stack.name} has not scraped fault_injected from 127.0.0.1:{TARGET_PORT}")


def summarize(xs):
    if not xs:
        return None
    return statistics.median(xs), statistics.mean(xs), min(xs), max(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=default_shared())
    ap.add_argument("--homeostat", default="target/release/homeostat")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager")
                    or "/usr/bin/prometheus-alertmanager")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for both firing notifications")
    ap.add_argument("--resolve-timeout", type=float, default=8.0,
                    help="seconds to wait for both resolved notifications")
    ap.add_argument("--pause", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"),
                    help="random pause between trials (uniform), seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after both have scraped the target")
    ap.add_argument("--series", type=int, default=200, help="series of the target besides fault_injected")
    ap.add_argument("--only", choices=("both", "prometheus", "homeostat"), default="both",
                    help="run one stack only (e.g. to check the plumbing)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the random pauses")
    ap.add_argument("--csv", default=None, help="write every trial to this CSV file")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) for inspection")
    a = ap.parse_args()
    exit_on_sigterm()
    rng = random.Random(a.seed)

    w = alerting_workload(a.shared, "rules-latency.yml", "alertmanager-latency-fast.yml")
    if w is None:
        return 0
    target_py, webhook_py, rules, am_text = w.target_py, w.webhook_py, w.rules, w.am_text
    bench = os.path.join(a.shared, "bench")

    stacks = []
    if a.only in ("both", "prometheus"):
        stacks.append(Stack("Prometheus 2.42", "prometheus", 19090, 19093, 19095))
    if a.only in ("both", "homeostat"):
        stacks.append(Stack("homeostat", "homeostat", 29090, 29093, 29095))
        a.homeostat = resolve_binary(a.homeostat, "build it with cargo build --release -p homeostat")
    ensure_free(TARGET_PORT, *(p for s in stacks for p in (s.port, s.am_port, s.hook_port)))

    tmp = tempfile.mkdtemp(prefix="hs-lbench-")
    procs = Procs(tmp)
    runtime = 120 + a.trials * (a.timeout + a.resolve_timeout + a.pause[1] + 2)  # safety bound
    run_id = int(time.time()) % 1000000
    rows = []
    try:
        ctl = FaultControl(os.path.join(tmp, "fault.ctl"))
        procs.start("target", [sys.executable, target_py, "--ports", str(TARGET_PORT), "--series", str(a.series),
                               "--control-file", ctl.path, "--max-runtime", str(runtime)])
        for s in stacks:
            log = os.path.join(tmp, f"webhook-{s.prefix}.jsonl")
            s.hook = WebhookLog(log)
            procs.start(f"webhook-{s.prefix}", [sys.executable, webhook_py, "--port", str(s.hook_port),
                                                "--log", log, "--max-runtime", str(runtime)])
            am_cfg = os.path.join(tmp, f"alertmanager-{s.prefix}.yml")
            with open(am_cfg, "w") as f:
                f.write(am_text.replace("127.0.0.1:19095", f"127.0.0.1:{s.hook_port}"))
            am_data = os.path.join(tmp, f"am-{s.prefix}")
            os.mkdir(am_data)
            procs.start(f"alertmanager-{s.prefix}", [
                a.alertmanager, f"--config.file={am_cfg}", f"--storage.path={am_data}",
                f"--web.listen-address=127.0.0.1:{s.am_port}", "--cluster.listen-address="])
        procs.wait_http(f"http://127.0.0.1:{TARGET_PORT}/metrics", timeout=60)
        for s in stacks:
            procs.wait_http(f"http://127.0.0.1:{s.hook_port}/", timeout=30)
            procs.wait_http(f"http://127.0.0.1:{s.am_port}/-/ready", timeout=60)

        for s in stacks:
            if s.prefix == "prometheus":
                cfg = os.path.join(tmp, "prometheus.yml")
                with open(cfg, "w") as f:
                    f.write(prometheus_config_with_abs_rules(os.path.join(bench, "prometheus-latency-fast.yml")))
                os.mkdir(os.path.join(tmp, "prom"))
                procs.start("prometheus", [a.prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/prom",
                                           f"--web.listen-address=127.0.0.1:{s.port}"])
            else:
                cfg = os.path.join(tmp, "homeostat.yaml")
                with open(cfg, "w") as f:
                    f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                            f"web:\n  listen_address: 127.0.0.1:{s.port}\n"
                            f"state:\n  path: {tmp}/homeostat.db\n"
                            f"rule_files:\n  - {json.dumps(rules)}\n"
                            "alerting:\n  alertmanagers:\n    - static_configs:\n"
                            f"        - targets: ['127.0.0.1:{s.am_port}']\n"
                            "scrape_configs:\n  - job_name: fault\n    static_configs:\n"
                            f"      - targets: ['127.0.0.1:{TARGET_PORT}']\n")
                procs.start("homeostat", [a.homeostat, "run", "--config", cfg])
        for s in stacks:
            procs.wait_http(f"{s.base}/-/ready", timeout=60)
        deadline = time.time() + 60
        for s in stacks:
            wait_scraped(s, deadline)
        procs.check_alive()
        time.sleep(a.warmup)

        print(f"{a.trials} trials, incident labels run{run_id}-t1..t{a.trials}", file=sys.stderr)
        try:
            for n in range(1, a.trials + 1):
                procs.check_alive()
                tag = f"run{run_id}-t{n}"
                flip = ctl.write("1", tag)
                end = flip + a.timeout
                while True:
                    for s in stacks:
                        s.hook.poll()
                    if all(tag in s.hook.firing for s in stacks) or time.time() > end:
                        break
                    time.sleep(0.01)
                row = {"trial": n, "incident": tag, "flip": f"{flip:.6f}"}
                for s in stacks:
                    got = s.hook.firing.get(tag)
                    if got is None:
                        s.timeouts += 1
                    else:
                        s.e2e.append(got - flip)
                    act = active_at(s, tag)
                    if act is None:
                        s.no_active += 1
                    else:
                        s.active.append(act - flip)
                    row[f"{s.prefix}_webhook_s"] = "" if got is None else f"{got - flip:.4f}"
                    row[f"{s.prefix}_active_s"] = "" if act is None else f"{act - flip:.4f}"
                rows.append(row)
                print("  t%-3d " % n + "  ".join(
                    f"{s.prefix}: webhook {row[s.prefix + '_webhook_s'] or 'TIMEOUT'} "
                    f"activeAt {row[s.prefix + '_active_s'] or '?'}" for s in stacks), file=sys.stderr)

                clear = ctl.write("0")
                end = clear + a.resolve_timeout
                while True:
                    for s in stacks:
                        s.hook.poll()
                    if all(tag in s.hook.resolved for s in stacks) or time.time() > end:
                        break
                    time.sleep(0.05)
                for s in stacks:
                    if tag not in s.hook.resolved:
                        s.unresolved += 1
                time.sleep(rng.uniform(*a.pause))
        except KeyboardInterrupt:
            print(f"interrupted after {len(rows)} trials; reporting those", file=sys.stderr)

        if a.csv and rows:
            import csv
            with open(a.csv, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)

        print(f"\nLATENCY: fault flip on 127.0.0.1:{TARGET_PORT} (seen by both at the same instant), 1 s scrape, "
              f"1 s evaluation, rules-latency.yml (for: 0s), alertmanager-latency-fast.yml (group_wait 0s); "
              f"{len(rows)} trials, random 1-3 s between trials\n")
        print("| path | median | mean | min | max | n (missed) |")
        print("|---|---|---|---|---|---|")
        by = {s.prefix: s for s in stacks}
        lines = []
        if "prometheus" in by:
            lines.append(("Prometheus + Alertmanager → webhook", by["prometheus"].e2e, by["prometheus"].timeouts))
        if "homeostat" in by:
            lines.append(("homeostat + Alertmanager → webhook", by["homeostat"].e2e, by["homeostat"].timeouts))
            lines.append(("homeostat firing (activeAt − flip)", by["homeostat"].active, by["homeostat"].no_active))
        if "prometheus" in by:
            lines.append(("Prometheus firing (activeAt − flip)", by["prometheus"].active, by["prometheus"].no_active))
        for label, xs, misses in lines:
            st = summarize(xs)
            cells = " | ".join(f"{v:.2f} s" for v in st) if st else "— | — | — | —"
            print(f"| {label} | {cells} | {len(xs)} ({misses}) |")
        if "prometheus" in by and "homeostat" in by:
            for what, ph, hh in (("end-to-end (webhook)", by["prometheus"].e2e, by["homeostat"].e2e),
                                 ("firing (activeAt)", by["prometheus"].active, by["homeostat"].active)):
                if ph and hh and statistics.median(ph) > 0:
                    print(f"\nratio of medians homeostat / Prometheus, {what}: "
                          f"{statistics.median(hh) / statistics.median(ph):.2f}", end="")
            print()
        for s in stacks:
            if s.unresolved:
                print(f"\n{s.name}: {s.unresolved} trial(s) without a resolved notification "
                      f"within {a.resolve_timeout:g} s", end="")
        print()
    finally:
        procs.stop()
        if a.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
