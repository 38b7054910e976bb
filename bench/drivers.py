"""The load generators as child processes on the client core: wrk (closed loop), bench.loadgen (open
loop and status counts) and redis-benchmark. Each returns plain dicts with latencies in milliseconds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.procs import CLIENT_CORE, PYTHON, SERVER_CORE

HERE = Path(__file__).parent


def require_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk not found: install Debian's wrk (apt-get install wrk), then rerun")
    return found


def wrk(
    port: int, path: str, script: str, script_args: list[str], seconds: float, connections: int = 32
) -> dict[str, Any]:
    """Closed loop: `connections` connections, one wrk thread; requests/s and latency percentiles."""
    command = [
        "taskset", "-c", CLIENT_CORE, require_wrk(), "-t1", f"-c{connections}",
        f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(HERE / script),
        f"http://127.0.0.1:{port}{path}", "--", *script_args,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^WRK_JSON (.*)$", out, re.MULTILINE)
    if not found:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    raw = json.loads(found.group(1))
    seconds_run = raw["duration_us"] / 1e6
    errors = raw["errors"]
    return {
        "tool": "wrk",
        "connections": connections,
        "duration_s": round(seconds_run, 3),
        "requests": raw["requests"],
        # Successful answers only: a 429 is quick to send and must not count as throughput.
        "rate": (raw["requests"] - errors["status"]) / seconds_run,
        "all_rate": raw["requests"] / seconds_run,
        "non_2xx": errors["status"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "latency_ms": {k: v / 1000 for k, v in raw["latency_us"].items()},
    }


def loadgen_command(
    port: int,
    path: str,
    bodies: Path,
    seconds: float,
    rate: float | None = None,
    connections: int = 32,
    warmup: float = 0.0,
) -> list[str]:
    """bench.loadgen: open loop at `rate` requests/s, or closed loop when rate is None."""
    command = [
        "taskset", "-c", CLIENT_CORE, PYTHON, "-m", "bench.loadgen", "--port", str(port), "--path", path,
        "--bodies", str(bodies), "--connections", str(connections), "--duration", str(seconds),
        "--warmup", str(warmup),
    ]  # fmt: skip
    return command if rate is None else [*command, "--rate", f"{rate:.1f}"]


def loadgen(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run bench.loadgen (arguments as for loadgen_command) and return its summary."""
    return collect(start_loadgen(*args, **kwargs))


def start_loadgen(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
    """bench.loadgen in the background, for load that runs beside another measurement."""
    command = loadgen_command(*args, **kwargs)
    pipe = subprocess.PIPE
    return subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True, cwd=HERE.parent)


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.loadgen failed ({proc.returncode}):\n{err[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    result["tool"] = "bench.loadgen"
    return result


def redis_benchmark(port: int, requests: int) -> dict[str, float]:
    """GET and SET, one command per round trip, against the benchmark's redis-server.

    redis-server sits on the client core, so its load generator takes the other one, as every other
    generator/server pair does.
    """
    tool = shutil.which("redis-benchmark")
    if not tool:
        return {}
    command = [
        "taskset", "-c", SERVER_CORE, tool, "-p", str(port), "-t", "set,get", "-n", str(requests),
        "-P", "1", "-c", "32", "-q",
    ]  # fmt: skip
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {
        f"{name} -P 1": float(rate)
        for name, rate in re.findall(r"(SET|GET): ([\d.]+) requests per second", text)
    }
