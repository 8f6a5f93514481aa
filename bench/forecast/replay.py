#!/usr/bin/env python3
"""Autoscaling replay: homeostat's predictive autoscaler vs a reactive HPA and
an oracle, on every series taken as demand (issue #8).

Each series (regularised onto its median-interval grid, see common.py) is the
demand. For each replica startup delay d in {2 min, 10 min}:

Definitions (these ARE the benchmark; keep the code below in line with them)
---------------------------------------------------------------------------
* Grid t_0 < t_1 < ... with interval D; demand(t_i) = the series value.
* Capacity per replica c = p99 of the demand over the whole series / 20
  (numpy's default linear-interpolation percentile).
* A policy outputs desired(t_i) for every grid timestamp; it holds until the
  next grid point (piecewise constant). Policies see the whole series from
  its start but may only use data up to the decision's timestamp.
* Readiness: a replica is ready at t once it has been requested continuously
  for d, so ready(t) = min of desired(s) over s in [t - d, t] (continuous
  time). On the grid: ready(t_i) = min desired(t_j) over t_j in (t_i - d - D, t_i],
  i.e. j = i-K .. i with K = ceil(d / D). Scale-down is therefore immediate,
  scale-up takes effect after d. (Points before t_0 do not exist; the
  evaluation starts far later.)
* Evaluation: the last 40% of the grid (i >= int(0.6 n)).
  - under-provisioned at t when demand(t) > ready(t) * c; reported as the
    percentage of evaluated grid points;
  - shortfall (%) = 100 * sum max(0, demand - ready * c) / sum demand;
  - replica-hours = sum desired(t) * D / 3600 (billed from the request, not
    from readiness), also as a ratio to the reactive policy's (and the
    oracle's).
* Reactive (Kubernetes-HPA style): target utilization 0.7, tolerance 0.1,
  5-minute scale-down stabilization, min 1 replica. At t_0:
  desired = max(1, ceil(demand / (0.7 c))). At each later t_i:
  - utilization = demand(t_i) / (ready_before * c), where ready_before is what
    is running just before the decision: min desired(t_j), j = i-K .. i-1;
  - ratio = utilization / 0.7; recommendation = desired(t_{i-1}) when
    |ratio - 1| <= 0.1, else max(1, ceil(demand(t_i) / (0.7 c)));
  - if recommendation < desired(t_{i-1}) (a scale-down), desired(t_i) =
    min(desired(t_{i-1}), max of the recommendations over the last 5 minutes
    including now), the window taken like readiness: grid points t_j in
    (t_i - 5 min - D, t_i]; otherwise desired(t_i) = recommendation.
* Oracle: desired(t_i) = max over t_j in [t_i, t_i + d + D) of
  max(1, ceil(demand(t_j) / c)) -- enough replicas requested early enough for
  every instant, so zero shortfall by construction, and the least such
  schedule with at least 1 replica.
* homeostat: the regularised series is written to SERIES.csv and the
  autoscale definition to AUTOSCALE.yaml (template: AUTOSCALE_TEMPLATE below,
  keys can be overridden or added with repeated --set key=value), then
  ``homeostat replay --input SERIES.csv --autoscale AUTOSCALE.yaml
  --out DECISIONS.csv`` must write ``timestamp,desired_replicas`` for every
  input timestamp. The decisions are scored exactly like the other policies.
  ``--homeostat-stub`` runs homeostat_stub.py instead (an HPA driven by the
  peak of a seasonal-naive forecast over the next d), to test the pipeline.

Aggregate = mean over series of under-provisioned %, shortfall % and the
replica-hours ratio; the reduction of under-provisioned time vs reactive is
1 - homeostat / reactive, per series and on the aggregate means. The Azure
trace (58 min, evaluation window 23 min) is in the aggregate; a second
aggregate line leaves it out.

The reactive and oracle policies take well under a second per series, so
they are not cached.

Usage:
  bench/forecast/.venv/bin/python bench/forecast/replay.py
      [--data ../shared/data] [--homeostat target/release/homeostat | --homeostat-stub]
      [--series NAME ...] [--delay 2m --delay 10m] [--set key=value ...]
      [--out-md FILE] [--out-json FILE] [--keep DIR]
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import common  # sets single-thread env vars before numpy is imported
from common import ceil_div, log, window_steps
import numpy as np

TARGET = 0.7
TOLERANCE = 0.1
STABILIZATION = 300.0  # seconds
MIN_REPLICAS = 1
REPLICAS_PER_P99 = 20
DEFAULT_DELAYS = ("2m", "10m")
POLICIES = ("reactive", "homeostat", "oracle")

# The AUTOSCALE.yaml written for homeostat: (key, value template, comment).
# Templates are formatted with name, c, max, d (see autoscale_yaml()).
AUTOSCALE_TEMPLATE = (
    ("name", "{name}", None),
    ("demand", "replay", "ignored by replay: the file is the demand"),
    ("capacity_per_replica", "{c}", None),
    ("target_utilization", "0.7", None),
    ("min", "1", None),
    ("max", "{max}", None),
    ("lead_time", "{d}", None),
    ("scale_down_stabilization", "5m", None),
)


# --------------------------------------------------------------- policies --

def capacity(demand):
    return float(np.percentile(demand, 99)) / REPLICAS_PER_P99


def ready_from_desired(desired, k):
    """ready[i] = min desired[i-k .. i] (clipped at the start)."""
    desired = np.asarray(desired)
    ready = desired.copy()
    for lag in range(1, k + 1):
        ready[lag:] = np.minimum(ready[lag:], desired[:-lag])
    return ready


def reactive(demand, c, step, delay):
    """Kubernetes-HPA-style policy (see the module docstring)."""
    n = len(demand)
    k_d = window_steps(delay, step)
    k_w = window_steps(STABILIZATION, step)
    desired = np.zeros(n, dtype=np.int64)
    rec = np.zeros(n, dtype=np.int64)
    desired[0] = rec[0] = max(MIN_REPLICAS, ceil_div(demand[0], TARGET * c))
    for i in range(1, n):
        ready_before = desired[max(0, i - k_d):i].min()
        util = demand[i] / (ready_before * c)
        if abs(util / TARGET - 1.0) <= TOLERANCE:
            r = desired[i - 1]
        else:
            r = max(MIN_REPLICAS, ceil_div(demand[i], TARGET * c))
        rec[i] = r
        if r < desired[i - 1]:
            desired[i] = min(desired[i - 1], rec[max(0, i - k_w):i + 1].max())
        else:
            desired[i] = r
    return desired


def oracle(demand, c, step, delay):
    """Least schedule with zero shortfall (see the module docstring)."""
    need = np.array([max(MIN_REPLICAS, ceil_div(v, c)) for v in demand], dtype=np.int64)
    k = window_steps(delay, step)
    desired = need.copy()
    for lead in range(1, k + 1):
        desired[:-lead] = np.maximum(desired[:-lead], need[lead:])
    return desired


def score(demand, desired, c, step, delay, start):
    """Metrics over grid points i >= start."""
    ready = ready_from_desired(desired, window_steps(delay, step))
    d, r, w = demand[start:], ready[start:] * c, desired[start:]
    under = d > r + 1e-9 * c
    return {
        "under_pct": float(100.0 * under.mean()),
        "shortfall_pct": float(100.0 * np.maximum(0.0, d - r).sum() / d.sum()) if d.sum() > 0 else 0.0,
        "replica_hours": float(w.sum() * step / 3600.0),
    }


# -------------------------------------------------------------- homeostat --

def autoscale_yaml(name, c, max_replicas, delay, overrides):
    """AUTOSCALE.yaml text from AUTOSCALE_TEMPLATE plus --set overrides."""
    values = {"name": name, "c": common.format_value(c), "max": max_replicas,
              "d": common.format_duration(delay)}
    lines, seen = [], set()
    for key, tmpl, comment in AUTOSCALE_TEMPLATE:
        seen.add(key)
        if key in overrides:
            val, comment = overrides[key], None
        else:
            val = tmpl.format(**values)
        lines.append(f"{key}: {val}" + (f"            # {comment}" if comment else ""))
    for key, val in overrides.items():
        if key not in seen:
            lines.append(f"{key}: {val}")
    return "\n".join(lines) + "\n"


def read_decisions(path, series):
    cols = common.read_csv_columns(path, ["timestamp", "desired_replicas"])
    index = {round(t): i for i, t in enumerate(series.t)}
    desired = np.full(len(series), -1, dtype=np.int64)
    for ts, val in zip(cols["timestamp"], cols["desired_replicas"]):
        key = ts.strip()
        if round(common.parse_ts(key)) not in index:
            raise ValueError(f"{path}: timestamp {key} is not in the input")
        v = float(val)
        if not v.is_integer() or v < 0:
            raise ValueError(f"{path}: desired_replicas {val!r} at {key} is not a whole number >= 0")
        desired[index[round(common.parse_ts(key))]] = int(v)
    missing = int((desired < 0).sum())
    if missing:
        raise ValueError(f"{path}: no decision for {missing} of {len(series)} timestamps")
    return desired


def run_homeostat(cmd, series, yaml_text, workdir, extra=()):
    os.makedirs(workdir, exist_ok=True)
    series_csv = os.path.join(workdir, "SERIES.csv")
    yaml_path = os.path.join(workdir, "AUTOSCALE.yaml")
    out_csv = os.path.join(workdir, "DECISIONS.csv")
    if not os.path.exists(series_csv):
        series.write_csv(series_csv)
    with open(yaml_path, "w") as f:
        f.write(yaml_text)
    if os.path.exists(out_csv):
        os.remove(out_csv)
    argv = cmd + ["replay", "--input", series_csv, "--autoscale", yaml_path, "--out", out_csv] + list(extra)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    if not os.path.exists(out_csv):
        raise RuntimeError(f"{' '.join(argv)} wrote no {out_csv}")
    return read_decisions(out_csv, series), seconds


# ------------------------------------------------------------------ report --

def add_ratios(res):
    """Replica-hours ratios vs reactive and oracle, and the reduction of
    under-provisioned time vs reactive, for one (series, delay)."""
    base = res["reactive"]["replica_hours"]
    orc = res["oracle"]["replica_hours"]
    for p, mt in res.items():
        mt["rh_vs_reactive"] = mt["replica_hours"] / base if base > 0 else float("nan")
        mt["rh_vs_oracle"] = mt["replica_hours"] / orc if orc > 0 else float("nan")
    if "homeostat" in res:
        ru = res["reactive"]["under_pct"]
        res["homeostat"]["under_reduction_pct"] = (
            100.0 * (1.0 - res["homeostat"]["under_pct"] / ru) if ru > 0 else float("nan"))


def aggregate(results, names, delay_labels):
    agg = {}
    for dl in delay_labels:
        agg[dl] = {}
        for p in POLICIES:
            rows = [results[n]["delays"][dl][p] for n in names if p in results[n]["delays"][dl]]
            if not rows:
                continue
            agg[dl][p] = {k: float(np.mean([r[k] for r in rows]))
                          for k in ("under_pct", "shortfall_pct", "rh_vs_reactive", "rh_vs_oracle")}
            agg[dl][p]["n_series"] = len(rows)
        if "homeostat" in agg[dl]:
            ru = agg[dl]["reactive"]["under_pct"]
            agg[dl]["homeostat"]["under_reduction_pct"] = (
                100.0 * (1.0 - agg[dl]["homeostat"]["under_pct"] / ru) if ru > 0 else float("nan"))
            per = [results[n]["delays"][dl]["homeostat"].get("under_reduction_pct") for n in names
                   if "homeostat" in results[n]["delays"][dl]]
            per = [v for v in per if v is not None and math.isfinite(v)]
            agg[dl]["homeostat"]["under_reduction_pct_mean_of_series"] = (
                float(np.mean(per)) if per else float("nan"))
    return agg


def pct(x):
    """'12.3%' or 'n/a' (reactive never under-provisioned: no reduction defined)."""
    text = common.fmt(x, 1)
    return text if text == "n/a" else text + "%"


def aggregate_table(agg_all, agg_nab, delay_labels):
    header = ["delay", "policy", "under-prov. % (all)", "shortfall % (all)",
              "replica-h ×reactive (all)", "replica-h ×oracle (all)",
              "under-prov. % (no Azure)", "shortfall % (no Azure)",
              "replica-h ×reactive (no Azure)", "under-prov. reduction vs reactive (all / no Azure)"]
    rows = []
    for dl in delay_labels:
        for p in POLICIES:
            if p not in agg_all[dl]:
                continue
            a, b = agg_all[dl][p], agg_nab.get(dl, {}).get(p, {})
            red = "" if p != "homeostat" else (
                f"{pct(a['under_reduction_pct'])} / {pct(b.get('under_reduction_pct', float('nan')))}")
            rows.append([dl, p, common.fmt(a["under_pct"]), common.fmt(a["shortfall_pct"], 3),
                         common.fmt(a["rh_vs_reactive"], 3), common.fmt(a["rh_vs_oracle"], 3),
                         common.fmt(b.get("under_pct", float("nan"))),
                         common.fmt(b.get("shortfall_pct", float("nan")), 3),
                         common.fmt(b.get("rh_vs_reactive", float("nan")), 3), red])
    return common.markdown_table(header, rows)


def series_table(results, delay_labels):
    header = ["series", "delay", "policy", "under-prov. %", "shortfall %", "replica-h",
              "×reactive", "×oracle", "under-prov. reduction vs reactive"]
    rows = []
    for name, r in results.items():
        for dl in delay_labels:
            for p in POLICIES:
                mt = r["delays"][dl].get(p)
                if mt is None:
                    continue
                red = pct(mt["under_reduction_pct"]) if "under_reduction_pct" in mt else ""
                rows.append([name, dl, p, common.fmt(mt["under_pct"]), common.fmt(mt["shortfall_pct"], 3),
                             common.fmt(mt["replica_hours"], 1), common.fmt(mt["rh_vs_reactive"], 3),
                             common.fmt(mt["rh_vs_oracle"], 3), red])
    return common.markdown_table(header, rows)


def setup_table(results, delay_labels):
    header = ["series", "points", "interval s", "evaluated", "c (per replica)", "max replicas"] + \
             [f"baselines s ({dl})" for dl in delay_labels] + [f"homeostat s ({dl})" for dl in delay_labels]
    rows = []
    for name, r in results.items():
        row = [name, str(r["n"]), f"{r['step_seconds']:g}", str(r["n_eval"]),
               f"{r['c']:.4g}", str(r["max_replicas"])]
        row += [f"{r['delays'][dl]['seconds_baselines']:.3f}" for dl in delay_labels]
        row += [(f"{r['delays'][dl]['seconds_homeostat']:.3f}"
                 if r["delays"][dl].get("seconds_homeostat") is not None else "n/a")
                for dl in delay_labels]
        rows.append(row)
    return common.markdown_table(header, rows)


# -------------------------------------------------------------------- main --

def parse_sets(items):
    out = {}
    for item in items or ():
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=common.DEFAULT_DATA,
                    help="shared data directory holding series/ (default: %(default)s)")
    ap.add_argument("--homeostat", default=common.DEFAULT_HOMEOSTAT,
                    help="homeostat binary (default: %(default)s)")
    ap.add_argument("--homeostat-stub", action="store_true",
                    help="use the Python stand-in (homeostat_stub.py) instead of the binary")
    ap.add_argument("--homeostat-arg", action="append", metavar="ARG",
                    help="extra argument appended to the homeostat call; repeatable")
    ap.add_argument("--no-homeostat", action="store_true", help="reactive and oracle only")
    ap.add_argument("--series", action="append", help="only this series; repeatable")
    ap.add_argument("--delay", action="append",
                    help="replica startup delay, e.g. 2m; repeatable (default: 2m and 10m)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override or add a key of AUTOSCALE.yaml; repeatable")
    ap.add_argument("--keep", help="keep SERIES/AUTOSCALE/DECISIONS files under this directory")
    ap.add_argument("--out-md", help="write the Markdown report here")
    ap.add_argument("--out-json", help="write all numbers as JSON here")
    args = ap.parse_args()

    series_dir = common.series_dir_or_skip(args.data)
    cmd = None if args.no_homeostat else common.homeostat_command(args)
    overrides = parse_sets(args.set)
    delays = [common.parse_duration(d) for d in (args.delay or DEFAULT_DELAYS)]
    delay_labels = [common.format_duration(d) for d in delays]
    entries = common.list_series(series_dir, args.series)
    workroot = args.keep or tempfile.mkdtemp(prefix="homeostat-replay-")

    results = {}
    t_start = time.perf_counter()
    try:
        for idx, (name, path) in enumerate(entries, 1):
            series = common.Series(name, path)
            demand = series.y
            c = capacity(demand)
            if c <= 0:
                log(f"[{idx}/{len(entries)}] {name}: p99 of the demand is 0, skipped")
                continue
            max_replicas = 2 * ceil_div(float(demand.max()), c)
            start = series.n_train
            r = {"n": len(series), "step_seconds": series.step, "n_eval": len(series) - start,
                 "c": c, "max_replicas": max_replicas, "delays": {}, "errors": {}}
            log(f"[{idx}/{len(entries)}] {name}: {len(series)} points, step {series.step:g} s, "
                f"c={c:.4g}, max={max_replicas}")
            for d, dl in zip(delays, delay_labels):
                res = {}
                t0 = time.perf_counter()
                for p, fn in (("reactive", reactive), ("oracle", oracle)):
                    res[p] = score(demand, fn(demand, c, series.step, d), c, series.step, d, start)
                t_base = time.perf_counter() - t0
                t_home = None
                if cmd is not None:
                    yaml_text = autoscale_yaml(name, c, max_replicas, d, overrides)
                    try:
                        desired, t_home = run_homeostat(
                            cmd, series, yaml_text, os.path.join(workroot, name, dl),
                            args.homeostat_arg or ())
                        res["homeostat"] = score(demand, desired, c, series.step, d, start)
                    except Exception as e:  # noqa: BLE001 - report and go on
                        log(f"  homeostat ({dl}) FAILED: {e}")
                        r["errors"][dl] = str(e)
                add_ratios(res)
                res["seconds_baselines"] = t_base
                res["seconds_homeostat"] = t_home
                r["delays"][dl] = res
                log(f"  d={dl}: " + ", ".join(
                    f"{p} under {res[p]['under_pct']:.2f}% rh x{res[p]['rh_vs_reactive']:.3f}"
                    for p in POLICIES if p in res)
                    + f" (baselines {t_base:.2f} s" + (f", homeostat {t_home:.2f} s)" if t_home else ")"))
            results[name] = r
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    total = time.perf_counter() - t_start

    names = list(results)
    nab = [n for n in names if n != common.AZURE]
    agg_all = aggregate(results, names, delay_labels)
    agg_nab = aggregate(results, nab, delay_labels) if nab else {}
    who = ("Python stand-in (homeostat_stub.py)" if args.homeostat_stub
           else (args.homeostat if cmd else "not run"))
    out = ["# Autoscaling replay", "",
           f"homeostat: {who}. c = p99(demand)/{REPLICAS_PER_P99}; evaluated on the last 40% "
           "of each series; reactive = HPA (target 0.7, tolerance 0.1, 5 min scale-down "
           "stabilization, min 1). Under-provisioned: demand > ready replicas × c.",
           f"Overrides: {overrides or 'none'}", "",
           f"## Aggregate (mean over series: all {len(names)}, and without {common.AZURE})", "",
           aggregate_table(agg_all, agg_nab, delay_labels), "",
           "Reduction = 1 - homeostat / reactive under-provisioned time, on the means.", "",
           "## Per series", "", series_table(results, delay_labels), "",
           "## Set-up and timings (wall seconds)", "", setup_table(results, delay_labels), ""]
    errors = [(f"{name} / homeostat / {dl}", err)
              for name, r in results.items() for dl, err in r["errors"].items()]
    common.write_report(out, total, errors, args, lambda: {
        "config": {"delays": delay_labels, "target": TARGET, "tolerance": TOLERANCE,
                   "stabilization_s": STABILIZATION, "min": MIN_REPLICAS,
                   "replicas_per_p99": REPLICAS_PER_P99, "overrides": overrides,
                   "homeostat": "stub" if args.homeostat_stub else (args.homeostat if cmd else None)},
        "series": results, "aggregate": agg_all, "aggregate_without_azure": agg_nab,
        "total_seconds": total})


if __name__ == "__main__":
    sys.exit(main())
