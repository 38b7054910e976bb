"""`python -m app train` on small and lopsided logs: a bundle with the failures listed, or a clean refusal.

The logs are hand-built: a shop of a few dozen customers, purchases only (no sessions, no reviews), where
nobody bought on more than two days before the train cutoff. The split is chosen by the label windows:
train labels are purchases on days 60-89, test labels purchases on days 100-129.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from app.features.offline import write_event_log
from app.model.bundle import load_bundle
from app.training import baselines, pipeline, presets
from app.training.train import TrainConfig

START = datetime(2025, 1, 1, tzinfo=UTC)
TRAIN_DAY, TEST_DAY, HORIZON = 60, 100, 30
ROOT = Path(__file__).resolve().parents[1]


def shop_log(
    users: int = 36, seed: int = 5, train_window: str = "some", test_window: str = "some"
) -> pd.DataFrame:
    """Purchases only. Each label window has "some", "all" or "none" of the customers buying in it."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def buy(user: str, day: int) -> None:
        at = START + timedelta(days=int(day), hours=12)
        amount = float(rng.integers(5, 80))
        rows.append(
            {
                "event_id": f"{user}-{day}",
                "user_id": user,
                "type": "purchase",
                "ts": at.isoformat(),
                "amount": amount,
            }
        )

    for number in range(users):
        user = f"u{number:02d}"
        first = int(rng.integers(0, 45))
        buy(user, first)
        repeat = bool(rng.random() < 0.6)
        if repeat:  # at most two purchase days before the train cutoff
            buy(user, min(first + int(rng.integers(5, 15)), TRAIN_DAY - 1))
        back = {"all": True, "none": False, "some": bool(rng.random() < (0.7 if repeat else 0.25))}[
            train_window
        ]
        if back:
            buy(user, int(rng.integers(TRAIN_DAY, TRAIN_DAY + HORIZON)))
        stays = {"all": True, "none": False, "some": bool(rng.random() < (0.6 if back else 0.2))}[test_window]
        if stays:
            buy(user, int(rng.integers(TEST_DAY, TEST_DAY + HORIZON)))
    # A first-time customer near the end: the log covers the test label window, and this customer,
    # unknown at the test cutoff, is in no split.
    buy("newcomer", TEST_DAY + HORIZON - 2)
    return pd.DataFrame(rows)


def train_args(log: Path, store: Path) -> list[str]:
    return [
        "train", "--events", str(log), "--out", str(store), "--horizon-days", str(HORIZON),
        "--max-epochs", "20",
        "--train-cutoff", f"{START + timedelta(days=TRAIN_DAY):%Y-%m-%d}",
        "--test-cutoff", f"{START + timedelta(days=TEST_DAY):%Y-%m-%d}",
    ]  # fmt: skip


def train(tmp_path: Path, frame: pd.DataFrame) -> Path:
    log = tmp_path / "events.csv"
    write_event_log(frame, log)
    main(train_args(log, tmp_path / "store"))
    (bundle,) = (tmp_path / "store").iterdir()
    load_bundle(tmp_path / "store", bundle.name)  # every check of the loader passes
    return bundle


def test_a_few_dozen_customers_purchases_only_give_a_bundle_without_bg_nbd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = train(tmp_path, shop_log())
    manifest = json.loads((bundle / "manifest.json").read_text())
    # No training customer bought on more than two days: BG/NBD's likelihood has no finite maximum.
    assert manifest["failed_parts"] == {
        "baseline BG/NBD": "ConvergenceError: The model did not converge. Try adding a larger penalizer "
        "to see if that helps convergence."
    }
    metrics = json.loads((bundle / "report" / "metrics.json").read_text())
    assert set(metrics) == {
        "mlp", "logistic_regression", "gradient_boosting", "random_forest", "decision_tree_entropy",
        "recency_only",
    }  # fmt: skip
    card = (bundle / "report" / "model_card.md").read_text()
    assert "- baseline BG/NBD: ConvergenceError: The model did not converge." in card
    captured = capsys.readouterr()
    # stderr is not a terminal here: no progress bars; lifetimes' optimiser dump stays out of the output.
    assert captured.err == ""
    assert "hess_inv" not in captured.out and "bundle written to" in captured.out


