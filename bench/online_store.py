"""The online store against a real Redis: event apply throughput, batch read latency, memory per user,
and the time one busy user's write holds Redis.

References measured in the same run, on the same server: redis-benchmark (SET/GET, when installed) for
apply throughput, and a bare MGET of the same keys for read latency.
Run: python -m bench.online_store [--users 2000] [--busy-trials 20] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import redis
import redis.asyncio as aredis

from app.features.capacity import MAX_PURCHASE_RECORDS
from app.features.directory import IdSealer
from app.features.online import OnlineFeatureStore
from app.features.pseudonym import Pseudonyms
from app.features.records import RECORD
from app.redis_server import RedisProcess
from app.schemas import Event
from app.training.simulate import SimulationConfig, simulate

BATCH = 100
SECRET = b"bench-only-id-secret-of-at-least-32-bytes"
PSEUDONYMS = Pseudonyms(SECRET)
BUSY_HISTORY, BUSY_BATCH = 10_000, 1_000
# A busy user's mix of event types other than purchases, and their shares.
OTHER_TYPES = ("page_view", "session_start", "add_to_cart", "remove_from_cart", "review", "support_contact")
OTHER_SHARES = np.array([0.6, 0.1, 0.1, 0.05, 0.05, 0.05]) / 0.95


def load_events(users: int, days: int) -> tuple[list[Event], datetime]:
    log = simulate(SimulationConfig(n_users=users, days=days, seed=3)).events
    rows = log.replace({np.nan: None}).to_dict("records")
    events = [Event.model_validate({k: v for k, v in row.items() if v is not None}) for row in rows]
    return events, max(e.ts for e in events)


def redis_benchmark(url: str) -> dict[str, float]:
    tool = shutil.which("redis-benchmark")
    if not tool:
        return {}
    port = url.rsplit(":", 1)[1].split("/")[0]
    out: dict[str, float] = {}
    for pipeline in ("1", "16"):
        text = subprocess.run(
            [tool, "-p", port, "-t", "set,get", "-n", "200000", "-P", pipeline, "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for name, rate in re.findall(r"(SET|GET): ([\d.]+) requests per second", text):
            out[f"{name} -P {pipeline}"] = float(rate)
    return out


async def measure(url: str, events: list[Event], now: datetime, reads: int) -> None:
    client = aredis.Redis.from_url(url, socket_timeout=5)
    sync = redis.Redis.from_url(url)
    sync.flushall()
    base_memory = sync.info("memory")["used_memory"]
    store = OnlineFeatureStore(client, "bench", 3_650 * 86_400, 300, 400, pseudonyms=PSEUDONYMS)
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]

    started = time.perf_counter()
    for batch in batches:
        await store.apply(batch, now)
    serial = len(events) / (time.perf_counter() - started)

    sync.flushall()
    started = time.perf_counter()
    for i in range(0, len(batches), 8):  # 8 requests in flight, as concurrent API calls would be
        await asyncio.gather(*(store.apply(b, now) for b in batches[i : i + 8]))
    concurrent = len(events) / (time.perf_counter() - started)

    users = sorted({e.user_id for e in events})
    memory = sync.info("memory")["used_memory"] - base_memory
    directory_rate, directory_memory, entries = await with_directory(client, sync, batches, now, len(events))
    sample = users[:: max(1, len(users) // 500)]
    per_key = statistics.mean(sync.memory_usage(store.key(u)) or 0 for u in sample)
    value_bytes = statistics.mean(sync.strlen(store.key(u)) for u in sample)

    rng = np.random.default_rng(0)
    keys_read = [list(rng.choice(users, size=1000, replace=len(users) < 1000)) for _ in range(reads)]
    sync.config_resetstat()
    full, bare = [], []
    for ids in keys_read:
        started = time.perf_counter()
        await store.read(ids, now)
        full.append(time.perf_counter() - started)
        started = time.perf_counter()
        await client.mget([store.key(u) for u in ids])
        bare.append(time.perf_counter() - started)
    stats = sync.info("commandstats")
    round_trips = stats.get("cmdstat_mget", {}).get("calls", 0) / (2 * reads)
    await client.aclose()

    print(f"events: {len(events):,} of {len(users):,} users, applied in batches of {BATCH}")
    print(f"apply, one batch at a time:      {serial:10,.0f} events/s")
    print(f"apply, 8 batches in flight:      {concurrent:10,.0f} events/s   (target >= 50,000)")
    reference = redis_benchmark(url)
    for name, rate in reference.items():
        print(f"  redis-benchmark {name:9s}      {rate:10,.0f} requests/s   (same server, same run)")
    if reference:
        print(f"  apply (8 in flight) / SET -P 1: {concurrent / reference['SET -P 1']:.2f}x")
    else:
        print("  redis-benchmark not found (Debian package redis-tools): no reference figure")
    p50, p99 = np.percentile(full, 50) * 1e3, np.percentile(full, 99) * 1e3
    b50 = np.percentile(bare, 50) * 1e3
    print(f"read 1,000 users' features:      median {p50:.2f} ms, p99 {p99:.2f} ms (target median <= 10 ms)")
    print(f"  bare MGET of the same keys:    median {b50:.2f} ms; full read = {p50 / b50:.1f}x the bare MGET")
    print(f"  Redis commands per read:       {round_trips:.0f} MGET (one round trip)")
    print(f"memory per user: {memory / len(users):,.0f} B (used_memory delta); per key {per_key:,.0f} B")
    print(f"  (MEMORY USAGE, of which {value_bytes:,.0f} B are records; aim <= 2,048 B)")
    added = (directory_memory - memory) / len(users)
    print(
        f"with the user directory on:      {directory_rate:10,.0f} events/s (8 in flight), "
        f"{directory_memory / len(users):,.0f} B per user (+{added:,.0f} B), {entries:,} entries"
    )


async def with_directory(
    client: aredis.Redis, sync: redis.Redis, batches: list[list[Event]], now: datetime, events: int
) -> tuple[float, int, int]:
    """The same concurrent load into an empty Redis with the user directory on: events/s and memory,
    then the keys written again without it, so what the rest of the run measures is unchanged."""
    store = OnlineFeatureStore(
        client, "bench", 3_650 * 86_400, 300, 400, pseudonyms=PSEUDONYMS, directory=IdSealer(SECRET)
    )
    sync.flushall()
    base_memory = sync.info("memory")["used_memory"]
    started = time.perf_counter()
    for i in range(0, len(batches), 8):
        await asyncio.gather(*(store.apply(b, now) for b in batches[i : i + 8]))
    rate = events / (time.perf_counter() - started)
    memory = sync.info("memory")["used_memory"] - base_memory
    entries = 0
    for key in sync.scan_iter(match="bench:*:id", count=1000):
        entries += sync.delete(key)
    return rate, memory, entries


def busy_events(
    user: str, n: int, now: datetime, span_s: int, seed: int, purchases: float = 0.05
) -> list[Event]:
    """`n` events of one user, at random times in the `span_s` seconds up to `now`."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(0, span_s, size=n)
    shares = [*(OTHER_SHARES * (1 - purchases)), purchases]
    kinds = rng.choice([*OTHER_TYPES, "purchase"], size=n, p=shares)
    extra = {"purchase": {"amount": 9.99}, "review": {"rating": 4}}
    return [
        Event.model_validate(
            {
                "event_id": f"{user}-{seed}-{i}",
                "user_id": user,
                "type": kind,
                "ts": now - timedelta(seconds=int(age)),
            }
            | extra.get(str(kind), {})
        )
        for i, (age, kind) in enumerate(zip(ages, kinds, strict=True))
    ]


