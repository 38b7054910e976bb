"""Loading an event file into the store (`backfill`): what it stores is what the offline pipeline
computes from the same file, read back through the service; loading twice changes nothing; bad rows
are named and the rest loads; CSV, JSON lines and Parquet load alike."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from app.bulk import readers
from app.bulk.backfill import BackfillSummary
from app.bulk.commands import connect, open_store, run_backfill
from app.bulk.plan import encode_records
from app.bulk.readers import open_event_file
from app.features import offline, spec
from app.features.records import encode, fingerprint
from app.schemas import Event
from app.training.simulate import simulate
from tests.helpers import T, before, event
from tests.live import live_server, settings_for
from tests.test_parity import SIM, as_of_times

CHUNK_ROWS = 700  # several chunks, and users whose events span chunks


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return simulate(SIM).events  # duplicates and late, out-of-order rows included


def load(path: Path, redis_url: str, now: datetime, chunk_rows: int = CHUNK_ROWS) -> BackfillSummary:
    settings = settings_for(redis_url)
    return asyncio.run(run_backfill(settings, open_event_file(path), chunk_rows, now))


def store_contents(redis_url: str) -> dict[bytes, bytes]:
    with redis.Redis.from_url(redis_url) as client:
        keys = sorted(client.scan_iter("test:*"))
        return dict(zip(keys, client.mget(keys), strict=True)) if keys else {}


def test_served_features_equal_offline_features_of_the_loaded_file(
    redis_url: str, log: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "events.parquet"
    offline.write_event_log(log, path)
    validated = offline.validate_events(log)
    every_row_ts = offline.check_events(log)[0]["ts_s"]  # repeated rows too
    users = sorted(validated["user_id"].unique())
    covered = np.zeros(spec.N_FEATURES, dtype=bool)
    for as_of in as_of_times(validated):
        now = datetime.fromtimestamp(as_of, tz=UTC)
        with redis.Redis.from_url(redis_url) as client:
            client.flushall()
        summary = load(path, redis_url, now)
        later = int((every_row_ts > as_of).sum())
        assert summary.rejected == ({"in_future": later} if later else {})
        with live_server(redis_url, now=now) as server, server.client() as http:
            online = np.array(
                [list(http.get(f"/users/{user}/features").json()["features"].values()) for user in users]
            )
        _, expected = offline.features(validated, as_of, users)
        np.testing.assert_allclose(online, expected, rtol=1e-9, atol=0)
        covered |= (expected != np.array([f.default for f in spec.FEATURES])).any(axis=0)
    assert covered.all()  # every feature took a non-default value somewhere


def test_loading_twice_changes_nothing_and_finds_every_stored_row_again(
    redis_url: str, log: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    offline.write_event_log(log, path)
    now = datetime.fromtimestamp(int(offline.validate_events(log)["ts_s"].max()), tz=UTC)
    first = load(path, redis_url, now)
    stored = store_contents(redis_url)
    second = load(path, redis_url, now)
    assert first.accepted > 0 and first.not_kept > 0 and first.duplicates > 0  # the log has all three
    assert first.rows == second.rows == len(log) and second.rejected_rows == first.rejected_rows == 0
    assert second.accepted == 0
    assert second.duplicates + second.not_kept == first.rows
    assert store_contents(redis_url) == stored


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_format_stores_the_same(redis_url: str, log: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    reference = tmp_path / "events.parquet"
    offline.write_event_log(log, reference)
    now = datetime.fromtimestamp(int(offline.validate_events(log)["ts_s"].max()), tz=UTC)
    expected_summary = load(reference, redis_url, now)
    expected = store_contents(redis_url)
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    path = tmp_path / f"events{suffix}"
    offline.write_event_log(log, path)
    summary = load(path, redis_url, now)
    # How a row is counted (stored, or stored and dropped by a later chunk) depends on where the chunks
    # end, which for CSV is a number of bytes; what is stored does not.
    assert (summary.rows, summary.rejected) == (expected_summary.rows, expected_summary.rejected)
    assert summary.accepted + summary.not_kept + summary.duplicates == summary.rows
    assert store_contents(redis_url) == expected and len(expected) == log["user_id"].nunique()


GOOD = [
    event("a", "purchase", before(days=3), "1", amount=12.5, items=2),
    event("a", "review", before(days=2), "2", rating=4),
    event("b", "page_view", before(days=1), "3"),
]


def test_bad_csv_rows_are_named_by_line_and_field_and_the_rest_loads(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    rows = [
        GOOD[0],
        event("c", "page_view", before(days=1), "4") | {"ts": "2026-02-28 12:00:00Z"},  # line 3: no T
        GOOD[1],
        event("c", "teleport", before(days=1), "5"),  # line 6, after the line inserted below
        event("c", "purchase", before(days=1), "6"),  # line 7: no amount
        GOOD[2],
        event("d", "page_view", before(days=500), "7"),  # beyond the retention
    ]
    text = pd.DataFrame(rows).to_csv(index=False).splitlines()
    text.insert(4, "8,c,page_view,2026-02-28T12:00:00Z,,,,surplus")  # line 5: a field too many
    path.write_text("\n".join(text) + "\n")
    summary = load(path, redis_url, T)
    assert (summary.accepted, summary.duplicates, summary.rows) == (3, 0, 8)
    assert summary.rejected == {"invalid": 4, "too_late": 1}
    assert summary.examples == [
        "line 3: 'ts' must be RFC 3339 text with seconds and a time zone, in the years 1971 to 2104, "
        "e.g. 2026-01-31T12:00:00Z or 2026-01-31T14:00:00.5+02:00",
        "line 5: 8 fields where the header has 7",
        "line 6: 'type' must be one of " + ", ".join(spec.EVENT_TYPES),
        "line 7: 'amount' is required for this type",
    ]


def test_bad_json_lines_are_refused_as_events_refuses_them(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        json.dumps(GOOD[0]),
        "{not json",  # line 2
        "",  # blank: skipped, still counted
        json.dumps(GOOD[1] | {"event_id": "r1", "rating": 4.5}),  # line 4: 4.5 is not an integer
        json.dumps(GOOD[2] | {"event_id": 42}),  # line 5: a number is not a text
        json.dumps(GOOD[2] | {"event_id": "x1", "colour": "red"}),  # line 6: not a field
        json.dumps(GOOD[2] | {"event_id": "x2"})[:-1] + ', "type": "purchase"}',  # line 7: repeated key
        "[1, 2]",  # line 8
        json.dumps(GOOD[2]),
        json.dumps(GOOD[1] | {"event_id": "r2", "rating": 4.0}),  # 4.0 is an integer, as in JSON Schema
    ]
    path.write_text("\n".join(lines) + "\n")
    summary = load(path, redis_url, T)
    assert (summary.accepted, summary.rejected) == (3, {"invalid": 6})
    assert summary.examples == [
        "line 2: not valid JSON",
        "line 4: 'rating' must be a JSON integer; 'rating' must be an integer 1-5",
        "line 5: 'event_id' must be a JSON string",
        "line 6: 'colour' is not a field of the event schema",
        "line 7: 'type' is given twice in one object",
        "line 8: must be a JSON object",
    ]


def test_json_lines_read_by_arrow_check_as_they_do_read_line_by_line(
    log: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    offline.write_event_log(log, path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(
        7, json.dumps(GOOD[1] | {"rating": 4.0, "amount": 3}).encode() + b"\n"
    )  # integers as JSON has them
    numbers = list(range(1, len(lines) + 1))
    at_once = readers._arrow_json_chunk(lines, numbers)
    assert at_once is None  # Arrow takes 4.0 for no integer: the chunk is read line by line
    del lines[7], numbers[-1]
    at_once = readers._arrow_json_chunk(lines, numbers)
    assert at_once is not None
    by_line = readers._json_chunk_by_line(lines, numbers)
    assert by_line.problems == [] and at_once.problems == []
    (fast, fast_problems), (slow, slow_problems) = (offline.check_events(c.raw) for c in (at_once, by_line))
    assert fast_problems == slow_problems == []
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)
    np.testing.assert_array_equal(at_once.locations, by_line.locations)


def test_json_lines_keep_their_line_numbers_across_chunks_and_blank_lines() -> None:
    stream = io.BytesIO(b'{"a":1}\n\n{"b":2}\n  \n\n{"c":3}\n{"d":4}')
    chunks = list(readers._non_blank_lines(stream, 2))
    assert chunks == [
        ([b'{"a":1}\n'], [1]),
        ([b'{"b":2}\n'], [3]),
        ([b'{"c":3}\n'], [6]),
        ([b'{"d":4}'], [7]),
    ]


def test_records_are_those_events_writes() -> None:
    rows = [*GOOD, event("e", "refund", before(days=1), "9", amount=0.005)]
    checked, problems = offline.check_events(pd.DataFrame(rows))
    assert not problems
    records = encode_records(checked)
    for record, row in zip(records, rows, strict=True):
        parsed = Event.model_validate(row)
        ts = spec.unix_seconds(parsed.ts)
        assert record.tobytes() == encode(parsed, ts, fingerprint(parsed.event_id))


def test_the_command_loads_a_file_and_exits_3_when_rows_were_refused(redis_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    rows = [
        event("a", "purchase", now - timedelta(days=200), "1", amount=5.0),  # older than the lateness
        event("a", "page_view", now - timedelta(days=2), "2"),
        event("b", "page_view", now - timedelta(days=2), "3", rating=2),  # a rating on a page view
    ]
    path = tmp_path / "events.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    env = {
        **os.environ,
        "CHURN_REDIS_URL": redis_url,
        "CHURN_REDIS_PREFIX": "test",
        "CHURN_ID_SECRET": "tests-only-id-secret-of-at-least-32-bytes",
    }
    command = [sys.executable, "-m", "app", "backfill", "--events", str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert re.search(r"accepted +2\n", done.stdout)
    assert "line 4: 'rating' is not allowed for this type" in done.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert re.search(r"accepted +0\n", again.stdout) and re.search(r"duplicates +2\n", again.stdout)
    missing = subprocess.run(
        [*command[:-1], str(tmp_path / "none.csv")], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_the_lateness_bound_is_a_parameter_of_apply(redis_url: str) -> None:
    settings = settings_for(redis_url, allowed_lateness_s=7 * 86_400)
    old = [Event.model_validate(event("a", "page_view", before(days=30), "old"))]

    async def apply_twice() -> tuple[list[str], int]:
        client = connect(settings)
        try:
            store, _ = open_store(settings, client)
            live = await store.apply(old, T)
            history = await store.apply(old, T, lateness_s=store.retention_s)
            return [r.reason for r in live.rejected], history.accepted
        finally:
            await client.aclose()

    assert asyncio.run(apply_twice()) == (["too_late"], 1)


def test_an_event_id_is_the_idempotency_key_within_a_file_and_against_the_store(
    redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    rows = [
        event("a", "purchase", before(days=3), "p-1", amount=100.0),
        event("a", "purchase", before(days=3), "p-1", amount=100.0),  # a copy: a duplicate
        event("a", "purchase", before(days=2), "p-1", amount=100.0),  # another time: a conflict
        event("b", "purchase", before(days=3), "p-1", amount=5.0),  # another user's id: its own event
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    first = load(path, redis_url, T)
    assert (first.accepted, first.duplicates, first.rejected) == (2, 1, {"conflict": 1})
    # Against the store: the same file is all duplicates but the conflict; a changed amount conflicts.
    again = load(path, redis_url, T)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 3, {"conflict": 1})
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps(rows[0] | {"amount": 90.0}) + "\n")
    assert load(changed, redis_url, T).rejected == {"conflict": 1}
    with live_server(redis_url) as server, server.client() as http:
        features = http.get("/users/a/features").json()["features"]
    assert (features["lifetime_purchases"], features["lifetime_spend"]) == (1, 100.0)
