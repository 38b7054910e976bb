"""The cold-start prior: how often a new user churns, learnt on training users at their first event."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.features import spec
from app.model.postprocess import ColdStart


def first_event_prior(events: pd.DataFrame, users: pd.Index, cutoff: int, horizon_days: int) -> ColdStart:
    """The share of `users` (training users) with no purchase in the horizon after their first event.

    Only users whose first event is at least a horizon before the cutoff count, so every label is observed
    before the cutoff (and before the test window). A first event that is a purchase does not count as
    buying again: the label looks at (first event, first event + horizon].
    """
    horizon = horizon_days * spec.DAY_SECONDS
    mine = events[events["user_id"].isin(users) & (events["ts_s"] <= cutoff)]
    first = mine.groupby("user_id")["ts_s"].min()
    first = first[first + horizon <= cutoff]
    if first.empty:
        raise ValueError(f"no training user's first event is {horizon_days} days before the cutoff")
    bought = events[(events["kind"] == spec.PURCHASE) & events["user_id"].isin(first.index)]
    start = bought["user_id"].map(first)
    inside = (bought["ts_s"] > start) & (bought["ts_s"] <= start + horizon)
    buyers = pd.Index(bought.loc[inside, "user_id"].unique())
    churned = ~first.index.isin(buyers)
    return ColdStart(float(np.mean(churned)), len(first))
