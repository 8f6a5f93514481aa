#!/usr/bin/env python3
"""homeostat's PostgreSQL and Redis collectors side by side with the real
prometheus-postgres-exporter and prometheus-redis-exporter (Debian packages),
in one run, against the same PostgreSQL 15 and Redis servers.

Reports, per system:
  * which of the exporter's metric families homeostat also exposes (the
    exporter's own go_/process_/promhttp_ families are left out), and
  * CPU time per scrape: the collecting process (exporter or homeostat), and
    the database server's own CPU spent answering it.

The exporters are scraped N times back to back over HTTP; homeostat runs one
collector at a time on a 1s interval for N seconds. homeostat's figure includes
writing the samples into its store; the exporters' does not include the
Prometheus that would ingest them, so the comparison favours the exporters.

Usage: bench/exporters_side_by_side.py [--rounds 30] [--homeostat target/release/homeostat]
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import benchlib  # noqa: E402

SELF_PREFIXES = ("go_", "process_", "promhttp_", "postgres_exporter_", "redis_exporter_build", "redis_exporter_scrape",
                 "redis_exporter_last_scrape_duration", "redis_exporter_last_scrape_error", "redis_exporter_scrapes")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name):
    p = shutil.which(name)
    if p:
        return p
    for v in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        c = f"/usr/lib/postgresql/{v}/bin/{name}"
        if os.path.exists(c):
            return c
    raise SystemExit(f"{name} not found: apt-get install postgresql")


def as_db_user(cmd):
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + cmd
    return cmd


def families(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            out.add(line.split()[2])
    return {f for f in out if not f.startswith(SELF_PREFIXES)}


def exporter_values(url, prefix):
    """name -> value of the exporter's label-free (or server-labelled) series
    whose name starts with prefix."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        if "{" in head and not head.split("{", 1)[1].startswith("server="):
            continue
        out[name] = float(value)
    return out


def homeostat_values(addr, job, prefix):
    q = urllib.parse.quote('{__name__=~"%s.*",job="%s"}' % (prefix, job))
    v = benchlib.get_json(f"http://{addr}/api/v1/query?query={q}")
    return {r["metric"]["__name__"]: float(r["value"][1]) for r in v["data"]["result"]}


def same(a, b):
    return a == b or (a != a and b != b) or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def homeostat_families(addr, job):
    q = urllib.parse.quote('{job="%s"}' % job)
    v = benchlib.get_json(f"http://{addr}/api/v1/series?match[]={q}")
    return {s["__name__"] for s in v["data"]} - set(benchlib_synthetic())


def benchlib_synthetic():
    return ["up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
            "scrape_series_added"]


def children_cpu(root_pid):
    """CPU seconds of a process and all its descendants (PostgreSQL forks a
    backend per connection)."""
    total = 0.0
    pids = [root_pid]
    seen = set()
    while pids:
        pid = pids.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            total += benchlib.cpu_seconds(pid)
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return total


def retire(procs, *ps):
    """Stops processes on purpose, so check_alive() does not report them."""
    for p in ps:
        p.terminate()
        p.wait()
    procs.items = [it for it in procs.items if it[1] not in ps]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--homeostat", default="target/release/homeostat")
    args = ap.parse_args()
    benchlib.exit_on_sigterm()
    work = tempfile.mkdtemp(prefix="exporters-bench-")
    os.chmod(work, 0o777)
    procs = benchlib.Procs(work)
    try:
        run(args, work, procs)
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(args, work, procs):
    # PostgreSQL 15 with some real activity, and Redis with keys.
    data = os.path.join(work, "pg")
    if os.geteuid() == 0:
        subprocess.run(["chown", "postgres:postgres", work], check=True)
    subprocess.run(as_db_user([pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL)
    pg_port = free_port()
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"\nlisten_addresses='127.0.0.1'\nport={pg_port}\nunix_socket_directories='{work}'\nfsync=off\n")
    pg = procs.start("postgres", as_db_user([pg_bin("postgres"), "-D", data]))
    deadline = time.time() + 30
    while subprocess.run([pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(pg_port)],
                         stdout=subprocess.DEVNULL).returncode != 0:
        procs.check_alive()
        if time.time() > deadline:
            raise SystemExit("postgres did not start")
        time.sleep(0.2)
    psql = [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-q", "-c"]
    for db in ["app", "analytics"]:
        subprocess.run(psql + [f"CREATE DATABASE {db}"], check=True)
    subprocess.run(psql + ["CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100000) g"], check=True)
    redis_port = free_port()
    procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"])
    time.sleep(0.5)
    for db in range(3):
        subprocess.run(["redis-cli", "-p", str(redis_port), "-n", str(db), "EVAL",
                        "for i = 1, 10000 do redis.call('SET', 'k' .. i, 'v') end", "0"],
                       check=True, stdout=subprocess.DEVNULL)

    pg_dsn = f"postgresql://postgres@127.0.0.1:{pg_port}/postgres?sslmode=disable"
    os.environ["DATA_SOURCE_NAME"] = pg_dsn  # postgres_exporter reads its DSN from the environment
    pge_port, re_port = free_port(), free_port()
    pge = procs.start("postgres_exporter", ["prometheus-postgres-exporter", f"--web.listen-address=127.0.0.1:{pge_port}"])
    ree = procs.start("redis_exporter", ["prometheus-redis-exporter", f"--redis.addr=redis://127.0.0.1:{redis_port}",
                                         f"--web.listen-address=127.0.0.1:{re_port}"])
    procs.wait_http(f"http://127.0.0.1:{pge_port}/metrics")
    procs.wait_http(f"http://127.0.0.1:{re_port}/metrics")

    sections = {
        "postgres": f"""  postgres:
    scrape_interval: 1s
    scrape_timeout: 1s
    servers:
      - {{name: pg, dsn: "postgres://postgres@127.0.0.1:{pg_port}/postgres", role: primary}}
""",
        "redis": f"""  redis:
    scrape_interval: 1s
    scrape_timeout: 1s
    servers:
      - {{name: redis, url: "redis://127.0.0.1:{redis_port}"}}
""",
    }
    results = {}
    # The exporters: N back-to-back scrapes each.
    for name, proc, port in [("postgres", pge, pge_port), ("redis", ree, re_port)]:
        url = f"http://127.0.0.1:{port}/metrics"
        fams = families(url)
        # Values that do not move during the run, to compare with homeostat's.
        static_prefix = {"postgres": "pg_settings_", "redis": "redis_config_"}[name]
        exporter_static = exporter_values(url, static_prefix)
        urllib.request.urlopen(url).read()  # warm up connections
        c0, d0 = benchlib.cpu_seconds(proc.pid), children_cpu(pg.pid)
        for _ in range(args.rounds):
            urllib.request.urlopen(url, timeout=10).read()
        c1, d1 = benchlib.cpu_seconds(proc.pid), children_cpu(pg.pid)
        results[name] = {"exporter_families": fams, "exporter_static": (static_prefix, exporter_static),
                         "exporter_cpu": (c1 - c0) / args.rounds,
                         "exporter_pg_cpu": (d1 - d0) / args.rounds}
    # Stop the exporters so they add nothing to the database's CPU below.
    retire(procs, pge, ree)
    # homeostat, one collector at a time, one round per second.
    for name, section in sections.items():
        h_addr = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(work, f"homeostat-{name}.yaml")
        with open(cfg, "w") as f:
            f.write(f"web:\n  listen_address: {h_addr}\nstate:\n  path: {work}/state-{name}.db\ncollectors:\n{section}")
        h = procs.start(f"homeostat-{name}", [args.homeostat, "run", "--config", cfg])
        procs.wait_http(f"http://{h_addr}/-/ready")
        time.sleep(3)
        c0, d0, t0 = benchlib.cpu_seconds(h.pid), children_cpu(pg.pid), time.time()
        time.sleep(args.rounds)
        c1, d1, t1 = benchlib.cpu_seconds(h.pid), children_cpu(pg.pid), time.time()
        rounds = t1 - t0
        results[name]["homeostat_families"] = homeostat_families(h_addr, name)
        results[name]["homeostat_static"] = homeostat_values(h_addr, name, results[name]["exporter_static"][0])
        results[name]["homeostat_cpu"] = (c1 - c0) / rounds
        results[name]["homeostat_pg_cpu"] = (d1 - d0) / rounds
        retire(procs, h)
    print(f"rounds: {args.rounds} per side")
    for name in ["postgres", "redis"]:
        r = results[name]
        ef, hf = r["exporter_families"], r["homeostat_families"]
        both = sorted(ef & hf)
        missing = sorted(ef - hf)
        extra = sorted(hf - ef)
        print(f"\n## {name}: {len(both)} of {len(ef)} exporter families also in homeostat")
        print(f"CPU per scrape: exporter {r['exporter_cpu'] * 1000:.2f} ms, homeostat {r['homeostat_cpu'] * 1000:.2f} ms "
              f"(ratio {r['homeostat_cpu'] / max(r['exporter_cpu'], 1e-9):.2f})")
        if name == "postgres":
            print(f"PostgreSQL server CPU per scrape: exporter {r['exporter_pg_cpu'] * 1000:.2f} ms, "
                  f"homeostat {r['homeostat_pg_cpu'] * 1000:.2f} ms")
        print("| family | exporter | homeostat |\n|---|---|---|")
        for f in sorted(ef | hf):
            print(f"| `{f}` | {'yes' if f in ef else ''} | {'yes' if f in hf else ''} |")
        prefix, ev = r["exporter_static"]
        hv = r["homeostat_static"]
        common = sorted(set(ev) & set(hv))
        differ = [f"{k}: exporter {ev[k]!r}, homeostat {hv[k]!r}" for k in common if not same(ev[k], hv[k])]
        print(f"\nvalues of {prefix}*: {len(common) - len(differ)} of {len(common)} series equal")
        for d in differ:
            print(f"  differs: {d}")
        print(f"\nonly in the exporter ({len(missing)}): {', '.join(missing)}")
        print(f"only in homeostat ({len(extra)}): {', '.join(extra)}")


if __name__ == "__main__":
    main()
