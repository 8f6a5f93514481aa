#!/usr/bin/env python3
"""Side-by-side rule evaluation: homeostat vs Prometheus 2.42 in one run.

The FOOTPRINT workload with its rules: ../shared/bench/target.py serves 20
targets x 5,000 series (100k series) on 19101-19120; both daemons scrape them
every 5 s and evaluate the same ../shared/bench/rules-footprint.yml (10 groups,
100 alerting rules, for: 1m) every 5 s, each delivering to its own
Alertmanager 0.25 (alertmanager-footprint.yml) and webhook.py sink:

  Prometheus  127.0.0.1:19090 -> Alertmanager 19093 -> webhook 19095
  homeostat   127.0.0.1:29090 -> Alertmanager 29093 -> webhook 29095

Prometheus runs the shared prometheus-footprint.yml with only rule_files made
absolute, so, as for the README figures, it also scrapes itself and its
Alertmanager; homeostat gets the same targets, intervals and rules, and
likewise scrapes itself and its Alertmanager.

After --warmup, every --sample-every seconds during --window, each daemon's
/metrics is read and the per-group `*_rule_group_last_duration_seconds` gauges
summed: the rule evaluation time of one cycle. Reported per daemon: mean,
median and p90 per cycle; from `*_rule_group_duration_seconds` _sum/_count
over the window, the mean per cycle (cross-check) and the mean of one group's
evaluation (what the README's "rule groups 105 ms mean" is); CPU seconds
(utime+stime from /proc/PID/stat) and peak RSS (VmHWM, reset at the start of
the window) of the daemon and of its Alertmanager over the window; series
held, rule groups and rules loaded, evaluation failures and missed iterations
in the window, alerts firing/pending at the end via /api/v1/alerts, and the
notifications its webhook received. Printed as a Markdown table with the ratio
homeostat / Prometheus.

Usage:
  cargo build --release -p homeostat
  python3 bench/rules_side_by_side.py [--warmup 60] [--window 300]
      [--only both|prometheus|homeostat] [--shared ../shared]
      [--homeostat target/release/homeostat]
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ in the working tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (FaultControl, Procs, alerting_workload, cpu_seconds, default_shared, ensure_free,  # noqa: E402
                      exit_on_sigterm, get_json, percentile, prometheus_config_with_abs_rules,
                      reset_hwm, resolve_binary, samples_named, scrape, status_kib, total)

FIRST, LAST = 19101, 19120


class Stack:
    """One daemon with its Alertmanager and webhook, and what was measured."""

    def __init__(self, name, prefix, port, am_port, hook_port, series_metric):
        self.name, self.prefix = name, prefix
        self.port, self.am_port, self.hook_port = port, am_port, hook_port
        self.base = f"http://127.0.0.1:{port}"
        self.series_metric = series_metric
        self.proc = self.am = None
        self.hook_log = None
        self.cycles = []      # summed last_duration per sample, seconds
        self.groups_seen = 0
        self.rss_max = self.am_rss_max = 0  # KiB, largest VmRSS at the samples
        self.m0 = self.m1 = None
        self.cpu = {}

    def metric(self, suffix):
        return f"{self.prefix}_{suffix}"


def delta(stack, name):
    a, b = total(stack.m0, name), total(stack.m1, name)
    return None if a is None or b is None else b - a


def fmt(v, spec, unit=""):
    return "?" if v is None else f"{v:{spec}}{unit}"


def ratio(h, p):
    if h is None or p is None or not p:
        return "n/a"
    return f"{h / p:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=default_shared())
    ap.add_argument("--homeostat", default="target/release/homeostat")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager")
                    or "/usr/bin/prometheus-alertmanager")
    ap.add_argument("--series", type=int, default=5000, help="series per target (FOOTPRINT: 5000)")
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between /metrics samples")
    ap.add_argument("--only", choices=("both", "prometheus", "homeostat"), default="both",
                    help="run one stack only (e.g. to check the plumbing)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs) for inspection")
    a = ap.parse_args()
    exit_on_sigterm()

    w = alerting_workload(a.shared, "rules-footprint.yml", "alertmanager-footprint.yml")
    if w is None:
        return 0
    target_py, webhook_py, rules, am_text = w.target_py, w.webhook_py, w.rules, w.am_text
    bench = os.path.join(a.shared, "bench")

    stacks = []
    if a.only in ("both", "prometheus"):
        stacks.append(Stack("Prometheus 2.42", "prometheus", 19090, 19093, 19095, "prometheus_tsdb_head_series"))
    if a.only in ("both", "homeostat"):
        stacks.append(Stack("homeostat", "homeostat", 29090, 29093, 29095, "homeostat_store_series"))
        a.homeostat = resolve_binary(a.homeostat, "build it with cargo build --release -p homeostat")
    ensure_free(*range(FIRST, LAST + 1), *(p for s in stacks for p in (s.port, s.am_port, s.hook_port)))

    tmp = tempfile.mkdtemp(prefix="hs-rbench-")
    procs = Procs(tmp)
    runtime = a.warmup + a.window + 180  # safety bound for target.py / webhook.py
    targets = [f"127.0.0.1:{p}" for p in range(FIRST, LAST + 1)]
    try:
        ctl = FaultControl(os.path.join(tmp, "fault.ctl"))
        procs.start("target", [sys.executable, target_py, "--ports", f"{FIRST}-{LAST}", "--series", str(a.series),
                               "--control-file", ctl.path, "--max-runtime", str(runtime)])
        for s in stacks:
            s.hook_log = os.path.join(tmp, f"webhook-{s.prefix}.jsonl")
            procs.start(f"webhook-{s.prefix}", [sys.executable, webhook_py, "--port", str(s.hook_port),
                                                "--log", s.hook_log, "--max-runtime", str(runtime)])
            am_cfg = os.path.join(tmp, f"alertmanager-{s.prefix}.yml")
            with open(am_cfg, "w") as f:
                f.write(am_text.replace("127.0.0.1:19095", f"127.0.0.1:{s.hook_port}"))
            am_data = os.path.join(tmp, f"am-{s.prefix}")
            os.mkdir(am_data)
            s.am = procs.start(f"alertmanager-{s.prefix}", [
                a.alertmanager, f"--config.file={am_cfg}", f"--storage.path={am_data}",
                f"--web.listen-address=127.0.0.1:{s.am_port}", "--cluster.listen-address="])
        procs.wait_http(f"http://127.0.0.1:{FIRST}/metrics", timeout=60)

        for s in stacks:
            if s.prefix == "prometheus":
                cfg = os.path.join(tmp, "prometheus.yml")
                with open(cfg, "w") as f:
                    f.write(prometheus_config_with_abs_rules(os.path.join(bench, "prometheus-footprint.yml")))
                os.mkdir(os.path.join(tmp, "prom"))
                s.proc = procs.start("prometheus", [a.prometheus, f"--config.file={cfg}",
                                                    f"--storage.tsdb.path={tmp}/prom",
                                                    f"--web.listen-address=127.0.0.1:{s.port}"])
            else:
                cfg = os.path.join(tmp, "homeostat.yaml")
                with open(cfg, "w") as f:
                    f.write("global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n  evaluation_interval: 5s\n"
                            f"web:\n  listen_address: 127.0.0.1:{s.port}\n"
                            f"state:\n  path: {tmp}/homeostat.db\n"
                            f"rule_files:\n  - {json.dumps(rules)}\n"
                            "alerting:\n  alertmanagers:\n    - static_configs:\n"
                            f"        - targets: ['127.0.0.1:{s.am_port}']\n"
                            "scrape_configs:\n"
                            "  - job_name: bench\n    static_configs:\n      - targets: " + json.dumps(targets) + "\n"
                            f"  - job_name: homeostat\n    static_configs:\n      - targets: ['127.0.0.1:{s.port}']\n"
                            "  - job_name: alertmanager\n    static_configs:\n"
                            f"      - targets: ['127.0.0.1:{s.am_port}']\n")
                s.proc = procs.start("homeostat", [a.homeostat, "run", "--config", cfg])
        for s in stacks:
            procs.wait_http(f"http://127.0.0.1:{s.am_port}/-/ready", timeout=60)
            procs.wait_http(f"{s.base}/-/ready", timeout=60)
        procs.check_alive()

        print(f"warming up {a.warmup}s ...", file=sys.stderr)
        time.sleep(a.warmup)
        procs.check_alive()
        print(f"measuring {a.window}s, sampling every {a.sample_every}s ...", file=sys.stderr)
        hwm_reset = True
        for s in stacks:
            s.m0 = scrape(f"{s.base}/metrics")
            for p in (s.proc, s.am):
                hwm_reset &= reset_hwm(p.pid)
                s.cpu[p.pid] = cpu_seconds(p.pid)
        t0 = time.time()
        k = 1
        while t0 + k * a.sample_every <= t0 + a.window + 1e-6:
            time.sleep(max(0.0, t0 + k * a.sample_every - time.time()))
            k += 1
            procs.check_alive()
            for s in stacks:
                s.rss_max = max(s.rss_max, status_kib(s.proc.pid, "VmRSS"))
                s.am_rss_max = max(s.am_rss_max, status_kib(s.am.pid, "VmRSS"))
                m = scrape(f"{s.base}/metrics")
                last = samples_named(m, s.metric("rule_group_last_duration_seconds"))
                if last:
                    s.cycles.append(sum(v for _, v in last))
                    s.groups_seen = len(last)
        time.sleep(max(0.0, t0 + a.window - time.time()))
        elapsed = time.time() - t0
        for s in stacks:
            for p in (s.proc, s.am):
                s.cpu[p.pid] = cpu_seconds(p.pid) - s.cpu[p.pid]
        for s in stacks:
            s.m1 = scrape(f"{s.base}/metrics")
        procs.check_alive()

        # ---- evaluate -------------------------------------------------------
        cols = {}
        alert_sets = {}
        for s in stacks:
            c = {}
            if s.cycles:
                c["mean"] = statistics.mean(s.cycles) * 1000
                c["median"] = statistics.median(s.cycles) * 1000
                c["p90"] = percentile(s.cycles, 0.9) * 1000
            dsum = delta(s, s.metric("rule_group_duration_seconds_sum"))
            dcnt = delta(s, s.metric("rule_group_duration_seconds_count"))
            rule_rows = samples_named(s.m1, s.metric("rule_group_rules"))
            n_groups = len(rule_rows) or s.groups_seen
            if dsum is not None and dcnt and n_groups:
                c["summean"] = dsum / (dcnt / n_groups) * 1000
                c["groupmean"] = dsum / dcnt * 1000
                c["cycles"] = dcnt / n_groups
            c["cpu"] = s.cpu[s.proc.pid]
            # VmHWM since the reset at the window start; where the kernel refused
            # the reset, the largest VmRSS seen at the samples instead
            c["hwm"] = (status_kib(s.proc.pid, "VmHWM") if hwm_reset else s.rss_max) / 1024
            c["rss"] = status_kib(s.proc.pid, "VmRSS") / 1024
            c["am_cpu"] = s.cpu[s.am.pid]
            c["am_hwm"] = (status_kib(s.am.pid, "VmHWM") if hwm_reset else s.am_rss_max) / 1024
            c["series"] = total(s.m1, s.series_metric)
            c["groups"] = len(rule_rows) if rule_rows else None
            c["rules"] = sum(v for _, v in rule_rows) if rule_rows else None
            c["failures"] = delta(s, s.metric("rule_evaluation_failures_total"))
            c["missed"] = delta(s, s.metric("rule_group_iterations_missed_total"))
            try:
                alerts = get_json(f"{s.base}/api/v1/alerts", timeout=10)["data"]["alerts"]
            except Exception as e:  # noqa: BLE001
                print(f"{s.name}: /api/v1/alerts failed: {e}", file=sys.stderr)
                alerts = None
            if alerts is not None:
                c["firing"] = sum(1 for al in alerts if al.get("state") == "firing")
                c["pending"] = sum(1 for al in alerts if al.get("state") == "pending")
                alert_sets[s.prefix] = {tuple(sorted(al.get("labels", {}).items()))
                                        for al in alerts if al.get("state") == "firing"}
            try:
                with open(s.hook_log) as f:
                    c["notifications"] = sum(1 for _ in f)
            except OSError:
                c["notifications"] = None
            cols[s.prefix] = c

        p, h = cols.get("prometheus", {}), cols.get("homeostat", {})

        def row(label, key, spec, unit=""):
            print(f"| {label} | {fmt(p.get(key), spec, unit) if p else '—'} | "
                  f"{fmt(h.get(key), spec, unit) if h else '—'} | {ratio(h.get(key), p.get(key))} |")

        def pair(label, k1, k2):
            def one(c):
                if not c:
                    return "—"
                return f"{fmt(c.get(k1), '.0f')} / {fmt(c.get(k2), '.0f')}"
            print(f"| {label} | {one(p)} | {one(h)} | |")

        n_samples = " / ".join(f"{s.name}: {len(s.cycles)}" for s in stacks)
        print(f"\nFOOTPRINT with rules: {LAST - FIRST + 1} targets x {a.series} series, 5 s scrape and "
              f"evaluation, rules-footprint.yml; {elapsed:.0f} s window after {a.warmup} s warm-up; "
              f"rule time per cycle = sum over groups of *_rule_group_last_duration_seconds, "
              f"sampled every {a.sample_every:g} s ({n_samples} samples)"
              + ("" if hwm_reset else "; VmHWM could not be reset, so peak RSS is the largest VmRSS "
                 "seen at the samples") + "\n")
        print("| | Prometheus 2.42 | homeostat | homeostat / Prometheus |")
        print("|---|---|---|---|")
        row("rule evaluation per cycle, mean", "mean", ".1f", " ms")
        row("rule evaluation per cycle, median", "median", ".1f", " ms")
        row("rule evaluation per cycle, p90", "p90", ".1f", " ms")
        row("rule evaluation per cycle, mean from _sum/_count", "summean", ".1f", " ms")
        row("one group's evaluation, mean from _sum/_count (the README's figure)", "groupmean", ".1f", " ms")
        row("evaluation cycles in window (from _count)", "cycles", ".0f")
        row("daemon CPU seconds", "cpu", ".1f")
        print(f"| daemon CPU, % of one core | "
              + " | ".join(f"{100 * c['cpu'] / elapsed:.1f}%" if c else "—" for c in (p, h)) + " | |")
        row("daemon peak RSS in window (MiB)", "hwm", ".0f")
        row("daemon RSS at end (MiB)", "rss", ".0f")
        row("Alertmanager CPU seconds", "am_cpu", ".2f")
        row("Alertmanager peak RSS (MiB)", "am_hwm", ".0f")
        row("series held", "series", ".0f")
        pair("rule groups / rules loaded", "groups", "rules")
        row("rule evaluation failures in window", "failures", ".0f")
        row("missed group iterations in window", "missed", ".0f")
        pair("alerts firing / pending at end (/api/v1/alerts)", "firing", "pending")
        row("notifications received by its webhook", "notifications", ".0f")
        if "prometheus" in alert_sets and "homeostat" in alert_sets:
            ps, hs = alert_sets["prometheus"], alert_sets["homeostat"]
            print(f"\nfiring alerts with identical label sets: {len(ps & hs)}; "
                  f"only Prometheus: {len(ps - hs)}; only homeostat: {len(hs - ps)}")
            for name, only in (("only Prometheus", ps - hs), ("only homeostat", hs - ps)):
                for labels in sorted(only)[:10]:
                    print(f"  {name}: {dict(labels)}", file=sys.stderr)
    finally:
        procs.stop()
        if a.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
