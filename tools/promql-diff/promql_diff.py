#!/usr/bin/env python3
"""Differential test of homeostat's PromQL engine against a real Prometheus.

Generates a seeded data set (counters with resets and gaps, gauges with NaNs,
classic histograms, short-lived and sparse series), writes it both as an
OpenMetrics file (turned into TSDB blocks by `promtool tsdb
create-blocks-from openmetrics` and served by a private `prometheus`) and as a
promqltest `load` block (read by homeostat's `promql_eval` example). Then runs
every query of queries.txt plus N random queries as instant queries at several
times and as range queries over several (start, end, step) and compares the
two answers: same series, same timestamps, values equal within 1e-6 relative
(NaN equals NaN), same error-or-not, same order for sort/topk/bottomk.

Known differences that are not counted: parse error texts (the parser crate's
words differ); which pair of series a "found duplicate series" error names,
and ties broken by topk/bottomk (or sort) after a subquery or in range
queries, because there Prometheus itself iterates a Go map and is not
deterministic from one run to the next.

Needs `prometheus` and `promtool` 2.42 (Debian's `prometheus` package) on
PATH. Usage, from the workspace root:

    cargo build --example promql_eval
    tools/promql-diff/promql_diff.py [--random N] [--seed S]

Prints one line per difference and ends with `N passed, N failed`; exits 1 on
any difference.
"""

import argparse
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STEP = 15
N = 241  # samples per series: 0..3600s
INSTANT_TIMES = [0, 7, 15, 100, 299, 1000, 1799, 1830, 2100, 3000, 3600, 3700, 3901]
RANGES = [(0, 3600, 60), (7, 3907, 45), (1000, 2000, 15), (-300, 600, 100), (1799, 1801, 1), (3500, 4200, 33)]


def gen_data(seed):
    rnd = random.Random(seed)
    series = {}

    def add(name, labels, vals):
        series[tuple(sorted([("__name__", name)] + list(labels.items())))] = vals

    for inst in ["i1", "i2", "i3"]:
        for code in ["200", "500"]:
            v, vals = 0.0, []
            for _ in range(N):
                if rnd.random() < 0.03:
                    v = rnd.random() * 3  # counter reset
                v += rnd.choice([0, 1, 2, 5, 10]) * (3 if code == "200" else 1)
                vals.append(None if rnd.random() < 0.08 else v)
            add("http_requests_total", {"job": "api", "instance": inst, "code": code}, vals)
    for host in "abc":
        for rack in ["r1", "r2"]:
            vals = []
            for _ in range(N):
                x = round(rnd.gauss(50, 20), 2)
                if rnd.random() < 0.01:
                    x = float("nan")
                vals.append(None if rnd.random() < 0.05 else x)
            add("cpu_temp", {"host": host, "rack": rack}, vals)
    les = ["0.1", "0.5", "1", "+Inf"]
    for inst in ["i1", "i2"]:
        c, vals = [0, 0, 0, 0], {le: [] for le in les}
        for _ in range(N):
            for k in range(4):
                inc = rnd.randint(0, 5)
                for j in range(k, 4):
                    c[j] += inc
            for k, le in enumerate(les):
                vals[le].append(float(c[k]))
        for le, v in vals.items():
            add("req_dur_bucket", {"job": "api", "instance": inst, "le": le}, v)
    for job, insts in [("api", ["i1", "i2", "i3"]), ("db", ["d1", "d2"])]:
        for inst in insts:
            add("up", {"job": job, "instance": inst}, [float(rnd.random() < 0.9) for _ in range(N)])
    add("short_lived", {"job": "batch"}, [float(i) if i <= 120 else None for i in range(N)])
    add("sparse", {"job": "batch"}, [float(i * 3) if i % 20 == 0 else None for i in range(N)])
    add("ts_seconds", {"kind": "epoch"}, [float(1_600_000_000 + i * 86400 * 7) for i in range(N)])
    return series


def esc(s):
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fmtv(x):
    return "NaN" if math.isnan(x) else repr(x)


def write_data(series, om_path, load_path):
    om = []
    for k, vals in sorted(series.items(), key=lambda kv: dict(kv[0])["__name__"]):
        name = dict(k)["__name__"]
        lab = ",".join(f'{a}="{esc(b)}"' for a, b in k if a != "__name__")
        om += [f"{name}{{{lab}}} {fmtv(x)} {i * STEP}" for i, x in enumerate(vals) if x is not None]
    with open(om_path, "w") as f:
        f.write("\n".join(om + ["# EOF"]) + "\n")
    lines = [f"load {STEP}s"]
    for k, vals in series.items():
        lab = ",".join(f'{a}="{esc(b)}"' for a, b in k)
        lines.append(f"  {{{lab}}} " + " ".join("_" if x is None else fmtv(x) for x in vals))
    with open(load_path, "w") as f:
        f.write("\n".join(lines) + "\n")


