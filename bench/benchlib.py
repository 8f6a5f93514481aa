"""Helpers shared by the side-by-side bench scripts (stdlib only)."""
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
import types
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def wait_http(url, timeout=30):
    """Polls `url` until it answers, or exits with a message."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:  # noqa: BLE001
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def stop_all(procs, grace=15):
    """SIGTERM every process still running, then SIGKILL what has not exited."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def ensure_free(*ports):
    """Exits when something already listens on a port this run needs, so a
    stray server is never measured in place of the one started here."""
    import socket

    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is already in use; stop whatever listens there first")


def exit_on_sigterm():
    """Turns SIGTERM into SystemExit so `finally` blocks (stop_all, temp-dir
    removal) run when the script is terminated, as they do on Ctrl-C; and
    makes Ctrl-C raise KeyboardInterrupt even where SIGINT was inherited as
    ignored (a background job of a non-interactive shell)."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Procs:
    """The processes one bench run started, each with its stderr in a log
    file, so they can all be stopped together and a dead one reported."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.items = []  # (name, Popen, log path, log file)

    def start(self, name, cmd):
        path = os.path.join(self.logdir, re.sub(r"[^\w.-]+", "_", name) + ".log")
        logf = open(path, "w")
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.items.append((name, p, path, logf))
        return p

    def wait_http(self, url, timeout=60):
        """wait_http(), but exits at once (with its log) when a started
        process dies meanwhile, e.g. one that rejected its config."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_alive()
            try:
                urllib.request.urlopen(url, timeout=1).read()
                return
            except Exception:  # noqa: BLE001
                time.sleep(0.2)
        raise SystemExit(f"{url} did not answer within {timeout}s")

    def check_alive(self):
        """Exits, showing the end of its log, when a started process has died."""
        for name, p, path, _ in self.items:
            if p.poll() is not None:
                sys.stderr.write(f"{name} exited with status {p.returncode}; end of its log:\n{log_tail(path)}\n")
                raise SystemExit(f"{name} died during the run")

    def stop(self):
        stop_all([p for _, p, _, _ in self.items])
        for _, _, _, logf in self.items:
            logf.close()


def log_tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class FaultControl:
    """Writes target.py's control file ("VALUE [INCIDENT]") atomically: a
    temporary file in the same directory, then rename, so a scrape never
    reads a half-written line."""

    def __init__(self, path):
        self.path = path
        self.write("0")

    def write(self, value, incident=None):
        """Writes the line and returns time.time() right after the rename,
        i.e. the instant the next scrape sees the new value."""
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{value} {incident}\n" if incident else f"{value}\n")
        os.replace(tmp, self.path)
        return time.time()


# --- /proc ---------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def status_kib(pid, key):
    """A kB field of /proc/PID/status (VmHWM, VmRSS, ...), 0 when absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (clear_refs "5"), so VmHWM read later
    is the peak since now. Returns False where the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- HTTP / exposition format -------------------------------------------

def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def metric_value(url, name):
    """The value of an unlabelled sample in a /metrics page, or '?'."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return line.split()[1]
    except Exception:  # noqa: BLE001
        pass
    return "?"


_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESC = {"n": "\n", "\\": "\\", '"': '"'}


def parse_metrics(text):
    """Samples of a text-format /metrics page as [(name, {labels}, value)]."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        labels = {}
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            pos = brace + 1
            while True:
                m = _LABEL.match(line, pos)
                if not m:
                    break
                labels[m.group(1)] = re.sub(r"\\(.)", lambda e: _UNESC.get(e.group(1), e.group(0)), m.group(2))
                pos = m.end()
            end = line.find("}", pos)
            if end == -1:
                continue
            rest = line[end + 1:].split()
        else:
            name, rest = line[:space], line[space + 1:].split()
        if not rest:
            continue
        try:
            out.append((name, labels, float(rest[0])))
        except ValueError:
            continue
    return out


def scrape(url, timeout=10):
    """parse_metrics() of a /metrics URL, or None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return parse_metrics(r.read().decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001
        return None


def samples_named(samples, name):
    """[(labels, value)] of the samples with exactly this name."""
    return [(lbl, v) for n, lbl, v in samples or () if n == name]


def total(samples, name):
    """Sum of all samples with this name (any labels), or None when there is none."""
    vals = [v for _, v in samples_named(samples, name)]
    return sum(vals) if vals else None


def parse_rfc3339(s):
    """Epoch seconds of an RFC 3339 timestamp such as Prometheus's activeAt
    ("2026-11-23T15:04:05.123456789Z", "...+01:00"); nanoseconds are kept
    to microseconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:?\d\d)?$", s.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {s!r}")
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    tz = m.group(3) or "Z"
    if tz in ("Z", "z"):
        off = datetime.timedelta(0)
    else:
        sign = -1 if tz[0] == "-" else 1
        hh, mm = int(tz[1:3]), int(tz[-2:])
        off = sign * datetime.timedelta(hours=hh, minutes=mm)
    base = base.replace(tzinfo=datetime.timezone(off))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def percentile(values, q):
    """Linear-interpolated q-quantile (0..1) of a non-empty list."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def prometheus_config_with_abs_rules(src):
    """The text of a Prometheus config with each relative rule_files entry
    made absolute (relative to the config's directory, as Prometheus
    resolves them), so it can be written to a temp dir."""
    base = os.path.dirname(os.path.abspath(src))
    out, in_rules = [], False
    with open(src) as f:
        for line in f:
            stripped = line.strip()
            if re.match(r"^rule_files\s*:", line):
                in_rules = True
            elif in_rules and stripped.startswith("- "):
                entry = stripped[2:].strip().strip("'\"")
                if not os.path.isabs(entry):
                    indent = line[: len(line) - len(line.lstrip())]
                    line = f"{indent}- '{os.path.join(base, entry)}'\n"
            elif in_rules and stripped and not stripped.startswith("#"):
                in_rules = False
            out.append(line)
    return "".join(out)


def resolve_binary(path, hint=""):
    """`path` made absolute: as given when it exists (relative to the working
    directory), else relative to the repository root; exits when neither is."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for cand in (path, os.path.join(repo, path)):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    raise SystemExit(f"{path} not found or not executable{'; ' + hint if hint else ''}")


def alerting_workload(shared, rules_name, am_name):
    """The shared bench files a rules/alerting run needs: target.py,
    webhook.py, the rule file (absolute) and the Alertmanager config text
    (checked to deliver to the webhook on 127.0.0.1:19095). None, with a
    SKIP line, when ../shared/bench is absent."""
    bench = os.path.join(shared, "bench")
    target_py = os.path.join(bench, "target.py")
    if not os.path.exists(target_py):
        print(f"SKIP: {target_py} not found (set --shared)")
        return None
    am_src = os.path.join(bench, am_name)
    with open(am_src) as f:
        am_text = f.read()
    if "127.0.0.1:19095" not in am_text:
        raise SystemExit(f"{am_src}: expected a webhook URL on 127.0.0.1:19095")
    return types.SimpleNamespace(
        target_py=target_py,
        webhook_py=os.path.join(bench, "webhook.py"),
        rules=os.path.abspath(os.path.join(bench, rules_name)),
        am_text=am_text,
    )


def default_shared():
    """../shared next to the repository (the --shared default)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
