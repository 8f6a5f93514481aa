#!/usr/bin/env python3
"""Rolling-origin forecast backtest: homeostat vs statsforecast baselines (issue #8).

For every series in ``<data>/series`` (regularised onto its median-interval
grid, see common.py) the script

1. picks the seasonal period m (steps per day for series spanning >= 3 days;
   shorter traces: one hour if >= 3 hours, else one minute -- the 58-minute
   Azure trace gets m = 6 steps of 10 s) and the horizons: 30 minutes and
   2 hours in steps of the series' interval (5-minute series: 6 and 24;
   nyc_taxi at 30 minutes: 1 and 4). The Azure rps10s trace (58 minutes) is
   too short for those and uses 5 and 10 minutes (30 and 60 steps); it is
   reported in its own table and left out of the aggregate;
2. splits it: the first 60% is the training part; forecast origins lie in the
   remaining 40%. About 200 origins (fewer when the test part has fewer
   possible ones), evenly spaced with an integer stride, the last one exactly
   H_max steps before the end, the first one no earlier than the last training
   point; an origin is the last observation a forecast may use;
3. runs ``StatsForecast.cross_validation(h=H_max, n_windows, step_size,
   refit=ceil(n_windows / 10), level=[90])`` (so parameters are re-estimated
   about 10 times; between refits the fitted model is only run forward over
   the new data) for SeasonalNaive(m), AutoETS(season_length=m) and
   MSTL(season_length=[m, 7m if m is daily and the training part spans
   >= 2 weeks]). MSTL's STL passes use LOESS jumps (trend_jump = low_pass_jump
   = ceil(m / 10)): statsmodels' exact STL with a weekly period takes ~30 s per
   decomposition on the Twitter series and MSTL repeats the decomposition at
   every origin; the jumps make it ~25x faster for a negligible difference in
   the components. AutoETS gets the full m (statsforecast accepts m = 288; it
   is by far the slowest baseline: 2-17 min per series, ~54 min for all on
   one core, hence the cache); --ets-season none|N lowers it (non-seasonal:
   ~30 s for all series);
4. writes the CV cutoffs to ORIGINS.csv (column ``origin``) and the
   regularised series to SERIES.csv and runs
   ``homeostat forecast backtest --input SERIES.csv --origins ORIGINS.csv
   --horizon H_max --out FORECASTS.csv`` (``origin,step,timestamp,yhat,lo,hi``,
   step 1..H_max, lo/hi the 90% interval), timing the call.

Metrics, per series, model and horizon H (steps 1..H of every origin pooled):

* MASE = mean |y - yhat| / scale, scale = in-sample mean absolute error of the
  seasonal naive forecast with period m on the training part
  (mean over t >= m of |y[t] - y[t-m]|);
* sMAPE (%) = mean of 200 |y - yhat| / (|y| + |yhat|), a term is 0 when both
  are 0;
* coverage (%) = share of actual values with lo <= y <= hi;
* pinball = mean over points of (L_0.05(y, lo) + L_0.95(y, hi)) / 2, divided
  by the same scale, where L_q(y, f) = max(q (y - f), (q - 1) (y - f)).

Aggregate = plain mean over the series (Azure excluded). Baseline forecasts
are cached (``--cache``, default /tmp/homeostat-forecast-cache; keyed by the
series content and the CV/model settings), so a rerun only redoes the homeostat
part; ``--recompute`` ignores the cache.

Usage:
  bench/forecast/.venv/bin/python bench/forecast/backtest.py
      [--data ../shared/data] [--homeostat target/release/homeostat | --homeostat-stub]
      [--homeostat-arg=--refit-every=20 ...] [--series NAME ...] [--out-md FILE] [--out-json FILE]
      [--cache DIR] [--recompute] [--no-baselines] [--keep DIR]
"""
import argparse
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import common  # sets single-thread env vars before numpy is imported
from common import log
import numpy as np

