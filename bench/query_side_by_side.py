#!/usr/bin/env python3
"""Side-by-side query latency: homeostat vs Prometheus 2.42 in one run.

Both scrape the same data every 5 s: ../shared/bench/target.py (20 targets x
5,000 series = 100k series) plus 4 histogram targets served by this script
(10 handlers x 12 buckets each). After a warm-up long enough to fill 5-minute
rate windows, each typical alerting query is sent to both HTTP APIs as an
instant query at the same timestamp, alternating, N times; the median latency
of each and the ratio are printed as a Markdown table, with the result sizes
so it is visible both answered the same thing.

Usage:
  cargo build --release -p homeostat
  python3 bench/query_side_by_side.py [--warmup 330] [--runs 15]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ensure_free, stop_all, wait_http  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUERIES = [
    ("sum by (job) (rate(x[5m]))", 'sum by (job) (rate(api_http_requests_total[5m]))'),
    ("count by (__name__) over 20k series", 'count by (__name__) ({__name__=~"(api|auth)_.*"})'),
    ("histogram_quantile p95", 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))'),
    ("group_left join", 'api_queue_depth * on (instance) group_left (job) up'),
    ("topk", 'topk(5, api_queue_depth)'),
]
BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]


def hist_handler():
    start = time.time()

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            t = time.time() - start
            lines = ["# TYPE http_request_duration_seconds histogram"]
            for h in range(10):
                total = 0.0
                for i, le in enumerate(BUCKETS):
                    total = t * (h + 1) * (i + 1) / len(BUCKETS)
                    lines.append(f'http_request_duration_seconds_bucket{{handler="/h{h}",le="{le}"}} {total:.3f}')
                lines.append(f'http_request_duration_seconds_count{{handler="/h{h}"}} {total:.3f}')
                lines.append(f'http_request_duration_seconds_sum{{handler="/h{h}"}} {total * 0.2:.3f}')
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    return H


def instant(base, query, ts):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": f"{ts:.3f}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = json.load(r)
    dt = time.perf_counter() - t0
    if body.get("status") != "success":
        raise SystemExit(f"{base}: {query}: {body}")
    return dt, len(body["data"]["result"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--homeostat", default="target/release/homeostat")
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--warmup", type=int, default=330)
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    target_py = os.path.join(a.shared, "bench", "target.py")
    if not os.path.exists(target_py):
        print(f"SKIP: {target_py} not found (set --shared)")
        return 0
    ensure_free(29090, 29400)
    tmp = tempfile.mkdtemp(prefix="hs-qbench-")
    targets = [f"127.0.0.1:{p}" for p in range(29101, 29121)]
    hist = [f"127.0.0.1:{p}" for p in range(29131, 29135)]
    servers = []
    for addr in hist:
        srv = ThreadingHTTPServer(("127.0.0.1", int(addr.split(":")[1])), hist_handler())
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    ctl = os.path.join(tmp, "fault.ctl")
    with open(ctl, "w") as f:
        f.write("0\n")
    jobs = ("scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: " + json.dumps(targets)
            + "\n  - job_name: hist\n    static_configs:\n      - targets: " + json.dumps(hist) + "\n")
    head = "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\n"
    with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
        f.write(head + jobs)
    with open(os.path.join(tmp, "homeostat.yaml"), "w") as f:
        f.write(head + f"web:\n  listen_address: 127.0.0.1:29400\nstate:\n  path: {tmp}/state.db\n" + jobs)
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, target_py, "--ports", "29101-29120", "--series", "5000",
                                       "--control-file", ctl, "--max-runtime", str(a.warmup + 600)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http("http://127.0.0.1:29101/metrics")
        procs.append(subprocess.Popen([a.prometheus, f"--config.file={tmp}/prometheus.yml",
                                       f"--storage.tsdb.path={tmp}/prom", "--web.listen-address=127.0.0.1:29090"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([a.homeostat, "run", "--config", f"{tmp}/homeostat.yaml"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http("http://127.0.0.1:29090/-/ready")
        wait_http("http://127.0.0.1:29400/-/ready")
        print(f"warming up {a.warmup}s ...", file=sys.stderr)
        time.sleep(a.warmup)
        ts = time.time() - 10
        prom, hs = "http://127.0.0.1:29090", "http://127.0.0.1:29400"
        for base in (prom, hs):
            _, n_up = instant(base, "up == 1", ts)
            _, n_series = instant(base, "count_over_time(api_queue_depth[5m])", ts)
            print(f"{base}: {n_up} targets up, {n_series} api_queue_depth series", file=sys.stderr)
        print(f"\n100k series (20 targets x 5,000) + 4 histogram targets, 5s scrape, {a.warmup}s of data; "
              f"instant queries at one timestamp, median of {a.runs} runs over HTTP\n")
        print("| query | Prometheus 2.42 | homeostat | ratio | series returned (P / h) |")
        print("|---|---|---|---|---|")
        for name, q in QUERIES:
            instant(prom, q, ts)
            instant(hs, q, ts)
            tp, th = [], []
            for _ in range(a.runs):
                d, np_ = instant(prom, q, ts)
                tp.append(d)
                d, nh = instant(hs, q, ts)
                th.append(d)
            mp, mh = statistics.median(tp) * 1000, statistics.median(th) * 1000
            print(f"| `{name}` | {mp:.1f} ms | {mh:.1f} ms | {mh / mp:.2f} | {np_} / {nh} |")
    finally:
        for s in servers:
            s.shutdown()
        stop_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
