"""Builders for the warning tests: an emitter on the test Redis, answers with chosen tiers, the stream,
service processes with warnings on and a history with one user in each tier."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import redis
import redis.asyncio as aredis

from app.actions.policy import DEFAULT_POLICY, ControlGroup, Policy
from app.actions.warnings import WarningEmitter, WarningSettings, stream_key
from app.features.pseudonym import Pseudonyms
from app.model.postprocess import TIERS
from app.model.results import Reason, ScoredRows
from app.redis_server import free_port
from tests.helpers import rfc3339
from tests.live import serve_process, wait_ready

SECRET = b"tests-only-id-secret-of-at-least-32-bytes"
NO_CONTROL = ControlGroup(0.0, "seed")
SEGMENTS = ("big spenders", "unhappy customers", "lapsed", "newcomers", "bought in the last month")


def settings(**overrides: Any) -> WarningSettings:
    values: dict[str, Any] = {
        "prefix": "test",
        "stream": "stream",
        "cooldown_s": 3600,
        "stream_max_len": 100_000,
        "stream_max_age_s": 14 * 86_400,
        "tiers": frozenset({"high"}),
        "queue_max": 1_000,
    }
    return WarningSettings(**(values | overrides))


@asynccontextmanager
async def emitter(
    redis_url: str,
    policy: Policy = DEFAULT_POLICY,
    control: ControlGroup = NO_CONTROL,
    **overrides: Any,
) -> AsyncIterator[WarningEmitter]:
    """An emitter on a client of its own, closed on leaving."""
    client = aredis.Redis.from_url(redis_url)
    try:
        yield WarningEmitter(client, Pseudonyms(SECRET), policy, control, settings(**overrides))
    finally:
        await client.aclose()


def reason_of(feature: str) -> Reason:
    return {
        "feature": feature,
        "value": 1.0,
        "contribution": 0.1,
        "typical_value": 0.0,
        "text": f"{feature}: 1",
    }


def rows(
    tiers: list[str], segment: str = "lapsed", known: bool = True, reason: str | None = None
) -> ScoredRows:
    n = len(tiers)
    probability = {"low": 0.2, "medium": 0.8, "high": 0.99}
    return ScoredRows(
        probability=np.array([probability[t] for t in tiers]),
        tier=np.array([TIERS.index(t) for t in tiers], dtype=np.int64),
        segment=np.full(n, SEGMENTS.index(segment), dtype=np.int64),
        known=np.full(n, known),
        segment_names=SEGMENTS,
        reasons=None if reason is None else [[reason_of(reason)]] * n,
    )


def messages(redis_url: str, prefix: str = "test", stream: str = "stream") -> list[dict[str, str]]:
    """Every message in the stream, oldest first, with its entry id as `id`."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        entries = client.xrange(stream_key(prefix, stream))
    return [{"id": entry_id, **fields} for entry_id, fields in entries]


def policy(actions: dict[str, Any], rules: list[dict[str, Any]]) -> Policy:
    return Policy.model_validate({"actions": actions, "rules": rules})


def as_json(message: dict[str, str], name: str) -> Any:
    return json.loads(message[name])


AT = datetime.fromisoformat("2026-03-01T12:00:00+00:00")


@contextmanager
def replica(redis_url: str, log: Path, **env: str) -> Iterator[str]:
    """A service process with warnings on, on a port of its own; `env` adds CHURN_* settings."""
    port = free_port()
    proc = serve_process(
        redis_url,
        port,
        log,
        CHURN_REDIS_PREFIX="test",
        CHURN_ID_SECRET=SECRET.decode(),
        CHURN_ALLOWED_LATENESS_S=str(400 * 86_400),
        CHURN_DRAIN_S="0",
        CHURN_WARNINGS_ENABLED="true",
        **env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def history(now: datetime) -> list[dict[str, Any]]:
    """risky: one purchase 200 days ago (high); fading: 40 days ago (medium); steady: every 3 days (low)."""

    def event(user: str, kind: str, days: float, n: int, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": f"{user}-{n}",
            "user_id": user,
            "type": kind,
            "ts": rfc3339(now - timedelta(days=days)),
        } | fields

    events = [
        event("risky", "purchase", 200, 0, amount=30.0, items=1),
        event("fading", "purchase", 40, 0, amount=30.0, items=1),
    ]
    for i in range(20):
        events += [
            event("steady", "session_start", 3 * i + 1, 2 * i),
            event("steady", "purchase", 3 * i + 0.99, 2 * i + 1, amount=50.0, items=2),
        ]
    return events
