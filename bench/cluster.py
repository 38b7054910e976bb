"""The feature store on one Redis and on a Redis Cluster, in the same run: reading a batch of users and
applying event batches, with the cluster's figures as ratios of the single Redis's.

Starts a redis-server and a cluster of three primaries, each with a replica (app/redis_server.py), all on
loopback, fills both with the same simulated users, then measures:
- read: the features' strings of 1,000 users (the store's fetch: one MGET on one Redis; one MGET per
  hash-tag bucket, as a pipeline to each primary, on the cluster), median and p99 over many reads;
- apply: 100-event POST /events-sized batches through the store's apply, events per second.
The floor for the cluster read is 2x the single Redis's. Results land in bench/results/cluster.json.

Run: python -m bench.cluster [--users 5000] [--reads 300]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster

from app.features.cluster import ClusterReads
from app.features.keys import BUCKETS, by_hash_tag
from app.features.online import OnlineFeatureStore
from app.redis_server import LocalCluster, RedisProcess
from app.schemas import Event
from bench.online_store import BATCH, PSEUDONYMS, load_events

READ_USERS = 1_000
FLOOR = 2.0  # cluster read median / single read median
RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"


def store(client: aredis.Redis | RedisCluster) -> OnlineFeatureStore:
    return OnlineFeatureStore(client, "bench", 10**9, 0, 400, pseudonyms=PSEUDONYMS)


async def timed(work: Callable[[], Awaitable[Any]], times: int) -> list[float]:
    for _ in range(min(20, times)):
        await work()  # connections made, caches warm
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        await work()
        seconds.append(time.perf_counter() - started)
    return seconds


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1e3
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def picks_of(ids: list[str]) -> list[list[str]]:
    """Eight fixed random sets of READ_USERS users, read in turn."""
    rng = np.random.default_rng(7)
    return [[ids[i] for i in rng.choice(len(ids), READ_USERS, replace=False)] for _ in range(8)]


async def measure_one(
    target: OnlineFeatureStore, client: aredis.Redis | RedisCluster, events: list[Event], reads: int
) -> dict[str, Any]:
    now = max(event.ts for event in events)
    ids = sorted({event.user_id for event in events})
    started = time.perf_counter()
    for start in range(0, len(events), BATCH):
        await target.apply(events[start : start + BATCH], now)
    apply_s = time.perf_counter() - started
    picks = itertools.cycle(picks_of(ids))
    read = await timed(lambda: target.fetch(next(picks)), reads)
    figures = {"apply_events_per_s": len(events) / apply_s, "read_1000_ms": percentiles_ms(read)}
    if isinstance(client, RedisCluster):
        # The same MGETs through redis-py's own cluster pipeline, which the store's reads replace.
        reads_via = ClusterReads(client)
        key_lists = itertools.cycle([[target.key(u) for u in pick] for pick in picks_of(ids)])

        async def via_client() -> Any:
            keys = next(key_lists)
            return await reads_via.via_cluster_client(keys, by_hash_tag(keys))

        figures["read_1000_via_cluster_pipeline_ms"] = percentiles_ms(await timed(via_client, reads))
    return figures


async def measure(single_url: str, cluster_url: str, users: int, reads: int) -> dict[str, Any]:
    events, _ = load_events(users, days=120)
    figures: dict[str, Any] = {}
    clients: dict[str, aredis.Redis | RedisCluster] = {
        "single": aredis.Redis.from_url(single_url),
        "cluster": RedisCluster.from_url(cluster_url),
    }
    for name, client in clients.items():
        target = store(client)
        try:
            figures[name] = await measure_one(target, client, events, reads)
        finally:
            await target.aclose()
            await client.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        single = RedisProcess(Path(folder) / "single")
        cluster = LocalCluster(Path(folder) / "cluster")
        single.start()
        try:
            cluster.start()
            try:
                figures = asyncio.run(measure(single.url, cluster.url, args.users, args.reads))
            finally:
                cluster.stop()
        finally:
            single.stop()
    one, many = figures["single"], figures["cluster"]
    read_ratio = many["read_1000_ms"]["p50"] / one["read_1000_ms"]["p50"]
    apply_ratio = many["apply_events_per_s"] / one["apply_events_per_s"]
    print(f"users {args.users:,}, {BUCKETS} hash-tag buckets, cluster: 3 primaries + 3 replicas on loopback")
    for name, row in figures.items():
        read = row["read_1000_ms"]
        print(
            f"{name:8} read 1,000 users p50 {read['p50']:.2f} ms, p99 {read['p99']:.2f} ms;"
            f" apply {row['apply_events_per_s']:,.0f} events/s ({BATCH}-event batches)"
        )
    via = many["read_1000_via_cluster_pipeline_ms"]
    print(
        f"cluster  read 1,000 users through redis-py's cluster pipeline instead: p50 {via['p50']:.2f} ms,"
        f" p99 {via['p99']:.2f} ms ({via['p50'] / many['read_1000_ms']['p50']:.2f}x the store's reads)"
    )
    verdict = "PASS" if read_ratio <= FLOOR else "MISS"
    print(
        f"cluster/single: read p50 {read_ratio:.2f}x (floor <= {FLOOR}x: {verdict}), apply {apply_ratio:.2f}x"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "users": args.users,
        "buckets": BUCKETS,
        "figures": figures,
        "read_ratio": read_ratio,
        "apply_ratio": apply_ratio,
        "verdict": verdict,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
