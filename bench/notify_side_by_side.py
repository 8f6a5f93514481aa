#!/usr/bin/env python3
"""Side-by-side notification routing: homeostat vs Alertmanager 0.25, one run.

Both get the SAME routing tree (group_by [alertname, service], group_wait 1s,
group_interval 1s, a `severity="page"` child that continues, an inhibition
rule) with a webhook receiver each, pointing to one in-process sink that
tells them apart by path. The same alerts are POSTed to both
`/api/v2/alerts` in batches, concurrently:

  1. --silences silences (one per service 0..N-1 of the first alertname),
  2. --alerts firing alerts over --names alertnames x --services services,
  3. once every expected alert was notified by both: the same alerts
     resolved.

Reported per server: seconds from the first POST to the last firing alert
notified ("fire"), from the resolve POST to the last resolved one
("resolve"), notifications and alerts received, CPU seconds of the process
over the whole run, and peak RSS (VmHWM); then the ratios homeostat /
Alertmanager. The alerts each side notified must be the same set; the run
fails otherwise.

Usage:
  cargo build --release -p homeostat
  python3 bench/notify_side_by_side.py [--alerts 20000] [--names 50]
      [--services 40] [--batch 1000] [--silences 10]
      [--alertmanager /usr/bin/prometheus-alertmanager]
      [--homeostat target/release/homeostat]
"""
import argparse
import datetime
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Procs, cpu_seconds, ensure_free, exit_on_sigterm, resolve_binary, status_kib  # noqa: E402

AM_PORT, HS_PORT, SINK_PORT = 19893, 19894, 19895

TREE = """
  route:
    receiver: all
    group_by: [alertname, service]
    group_wait: 1s
    group_interval: 1s
    repeat_interval: 1h
    routes:
      - matchers: ['severity="page"']
        receiver: pager
        continue: true
  receivers:
    - name: all
      webhook_configs: [{{url: "http://127.0.0.1:{sink}/{who}/all", max_alerts: 0}}]
    - name: pager
      webhook_configs: [{{url: "http://127.0.0.1:{sink}/{who}/pager"}}]
  inhibit_rules:
    - source_matchers: ['alertname="Name0"', 'severity="page"', 'service=~"svc[0-4]"']
      target_matchers: ['severity="warning"']
      equal: [service]
"""