LEVEL = 90
Q_LO, Q_HI = 0.05, 0.95
BASELINES = ("SeasonalNaive", "AutoETS", "MSTL")
HOMEOSTAT = "homeostat"
MODELS = BASELINES + (HOMEOSTAT,)
CACHE_VERSION = 1


# ---------------------------------------------------------------- set-up --

def horizons_for(series):
    """[(label, steps)] for a series: 30 min and 2 h, or 5 and 10 min for the
    short Azure trace."""
    if series.name == common.AZURE:
        pairs = (("5min", 5 * 60), ("10min", 10 * 60))
    else:
        pairs = (("30min", 30 * 60), ("2h", 2 * 3600))
    return [(label, series.steps(sec)) for label, sec in pairs]


def cv_plan(series, h_max, windows, refits):
    """Origins layout: (n_windows, step_size, refit, cutoff indices)."""
    n, n_train = len(series), series.n_train
    room = n - h_max - n_train  # cutoff indices n_train-1 .. n-1-h_max
    if room < 0:
        raise ValueError(f"{series.name}: test part shorter than the horizon")
    n_windows = max(1, min(windows, room + 1))
    step = room // (n_windows - 1) if n_windows > 1 else 1
    last = n - 1 - h_max
    cutoffs = last - step * np.arange(n_windows - 1, -1, -1)
    refit = max(1, math.ceil(n_windows / refits))
    return n_windows, step, refit, cutoffs


def mstl_seasons(series, m):
    """[daily] plus weekly when m is a day and >= 2 weeks of training exist."""
    seasons = [m]
    if m == series.steps(common.DAY) and series.n_train * series.step >= 14 * common.DAY:
        seasons.append(7 * m)
    return seasons


def ets_season(series, m, choice):
    if choice == "full":
        return m
    if choice == "none":
        return 1
    return int(choice)


def model_specs(series, m, args):
    """{name: (description for the cache key, constructor)}."""
    from statsforecast.models import MSTL, AutoETS, SeasonalNaive

    seasons = mstl_seasons(series, m)
    jump = max(1, math.ceil(m / 10))
    stl_kwargs = {"trend_jump": jump, "low_pass_jump": jump}
    m_ets = ets_season(series, m, args.ets_season)
    return {
        "SeasonalNaive": (f"SeasonalNaive(season_length={m})",
                          lambda: SeasonalNaive(season_length=m)),
        "AutoETS": (f"AutoETS(season_length={m_ets})",
                    lambda: AutoETS(season_length=m_ets)),
        "MSTL": (f"MSTL(season_length={seasons}, stl_kwargs={stl_kwargs})",
                 lambda: MSTL(season_length=seasons, stl_kwargs=stl_kwargs)),
    }


# ------------------------------------------------------------- baselines --

