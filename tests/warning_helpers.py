"""Builders for the warning tests: an emitter on the test Redis, answers with chosen tiers, the stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import numpy as np
import redis
import redis.asyncio as aredis

from app.actions.policy import DEFAULT_POLICY, ControlGroup, Policy
from app.actions.warnings import WarningEmitter, WarningSettings, stream_key
from app.features.pseudonym import Pseudonyms
from app.model.postprocess import TIERS
from app.model.results import Reason, ScoredRows

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
