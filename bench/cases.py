"""The measurements of the serving benchmark, one function per case; each returns plain dicts.

Closed-loop figures come from wrk (one thread, 32 connections); open-loop figures and status counts
from bench.loadgen, whose latencies count from each request's intended send time.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from app.features.pseudonym import Pseudonyms
from bench import drivers, prefill
from bench.procs import cpu_seconds, request
from bench.systems import BENCH_ID_SECRET, Running


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run (seconds unless named otherwise)."""

    users: int
    warmup: float
    closed: float
    open: float
    overload: float
    busy_window: float
    busy_prefill: int = 10_000
    busy_apply: int = 1_000


FULL = Plan(users=3_000, warmup=3, closed=10, open=12, overload=30, busy_window=20)
QUICK = Plan(users=1_000, warmup=1, closed=4, open=5, overload=8, busy_window=8)


def closed(run: Running, path: str, bodies: Path, plan: Plan, connections: int = 32) -> dict[str, Any]:
    """Warm up, then measure: closed loop through wrk."""
    warm = drivers.wrk(run.port, path, "wrk_score.lua", [str(bodies)], plan.warmup, connections)
    settle(warm)
    return drivers.wrk(run.port, path, "wrk_score.lua", [str(bodies)], plan.closed, connections)


def settle(warm: dict[str, Any]) -> None:
    """Let the server finish the requests the warm-up left in flight, so they do not weigh on the
    measurement that follows (a slow server can hold seconds of them)."""
    time.sleep(min(10.0, 2 * warm["latency_ms"]["max"] / 1000))


def open_loop(run: Running, path: str, bodies: Path, plan: Plan, peak: float) -> dict[str, Any]:
    """Fixed offered rates at 50% and 80% of the closed-loop peak measured just before."""
    return {
        f"{share}%": drivers.loadgen(run.port, path, bodies, plan.open, rate=peak * share / 100, warmup=1)
        for share in (50, 80)
    }


