"""The event id is the idempotency key within a user: the same event again is a duplicate, the event id
with other content is a conflict, and neither is ever counted twice. Against a real Redis, and through a
real uvicorn across a restart of the service."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from app.features import spec
from app.features.records import FP_BYTES, RECORD, fingerprint
from app.schemas import Event
from tests.helpers import T, before, event
from tests.live import live_server
from tests.test_online_store import run, snapshot

LIFETIME = [spec.FEATURE_NAMES.index(n) for n in ("lifetime_purchases", "lifetime_spend")]


def ev(row: dict[str, Any]) -> Event:
    return Event.model_validate(row)


PURCHASE = event("u", "purchase", before(days=1), "order-1", amount=100.0, items=2)
VIEW = event("u", "page_view", before(seconds=3_600), "view-1")


def outcome(result: Any) -> tuple[int, int, list[tuple[int, str, str]]]:
    return result.accepted, result.duplicates, [(r.index, r.event_id, r.reason) for r in result.rejected]


def lifetime(redis_url: str, user: str = "u") -> list[float]:
    matrix, _ = run(redis_url, lambda store: store.read([user], T))
    return [float(matrix[0, i]) for i in LIFETIME]


def test_the_same_event_again_is_one_duplicate_across_requests_and_with_another_event_between(
    redis_url: str,
) -> None:
    assert outcome(run(redis_url, lambda store: store.apply([ev(PURCHASE)], T))) == (1, 0, [])
    again = run(redis_url, lambda store: store.apply([ev(VIEW), ev(PURCHASE)], T))
    assert outcome(again) == (1, 1, [])
    third = run(redis_url, lambda store: store.apply([ev(PURCHASE), ev(VIEW)], T))
    assert outcome(third) == (0, 2, [])
    assert lifetime(redis_url) == [1.0, 100.0]
    (blob,) = snapshot(redis_url, "t").values()
    assert len(blob) == 2 * RECORD.size


@pytest.mark.parametrize(
    "change",
    [
        {"ts": T - timedelta(hours=2)},  # another time: the earlier key (second, fingerprint) missed it
        {"ts": before(days=1, seconds=-1)},  # one second later
        {"amount": 100.01},
        {"type": "refund", "items": None},
        {"type": "page_view", "amount": None, "items": None},
    ],
    ids=["other-time", "next-second", "other-amount", "other-type", "other-type-no-amount"],
)
def test_the_event_id_with_other_content_is_a_conflict_and_changes_nothing(
    redis_url: str, change: dict[str, Any]
) -> None:
    run(redis_url, lambda store: store.apply([ev(PURCHASE)], T))
    stored = snapshot(redis_url, "t")
    changed = {k: v for k, v in (PURCHASE | change).items() if v is not None}
    if "ts" in change:
        changed["ts"] = change["ts"].isoformat().replace("+00:00", "Z")
    result = run(redis_url, lambda store: store.apply([ev(changed)], T))
    assert outcome(result) == (0, 0, [(0, "order-1", "conflict")])
    assert snapshot(redis_url, "t") == stored
    assert lifetime(redis_url) == [1.0, 100.0]


def test_a_review_sent_again_with_another_rating_is_a_conflict(redis_url: str) -> None:
    review = event("u", "review", before(days=2), "rev-1", rating=2)
    run(redis_url, lambda store: store.apply([ev(review)], T))
    result = run(redis_url, lambda store: store.apply([ev(review | {"rating": 5}), ev(review)], T))
    # Within a request a later event is compared with the first of its id, here the changed one.
    assert outcome(result) == (0, 0, [(0, "rev-1", "conflict"), (1, "rev-1", "conflict")])
    changed_twice = [ev(review | {"rating": 5})] * 2  # a copy shares the first's outcome
    result = run(redis_url, lambda store: store.apply(changed_twice, T))
    assert outcome(result) == (0, 0, [(0, "rev-1", "conflict"), (1, "rev-1", "conflict")])
    assert outcome(run(redis_url, lambda store: store.apply([ev(review)] * 2, T))) == (0, 2, [])


def test_content_is_what_the_record_stores_items_and_fractions_of_a_second_are_not_compared(
    redis_url: str,
) -> None:
    run(redis_url, lambda store: store.apply([ev(PURCHASE)], T))
    fraction = PURCHASE["ts"].replace("Z", ".250Z")
    resent = [ev(PURCHASE | {"items": 7}), ev(PURCHASE | {"ts": fraction})]
    assert outcome(run(redis_url, lambda store: store.apply(resent, T))) == (0, 2, [])


def test_repeats_within_one_request_the_first_of_an_id_is_applied(redis_url: str) -> None:
    later = PURCHASE | {"ts": "2026-03-01T11:00:00Z"}
    batch = [ev(PURCHASE), ev(VIEW), ev(PURCHASE), ev(later), ev(PURCHASE | {"amount": 5.0})]
    result = run(redis_url, lambda store: store.apply(batch, T))
    assert outcome(result) == (2, 1, [(3, "order-1", "conflict"), (4, "order-1", "conflict")])
    assert lifetime(redis_url) == [1.0, 100.0]
    # The first of the request is kept even when a later copy sorts first in time.
    other = run(
        redis_url,
        lambda store: store.apply([ev(later | {"user_id": "w"}), ev(PURCHASE | {"user_id": "w"})], T),
    )
    assert outcome(other) == (1, 0, [(1, "order-1", "conflict")])
    matrix, _ = run(redis_url, lambda store: store.read(["w"], T))
    assert matrix[0, spec.FEATURE_NAMES.index("days_since_last_purchase")] == pytest.approx(1 / 24)


def test_event_ids_are_per_user(redis_url: str) -> None:
    result = run(redis_url, lambda store: store.apply([ev(PURCHASE), ev(PURCHASE | {"user_id": "v"})], T))
    assert outcome(result) == (2, 0, [])


def history(user: str, n: int, seed: int) -> list[dict[str, Any]]:
    ages = np.random.default_rng(seed).integers(60, 80 * 86_400, size=n)
    return [
        event(user, "purchase" if i % 10 == 0 else "page_view", T - timedelta(seconds=int(a)), f"{user}-{i}")
        | ({"amount": 1.0 + i} if i % 10 == 0 else {})
        for i, a in enumerate(ages)
    ]


# 4,096: the caps are out of reach; 600: in reach (so the pass also counts the stored purchases), though
# nothing here is dropped for them.
@pytest.mark.parametrize("cap", [4_096, 600])
def test_a_busy_user_gets_the_same_answers_from_the_search_and_from_the_pass(
    redis_url: str, cap: int
) -> None:
    """A few new events are searched for in the stored string, many are found in one pass over it: both
    find every stored event id, wherever its time lies."""
    rows = history("busy", 600, seed=5)
    resend = [dict(r) for r in rows[::6]]  # 100 of them: every third with another time, a new one each
    for i, row in enumerate(resend):
        if i % 3 == 0:
            row["ts"] = (T - timedelta(seconds=i + 1)).isoformat().replace("+00:00", "Z")
    resend += [event("busy", "page_view", T - timedelta(seconds=5 + i), f"new-{i}") for i in range(20)]
    expected = {i for i in range(100) if i % 3 == 0}
    stored = [ev(r) for r in rows]
    for chunk, prefix in ((1, "one-by-one"), (len(resend), "together")):
        run(redis_url, lambda store: store.apply(stored, T), prefix=prefix, max_recent_records=cap)
        accepted = duplicates = 0
        conflicts: set[int] = set()
        for start in range(0, len(resend), chunk):
            part = [ev(r) for r in resend[start : start + chunk]]
            result = run(
                redis_url, lambda store, p=part: store.apply(p, T), prefix=prefix, max_recent_records=cap
            )
            accepted, duplicates = accepted + result.accepted, duplicates + result.duplicates
            conflicts |= {start + r.index for r in result.rejected if r.reason == "conflict"}
        assert (accepted, duplicates, conflicts) == (20, 100 - len(expected), expected), prefix


def test_fingerprint_bytes_found_across_fields_are_not_an_event_id(redis_url: str) -> None:
    """The search for a fingerprint may meet its bytes elsewhere in the string: only a match at a
    fingerprint's place counts. Stored: a purchase whose amount in cents holds a new event id's
    fingerprint's first four bytes, followed by a record whose time starts with its last two."""
    next_ts = spec.unix_seconds(T - timedelta(hours=1))
    tail = next_ts.to_bytes(4, "big")[:2]
    new_id = next(
        eid
        for eid in (f"x-{i}" for i in itertools.count())
        if (fp := fingerprint(eid))[4:] == tail and int.from_bytes(fp[:4], "big") <= 1_000_000_000
    )
    cents = int.from_bytes(fingerprint(new_id)[:4], "big")
    stored = [
        event("x", "purchase", T - timedelta(hours=2), "paid", amount=cents / 100),
        event("x", "page_view", T - timedelta(hours=1), "seen"),
    ]
    run(redis_url, lambda store: store.apply([ev(r) for r in stored], T))
    (blob,) = run(redis_url, lambda store: store.fetch(["x"]))
    assert fingerprint(new_id) in (blob or b"")
    result = run(redis_url, lambda store: store.apply([ev(event("x", "page_view", before(), new_id))], T))
    assert outcome(result) == (1, 0, [])


