"""The CRM's consumer group on a real Redis: a message read and never acknowledged goes to another
consumer once idle; acknowledged messages are not delivered again."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from app.actions.consumer import WarningConsumer
from app.actions.warnings import stream_key
from tests.warning_helpers import AT, emitter, rows

ROOT = Path(__file__).resolve().parents[1]
STREAM = stream_key("test", "stream")


def warn(redis_url: str, users: list[str]) -> None:
    async def send() -> None:
        async with emitter(redis_url) as warner:
            await warner.offer_and_wait(users, rows(["high"] * len(users)), "v1", AT)

    asyncio.run(send())


def consume(redis_url: str, out: Path, *args: str) -> None:
    """`python -m app warnings consume` as the CRM would run it."""
    env = {**os.environ, "CHURN_REDIS_URL": redis_url, "CHURN_REDIS_PREFIX": "test"}
    command = [sys.executable, "-m", "app", "warnings", "consume", "--out", str(out), *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=60, capture_output=True)


def test_an_unacknowledged_message_is_delivered_to_another_consumer(redis_url: str, tmp_path: Path) -> None:
    warn(redis_url, ["a", "b"])
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        crashed = WarningConsumer(client, STREAM, "crm", "c1")
        crashed.ensure_group()
        [(taken_id, fields)] = crashed.read_new(limit=1, block_ms=100)  # ... and dies before XACK
        assert fields["user_id"] == "a"
        time.sleep(0.3)
        out = tmp_path / "c2.jsonl"
        consume(
            redis_url,
            out,
            "--group",
            "crm",
            "--consumer",
            "c2",
            "--claim-idle-s",
            "0.2",
            "--max-messages",
            "2",
        )
        handled = [json.loads(line) for line in out.read_text().splitlines()]
        # c2 takes over a's message first (claimed, same entry id), then reads b's.
        assert [m["user_id"] for m in handled] == ["a", "b"]
        assert handled[0]["id"] == taken_id
        assert handled[0]["churn_probability"] == 0.99 and handled[0]["reasons"] is None
        assert client.xpending(STREAM, "crm")["pending"] == 0
        # Everything is acknowledged: a third consumer gets nothing, old or new.
        later = WarningConsumer(client, STREAM, "crm", "c3", claim_idle_ms=0)
        assert later.claim_stale(10) == [] and later.read_new(10, block_ms=100) == []
        consume(redis_url, out, "--group", "crm", "--consumer", "c2", "--until-idle", "--block-ms", "100")
        assert len(out.read_text().splitlines()) == 2


def test_a_message_is_not_claimed_before_its_idle_time(redis_url: str) -> None:
    warn(redis_url, ["a"])
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        first = WarningConsumer(client, STREAM, "crm", "c1")
        first.ensure_group()
        assert len(first.read_new(10, block_ms=100)) == 1
        patient = WarningConsumer(client, STREAM, "crm", "c2", claim_idle_ms=60_000)
        assert patient.claim_stale(10) == []
        assert client.xpending(STREAM, "crm")["consumers"] == [{"name": "c1", "pending": 1}]


def test_a_failing_handler_leaves_its_message_pending(redis_url: str) -> None:
    warn(redis_url, ["a"])
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        consumer = WarningConsumer(client, STREAM, "crm", "c1", claim_idle_ms=0)

        def fail(message: dict[str, object]) -> None:
            raise RuntimeError("the CRM is down")

        with pytest.raises(RuntimeError):
            consumer.run(fail, block_ms=100, max_messages=1)
        assert client.xpending(STREAM, "crm")["pending"] == 1
        seen: list[str] = []
        assert consumer.run(lambda m: seen.append(m["user_id"]), block_ms=100, max_messages=1) == 1
        assert seen == ["a"] and client.xpending(STREAM, "crm")["pending"] == 0
