"""What must never change by accident: type codes, the record layout, the key; and how a request's
records are put in order for the write script."""

from __future__ import annotations

import struct
from collections import Counter
from typing import Any, get_args

import numpy as np

from app import schemas
from app.features import events, records, spec
from app.features.keys import KEY_SUFFIX, hash_tag, user_tag
from app.features.online import OnlineFeatureStore, plan
from app.schemas import Event
from tests.helpers import T_S, T, before, event
from tests.test_online_store import EVENTS, PSEUDONYMS, run


def test_event_type_codes_are_pinned() -> None:
    # Stored records and the committed model's feature order use these numbers: renumbering breaks both.
    assert events.EVENT_TYPE_CODES == {
        "session_start": 0,
        "page_view": 1,
        "add_to_cart": 2,
        "remove_from_cart": 3,
        "purchase": 4,
        "refund": 5,
        "review": 6,
        "support_contact": 7,
    }
    assert get_args(events.EventType) == spec.EVENT_TYPES
    assert schemas.EventType is events.EventType
    assert spec.spec_hash() == "11c7ba730130415f10582987d6c666eb42e913a6ded096752604fbd0b9e13334"


def test_rejection_reasons_are_one_list() -> None:
    reasons = set(get_args(events.RejectionReason))
    assert reasons == {"too_late", "in_future", "user_over_capacity", "erased", "conflict"}
    assert set(get_args(schemas.RejectedEvent.model_fields["reason"].annotation)) == reasons


def test_record_layout_is_derived_from_one_field_list() -> None:
    assert records.RECORD.format == ">IB6sBi" and records.RECORD.size == 16
    assert records.RECORD_DTYPE.names == tuple(name for name, _ in records.FIELDS)
    assert records.RECORD_DTYPE.itemsize == records.RECORD.size
    assert records.LUA_HEAD_FORMAT == ">I4BI6"
    # The script reads the kind as the byte just before the fingerprint, found at FP_OFFSET.
    assert records.FP_OFFSET == 5 == records.RECORD_DTYPE.fields["fp"][1]
    assert struct.calcsize(">IB") - 1 == records.RECORD_DTYPE.fields["kind"][1]
    fp = bytes(range(1, 7))
    record = records.RECORD.pack(T_S, spec.PURCHASE, fp, 3, -250)
    decoded = np.frombuffer(record, dtype=records.RECORD_DTYPE)[0]
    assert decoded.tolist() == (T_S, spec.PURCHASE, fp, 3, -250)


def test_keys_name_the_pseudonym_the_layout_version_and_a_bucket_as_the_hash_tag() -> None:
    store = OnlineFeatureStore(None, "churn", 0, 0, 1, pseudonyms=PSEUDONYMS)  # type: ignore[arg-type]
    pseudonym = PSEUDONYMS.of("u-1")
    assert store.key("u-1") == f"churn:{{{int(pseudonym[:8], 16) % 64:02x}}}:{pseudonym}:ev:v2"
    # Users share the 64 tags (so a cluster batch is one command per tag), spread evenly.
    tags = Counter(hash_tag(store.key(f"u-{i}")) for i in range(64_000))
    assert len(tags) == 64 and max(tags.values()) < 1.1 * 1_000
    # The fast key maker and the one every other key is named by agree.
    for i in range(10_000):
        pseudonym = PSEUDONYMS.of(f"u-{i}")
        assert store.key(f"u-{i}") == user_tag("churn", pseudonym) + KEY_SUFFIX


def entry(ts: int, eid: str, index: int, cents: int = 0) -> tuple[int, bytes, int, bytes]:
    fp = records.fingerprint(eid)
    return ts, fp, index, records.RECORD.pack(ts, 1, fp, 0, cents)


def test_plan_sorts_by_time_and_fingerprint_and_keeps_the_first_of_repeats() -> None:
    entries = [entry(30, "c", 0), entry(10, "a", 1), entry(30, "c", 2), entry(20, "b", 3), entry(10, "a", 4)]
    write = plan(entries)
    assert write.indices == [1, 3, 0]  # (10, a), (20, b), (30, c): the first copy of each
    assert write.records == [entries[i][3] for i in (1, 3, 0)]
    assert write.copies == {0: [2], 1: [4]} and write.conflicts == []


def test_plan_sends_the_first_event_of_an_id_and_names_later_different_ones_conflicts() -> None:
    # One event id: the same record again is a repeat; another time or another amount is a conflict,
    # whichever way it sorts against the first.
    entries = [entry(20, "a", 0), entry(10, "a", 1), entry(20, "a", 2), entry(20, "a", 3, cents=5)]
    entries += [entry(15, "b", 4), entry(20, "a", 5)]
    write = plan(entries)
    assert write.indices == [4, 0] and write.records == [entries[4][3], entries[0][3]]
    assert write.copies == {0: [2, 5]} and write.conflicts == [1, 3]


def test_repeats_within_one_request_count_as_duplicates(redis_url: str) -> None:
    batch = [EVENTS[0], EVENTS[3], EVENTS[0], EVENTS[8], EVENTS[3], EVENTS[0]]
    result = run(redis_url, lambda store: store.apply(batch, T))
    assert (result.accepted, result.duplicates, result.rejected) == (3, 3, [])
    again = run(redis_url, lambda store: store.apply([*batch, EVENTS[1]], T))
    assert (again.accepted, again.duplicates) == (1, 6)


def test_read_is_fetch_then_features(redis_url: str) -> None:
    async def work(store: OnlineFeatureStore) -> tuple[Any, Any, list[bytes | None]]:
        await store.apply(EVENTS, T)
        blobs = await store.fetch(["a", "nobody", "b"])
        return store.features(blobs, T_S), await store.read(["a", "nobody", "b"], T), blobs

    (matrix, known), (read_matrix, read_known), blobs = run(redis_url, work)
    np.testing.assert_array_equal(matrix, read_matrix)
    assert known.tolist() == read_known.tolist() == [True, False, True]
    assert blobs[1] is None and all(len(b or b"") % records.RECORD.size == 0 for b in blobs)
    assert run(redis_url, lambda store: store.fetch([])) == []


def test_a_late_event_is_merged_into_its_place(redis_url: str) -> None:
    late = Event.model_validate(event("a", "page_view", before(days=8), "late"))
    run(redis_url, lambda store: store.apply(EVENTS, T))
    run(redis_url, lambda store: store.apply([late], T))
    (blob,) = run(redis_url, lambda store: store.fetch(["a"]))
    ts = np.frombuffer(blob or b"", dtype=records.RECORD_DTYPE)["ts"].astype(np.int64)
    assert (np.diff(ts) >= 0).all() and spec.unix_seconds(late.ts) in ts
