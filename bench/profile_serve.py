"""Where the time of a request goes: py-spy samples the server (pinned to one core) while wrk drives it.

    python -m bench.profile_serve [--users-per-request 1] [--seconds 10] [--out bench/results/profile-1.json]

It starts Redis and the service as `make bench-serve` does, prefills simulated histories, drives
`/score` with wrk at 32 connections, samples the server with py-spy for the given seconds, and prints
the share of the server's CPU samples in each part of the path, plus the throughput with and without the
sampler attached (py-spy slows what it samples, so shares, not absolute times, are the result).
Needs py-spy (the `bench` extra) and permission to attach to a child process (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import drivers, prefill, systems
from bench.procs import Procs, install_sigterm_handler

# (part of the path, names of which any on the sampled stack puts the sample there); the first matching
# part wins, so nested parts come before the parts around them. Some names are those of the path before
# batching by user ids, so that an older checkout can be profiled the same way.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Redis MGET (client side)", ("OnlineFeatureStore.fetch", "Redis.execute_command")),
    (
        "decode records + compute features",
        ("OnlineFeatureStore.features", "compute_features", "features_of_records", "decode "),
    ),
    ("scale, forward, calibrate, tier, segment", ("ChurnModel.score", "ChurnModel.scale", "InferenceEngine")),
    ("per-user answers", ("ScoredRows.users", "ChurnModel.results")),
    ("batching: gathering, metrics, futures", ("MicroBatcher",)),
    ("parse and validate the request", ("model_validate_json", "request_body_to_args", "_get_body")),
    ("admit and queue the job", ("ScoringService.submit",)),
    ("wait, disconnect watcher", ("result_unless_gone", "_disconnected", "unless_disconnected")),
    ("FastAPI routing, dependencies, response model", ("fastapi/routing", "solve_dependencies", "jsonable")),
    ("API key, rate limit, request id", ("Keyring.", "RateLimiter.", "new_request_id", "header (")),
    (
        "latency metrics, body limit",
        ("request_seconds", "read_bounded", "declared_length_ok", "LatencyMetrics", "BodyLimit"),
    ),
    ("read body, serialise answer, send", ("FastRoutes", "answer", "starlette/", "ChurnAPI.__call__")),
    ("uvicorn: HTTP parsing, ASGI cycle", ("httptools_impl",)),
)
OTHER = "event loop (uvloop), scheduling, other"


def part_of(stack: str) -> str:
    for part, needles in PARTS:
        if any(needle in stack for needle in needles):
            return part
    return OTHER


def shares(raw: Path) -> dict[str, float]:
    """py-spy's raw (collapsed) output -> share of samples per part of the path."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        counts[part_of(stack)] += int(count)
    total = sum(counts.values()) or 1
    return {part: counts[part] / total for part in [p for p, _ in PARTS] + [OTHER]}


def sample(pid: int, seconds: float, out: Path) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(round(seconds)), "--rate", "250"]
    command += ["--format", "raw", "--output", str(out), "--nonblocking"]
    subprocess.run(command, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users-per-request", type=int, default=1, choices=(1, 256))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    install_sigterm_handler()
    folder = Path(tempfile.mkdtemp(prefix="churn-profile-"))
    procs = Procs(folder)
    try:
        result = profile(procs, folder, args.users_per_request, args.seconds)
    finally:
        procs.stop_all()
    print_result(result)
    out = args.out or Path(f"bench/results/profile-{args.users_per_request}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


def profile(procs: Procs, folder: Path, users: int, seconds: float) -> dict[str, Any]:
    _, redis_port = systems.start_redis(procs)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    # 256-user requests at 32 connections exceed the default queue-time bound here; refused requests
    # would fill the profile with 429s, so the bound is lifted to profile the scoring itself.
    settings = {"CHURN_QUEUE_MAX_WAIT_MS": "1000000"} if users > 1 else {}
    with systems.ours(procs, redis_url, fast_routes=True, workers=1, settings=settings) as run:
        events = prefill.history(400, datetime.now(UTC))
        prefill.post_events(run.port, events)
        features = prefill.fetch_features(run.port, sorted({e["user_id"] for e in events}))
        bodies = prefill.write_bodies(folder, features)
        body = bodies["score1" if users == 1 else "score256"]
        drivers.wrk(run.port, "/score", "wrk_score.lua", [str(body)], 3)  # warm-up
        alone = drivers.wrk(run.port, "/score", "wrk_score.lua", [str(body)], seconds)
        raw = folder / "py-spy.txt"
        sampler = threading.Thread(target=sample, args=(run.proc.popen.pid, seconds, raw))
        sampler.start()
        time.sleep(0.5)
        sampled = drivers.wrk(run.port, "/score", "wrk_score.lua", [str(body)], seconds)
        sampler.join()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "users_per_request": users,
        "connections": 32,
        "requests_per_s": alone["rate"],
        "requests_per_s_while_sampled": sampled["rate"],
        "latency_ms": alone["latency_ms"],
        "shares": shares(raw),
    }


def print_result(result: dict[str, Any]) -> None:
    rate, per = result["requests_per_s"], result["users_per_request"]
    budget_us = 1e6 / rate
    sampled = result["requests_per_s_while_sampled"]
    print(
        f"{per}-user /score, 32 connections: {rate:,.0f} requests/s unsampled ({sampled:,.0f} while "
        f"sampled), {budget_us:.0f} us of the core each"
    )
    for part, share in result["shares"].items():
        print(f"  {share:6.1%}  ~{share * budget_us:6.0f} us  {part}")


if __name__ == "__main__":
    main()
