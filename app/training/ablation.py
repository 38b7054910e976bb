"""Ablation: what each part of the input adds, measured on the test split.

Variants: every feature with several training snapshots (the run as configured), the latest snapshot
alone, and each feature group left out. A left-out group's columns are set to 0 in every split, so they
carry no information while the network keeps the shape the bundle format fixes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

from app.features import spec
from app.training import baselines
from app.training.comparison import BOOTSTRAP_RESAMPLES
from app.training.datasets import Labelled, Splits
from app.training.evaluate import paired_difference
from app.training.fail_soft import PartLog
from app.training.models import fit_all
from app.training.pipeline import TrainingJob
from app.training.plots import label
from app.training.progress import progress
from app.training.train import TrainConfig

# Feature groups by name prefix, in the order of the specification.
GROUPS: dict[str, tuple[str, ...]] = {
    "sessions and page views": ("session_start_", "page_view_"),
    "cart": ("add_to_cart_", "remove_from_cart_", "cart_conversion_"),
    "purchases": ("purchase_count_", "purchase_amount_", "purchase_gap_", "lifetime_"),
    "refunds": ("refund_",),
    "reviews": ("review_", "low_rating_"),
    "support contacts": ("support_contact_",),
    "recency": ("days_since_",),
    "tenure": ("tenure_",),
    "purchase regularity": ("purchase_period_share_", "purchase_days_", "purchase_overdue_"),
    "decayed spend": ("spend_decayed_",),
    "trends": ("trend_",),
}
MODELS = {"logistic_regression": baselines.logistic_regression}


def group_columns(group: str) -> list[int]:
    prefixes = GROUPS[group]
    return [i for i, name in enumerate(spec.FEATURE_NAMES) if name.startswith(prefixes)]


def without(splits: Splits, columns: list[int]) -> Splits:
    def blank(part: Labelled) -> Labelled:
        X = part.X.copy()
        X[:, columns] = 0.0
        return replace(part, X=X)

    return Splits(blank(splits.train), blank(splits.validation), blank(splits.test))


def variants(splits: Splits) -> dict[str, Splits]:
    k = len(splits.train.snapshots)
    out = {f"all features, {k} snapshots": splits}
    if k > 1:
        out["all features, latest snapshot only"] = splits.latest_snapshot()
    for group in GROUPS:
        out[f"without {group}, {k} snapshots"] = without(splits, group_columns(group))
    return out


def run(job: TrainingJob, config: TrainConfig) -> list[dict[str, Any]]:
    """A row per (variant, model); every variant after the first holds the paired bootstrap interval of
    its difference from the first (all features): on the same test users that is much narrower than
    either ROC AUC's own interval, and it is what says whether leaving a group out costs anything."""
    rows = []
    y = job.splits.test.y
    reference: dict[str, Any] = {}
    for name, splits in progress(variants(job.splits).items(), desc="ablation", unit="variant"):
        fitted = fit_all(job.events, splits, job.horizon_days, config, MODELS, PartLog())
        settings = fitted.settings | {"mlp": {"kept_epoch": fitted.mlp.stopping.kept_epoch}}
        for model, (_, test_p) in fitted.scores.items():
            row = {
                "variant": name,
                "model": model,
                "roc_auc": float(roc_auc_score(y, test_p)),
                "brier": float(brier_score_loss(y, test_p)),
                "settings": settings.get(model, {}),
            }
            if model in reference:
                row["minus_all_features"] = paired_difference(
                    y, test_p, reference[model], config.seed, BOOTSTRAP_RESAMPLES
                )
            else:
                reference[model] = test_p
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    header = "| variant | " + " | ".join(
        f"{label(m)} ROC AUC | {label(m)} change (95% interval) | {label(m)} Brier" for m in models
    )
    lines = [header + " | logistic regression C |", "|---" * (2 + 3 * len(models)) + "|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        cells = {r["model"]: r for r in rows if r["variant"] == variant}
        values = [
            f"{cells[m]['roc_auc']:.4f} | {_change(cells[m])} | {cells[m]['brier']:.4f}"
            if m in cells
            else "- | - | -"
            for m in models
        ]
        chosen = cells.get("logistic_regression", {}).get("settings", {}).get("C")
        values.append("-" if chosen is None else f"{chosen:g}")
        lines.append(f"| {variant} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _change(row: dict[str, Any]) -> str:
    paired = row.get("minus_all_features")
    if paired is None:
        return "-"
    return (
        f"{paired['roc_auc_difference']:+.4f} ({paired['roc_auc_ci95_low']:+.4f} to "
        f"{paired['roc_auc_ci95_high']:+.4f})"
    )


def empty_groups() -> list[str]:
    """Groups matching no feature (a renamed feature would silently make its group a no-op)."""
    return [g for g in GROUPS if not np.size(group_columns(g))]
