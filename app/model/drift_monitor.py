"""The served side of drift: bin counts over the last N served rows, PSI against the bundle's training
distribution, exported as gauges.

It runs as a batch observer on the event loop. Per batch it keeps a sample of at most `rows_per_batch`
rows; once FLUSH_ROWS are kept (or a gauge is due, or the PSI is read) it bins them in a few vectorised
numpy operations, adds their counts and subtracts those of the rows they push out of the window. Binning
a few rows at a time cost as much per batch as binning hundreds: the small batches of single-user
requests paid it on every batch. Only known users count: a user the store has never seen is scored on
empty features, which says nothing about the population the model was trained on.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from app import metrics
from app.model.bundle import DISTRIBUTION
from app.model.drift import SHIFT_ABOVE, STABLE_BELOW, Reference, reference_of, verdict
from app.model.scorer import ChurnModel
from app.model.scoring import ScoredBatch

# Below this many rows PSI mostly measures sampling noise (about bins / rows): gauges stay NaN.
MIN_ROWS = 500
GAUGE_REFRESH_S = 1.0
FLUSH_ROWS = 256  # sampled rows kept before they are binned into the window


def sample(rows: np.ndarray[Any, Any], at_most: int) -> np.ndarray[Any, Any]:
    """At most `at_most` of `rows`, spread evenly over them (a batch is in arrival order)."""
    if len(rows) <= at_most:
        return rows
    return rows[np.linspace(0, len(rows) - 1, at_most).round().astype(np.int64)]


class DriftMonitor:
    def __init__(self, window_rows: int, rows_per_batch: int) -> None:
        self.window_rows = window_rows
        self.rows_per_batch = min(rows_per_batch, window_rows)  # a batch never overwrites itself
        self._model: ChurnModel | None = None
        self._reference: Reference | None = None
        self.note = "no model yet"
        self._refreshed = 0.0

    def follow(self, model: ChurnModel) -> None:
        """Compare against `model`'s training distribution from now on, with an empty window."""
        self._model = model
        self._reference = reference_of(model.bundle)
        self._reset()
        if self._reference is None:
            self.note = (
                f"drift monitoring is off: bundle {model.version} has no {DISTRIBUTION} (made before "
                "bundles stored their training distribution); a bundle trained now has one"
            )
        else:
            self.note = f"served rows against the training distribution of {model.version}"
        self._publish()

    def _reset(self) -> None:
        names = len(self._reference.names) if self._reference else 0
        bins = self._reference.n_bins if self._reference else 1
        self._bins = np.zeros((self.window_rows, names), dtype=np.int16)
        self._counts = np.zeros((names, bins), dtype=np.int64)
        self._filled = self._next = 0
        self._kept: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []  # (raw rows, scores)
        self._kept_rows = 0

    def observe(self, batch: ScoredBatch) -> None:
        if self._reference is None or batch.model is not self._model:
            return  # a batch admitted before a swap is the previous model's
        rows = sample(np.flatnonzero(batch.scored.known), self.rows_per_batch)
        if not len(rows):
            return
        self._kept.append((batch.raw[rows], batch.scored.probability[rows]))  # copies: fancy indexing
        self._kept_rows += len(rows)
        due = time.monotonic() - self._refreshed >= GAUGE_REFRESH_S
        if self._kept_rows >= FLUSH_ROWS or due:
            self._flush()
        if due:
            self._publish()

    def _flush(self) -> None:
        """Bin the kept rows into the window, the newest last."""
        reference = self._reference
        if reference is None or not self._kept:
            return
        raw = np.concatenate([rows for rows, _ in self._kept])[-self.window_rows :]
        scores = np.concatenate([scores for _, scores in self._kept])[-self.window_rows :]
        self._kept, self._kept_rows = [], 0
        new = reference.bin_rows(raw, scores).astype(np.int16)
        slots = (self._next + np.arange(len(new))) % self.window_rows
        leaving = slots[slots < self._filled]  # occupied slots: their rows leave the window
        if len(leaving):
            self._counts -= reference.counts_of(self._bins[leaving].astype(np.int64))
        self._bins[slots] = new
        self._counts += reference.counts_of(new.astype(np.int64))
        self._filled = min(self.window_rows, self._filled + len(new))
        self._next = int((self._next + len(new)) % self.window_rows)

    def psi(self) -> dict[str, float] | None:
        """PSI per feature and of the score, or None while the window holds fewer than MIN_ROWS."""
        self._flush()
        if self._reference is None or self._filled < MIN_ROWS:
            return None
        values = self._reference.psi(self._counts / self._filled)
        return dict(zip(self._reference.names, values.tolist(), strict=True))

    def _publish(self) -> None:
        self._refreshed = time.monotonic()
        psi = self.psi()
        metrics.DRIFT_WINDOW_ROWS.set(self._filled)
        if self._reference is None:
            metrics.SCORE_PSI.set(math.nan)
            return
        for name in self._reference.names[:-1]:
            metrics.FEATURE_PSI.labels(name).set(psi[name] if psi else math.nan)
        metrics.SCORE_PSI.set(psi["score"] if psi else math.nan)

    def describe(self, full: bool = False) -> dict[str, Any]:
        """For /model (a summary) and /model/drift (`full`: every feature with its bin shares)."""
        self._publish()
        psi = self.psi()
        out: dict[str, Any] = {
            "enabled": self._reference is not None,
            "note": self.note,
            "window_rows": self.window_rows,
            "rows": self._filled,
            "min_rows": MIN_ROWS,
            "thresholds": {"stable_below": STABLE_BELOW, "shift_above": SHIFT_ABOVE},
            "score_psi": psi["score"] if psi else None,
        }
        if psi is None:
            return out | {"features_over_shift": None}
        features = {name: value for name, value in psi.items() if name != "score"}
        out["features_over_shift"] = sorted(n for n, v in features.items() if v > SHIFT_ABOVE)
        if full and self._reference is not None:
            served = self._counts / self._filled
            out["series"] = {
                name: {
                    "psi": psi[name],
                    "verdict": verdict(psi[name]),
                    "edges": edges,
                    "training_shares": self._reference.shares[i, : len(edges) + 1].tolist(),
                    "served_shares": served[i, : len(edges) + 1].tolist(),
                }
                for i, name in enumerate(self._reference.names)
                for edges in [[e for e in self._reference.edges[i].tolist() if math.isfinite(e)]]
            }
        return out
