"""One training run: splits -> preprocessing -> MLP + calibration -> baselines -> report -> bundle.

With several training snapshots, the same run on the latest snapshot alone is measured beside it, and the
MLP is compared with the best baseline by a paired bootstrap over test users.

The MLP, its calibration, the tiers and the segments make the bundle and must succeed (a split they
cannot be fitted on is refused up front, naming the problem). Baselines, rankings and figures are
optional: one that fails is listed in the report with its reason, and the run goes on.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.features import spec
from app.model import bundle, drift
from app.model.postprocess import RiskTiers
from app.model.typical import TypicalValues
from app.training import baselines, comparison, evaluate, importance, report, segmentation
from app.training.cold_start import first_event_prior
from app.training.datasets import Splits, require_trainable
from app.training.fail_soft import PartLog
from app.training.models import fit_all
from app.training.plots import label
from app.training.progress import progress
from app.training.train import TrainConfig

HIGH_TIER_SHARE = 0.2  # the riskiest fifth of validation users is "high": a CRM-sized coupon budget
MEDIUM_TIER_SHARE = 0.3


@dataclass(frozen=True)
class TrainingJob:
    name: str  # bundle name prefix: sim, cdnow, custom
    dataset: str
    events: pd.DataFrame
    splits: Splits
    horizon_days: int
    split: dict[str, str]


def run(
    job: TrainingJob,
    store: Path,
    config: TrainConfig,
    command: str,
    n_segments: int = 5,
    reference_models: Mapping[str, baselines.Baseline] = baselines.STANDARD,
) -> Path:
    require_trainable(job.splits)
    steps = progress(total=6, desc="training", unit="step")
    parts = PartLog()
    splits = job.splits
    tr, va, te = splits.train, splits.validation, splits.test
    fitted = fit_all(job.events, splits, job.horizon_days, config, reference_models, parts)
    mlp = fitted.mlp
    scores = fitted.scores
    steps.update()

    snapshots = len(tr.snapshots)
    gain = None
    if snapshots > 1:  # the same run on the latest snapshot alone: what the earlier snapshots add
        single = parts.attempt(
            "one-snapshot comparison",
            lambda: fit_all(
                job.events, splits.latest_snapshot(), job.horizon_days, config, reference_models, parts,
                prefix="one-snapshot ",
            ),
        )  # fmt: skip
        if single is not None:
            gain = parts.attempt(
                "one-snapshot gain table",
                lambda: comparison.snapshot_gain(
                    te.y, {n: p for n, (_, p) in scores.items()},
                    {n: p for n, (_, p) in single.scores.items()}, snapshots, config.seed,
                ),
            )  # fmt: skip
    steps.update()

    # The tiers' decision threshold comes from validation alone, so a test split of one outcome (its
    # metrics undefined) still gives a servable bundle.
    val_mlp = scores["mlp"][0]
    decision = evaluate.f1_threshold(va.y, val_mlp)
    metrics: dict[str, dict[str, float]] = {}
    for name, (val_p, test_p) in scores.items():
        measure = partial(_test_metrics, va.y, val_p, te.y, test_p, config.seed)
        measured = parts.attempt(f"test metrics ({label(name)})", measure)
        if measured is not None:
            metrics[name] = measured
    # Tiers are shares of the users at one time: the latest snapshot's validation users.
    latest_val = mlp.probability(va.latest().X)
    tiers = RiskTiers(
        medium=float(np.quantile(latest_val, 1 - HIGH_TIER_SHARE - MEDIUM_TIER_SHARE)),
        high=float(np.quantile(latest_val, 1 - HIGH_TIER_SHARE)),
        decision=decision,
    )
    test_probabilities = {name: test_p for name, (_, test_p) in scores.items()}
    versus = parts.attempt(
        "MLP against the best baseline (paired bootstrap)",
        lambda: comparison.against_best_baseline(te.y, test_probabilities, config.seed),
    )
    test_scaled = mlp.preprocessor.transform(te.X)
    drop = parts.attempt(
        "permutation importance",
        lambda: importance.permutation_importance(mlp.probability_scaled, test_scaled, te.y, config.seed),
    )
    # Rankings and segments describe users at one time, the latest snapshot, like the tiers.
    latest_train = tr.latest()
    latest_scaled = mlp.preprocessor.transform(latest_train.X)
    information = parts.attempt(
        "information gain ranking",
        lambda: importance.information_gain(latest_train.X, latest_train.y, config.seed),
    )
    segments = segmentation.fit_segments(latest_scaled, n_segments, config.seed)
    fit_users = tr.user_ids.append(va.user_ids).unique()
    cold_start = parts.attempt(
        "cold-start prior",
        lambda: first_event_prior(job.events, fit_users, int(tr.as_of.max()), job.horizon_days),
    )
    steps.update()

    version = f"{job.name}-h{job.horizon_days}-" + bundle.sha256(network_weights_bytes(mlp.network))[:10]
    sizes = {
        "train": len(tr.y), "validation": len(va.y), "test": len(te.y),
        "train_users": comparison.users(tr), "validation_users": comparison.users(va),
    }  # fmt: skip
    rates = comparison.snapshot_rates(splits)
    context: dict[str, Any] = {
        "version": version,
        "dataset": job.dataset,
        "horizon_days": job.horizon_days,
        "split": ", ".join(f"{k} {v}" for k, v in job.split.items()),
        "sizes": sizes,
        "snapshots": snapshots,
        "test_churn_rate": float(te.y.mean()),
        "hidden": list(config.hidden),
        "stopping": mlp.stopping.describe(),
        "baseline_settings": fitted.settings,
        "command": command,
    }
    evaluation = report.Evaluation(
        y_test=te.y,
        test_probabilities=test_probabilities,
        metrics=metrics,
        information_gain=information,
        permutation_drop=drop,
        segments=segments,
        segment_sizes=segmentation.profile(segments, latest_scaled, latest_train.y),
        snapshot_rates=rates,
        snapshot_gain=gain,
        versus_best_baseline=versus,
    )
    context["cold_start"] = cold_start
    files = report.files(context, evaluation, parts)
    # The distribution of each feature and of the score over the latest snapshot's training rows (one
    # as-of date, like the served population at any moment): the reference drift is measured on.
    files |= drift.distribution_files(latest_train.X, mlp.probability(latest_train.X))
    # What reasons compare a user with: customers who stayed, at the latest snapshot like the tiers.
    typical = TypicalValues.of_retained(spec.FEATURE_NAMES, latest_train.X, latest_train.y)
    files[bundle.REASONS] = bundle.json_bytes(typical.to_json())
    if cold_start is not None:
        files[bundle.COLD_START] = bundle.json_bytes(cold_start.to_json())
    steps.update()
    path = bundle.save_bundle(
        store,
        version,
        mlp.network,
        mlp.network_config,
        mlp.preprocessor,
        mlp.calibration,
        tiers,
        segments,
        manifest_fields={
            "dataset": job.dataset,
            "horizon_days": job.horizon_days,
            "split": job.split,
            "sizes": sizes,
            "snapshots": [r for r in rates if r["rows"].startswith("training")],
            "seed": config.seed,
            "early_stopping": mlp.stopping.to_json(),
            "metrics": metrics,
            "mlp_versus_best_baseline": versus,
            "baseline_settings": fitted.settings,  # what baselines chose on the validation users
            "cold_start": None if cold_start is None else cold_start.to_json(),
            "failed_parts": parts.failed,
            "command": command,
            "libraries": _libraries(),
        },
        extra_files=files,
    )
    steps.update()
    steps.close()
    return path


def _test_metrics(
    y_val: evaluate.Labels,
    val_p: evaluate.Vector,
    y_test: evaluate.Labels,
    test_p: evaluate.Vector,
    seed: int,
) -> dict[str, float]:
    return evaluate.metrics(y_test, test_p, evaluate.f1_threshold(y_val, val_p), seed)


def network_weights_bytes(network: Any) -> bytes:
    return b"".join(t.detach().cpu().numpy().tobytes() for t in network.state_dict().values())


def _libraries() -> dict[str, str]:
    names = ("torch", "numpy", "scikit-learn", "pandas", "safetensors")
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}
