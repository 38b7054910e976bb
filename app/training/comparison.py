"""What the report compares: the run's snapshots, the gain of several snapshots over one, and the MLP
against the best baseline by a paired bootstrap over test users."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from app.training.datasets import Labelled, Splits
from app.training.evaluate import Labels, Vector, paired_difference
from app.training.plots import label

BOOTSTRAP_RESAMPLES = 1000


def snapshot_rates(splits: Splits) -> list[dict[str, Any]]:
    """Each training snapshot's rows and churn rate (training and validation users), then the test's."""
    fit = [splits.train, splits.validation]
    rows = []
    for at in sorted({t for part in fit for t in part.snapshots}):
        y = np.concatenate([part.y[part.as_of == at] for part in fit])
        rows.append(_rate(f"training snapshot {_day(at)}", y))
    for at in splits.test.snapshots:
        rows.append(_rate(f"test {_day(at)}", splits.test.y[splits.test.as_of == at]))
    return rows


def snapshot_gain(
    y_test: Labels, several: dict[str, Vector], single: dict[str, Vector], snapshots: int, seed: int
) -> list[dict[str, Any]]:
    """Test ROC AUC and Brier of each model trained on the latest snapshot alone and on all of them.

    The MLP's row also holds the paired bootstrap interval of (several minus one): the served network
    changes with the snapshots, and it must not get worse.
    """
    rows = []
    for name in several:
        if name not in single:
            continue
        row: dict[str, Any] = {"model": name, "snapshots": snapshots}
        for key, p in (("single", single[name]), ("several", several[name])):
            row[f"{key}_roc_auc"] = float(roc_auc_score(y_test, p))
            row[f"{key}_brier"] = float(brier_score_loss(y_test, p))
        if name == "mlp":
            row["paired"] = paired_difference(y_test, several[name], single[name], seed, BOOTSTRAP_RESAMPLES)
        rows.append(row)
    return rows


def against_best_baseline(y_test: Labels, test_probabilities: dict[str, Vector], seed: int) -> dict[str, Any]:
    """The MLP minus the strongest baseline on test, for ROC AUC and for Brier, with paired 95% intervals.

    The strongest baseline is picked on the test split itself, per measure: the hardest comparison for
    the MLP, so "not worse" here is not flattered by the choice.
    """
    others = {name: p for name, p in test_probabilities.items() if name != "mlp"}
    if not others:
        raise ValueError("no baseline completed: nothing to compare the MLP with")
    best_auc = max(others, key=lambda n: roc_auc_score(y_test, others[n]))
    best_brier = min(others, key=lambda n: brier_score_loss(y_test, others[n]))
    mlp = test_probabilities["mlp"]
    auc = paired_difference(y_test, mlp, others[best_auc], seed, BOOTSTRAP_RESAMPLES)
    brier = paired_difference(y_test, mlp, others[best_brier], seed, BOOTSTRAP_RESAMPLES)
    worse = auc["roc_auc_ci95_high"] < 0 or brier["brier_ci95_low"] > 0
    better = auc["roc_auc_ci95_low"] > 0 and brier["brier_ci95_high"] < 0
    return {
        "best_by_roc_auc": best_auc,
        "roc_auc": {k: auc[k] for k in ("roc_auc_difference", "roc_auc_ci95_low", "roc_auc_ci95_high")},
        "best_by_brier": best_brier,
        "brier": {k: brier[k] for k in ("brier_difference", "brier_ci95_low", "brier_ci95_high")},
        "resamples": BOOTSTRAP_RESAMPLES,
        "seed": seed,
        "verdict": "better" if better else "worse" if worse else "not distinguishable",
    }


def snapshot_table(rates: list[dict[str, Any]]) -> str:
    rows = [f"| {r['rows']} | {r['rows_count']:,} | {r['churn_rate']:.3f} |" for r in rates]
    return "\n".join(["| rows | count | churn rate |", "|---|---|---|", *rows])


def gain_table(gain: list[dict[str, Any]]) -> str:
    k = gain[0]["snapshots"] if gain else 0
    header = (
        "| model | ROC AUC, 1 snapshot | ROC AUC, "
        f"{k} snapshots | gain | Brier, 1 snapshot | Brier, {k} snapshots | gain |"
    )
    rows = [
        f"| {label(g['model'])} | {g['single_roc_auc']:.4f} | {g['several_roc_auc']:.4f} | "
        f"{g['several_roc_auc'] - g['single_roc_auc']:+.4f} | {g['single_brier']:.4f} | "
        f"{g['several_brier']:.4f} | {g['single_brier'] - g['several_brier']:+.4f} |"
        for g in gain
    ]
    lines = [header, "|---|---|---|---|---|---|---|", *rows]
    for g in gain:
        if "paired" in g:
            p = g["paired"]
            lines += [
                "",
                f"MLP, {k} snapshots minus 1, paired bootstrap over test users ({p['resamples']} "
                f"resamples): ROC AUC {p['roc_auc_difference']:+.4f} (95% interval "
                f"{p['roc_auc_ci95_low']:+.4f} to {p['roc_auc_ci95_high']:+.4f}), Brier "
                f"{p['brier_difference']:+.4f} ({p['brier_ci95_low']:+.4f} to {p['brier_ci95_high']:+.4f}).",
            ]
    return "\n".join(lines)


def comparison_text(result: dict[str, Any]) -> str:
    auc, brier = result["roc_auc"], result["brier"]
    verdict = {
        "better": "The MLP is better than the best baseline on both measures: both intervals exclude 0.",
        "worse": "The MLP is worse than the best baseline: an interval lies wholly on the losing side.",
        "not distinguishable": "The MLP is not distinguishable from the best baseline: an interval "
        "includes 0, so this test split cannot say which is better on that measure.",
    }[result["verdict"]]
    return "\n".join(
        [
            "| measure | best baseline | MLP minus baseline | 95% interval |",
            "|---|---|---|---|",
            f"| ROC AUC (higher is better) | {label(result['best_by_roc_auc'])} | "
            f"{auc['roc_auc_difference']:+.4f} | {auc['roc_auc_ci95_low']:+.4f} to "
            f"{auc['roc_auc_ci95_high']:+.4f} |",
            f"| Brier (lower is better) | {label(result['best_by_brier'])} | "
            f"{brier['brier_difference']:+.4f} | {brier['brier_ci95_low']:+.4f} to "
            f"{brier['brier_ci95_high']:+.4f} |",
            "",
            verdict,
        ]
    )


def _rate(rows: str, y: Labels) -> dict[str, Any]:
    return {"rows": rows, "rows_count": len(y), "churn_rate": float(y.mean()) if len(y) else float("nan")}


def _day(at: int) -> str:
    return f"{pd.Timestamp(at, unit='s'):%Y-%m-%d}"


def users(part: Labelled) -> int:
    return int(part.user_ids.nunique())
