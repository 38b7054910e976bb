"""Refit only the calibration of a bundle from outcomes observed after deployment.

Churn rates drift: the network may still rank users well while its probabilities run high or low. The
outcomes file holds, per scored user, the probability the service answered and whether the user then
churned (no purchase in the bundle's horizon after the score). The served probability is the old Platt
map of the network's logit, so the logit is recovered exactly by inverting it, and a new Platt map is
fitted on (logit, outcome). The weights are not touched: the new bundle holds the same model.safetensors,
byte for byte, a new calibration.json, tier edges moved through the new map (the same users stay in each
tier: the map is monotone), and a manifest with the new hashes and what was done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.model import bundle
from app.model.postprocess import PlattCalibration, RiskTiers
from app.training.evaluate import Labels, Vector, expected_calibration_error
from app.training.train import fit_platt

MIN_OUTCOMES = 50  # fewer than this, and two fitted numbers would follow noise
EDGE = 1e-6  # probabilities are clipped this far from 0 and 1 before the logit


class RecalibrationRefused(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(f"recalibrate: {message}")


def read_outcomes(path: Path) -> tuple[Vector, Labels]:
    """(served churn probabilities, churned 0/1) from a .csv or .jsonl file with those two columns."""
    try:
        frame = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".ndjson") else pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise RecalibrationRefused(f"cannot read {path}: {error}") from error
    missing = [c for c in ("churn_probability", "churned") if c not in frame.columns]
    if missing:
        raise RecalibrationRefused(f"{path}: missing column(s) {', '.join(missing)}")
    probability = pd.to_numeric(frame["churn_probability"], errors="coerce").to_numpy(np.float64)
    churned = pd.to_numeric(frame["churned"], errors="coerce").to_numpy(np.float64)
    bad = ~((probability >= 0) & (probability <= 1))
    if bad.any():
        raise RecalibrationRefused(
            f"{path}: churn_probability must be a number in [0, 1] (row {int(np.argmax(bad)) + 1})"
        )
    bad = ~np.isin(churned, (0, 1))
    if bad.any():
        raise RecalibrationRefused(f"{path}: churned must be 0 or 1 (row {int(np.argmax(bad)) + 1})")
    labels: Labels = churned.astype(np.int64)
    if len(labels) < MIN_OUTCOMES or labels.sum() in (0, len(labels)):
        raise RecalibrationRefused(
            f"{path}: needs at least {MIN_OUTCOMES} outcomes with both churners and users who stayed "
            f"(has {len(labels)}, {int(labels.sum())} churned)"
        )
    return probability, labels


def network_logits(calibration: PlattCalibration, probability: Vector) -> Vector:
    """The inverse of the Platt map: the network's logit behind each served probability."""
    p = np.clip(probability, EDGE, 1 - EDGE)
    logits: Vector = (np.log(p / (1 - p)) - calibration.intercept) / calibration.slope
    return logits


def recalibrate(bundle_dir: Path, outcomes: Path, store: Path, command: str) -> Path:
    """Write a new bundle version into `store`: the same weights, a calibration refitted on `outcomes`."""
    old = bundle.load_bundle(bundle_dir.parent, bundle_dir.name)  # every check of the loader passes
    probability, churned = read_outcomes(outcomes)
    logits = network_logits(old.calibration, probability)
    new = fit_platt(logits, churned)
    if new.slope <= 0:
        raise RecalibrationRefused(
            "on these outcomes the network ranks churners below users who stay (fitted slope "
            f"{new.slope:.3f}): recalibration cannot fix that; retrain"
        )
    tiers = RiskTiers(
        *(_moved(t, old.calibration, new) for t in (old.tiers.medium, old.tiers.high, old.tiers.decision))
    )
    recalibrated = new.probability(logits)
    summary: dict[str, Any] = {
        "from_version": old.version,
        "outcomes": len(churned),
        "observed_churn_rate": float(churned.mean()),
        "served_mean_probability": float(probability.mean()),
        "ece_before": expected_calibration_error(churned, probability),
        "ece_after_on_these_outcomes": expected_calibration_error(churned, recalibrated),
        "calibration_before": old.calibration.to_json(),
        "command": command,
    }
    weights_from = old.manifest.get("recalibration", {}).get("weights_version", old.version)
    summary["weights_version"] = weights_from
    calibration_bytes = bundle.json_bytes(new.to_json())
    version = f"{weights_from}-cal{bundle.sha256(calibration_bytes)[:8]}"
    files = {name: (old.path / name).read_bytes() for name in old.manifest["files"]}
    files |= {
        "calibration.json": calibration_bytes,
        "tiers.json": bundle.json_bytes(tiers.to_json()),
        "report/recalibration.json": bundle.json_bytes(summary),
    }
    path = store / version
    bundle.write_files(path, files, {**old.manifest, "version": version, "recalibration": summary})
    bundle.load_bundle(store, version)  # what was written passes the loader's checks
    return path


def _moved(edge: float, old: PlattCalibration, new: PlattCalibration) -> float:
    """A tier edge on the old probability scale, at the same network logit on the new scale."""
    logit: npt.NDArray[np.float64] = network_logits(old, np.array([edge]))
    return float(new.probability(logit)[0])


def describe(path: Path) -> str:
    summary = json.loads((path / "report" / "recalibration.json").read_text())
    return (
        f"bundle written to {path} (weights of {summary['weights_version']}); "
        f"{summary['outcomes']} outcomes, "
        f"observed churn rate {summary['observed_churn_rate']:.3f} against a served mean of "
        f"{summary['served_mean_probability']:.3f}; ECE {summary['ece_before']:.4f} before, "
        f"{summary['ece_after_on_these_outcomes']:.4f} after (on the same outcomes)"
    )