def random_query(rnd, d=0):
    vs = ["http_requests_total", "cpu_temp", "up", "req_dur_bucket", "sparse", "short_lived",
          'http_requests_total{code="500"}', 'cpu_temp{rack="r1"}', 'up{job="api"}', '{__name__=~"up|cpu_temp"}']
    counters = ["http_requests_total", "req_dur_bucket", "sparse"]

    def dur():
        return rnd.choice(["30s", "1m", "2m", "5m", "10m", "47s", "90s"])

    def mod():
        r = rnd.random()
        if r < 0.15:
            return " offset " + rnd.choice(["1m", "-2m", "30s", "5m"])
        if r < 0.25:
            return " @ " + rnd.choice(["600", "1800", "2000.5", "start()", "end()"])
        return ""

    def sub(d):
        return random_query(rnd, d + 1)

    r = rnd.random()
    if d >= 3 or r < 0.25:
        return rnd.choice(vs) + mod()
    if r < 0.40:
        f = rnd.choice(["rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
                        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
                        "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
                        "quantile_over_time", "holt_winters", "predict_linear", "absent_over_time"])
        pre = "0.7, " if f == "quantile_over_time" else ""
        post = {"holt_winters": ", 0.4, 0.6", "predict_linear": ", 120"}.get(f, "")
        if rnd.random() < 0.25:
            step = rnd.choice(["", "15s", "1m", "20s"])
            return f"{f}({pre}({sub(d)})[{dur()}:{step}]{mod()}{post})"
        sel = rnd.choice(counters if f in ("rate", "irate", "increase") else vs)
        return f"{f}({pre}{sel}[{dur()}]{mod()}{post})"
    if r < 0.55:
        op = rnd.choice(["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"])
        g = rnd.choice(["", " by (instance)", " without (job)", " by (job, code)", " by (le)", " without ()"])
        return f"{op}{g} ({sub(d)})"
    if r < 0.62:
        return f"quantile({rnd.choice(['2', '1', '0.3', '0.9'])}, {sub(d)})"
    if r < 0.78:
        op = rnd.choice(["+", "-", "*", "/", "%", "^", ">", "<", "==", "!=", ">=", "<=", "> bool", "< bool",
                         "and", "or", "unless", "atan2"])
        m = rnd.choice(["", " on(instance)", " ignoring(code)", " on(job)", " on()", " ignoring(le)"])
        if op in ("and", "or", "unless"):
            return f"({sub(d)}) {op}{m} ({sub(d)})"
        if rnd.random() < 0.4:
            sc = rnd.choice(["2", "0.5", "-1", "time()", 'scalar(up{instance="i1"})'])
            return f"({sub(d)}) {op} {sc}"
        g = rnd.choice(["", "", " group_left()", " group_right()", " group_left(code)"])
        if not m and g:
            m = " on(instance)"
        return f"({sub(d)}) {op}{m}{g} ({sub(d)})"
    if r < 0.92:
        f = rnd.choice(["abs", "ceil", "floor", "sqrt", "ln", "exp", "sgn", "-", "timestamp", "absent",
                        "clamp_max", "clamp_min", "round", "hour", "day_of_week"])
        if f == "-":
            return f"-({sub(d)})"
        if f in ("clamp_max", "clamp_min"):
            return f"{f}({sub(d)}, 40)"
        if f == "round":
            return f"round({sub(d)}, 3)"
        return f"{f}({sub(d)})"
    if r < 0.93:
        arg = rnd.choice(["rate(req_dur_bucket[5m])", "sum by (le) (rate(req_dur_bucket[2m]))", "req_dur_bucket"])
        return f"histogram_quantile({rnd.choice(['0.5', '0.9', '1'])}, {arg})"
    r2 = rnd.random()
    if r2 < 0.2:
        return f'label_replace({sub(d)}, "foo", "$1", "instance", "i(.*)")'
    if r2 < 0.35:
        return f'label_join({sub(d)}, "j", "-", "instance", "job")'
    if r2 < 0.5:
        return f'count_values("cv", round({sub(d)}))'
    if r2 < 0.6:
        return f"vector(scalar({sub(d)}))"
    if r2 < 0.7:
        return f"clamp({sub(d)}, 30, 60)"
    if r2 < 0.8:
        f = rnd.choice(["year", "month", "days_in_month", "day_of_year", "minute"])
        return f"{f}(timestamp({sub(d)}))"
    if r2 < 0.9:
        return f"absent({sub(d)})"
    return f"({sub(d)}) * scalar({sub(d)})"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prom_get(port, path, params):
    url = f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def close(a, b):
    a, b = float(a), float(b)
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= 1e-6 * max(abs(a), abs(b))


