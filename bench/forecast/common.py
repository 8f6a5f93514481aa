"""Shared helpers for the forecast / autoscaling benchmark (issue #8).

Everything here is deliberately small and dependency-light (numpy only), so the
replay benchmark and the homeostat stand-in can use it without statsforecast.

Data handling
-------------
* Series live in ``<data>/series/*.csv`` with the header ``timestamp,value`` and
  timestamps ``YYYY-MM-DD HH:MM:SS``. ``<data>`` defaults to
  ``<repo root>/../shared/data``; the data is never copied into the repository.
* ``AzureLLMInferenceTrace_conv.csv`` is one row per request, not a series, and
  is skipped; its 10-second rate ``AzureLLMInferenceTrace_conv_rps10s.csv`` is
  used instead.
* Regularisation: the sampling interval is the median difference between
  consecutive timestamps. A grid ``t0, t0 + step, ...`` up to the last
  timestamp is laid from the first timestamp and the value at every grid point
  is linearly interpolated between the two neighbouring observations (an
  observation exactly on the grid is kept as is). In this data set that only
  fills a few single missing 5-minute steps in three NAB CloudWatch files
  (elb_request_count_8c0756: 8, ec2_network_in_257a54: 2,
  rds_cpu_utilization_cc0c53: 1); every other file is already on its grid.
"""
import os

# Keep the numeric libraries single-threaded: the benchmark machine is shared.
# This must happen before numpy (or anything importing it) is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))
DEFAULT_HOMEOSTAT = os.path.join(REPO_ROOT, "target", "release", "homeostat")
DEFAULT_CACHE = os.path.join("/tmp", "homeostat-forecast-cache")
STUB = os.path.join(HERE, "homeostat_stub.py")

TS_FORMAT = "%Y-%m-%d %H:%M:%S"

# The short, sub-day trace: reported separately by the forecast backtest.
AZURE = "AzureLLMInferenceTrace_conv_rps10s"
SKIP_FILES = {"AzureLLMInferenceTrace_conv.csv"}  # per-request rows, not a series

# Fraction of each series used as training data; the rest is the test part.
TRAIN_FRACTION = 0.6

DAY = 86400
HOUR = 3600
MINUTE = 60


def log(msg):
    """Progress goes to stderr so stdout stays a clean report."""
    print(msg, file=sys.stderr, flush=True)


def series_dir_or_skip(data_dir):
    """Returns ``<data>/series``; prints a skip line and exits 0 when absent."""
    path = os.path.join(data_dir, "series")
    if not os.path.isdir(path):
        print(f"SKIP: data directory {path} not found (pass --data DIR pointing at the shared data set)")
        sys.exit(0)
    return path


def list_series(series_dir, only=None):
    """CSV files to benchmark, sorted by name; ``only`` filters by series name."""
    names = []
    for fname in sorted(os.listdir(series_dir)):
        if not fname.endswith(".csv") or fname in SKIP_FILES:
            continue
        name = fname[:-4]
        if only and name not in only:
            continue
        names.append((name, os.path.join(series_dir, fname)))
    if only:
        missing = set(only) - {n for n, _ in names}
        if missing:
            raise SystemExit(f"unknown series: {', '.join(sorted(missing))}")
    return names


def parse_ts(text):
    """Seconds since the epoch (UTC, naive) of a ``YYYY-MM-DD HH:MM:SS`` stamp.
    Fractional seconds are kept; an ISO 8601 ``T`` separator and a trailing
    ``Z`` are tolerated."""
    text = text.strip().replace("T", " ").rstrip("Z")
    if "." in text:
        dt = datetime.datetime.strptime(text, TS_FORMAT + ".%f")
    else:
        dt = datetime.datetime.strptime(text, TS_FORMAT)
    return (dt - datetime.datetime(1970, 1, 1)).total_seconds()


def format_ts(seconds):
    """``YYYY-MM-DD HH:MM:SS`` of seconds since the epoch (whole seconds)."""
    dt = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=int(round(seconds)))
    return dt.strftime(TS_FORMAT)


def read_csv_columns(path, columns):
    """Reads a small CSV with a header into a dict of column -> list of str."""
    with open(path) as f:
        header = f.readline().strip().split(",")
        idx = {}
        for col in columns:
            if col not in header:
                raise ValueError(f"{path}: missing column {col!r} (header: {','.join(header)})")
            idx[col] = header.index(col)
        out = {col: [] for col in columns}
        for lineno, line in enumerate(f, start=2):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",")
            if len(parts) < len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} fields, got {len(parts)}")
            for col, i in idx.items():
                out[col].append(parts[i])
    return out