async def measure_busy_user(url: str, now: datetime, trials: int) -> None:
    """Usec inside Redis (commandstats) of applying 1,000 new events to a user who already sent 10,000
    inside the window: the new ones the newest, or spread over the last 7 days (late arrivals), or the
    newest again for a user who also holds the most purchases kept."""
    client = aredis.Redis.from_url(url, socket_timeout=30)
    sync = redis.Redis.from_url(url)
    store = OnlineFeatureStore(client, "busy", 3_650 * 86_400, 300, 400, pseudonyms=PSEUDONYMS)
    start = now - timedelta(minutes=20)
    history = busy_events("busy", BUSY_HISTORY, start, 89 * 86_400, seed=1)
    purchases = busy_events("busy", MAX_PURCHASE_RECORDS, start, 89 * 86_400, seed=4, purchases=1.0)
    cases = {
        "newest": (history, busy_events("busy", BUSY_BATCH, now, 600, seed=2)),
        "last 7 days": (history, busy_events("busy", BUSY_BATCH, now, 7 * 86_400, seed=3)),
        "purchases full": (history + purchases, busy_events("busy", BUSY_BATCH, now, 600, seed=2)),
    }
    print(f"one busy user: {BUSY_HISTORY:,} events in the window, then {BUSY_BATCH:,} new ({trials} trials)")
    for name, (before, batch) in cases.items():
        usec = []
        for _ in range(trials):
            sync.delete(store.key("busy"))
            await store.apply(before, now)
            sync.config_resetstat()
            await store.apply(batch, now)
            usec.append(sync.info("commandstats")["cmdstat_evalsha"]["usec"])
        kept = (sync.strlen(store.key("busy")) or 0) // RECORD.size
        print(
            f"  {name:14s} inside Redis: median {statistics.median(usec):,.0f} us, max {max(usec):,} us"
            f"  (target <= 5,000 us; {kept:,} records kept)"
        )
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=150, help="history length; windows reach back 90 days")
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--busy-trials", type=int, default=20)
    parser.add_argument("--redis-url", help="an existing Redis to use (it is FLUSHED); default: start one")
    args = parser.parse_args()
    events, last = load_events(args.users, args.days)
    now = last.astimezone(UTC)
    if args.redis_url:
        asyncio.run(measure(args.redis_url, events, now, args.reads))
        asyncio.run(measure_busy_user(args.redis_url, now, args.busy_trials))
        return
    with tempfile.TemporaryDirectory() as folder:
        server = RedisProcess(Path(folder))
        server.start()
        try:
            asyncio.run(measure(server.url, events, now, args.reads))
            asyncio.run(measure_busy_user(server.url, now, args.busy_trials))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
