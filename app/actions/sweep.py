"""The sweep: every so often, one replica scores every user in the user directory, so that users who
went quiet are scored, and warned about, without anybody asking for them.

Risk rises with silence, but a user is otherwise scored only when the platform asks. The sweep reads
the directory (app/features/directory.py) a page at a time and puts each page through the scoring
pipeline like a request (with reasons): the warning emitter watching the pipeline sees the answers, so
a user who crossed into the high-risk tier gets one warning, within the cool-down, whichever replica
or path scored them.

One replica a turn: a replica sweeps only when it takes the turn, `SET <prefix>:sweep:turn NX PX
interval`; the others find the key and wait. The turn lapses after the interval, so the sweep runs about
once an interval, and a replica that dies mid-sweep only delays the next one. (A sweep longer than the
interval may overlap the next replica's: the warnings' cool-down keeps that to one message a user.)

Live traffic comes first: a page refused admission (queue full) or past its deadline is retried after a
pause, and the sweep never goes faster than CHURN_SWEEP_MAX_USERS_PER_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Final

from redis.exceptions import RedisError

from app import metrics
from app.config import Settings
from app.features.directory import IdSealer, known_users
from app.features.online import OnlineFeatureStore
from app.model.batcher import BatcherStopped, DeadlineExceeded, QueueFull
from app.model.scoring import ScoringService
from app.redis_client import PoolExhausted, StoreClient

log = logging.getLogger(__name__)

BUSY_PAUSE_S: Final = 0.05  # after a refused page: the queue drains in tens of milliseconds
TURN_POLLS_PER_INTERVAL: Final = 4  # how often a replica without the turn looks again


@dataclass(frozen=True)
class SweepSettings:
    prefix: str
    interval_s: float
    page_users: int
    max_users_per_s: float


def turn_key(prefix: str) -> str:
    return f"{prefix}:sweep:turn"


class Sweep:
    def __init__(
        self, redis: StoreClient, sealer: IdSealer, scoring: ScoringService, settings: SweepSettings
    ) -> None:
        self._redis = redis
        self._sealer = sealer
        self._scoring = scoring
        self._settings = settings
        self._replica = f"{os.uname().nodename}:{os.getpid()}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = self._settings.interval_s
        while True:
            try:
                if await self._take_turn():
                    await self.sweep_once()
            except BatcherStopped:
                return  # shutting down
            except (RedisError, PoolExhausted, OSError) as error:
                metrics.SWEEPS.labels("failed").inc()
                log.warning("sweep failed (%s); the next turn starts over", error)
            await asyncio.sleep(interval / TURN_POLLS_PER_INTERVAL)

    async def _take_turn(self) -> bool:
        milliseconds = max(1, round(self._settings.interval_s * 1000))
        return bool(
            await self._redis.set(turn_key(self._settings.prefix), self._replica, nx=True, px=milliseconds)
        )

    async def sweep_once(self) -> int:
        """Score every user in the directory once; the number scored."""
        started = time.monotonic()
        scored = 0
        pages = known_users(self._redis, self._settings.prefix, self._sealer, self._settings.page_users)
        async for page in pages:
            if page:
                await self._score(page)
                scored += len(page)
                metrics.SWEEP_USERS.inc(len(page))
            ahead = scored / self._settings.max_users_per_s - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        metrics.SWEEPS.labels("completed").inc()
        metrics.SWEEP_LAST_SECONDS.set(time.monotonic() - started)
        log.info("sweep scored %d users in %.1f s", scored, time.monotonic() - started)
        return scored

    async def _score(self, page: list[str]) -> None:
        while True:
            try:
                await self._scoring.score(page, explain=True)
                return
            except (QueueFull, DeadlineExceeded, PoolExhausted):
                await asyncio.sleep(BUSY_PAUSE_S)  # live traffic first


def start_sweep(
    settings: Settings, redis: StoreClient, store: OnlineFeatureStore, scoring: ScoringService
) -> Sweep | None:
    """The sweep as the settings ask for it, running; None when it is off."""
    if not settings.sweep_interval_s or store.directory is None:
        return None
    sweep = Sweep(
        redis,
        store.directory,
        scoring,
        SweepSettings(
            settings.redis_prefix,
            settings.sweep_interval_s,
            settings.sweep_page_users,
            settings.sweep_max_users_per_s,
        ),
    )
    sweep.start()
    return sweep
