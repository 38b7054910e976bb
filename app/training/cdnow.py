"""The CDNOW purchase logs (data/cdnow/) as purchase events in the public schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from app.features.offline import validate_events

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "cdnow"
MASTER = DATA_DIR / "CDNOW_master.txt"
SAMPLE = DATA_DIR / "CDNOW_sample.txt"

# The standard protocol (Fader, Hardie & Lee 2005): 39 weeks of calibration, 39 weeks of holdout.
CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)
HOLDOUT_DAYS = 273  # 1997-10-01 .. 1998-06-30


def user_id(customer_id: int) -> str:
    return f"c{customer_id:05d}"


def master_events(path: Path = MASTER) -> pd.DataFrame:
    """Every row of the master log as one purchase at noon UTC of its date; validated like any log."""
    raw = pd.read_csv(path, sep=r"\s+", dtype={"date": str})
    dates = pd.to_datetime(raw["date"], format="%Y%m%d")
    frame = pd.DataFrame(
        {
            "event_id": [f"cdnow-{i}" for i in range(len(raw))],
            "user_id": raw["customer_id"].map(user_id),
            "type": "purchase",
            "ts": dates.dt.strftime("%Y-%m-%dT12:00:00Z"),
            "amount": raw["dollar_value"].astype(float),
            "items": raw["number_of_cds"].astype(int),
        }
    )
    return validate_events(frame)


def sample_user_ids(path: Path = SAMPLE) -> list[str]:
    """The customers of the 1/10 systematic sample: the standard test set."""
    raw = pd.read_csv(
        path, sep=r"\s+", header=None, names=["master_id", "sample_id", "date", "cds", "dollars"]
    )
    return sorted(raw["master_id"].drop_duplicates().map(user_id))
