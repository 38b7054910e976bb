"""Scoring as one pipeline: user ids of concurrent requests in, typed results out.

A request is admitted (or refused before any work), queued as a job of user ids with the model it was
admitted with, and awaited. Each gathered batch then does every expensive step once: one MGET, one
feature computation, one scaling, one forward pass (and one backward when any job wants reasons), one
post-processing; each job gets its slice. A model swap between admission and inference never mixes
versions: jobs are grouped by the model they carry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from app import metrics
from app.clock import Clock
from app.features import spec
from app.features.compute import FloatMatrix
from app.features.online import OnlineFeatureStore
from app.model.batcher import Job, MicroBatcher, QueueFull
from app.model.results import ScoredRows, ScoreResult
from app.model.scorer import ChurnModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreAsk:
    user_ids: list[str]
    explain: bool
    model: ChurnModel


ScoreJob = Job[ScoreAsk, ScoreResult]


@dataclass(frozen=True)
class ScoredBatch:
    """What one model scored in one batch, for observers (warnings, shadow models, drift): the users as
    the callers named them, their raw served features, and the answers, row-aligned."""

    user_ids: list[str]
    raw: FloatMatrix
    scored: ScoredRows
    model: ChurnModel
    scored_at: datetime


# Called on the event loop as a batch finishes, just before its requests get their answers: an observer
# must be quick (a few microseconds a user) and hand any I/O to a task of its own. A failing observer is
# logged and never fails the batch.
BatchObserver = Callable[[ScoredBatch], None]


class ScoringService:
    def __init__(
        self,
        store: OnlineFeatureStore,
        model: ChurnModel,
        clock: Clock,
        *,
        max_rows: int,
        max_delay_s: float,
        queue_max_rows: int,
        queue_max_wait_s: float = float("inf"),
        overload_pause_s: float = 0.0,
        deadline_s: float,
        explain_top_k: int,
    ) -> None:
        self._store = store
        self._model = model
        self._clock = clock
        self._deadline_s = deadline_s
        self._overload_pause_s = overload_pause_s
        self._top_k = explain_top_k
        self._observers: list[BatchObserver] = []
        self.batcher: MicroBatcher[ScoreAsk, ScoreResult] = MicroBatcher(
            self._process, max_rows, max_delay_s, queue_max_rows, queue_max_wait_s
        )

    @property
    def model(self) -> ChurnModel:
        return self._model

    def swap_model(self, model: ChurnModel) -> None:
        """Serve `model` from now on; jobs already admitted finish with the model they were admitted with."""
        self._model = model

    def observe(self, observer: BatchObserver) -> None:
        """Have `observer` see every scored batch from now on."""
        self._observers.append(observer)

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    def has_room(self, rows: int = 1) -> bool:
        return self.batcher.has_room(rows)

    def submit(self, user_ids: list[str], explain: bool) -> ScoreJob:
        """Admit and queue; raises QueueFull or BatcherStopped before any work is done."""
        return self.batcher.submit(ScoreAsk(user_ids, explain, self._model), len(user_ids), self._deadline_s)

    async def refuse(self) -> QueueFull:
        """The overload refusal of a request, once the overload pause has passed (see the setting)."""
        if self._overload_pause_s > 0:
            await asyncio.sleep(self._overload_pause_s)
        return QueueFull()

    async def score(self, user_ids: list[str], explain: bool) -> ScoreResult:
        """Admit, queue and await one request's scores (in request order), or DeadlineExceeded."""
        return await self.submit(user_ids, explain).future

    async def _process(self, jobs: list[ScoreJob]) -> list[ScoreResult]:
        scored_at = self._clock.now()
        user_ids = [user for job in jobs for user in job.payload.user_ids]
        blobs = await self._store.fetch(user_ids)
        started = time.perf_counter()
        raw, known = self._store.features(blobs, spec.unix_seconds(scored_at))
        metrics.FEATURE_SECONDS.observe(time.perf_counter() - started)
        models = {id(job.payload.model): job.payload.model for job in jobs}
        if len(models) == 1:
            return self._score_group(jobs, raw, known, user_ids, scored_at)
        # Two models only when a swap happened while jobs were queued: each group scores on its own.
        starts = np.cumsum([0] + [job.rows for job in jobs]).tolist()
        results: dict[int, ScoreResult] = {}
        for model in models.values():
            members = [i for i, job in enumerate(jobs) if job.payload.model is model]
            rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in members])
            group = [jobs[i] for i in members]
            ids = [user for job in group for user in job.payload.user_ids]
            answers = self._score_group(group, raw[rows], known[rows], ids, scored_at)
            results.update(zip(members, answers, strict=True))
        return [results[i] for i in range(len(jobs))]

    def _score_group(
        self,
        jobs: list[ScoreJob],
        raw: FloatMatrix,
        known: npt.NDArray[np.bool_],
        user_ids: list[str],
        scored_at: datetime,
    ) -> list[ScoreResult]:
        """Jobs admitted with one model: one scoring pass, then each job's slice of the answers."""
        model = jobs[0].payload.model
        explain = any(job.payload.explain for job in jobs)
        started = time.perf_counter()
        scored = model.score(raw, known, explain, self._top_k)
        with_reasons = [job.payload.explain for job in jobs for _ in range(job.rows)]
        users = scored.users(user_ids, with_reasons)
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        answers, offset = [], 0
        for job in jobs:
            answers.append(ScoreResult(model.version, scored_at, users[offset : offset + job.rows]))
            offset += job.rows
        if self._observers:
            self._notify(ScoredBatch(user_ids, raw, scored, model, scored_at))
        return answers

    def _notify(self, batch: ScoredBatch) -> None:
        for observer in self._observers:
            try:
                observer(batch)
            except Exception:  # an observer's bug must not cost the callers their answers
                log.exception("batch observer %r failed", observer)