class Sink:
    """Counts what each side notified: (receiver, fingerprint labels, status)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {"am": {}, "hs": {}}  # who -> {(recv, labels, status): first time}
        self.notifications = {"am": 0, "hs": 0}

    def record(self, path, body):
        who, recv = path.strip("/").split("/", 1)
        now = time.time()
        with self.lock:
            self.notifications[who] += 1
            for a in body["alerts"]:
                key = (recv, tuple(sorted(a["labels"].items())), a["status"])
                self.seen[who].setdefault(key, now)

    def count(self, who, status):
        with self.lock:
            return sum(1 for k in self.seen[who] if k[2] == status)

    def last(self, who, status):
        with self.lock:
            return max((t for k, t in self.seen[who].items() if k[2] == status), default=0)


def serve_sink(sink):
    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("content-length", 0))
            sink.record(self.path, json.loads(self.rfile.read(n)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", SINK_PORT), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def ts(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def post(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=20000)
    ap.add_argument("--names", type=int, default=50)
    ap.add_argument("--services", type=int, default=40)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--silences", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or "")
    ap.add_argument("--homeostat", default="target/release/homeostat")
    args = ap.parse_args()
    exit_on_sigterm()
    if not args.alertmanager:
        print("SKIP: Alertmanager not found (apt-get install prometheus-alertmanager)")
        return
    hs_bin = resolve_binary(args.homeostat, "cargo build --release -p homeostat")
    ensure_free(AM_PORT, HS_PORT, SINK_PORT)
    tmp = tempfile.mkdtemp(prefix="notify-bench-")
    procs = Procs(tmp)
    sink = Sink()
    srv = serve_sink(sink)
    try:
        with open(os.path.join(tmp, "am.yml"), "w") as f:
            f.write("\n".join(line[2:] for line in TREE.format(sink=SINK_PORT, who="am").splitlines()))
        with open(os.path.join(tmp, "hs.yml"), "w") as f:
            f.write(f"web: {{listen_address: 127.0.0.1:{HS_PORT}}}\nstate: {{path: {tmp}/hs.db}}\n"
                    "scrape_configs: []\nnotify:" + TREE.format(sink=SINK_PORT, who="hs"))
        am = procs.start("alertmanager", [args.alertmanager, f"--config.file={tmp}/am.yml",
                                          f"--storage.path={tmp}/am-data", f"--web.listen-address=127.0.0.1:{AM_PORT}",
                                          "--cluster.listen-address="])
        hs = procs.start("homeostat", [hs_bin, "--log.level", "warn", "run", "--config", f"{tmp}/hs.yml"])
        procs.wait_http(f"http://127.0.0.1:{AM_PORT}/-/ready")
        procs.wait_http(f"http://127.0.0.1:{HS_PORT}/-/ready")
        servers = {"am": (am, f"http://127.0.0.1:{AM_PORT}"), "hs": (hs, f"http://127.0.0.1:{HS_PORT}")}
        cpu0 = {w: cpu_seconds(p.pid) for w, (p, _) in servers.items()}

        now = datetime.datetime.now(datetime.timezone.utc)
        end = ts(now + datetime.timedelta(hours=1))
        for s in range(args.silences):
            sil = {"matchers": [{"name": "service", "value": f"svc{s}", "isRegex": False, "isEqual": True},
                                {"name": "alertname", "value": "Name1", "isRegex": False, "isEqual": True}],
                   "startsAt": ts(now), "endsAt": end, "createdBy": "bench", "comment": "bench"}
            for _, url in servers.values():
                post(url + "/api/v2/silences", sil)

        alerts = []
        for i in range(args.alerts):
            name, svc = i % args.names, (i // args.names) % args.services
            sev = "page" if i % 10 == 0 else "warning"
            alerts.append({"labels": {"alertname": f"Name{name}", "service": f"svc{svc}", "severity": sev,
                                      "instance": f"i{i}"},
                           "annotations": {"summary": f"alert {i}"}, "startsAt": ts(now)})
        # What each side must notify: every alert not silenced and not
        # inhibited, once: pages to `pager` (the child that matches, with
        # nothing after it), the rest to `all`.
        inhibiting = {a["labels"]["service"] for a in alerts
                      if a["labels"]["alertname"] == "Name0" and a["labels"]["severity"] == "page"
                      and a["labels"]["service"] in {f"svc{k}" for k in range(5)}}

        def shown(a):
            lab = a["labels"]
            silenced = lab["alertname"] == "Name1" and int(lab["service"][3:]) < args.silences
            inhibited = lab["severity"] == "warning" and lab["service"] in inhibiting
            return not silenced and not inhibited

        expected = sum(1 for a in alerts if shown(a))

        def send_all(batch_alerts):
            def one(w):
                url = servers[w][1]
                for i in range(0, len(batch_alerts), args.batch):
                    post(url + "/api/v2/alerts", [dict(a, endsAt=end) if "endsAt" not in a else a
                                                  for a in batch_alerts[i:i + args.batch]])
            with ThreadPoolExecutor(2) as ex:
                list(ex.map(one, ["am", "hs"]))

        def wait_for(status, t0):
            deadline = t0 + args.timeout
            while time.time() < deadline:
                procs.check_alive()
                if all(sink.count(w, status) >= expected for w in servers):
                    return
                time.sleep(0.1)
            raise SystemExit(f"timed out waiting for {status}: " +
                             ", ".join(f"{w} {sink.count(w, status)}/{expected}" for w in servers))

        t_fire = time.time()
        send_all(alerts)
        wait_for("firing", t_fire)
        time.sleep(2)
        t_res = time.time()
        resolved_at = ts(datetime.datetime.now(datetime.timezone.utc))
        send_all([dict(a, endsAt=resolved_at) for a in alerts])
        wait_for("resolved", t_res)
        time.sleep(1)

        rows = {}
        for w, (p, _) in servers.items():
            rows[w] = {
                "fire": sink.last(w, "firing") - t_fire,
                "resolve": sink.last(w, "resolved") - t_res,
                "notifications": sink.notifications[w],
                "alerts": len(sink.seen[w]),
                "cpu": cpu_seconds(p.pid) - cpu0[w],
                "rss": status_kib(p.pid, "VmHWM") / 1024,
            }
        same = {k[:2] for k in sink.seen["am"]} == {k[:2] for k in sink.seen["hs"]}
        print(f"\n{args.alerts} alerts, {args.names} names x {args.services} services, {args.silences} silences; "
              f"expected {expected} (receiver, alert) pairs each way; same set notified: {same}\n")
        print("| | Alertmanager 0.25 | homeostat | ratio |")
        print("|---|---:|---:|---:|")
        for k, unit in (("fire", "s"), ("resolve", "s"), ("notifications", ""), ("alerts", ""), ("cpu", "CPU-s"),
                        ("rss", "MiB")):
            a, h = rows["am"][k], rows["hs"][k]
            ratio = f"{h / a:.2f}x" if a else "-"
            fmt = (lambda v: f"{v:.2f}") if isinstance(a, float) else str
            print(f"| {k} {unit} | {fmt(a)} | {fmt(h)} | {ratio} |")
        if not same:
            raise SystemExit("the two sides notified different alert sets")
    finally:
        procs.stop()
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
