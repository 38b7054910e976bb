"""Drift: how far served feature vectors and scores have moved from the training distribution.

Training writes `distribution.json` into the bundle: for every feature and for the score, quantile bin
edges computed on the training rows and the share of training rows in each bin. Bin i holds the values
in (edges[i-1], edges[i]]; edges that coincide (a feature that is 0 for most users) are merged, so a
feature can have fewer bins. The population stability index compares served shares with training's:

    PSI = sum over bins (served - training) * ln(served / training)

Common reading: below 0.1 stable, 0.1 to 0.2 a moderate shift, above 0.2 a shift worth acting on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.features import spec
from app.model.bundle import DISTRIBUTION, BundleError, ModelBundle

Vector = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]
Bins = npt.NDArray[np.int64]

DISTRIBUTION_FORMAT = 1
DEFAULT_BINS = 10
SCORE = "score"
# An empty bin on either side would make the logarithm infinite; a share this small stands in for it.
SHARE_FLOOR = 1e-4
STABLE_BELOW, SHIFT_ABOVE = 0.1, 0.2


def _quantile_bins(values: Vector, bins: int) -> dict[str, list[float]]:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return {"edges": edges.tolist(), "shares": (counts / counts.sum()).tolist()}


def distribution(raw: Matrix, scores: Vector, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """The training distribution of every feature (raw, as served) and of the calibrated score."""
    if raw.shape != (len(scores), len(spec.FEATURE_NAMES)) or not len(scores):
        raise ValueError("one row of every feature and one score per training user are needed")
    return {
        "format": DISTRIBUTION_FORMAT,
        "bins": bins,
        "rows": len(scores),
        "features": {name: _quantile_bins(raw[:, i], bins) for i, name in enumerate(spec.FEATURE_NAMES)},
        SCORE: _quantile_bins(scores, bins),
    }


def distribution_files(raw: Matrix, scores: Vector, bins: int = DEFAULT_BINS) -> dict[str, bytes]:
    """`distribution.json` as an extra file of `save_bundle`."""
    text = json.dumps(distribution(raw, scores, bins), indent=2, sort_keys=True) + "\n"
    return {DISTRIBUTION: text.encode()}


@dataclass(frozen=True)
class Reference:
    """A bundle's training distribution as padded arrays: row j is feature j, the last row the score."""

    names: tuple[str, ...]  # the features, then "score"
    edges: Matrix  # (names, most edges), padded with +inf (no value lies above it)
    shares: Matrix  # (names, most edges + 1), padded with 0 (bins that do not exist)
    rows: int  # training rows the shares were counted on

    @property
    def n_bins(self) -> int:
        return int(self.shares.shape[1])

    def bin_rows(self, raw: Matrix, scores: Vector) -> Bins:
        """(rows, names) bin indices: per value, how many of its series' edges lie below it."""
        values = np.concatenate([raw, scores[:, None]], axis=1)
        bins: Bins = np.zeros(values.shape, dtype=np.int64)
        # One edge of every series at a time: cheaper than one 3-d comparison summed over its short last
        # axis, and this runs on every scored batch.
        for edge in self.edges.T:
            bins += values > edge
        return bins

    def counts_of(self, bins: Bins) -> Bins:
        """Per series, how many of `bins`' rows fall in each bin: (names, n_bins)."""
        offsets = np.arange(len(self.names)) * self.n_bins
        flat = np.bincount((bins + offsets).ravel(), minlength=len(self.names) * self.n_bins)
        counts: Bins = flat.reshape(len(self.names), self.n_bins)
        return counts

    def psi(self, served_shares: Matrix) -> Vector:
        """The population stability index of each series (padded bins add 0: both floors are equal)."""
        served = np.maximum(served_shares, SHARE_FLOOR)
        trained = np.maximum(self.shares, SHARE_FLOOR)
        psi: Vector = ((served - trained) * np.log(served / trained)).sum(axis=1)
        return psi


def reference_of(bundle: ModelBundle) -> Reference | None:
    """The bundle's training distribution; None for a bundle without one; BundleError when malformed
    (the bundle is then refused, as any other bad part of it)."""
    data = bundle.distribution
    if data is None:
        return None
    try:
        return parse_reference(data)
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(
            f"model bundle {bundle.path}: check '{DISTRIBUTION}' failed: {error or type(error).__name__}"
        ) from error


def parse_reference(data: dict[str, Any]) -> Reference:
    if data.get("format") != DISTRIBUTION_FORMAT:
        raise ValueError(f"format {data.get('format')!r} != {DISTRIBUTION_FORMAT}")
    features = data["features"]
    if set(features) != set(spec.FEATURE_NAMES):
        raise ValueError("its features differ from those of app/features/spec.py")
    series = [*(features[name] for name in spec.FEATURE_NAMES), data[SCORE]]
    names = (*spec.FEATURE_NAMES, SCORE)
    most = max(len(s["edges"]) for s in series)
    edges = np.full((len(series), most), np.inf)
    shares = np.zeros((len(series), most + 1))
    for row, (name, one) in enumerate(zip(names, series, strict=True)):
        cut, share = np.asarray(one["edges"], dtype=np.float64), np.asarray(one["shares"], dtype=np.float64)
        if not np.isfinite(cut).all() or (np.diff(cut) <= 0).any():
            raise ValueError(f"{name}: edges must be finite and strictly ascending")
        if len(share) != len(cut) + 1 or (share < 0).any() or not math.isclose(share.sum(), 1, abs_tol=1e-6):
            raise ValueError(f"{name}: shares must be one per bin, non-negative, summing to 1")
        edges[row, : len(cut)] = cut
        shares[row, : len(share)] = share
    rows = int(data["rows"])
    if rows < 1:
        raise ValueError("rows must be at least 1")
    return Reference(names, edges, shares, rows)


def verdict(psi: float) -> str:
    if psi < STABLE_BELOW:
        return "stable"
    return "moderate" if psi <= SHIFT_ABOVE else "shift"
