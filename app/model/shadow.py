"""A shadow model: a candidate bundle scored on the served batches' rows, never answering anyone.

As a batch observer it only copies (a sample of) the batch's raw features and served answers into a
bounded queue, after the answers are made; a task of its own scores the queue in a thread, off the event
loop, and keeps agreement with the served model over a sliding window: Spearman rank correlation of the
probabilities, the share of rows given the same tier, and the mean absolute difference of probabilities.
When the shadow falls behind, new rows are skipped (and counted), never queued without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from app import metrics
from app.model.drift_monitor import GAUGE_REFRESH_S, sample
from app.model.scorer import ChurnModel
from app.model.scoring import ScoredBatch

log = logging.getLogger("churn")
Vector = npt.NDArray[np.float64]
Tiers = npt.NDArray[np.int64]


def predict(model: ChurnModel, raw: npt.NDArray[np.float64]) -> tuple[Vector, Tiers]:
    """Probabilities and tiers as `model.score` computes them, without counting them as served."""
    scaled = model.bundle.preprocessor.transform(raw).astype(np.float32)
    logits, _ = model.engine.forward(scaled, explain=False)
    probability = model.bundle.calibration.probability(logits.astype(np.float64))
    return probability, model.bundle.tiers.tier_index(probability)


@dataclass(frozen=True)
class Agreement:
    rows: int
    spearman: float | None  # None while undefined: fewer than 2 rows, or a constant side
    tier_agreement: float | None
    mean_abs_difference: float | None


class AgreementWindow:
    """The last `size` pairs of (served, shadow) answers; written by the shadow's thread, read by the loop."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._served = np.zeros(size)
        self._shadow = np.zeros(size)
        self._tiers_agree = np.zeros(size, dtype=bool)
        self._filled = self._next = 0

    def add(self, served: Vector, served_tiers: Tiers, shadow: Vector, shadow_tiers: Tiers) -> None:
        served, shadow = served[-self.size :], shadow[-self.size :]
        agree = (served_tiers == shadow_tiers)[-self.size :]
        with self._lock:
            slots = (self._next + np.arange(len(served))) % self.size
            self._served[slots], self._shadow[slots], self._tiers_agree[slots] = served, shadow, agree
            self._filled = min(self.size, self._filled + len(served))
            self._next = int((self._next + len(served)) % self.size)

    def clear(self) -> None:
        with self._lock:
            self._filled = self._next = 0

    def summary(self) -> Agreement:
        with self._lock:
            n = self._filled
            served, shadow = self._served[:n].copy(), self._shadow[:n].copy()
            agree = self._tiers_agree[:n].copy()
        if not n:
            return Agreement(0, None, None, None)
        return Agreement(
            n, _spearman(served, shadow), float(agree.mean()), float(np.abs(served - shadow).mean())
        )


def mean_ranks(values: Vector) -> Vector:
    """Ranks from 1, ties sharing their mean rank (scipy.stats.rankdata's default, without importing
    scipy.stats, which took more than a second of every start)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, len(values)])
    ranks = np.empty(len(values))
    ranks[order] = (starts + (sizes + 1) / 2)[np.cumsum(first) - 1]
    return ranks


def _spearman(a: Vector, b: Vector) -> float | None:
    ranks_a, ranks_b = mean_ranks(a), mean_ranks(b)  # ties share their mean rank
    if len(a) < 2 or ranks_a.std() == 0 or ranks_b.std() == 0:
        return None
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


class ShadowModel:
    def __init__(self, model: ChurnModel, window_rows: int, rows_per_batch: int, loaded_at: datetime) -> None:
        self.model = model
        self.loaded_at = loaded_at
        self.rows_per_batch = rows_per_batch
        self.window = AgreementWindow(window_rows)
        self.max_pending_rows = 4 * window_rows
        self.rows_skipped = 0
        self._pending: deque[tuple[npt.NDArray[np.float64], Vector, Tiers]] = deque()
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._published = 0.0

    def start(self) -> None:
        metrics.SHADOW_INFO.labels(self.model.version).set(1)
        self._task = asyncio.create_task(self._run(), name=f"shadow {self.model.version}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        metrics.SHADOW_INFO.labels(self.model.version).set(0)
        for gauge in (metrics.SHADOW_SPEARMAN, metrics.SHADOW_TIER_AGREEMENT, metrics.SHADOW_MAD):
            gauge.set(math.nan)
        metrics.SHADOW_WINDOW_ROWS.set(0)

    def observe(self, batch: ScoredBatch) -> None:
        """On the event loop, after the batch's answers are made: copy a sample, nothing more."""
        rows = sample(np.arange(len(batch.user_ids)), self.rows_per_batch)
        if self._pending_rows + len(rows) > self.max_pending_rows:
            self.rows_skipped += len(rows)
            return
        scored = batch.scored
        self._pending.append((batch.raw[rows], scored.probability[rows], scored.tier[rows]))
        self._pending_rows += len(rows)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                # Everything queued so far in one pass: one thread hop and one forward for many batches.
                chunks = [self._pending.popleft() for _ in range(len(self._pending))]
                self._pending_rows -= sum(len(raw) for raw, _, _ in chunks)
                raw, served, served_tiers = (np.concatenate(part) for part in zip(*chunks, strict=True))
                try:
                    await asyncio.to_thread(self._score, raw, served, served_tiers)
                except Exception:  # a shadow's failure is its own: logged, and serving goes on
                    log.exception("shadow model %s failed to score a batch", self.model.version)

    def _score(self, raw: npt.NDArray[np.float64], served: Vector, served_tiers: Tiers) -> None:
        probability, tiers = predict(self.model, raw)
        self.window.add(served, served_tiers, probability, tiers)
        if time.monotonic() - self._published < GAUGE_REFRESH_S:
            return  # ranking the whole window per batch would cost more than scoring it
        self.publish()

    def publish(self) -> Agreement:
        self._published = time.monotonic()
        agreement = self.window.summary()
        metrics.SHADOW_SPEARMAN.set(_or_nan(agreement.spearman))
        metrics.SHADOW_TIER_AGREEMENT.set(_or_nan(agreement.tier_agreement))
        metrics.SHADOW_MAD.set(_or_nan(agreement.mean_abs_difference))
        metrics.SHADOW_WINDOW_ROWS.set(agreement.rows)
        return agreement

    def describe(self) -> dict[str, Any]:
        agreement = self.publish()
        return {
            "version": self.model.version,
            "loaded_at": self.loaded_at,
            "window_rows": self.window.size,
            "rows": agreement.rows,
            "spearman": agreement.spearman,
            "tier_agreement": agreement.tier_agreement,
            "mean_abs_difference": agreement.mean_abs_difference,
            "rows_skipped": self.rows_skipped,
            "rows_pending": self._pending_rows,
        }


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
