"""Helpers shared by the side-by-side bench scripts (stdlib only)."""
import signal
import subprocess
import time
import urllib.request


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


def ensure_free(*ports):
    """Exits when something already listens on a port this run needs, so a
    stray server is never measured in place of the one started here."""
    import socket

    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is already in use; stop whatever listens there first")
