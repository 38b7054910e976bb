"""The command line as a user types it: simulate a log, then train on it with explicit cutoffs."""

from pathlib import Path

import pandas as pd
import pytest

from app.cli import main
from app.model.bundle import current_version, load_bundle


def test_simulate_then_train_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "events.parquet"
    main(["simulate", "--users", "400", "--days", "200", "--seed", "2", "--out", str(log)])
    store = tmp_path / "store"
    main(
        [
            "train", "--events", str(log), "--train-cutoff", "2025-04-01", "--test-cutoff", "2025-05-15",
            "--horizon-days", "30", "--out", str(store), "--max-epochs", "5", "--set-current",
        ]
    )  # fmt: skip
    bundle = load_bundle(store)
    assert bundle.version == current_version(store) and bundle.version.startswith("custom-h30-")
    assert "--train-cutoff 2025-04-01" in bundle.manifest["command"]


def test_train_without_a_log_or_preset_says_what_is_missing() -> None:
    with pytest.raises(SystemExit, match="--events, --train-cutoff, --test-cutoff are required"):
        main(["train"])


def test_simulate_from_a_given_start(tmp_path: Path) -> None:
    log = tmp_path / "recent.csv"
    main(["simulate", "--users", "20", "--days", "30", "--start", "2026-05-01", "--out", str(log)])
    ts = pd.to_datetime(pd.read_csv(log)["ts"], utc=True)
    assert ts.min() >= pd.Timestamp("2026-05-01", tz="UTC") and ts.max() < pd.Timestamp(
        "2026-05-31", tz="UTC"
    )
