"""One training run: splits -> preprocessing -> MLP + calibration -> baselines -> report -> bundle."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from app.model import bundle
from app.model.postprocess import RiskTiers
from app.model.preprocess import Preprocessor
from app.training import baselines, evaluate, report
from app.training.datasets import Splits
from app.training.segmentation import fit_segments
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


def run(job: TrainingJob, store: Path, config: TrainConfig, command: str, n_segments: int = 5) -> Path:
    steps = tqdm(total=6, desc="training", unit="step")
    tr, va, te = job.splits.train, job.splits.validation, job.splits.test
    preprocessor = Preprocessor.fit(tr.X)
    scaled = {"train": preprocessor.transform(tr.X), "val": preprocessor.transform(va.X)}
    test_scaled = preprocessor.transform(te.X)
    steps.update()

    network, network_config, best_epoch = fit_network(scaled["train"], tr.y, scaled["val"], va.y, config)
    calibration = fit_platt(logits(network, scaled["val"]), va.y)

    def mlp_probability(x_scaled: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
        return calibration.probability(logits(network, x_scaled))

    steps.update()
    scores = {"mlp": (mlp_probability(scaled["val"]), mlp_probability(test_scaled))}
    scores |= baselines.sklearn_baselines(job.splits, preprocessor, config.seed)
    bg = baselines.bg_nbd(job.events, job.splits, job.horizon_days)
    if bg is not None:
        scores["bg_nbd"] = bg
    steps.update()

    metrics = {
        name: evaluate.metrics(te.y, test_p, evaluate.f1_threshold(va.y, val_p), config.seed)
        for name, (val_p, test_p) in scores.items()
    }
    val_mlp = scores["mlp"][0]
    tiers = RiskTiers(
        medium=float(np.quantile(val_mlp, 1 - HIGH_TIER_SHARE - MEDIUM_TIER_SHARE)),
        high=float(np.quantile(val_mlp, 1 - HIGH_TIER_SHARE)),
        decision=metrics["mlp"]["threshold"],
    )
    importance = evaluate.permutation_importance(mlp_probability, test_scaled, te.y, config.seed)
    segments = fit_segments(scaled["train"], n_segments, config.seed)
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
        "best_epoch": best_epoch,
        "command": command,
    }
    files = report.plots(te.y, {k: v[1] for k, v in scores.items()}, importance, segments)
    files["report/metrics.json"] = report.metrics_json(metrics)
    files["report/model_card.md"] = report.model_card(context, metrics, segments).encode()
    files["report/feature_importance.json"] = report.metrics_json(
        {"permutation_auc_drop": dict(zip(preprocessor.feature_names, map(float, importance), strict=True))}
    )
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
            "best_epoch": best_epoch,
            "metrics": metrics,
            "command": command,
            "libraries": _libraries(),
        },
        extra_files=files,
    )
    steps.update()
    steps.close()
    return path


def network_weights_bytes(network: Any) -> bytes:
    return b"".join(t.detach().cpu().numpy().tobytes() for t in network.state_dict().values())


def _libraries() -> dict[str, str]:
    names = ("torch", "numpy", "scikit-learn", "pandas", "safetensors")
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}
