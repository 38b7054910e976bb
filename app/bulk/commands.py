"""The `backfill` and `score-batch` commands: settings from the environment (CHURN_*, as the service),
a Redis client for long pipelines, a progress bar on a terminal, a summary at the end."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from tqdm import tqdm

from app.actions.service import start_warnings_for_batch
from app.bulk.backfill import Backfill, BackfillSummary, format_summary
from app.bulk.readers import EventFile, open_event_file
from app.bulk.score_batch import (
    BatchScorer,
    OutputFile,
    ScoreSummary,
    UserListError,
    directory_batches,
    read_user_ids,
)
from app.bulk.score_batch import format_summary as format_scores
from app.clock import SystemClock
from app.config import Settings
from app.features.offline import EventLogError
from app.features.online import OnlineFeatureStore, store_for
from app.features.pseudonym import IdSecretError, Pseudonyms
from app.model.scorer import ChurnModel
from app.process_tuning import keep_freed_memory
from app.redis_client import HiredisPackingConnection, StoreClient

# One pipeline carries a whole chunk: Redis may take seconds to apply it on a busy machine, far beyond
# the service's per-request timeout.
BULK_TIMEOUT_S: Final = 120.0
EXIT_ROWS_REJECTED: Final = 3
T = TypeVar("T")


def run_on_uvloop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a bulk command's coroutine on uvloop, as the service runs: its transports copy the megabytes
    of a batch's Redis reply fewer times than asyncio's."""
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it on Linux and macOS only
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def connect(settings: Settings) -> StoreClient:
    options: dict[str, Any] = {"socket_timeout": BULK_TIMEOUT_S, "socket_connect_timeout": 5}
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    # TLS and unix-socket URLs keep redis-py's own connection classes, as the service's pool does.
    if settings.redis_url.startswith("redis://"):
        options["connection_class"] = HiredisPackingConnection
    return aredis.Redis.from_url(settings.redis_url, **options)


def open_store(settings: Settings, client: StoreClient) -> tuple[OnlineFeatureStore, Pseudonyms]:
    pseudonyms = Pseudonyms.load(settings.id_secret, settings.id_secret_file)
    return store_for(settings, client, pseudonyms), pseudonyms


def progress_bar(total: int | None, unit: str) -> tqdm:  # type: ignore[type-arg]
    """Drawn only on a terminal: a log file or a pipe gets the summary alone."""
    return tqdm(total=total, unit=unit, unit_scale=True, disable=not sys.stderr.isatty(), file=sys.stderr)


def backfill(events: Path, chunk_rows: int) -> int:
    """Load the file; the exit status: 0 every row stored or already there, EXIT_ROWS_REJECTED some
    rows refused (the summary says which), 1 the file or the store unusable."""
    settings = Settings()
    try:
        source = open_event_file(events)
        summary = run_on_uvloop(run_backfill(settings, source, chunk_rows, SystemClock().now()))
    except (EventLogError, IdSecretError, RedisError, OSError) as error:
        print(f"backfill: {error}", file=sys.stderr)
        return 1
    print(format_summary(summary, str(events)))
    return EXIT_ROWS_REJECTED if summary.rejected_rows else 0


async def run_backfill(
    settings: Settings, source: EventFile, chunk_rows: int, now: datetime
) -> BackfillSummary:
    keep_freed_memory()  # chunks of arrays, allocated and freed over and over, as in the service
    client = connect(settings)
    store, pseudonyms = open_store(settings, client)
    try:
        job = Backfill(store, settings.redis_prefix, pseudonyms, now, chunk_rows=chunk_rows)
        with progress_bar(source.rows(), "rows") as bar:
            return await job.run(source, bar.update)
    finally:
        await store.aclose()
        await client.aclose()


def score_batch(users: Path | None, out: Path, column: str, batch: int, warn: bool) -> int:
    """Score the users listed in `users` (None: every user in the user directory) into `out`, and with
    `warn` hand high-risk answers to the warnings; the exit status: 0 all scored, EXIT_ROWS_REJECTED
    some lines were not user ids (the summary says which), 1 the files, the model or the store unusable."""
    from app.main import load_model
    from app.model.bundle import BundleError

    settings = Settings()
    if warn and not settings.warnings_enabled:
        print("score-batch: --warn needs the warnings on (CHURN_WARNINGS_ENABLED=true)", file=sys.stderr)
        return 1
    try:
        output = OutputFile(out)
        try:
            model = load_model(settings)
            summary = run_on_uvloop(
                run_score_batch(settings, model, users, output, column, batch, SystemClock().now(), warn=warn)
            )
        finally:
            output.close()
    except (UserListError, BundleError, IdSecretError, RedisError, OSError) as error:
        print(f"score-batch: {error}", file=sys.stderr)
        return 1
    print(format_scores(summary, out, model.version))
    return EXIT_ROWS_REJECTED if summary.refused else 0


async def run_score_batch(
    settings: Settings,
    model: ChurnModel,
    users: Path | None,
    output: OutputFile,
    column: str,
    batch: int,
    as_of: datetime,
    *,
    warn: bool = False,
) -> ScoreSummary:
    keep_freed_memory()  # batches of arrays, allocated and freed over and over, as in the service
    client = connect(settings)
    store, pseudonyms = open_store(settings, client)
    warnings = start_warnings_for_batch(settings, client, pseudonyms) if warn else None
    try:
        scorer = BatchScorer(store, model, settings.explain_top_k, warnings.emitter if warnings else None)
        ids = (
            read_user_ids(users, column, batch)
            if users is not None
            else directory_batches(store, client, settings.redis_prefix, batch)
        )
        started = time.perf_counter()
        with progress_bar(None, "users") as bar:
            summary = await scorer.run(ids, output, as_of, bar.update)
        summary.seconds = time.perf_counter() - started
        return summary
    finally:
        if warnings is not None:
            await warnings.stop()
        await store.aclose()
        await client.aclose()
