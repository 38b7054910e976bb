"""Training rows from several snapshots: their own label windows, no leakage, validation by user."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from app.features import spec
from app.training import presets
from app.training.comparison import against_best_baseline
from app.training.datasets import JobRefused, time_split
from app.training.evaluate import paired_difference


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return presets.simulated(seed=3, n_users=600, snapshots=presets.Snapshots(1)).events


def test_snapshots_are_every_n_days_up_to_the_train_cutoff_each_with_its_own_labels(
    events: pd.DataFrame,
) -> None:
    splits = time_split(
        events, presets.SIM_TRAIN_CUTOFF, presets.SIM_TEST_CUTOFF, 30, seed=1, snapshots=3, every_days=14
    )
    cutoff = spec.unix_seconds(presets.SIM_TRAIN_CUTOFF)
    expected = tuple(cutoff - k * 14 * spec.DAY_SECONDS for k in (2, 1, 0))
    assert splits.train.snapshots == expected
    assert splits.test.snapshots == (spec.unix_seconds(presets.SIM_TEST_CUTOFF),)
    one = time_split(events, presets.SIM_TRAIN_CUTOFF, presets.SIM_TEST_CUTOFF, 30, seed=1)
    # The latest snapshot's rows are exactly the one-snapshot split's rows, labels included.
    latest = splits.train.latest()
    assert list(latest.user_ids) == list(one.train.user_ids)
    assert np.array_equal(latest.y, one.train.y) and np.array_equal(latest.X, one.train.X)
    earliest = splits.train.subset(splits.train.as_of == expected[0])
    # An earlier snapshot has fewer users and its own labels: some of its churners bought later.
    assert len(earliest.y) < len(latest.y)
    again = latest.y[latest.user_ids.get_indexer(earliest.user_ids)]
    assert (earliest.y != again).any()


def test_validation_holds_out_whole_users_with_every_snapshot(events: pd.DataFrame) -> None:
    splits = time_split(
        events, presets.SIM_TRAIN_CUTOFF, presets.SIM_TEST_CUTOFF, 30, seed=1, snapshots=4, every_days=14
    )
    train_users, val_users = set(splits.train.user_ids), set(splits.validation.user_ids)
    assert train_users and val_users and not train_users & val_users
    assert len(splits.validation.snapshots) == 4
    assert len(splits.validation.user_ids) > len(val_users)  # users repeat across snapshots


def test_every_snapshots_label_window_must_end_by_the_test_cutoff(events: pd.DataFrame) -> None:
    with pytest.raises(JobRefused, match=r"snapshot at 2025-08-01 .* test labels would leak into training"):
        time_split(events, presets.SIM_TRAIN_CUTOFF, datetime(2025, 8, 20, tzinfo=UTC), 30, 1, snapshots=3)
    with pytest.raises(JobRefused, match="must be at least 1"):
        time_split(events, presets.SIM_TRAIN_CUTOFF, presets.SIM_TEST_CUTOFF, 30, 1, snapshots=0)


def test_the_paired_bootstrap_separates_a_better_model_and_not_a_copy() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    good = np.clip(0.5 + 0.35 * (y - 0.5) + rng.normal(0, 0.2, 2000), 0.01, 0.99)
    noisy = np.clip(good + rng.normal(0, 0.3, 2000), 0.01, 0.99)
    better = paired_difference(y, good, noisy, seed=1, resamples=300)
    assert better["roc_auc_ci95_low"] > 0 and better["brier_ci95_high"] < 0
    same = paired_difference(y, good, good, seed=1, resamples=300)
    assert same["roc_auc_difference"] == 0 and same["roc_auc_ci95_low"] == same["roc_auc_ci95_high"] == 0
    verdict = against_best_baseline(y, {"mlp": noisy, "a": good, "b": noisy}, seed=1)
    assert verdict["best_by_roc_auc"] == "a" and verdict["verdict"] == "worse"
