#!/usr/bin/env python3
"""Python stand-in for the two homeostat CLI commands the benchmarks call, so
the whole pipeline (files in, files out, parsing, scoring) can be tested
before the Rust implementation exists. It is NOT a reference for quality.

  homeostat_stub.py forecast backtest --input SERIES.csv --origins ORIGINS.csv
                    --horizon H --out FORECASTS.csv
      Seasonal naive with period m (common.Series.season(): a day for series
      of >= 3 days, else an hour / a minute): yhat(T+k) = y(T + k - m*ceil(k/m)).
      The interval (--coverage, default 0.9) adds the (1 -+ coverage)/2
      empirical quantiles (5% and 95%) of the in-sample errors
      y(t) - y(t - m*ceil(k/m)) over the last 28 days (at most) before the
      origin T. --refit-every is accepted and ignored. Writes
      origin,step,timestamp,yhat,lo,hi.

  homeostat_stub.py replay --input SERIES.csv --autoscale AUTOSCALE.yaml --out DECISIONS.csv
      An HPA driven by a forecast: at each t the predicted peak is the max of
      the current demand and the seasonal-naive forecast for every grid point
      in (t, t + lead_time + interval); desired = clamp(ceil(peak /
      (target_utilization * capacity_per_replica)), min, max), with the same
      scale-down stabilization rule as the reactive baseline. Writes
      timestamp,desired_replicas.
"""
import argparse
import math
import sys

import common
from common import ceil_div
import numpy as np

QUANTILE_HISTORY = 28 * common.DAY


def forecast_backtest(args):
    series = common.Series("input", args.input)
    m = series.season()
    h = args.horizon
    origins = [common.parse_ts(s) for s in common.read_csv_columns(args.origins, ["origin"])["origin"]]
    pos = {round(t): i for i, t in enumerate(series.t)}
    hist = max(m + 1, series.steps(QUANTILE_HISTORY))
    y = series.y
    tail = (1 - args.coverage) / 2
    lags = sorted({m * math.ceil(k / m) for k in range(1, h + 1)})
    with open(args.out, "w") as f:
        f.write("origin,step,timestamp,yhat,lo,hi\n")
        for t in origins:
            c = pos.get(round(t))
            if c is None:
                raise SystemExit(f"origin {common.format_ts(t)} is not a timestamp of the input")
            band = {}
            for lag in lags:
                lo_i = max(lag, c + 1 - hist)
                err = y[lo_i:c + 1] - y[lo_i - lag:c + 1 - lag]
                band[lag] = np.quantile(err, [tail, 1 - tail]) if len(err) else np.zeros(2)
            for k in range(1, h + 1):
                lag = m * math.ceil(k / m)
                yhat = y[c + k - lag]
                lo, hi = yhat + band[lag][0], yhat + band[lag][1]
                f.write(f"{common.format_ts(t)},{k},{common.format_ts(t + k * series.step)},"
                        f"{yhat:.10g},{lo:.10g},{hi:.10g}\n")


def read_yaml(path):
    """The flat `key: value  # comment` subset of YAML that AUTOSCALE.yaml uses."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, _, val = line.partition(":")
            out[key.strip()] = val.strip().strip('"').strip("'")
    return out


def replay(args):
    series = common.Series("input", args.input)
    cfg = read_yaml(args.autoscale)
    c = float(cfg["capacity_per_replica"])
    target = float(cfg.get("target_utilization", 0.7))
    lo_r, hi_r = int(cfg.get("min", 1)), int(cfg.get("max", 10 ** 9))
    lead = common.parse_duration(cfg.get("lead_time", "0s"))
    stab = common.parse_duration(cfg.get("scale_down_stabilization", "5m"))
    m = series.season()
    y = series.y
    n = len(y)
    ahead = common.window_steps(lead, series.step)
    k_w = common.window_steps(stab, series.step)
    desired = np.zeros(n, dtype=np.int64)
    rec = np.zeros(n, dtype=np.int64)
    for i in range(n):
        peak = y[i]
        for k in range(1, ahead + 1):
            j = i + k - m * math.ceil(k / m)
            if j >= 0:
                peak = max(peak, y[j])
        r = min(hi_r, max(lo_r, ceil_div(peak, target * c)))
        rec[i] = r
        if i > 0 and r < desired[i - 1]:
            desired[i] = min(desired[i - 1], rec[max(0, i - k_w):i + 1].max())
        else:
            desired[i] = r
    with open(args.out, "w") as f:
        f.write("timestamp,desired_replicas\n")
        for t, v in zip(series.t, desired):
            f.write(f"{common.format_ts(t)},{v}\n")


def main():
    ap = argparse.ArgumentParser(description="Python stand-in for homeostat's benchmark commands")
    sub = ap.add_subparsers(dest="cmd", required=True)
    fc = sub.add_parser("forecast")
    fcs = fc.add_subparsers(dest="sub", required=True)
    bt = fcs.add_parser("backtest")
    bt.add_argument("--input", required=True)
    bt.add_argument("--origins", required=True)
    bt.add_argument("--horizon", type=int, required=True)
    bt.add_argument("--out", required=True)
    bt.add_argument("--coverage", type=float, default=0.9, help="central interval coverage")
    bt.add_argument("--refit-every", type=int, default=1, help="accepted and ignored")
    rp = sub.add_parser("replay")
    rp.add_argument("--input", required=True)
    rp.add_argument("--autoscale", required=True)
    rp.add_argument("--out", required=True)
    rp.add_argument("--details", action="store_true", help="accepted and ignored")
    args = ap.parse_args()
    if args.cmd == "forecast":
        forecast_backtest(args)
    else:
        replay(args)


if __name__ == "__main__":
    sys.exit(main())
