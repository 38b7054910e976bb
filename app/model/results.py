"""What scoring produces: typed per-user results, kept column-wise until a request takes its slice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from app.features import spec
from app.model.postprocess import TIERS
from app.model.reason_text import NO_HISTORY_TEXT, ReasonTexts

_FEATURE_NAMES = np.array(spec.FEATURE_NAMES, dtype=object)


# Per-user results are TypedDicts: typed for the checker, plain dicts at run time, which are several
# times cheaper to build and serialise than dataclass instances at thousands of users per batch.
class Reason(TypedDict):
    feature: str
    value: float
    # Added log-odds of churn on the calibrated scale: slope x gradient of the logit x (value - training
    # mean) in the scaled space. Unlike added probability, it does not vanish where the probability
    # saturates, so the riskiest users keep their reasons.
    contribution: float
    typical_value: float | None  # the feature's median among retained training users; None: not in the bundle
    text: str  # the reason in plain words, for a person reading it


class UserScore(TypedDict):
    user_id: str
    churn_probability: float
    risk_tier: str
    segment: str
    known_user: bool
    reasons: list[Reason] | None  # None when the request did not ask for explanations


# The one reason of a user scored by the cold-start prior: nothing of theirs moved the probability.
NO_HISTORY_NAME = "no history"
NO_HISTORY: Reason = {
    "feature": NO_HISTORY_NAME,
    "value": 0.0,
    "contribution": 0.0,
    "typical_value": None,
    "text": NO_HISTORY_TEXT,
}


@dataclass(frozen=True)
class TopReasons:
    """Each row's k strongest contributions, strongest first, as arrays; only positive ones are reasons.
    Rows in `no_history` (users scored by the cold-start prior) have the one reason NO_HISTORY."""

    features: npt.NDArray[np.intp]  # (rows, k) feature indices
    values: npt.NDArray[np.float64]  # (rows, k) the features' raw values
    shares: npt.NDArray[np.float64]  # (rows, k) added log-odds of churn
    no_history: npt.NDArray[np.bool_] | None = None

    def as_lists(self, texts: ReasonTexts) -> list[list[Reason]]:
        """Per row, its reasons as dicts, with the typical values and sentences of `texts`."""
        # One flat list of the positive reasons' dicts (each row's are a prefix: rows are sorted
        # descending), then per row its slice: a comprehension per row cost ~5 us a user at thousands of
        # users per batch.
        positive = self.shares > 0
        features = self.features[positive]
        values = self.values[positive]
        typical = texts.typical[features]
        flat: list[Reason] = [
            {"feature": name, "value": value, "contribution": share, "typical_value": usual, "text": text}
            for name, value, share, usual, text in zip(
                _FEATURE_NAMES[features].tolist(),
                values.tolist(),
                self.shares[positive].tolist(),
                _nan_as_none(typical),
                texts.sentences(features, values),
                strict=True,
            )
        ]
        counts = positive.sum(axis=1)
        starts = (np.cumsum(counts) - counts).tolist()
        lists = [flat[start : start + count] for start, count in zip(starts, counts.tolist(), strict=True)]
        if self.no_history is not None:
            for row in np.flatnonzero(self.no_history).tolist():
                lists[row] = [NO_HISTORY]
        return lists


def _nan_as_none(values: npt.NDArray[np.float64]) -> list[float | None]:
    listed: list[float | None] = values.tolist()
    if np.isnan(values).any():  # a bundle without typical values, or a feature no retained user had
        listed = [None if v != v else v for v in listed]  # v != v: NaN
    return listed


@dataclass(frozen=True)
class ScoredRows:
    """One model's answers for consecutive rows of a batch, as arrays."""

    probability: npt.NDArray[np.float64]
    tier: npt.NDArray[np.int64]
    segment: npt.NDArray[np.int64]
    known: npt.NDArray[np.bool_]
    segment_names: tuple[str, ...]
    reasons: list[list[Reason]] | None
    top: TopReasons | None = None  # the reasons as arrays, when explaining

    def users(self, user_ids: list[str], with_reasons: list[bool]) -> list[UserScore]:
        """Per-user results, built once per batch (jobs then take list slices); reasons only for the
        rows whose request asked for them."""
        names = self.segment_names
        reasons: list[list[Reason] | None] = (
            [r if wanted else None for r, wanted in zip(self.reasons, with_reasons, strict=True)]
            if self.reasons is not None
            else [None] * len(user_ids)
        )
        return [
            {
                "user_id": user_id,
                "churn_probability": p,
                "risk_tier": TIERS[t],
                "segment": names[s],
                "known_user": k,
                "reasons": r,
            }
            for user_id, p, t, s, k, r in zip(
                user_ids,
                self.probability.tolist(),
                self.tier.tolist(),
                self.segment.tolist(),
                self.known.tolist(),
                reasons,
                strict=True,
            )
        ]


@dataclass(frozen=True)
class ScoreResult:
    """The answer to one request: its users, in request order, scored by one model."""

    model_version: str
    scored_at: datetime
    results: list[UserScore]
