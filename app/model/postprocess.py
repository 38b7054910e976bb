"""From logits to what the service answers: calibrated probability, risk tier and segment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]
TIERS = ("low", "medium", "high")


@dataclass(frozen=True)
class PlattCalibration:
    """p = sigmoid(slope * logit + intercept), fitted on validation rows."""

    slope: float
    intercept: float

    def probability(self, logits: Vector) -> Vector:
        return 1.0 / (1.0 + np.exp(-(self.slope * logits + self.intercept)))

    def to_json(self) -> dict[str, Any]:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlattCalibration:
        return cls(float(data["slope"]), float(data["intercept"]))


@dataclass(frozen=True)
class RiskTiers:
    """Tier edges on the calibrated probability; `decision` is the threshold the metrics use."""

    medium: float
    high: float
    decision: float

    def tier_index(self, probability: Vector) -> npt.NDArray[np.int64]:
        tiers: npt.NDArray[np.int64] = (probability >= self.medium).astype(np.int64)
        tiers += probability >= self.high
        return tiers

    def to_json(self) -> dict[str, Any]:
        return {"medium": self.medium, "high": self.high, "decision": self.decision}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RiskTiers:
        return cls(float(data["medium"]), float(data["high"]), float(data["decision"]))


@dataclass(frozen=True)
class Segments:
    """K-Means centroids in scaled feature space, each with the name of its profile."""

    names: tuple[str, ...]
    centroids: npt.NDArray[np.float64]

    def assign(self, scaled: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 is the same for every centroid: one matrix product
        # instead of an (rows x centroids x features) array.
        distance = (self.centroids**2).sum(axis=1) - 2.0 * (scaled @ self.centroids.T)
        nearest: npt.NDArray[np.int64] = distance.argmin(axis=1).astype(np.int64)
        return nearest

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "centroids": self.centroids.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segments:
        return cls(tuple(data["names"]), np.array(data["centroids"], dtype=np.float64))


@dataclass(frozen=True)
class ColdStart:
    """The churn probability of a user with no history: a prior learnt on training users at their first
    event (the share of them who bought nothing in the horizon after it). The network is not asked: a user
    with no events is a row of defaults it never saw in training."""

    probability: float
    users: int  # training users the prior was measured on

    def to_json(self) -> dict[str, Any]:
        return {"probability": self.probability, "users": self.users}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColdStart:
        return cls(float(data["probability"]), int(data["users"]))