def events(run: Running, users: Path, plan: Plan, redis_pid: int) -> dict[str, Any]:
    """POST /events, 100 new events per request (unique ids), closed loop; with the share of a core the
    server and redis-server each used meanwhile, which says which of the two bounds the rate."""
    tag = uuid.uuid4().hex[:8]
    settle(drivers.wrk(run.port, "/events", "wrk_events.lua", [str(users), f"{tag}w", "100"], plan.warmup))
    pids = {"server": run.proc.popen.pid, "redis": redis_pid}
    before, started = {name: cpu_seconds(pid) for name, pid in pids.items()}, time.perf_counter()
    result = drivers.wrk(run.port, "/events", "wrk_events.lua", [str(users), tag, "100"], plan.closed)
    elapsed = time.perf_counter() - started
    result["cpu_share"] = {name: (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}
    result["events_per_s"] = result["rate"] * 100
    return result


def overload(run: Running, bodies: dict[str, Path], plan: Plan, peak: float) -> dict[str, Any]:
    """256-user requests offered at 4x the closed-loop peak; then 256 single-user connections."""
    offered = drivers.loadgen(
        run.port, "/score", bodies["score256"], plan.overload, rate=4 * peak, connections=256
    )
    crowd = drivers.loadgen(run.port, "/score", bodies["score1"], plan.closed, connections=256)
    return {"score256_4x": offered, "single_256_connections": crowd, "peak_rate": peak}


def start_to_ready(runs: list[Running]) -> dict[str, Any]:
    return {r.name: round(r.ready_s, 3) for r in runs}


def generator_ceiling(run: Running, bodies: Path, plan: Plan) -> dict[str, Any]:
    """How fast bench.loadgen itself goes on one core against the fastest server there is: its closed-loop
    rate, then open-loop rates up to 90% of that; it keeps up where its own dispatch lag stays small."""
    most = drivers.loadgen(run.port, "/score", bodies, plan.closed, warmup=1)
    ladder = [
        drivers.loadgen(run.port, "/score", bodies, plan.open / 2, rate=share * most["rate"], warmup=1)
        for share in (0.25, 0.5, 0.9)
    ]
    held = [r["offered_rate"] for r in ladder if keeps_up(r)]
    return {"closed_loop": most, "open_loop": ladder, "keeps_up_to": max(held, default=0.0)}


def keeps_up(r: dict[str, Any]) -> bool:
    """Dispatch lag p99 under 1 ms and at least 99% of the offered rate answered."""
    return r["generator_lag_ms"].get("p99", 1e9) <= 1.0 and r["rate"] >= 0.99 * r["offered_rate"]


def busy_user(
    run: Running, redis_url: str, bodies: dict[str, Path], plan: Plan, user: str = "busy-user"
) -> dict[str, Any]:
    """A user with a long history gets 1,000-event batches while bystanders send and score."""
    now = datetime.now(UTC)
    history = prefill.busy_events(user, plan.busy_prefill, now, f"busy-{uuid.uuid4().hex[:6]}", 89)
    prefill_status = [post(run.port, history[i : i + 500])[0] for i in range(0, len(history), 500)]
    client = redis.Redis.from_url(redis_url)
    stored = stored_bytes(client, user)
    trace_redis(client)
    score_side = drivers.start_loadgen(
        run.port, "/score", bodies["score1"], plan.busy_window, rate=200, connections=16
    )
    event_side = drivers.start_loadgen(
        run.port, "/events", bodies["events10"], plan.busy_window, rate=100, connections=16
    )
    applies = apply_repeatedly(run.port, user, plan, time.perf_counter() + plan.busy_window)
    bystanders = {"score": drivers.collect(score_side), "events": drivers.collect(event_side)}
    inside = redis_time(client, user)
    client.config_set("slowlog-log-slower-than", 10_000)
    client.close()
    return {
        "prefill_status": count(prefill_status),
        "stored_bytes_before": stored,
        "applies": applies,
        "redis": inside,
        "bystanders": bystanders,
    }


def apply_repeatedly(port: int, user: str, plan: Plan, until: float) -> dict[str, Any]:
    seconds, statuses = [], []
    while time.perf_counter() < until:
        batch = prefill.busy_events(user, plan.busy_apply, datetime.now(UTC), uuid.uuid4().hex[:10], 7)
        started = time.perf_counter()
        status, _ = post(port, batch)
        seconds.append(time.perf_counter() - started)
        statuses.append(status)
    return {
        "count": len(seconds),
        "status": count(statuses),
        "http_ms": {"median": statistics.median(seconds) * 1e3, "max": max(seconds) * 1e3},
    }


def post(port: int, events_: list[dict[str, Any]]) -> tuple[int, Any]:
    try:
        return request("POST", port, "/events", {"events": events_}, timeout=60)
    except TimeoutError:
        return 0, None


def count(values: list[int]) -> dict[str, int]:
    return {str(v): values.count(v) for v in sorted(set(values))}


def trace_redis(client: redis.Redis) -> None:
    """Log every command with its duration, from a clean slate."""
    client.config_set("slowlog-max-len", 1_000_000)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    client.config_resetstat()


def redis_time(client: redis.Redis, user: str) -> dict[str, Any]:
    """Time inside Redis of the scripts that touched the busy user's key, from the slow log."""
    tag = pseudonym(user).encode()  # the store names the user by pseudonym
    entries = client.slowlog_get(1_000_000)
    mine = [
        e["duration"]
        for e in entries
        if tag in e["command"] and e["command"].split(b" ", 1)[0].lower() in SCRIPT_COMMANDS
    ]
    stats = client.info("commandstats")
    scripts = {k: v for k, v in stats.items() if k.split("_", 1)[1] in {c.decode() for c in SCRIPT_COMMANDS}}
    return {
        "busy_calls": len(mine),
        "busy_call_ms": {"median": statistics.median(mine) / 1e3, "max": max(mine) / 1e3} if mine else {},
        "busy_total_ms": sum(mine) / 1e3,
        "commandstats": scripts,
    }


SCRIPT_COMMANDS = {b"evalsha", b"eval", b"fcall", b"evalsha_ro", b"eval_ro", b"fcall_ro"}


def pseudonym(user: str) -> str:
    return Pseudonyms(BENCH_ID_SECRET.encode()).of(user)


def stored_bytes(client: redis.Redis, user: str) -> int:
    """Bytes Redis holds for the user's keys (MEMORY USAGE), whatever the store's layout."""
    keys = client.scan_iter(match=f"*{pseudonym(user)}*", count=1000)
    return sum(int(client.memory_usage(k) or 0) for k in keys)
