"""`python -m app recalibrate`: a new bundle version with a refitted calibration and the same weights."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from app.model import bundle

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "model_store"


def served_outcomes(path: Path, shift: float, users: int = 4000) -> None:
    """Probabilities as the committed bundle serves them, and outcomes from a world where the true log
    odds of churn sit `shift` above what the bundle says: the churn rate has risen since training."""
    rng = np.random.default_rng(5)
    served = rng.uniform(0.02, 0.98, users)
    true_p = 1 / (1 + np.exp(-(np.log(served / (1 - served)) + shift)))
    frame = pd.DataFrame(
        {
            "user_id": [f"u-{i}" for i in range(users)],
            "scored_at": "2025-10-01T00:00:00Z",
            "churn_probability": served,
            "churned": (rng.random(users) < true_p).astype(int),
        }
    )
    frame.to_csv(path, index=False)


def test_recalibration_refits_the_calibration_and_keeps_the_weights(tmp_path: Path) -> None:
    old = bundle.load_bundle(STORE)
    outcomes = tmp_path / "outcomes.csv"
    served_outcomes(outcomes, shift=1.0)
    main(
        ["recalibrate", "--bundle", str(old.path), "--outcomes", str(outcomes), "--out", str(tmp_path / "s")]
    )
    (written,) = (tmp_path / "s").iterdir()
    new = bundle.load_bundle(tmp_path / "s", written.name)  # hashes, shapes: every loader check passes
    assert new.version.startswith(old.version + "-cal")
    assert (written / "model.safetensors").read_bytes() == (old.path / "model.safetensors").read_bytes()
    assert new.manifest["files"]["model.safetensors"] == old.manifest["files"]["model.safetensors"]
    assert new.manifest["files"]["calibration.json"] != old.manifest["files"]["calibration.json"]
    # The outcomes' log odds are the served ones plus 1: the new map adds about 1 to the old one.
    logit = np.linspace(-3, 3, 7)
    gap = np.log(1 / new.calibration.probability(logit) - 1) - np.log(
        1 / old.calibration.probability(logit) - 1
    )
    assert np.allclose(-gap, 1.0, atol=0.2)
    summary = new.manifest["recalibration"]
    assert summary["from_version"] == old.version and summary["outcomes"] == 4000
    assert summary["ece_after_on_these_outcomes"] < summary["ece_before"] / 3
    # The tier edges moved with the map: the same network logits mark them.
    assert new.tiers.high > old.tiers.high and new.tiers.medium > old.tiers.medium
    assert json.loads((written / "report" / "recalibration.json").read_text()) == summary


def test_outcomes_without_the_needed_columns_are_refused_by_name(tmp_path: Path) -> None:
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"user_id": ["a"], "churned": [1]}).to_csv(outcomes, index=False)
    args = ["recalibrate", "--bundle", str(bundle.load_bundle(STORE).path), "--outcomes", str(outcomes)]
    with pytest.raises(SystemExit, match=r"^recalibrate: .*missing column.*churn_probability"):
        main([*args, "--out", str(tmp_path / "s")])
    assert not (tmp_path / "s").exists()
