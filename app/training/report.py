"""The evaluation report: PNG plots, metrics.json and a Markdown model card, as bundle files."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from app.features import spec
from app.model.postprocess import Segments

Vector = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]
METRIC_COLUMNS = (
    "roc_auc",
    "pr_auc",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "brier",
    "ece",
    "lift_top_decile_churn",
    "lift_top_decile_retained",
)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _roc(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    fpr, tpr, _ = roc_curve(y, p)
    return fpr, tpr


def _precision_recall(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    precision, recall, _ = precision_recall_curve(y, p)
    return recall, precision


def _calibration(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    return predicted, observed


def _gains(y: Labels, p: Vector) -> tuple[Vector, Vector]:
    reached = np.cumsum(y[np.argsort(-p, kind="stable")]) / y.sum()
    return np.arange(1, len(y) + 1) / len(y), reached


# file -> (curve, title, x label, y label, draw the diagonal)
CURVES: dict[str, tuple[Callable[[Labels, Vector], tuple[Vector, Vector]], str, str, str, bool]] = {
    "roc.png": (_roc, "ROC (test)", "false positive rate", "true positive rate", True),
    "pr.png": (_precision_recall, "Precision-recall (test)", "recall", "precision", False),
    "calibration.png": (
        _calibration, "Calibration (test)", "predicted churn probability", "observed churn rate", True
    ),
    "gains.png": (
        _gains, "Cumulative gains (test)", "share of users contacted", "share of churners reached", True
    ),
}  # fmt: skip


def plots(
    y: Labels,
    test_probabilities: dict[str, Vector],
    importance: Vector,
    segments: Segments,
) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for file, (curve, title, xlabel, ylabel, diagonal) in CURVES.items():
        fig, ax = plt.subplots(figsize=(5, 5))
        for name, p in test_probabilities.items():
            ax.plot(*curve(y, p), label=name)
        if diagonal:
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
        out[file] = _png(fig)

    top = np.argsort(-importance)[:15][::-1]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([spec.FEATURE_NAMES[i] for i in top], importance[top])
    ax.set(xlabel="ROC AUC drop when shuffled", title="Permutation importance (MLP, test)")
    out["feature_importance.png"] = _png(fig)

    shown = np.argsort(-np.abs(segments.centroids).max(axis=0))[:15]
    fig, ax = plt.subplots(figsize=(8, 4))
    image = ax.imshow(segments.centroids[:, shown], cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_yticks(range(len(segments.names)), segments.names, fontsize=7)
    ax.set_xticks(range(len(shown)), [spec.FEATURE_NAMES[i] for i in shown], rotation=70, fontsize=6)
    ax.set_title("Segment profiles (centroids, z-units)")
    fig.colorbar(image, ax=ax)
    out["segments.png"] = _png(fig)
    return {f"report/{name}": data for name, data in out.items()}


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    header = "| model | " + " | ".join(METRIC_COLUMNS) + " | roc_auc 95% CI |"
    rule = "|---" * (len(METRIC_COLUMNS) + 2) + "|"
    rows = [
        f"| {name} | "
        + " | ".join(f"{m[c]:.3f}" for c in METRIC_COLUMNS)
        + f" | {m['roc_auc_ci95_low']:.3f}-{m['roc_auc_ci95_high']:.3f} |"
        for name, m in metrics.items()
    ]
    return "\n".join([header, rule, *rows])


def model_card(context: dict[str, Any], metrics: dict[str, dict[str, float]], segments: Segments) -> str:
    sizes = context["sizes"]
    lines = [
        f"# Model card: {context['version']}",
        "",
        "Churn = no purchase in the horizon after the cutoff, for users with at least one event before it.",
        "",
        f"- Data: {context['dataset']}",
        f"- Horizon: {context['horizon_days']} days",
        f"- Split: {context['split']}",
        f"- Rows: train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']}; "
        f"test churn rate {context['test_churn_rate']:.3f}",
        f"- Network: MLP {context['hidden']}, class-weighted BCE, Adam, early stopping at epoch "
        f"{context['best_epoch']}, Platt calibration on validation",
        f"- Command: `{context['command']}`",
        "",
        "## Test metrics",
        "",
        "Precision, recall, F1 and accuracy at each model's F1-best threshold on validation; "
        "ECE over 10 bins.",
        "",
        metrics_table(metrics),
        "",
        "## Segments (K-Means on scaled features)",
        "",
        *[f"- {name}" for name in segments.names],
        "",
        "## Limits",
        "",
        "- Scores rank users by risk over the stated horizon; they are not causal estimates of any action.",
        "- Trained on the data above; a shift in traffic or catalogue calls for retraining "
        "and re-evaluation.",
        "",
        "Plots: report/roc.png, report/pr.png, report/calibration.png, report/gains.png, "
        "report/feature_importance.png, report/segments.png.",
        "",
    ]
    return "\n".join(lines)


def metrics_json(metrics: dict[str, dict[str, float]]) -> bytes:
    return (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode()
