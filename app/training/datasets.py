"""Labelled datasets: features as of a cutoff, churn labels from the horizon after it, and splits.

Splits are by time or by disjoint users, never random rows of one user's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.features import offline, spec


class JobRefused(ValueError):
    """This log cannot make the training job asked for; the message says why and what to change.

    `python -m app train` ends with the message and status 1, not with a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"train: {message}")


@dataclass(frozen=True)
class Labelled:
    user_ids: pd.Index
    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]  # 1 = churned: no purchase in (cutoff, cutoff + horizon]
    as_of: int

    def subset(self, mask: npt.NDArray[np.bool_]) -> Labelled:
        return Labelled(self.user_ids[mask], self.X[mask], self.y[mask], self.as_of)


@dataclass(frozen=True)
class Splits:
    train: Labelled
    validation: Labelled
    test: Labelled


def churn_labels(
    events: pd.DataFrame, users: pd.Index, cutoff: int, horizon_days: int
) -> npt.NDArray[np.int64]:
    """1 for users with no purchase in (cutoff, cutoff + horizon_days]."""
    end = cutoff + horizon_days * spec.DAY_SECONDS
    ts = events["ts_s"]
    in_horizon = (events["kind"] == spec.PURCHASE) & (ts > cutoff) & (ts <= end)
    buyers = pd.Index(events.loc[in_horizon, "user_id"].unique())
    labels: npt.NDArray[np.int64] = (~users.isin(buyers)).astype(np.int64)
    return labels


def labelled(
    events: pd.DataFrame, cutoff: int, horizon_days: int, users: Sequence[str] | None = None
) -> Labelled:
    """Users with at least one event at or before the cutoff (optionally only `users`), with labels."""
    active = offline.active_users(events, cutoff)
    if users is not None:
        active = active[active.isin(pd.Index(users))]
    index, X = offline.features(events, cutoff, active)
    return Labelled(index, X, churn_labels(events, index, cutoff, horizon_days), cutoff)


def validation_mask(user_ids: pd.Index, share: float, seed: int) -> npt.NDArray[np.bool_]:
    """A seeded, disjoint-user validation split."""
    rng = np.random.default_rng(seed)
    return rng.random(len(user_ids)) < share


def time_split(
    events: pd.DataFrame,
    train_cutoff: datetime,
    test_cutoff: datetime,
    horizon_days: int,
    seed: int,
    validation_share: float = 0.2,
) -> Splits:
    """Train and validation as of the train cutoff; test as of the later test cutoff."""
    train_at, test_at = spec.unix_seconds(train_cutoff), spec.unix_seconds(test_cutoff)
    if train_at + horizon_days * spec.DAY_SECONDS > test_at:
        raise JobRefused(
            f"the train cutoff's label window ({train_cutoff:%Y-%m-%d} + {horizon_days} days) runs past the "
            f"test cutoff {test_cutoff:%Y-%m-%d}: test labels would leak into training"
        )
    _require_coverage(events, test_at + horizon_days * spec.DAY_SECONDS)
    fit = labelled(events, train_at, horizon_days)
    held_out = validation_mask(fit.user_ids, validation_share, seed)
    return Splits(fit.subset(~held_out), fit.subset(held_out), labelled(events, test_at, horizon_days))


def user_split(
    events: pd.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    test_users: Sequence[str],
    seed: int,
    validation_share: float = 0.2,
) -> Splits:
    """One cutoff; the test set is a disjoint set of users (the CDNOW protocol)."""
    at = spec.unix_seconds(cutoff)
    _require_coverage(events, at + horizon_days * spec.DAY_SECONDS)
    everyone = labelled(events, at, horizon_days)
    is_test = everyone.user_ids.isin(pd.Index(test_users))
    fit = everyone.subset(~is_test)
    held_out = validation_mask(fit.user_ids, validation_share, seed)
    return Splits(fit.subset(~held_out), fit.subset(held_out), everyone.subset(is_test))


def _require_coverage(events: pd.DataFrame, label_end: int) -> None:
    last = int(events["ts_s"].max())
    # A log that stops before the label window ends would call every user a churner.
    if last < label_end - 7 * spec.DAY_SECONDS:
        raise JobRefused(
            f"the event log ends at {pd.Timestamp(last, unit='s')} but labels need events until "
            f"{pd.Timestamp(label_end, unit='s')}"
        )


def require_trainable(splits: Splits) -> None:
    """Refuse splits the MLP cannot be fitted, early-stopped and calibrated on.

    Training and validation need users of both outcomes (validation ROC AUC drives early stopping, and
    Platt calibration is fitted there); the test split only needs users. A test split of one outcome
    still gives a bundle, with the metrics that need both outcomes reported as failed.
    """
    for name, part in (("training", splits.train), ("validation", splits.validation)):
        users, churned = len(part.y), int(part.y.sum())
        if users == 0:
            raise JobRefused(f"no {name} users: nobody has an event at or before the train cutoff")
        if churned in (0, users):
            who = "every" if churned else "no"
            raise JobRefused(
                f"{who} {name} user churned ({churned} of {users}): the model needs users who buy again "
                "and users who do not; choose another cutoff or horizon, or a log with more users"
            )
    if len(splits.test.y) == 0:
        raise JobRefused("no test users: nobody has an event at or before the test cutoff")
