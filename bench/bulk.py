"""Bulk work outside HTTP: `backfill` (events/s from a file into a fresh local Redis) and `score-batch`
(users/s from a file of ids to a Parquet file, the model on one thread).

A simulated history is written as CSV, Parquet and JSON lines, its last event a minute before now, and
each file is loaded into an empty store started here; then the same file again (every row found
already there). Then the users, repeated to --score-users ids, are scored --score-runs times, each run in
a new process as the command runs, and the median printed (this shared machine's figures vary by 20%
from one run to the next).
Run: python -m bench.bulk [--users 20000] [--days 120] [--formats csv,parquet,jsonl] [--score-users 200000]
[--score-runs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import redis
import torch

from app.bulk.backfill import BackfillSummary
from app.bulk.commands import run_backfill, run_on_uvloop, run_score_batch
from app.bulk.readers import DEFAULT_CHUNK_ROWS, open_event_file
from app.bulk.score_batch import DEFAULT_BATCH, OutputFile
from app.config import Settings
from app.features.offline import write_event_log
from app.main import load_model
from app.redis_server import RedisProcess
from app.training.simulate import SimulationConfig, simulate

SECRET = "bench-only-id-secret-of-at-least-32-bytes"


def history(users: int, days: int, now: datetime) -> pd.DataFrame:
    """Simulated events shifted so that the last one lies a minute before now."""
    log = simulate(SimulationConfig(n_users=users, days=days, seed=11)).events
    ts = pd.to_datetime(log["ts"], utc=True)
    shifted = ts + (now - timedelta(minutes=1) - ts.max().to_pydatetime())
    return log.assign(ts=shifted.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))


def load(settings: Settings, path: Path, chunk_rows: int) -> tuple[BackfillSummary, float]:
    """The summary, and the CPU seconds this process spent (both its threads; Redis's own not counted)."""
    cpu = time.process_time()
    summary = run_on_uvloop(run_backfill(settings, open_event_file(path), chunk_rows, datetime.now(UTC)))
    return summary, time.process_time() - cpu


def line(label: str, loaded: tuple[BackfillSummary, float]) -> str:
    summary, cpu = loaded
    rate = summary.rows / summary.seconds
    return (
        f"  {label:20s} {rate:9,.0f} events/s wall, {summary.rows / cpu:9,.0f} per CPU-second  "
        f"({summary.rows:,} rows in {summary.seconds:.2f} s: {summary.accepted:,} accepted, "
        f"{summary.not_kept:,} not kept, {summary.duplicates:,} duplicates)"
    )


def score(redis_url: str, users: Path, out: Path) -> tuple[float, float]:
    """Users per second of wall time, and per CPU-second of this process (the model on one thread)."""
    torch.set_num_threads(1)  # "one core" for the model; Redis is its own process
    settings = Settings(redis_url=redis_url, redis_prefix="bench", id_secret=SECRET, device="cpu")  # type: ignore[arg-type]
    model = load_model(settings)
    output = OutputFile(out)
    cpu = time.process_time()
    try:
        summary = run_on_uvloop(
            run_score_batch(settings, model, users, output, "user_id", DEFAULT_BATCH, datetime.now(UTC))
        )
    finally:
        output.close()
    return summary.users / summary.seconds, summary.users / (time.process_time() - cpu)


def score_in_a_new_process(redis_url: str, users: Path, out: Path) -> tuple[float, float]:
    """`score` in a process of its own, as `python -m app score-batch` runs: the same process after the
    backfills (their history and heap still there) scored slower, by how much varying run to run."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(score, redis_url, users, out).result()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120, help="history length; the store keeps 91 days")
    parser.add_argument("--formats", default="csv,parquet,jsonl")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--score-users", type=int, default=200_000)
    parser.add_argument("--score-runs", type=int, default=3)
    args = parser.parse_args()
    log = history(args.users, args.days, datetime.now(UTC))
    print(f"history: {len(log):,} events of {log['user_id'].nunique():,} users over {args.days} days")
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        server = RedisProcess(Path(folder) / "redis")
        server.start()
        try:
            settings = Settings(redis_url=server.url, redis_prefix="bench", id_secret=SECRET, device="cpu")  # type: ignore[arg-type]
            for kind in args.formats.split(","):
                path = Path(folder) / f"events.{kind}"
                write_event_log(log, path)
                with redis.Redis.from_url(server.url) as client:
                    client.flushall()
                print(f"backfill {kind} ({path.stat().st_size / 1e6:,.0f} MB):")
                print(line("into an empty store", load(settings, path, args.chunk_rows)))
                print(line("again (all there)", load(settings, path, args.chunk_rows)))
            users = Path(folder) / "users.txt"
            known = log["user_id"].unique().tolist()
            ids = (known * (args.score_users // len(known) + 1))[: args.score_users]
            users.write_text("\n".join(ids) + "\n")
            print(
                f"score-batch ({len(ids):,} ids in batches of {DEFAULT_BATCH:,}, with reasons, to Parquet; "
                f"{args.score_runs} runs, each in a new process):"
            )
            runs = []
            for _ in range(args.score_runs):
                runs.append(score_in_a_new_process(server.url, users, Path(folder) / "scores.parquet"))
                print(f"  {runs[-1][0]:9,.0f} users/s wall, {runs[-1][1]:9,.0f} per CPU-second")
            wall, per_cpu = (statistics.median(figures) for figures in zip(*runs, strict=True))
            print(f"  median {wall:9,.0f} users/s wall, {per_cpu:9,.0f} per CPU-second")
        finally:
            server.stop()
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
