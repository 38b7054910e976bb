"""The Redis feature store against a real redis-server: parity, idempotency, order, lateness, pruning."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest
import redis
import redis.asyncio as aredis

from app.features import offline, spec
from app.features.keys import KEY_SUFFIX, user_tag
from app.features.online import OnlineFeatureStore
from app.features.pseudonym import Pseudonyms
from app.features.records import RECORD
from app.schemas import Event
from tests.helpers import T_S, T, before, event

R = TypeVar("R")
PSEUDONYMS = Pseudonyms(b"store-tests-id-secret-of-32-bytes-or-more")
DAY = spec.DAY_SECONDS


def run(
    redis_url: str, work: Callable[[OnlineFeatureStore], Awaitable[R]], prefix: str = "t", **kw: Any
) -> R:
    async def main() -> R:
        client = aredis.Redis.from_url(redis_url)
        settings = {
            "allowed_lateness_s": 400 * DAY,
            "max_future_skew_s": 0,
            "retention_days": 400,
            "pseudonyms": PSEUDONYMS,
        } | kw
        try:
            return await work(OnlineFeatureStore(client, prefix, **settings))
        finally:
            await client.aclose()

    return asyncio.run(main())


def snapshot(redis_url: str, prefix: str) -> dict[bytes, bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return {k.split(b":", 1)[1]: client.get(k) for k in sorted(client.keys(f"{prefix}:*"))}


ROWS = [
    event("a", "session_start", before(days=200), "a0"),
    event("a", "purchase", before(days=150), "a1", amount=30.0),
    event("a", "page_view", before(days=120), "a2"),  # old: pruned, changes nothing
    event("a", "page_view", before(days=90), "a3"),  # exactly on the 90-day edge
    event("a", "purchase", before(days=30, seconds=-1), "a4", amount=12.34),
    event("a", "review", before(days=7), "a5", rating=2),
    event("a", "add_to_cart", before(days=1), "a6"),
    event("a", "purchase", before(), "a7", amount=5.0),  # at T
    event("b", "refund", before(days=3), "b1", amount=9.99),
    event("b", "support_contact", before(days=3), "b2"),
]
EVENTS = [Event.model_validate(r) for r in ROWS]


def offline_matrix(users: list[str]) -> np.ndarray:  # type: ignore[type-arg]
    return offline.features(offline.validate_events(pd.DataFrame(ROWS)), T_S, users)[1]


def test_store_reads_what_the_offline_path_computes(redis_url: str) -> None:
    users = ["a", "b", "never-seen"]

    async def work(store: OnlineFeatureStore) -> tuple[Any, Any]:
        result = await store.apply(EVENTS, T)
        assert (result.accepted, result.duplicates, result.rejected) == (len(EVENTS), 0, [])
        return await store.read(users, T)

    matrix, known = run(redis_url, work)
    np.testing.assert_array_equal(matrix, offline_matrix(users))
    assert known.tolist() == [True, True, False]


def test_replay_is_a_duplicate_and_changes_no_byte(redis_url: str) -> None:
    run(redis_url, lambda store: store.apply(EVENTS, T))
    before_replay = snapshot(redis_url, "t")
    replay = run(redis_url, lambda store: store.apply(EVENTS, T))
    # a2 is a page view older than every window: not kept, so outside the dedupe window. Its replay
    # counts as accepted again, and still changes nothing.
    assert (replay.accepted, replay.duplicates) == (1, len(EVENTS) - 1)
    assert snapshot(redis_url, "t") == before_replay


def test_shuffled_arrival_gives_the_same_bytes(redis_url: str) -> None:
    run(redis_url, lambda store: store.apply(EVENTS, T), prefix="ordered")
    shuffled = EVENTS.copy()
    random.Random(4).shuffle(shuffled)
    for chunk in (shuffled[:3], shuffled[3:7], shuffled[7:]):
        run(redis_url, lambda store, c=chunk: store.apply(c, T), prefix="shuffled")
    assert snapshot(redis_url, "ordered") == snapshot(redis_url, "shuffled")


def test_late_and_future_events_are_rejected_with_reasons(redis_url: str) -> None:
    late = EVENTS[1]
    future = Event.model_validate(event("a", "page_view", T + timedelta(seconds=301), "f"))
    result = run(
        redis_url,
        lambda store: store.apply([late, future], T),
        allowed_lateness_s=7 * DAY,
        max_future_skew_s=300,
    )
    assert [(r.index, r.event_id, r.reason) for r in result.rejected] == [
        (0, "a1", "too_late"),
        (1, "f", "in_future"),
    ]
    assert result.accepted == 0 and snapshot(redis_url, "t") == {}


def test_old_non_purchases_are_pruned_but_purchases_and_the_first_event_stay(redis_url: str) -> None:
    run(redis_url, lambda store: store.apply(EVENTS, T))
    key = user_tag("t", PSEUDONYMS.of("a")) + KEY_SUFFIX
    kept = snapshot(redis_url, "t")[key.split(":", 1)[1].encode()]
    assert len(kept) // RECORD.size == len([r for r in ROWS if r["user_id"] == "a"]) - 1  # only a2 went


@pytest.mark.parametrize("as_of_days", [0.0, 1.0, 7.0, 30.0])
def test_reads_at_later_times_still_match(redis_url: str, as_of_days: float) -> None:
    later = T + timedelta(days=as_of_days)

    async def work(store: OnlineFeatureStore) -> Any:
        await store.apply(EVENTS, T)
        return await store.read(["a", "b"], later)

    matrix, _ = run(redis_url, work)
    expected = offline.features(
        offline.validate_events(pd.DataFrame(ROWS)), spec.unix_seconds(later), ["a", "b"]
    )[1]
    np.testing.assert_array_equal(matrix, expected)


def test_apply_and_read_are_one_round_trip_each(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.script_flush()  # as after a Redis restart: the first apply must load the script itself
        client.config_resetstat()

    async def work(store: OnlineFeatureStore) -> None:
        await store.apply(EVENTS, T)
        await store.apply(EVENTS, T)
        await store.read(["a", "b"], T)

    run(redis_url, work)
    with redis.Redis.from_url(redis_url) as client:
        calls = {name.removeprefix("cmdstat_"): s["calls"] for name, s in client.info("commandstats").items()}
    # Two applies of two users, both users in one script call: 1 + 1 EVALSHA, and the first again
    # after the one SCRIPT LOAD.
    assert calls.pop("evalsha") == 3
    assert sum(calls.pop(name) for name in list(calls) if name.startswith("script")) == 1
    assert calls.pop("mget") == 1
    # commandstats also counts what Lua runs: no round trips
    inside_the_script = {"get", "set"}
    connection_chatter = {"config", "config|resetstat", "info", "hello", "client", "client|setinfo", "ping"}
    assert set(calls) <= inside_the_script | connection_chatter, calls


def test_in_order_writes_give_the_bytes_and_the_memory_of_one_merge(redis_url: str) -> None:
    # Recent events of one user, sent one at a time in time order, take the append path; the string
    # equals one merge of all of them, and holds no more memory (APPEND would have left slack).
    rows = [event("c", kind, before(days=20 - i), f"c{i}") for i, kind in enumerate(["page_view"] * 12)]
    rows += [event("c", "purchase", before(days=5), "cp", amount=3.5)]
    events = [Event.model_validate(r) for r in rows]

    async def one_by_one(store: OnlineFeatureStore) -> None:
        for e in events:
            await store.apply([e], T)

    async def together(store: OnlineFeatureStore) -> None:
        await store.apply(list(reversed(events)), T)

    run(redis_url, one_by_one, prefix="ordered")
    run(redis_url, together, prefix="merged")
    assert snapshot(redis_url, "ordered") == snapshot(redis_url, "merged")
    with redis.Redis.from_url(redis_url) as client:
        sizes = [client.memory_usage(key) for key in (client.keys("ordered:*") + client.keys("merged:*"))]
    assert len(sizes) == 2 and sizes[0] == sizes[1]


def test_a_write_that_must_prune_takes_the_merge_path(redis_url: str) -> None:
    # Stored: an old session (first, kept) and a page view 120 days old, kept only as the last event.
    # Newer events end that: appending would keep the page view, the merge drops it.
    old = [EVENTS[0], EVENTS[2]]

    async def write(store: OnlineFeatureStore) -> None:
        await store.apply(old, T)
        await store.apply(EVENTS[5:8], T)

    async def at_once(store: OnlineFeatureStore) -> None:
        await store.apply(old + EVENTS[5:8], T)

    run(redis_url, write, prefix="twice")
    run(redis_url, at_once, prefix="once")
    twice, once = snapshot(redis_url, "twice"), snapshot(redis_url, "once")
    assert twice == once and len(next(iter(once.values()))) == 4 * RECORD.size


def test_a_record_aged_past_the_prune_time_behind_old_purchases_is_pruned(redis_url: str) -> None:
    # Written 30 days before T, the page view of 100 days before T was recent; by T it is old. The old
    # purchase ahead of it is kept at any age, so the write at T must look past it, and merge.
    first, bought, viewed = (
        EVENTS[0],
        EVENTS[1],
        Event.model_validate(event("a", "page_view", before(days=100), "v")),
    )
    new = [EVENTS[6]]

    async def then_now(store: OnlineFeatureStore) -> None:
        await store.apply([first, bought, viewed], T - timedelta(days=30))
        await store.apply(new, T)

    async def at_once(store: OnlineFeatureStore) -> None:
        await store.apply([first, bought, viewed, *new], T)

    run(redis_url, then_now, prefix="aged")
    run(redis_url, at_once, prefix="fresh")
    aged, fresh = snapshot(redis_url, "aged"), snapshot(redis_url, "fresh")
    assert aged == fresh and len(next(iter(fresh.values()))) == 3 * RECORD.size


def test_old_purchases_leave_appends_to_the_append_path(redis_url: str) -> None:
    # Old purchases stored behind the first event, every other record recent: a newer event is appended,
    # and the string is the one a single merge of everything gives.
    rows = [
        EVENTS[0],
        EVENTS[1],
        Event.model_validate(event("a", "purchase", before(days=140), "p2", amount=8.0)),
    ]
    rows += [Event.model_validate(event("a", "page_view", before(days=10 - i), f"v{i}")) for i in range(5)]

    async def one_by_one(store: OnlineFeatureStore) -> None:
        for e in rows:
            await store.apply([e], T)

    async def together(store: OnlineFeatureStore) -> None:
        await store.apply(rows, T)

    run(redis_url, one_by_one, prefix="appended")
    run(redis_url, together, prefix="merged")
    appended, merged = snapshot(redis_url, "appended"), snapshot(redis_url, "merged")
    assert appended == merged and len(next(iter(merged.values()))) == 8 * RECORD.size
