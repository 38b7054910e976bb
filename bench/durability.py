"""What durability of acknowledged events costs: event apply throughput under four settings, one run.

    python -m bench.durability [--users 1000] [--days 60]

1. no AOF (the reference: an acknowledged write lives in memory only until the next snapshot);
2. AOF with `appendfsync everysec` (Redis's default for AOF: up to a second of writes lost with the host);
3. AOF with `appendfsync always` (every write reaches the disk before Redis answers);
4. no AOF, one replica, and the service's CHURN_ACK_REPLICAS=1 (WAIT after every batch).
Each runs the same simulated events through the store, 100-event batches, 8 in flight, against a fresh
redis-server on this machine's disk; ratios are against case 1 in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import redis
import redis.asyncio as aredis

from app.features.online import OnlineFeatureStore
from app.redis_server import RedisProcess
from app.schemas import Event
from bench.online_store import BATCH, PSEUDONYMS, load_events

IN_FLIGHT = 8
CASES = {
    "no AOF (reference)": {"persist": False, "extra": [], "replica": False},
    "AOF, appendfsync everysec": {"persist": True, "extra": ["--appendfsync", "everysec"], "replica": False},
    "AOF, appendfsync always": {"persist": True, "extra": ["--appendfsync", "always"], "replica": False},
    "one replica, WAIT 1 per batch": {"persist": False, "extra": [], "replica": True},
}


def start(stack: ExitStack, folder: Path, persist: bool, extra: list[str]) -> RedisProcess:
    server = RedisProcess(folder, persist=persist, extra=extra)
    server.start()
    stack.callback(server.stop)
    return server


def wait_for_link(replica: RedisProcess) -> None:
    with redis.Redis.from_url(replica.url) as client:
        while client.info("replication").get("master_link_status") != "up":
            time.sleep(0.05)


async def throughput(url: str, ack_replicas: int, events: list[Event], now: datetime) -> float:
    client = aredis.Redis.from_url(url, socket_timeout=5)
    store = OnlineFeatureStore(
        client, "bench", 3_650 * 86_400, 300, 400, pseudonyms=PSEUDONYMS, ack_replicas=ack_replicas,
        ack_timeout_ms=2_000,
    )  # fmt: skip
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    started = time.perf_counter()
    for i in range(0, len(batches), IN_FLIGHT):
        await asyncio.gather(*(store.apply(b, now) for b in batches[i : i + IN_FLIGHT]))
    rate = len(events) / (time.perf_counter() - started)
    await client.aclose()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is shown")
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    events, now = load_events(args.users, args.days)
    runs: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, case in CASES.items():
            with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
                primary = start(stack, Path(folder) / "primary", bool(case["persist"]), list(case["extra"]))
                if case["replica"]:
                    follow = ["--replicaof", "127.0.0.1", str(primary.port)]
                    wait_for_link(start(stack, Path(folder) / "replica", False, follow))
                ack = int(bool(case["replica"]))
                runs[name].append(asyncio.run(throughput(primary.url, ack, events, now)))
    rates = {name: statistics.median(values) for name, values in runs.items()}
    reference = rates["no AOF (reference)"]
    print(
        f"{len(events):,} events of {args.users:,} users, {BATCH}-event batches, {IN_FLIGHT} in flight; "
        f"median of {args.rounds} alternating rounds"
    )
    for name, rate in rates.items():
        print(f"{name:<32} {rate:>10,.0f} events/s  {rate / reference:5.2f}x")


if __name__ == "__main__":
    main()