def run_baseline(series, name, make, h_max, n_windows, step, refit):
    """Runs one statsforecast model through cross_validation; returns
    (cutoff seconds [W], yhat [W,H], lo [W,H], hi [W,H])."""
    import pandas as pd
    from statsforecast import StatsForecast

    df = pd.DataFrame({
        "unique_id": series.name,
        "ds": pd.to_datetime(series.t, unit="s"),
        "y": series.y,
    })
    sf = StatsForecast(models=[make()], freq=f"{int(series.step)}s", n_jobs=1)
    cv = sf.cross_validation(h=h_max, df=df, n_windows=n_windows, step_size=step,
                             refit=refit, level=[LEVEL])
    cv = cv.sort_values(["cutoff", "ds"]).reset_index(drop=True)
    epoch = pd.Timestamp("1970-01-01")
    cut = ((cv["cutoff"] - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
    ds = ((cv["ds"] - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
    w = len(cv) // h_max
    if w * h_max != len(cv):
        raise RuntimeError(f"{name}: unexpected CV shape {cv.shape}")
    cut = cut.reshape(w, h_max)
    ds = ds.reshape(w, h_max)
    expected = cut[:, :1] + series.step * np.arange(1, h_max + 1)
    if not np.allclose(ds, expected):
        raise RuntimeError(f"{name}: CV timestamps are not cutoff + k*step")
    cols = [name, f"{name}-lo-{LEVEL}", f"{name}-hi-{LEVEL}"]
    arrs = [cv[c].to_numpy(dtype=float).reshape(w, h_max) for c in cols]
    return cut[:, 0], arrs[0], arrs[1], arrs[2]


def cached_baseline(series, name, spec, make, plan, h_max, args):
    """run_baseline() through the on-disk cache. Returns a dict with arrays,
    seconds (time of the run that produced them) and cached flag."""
    import statsforecast

    n_windows, step, refit, _ = plan
    key = "|".join(str(x) for x in (
        CACHE_VERSION, series.name, series.digest(), spec, h_max, n_windows, step,
        refit, LEVEL, statsforecast.__version__))
    fname = f"{series.name}.{name}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    path = os.path.join(args.cache, fname) if args.cache else None
    if path and os.path.exists(path) and not args.recompute:
        z = np.load(path)
        return {"cutoffs": z["cutoffs"], "yhat": z["yhat"], "lo": z["lo"], "hi": z["hi"],
                "seconds": float(z["seconds"]), "cached": True, "spec": spec}
    log(f"  {name}: {spec} ... (n_windows={n_windows}, step={step}, refit every {refit})")
    t0 = time.perf_counter()
    cut, yhat, lo, hi = run_baseline(series, name, make, h_max, n_windows, step, refit)
    seconds = time.perf_counter() - t0
    log(f"  {name}: {seconds:.1f} s")
    if path:
        os.makedirs(args.cache, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, cutoffs=cut, yhat=yhat, lo=lo, hi=hi, seconds=seconds)
        os.replace(tmp, path)
    return {"cutoffs": cut, "yhat": yhat, "lo": lo, "hi": hi, "seconds": seconds,
            "cached": False, "spec": spec}


# -------------------------------------------------------------- homeostat --

def write_origins(path, cutoff_seconds):
    with open(path, "w") as f:
        f.write("origin\n")
        for c in cutoff_seconds:
            f.write(common.format_ts(c) + "\n")


def read_forecasts(path, series, cutoff_seconds, h_max):
    """Parses FORECASTS.csv into yhat/lo/hi arrays [W, H_max]; every
    (origin, step) must be present and timestamp = origin + step * interval."""
    cols = common.read_csv_columns(path, ["origin", "step", "timestamp", "yhat", "lo", "hi"])
    row_of = {round(c): i for i, c in enumerate(cutoff_seconds)}
    w = len(cutoff_seconds)
    out = {k: np.full((w, h_max), np.nan) for k in ("yhat", "lo", "hi")}
    bad_ts = 0
    for origin, step, ts, yhat, lo, hi in zip(cols["origin"], cols["step"], cols["timestamp"],
                                              cols["yhat"], cols["lo"], cols["hi"]):
        i = row_of.get(round(common.parse_ts(origin)))
        if i is None:
            raise ValueError(f"{path}: origin {origin.strip()} is not in ORIGINS.csv")
        k = int(step)
        if not 1 <= k <= h_max:
            continue  # steps beyond the horizon are ignored
        if abs(common.parse_ts(ts) - (cutoff_seconds[i] + k * series.step)) > 0.5:
            bad_ts += 1
        out["yhat"][i, k - 1] = float(yhat)
        out["lo"][i, k - 1] = float(lo)
        out["hi"][i, k - 1] = float(hi)
    missing = int(np.isnan(out["yhat"]).sum())
    if missing:
        raise ValueError(f"{path}: {missing} of {w * h_max} (origin, step) forecasts missing")
    if bad_ts:
        raise ValueError(f"{path}: {bad_ts} rows whose timestamp is not origin + step * interval")
    return out


def run_homeostat(cmd, series, cutoff_seconds, h_max, workdir, extra=()):
    """Writes SERIES.csv / ORIGINS.csv, runs the CLI, parses FORECASTS.csv."""
    os.makedirs(workdir, exist_ok=True)
    series_csv = os.path.join(workdir, "SERIES.csv")
    origins_csv = os.path.join(workdir, "ORIGINS.csv")
    out_csv = os.path.join(workdir, "FORECASTS.csv")
    series.write_csv(series_csv)
    write_origins(origins_csv, cutoff_seconds)
    if os.path.exists(out_csv):
        os.remove(out_csv)
    argv = cmd + ["forecast", "backtest", "--input", series_csv, "--origins", origins_csv,
                  "--horizon", str(h_max), "--out", out_csv] + list(extra)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    if not os.path.exists(out_csv):
        raise RuntimeError(f"{' '.join(argv)} wrote no {out_csv}")
    fc = read_forecasts(out_csv, series, cutoff_seconds, h_max)
    fc["seconds"] = seconds
    return fc


# ---------------------------------------------------------------- metrics --

def actuals(series, cutoff_idx, h_max):
    """Y[w, k-1] = y[cutoff + k]."""
    return series.y[cutoff_idx[:, None] + np.arange(1, h_max + 1)[None, :]]


def pinball(y, f, q):
    d = y - f
    return np.maximum(q * d, (q - 1) * d)


def metrics(y, yhat, lo, hi, scale):
    """MASE, sMAPE %, coverage %, scaled pinball of pooled points."""
    err = np.abs(y - yhat)
    den = np.abs(y) + np.abs(yhat)
    smape = np.where(den > 0, 200.0 * err / np.where(den > 0, den, 1.0), 0.0)
    cover = (lo <= y) & (y <= hi)
    pin = (pinball(y, lo, Q_LO) + pinball(y, hi, Q_HI)) / 2
    return {
        "mase": float(err.mean() / scale),
        "smape": float(smape.mean()),
        "coverage": float(100.0 * cover.mean()),
        "pinball": float(pin.mean() / scale),
    }


NAN_METRICS = {"mase": float("nan"), "smape": float("nan"),
               "coverage": float("nan"), "pinball": float("nan")}


# ------------------------------------------------------------------ report --

def series_table(results, names, labels):
    """One row per (series, model); columns per horizon: MASE, sMAPE, cover, pinball."""
    header = ["series", "model"]
    for lab in labels:
        header += [f"MASE {lab}", f"sMAPE% {lab}", f"cover% {lab}", f"pinball {lab}"]
    rows = []
    for name in names:
        r = results[name]
        for model in MODELS:
            if model not in r["models"]:
                continue
            row = [name, model]
            for lab in labels:
                mt = r["models"][model].get(lab, NAN_METRICS)
                row += [common.fmt(mt["mase"], 3), common.fmt(mt["smape"], 1),
                        common.fmt(mt["coverage"], 1), common.fmt(mt["pinball"], 3)]
            rows.append(row)
    return common.markdown_table(header, rows)


def aggregate(results, names, labels):
    """Mean over series of every metric, per model and horizon (a model
    missing on some series gets the mean over the series it has, noted by n)."""
    agg = {}
    for model in MODELS:
        agg[model] = {}
        for lab in labels:
            vals = {k: [] for k in NAN_METRICS}
            for name in names:
                mt = results[name]["models"].get(model, {}).get(lab)
                if mt is None or not math.isfinite(mt["mase"]):
                    continue
                for k in vals:
                    vals[k].append(mt[k])
            agg[model][lab] = {k: (float(np.mean(v)) if v else float("nan")) for k, v in vals.items()}
            agg[model][lab]["n_series"] = len(vals["mase"])
    return agg


def aggregate_table(agg, labels):
    header = ["model"]
    for lab in labels:
        header += [f"MASE {lab}", f"sMAPE% {lab}", f"cover% {lab}", f"pinball {lab}"]
    header.append("series")
    rows = []
    for model in MODELS:
        row = [model]
        for lab in labels:
            mt = agg[model][lab]
            row += [common.fmt(mt["mase"], 3), common.fmt(mt["smape"], 1),
                    common.fmt(mt["coverage"], 1), common.fmt(mt["pinball"], 3)]
        row.append(str(agg[model][labels[0]]["n_series"]))
        rows.append(row)
    return common.markdown_table(header, rows)


def timing_table(results, names):
    header = ["series", "points", "m", "horizons (steps)", "origins", "stride", "refit every"] + \
             [f"{m} s" for m in MODELS]
    rows = []
    for name in names:
        r = results[name]
        row = [name, str(r["n"]), str(r["m"]),
               ", ".join(f"{lab}={h}" for lab, h in r["horizons"]),
               str(r["n_windows"]), str(r["step_size"]), str(r["refit"])]
        for model in MODELS:
            t = r["seconds"].get(model)
            cell = "n/a" if t is None else f"{t:.2f}"
            if model in r.get("cached", ()):
                cell += " (cached)"
            row.append(cell)
        rows.append(row)
    return common.markdown_table(header, rows)


# -------------------------------------------------------------------- main --

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=common.DEFAULT_DATA,
                    help="shared data directory holding series/ (default: %(default)s)")
    ap.add_argument("--homeostat", default=common.DEFAULT_HOMEOSTAT,
                    help="homeostat binary (default: %(default)s)")
    ap.add_argument("--homeostat-stub", action="store_true",
                    help="use the Python stand-in (homeostat_stub.py: seasonal naive with "
                         "empirical intervals) instead of the binary")
    ap.add_argument("--homeostat-arg", action="append", metavar="ARG",
                    help="extra argument appended to the homeostat call, e.g. "
                         "--homeostat-arg=--refit-every=20; repeatable")
    ap.add_argument("--no-homeostat", action="store_true", help="baselines only")
    ap.add_argument("--no-baselines", action="store_true",
                    help="homeostat only (origins are computed the same way)")
    ap.add_argument("--series", action="append",
                    help="only this series (file name without .csv); repeatable")
    ap.add_argument("--windows", type=int, default=200, help="target number of origins (200)")
    ap.add_argument("--refits", type=int, default=10,
                    help="parameters are re-estimated about this many times (10)")
    ap.add_argument("--ets-season", default="full",
                    help="AutoETS season_length: full (= m), none (1) or an integer")
    ap.add_argument("--cache", default=common.DEFAULT_CACHE,
                    help="baseline cache directory, '' to disable (default: %(default)s)")
    ap.add_argument("--recompute", action="store_true", help="ignore cached baselines")
    ap.add_argument("--keep", help="keep SERIES/ORIGINS/FORECASTS files under this directory")
    ap.add_argument("--out-md", help="write the Markdown report here")
    ap.add_argument("--out-json", help="write all numbers as JSON here")
    args = ap.parse_args()

    series_dir = common.series_dir_or_skip(args.data)
    cmd = None if args.no_homeostat else common.homeostat_command(args)
    entries = common.list_series(series_dir, args.series)
    workroot = args.keep or tempfile.mkdtemp(prefix="homeostat-backtest-")

    results = {}
    t_start = time.perf_counter()
    try:
        for idx, (name, path) in enumerate(entries, 1):
            series = common.Series(name, path)
            m = series.season()
            horizons = horizons_for(series)
            h_max = max(h for _, h in horizons)
            plan = cv_plan(series, h_max, args.windows, args.refits)
            n_windows, step, refit, cutoff_idx = plan
            cutoff_seconds = series.t[cutoff_idx]
            log(f"[{idx}/{len(entries)}] {name}: {len(series)} points "
                f"({series.n_filled} filled), step {series.step:g} s, m={m}, "
                f"horizons {horizons}, {n_windows} origins every {step} steps")
            scale = common.seasonal_naive_scale(series.y[:series.n_train], m)
            y_true = actuals(series, cutoff_idx, h_max)
            r = {"n": len(series), "n_filled": series.n_filled, "step_seconds": series.step,
                 "m": m, "horizons": horizons, "n_windows": n_windows, "step_size": step,
                 "refit": refit, "scale": scale, "models": {}, "seconds": {},
                 "cached": [], "specs": {}, "errors": {},
                 "first_origin": common.format_ts(cutoff_seconds[0]),
                 "last_origin": common.format_ts(cutoff_seconds[-1])}
            forecasts = {}
            if not args.no_baselines:
                specs = model_specs(series, m, args)
                for model in BASELINES:
                    spec, make = specs[model]
                    r["specs"][model] = spec
                    try:
                        fc = cached_baseline(series, model, spec, make, plan, h_max, args)
                    except Exception as e:  # noqa: BLE001 - report and go on
                        log(f"  {model} FAILED: {e}")
                        r["errors"][model] = str(e)
                        continue
                    if not np.allclose(fc["cutoffs"], cutoff_seconds):
                        raise RuntimeError(f"{model}: CV cutoffs differ from the planned origins")
                    forecasts[model] = fc
                    r["seconds"][model] = fc["seconds"]
                    if fc["cached"]:
                        r["cached"].append(model)
            if cmd is not None:
                try:
                    fc = run_homeostat(cmd, series, cutoff_seconds, h_max,
                                       os.path.join(workroot, name), args.homeostat_arg or ())
                    forecasts[HOMEOSTAT] = fc
                    r["seconds"][HOMEOSTAT] = fc["seconds"]
                    log(f"  homeostat: {fc['seconds']:.2f} s")
                except Exception as e:  # noqa: BLE001
                    log(f"  homeostat FAILED: {e}")
                    r["errors"][HOMEOSTAT] = str(e)
            for model, fc in forecasts.items():
                r["models"][model] = {}
                for lab, h in horizons:
                    r["models"][model][lab] = metrics(
                        y_true[:, :h], fc["yhat"][:, :h], fc["lo"][:, :h], fc["hi"][:, :h], scale)
            for model in r["errors"]:
                r["models"][model] = {lab: dict(NAN_METRICS) for lab, _ in horizons}
            results[name] = r
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    total = time.perf_counter() - t_start

    main_names = [n for n in results if n != common.AZURE]
    short_names = [n for n in results if n == common.AZURE]
    out = ["# Forecast backtest", "",
           f"homeostat: {'Python stand-in (homeostat_stub.py)' if args.homeostat_stub else (args.homeostat if cmd else 'not run')}",
           f"Intervals: {LEVEL}%; MASE and pinball scaled by the in-sample seasonal-naive MAE "
           "(period m) of the first 60%; origins in the last 40%.", ""]
    report = {"config": {"windows": args.windows, "refits": args.refits, "level": LEVEL,
                         "ets_season": args.ets_season, "train_fraction": common.TRAIN_FRACTION,
                         "homeostat": "stub" if args.homeostat_stub else (args.homeostat if cmd else None)},
              "series": results, "total_seconds": total}
    if main_names:
        labels = [lab for lab, _ in results[main_names[0]]["horizons"]]
        agg = aggregate(results, main_names, labels)
        report["aggregate"] = agg
        out += [f"## Aggregate (mean over {len(main_names)} series; "
                f"{common.AZURE} excluded, see below)", "", aggregate_table(agg, labels), "",
                "## Per series", "", series_table(results, main_names, labels), ""]
    if short_names:
        labels = [lab for lab, _ in results[short_names[0]]["horizons"]]
        out += [f"## {common.AZURE} (58 min at 10 s: horizons 5 and 10 min, m = "
                f"{results[short_names[0]]['m']}; not in the aggregate)", "",
                series_table(results, short_names, labels), ""]
    out += ["## Set-up and timings (wall seconds; cached = time of the run that filled the cache)",
            "", timing_table(results, list(results)), ""]
    errors = [(f"{name} / {model}", err)
              for name, r in results.items() for model, err in r["errors"].items()]
    common.write_report(out, total, errors, args, lambda: report)


if __name__ == "__main__":
    sys.exit(main())
