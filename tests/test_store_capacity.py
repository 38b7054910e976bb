"""Capacity limits of the online store: what a capped user keeps, that it still depends on the set of
events only, which features stay exact, and purchases beyond capacity being refused."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from app.features import offline, spec
from app.features.capacity import MAX_RECENT_RECORDS, PRUNE_AFTER_S
from app.features.compute import EventArrays, compute_features
from app.features.records import RECORD, RECORD_DTYPE, encode, fingerprint
from app.schemas import Event
from tests.helpers import T_S, T, before, event
from tests.test_online_store import PSEUDONYMS, run, snapshot

DAY = spec.DAY_SECONDS
OTHER_KINDS = [
    "page_view",
    "session_start",
    "add_to_cart",
    "remove_from_cart",
    "review",
    "refund",
    "support_contact",
]


def row(rng: np.random.Generator, user: str, kind: str, age_s: int, eid: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if kind in ("purchase", "refund"):
        fields["amount"] = round(float(rng.uniform(1, 80)), 2)
    elif kind == "review":
        fields["rating"] = int(rng.integers(1, 6))
    return event(user, kind, T - timedelta(seconds=age_s), eid, **fields)


def history(user: str, others: int, purchases: int, days: int, seed: int) -> list[dict[str, Any]]:
    """A first event a year back, then `others` non-purchase events and `purchases` purchases at random
    times in the last `days` days, and one page view at T."""
    rng = np.random.default_rng(seed)
    rows = [row(rng, user, "session_start", 365 * DAY, f"{user}-first")]
    for i in range(others):
        kind = str(rng.choice(OTHER_KINDS))
        rows.append(row(rng, user, kind, int(rng.integers(1, days * DAY)), f"{user}-{i}"))
    for i in range(purchases):
        rows.append(row(rng, user, "purchase", int(rng.integers(1, days * DAY)), f"{user}-p{i}"))
    rows.append(row(rng, user, "page_view", 0, f"{user}-last"))
    return rows


def kept(rows: list[dict[str, Any]], now_s: int, max_recent: int) -> list[bytes]:
    """The rule the store documents, written independently of the script: the first and last events,
    every purchase, and the `max_recent` newest other events not older than the prune time."""
    events = [Event.model_validate(r) for r in rows]
    by_key: dict[tuple[int, bytes], tuple[int, bytes]] = {}
    for e in events:
        ts, fp = spec.unix_seconds(e.ts), fingerprint(e.event_id)
        by_key.setdefault((ts, fp), (spec.TYPE_CODE[e.type], encode(e, ts, fp)))
    order = sorted(by_key)
    others = [key for key in order if by_key[key][0] != spec.PURCHASE]
    recent = set(others[len(others) - max_recent :])
    prune_before = now_s - PRUNE_AFTER_S
    keep = [
        key
        for key in order
        if key in (order[0], order[-1])
        or by_key[key][0] == spec.PURCHASE
        or (key in recent and key[0] >= prune_before)
    ]
    return [by_key[key][1] for key in keep]


def apply_all(
    redis_url: str, rows: list[dict[str, Any]], prefix: str = "t", chunk: int = 0, **kw: Any
) -> None:
    events = [Event.model_validate(r) for r in rows]
    chunks = [events[i : i + chunk] for i in range(0, len(events), chunk)] if chunk else [events]
    for part in chunks:
        run(redis_url, lambda store, p=part: store.apply(p, T), prefix=prefix, **kw)


def stored(redis_url: str, user: str, prefix: str = "t") -> bytes:
    pseudonym = PSEUDONYMS.of(user).encode()
    return next(v for k, v in snapshot(redis_url, prefix).items() if pseudonym in k)


@pytest.mark.parametrize("seed", range(40))
def test_small_caps_keep_exactly_what_the_rule_says_in_any_arrival_order(redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    rows = history("u", others=rng.randint(0, 30), purchases=rng.randint(0, 4), days=120, seed=seed)
    cap = rng.randint(0, 8)
    rng.shuffle(rows)
    apply_all(redis_url, rows, prefix="whole", max_recent_records=cap)
    apply_all(redis_url, rows + rows[:5], prefix="parts", chunk=rng.randint(1, 7), max_recent_records=cap)
    expected = b"".join(kept(rows, T_S, cap))
    assert stored(redis_url, "u", "whole") == expected
    assert stored(redis_url, "u", "parts") == expected


@pytest.fixture(scope="module")
def capped() -> list[dict[str, Any]]:
    # 60 non-purchase events a day: 1-, 7- and 30-day windows hold fewer than the cap, 90 days more.
    return history("bot", others=6_000, purchases=300, days=100, seed=11)


def test_shuffled_arrival_of_a_capped_user_gives_the_same_bytes(
    redis_url: str, capped: list[dict[str, Any]]
) -> None:
    apply_all(redis_url, capped, prefix="ordered")
    shuffled = capped + capped[::7]  # with replays
    random.Random(3).shuffle(shuffled)
    apply_all(redis_url, shuffled, prefix="shuffled", chunk=700)
    blob = stored(redis_url, "bot", "ordered")
    assert stored(redis_url, "bot", "shuffled") == blob
    assert blob == b"".join(kept(capped, T_S, MAX_RECENT_RECORDS))
    assert len(blob) // RECORD.size == MAX_RECENT_RECORDS + 300 + 1  # + purchases + the first event


# Exact for a capped user whatever their volume: recency, tenure and everything from purchases alone.
ALWAYS_EXACT = [
    "days_since_last_event",
    "tenure_days",
    "days_since_last_purchase",
    "lifetime_purchases",
    "lifetime_spend",
    "purchase_gap_mean_days",
    "purchase_gap_std_days",
    *(f"purchase_count_{d}d" for d in spec.WINDOWS_DAYS),
    "purchase_amount_30d",
    "purchase_amount_90d",
]


def windowed(days: int) -> list[str]:
    """Features over the `days`-day window that read non-purchase events."""
    names = [f"{kind}_count_{days}d" for kind in spec.EVENT_TYPES if kind != "purchase"]
    if days in (30, 90):
        names.append(f"refund_amount_{days}d")
    if days == 30:
        names.append("cart_conversion_30d")
    if days == 90:
        names += ["review_rating_mean_90d", "low_rating_count_90d"]
    return names


def test_a_capped_user_serves_the_kept_records_and_the_exact_features(
    redis_url: str, capped: list[dict[str, Any]]
) -> None:
    apply_all(redis_url, capped)
    served, known = run(redis_url, lambda store: store.read(["bot"], T))
    assert known.tolist() == [True]

    fields = np.frombuffer(b"".join(kept(capped, T_S, MAX_RECENT_RECORDS)), dtype=RECORD_DTYPE)
    ts, kind, rating, cents = (fields[name].astype(np.int64) for name in ("ts", "kind", "rating", "cents"))
    arrays = EventArrays(1, np.zeros(len(fields), dtype=np.int64), ts, kind, cents, rating)
    np.testing.assert_array_equal(served, compute_features(arrays, T_S)[0])

    full = offline.validate_events(pd.DataFrame(capped))
    offline_row = dict(zip(spec.FEATURE_NAMES, offline.features(full, T_S, ["bot"])[1][0], strict=True))
    online_row = dict(zip(spec.FEATURE_NAMES, served[0], strict=True))
    ages = T_S - full.loc[full["kind"] != spec.PURCHASE, "ts_s"].to_numpy()
    # Windows holding at most MAX_RECENT_RECORDS non-purchase events are exact; here 1, 7 and 30 days.
    under_cap = [d for d in spec.WINDOWS_DAYS if (ages < d * DAY).sum() <= MAX_RECENT_RECORDS]
    assert under_cap == [1, 7, 30]
    for name in ALWAYS_EXACT + [name for days in under_cap for name in windowed(days)]:
        assert online_row[name] == pytest.approx(offline_row[name], rel=1e-12), name
    # Over the cap, counts only see the newest MAX_RECENT_RECORDS events: they undercount.
    counts = [f"{kind}_count_90d" for kind in spec.EVENT_TYPES if kind != "purchase"]
    assert all(online_row[c] <= offline_row[c] for c in counts)
    assert sum(offline_row[c] for c in counts) > sum(online_row[c] for c in counts) == MAX_RECENT_RECORDS


def purchase(i: int, days_ago: float) -> Event:
    return Event.model_validate(event("p", "purchase", before(days=days_ago), f"p{i}", amount=1.0))


def test_purchases_beyond_capacity_are_refused_and_change_nothing(redis_url: str) -> None:
    settings = {"allowed_lateness_s": 10 * DAY, "max_purchase_records": 3}
    first = run(redis_url, lambda store: store.apply([purchase(i, 5 - i) for i in range(2)], T), **settings)
    assert (first.accepted, first.duplicates, first.rejected) == (2, 0, [])
    too_late = Event.model_validate(event("p", "page_view", before(days=11), "old"))
    view = Event.model_validate(event("p", "page_view", before(days=1), "view"))
    # Room for one more purchase: the earlier of the two new ones fits, whatever the request order.
    batch = [too_late, purchase(9, 0.5), purchase(0, 5), view, purchase(8, 2), purchase(7, 0.1)]
    result = run(redis_url, lambda store: store.apply(batch, T), **settings)
    assert (result.accepted, result.duplicates) == (2, 1)  # purchase 8 and the view; purchase 0 again
    assert [(r.index, r.event_id, r.reason) for r in result.rejected] == [
        (0, "old", "too_late"),
        (1, "p9", "user_over_capacity"),
        (5, "p7", "user_over_capacity"),
    ]
    before_refusal = snapshot(redis_url, "t")
    again = run(redis_url, lambda store: store.apply([purchase(6, 0), *batch[1:]], T), **settings)
    assert (again.accepted, again.duplicates, len(again.rejected)) == (0, 3, 3)
    assert snapshot(redis_url, "t") == before_refusal
    # What is served is exactly the accepted events' features.
    accepted = [purchase(0, 5), purchase(1, 4), purchase(8, 2), view]
    frame = offline.validate_events(pd.DataFrame([e.model_dump(exclude_none=True) for e in accepted]))
    served, _ = run(redis_url, lambda store: store.read(["p"], T), **settings)
    np.testing.assert_array_equal(served, offline.features(frame, T_S, ["p"])[1])


def test_a_simulated_user_with_90_days_of_history_costs_under_2_kib_of_redis(redis_url: str) -> None:
    """The memory budget per user, measured as bench/online_store.py does: used_memory before and after
    its 2,000 simulated users (fewer would weigh Redis's fixed costs into each user)."""
    from app.training.simulate import SimulationConfig, simulate

    log = simulate(SimulationConfig(n_users=2_000, days=150, seed=3)).events
    rows = log.replace({np.nan: None}).to_dict("records")
    events = [Event.model_validate({k: v for k, v in r.items() if v is not None}) for r in rows]
    now = max(e.ts for e in events)
    with redis.Redis.from_url(redis_url) as client:
        base = client.info("memory")["used_memory"]
        run(redis_url, lambda store: store.apply(events, now))
        users = len({e.user_id for e in events})
        per_user = (client.info("memory")["used_memory"] - base) / users
    assert 1_000 < per_user <= 2_048, per_user
