"""The serving benchmark's results: the machine and versions, every figure, and one table of ratios
against references measured in the same run, with the floors we aim for marked PASS or MISS.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import redis

from bench import tables

PACKAGES = (
    "torch",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "mosec",
    "redis",
    "hdrhistogram",
)


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def versions(redis_url: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name if name != "redis" else "redis-py"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    with redis.Redis.from_url(redis_url) as client:
        found["redis-server"] = str(client.info("server")["redis_version"])
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    found["wrk"] = (wrk.stdout or wrk.stderr).split("[")[0].replace("wrk", "").strip()
    return found


def collect(
    plan: Any,
    ours: dict[str, Any],
    peers: dict[str, Any],
    ceiling: dict[str, float],
    redis_url: str,
    seconds: float,
    loadavg: list[float],
    steal_before: tuple[int, int],
) -> dict[str, Any]:
    after = [round(x, 2) for x in os.getloadavg()]
    steal, total = (a - b for a, b in zip(cpu_steal(), steal_before, strict=True))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        # Other work on a shared machine shows here; it moves every absolute figure.
        "machine": {
            **machine(),
            "loadavg_before_after": [loadavg, after],
            # CPU time the hypervisor gave to other guests during the run: on a shared virtual machine
            # this, more than anything in the code, is what moves figures between runs.
            "steal_share": round(steal / total, 4) if total else 0.0,
        },
        "versions": versions(redis_url),
        "plan": dataclasses.asdict(plan),
        "pinning": {"servers": "core 0", "load generators and redis-server": "core 1"},
        "ours": ours,
        "peers": peers,
        "redis_benchmark": ceiling,
    }
    results["table"] = tables.rows(results)
    return results


def print_table(results: dict[str, Any]) -> None:
    m, v = results["machine"], results["versions"]
    print()
    print(f"{m['cpu_model']}, {m['cores']} cores, Linux {m['kernel']}; Python {v['python']}, torch "
          f"{v['torch']}, uvicorn {v['uvicorn']}, mosec {v['mosec']}, redis {v['redis-server']}")  # fmt: skip
    print(tables.render(results["table"]))
    for note in tables.notes(results):
        print(note)


def cpu_steal() -> tuple[int, int]:
    """(steal, all) CPU ticks so far, from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields)
