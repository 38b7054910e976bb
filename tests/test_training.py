"""A small end-to-end training run, its bundle, and the loader's refusals."""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from app.features import spec
from app.model import bundle
from app.training import pipeline, presets
from app.training.datasets import time_split
from app.training.train import TrainConfig

CONFIG = TrainConfig(max_epochs=12, patience=5, seed=11)


@pytest.fixture(scope="module")
def job() -> pipeline.TrainingJob:
    return presets.simulated(seed=11, n_users=800)


@pytest.fixture(scope="module")
def trained(job: pipeline.TrainingJob, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pipeline.run(job, tmp_path_factory.mktemp("store"), CONFIG, command="test")


def test_training_yields_a_loadable_bundle_with_a_report(trained: Path) -> None:
    loaded = bundle.load_bundle(trained.parent, trained.name)
    assert loaded.manifest["feature_names"] == list(spec.FEATURE_NAMES)
    metrics = json.loads((trained / "report" / "metrics.json").read_text())
    assert {"mlp", "logistic_regression", "gradient_boosting", "decision_tree_entropy"} <= set(metrics)
    assert 0.5 < metrics["mlp"]["roc_auc"] <= 1.0
    assert loaded.tiers.medium <= loaded.tiers.high
    for plot in ("roc", "pr", "calibration", "gains", "feature_importance", "segments"):
        assert (trained / "report" / f"{plot}.png").read_bytes().startswith(b"\x89PNG")
    assert len(set(loaded.segments.names)) == len(loaded.segments.names)


def test_same_seed_gives_the_same_model(job: pipeline.TrainingJob, trained: Path, tmp_path: Path) -> None:
    again = pipeline.run(job, tmp_path, CONFIG, command="test")
    assert again.name == trained.name
    assert (again / "model.safetensors").read_bytes() == (trained / "model.safetensors").read_bytes()


def copy_of(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / trained.name)
    return tmp_path / trained.name


def rehash(path: Path, name: str) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = bundle.sha256((path / name).read_bytes())
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_changed_file_is_refused(trained: Path, tmp_path: Path) -> None:
    path = copy_of(trained, tmp_path)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(bundle.BundleError, match=r"'sha256' failed: model\.safetensors"):
        bundle.load_bundle(tmp_path, path.name)


def test_non_finite_weights_are_refused_even_with_a_matching_hash(trained: Path, tmp_path: Path) -> None:
    path = copy_of(trained, tmp_path)
    weights = load_file(path / "model.safetensors")
    first = next(iter(weights))
    weights[first][0] = float("nan")
    save_file(weights, path / "model.safetensors")
    rehash(path, "model.safetensors")
    with pytest.raises(bundle.BundleError, match="'finite weights' failed"):
        bundle.load_bundle(tmp_path, path.name)


def test_another_feature_specification_is_refused(trained: Path, tmp_path: Path) -> None:
    path = copy_of(trained, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["feature_spec_hash"] = "0" * 64
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bundle.BundleError, match="'feature specification hash' failed"):
        bundle.load_bundle(tmp_path, path.name)


def test_a_missing_file_is_refused(trained: Path, tmp_path: Path) -> None:
    path = copy_of(trained, tmp_path)
    (path / "tiers.json").unlink()
    with pytest.raises(bundle.BundleError, match=r"'file presence' failed: tiers\.json"):
        bundle.load_bundle(tmp_path, path.name)


def test_the_committed_default_bundle_loads() -> None:
    store = Path(__file__).resolve().parents[1] / "model_store"
    loaded = bundle.load_bundle(store)
    assert loaded.version == bundle.current_version(store)
    assert np.isfinite(loaded.preprocessor.mean).all()


def test_a_train_label_window_past_the_test_cutoff_is_refused(job: pipeline.TrainingJob) -> None:
    with pytest.raises(ValueError, match="test labels would leak into training"):
        time_split(
            job.events,
            datetime(2025, 8, 1, tzinfo=UTC),
            datetime(2025, 8, 20, tzinfo=UTC),
            horizon_days=30,
            seed=1,
        )
