"""Child processes pinned to a core, readiness polling and small HTTP helpers for the serving benchmark.

Every process is started in its own session, so stopping it also stops whatever it forked (uvicorn
workers, Mosec's Python workers), and so a Ctrl-C in the terminal reaches only the benchmark, which then
stops them all.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.api.auth import new_key

SERVER_CORE = "0"  # every server under test
CLIENT_CORE = "1"  # load generators and redis-server
PYTHON = sys.executable

# One API key for the run, every scope. Load generators started from here (wrk's scripts, bench.loadgen)
# read the header from the environment, so every request pays for authentication as in production.
AUTH_ENV = "CHURN_BENCH_AUTHORIZATION"
if AUTH_ENV not in os.environ:
    _key, _entry = new_key("bench", ["events", "score", "admin", "metrics"])
    os.environ[AUTH_ENV] = f"Bearer {_key}"
    os.environ["CHURN_BENCH_API_KEYS"] = json.dumps([_entry.model_dump()])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Proc:
    def __init__(self, name: str, command: list[str], core: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.started = time.perf_counter()
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                ["taskset", "-c", core, *command],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if not self.alive():
            return
        _signal_group(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        # Forked workers may outlive their parent by a moment; the group is gone once they exit.
        _signal_group(self.popen.pid, signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class Procs:
    """All processes of one run; `stop_all` is called on success, failure and Ctrl-C alike."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[Proc] = []
        self.started: list[Proc] = []  # for the logs after a failure

    def start(self, name: str, command: list[str], core: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, command, core, env or {}, self.log_dir / f"{name}.log")
        self.running.append(proc)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.running:
            self.running.remove(proc)

    def print_logs(self) -> None:
        for proc in self.started:
            status = "running" if proc.alive() else f"exit {proc.popen.returncode}"
            print(f"--- {proc.name} ({status}), last lines of its log:\n{proc.tail()}", file=sys.stderr)

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            proc.stop()
        self.running.clear()


def install_sigterm_handler() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the same cleanup path runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def wait_ready(proc: Proc, port: int, path: str, timeout: float = 60.0) -> float:
    """Seconds from spawning `proc` to its first 200 on `path`."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            status, _ = request("GET", port, path, timeout=1.0)
            if status == 200:
                return time.perf_counter() - proc.started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{proc.name} not ready on :{port}{path} after {timeout:.0f} s:\n{proc.tail()}")


def request(method: str, port: int, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One HTTP request to 127.0.0.1; the answer decoded as JSON when it is JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": os.environ[AUTH_ENV]}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw
