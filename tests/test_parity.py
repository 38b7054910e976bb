"""Parity: a simulated log replayed through POST /events (duplicates, late and shuffled arrival
included) gives, for every user, the features the offline pipeline computes from the same log, on one
Redis and on a Redis Cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app.features import offline, spec
from app.training.simulate import SimulationConfig, simulate
from tests.conftest import Backend, flush
from tests.live import live_server

SIM = SimulationConfig(n_users=120, days=150, seed=5, duplicate_rate=0.03, late_rate=0.05)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return simulate(SIM).events


@pytest.fixture(scope="module")
def validated(log: pd.DataFrame) -> pd.DataFrame:
    return offline.validate_events(log)


def as_of_times(validated: pd.DataFrame) -> list[int]:
    """The end of the log, and times that put real events exactly on window edges and at T."""
    purchases = validated.loc[validated["kind"] == spec.PURCHASE, "ts_s"].sort_values().to_numpy()
    last = int(validated["ts_s"].max())
    middle = int(purchases[len(purchases) // 2])
    return [
        last,
        middle,
        middle + 7 * spec.DAY_SECONDS,
        middle + 30 * spec.DAY_SECONDS,
        middle + 90 * spec.DAY_SECONDS,
    ]


def test_online_features_equal_offline_features(
    backend: Backend, log: pd.DataFrame, validated: pd.DataFrame
) -> None:
    users = sorted(validated["user_id"].unique())
    log_ts = pd.to_datetime(log["ts"], utc=True)
    covered = np.zeros(spec.N_FEATURES, dtype=bool)
    for as_of in as_of_times(validated):
        now = datetime.fromtimestamp(as_of, tz=UTC)
        flush(backend.url, backend.cluster)
        # Replay in arrival order (the log's order), only what had happened by `now`.
        arrived = log[log_ts <= pd.Timestamp(now)].replace({np.nan: None}).to_dict("records")
        with live_server(backend.url, now=now, **backend.settings) as server, server.client() as http:
            for start in range(0, len(arrived), 1000):
                batch = [
                    {k: v for k, v in row.items() if v is not None} for row in arrived[start : start + 1000]
                ]
                assert http.post("/events", json={"events": batch}).status_code == 200
            online = np.array(
                [list(http.get(f"/users/{user}/features").json()["features"].values()) for user in users]
            )
        _, expected = offline.features(validated, as_of, users)
        counts = [
            i for i, f in enumerate(spec.FEATURES) if "count" in f.name or f.name == "lifetime_purchases"
        ]
        np.testing.assert_array_equal(online[:, counts], expected[:, counts])
        np.testing.assert_allclose(online, expected, rtol=1e-9, atol=0)
        defaults = np.array([f.default for f in spec.FEATURES])
        covered |= (expected != defaults).any(axis=0)
    # The comparison means something for every feature: each took a non-default value somewhere.
    assert covered.all(), [spec.FEATURE_NAMES[i] for i in np.flatnonzero(~covered)]


def test_window_edge_times_hold_events_exactly_on_the_edge(validated: pd.DataFrame) -> None:
    times = as_of_times(validated)
    ts = set(validated["ts_s"])
    for as_of, days in zip(times[2:], (7, 30, 90), strict=True):
        assert as_of - days * spec.DAY_SECONDS in ts
    assert times[1] in ts  # an event exactly at T
    assert timedelta(seconds=times[0] - times[1]).days > 0
