"""Test-split metrics, thresholds chosen on validation, and permutation feature importance."""

from __future__ import annotations

from collections.abc import Callable

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


def f1_threshold(y: Labels, probability: Vector) -> float:
    """The probability threshold with the best F1 (chosen on validation, applied to test)."""
    precision, recall, thresholds = precision_recall_curve(y, probability)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def expected_calibration_error(y: Labels, probability: Vector, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(probability[inside].mean() - y[inside].mean())
    return float(error)


def top_decile_lift(y: Labels, score: Vector) -> float:
    """Rate of y=1 among the 10% highest scores, over the overall rate."""
    top = np.argsort(-score, kind="stable")[: max(1, len(score) // 10)]
    return float(y[top].mean() / y.mean())


def roc_auc_interval(y: Labels, score: Vector, seed: int, resamples: int = 500) -> tuple[float, float]:
    """A 95% bootstrap interval of ROC AUC over test users: how much of a gap is noise."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):
            values.append(roc_auc_score(y[pick], score[pick]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def metrics(y: Labels, probability: Vector, threshold: float, seed: int = 0) -> dict[str, float]:
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


def permutation_importance(
    predict: Callable[[npt.NDArray[np.float64]], Vector],
    X: npt.NDArray[np.float64],
    y: Labels,
    seed: int,
    repeats: int = 3,
) -> Vector:
    """Mean drop in ROC AUC when one column is shuffled (on the test split)."""
    rng = np.random.default_rng(seed)
    base = roc_auc_score(y, predict(X))
    drops = np.zeros(X.shape[1])
    for column in range(X.shape[1]):
        shuffled = X.copy()
        for _ in range(repeats):
            shuffled[:, column] = rng.permutation(X[:, column])
            drops[column] += base - roc_auc_score(y, predict(shuffled))
    return drops / repeats