def test_fingerprints_are_48_bits_and_ids_a_32_bit_one_confused_are_two_events(redis_url: str) -> None:
    assert FP_BYTES * 8 >= 48
    # Birthday bound for a user with 10,000 stored event ids: the chance that any two share a
    # fingerprint, and that a new id meets one of them.
    n = 10_000
    assert n * (n - 1) / 2 / 2**48 < 2e-7 and n / 2**48 < 4e-11
    # Two ids with one 32-bit BLAKE2b fingerprint (the earlier key), sent in one second: two events.
    seen: dict[bytes, str] = {}
    for i in itertools.count():
        eid = f"id-{i}"
        short = hashlib.blake2b(eid.encode(), digest_size=4).digest()
        if short in seen:
            first, second = seen[short], eid
            break
        seen[short] = eid
    rows = [event("c", "page_view", before(), eid) for eid in (first, second)]
    assert outcome(run(redis_url, lambda store: store.apply([ev(r) for r in rows], T))) == (2, 0, [])


def test_end_to_end_duplicates_conflicts_and_a_restart_of_the_service(redis_url: str) -> None:
    body = {"events": [PURCHASE]}
    moved = {"events": [PURCHASE | {"ts": "2026-03-01T10:00:00Z"}]}
    with live_server(redis_url, allowed_lateness_s=7 * 86_400) as server, server.client() as http:
        assert http.post("/events", json=body).json() == {"accepted": 1, "duplicates": 0, "rejected": []}
        assert http.post("/events", json=body).json() == {"accepted": 0, "duplicates": 1, "rejected": []}
        assert http.post("/events", json=moved).json() == {
            "accepted": 0,
            "duplicates": 0,
            "rejected": [{"index": 0, "event_id": "order-1", "reason": "conflict"}],
        }
        both = http.post("/events", json={"events": [VIEW, VIEW, VIEW | {"type": "session_start"}]})
        assert both.json() == {
            "accepted": 1,
            "duplicates": 1,
            "rejected": [{"index": 2, "event_id": "view-1", "reason": "conflict"}],
        }
    with live_server(redis_url, allowed_lateness_s=7 * 86_400) as server, server.client() as http:
        assert http.post("/events", json=body).json() == {"accepted": 0, "duplicates": 1, "rejected": []}
        assert http.post("/events", json=moved).json()["rejected"][0]["reason"] == "conflict"
        features = http.get("/users/u/features").json()["features"]
        metrics = http.get("/metrics").text
    assert (features["lifetime_purchases"], features["lifetime_spend"]) == (1, 100)
    assert 'reason="conflict"' in metrics
