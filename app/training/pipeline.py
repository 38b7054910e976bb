"""One training run: splits -> preprocessing -> MLP + calibration -> baselines -> report -> bundle.

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

from app.model import bundle, drift
from app.model.postprocess import RiskTiers
from app.model.preprocess import Preprocessor
from app.training import baselines, evaluate, importance, report, segmentation
from app.training.datasets import Splits, require_trainable
from app.training.fail_soft import PartLog
from app.training.plots import label
from app.training.progress import progress
from app.training.train import TrainConfig, fit_network, fit_platt, logits

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
    tr, va, te = job.splits.train, job.splits.validation, job.splits.test
    preprocessor = Preprocessor.fit(tr.X)
    train_scaled, val_scaled, test_scaled = (preprocessor.transform(p.X) for p in (tr, va, te))
    steps.update()

    network, network_config, stopping = fit_network(train_scaled, tr.y, val_scaled, va.y, config)
    calibration = fit_platt(logits(network, val_scaled), va.y)

    def mlp_probability(x_scaled: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
        return calibration.probability(logits(network, x_scaled))

    steps.update()
    scores = {"mlp": (mlp_probability(val_scaled), mlp_probability(test_scaled))}
    inputs = baselines.Inputs(job.events, job.splits, preprocessor, job.horizon_days, config.seed)
    for name, baseline in reference_models.items():
        fitted = parts.attempt(f"baseline {label(name)}", partial(_checked, baseline, inputs))
        if fitted is not None:
            scores[name] = fitted
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
    tiers = RiskTiers(
        medium=float(np.quantile(val_mlp, 1 - HIGH_TIER_SHARE - MEDIUM_TIER_SHARE)),
        high=float(np.quantile(val_mlp, 1 - HIGH_TIER_SHARE)),
        decision=decision,
    )
    drop = parts.attempt(
        "permutation importance",
        lambda: importance.permutation_importance(mlp_probability, test_scaled, te.y, config.seed),
    )
    gain = parts.attempt(
        "information gain ranking", lambda: importance.information_gain(tr.X, tr.y, config.seed)
    )
    segments = segmentation.fit_segments(train_scaled, n_segments, config.seed)
    steps.update()

    version = f"{job.name}-h{job.horizon_days}-" + bundle.sha256(network_weights_bytes(network))[:10]
    context: dict[str, Any] = {
        "version": version,
        "dataset": job.dataset,
        "horizon_days": job.horizon_days,
        "split": ", ".join(f"{k} {v}" for k, v in job.split.items()),
        "sizes": {"train": len(tr.y), "validation": len(va.y), "test": len(te.y)},
        "test_churn_rate": float(te.y.mean()),
        "hidden": list(config.hidden),
        "stopping": stopping.describe(),
        "command": command,
    }
    evaluation = report.Evaluation(
        y_test=te.y,
        test_probabilities={name: test_p for name, (_, test_p) in scores.items()},
        metrics=metrics,
        information_gain=gain,
        permutation_drop=drop,
        segments=segments,
        segment_sizes=segmentation.profile(segments, train_scaled, tr.y),
    )
    files = report.files(context, evaluation, parts)
    # The training rows' distribution of each feature and of the score: the reference drift is measured on.
    files |= drift.distribution_files(tr.X, mlp_probability(train_scaled))
    steps.update()
    path = bundle.save_bundle(
        store,
        version,
        network,
        network_config,
        preprocessor,
        calibration,
        tiers,
        segments,
        manifest_fields={
            "dataset": job.dataset,
            "horizon_days": job.horizon_days,
            "split": job.split,
            "sizes": context["sizes"],
            "seed": config.seed,
            "early_stopping": stopping.to_json(),
            "metrics": metrics,
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


def _checked(baseline: baselines.Baseline, inputs: baselines.Inputs) -> baselines.Scores:
    """A baseline's probabilities, refused unless they are one finite probability per user."""
    val_p, test_p = baseline(inputs)
    splits = inputs.splits
    for name, p, part in (("validation", val_p, splits.validation), ("test", test_p, splits.test)):
        if p.shape != part.y.shape or not np.isfinite(p).all():
            raise ValueError(f"{name} probabilities are not one finite number per {name} user")
    return val_p, test_p


def network_weights_bytes(network: Any) -> bytes:
    return b"".join(t.detach().cpu().numpy().tobytes() for t in network.state_dict().values())


def _libraries() -> dict[str, str]:
    names = ("torch", "numpy", "scikit-learn", "pandas", "safetensors")
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}