class Series:
    """A series regularised onto its median-interval grid.

    Attributes: ``name``, ``path``, ``t`` (float seconds since epoch, numpy),
    ``y`` (float, numpy), ``step`` (seconds), ``n_raw`` (rows in the file),
    ``n_filled`` (grid points that had no observation).
    """

    def __init__(self, name, path):
        self.name = name
        self.path = path
        cols = read_csv_columns(path, ["timestamp", "value"])
        t = np.array([parse_ts(s) for s in cols["timestamp"]])
        y = np.array([float(v) for v in cols["value"]])
        order = np.argsort(t, kind="stable")
        t, y = t[order], y[order]
        if len(t) < 3:
            raise ValueError(f"{path}: too few rows")
        step = float(np.median(np.diff(t)))
        if step <= 0:
            raise ValueError(f"{path}: non-increasing timestamps")
        n = int(math.floor((t[-1] - t[0]) / step + 1e-9)) + 1
        grid = t[0] + step * np.arange(n)
        self.t = grid
        self.y = np.interp(grid, t, y)
        self.step = step
        self.n_raw = len(t)
        pos = (t - t[0]) / step
        exact = np.abs(pos - np.round(pos)) < 1e-6
        self.n_filled = n - len(set(np.round(pos[exact]).astype(int).tolist()))

    def __len__(self):
        return len(self.t)

    @property
    def span(self):
        return self.t[-1] - self.t[0] + self.step

    @property
    def n_train(self):
        """Number of leading grid points in the training part."""
        return int(TRAIN_FRACTION * len(self))

    def steps(self, seconds):
        """Whole grid steps in a duration (at least 1)."""
        return max(1, int(round(seconds / self.step)))

    def season(self):
        """The primary seasonal period m in steps.

        One day when the series spans at least 3 days; otherwise one hour when
        it spans at least 3 hours; otherwise one minute (the 58-minute Azure
        trace at 10 s: m = 6). Short traces have no daily cycle to exploit, and
        a short lag keeps the seasonal-naive scale close to a naive one.
        """
        for period, need in ((DAY, 3 * DAY), (HOUR, 3 * HOUR), (MINUTE, 0)):
            if self.span >= need:
                return max(2, self.steps(period))
        raise AssertionError("unreachable")

    def digest(self):
        """Content hash of the regularised series, for cache keys."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.t).tobytes())
        h.update(np.ascontiguousarray(self.y).tobytes())
        return h.hexdigest()[:16]

    def write_csv(self, path):
        """Writes the regularised series as ``timestamp,value``."""
        with open(path, "w") as f:
            f.write("timestamp,value\n")
            for ts, v in zip(self.t, self.y):
                f.write(f"{format_ts(ts)},{format_value(v)}\n")


def format_value(v):
    """Compact, round-trippable-enough text for a float (integers stay integers)."""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return format(float(v), ".10g")


def seasonal_naive_scale(y_train, m):
    """In-sample mean absolute error of the seasonal naive forecast with
    period m on the training part: mean |y[t] - y[t-m]| for t >= m. Falls back
    to the lag-1 naive scale if that is zero (e.g. a perfectly periodic
    training part), and to 1.0 if the series is constant."""
    y_train = np.asarray(y_train, dtype=float)
    for lag in (m, 1):
        if len(y_train) > lag:
            s = float(np.mean(np.abs(y_train[lag:] - y_train[:-lag])))
            if s > 0:
                return s
    return 1.0


def window_steps(duration, step):
    """K such that the grid points t_j with t_i - t_j < duration + step (for
    j <= i) are exactly j = i-K .. i. With values held piecewise constant
    between grid points, these are the points whose value is in effect at some
    instant of [t_i - duration, t_i]: K = ceil(duration / step)."""
    return max(0, math.ceil(duration / step - 1e-9))


def ceil_div(x, y):
    """ceil(x / y), robust to floating-point noise just above an integer."""
    return math.ceil(x / y - 1e-9)


def parse_duration(text):
    """Seconds in '2m', '10m', '30s', '2h', or a bare number of seconds."""
    text = text.strip()
    units = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def format_duration(seconds):
    """'2m', '10m', '30s', '2h' for a duration in seconds."""
    seconds = float(seconds)
    for unit, size in (("h", HOUR), ("m", MINUTE)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def homeostat_command(args):
    """The argv prefix that runs homeostat (or the Python stand-in), or exits
    with a clear message when the binary is missing."""
    if args.homeostat_stub:
        return [sys.executable, STUB]
    if not os.path.isfile(args.homeostat) or not os.access(args.homeostat, os.X_OK):
        raise SystemExit(
            f"homeostat binary {args.homeostat} not found; build it "
            "(cargo build --release -p homeostat), pass --homeostat PATH, "
            "or use --homeostat-stub to exercise the pipeline with the Python stand-in")
    return [args.homeostat]


def fmt(x, digits=2):
    """Table cell for a number (NaN/None -> 'n/a')."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def markdown_table(header, rows):
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def write_report(out, total, errors, args, report):
    """Ends a run the same way for both scripts: the failures and wall time under
    the Markdown lines `out`, printed and written to --out-md; `report()` (built only
    when asked) to --out-json; a note when --keep kept the intermediate files.
    `errors` is (label, message) pairs."""
    import json
    for label, err in errors:
        out.append(f"* {label} failed: {err}")
    out.append(f"Total wall time of this run: {total:.1f} s")
    text = "\n".join(out) + "\n"
    print(text)
    if args.out_md:
        with open(args.out_md, "w") as f:
            f.write(text)
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(report(), f, indent=1, sort_keys=True)
    if args.keep:
        log(f"kept intermediate files under {args.keep}")
