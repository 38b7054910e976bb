"""Test-split metrics, thresholds chosen on validation, and calibration by bins."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
)

Vector = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]
CALIBRATION_BINS = 10


def require_both_outcomes(y: Labels, split: str) -> None:
    """ROC AUC, PR AUC, lift and gains compare churners with stayers: say so when a split has one kind."""
    churned = int(y.sum())
    if churned in (0, len(y)):
        who = "every" if churned else "no"
        raise ValueError(
            f"{who} {split} user churned ({churned} of {len(y)}): measures that compare churners with "
            "users who stay are undefined"
        )


def f1_threshold(y: Labels, probability: Vector) -> float:
    """The probability threshold with the best F1 (chosen on validation, applied to test)."""
    precision, recall, thresholds = precision_recall_curve(y, probability)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def _bin_of(probability: Vector, bins: int) -> npt.NDArray[np.intp]:
    edges = np.linspace(0, 1, bins + 1)
    return np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)


def expected_calibration_error(y: Labels, probability: Vector, bins: int = CALIBRATION_BINS) -> float:
    which = _bin_of(probability, bins)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(probability[inside].mean() - y[inside].mean())
    return float(error)


def calibration_bins(y: Labels, probability: Vector, bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """The bins ECE is computed over, with how many users each holds: a bin of 12 users that is off by
    0.2 says little, one of 5,000 says a lot. Empty bins have None for their rates."""
    which = _bin_of(probability, bins)
    rows = []
    for b in range(bins):
        inside = which == b
        users = int(inside.sum())
        rows.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "users": users,
                "mean_predicted": float(probability[inside].mean()) if users else None,
                "observed_churn_rate": float(y[inside].mean()) if users else None,
            }
        )
    return rows


def top_decile_lift(y: Labels, score: Vector) -> float:
    """Rate of y=1 among the 10% highest scores, over the overall rate."""
    top = np.argsort(-score, kind="stable")[: max(1, len(score) // 10)]
    return float(y[top].mean() / y.mean())


def roc_auc_interval(y: Labels, score: Vector, seed: int, resamples: int = 500) -> tuple[float, float]:
    """A 95% bootstrap interval of ROC AUC over test users: how much of a gap is noise.

    A resample is a count per user, so each AUC is one weighted pass over the scores sorted once
    (sklearn's roc_auc_score per resample took seconds per model; the values are the same).
    """
    rng = np.random.default_rng(seed)
    order = np.argsort(score, kind="stable")
    tie_group = np.concatenate(([0], np.cumsum(np.diff(score[order]) != 0)))
    churned = y[order].astype(np.float64)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):
            counts = np.bincount(pick, minlength=len(y))[order].astype(np.float64)
            values.append(_weighted_auc(tie_group, counts * churned, counts * (1 - churned)))
    if not values:
        raise ValueError(f"no bootstrap resample of the {len(y)} test users holds both outcomes")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _weighted_auc(tie_group: npt.NDArray[np.intp], positive: Vector, negative: Vector) -> float:
    """P(a positive scores above a negative) + half P(equal scores), over users sorted by score."""
    pos, neg = np.bincount(tie_group, positive), np.bincount(tie_group, negative)
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def metrics(y: Labels, probability: Vector, threshold: float, seed: int = 0) -> dict[str, float]:
    require_both_outcomes(y, "test")
    predicted = probability >= threshold
    auc_low, auc_high = roc_auc_interval(y, probability, seed)
    tp = int((predicted & (y == 1)).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(y.sum()), 1)
    return {
        "roc_auc": float(roc_auc_score(y, probability)),
        "roc_auc_ci95_low": auc_low,
        "roc_auc_ci95_high": auc_high,
        "pr_auc": float(average_precision_score(y, probability)),
        "accuracy": float((predicted == (y == 1)).mean()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
        "brier": float(brier_score_loss(y, probability)),
        "ece": expected_calibration_error(y, probability),
        # Lift is capped at 1 / base rate; with most users churning (CDNOW: 71%) the informative lift is
        # the one for the rarer outcome, the users who stay, ranked by their probability of staying.
        "lift_top_decile_churn": top_decile_lift(y, probability),
        "lift_top_decile_retained": top_decile_lift(1 - y, 1 - probability),
        "threshold": threshold,
    }


def paired_difference(
    y: Labels, model: Vector, reference: Vector, seed: int, resamples: int = 1000
) -> dict[str, float]:
    """Paired bootstrap over test users of (model minus reference) in ROC AUC and in Brier score.

    Both models are scored on the same resampled users in each round, so the interval is that of the
    difference itself: two overlapping per-model intervals can still hide a difference that is always
    of one sign, and this one shows it. Brier: lower is better, so a negative difference favours `model`.
    """
    require_both_outcomes(y, "test")
    rng = np.random.default_rng(seed)
    churned = y.astype(np.float64)
    orders = [np.argsort(p, kind="stable") for p in (model, reference)]
    ties = [
        np.concatenate(([0], np.cumsum(np.diff(p[order]) != 0)))
        for p, order in zip((model, reference), orders, strict=True)
    ]
    squared_gap = (model - churned) ** 2 - (reference - churned) ** 2
    auc_gaps, brier_gaps = [], []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(np.float64)
        brier_gaps.append(float((counts * squared_gap).sum() / counts.sum()))
        if 0 < (counts * churned).sum() < counts.sum():
            aucs = [
                _weighted_auc(tie, counts[order] * churned[order], counts[order] * (1 - churned[order]))
                for tie, order in zip(ties, orders, strict=True)
            ]
            auc_gaps.append(aucs[0] - aucs[1])
    auc_low, auc_high = np.percentile(auc_gaps, [2.5, 97.5])
    brier_low, brier_high = np.percentile(brier_gaps, [2.5, 97.5])
    return {
        "roc_auc_difference": float(roc_auc_score(y, model) - roc_auc_score(y, reference)),
        "roc_auc_ci95_low": float(auc_low),
        "roc_auc_ci95_high": float(auc_high),
        "brier_difference": float(squared_gap.mean()),
        "brier_ci95_low": float(brier_low),
        "brier_ci95_high": float(brier_high),
        "resamples": resamples,
        "seed": seed,
    }
