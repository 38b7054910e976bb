"""A small end-to-end training run, its bundle, and the loader's refusals."""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from app.features import offline, spec
from app.model import bundle
from app.training import baselines, pipeline, presets
from app.training.datasets import JobRefused, churn_labels, time_split
from app.training.fail_soft import PartLog
from app.training.models import fit_all
from app.training.train import TrainConfig

CONFIG = TrainConfig(max_epochs=12, patience=5, seed=11)


@pytest.fixture(scope="module")
def job() -> pipeline.TrainingJob:
    return presets.simulated(seed=11, n_users=800, snapshots=presets.Snapshots(2))


@pytest.fixture(scope="module")
def trained(job: pipeline.TrainingJob, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pipeline.run(job, tmp_path_factory.mktemp("store"), CONFIG, command="test")


def test_training_yields_a_loadable_bundle_with_a_report(trained: Path) -> None:
    loaded = bundle.load_bundle(trained.parent, trained.name)
    assert loaded.manifest["feature_names"] == list(spec.FEATURE_NAMES)
    assert loaded.manifest["failed_parts"] == {}
    metrics = json.loads((trained / "report" / "metrics.json").read_text())
    assert set(metrics) == {
        "mlp", "logistic_regression", "gradient_boosting", "random_forest", "decision_tree_entropy",
        "recency_only", "bg_nbd",
    }  # fmt: skip
    assert 0.5 < metrics["mlp"]["roc_auc"] <= 1.0
    assert 0.5 < metrics["random_forest"]["roc_auc"] <= 1.0
    assert loaded.tiers.medium <= loaded.tiers.high
    plots = ("roc", "pr", "calibration", "gains", "gains_retained", "feature_importance", "information_gain")
    for plot in (*plots, "segments"):
        assert (trained / "report" / f"{plot}.png").read_bytes().startswith(b"\x89PNG")
    assert len(set(loaded.segments.names)) == len(loaded.segments.names)
    card = (trained / "report" / "model_card.md").read_text()
    assert "None: every baseline, ranking and figure was produced." in card
    # Two snapshots: the table of each model with one snapshot and with two, and the paired comparison.
    assert "| model | ROC AUC, 1 snapshot | ROC AUC, 2 snapshots |" in card
    assert "| MLP | 0." in card and "MLP, 2 snapshots minus 1, paired bootstrap" in card
    versus = loaded.manifest["mlp_versus_best_baseline"]
    assert versus["verdict"] in ("better", "worse", "not distinguishable") and versus["resamples"] == 1000
    assert versus["roc_auc"]["roc_auc_ci95_low"] <= versus["roc_auc"]["roc_auc_difference"]
    assert [s["rows"][:17] for s in loaded.manifest["snapshots"]] == ["training snapshot"] * 2
    assert loaded.cold_start is not None and 0 < loaded.cold_start.probability < 1


def test_the_report_ranks_features_both_ways_and_counts_users_per_calibration_bin(
    job: pipeline.TrainingJob, trained: Path
) -> None:
    report = trained / "report"
    rankings = json.loads((report / "feature_importance.json").read_text())
    assert set(rankings) == {"mutual_information_nats", "permutation_auc_drop"}
    gain = rankings["mutual_information_nats"]
    assert set(gain) == set(spec.FEATURE_NAMES) and min(gain.values()) >= 0
    calibration = json.loads((report / "calibration.json").read_text())
    for bins in calibration.values():
        assert len(bins) == 10 and sum(b["users"] for b in bins) == len(job.splits.test.y)
    sizes = json.loads((report / "segment_sizes.json").read_text())
    assert sum(s["users"] for s in sizes) == len(job.splits.train.latest().y)  # users at the cutoff
    card = (report / "model_card.md").read_text()
    top = max(gain, key=gain.__getitem__)
    assert f"| 1 | {top} | {gain[top]:.4f} |" in card
    for size in sizes:
        assert f"| {size['name']} | {size['users']:,} | {size['share']:.1%} |" in card


def test_the_model_card_says_how_training_stopped(trained: Path) -> None:
    stopping = json.loads((trained / "manifest.json").read_text())["early_stopping"]
    card = (trained / "report" / "model_card.md").read_text()
    kept, run = stopping["kept_epoch"], stopping["epochs_run"]
    assert 1 <= kept <= run <= CONFIG.max_epochs
    if stopping["stopped_early"]:
        assert run == kept + CONFIG.patience
        assert f"early stopping: ran {run} epochs, the last {CONFIG.patience} without a better" in card
    else:
        assert run == CONFIG.max_epochs
        assert f"ran all {CONFIG.max_epochs} epochs allowed, no early stop" in card
    assert f"kept epoch {kept} (validation ROC AUC {stopping['best_validation_roc_auc']:.4f})" in card


def test_training_twice_gives_the_same_metrics_and_on_one_machine_the_same_weights(
    job: pipeline.TrainingJob, trained: Path, tmp_path: Path
) -> None:
    again = pipeline.run(job, tmp_path, CONFIG, command="test")
    # What the README promises everywhere: the same figures, within what float rounding on another CPU
    # moves them (weights there differ by about 1e-7).
    first, second = (json.loads((path / "report" / "metrics.json").read_text()) for path in (trained, again))
    assert first.keys() == second.keys()
    for model, values in first.items():
        assert second[model] == pytest.approx(values, abs=1e-6), model
    # And on one machine: the same bytes.
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
    with pytest.raises(JobRefused, match="test labels would leak into training"):
        time_split(
            job.events,
            datetime(2025, 8, 1, tzinfo=UTC),
            datetime(2025, 8, 20, tzinfo=UTC),
            horizon_days=30,
            seed=1,
        )


def test_the_bundle_stores_the_training_distribution_drift_is_measured_against(trained: Path) -> None:
    from app.model.drift import reference_of

    loaded = bundle.load_bundle(trained.parent, trained.name)
    assert bundle.DISTRIBUTION in loaded.manifest["files"]
    reference = reference_of(loaded)
    assert reference is not None and reference.names == (*spec.FEATURE_NAMES, "score")
    # Over the latest snapshot's training rows: one as-of date, as the served population is at any moment.
    latest = loaded.manifest["snapshots"][-1]["rows_count"]
    assert 0 < reference.rows <= latest and reference.rows < loaded.manifest["sizes"]["train"]
    assert np.allclose(reference.shares.sum(axis=1), 1.0)


def test_the_bundle_stores_the_median_of_each_feature_among_retained_users_at_the_latest_snapshot(
    job: pipeline.TrainingJob, trained: Path
) -> None:
    loaded = bundle.load_bundle(trained.parent, trained.name)
    assert loaded.typical is not None and bundle.REASONS in loaded.manifest["files"]
    # Recomputed from the event log: the latest snapshot's training users, their features and labels.
    train = job.splits.train
    latest = int(train.as_of.max())
    users = train.user_ids[train.as_of == latest]
    index, X = offline.features(job.events, latest, users)
    labels = churn_labels(job.events, index, latest, job.horizon_days)
    assert 0 < (labels == 0).sum() < len(labels)  # retained and churned users both, so the filter matters
    retained = X[labels == 0]
    assert loaded.typical.retained_users == len(retained)
    assert np.allclose(loaded.typical.values, np.median(retained, axis=0))
    assert not np.allclose(loaded.typical.values, np.median(X, axis=0))


def test_logistic_regression_takes_the_c_that_ranks_validation_users_best(job: pipeline.TrainingJob) -> None:
    models = {"logistic_regression": baselines.logistic_regression}
    fitted = fit_all(job.events, job.splits, job.horizon_days, CONFIG, models, PartLog())
    chosen = fitted.settings["logistic_regression"]["C"]
    train, validation, test = (
        fitted.mlp.preprocessor.transform(p.X)
        for p in (job.splits.train, job.splits.validation, job.splits.test)
    )
    fits = {
        c: LogisticRegression(C=c, max_iter=5000).fit(train, job.splits.train.y)
        for c in baselines.LOGISTIC_C_GRID
    }
    aucs = {
        c: roc_auc_score(job.splits.validation.y, fit.decision_function(validation))
        for c, fit in fits.items()
    }
    assert aucs[chosen] == max(aucs.values())
    assert len(set(aucs.values())) > 1  # the grid's values do rank the validation users differently
    np.testing.assert_allclose(
        fitted.scores["logistic_regression"][1], fits[chosen].predict_proba(test)[:, 1]
    )