def test_every_test_customer_churning_gives_a_bundle_and_lists_what_needs_both_outcomes(
    tmp_path: Path,
) -> None:
    bundle = train(tmp_path, shop_log(test_window="none"))
    failed = json.loads((bundle / "manifest.json").read_text())["failed_parts"]
    reason = failed["test metrics (MLP)"]
    assert reason.startswith("ValueError: every test user churned (36 of 36)")
    for part in ("test metrics (random forest)", "permutation importance", "figure roc.png", "figure pr.png"):
        assert failed[part] == reason
    assert failed["figure gains_retained.png"].endswith("there are no retained users to reach")
    report = bundle / "report"
    assert json.loads((report / "metrics.json").read_text()) == {}
    assert (report / "gains.png").exists() and (report / "calibration.png").exists()
    assert not (report / "roc.png").exists()
    calibration = json.loads((report / "calibration.json").read_text())["mlp"]
    assert sum(b["users"] for b in calibration) == 36
    card = (report / "model_card.md").read_text()
    assert "Not produced; see Parts that did not complete." in card  # the metrics table
    assert "report/roc.png" not in card and "report/gains.png" in card


def test_no_test_customer_churning_gives_a_bundle(tmp_path: Path) -> None:
    bundle = train(tmp_path, shop_log(test_window="all"))
    failed = json.loads((bundle / "manifest.json").read_text())["failed_parts"]
    assert failed["test metrics (MLP)"].startswith("ValueError: no test user churned (0 of 36)")
    assert failed["figure gains.png"] == "ValueError: no test user churned: there are no churners to reach"
    assert (bundle / "report" / "gains_retained.png").exists()


def test_no_training_customer_churning_is_refused_by_name(tmp_path: Path) -> None:
    log = tmp_path / "events.csv"
    write_event_log(shop_log(train_window="all"), log)
    with pytest.raises(SystemExit, match=r"^train: no training user churned \(0 of 30\): the model needs"):
        main(train_args(log, tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_the_command_refuses_a_split_where_every_customer_churns_without_a_traceback(tmp_path: Path) -> None:
    log = tmp_path / "events.csv"
    write_event_log(shop_log(train_window="none"), log)
    done = subprocess.run(
        [sys.executable, "-m", "app", *train_args(log, tmp_path / "store")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("train: every training user churned (30 of 30): the model needs users who")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists()


def test_a_log_that_ends_before_the_labels_do_is_refused_by_name(tmp_path: Path) -> None:
    log = tmp_path / "events.csv"
    frame = shop_log()
    write_event_log(frame[pd.to_datetime(frame["ts"]) < START + timedelta(days=TEST_DAY)], log)
    with pytest.raises(SystemExit, match=r"^train: the event log ends at .* but labels need events until"):
        main(train_args(log, tmp_path / "store"))


def test_a_reference_model_without_usable_probabilities_is_listed_and_the_rest_completes(
    tmp_path: Path,
) -> None:
    log = tmp_path / "events.csv"
    write_event_log(shop_log(), log)
    cutoffs = START + timedelta(days=TRAIN_DAY), START + timedelta(days=TEST_DAY)
    job = presets.from_log(log, *cutoffs, HORIZON, seed=7)

    def half_missing(inputs: baselines.Inputs) -> baselines.Scores:
        return np.full(len(inputs.splits.validation.y), np.nan), np.zeros(len(inputs.splits.test.y))

    models = {"logistic_regression": baselines.logistic_regression, "half_missing": half_missing}
    path = pipeline.run(job, tmp_path / "store", TrainConfig(max_epochs=5), "test", reference_models=models)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["failed_parts"] == {
        "baseline half_missing": "ValueError: validation probabilities are not one finite number per "
        "validation user"
    }
    assert set(manifest["metrics"]) == {"mlp", "logistic_regression"}
