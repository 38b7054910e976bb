"""The user directory: with it on, every write keeps the user's id sealed under their tag, written and
expiring with the records; it never holds a readable id, erasure removes it, `score-batch --all` scores
exactly the users in it, and `score-batch --warn` hands high-risk answers to the warnings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
import redis.asyncio as aredis

from app.bulk.commands import run_score_batch
from app.bulk.score_batch import OutputFile, ScoreSummary
from app.features.directory import IdSealer, known_users
from app.features.keys import DIRECTORY_SUFFIX, KEY_SUFFIX, user_tag
from app.features.pseudonym import Pseudonyms
from app.main import load_model
from tests.helpers import T, before, event
from tests.live import live_server, settings_for
from tests.warning_helpers import SECRET, messages

USERS = [f"shop-user-{i:03d}" for i in range(40)]
# USERS[0] bought once, 200 days ago (high risk); the others browsed in the last days.
ROWS = [event(USERS[0], "purchase", before(days=200), f"{USERS[0]}-1", amount=20.0)] + [
    event(user, "page_view", before(days=1 + i % 5), f"{user}-1") for i, user in enumerate(USERS[1:])
]


def tag(user: str) -> str:
    return user_tag("test", Pseudonyms(SECRET).of(user))


def post(server: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    with server.client() as http:
        answer = http.post("/events", json={"events": rows})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def known(redis_url: str, page: int) -> list[list[str]]:
    async def collect() -> list[list[str]]:
        client = aredis.Redis.from_url(redis_url)
        try:
            return [p async for p in known_users(client, "test", IdSealer(SECRET), page)]
        finally:
            await client.aclose()

    return asyncio.run(collect())


def test_writes_keep_sealed_ids_that_only_the_secret_opens(redis_url: str) -> None:
    with live_server(redis_url, user_directory=True) as server:
        post(server, ROWS)
    with redis.Redis.from_url(redis_url) as client:
        for user in USERS:
            sealed = client.get(tag(user) + DIRECTORY_SUFFIX)
            assert sealed is not None and user.encode() not in sealed
            assert IdSealer(SECRET).open(sealed) == user
            assert IdSealer(b"another-secret-of-at-least-32-bytes!!").open(sealed) is None
            # Written with the records, expiring with them.
            records_ttl, id_ttl = client.ttl(tag(user) + KEY_SUFFIX), client.ttl(tag(user) + DIRECTORY_SUFFIX)
            assert records_ttl > 0 and abs(records_ttl - id_ttl) <= 1
        everything = b"".join(k + (client.dump(k) or b"") for k in client.scan_iter(count=1000))
    assert not any(user.encode() in everything for user in USERS)  # no readable id anywhere
    pages = known(redis_url, page=7)
    assert max(len(p) for p in pages) <= 7
    assert sorted(u for p in pages for u in p) == sorted(USERS)


def test_off_by_default_and_duplicates_or_erased_events_write_none(redis_url: str) -> None:
    with live_server(redis_url) as server:
        post(server, ROWS[:5])
    with redis.Redis.from_url(redis_url) as client:
        assert not list(client.scan_iter(match="*:" + DIRECTORY_SUFFIX))
    with live_server(redis_url, user_directory=True) as server:
        assert post(server, ROWS[:5])["duplicates"] == 5  # nothing written: no entry either
        with redis.Redis.from_url(redis_url) as client:
            assert not list(client.scan_iter(match="*:" + DIRECTORY_SUFFIX))
        post(server, [event(USERS[1], "session_start", before(days=1), "new-1")])
        with server.client() as http:
            assert http.delete(f"/users/{USERS[1]}").json()["keys_removed"] == 2  # records and entry
        # Events from before the erasure are refused: they bring no entry back.
        assert post(server, [event(USERS[1], "page_view", before(days=1), "new-2")])["rejected"]
    with redis.Redis.from_url(redis_url) as client:
        assert client.get(tag(USERS[1]) + DIRECTORY_SUFFIX) is None
    assert known(redis_url, page=10) == []


def score_all(redis_url: str, out: Path, warn: bool = False, **overrides: Any) -> ScoreSummary:
    settings = settings_for(redis_url, user_directory=True, **overrides)
    model = load_model(settings)
    output = OutputFile(out)
    try:
        return asyncio.run(run_score_batch(settings, model, None, output, "user_id", 16, T, warn=warn))
    finally:
        output.close()


def test_score_batch_all_scores_every_user_in_the_directory(redis_url: str, tmp_path: Path) -> None:
    with live_server(redis_url, user_directory=True) as server:
        post(server, ROWS)
        with server.client() as http:
            served = http.post("/score", json={"user_ids": USERS}).json()["results"]
    summary = score_all(redis_url, tmp_path / "all.parquet")
    table = pd.read_parquet(tmp_path / "all.parquet").set_index("user_id")
    assert summary.users == len(USERS) == summary.known and summary.warned is None
    assert sorted(table.index) == sorted(USERS)
    for answer in served:
        row = table.loc[answer["user_id"]]
        assert row["churn_probability"] == pytest.approx(answer["churn_probability"], abs=1e-6)
        assert row["risk_tier"] == answer["risk_tier"]


def test_score_batch_warn_writes_one_warning_per_cool_down(redis_url: str, tmp_path: Path) -> None:
    with live_server(redis_url, user_directory=True) as server:
        post(server, ROWS)
    first = score_all(redis_url, tmp_path / "1.csv", warn=True, warnings_enabled=True)
    table = pd.read_csv(tmp_path / "1.csv")
    high = sorted(table.loc[table["risk_tier"] == "high", "user_id"])
    assert high and first.warned == len(high)
    assert sorted(m["user_id"] for m in messages(redis_url)) == high
    again = score_all(redis_url, tmp_path / "2.csv", warn=True, warnings_enabled=True)
    assert again.warned == 0 and len(messages(redis_url)) == len(high)  # within the cool-down


def test_all_needs_the_directory(redis_url: str, tmp_path: Path) -> None:
    settings = settings_for(redis_url)
    output = OutputFile(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="CHURN_USER_DIRECTORY"):
        asyncio.run(run_score_batch(settings, load_model(settings), None, output, "user_id", 16, T))
    output.close()
