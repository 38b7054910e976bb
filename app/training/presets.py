"""Ready-made training jobs: the seeded simulator, the CDNOW standard protocol, or a log on disk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from app.features.offline import read_event_log, validate_events
from app.training import cdnow
from app.training.datasets import time_split, user_split
from app.training.pipeline import TrainingJob
from app.training.simulate import SimulationConfig, simulate

SIM_USERS = 10_000
SIM_TRAIN_CUTOFF = datetime.fromisoformat("2025-08-01T00:00:00+00:00")
SIM_TEST_CUTOFF = datetime.fromisoformat("2025-09-15T00:00:00+00:00")
SIM_HORIZON_DAYS = 30
SIM_SNAPSHOTS = 4
CDNOW_SNAPSHOTS = 4
CUSTOM_SNAPSHOTS = 1  # a log of unknown length: one snapshot unless asked for more
EVERY_DAYS = 14


@dataclass(frozen=True)
class Snapshots:
    """Training rows at `count` as-of dates, `every_days` apart, the last at the train cutoff."""

    count: int
    every_days: int = EVERY_DAYS

    def describe(self) -> str:
        if self.count == 1:
            return "one, at the train cutoff"
        return f"{self.count}, every {self.every_days} days up to the train cutoff"


def simulated(seed: int, n_users: int = SIM_USERS, snapshots: Snapshots | None = None) -> TrainingJob:
    config = SimulationConfig(n_users=n_users, seed=seed)
    events = validate_events(simulate(config).events)
    dataset = f"simulator: {n_users} users, {config.days} days from {config.start:%Y-%m-%d}, seed {seed}"
    return _time_split_job(
        "sim", dataset, events, SIM_TRAIN_CUTOFF, SIM_TEST_CUTOFF, SIM_HORIZON_DAYS, seed,
        snapshots or Snapshots(SIM_SNAPSHOTS),
    )  # fmt: skip


def cdnow_standard(seed: int, snapshots: Snapshots | None = None) -> TrainingJob:
    events = cdnow.master_events()
    taken = snapshots or Snapshots(CDNOW_SNAPSHOTS)
    splits = user_split(
        events, cdnow.CALIBRATION_END, cdnow.HOLDOUT_DAYS, cdnow.sample_user_ids(), seed,
        snapshots=taken.count, every_days=taken.every_days,
    )  # fmt: skip
    return TrainingJob(
        name="cdnow",
        dataset="CDNOW master log (purchases of 23,570 customers, 1997-01..1998-06)",
        events=events,
        splits=splits,
        horizon_days=cdnow.HOLDOUT_DAYS,
        split={
            "features_as_of": cdnow.CALIBRATION_END.isoformat(),
            "labels": "1997-10-01..1998-06-30",
            "test_users": "the 2,357 customers of CDNOW_sample.txt; train on the others",
            "training_snapshots": taken.describe(),
        },
    )


def from_log(
    path: Path,
    train_cutoff: datetime,
    test_cutoff: datetime,
    horizon_days: int,
    seed: int,
    snapshots: Snapshots | None = None,
) -> TrainingJob:
    events = read_event_log(path)
    return _time_split_job(
        "custom", f"event log {path.name}", events, train_cutoff, test_cutoff, horizon_days, seed,
        snapshots or Snapshots(CUSTOM_SNAPSHOTS),
    )  # fmt: skip


def _time_split_job(
    name: str,
    dataset: str,
    events: pd.DataFrame,
    train_cutoff: datetime,
    test_cutoff: datetime,
    horizon_days: int,
    seed: int,
    snapshots: Snapshots,
) -> TrainingJob:
    splits = time_split(
        events, train_cutoff, test_cutoff, horizon_days, seed,
        snapshots=snapshots.count, every_days=snapshots.every_days,
    )  # fmt: skip
    return TrainingJob(
        name=name,
        dataset=dataset,
        events=events,
        splits=splits,
        horizon_days=horizon_days,
        split={
            "train_cutoff": train_cutoff.isoformat(),
            "test_cutoff": test_cutoff.isoformat(),
            "training_snapshots": snapshots.describe(),
        },
    )
