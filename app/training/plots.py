"""The report's figures as PNG bytes; each one is drawn on its own, so one that cannot be drawn (a curve
that needs both outcomes in the test split) leaves the others."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from app.features import spec
from app.model.postprocess import Segments
from app.training.evaluate import Labels, Vector, calibration_bins, require_both_outcomes

LABELS = {
    "mlp": "MLP",
    "logistic_regression": "logistic regression",
    "gradient_boosting": "gradient boosting",
    "random_forest": "random forest",
    "decision_tree_entropy": "decision tree (entropy)",
    "recency_only": "recency alone",
    "bg_nbd": "BG/NBD",
}
Curve = Callable[[Labels, Vector], tuple[Vector, Vector]]


def label(model: str) -> str:
    return LABELS.get(model, model)


@contextlib.contextmanager
def _figure(**options: Any) -> Iterator[tuple[Any, Any]]:
    """A figure that is closed however its drawing ends (pyplot keeps every open figure alive)."""
    # Constrained layout makes room for every label and legend, which tight_layout did not always do.
    figure, axes = plt.subplots(layout="constrained", **options)
    try:
        yield figure, axes
    finally:
        plt.close(figure)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    # The tight box is a second guard: whatever sticks out of the axes is kept rather than cut.
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _roc(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    require_both_outcomes(y, "test")
    fpr, tpr, _ = roc_curve(y, p)
    return fpr, tpr


def _precision_recall(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    require_both_outcomes(y, "test")
    precision, recall, _ = precision_recall_curve(y, p)
    return recall, precision


def _gains(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    if not y.any():
        raise ValueError("no test user churned: there are no churners to reach")
    reached = np.cumsum(y[np.argsort(-p, kind="stable")]) / y.sum()
    return np.arange(1, len(y) + 1) / len(y), reached


def _gains_retained(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    """Users who stay, reached by contacting the likeliest stayers first. When most users churn, every
    model reaches churners at about the base rate, and this is the curve that tells models apart."""
    if y.all():
        raise ValueError("every test user churned: there are no retained users to reach")
    return _gains(1 - y, 1 - p)


# file -> (curve, title, x label, y label)
CURVES: dict[str, tuple[Curve, str, str, str]] = {
    "roc.png": (_roc, "ROC (test)", "false positive rate", "true positive rate"),
    "pr.png": (_precision_recall, "Precision-recall, churners (test)", "recall", "precision"),
    "gains.png": (
        _gains, "Cumulative gains, churners (test)", "share of users contacted, riskiest first",
        "share of churners reached"
    ),
    "gains_retained.png": (
        _gains_retained, "Cumulative gains, retained users (test)",
        "share of users contacted, likeliest to stay first", "share of retained users reached"
    ),
}  # fmt: skip


def curve(file: str, y: Labels, probabilities: dict[str, Vector]) -> bytes:
    compute, title, xlabel, ylabel = CURVES[file]
    with _figure(figsize=(5.5, 5)) as (fig, ax):
        for name, p in probabilities.items():
            ax.plot(*compute(y, p), label=label(name))
        if file != "pr.png":
            ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="random order")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
        return _png(fig)


def calibration(y: Labels, probabilities: dict[str, Vector]) -> bytes:
    """Observed churn rate per predicted-probability bin (the bins of ECE), above the users per bin."""
    layout = {"nrows": 2, "sharex": True, "gridspec_kw": {"height_ratios": [3, 1.3]}}
    with _figure(figsize=(5.5, 6.5), **layout) as (fig, (top, bottom)):
        for name, p in probabilities.items():
            filled = [b for b in calibration_bins(y, p) if b["users"]]
            predicted = [b["mean_predicted"] for b in filled]
            top.plot(predicted, [b["observed_churn_rate"] for b in filled], "o-", ms=3, label=label(name))
            bottom.plot(
                [(b["lower"] + b["upper"]) / 2 for b in filled], [b["users"] for b in filled], "o-", ms=3
            )
        top.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect calibration")
        top.set(ylabel="observed churn rate", title="Calibration (test, 10 equal-width bins)")
        top.legend(fontsize=7)
        bottom.set(xlabel="predicted churn probability", ylabel="users per bin", yscale="log", xlim=(0, 1))
        return _png(fig)


def ranking(values: Vector, xlabel: str, title: str, shown: int = 15) -> bytes:
    top = np.argsort(-values, kind="stable")[:shown][::-1]
    with _figure(figsize=(7, 5)) as (fig, ax):
        ax.barh([spec.FEATURE_NAMES[i] for i in top], values[top])
        ax.set(xlabel=xlabel, title=title)
        ax.tick_params(axis="y", labelsize=8)
        return _png(fig)


def segment_profiles(segments: Segments, sizes: list[dict[str, Any]]) -> bytes:
    shown = np.argsort(-np.abs(segments.centroids).max(axis=0), kind="stable")[:15]
    names = [f"{s['name']} ({s['users']:,} users, {s['share']:.0%})" for s in sizes]
    features = [spec.FEATURE_NAMES[i] for i in shown]
    with _figure(figsize=(9, 4.5)) as (fig, ax):
        image = ax.imshow(segments.centroids[:, shown], cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xticks(
            range(len(shown)), features, rotation=60, ha="right", rotation_mode="anchor", fontsize=7
        )
        ax.set_title("Segment profiles: centroids in z-units, training users")
        fig.colorbar(image, ax=ax, label="z")
        return _png(fig)
