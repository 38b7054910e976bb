"""What a reason compares a user with: each feature's median among customers who stayed.

Fitted in training on the latest snapshot's training rows with label 0 (no churn in the horizon): one
as-of date, like the tiers and segments, so it describes customers at one moment as the service sees
them. Stored in the bundle as reasons.json; a bundle without it gives reasons with no typical value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DEFINITION = "median of the raw feature among retained training users (label 0) at the latest snapshot"


class TypicalValuesError(ValueError):
    """reasons.json that does not describe the bundle's features; the message says how."""


@dataclass(frozen=True)
class TypicalValues:
    names: tuple[str, ...]
    values: npt.NDArray[np.float64]  # per feature, in `names` order; NaN when no user stayed
    retained_users: int

    @classmethod
    def of_retained(
        cls, names: Sequence[str], X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]
    ) -> TypicalValues:
        retained = X[y == 0]
        values = np.median(retained, axis=0) if len(retained) else np.full(len(names), np.nan)
        return cls(tuple(names), values.astype(np.float64), len(retained))

    def to_json(self) -> dict[str, Any]:
        return {
            "definition": DEFINITION,
            "retained_users": self.retained_users,
            "typical_values": {
                name: None if math.isnan(v) else v
                for name, v in zip(self.names, self.values.tolist(), strict=True)
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], names: Sequence[str]) -> TypicalValues:
        """Read for the features `names` (the served order); refused unless it lists exactly those."""
        stored = data.get("typical_values")
        if not isinstance(stored, dict) or set(stored) != set(names):
            raise TypicalValuesError("typical_values does not list exactly the bundle's features")
        values = [stored[name] for name in names]
        if not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
            for v in values
        ):
            raise TypicalValuesError("a typical value is neither a finite number nor null")
        array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        return cls(tuple(names), array, int(data.get("retained_users", 0)))
