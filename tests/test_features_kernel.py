"""The compiled feature pass equals the whole-array numpy computation (tests/reference_features.py) bit for
bit, on the offline path's arrays and on the online store's records, and refuses input it cannot read."""

import numpy as np
import pytest

from app.features import records, spec
from app.features.compute import EventArrays, compute_features
from app.features.offline import active_users, event_arrays, validate_events
from app.training.simulate import SimulationConfig, simulate
from tests.reference_features import decode, reference_features

DAY = spec.DAY_SECONDS


def assert_identical(got: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]) -> None:
    (matrix, known), (expected_matrix, expected_known) = got, expected
    np.testing.assert_array_equal(known, expected_known)
    differing = matrix.view(np.int64) != expected_matrix.view(np.int64)  # bits, not values within a tolerance
    names = [spec.FEATURE_NAMES[column] for column in np.flatnonzero(differing.any(axis=0))]
    assert not names, f"features that differ: {names}"


def random_events(rng: np.random.Generator, n_users: int, as_of: int) -> EventArrays:
    """Users with 0-300 events over 400 days, a few after as_of, every type, times that often tie (on the
    window edges too), amounts up to a million units and every rating."""
    per_user = rng.integers(0, 300, n_users)
    user = np.repeat(np.arange(n_users), per_user)
    n = len(user)
    edges = np.array(spec.WINDOWS_DAYS) * DAY
    ages = np.where(rng.random(n) < 0.1, rng.choice(edges, n), rng.integers(-3 * DAY, 400 * DAY, n))
    kind = rng.integers(0, len(spec.EVENT_TYPES), n)
    paid = (kind == spec.PURCHASE) | (kind == spec.REFUND)
    cents = np.where(paid, rng.integers(0, 100_000_000, n), 0)
    rating = np.where(kind == spec.REVIEW, rng.integers(1, 6, n), 0)
    return EventArrays(n_users, user, as_of - ages, kind, cents, rating)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_give_the_reference_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    as_of = 1_750_000_000
    events = random_events(rng, 400, as_of)
    for when in (as_of, as_of - 45 * DAY, as_of + DAY):
        assert_identical(compute_features(events, when), reference_features(events, when))


def test_a_simulated_log_gives_the_reference_values() -> None:
    log = validate_events(simulate(SimulationConfig(n_users=600, days=200, seed=3)).events)
    last = int(log["ts_s"].max())
    arrays = event_arrays(log, active_users(log, last))
    for when in (last, last - 60 * DAY, last - 190 * DAY):
        assert_identical(compute_features(arrays, when), reference_features(arrays, when))


def stored_strings(events: EventArrays) -> list[bytes | None]:
    """Each user's events as the store keeps them: records in time order, None for a user without any."""
    ordered = events.in_user_time_order()
    strings: list[bytes | None] = [None] * events.n_users
    for user in np.unique(ordered.user):
        mine = np.flatnonzero(ordered.user == user)
        strings[user] = b"".join(
            records.RECORD.pack(
                int(ordered.ts[i]),
                int(ordered.kind[i]),
                int(i).to_bytes(6),
                int(ordered.rating[i]),
                int(ordered.cents[i]),
            )
            for i in mine
        )
    return strings


def test_stored_records_give_the_reference_values() -> None:
    rng = np.random.default_rng(7)
    as_of = 1_750_000_000
    strings = [*stored_strings(random_events(rng, 300, as_of)), None, b""]
    for when in (as_of, as_of - 30 * DAY, as_of - 500 * DAY):
        assert_identical(records.features(strings, when), reference_features(decode(strings), when))


def test_input_out_of_order_or_out_of_range_is_refused() -> None:
    one = EventArrays(
        2, np.array([1, 0]), np.array([5, 6]), np.array([0, 0]), np.array([0, 0]), np.array([0, 0])
    )
    with pytest.raises(ValueError, match="order"):  # users out of order, marked as already sorted
        compute_features(EventArrays(**{**one.__dict__, "time_ordered": True}), 10)
    unknown_type = EventArrays(
        1, np.array([0]), np.array([5]), np.array([len(spec.EVENT_TYPES)]), *[np.zeros(1)] * 2
    )
    with pytest.raises(ValueError, match="range"):
        compute_features(unknown_type, 10)
    record = records.RECORD.pack(5, 0, b"\0" * 6, 0, 0)
    with pytest.raises(ValueError, match="whole records"):
        records.features([record[:-1]], 10)
    with pytest.raises(ValueError, match="out of order"):
        records.features([records.RECORD.pack(9, 0, b"\0" * 6, 0, 0) + record], 10)
