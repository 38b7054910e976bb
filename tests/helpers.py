"""Small builders shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from app.features import offline, spec

T = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T_S = spec.unix_seconds(T)


def rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def event(user: str, kind: str, at: datetime, eid: str | None = None, **fields: Any) -> dict[str, Any]:
    row = {
        "event_id": eid or f"{user}-{kind}-{at.timestamp()}",
        "user_id": user,
        "type": kind,
        "ts": rfc3339(at),
    }
    return row | fields


def before(days: float = 0, seconds: float = 0) -> datetime:
    return T - timedelta(days=days, seconds=seconds)


def feature_row(rows: list[dict[str, Any]], user: str, as_of: int = T_S) -> dict[str, float]:
    events = offline.validate_events(pd.DataFrame(rows)) if rows else _empty()
    _, matrix = offline.features(events, as_of, [user])
    return dict(zip(spec.FEATURE_NAMES, matrix[0].tolist(), strict=True))


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: np.array([], dtype=object) for c in ("event_id", "user_id", "type", "ts")}).pipe(
        offline.validate_events
    )
