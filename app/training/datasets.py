"""Labelled datasets: features as of a cutoff, churn labels from the horizon after it, and splits.

Training rows may come from several snapshots (as-of dates every N days up to the train cutoff), each
labelled by its own window; the same users then repeat across snapshots, so validation (early stopping,
model selection, calibration) holds out whole USERS, with every snapshot of theirs. Splits are by time
or by disjoint users, never random rows of one user's history. The as-of date is never a feature.
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
    """One row per (user, snapshot); a user appears once per snapshot they had events before."""

    user_ids: pd.Index
    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]  # 1 = churned: no purchase in (as_of, as_of + horizon]
    as_of: npt.NDArray[np.int64]  # each row's snapshot time (Unix seconds); never a model input

    def subset(self, mask: npt.NDArray[np.bool_]) -> Labelled:
        return Labelled(self.user_ids[mask], self.X[mask], self.y[mask], self.as_of[mask])

    @property
    def snapshots(self) -> tuple[int, ...]:
        return tuple(int(t) for t in np.unique(self.as_of))

    def latest(self) -> Labelled:
        """The rows of the latest snapshot only: what one snapshot at the cutoff would have given."""
        return self.subset(self.as_of == self.as_of.max()) if len(self.y) else self


@dataclass(frozen=True)
class Splits:
    train: Labelled
    validation: Labelled
    test: Labelled

    def latest_snapshot(self) -> Splits:
        """The same users, training and validation rows of the latest snapshot only."""
        return Splits(self.train.latest(), self.validation.latest(), self.test)


def stack(parts: Sequence[Labelled]) -> Labelled:
    return Labelled(
        pd.Index(np.concatenate([p.user_ids.to_numpy() for p in parts])),
        np.concatenate([p.X for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.as_of for p in parts]),
    )


def snapshot_times(cutoff: int, snapshots: int, every_days: int) -> list[int]:
    """The as-of times of the training snapshots, earliest first, the last one at the cutoff."""
    if snapshots < 1 or every_days < 1:
        raise JobRefused(f"snapshots ({snapshots}) and days between them ({every_days}) must be at least 1")
    return [cutoff - k * every_days * spec.DAY_SECONDS for k in reversed(range(snapshots))]


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
    as_of = np.full(len(index), cutoff, dtype=np.int64)
    return Labelled(index, X, churn_labels(events, index, cutoff, horizon_days), as_of)


def snapshots_labelled(events: pd.DataFrame, times: Sequence[int], horizon_days: int) -> Labelled:
    return stack([labelled(events, t, horizon_days) for t in times])


def validation_mask(user_ids: pd.Index, share: float, seed: int) -> npt.NDArray[np.bool_]:
    """A seeded, disjoint-user validation split: every row of a held-out user is held out.

    The draw is per distinct user (in sorted order, so it does not depend on row order), which keeps a
    user's snapshots together: rows of one user on both sides would let early stopping and calibration
    reward memorising users.
    """
    users = np.unique(user_ids.to_numpy())
    rng = np.random.default_rng(seed)
    held_out = pd.Index(users[rng.random(len(users)) < share])
    mask: npt.NDArray[np.bool_] = np.asarray(user_ids.isin(held_out))
    return mask


def time_split(
    events: pd.DataFrame,
    train_cutoff: datetime,
    test_cutoff: datetime,
    horizon_days: int,
    seed: int,
    validation_share: float = 0.2,
    snapshots: int = 1,
    every_days: int = 14,
) -> Splits:
    """Train and validation from snapshots up to the train cutoff; test as of the later test cutoff."""
    train_at, test_at = spec.unix_seconds(train_cutoff), spec.unix_seconds(test_cutoff)
    times = snapshot_times(train_at, snapshots, every_days)
    for at in times:  # the latest is the binding one; each is checked, so the rule reads as stated
        if at + horizon_days * spec.DAY_SECONDS > test_at:
            raise JobRefused(
                f"the label window of the snapshot at {_day(at)} ({horizon_days} days) runs past the "
                f"test cutoff {test_cutoff:%Y-%m-%d}: test labels would leak into training"
            )
    _require_coverage(events, test_at + horizon_days * spec.DAY_SECONDS)
    fit = snapshots_labelled(events, times, horizon_days)
    held_out = validation_mask(fit.user_ids, validation_share, seed)
    return Splits(fit.subset(~held_out), fit.subset(held_out), labelled(events, test_at, horizon_days))


def user_split(
    events: pd.DataFrame,
    cutoff: datetime,
    horizon_days: int,
    test_users: Sequence[str],
    seed: int,
    validation_share: float = 0.2,
    snapshots: int = 1,
    every_days: int = 14,
) -> Splits:
    """Test users as of the cutoff; the other users from snapshots up to it (the CDNOW protocol).

    The test users are disjoint from training; their rows at earlier snapshots are never used. Every
    earlier snapshot's label window ends before the test labels' window does.
    """
    at = spec.unix_seconds(cutoff)
    _require_coverage(events, at + horizon_days * spec.DAY_SECONDS)
    everyone = snapshots_labelled(events, snapshot_times(at, snapshots, every_days), horizon_days)
    is_test = np.asarray(everyone.user_ids.isin(pd.Index(test_users)))
    fit = everyone.subset(~is_test)
    held_out = validation_mask(fit.user_ids, validation_share, seed)
    test = everyone.subset(is_test & (everyone.as_of == at))
    return Splits(fit.subset(~held_out), fit.subset(held_out), test)


def _day(at: int) -> str:
    return f"{pd.Timestamp(at, unit='s'):%Y-%m-%d}"


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