def compare(prom, ours, ordered):
    """None when equal, else a short description of the first difference."""
    if prom.get("status") != "success":
        if "error" not in ours:
            return f"Prometheus fails ({prom.get('error')}), homeostat does not"
        pe = prom.get("error", "")
        dup = "found duplicate series for the match group"
        if "parse error" in pe or (pe.startswith(dup) and ours["error"].startswith(dup)):
            return None
        if pe != ours["error"]:
            return f"error texts differ: {pe!r} vs {ours['error']!r}"
        return None
    if "error" in ours:
        return f"homeostat fails: {ours['error']}"
    p, o = prom["data"], ours
    if p["resultType"] != o["resultType"]:
        return f"result types differ: {p['resultType']} vs {o['resultType']}"
    if p["resultType"] in ("scalar", "string"):
        ok = close(p["result"][1], o["result"][1]) if p["resultType"] == "scalar" else p["result"][1] == o["result"][1]
        return None if ok else f"{p['result']} vs {o['result']}"
    key = lambda s: json.dumps(s["metric"], sort_keys=True)
    if p["resultType"] == "vector":
        pk, ok_ = [key(s) for s in p["result"]], [key(s) for s in o["result"]]
        if (pk != ok_) if ordered else (sorted(pk) != sorted(ok_)):
            return f"series differ: {pk[:3]} vs {ok_[:3]}"
        ov = {key(s): s["value"][1] for s in o["result"]}
        for s in p["result"]:
            if not close(s["value"][1], ov[key(s)]):
                return f"{key(s)}: {s['value'][1]} vs {ov[key(s)]}"
        return None
    pm, om = {key(s): s["values"] for s in p["result"]}, {key(s): s["values"] for s in o["result"]}
    if set(pm) != set(om):
        return f"series differ: only Prometheus {sorted(set(pm) - set(om))[:2]}, only homeostat {sorted(set(om) - set(pm))[:2]}"
    for k, pv in pm.items():
        ov = om[k]
        if len(pv) != len(ov):
            return f"{k}: {len(pv)} vs {len(ov)} points"
        for a, b in zip(pv, ov):
            if abs(float(a[0]) - float(b[0])) > 1e-9 or not close(a[1], b[1]):
                return f"{k}: {a} vs {b}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--random", type=int, default=200, help="random queries to add (default 200)")
    ap.add_argument("--seed", type=int, default=1, help="seed for data and random queries")
    ap.add_argument("--eval-bin", default=os.path.join(ROOT, "target/debug/examples/promql_eval"))
    args = ap.parse_args()
    for tool in ("prometheus", "promtool"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not found")
            return 0
    if not os.path.exists(args.eval_bin):
        print(f"{args.eval_bin} missing: run `cargo build --example promql_eval` first", file=sys.stderr)
        return 2

    rnd = random.Random(args.seed)
    with open(os.path.join(HERE, "queries.txt")) as f:
        fixed = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    rand = set()
    while len(rand) < args.random:
        rand.add(random_query(rnd))
    queries = fixed + sorted(rand)

    work = tempfile.mkdtemp(prefix="promql-diff-")
    proc = None
    try:
        om, load = os.path.join(work, "data.om"), os.path.join(work, "load.test")
        write_data(gen_data(args.seed), om, load)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", om, os.path.join(work, "tsdb")],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(work, "prom.yml"), "w") as f:
            f.write("global:\n  evaluation_interval: 1m\n")
        port = free_port()
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={work}/prom.yml", f"--storage.tsdb.path={work}/tsdb",
             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            try:
                if prom_get(port, "/api/v1/query", {"query": "count(up)", "time": 100}).get("data", {}).get("result"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            print("prometheus did not become ready", file=sys.stderr)
            return 2

        jobs = []
        for q in queries:
            ordered = q.startswith(("sort", "topk", "bottomk"))
            for t in INSTANT_TIMES:
                jobs.append((f"I {t * 1000} {q}", ("/api/v1/query", {"query": q, "time": t}), ordered, q, f"@{t}s"))
            if "topk" in q or "bottomk" in q:
                continue  # ties: Prometheus itself is not deterministic in range queries
            for s, e, st in RANGES:
                jobs.append((f"R {s * 1000} {e * 1000} {st * 1000} {q}",
                             ("/api/v1/query_range", {"query": q, "start": s, "end": e, "step": st}),
                             False, q, f"[{s}s..{e}s/{st}s]"))
        ours = subprocess.run([args.eval_bin, load], input="\n".join(j[0] for j in jobs) + "\n",
                              capture_output=True, text=True, check=True).stdout.splitlines()
        passed = failed = 0
        for (_, (path, params), ordered, q, where), o in zip(jobs, ours):
            diff = compare(prom_get(port, path, params), json.loads(o), ordered)
            if diff is None:
                passed += 1
            else:
                failed += 1
                print(f"{where} {q}: {diff}")
        print(f"{passed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
