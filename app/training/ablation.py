"""Ablation: what each part of the input adds, measured on the test split.

Variants: every feature with several training snapshots (the run as configured), the latest snapshot
alone, each feature group left out, and one candidate added. A left-out group's columns are set to 0 in
every split, so they carry no information while the network keeps the shape the bundle format fixes.
The candidate, BG/NBD's probability of no purchase in the horizon (app/training/bgnbd_feature.py), is a
column more: the specification takes it only if its row shows a gain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

from app.features import spec
from app.training import baselines, bgnbd_feature
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


@dataclass(frozen=True)
class Variant:
    splits: Splits
    features: tuple[spec.Feature, ...] = spec.FEATURES  # names the splits' columns
    dropped: str | None = None  # why a candidate could not be built: a row saying so, nothing fitted
    note: str | None = None  # what the candidate was fitted to, printed under the table


def variants(splits: Splits, horizon_days: int) -> dict[str, Variant]:
    k = len(splits.train.snapshots)
    out = {f"all features, {k} snapshots": Variant(splits)}
    if k > 1:
        out["all features, latest snapshot only"] = Variant(splits.latest_snapshot())
    for group in GROUPS:
        out[f"without {group}, {k} snapshots"] = Variant(without(splits, group_columns(group)))
    out[f"with BG/NBD P(no purchase in {horizon_days} days), {k} snapshots"] = with_bg_nbd(
        splits, horizon_days
    )
    return out


def with_bg_nbd(splits: Splits, horizon_days: int) -> Variant:
    """Every feature plus BG/NBD's probability of no purchase in the horizon, its four parameters
    fitted on the training users' latest rows (app/training/bgnbd_feature.py); dropped, with the
    reason, when the fit fails or lands on a boundary."""
    try:
        model = bgnbd_feature.fit(splits.train.latest().X)
    except Exception as error:  # a boundary, or lifetimes' ConvergenceError: the candidate is dropped
        return Variant(splits, dropped=f"{type(error).__name__}: {error}")

    def add(part: Labelled) -> Labelled:
        column = model.p_no_purchase(part.X, horizon_days)
        return replace(part, X=np.column_stack([part.X, column]))

    added = Splits(add(splits.train), add(splits.validation), add(splits.test))
    fitted = f"r {model.r:.4g}, alpha {model.alpha:.4g}, a {model.a:.4g}, b {model.b:.4g}"
    return Variant(added, (*spec.FEATURES, bgnbd_feature.FEATURE), note=f"BG/NBD fitted: {fitted}")


def run(job: TrainingJob, config: TrainConfig) -> list[dict[str, Any]]:
    """A row per (variant, model); every variant after the first holds the paired bootstrap interval of
    its difference from the first (all features): on the same test users that is much narrower than
    either ROC AUC's own interval, and it is what says whether leaving a group out costs anything."""
    rows = []
    y = job.splits.test.y
    reference: dict[str, Any] = {}
    for name, variant in progress(
        variants(job.splits, job.horizon_days).items(), desc="ablation", unit="variant"
    ):
        if variant.dropped is not None:
            rows.append({"variant": name, "model": "-", "dropped": variant.dropped})
            continue
        fitted = fit_all(
            job.events, variant.splits, job.horizon_days, config, MODELS, PartLog(), features=variant.features
        )
        if variant.note is not None:
            rows.append({"variant": name, "model": "-", "note": variant.note})
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
    models = list(dict.fromkeys(r["model"] for r in rows if r["model"] != "-"))
    header = "| variant | " + " | ".join(
        f"{label(m)} ROC AUC | {label(m)} change (95% interval) | {label(m)} Brier" for m in models
    )
    lines = [header + " | logistic regression C |", "|---" * (2 + 3 * len(models)) + "|"]
    notes = [f"{r['variant']}: {r['note']}" for r in rows if "note" in r]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        cells = {r["model"]: r for r in rows if r["variant"] == variant}
        if "dropped" in cells.get("-", {}):
            lines.append(f"| {variant} | dropped: {cells['-']['dropped']} |")
            continue
        values = [
            f"{cells[m]['roc_auc']:.4f} | {_change(cells[m])} | {cells[m]['brier']:.4f}"
            if m in cells
            else "- | - | -"
            for m in models
        ]
        chosen = cells.get("logistic_regression", {}).get("settings", {}).get("C")
        values.append("-" if chosen is None else f"{chosen:g}")
        lines.append(f"| {variant} | " + " | ".join(values) + " |")
    return "\n".join([*lines, *(["", *notes] if notes else [])])


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
