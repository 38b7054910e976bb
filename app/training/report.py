"""The evaluation report as bundle files: the figures, the Markdown model card and JSON beside them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from app.features import spec
from app.model.postprocess import Segments
from app.training import comparison, plots
from app.training.evaluate import Labels, Vector, calibration_bins
from app.training.fail_soft import PartLog
from app.training.plots import label

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
RANKED = 15


@dataclass(frozen=True)
class Evaluation:
    """What the run measured; None where that part failed."""

    y_test: Labels
    test_probabilities: dict[str, Vector]  # model -> test churn probabilities
    metrics: dict[str, dict[str, float]]  # model -> metric -> value, models whose metrics were computed
    information_gain: Vector | None
    permutation_drop: Vector | None
    segments: Segments
    segment_sizes: list[dict[str, Any]]
    snapshot_rates: list[dict[str, Any]]  # each training snapshot's rows and churn rate, then the test's
    snapshot_gain: list[dict[str, Any]] | None  # None: one snapshot, or the comparison failed
    versus_best_baseline: dict[str, Any] | None


def files(context: dict[str, Any], evaluation: Evaluation, parts: PartLog) -> dict[str, bytes]:
    """Every report file, as bundle paths -> bytes; figures that cannot be drawn are listed as failed."""
    e, y, probabilities = evaluation, evaluation.y_test, evaluation.test_probabilities
    figures = {name: partial(plots.curve, name, y, probabilities) for name in plots.CURVES}
    figures["calibration.png"] = partial(plots.calibration, y, probabilities)
    # (figure, ranking, axis label, title)
    rankings = [
        ("feature_importance.png", e.permutation_drop, "ROC AUC drop when shuffled",
         "Permutation importance (MLP, test)"),
        ("information_gain.png", e.information_gain, "mutual information with the label (nats)",
         "Information gain (training users)"),
    ]  # fmt: skip
    for name, ranking, axis, title in rankings:
        if ranking is not None:
            figures[name] = partial(plots.ranking, ranking, axis, title)
    figures["segments.png"] = partial(plots.segment_profiles, e.segments, e.segment_sizes)
    out = {}
    for name, draw in figures.items():
        png = parts.attempt(f"figure {name}", draw)
        if png is not None:
            out[name] = png

    calibration = {model: calibration_bins(y, p) for model, p in probabilities.items()}
    ranked = {
        key: dict(zip(spec.FEATURE_NAMES, map(float, values), strict=True))
        for key, values in (
            ("mutual_information_nats", e.information_gain),
            ("permutation_auc_drop", e.permutation_drop),
        )
        if values is not None
    }
    sections = {
        "calibration": calibration_table(calibration["mlp"]),
        "ranking": ranking_table(e.information_gain, e.permutation_drop),
        "segments": segments_table(e.segment_sizes),
        "snapshots": comparison.snapshot_table(e.snapshot_rates),
    }
    if e.metrics:
        sections["metrics"] = metrics_table(e.metrics)
    if "mlp" in e.metrics:
        sections["snapshots"] += f"\n\nECE of the MLP at the test cutoff: {e.metrics['mlp']['ece']:.4f}."
    if e.snapshot_gain:
        sections["gain"] = comparison.gain_table(e.snapshot_gain)
    if e.versus_best_baseline is not None:
        sections["versus"] = comparison.comparison_text(e.versus_best_baseline)
    card = model_card(context, sections, parts, list(out))
    text = {
        "metrics.json": to_json(e.metrics),
        "calibration.json": to_json(calibration),
        "feature_importance.json": to_json(ranked),
        "segment_sizes.json": to_json(e.segment_sizes),
        "snapshots.json": to_json({"rates": e.snapshot_rates, "gain": e.snapshot_gain}),
        "versus_best_baseline.json": to_json(e.versus_best_baseline),
        "model_card.md": card.encode(),
    }
    return {f"report/{name}": data for name, data in (out | text).items()}


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    header = "| model | " + " | ".join(METRIC_COLUMNS) + " | roc_auc 95% CI |"
    rule = "|---" * (len(METRIC_COLUMNS) + 2) + "|"
    rows = [
        f"| {label(name)} | "
        + " | ".join(f"{m[c]:.3f}" for c in METRIC_COLUMNS)
        + f" | {m['roc_auc_ci95_low']:.3f}-{m['roc_auc_ci95_high']:.3f} |"
        for name, m in metrics.items()
    ]
    return "\n".join([header, rule, *rows])


def calibration_table(bins: list[dict[str, Any]]) -> str:
    rows = [
        f"| {b['lower']:.1f}-{b['upper']:.1f} | {b['users']} | "
        + (f"{b['mean_predicted']:.3f} | {b['observed_churn_rate']:.3f} |" if b["users"] else "- | - |")
        for b in bins
    ]
    header = "| predicted churn probability | users | mean predicted | observed churn rate |"
    return "\n".join([header, "|---|---|---|---|", *rows])


def ranking_table(gain: Vector | None, drop: Vector | None) -> str:
    """Both rankings side by side, rank by rank; a ranking that failed shows as dashes."""

    def column(values: Vector | None) -> list[str]:
        if values is None:
            return ["- | -"] * RANKED
        order = np.argsort(-values, kind="stable")[:RANKED]
        return [f"{spec.FEATURE_NAMES[i]} | {values[i]:.4f}" for i in order]

    pairs = zip(column(gain), column(drop), strict=True)
    rows = [f"| {rank} | {g} | {p} |" for rank, (g, p) in enumerate(pairs, start=1)]
    header = (
        "| rank | by mutual information with the label (training) | nats "
        "| by permutation importance (MLP, test) | ROC AUC drop |"
    )
    return "\n".join([header, "|---|---|---|---|---|", *rows])


def segments_table(sizes: list[dict[str, Any]]) -> str:
    rows = [
        f"| {s['name']} | {s['users']:,} | {s['share']:.1%} | "
        + (f"{s['churn_rate']:.3f} |" if s["churn_rate"] is not None else "- |")
        for s in sizes
    ]
    return "\n".join(["| segment | training users | share | churn rate |", "|---|---|---|---|", *rows])


def parts_section(parts: PartLog) -> list[str]:
    lines = ["## Parts that did not complete", ""]
    if not parts.failed:
        lines.append("None: every baseline, ranking and figure was produced.")
    for reason, names in parts.failures_by_reason().items():
        lines.append(f"- {', '.join(names)}: {reason}")
    if parts.warned:
        lines += ["", "Completed with warnings:", ""]
        lines += [f"- {part}: {'; '.join(notes)}" for part, notes in parts.warned.items()]
    return [*lines, ""]


def model_card(context: dict[str, Any], sections: dict[str, str], parts: PartLog, figures: list[str]) -> str:
    """`sections` holds the tables that were produced (metrics, calibration, ranking, segments)."""
    sizes = context["sizes"]
    missing = "Not produced; see Parts that did not complete."
    lines = [
        f"# Model card: {context['version']}",
        "",
        "Churn = no purchase in the horizon after the cutoff, for users with at least one event before it.",
        "",
        f"- Data: {context['dataset']}",
        f"- Horizon: {context['horizon_days']} days",
        f"- Split: {context['split']}",
        f"- Rows: train {sizes['train']} ({sizes['train_users']} users), validation "
        f"{sizes['validation']} ({sizes['validation_users']} users, disjoint from training), test "
        f"{sizes['test']}; {context['snapshots']} training snapshot(s); test churn rate "
        f"{context['test_churn_rate']:.3f}",
        f"- Network: MLP {context['hidden']}, class-weighted BCE, Adam; {context['stopping']}; "
        "Platt calibration on the validation users' rows of every snapshot",
        f"- Chosen on the validation users: {_settings(context.get('baseline_settings') or {})}",
        f"- Users with no history: {_cold_start(context.get('cold_start'))}",
        f"- Command: `{context['command']}`",
        "",
        "## Training snapshots",
        "",
        "Each snapshot's rows are labelled by their own window, which ends at or before the test cutoff; "
        "the as-of date is not a feature. Validation holds out whole users, with all their snapshots.",
        "",
        sections["snapshots"],
        "",
        "## Several snapshots against the latest one alone (test)",
        "",
        sections.get("gain", "One training snapshot, or the comparison did not complete."),
        "",
        "## The MLP against the best baseline (test, paired bootstrap over users)",
        "",
        sections.get("versus", missing),
        "",
        "The bundle format holds one network, so the MLP is what is served whatever this verdict says.",
        "",
        "## Test metrics",
        "",
        "Precision, recall, F1 and accuracy at each model's F1-best threshold on validation; "
        "ECE over 10 bins.",
        "",
        sections.get("metrics", missing),
        "",
        "## Calibration of the MLP (test)",
        "",
        "The 10 equal-width bins of ECE, with the users in each: a bin's gap means little when few "
        "users fall in it.",
        "",
        sections.get("calibration", missing),
        "",
        "## Feature rankings",
        "",
        "Mutual information measures what a feature alone tells about the label, before any model; "
        "permutation importance measures what the trained MLP relies on.",
        "",
        sections.get("ranking", missing),
        "",
        "## Segments (K-Means on scaled features)",
        "",
        sections.get("segments", missing),
        "",
        *parts_section(parts),
        "## Limits",
        "",
        "- Scores rank users by risk over the stated horizon; they are not causal estimates of any action.",
        "- Trained on the data above; a shift in traffic or catalogue calls for retraining "
        "and re-evaluation.",
        "",
        "Plots: " + ", ".join(f"report/{name}" for name in figures) + ".",
        "",
    ]
    return "\n".join(lines)


def _settings(settings: dict[str, dict[str, float]]) -> str:
    chosen = [
        f"{label(model)} {name} = {value:g}"
        for model, values in settings.items()
        for name, value in values.items()
    ]
    return "; ".join(chosen) or "nothing"


def _cold_start(prior: Any) -> str:
    if prior is None:
        return "scored by the network (no cold-start prior; see Parts that did not complete)"
    return (
        f"probability {prior.probability:.3f}, the churn rate of {prior.users:,} training users in the "
        'horizon after their first event (`known_user: false`, reason "no history")'
    )


def to_json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
