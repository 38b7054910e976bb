"""The online feature store: each user's events as one sorted binary string in Redis.

A user's events that can still matter (every event of the longest window, every purchase, the
first and the last event) are kept as fixed-size records, sorted by (time, event-id fingerprint).
Writing is one Lua script per user, atomic and idempotent; reading is one MGET for the whole batch,
decoded with numpy and fed to the same `compute_features` as training. So served features equal
trained ones by construction, for any set of events and any arrival order.

Keys: `<prefix>:{<user_id>}:ev`. The braces are a Redis Cluster hash tag: a user's keys share a slot.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import Literal

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app import metrics
from app.features import spec
from app.features.compute import EventArrays, FloatMatrix, compute_features
from app.schemas import Event

RECORD = struct.Struct(">IIBBi")
RECORD_DTYPE = np.dtype([("ts", ">u4"), ("fp", ">u4"), ("kind", "u1"), ("rating", "u1"), ("cents", ">i4")])
APPLY_SCRIPT = (files("app.features") / "apply_events.lua").read_text()
APPLY_SHA = hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest()
# Non-purchase records older than the longest window (plus a day of margin) are never read again.
PRUNE_AFTER_S = (spec.LONGEST_WINDOW_DAYS + 1) * spec.DAY_SECONDS


def fingerprint(event_id: str) -> int:
    """32 bits of the event id; with the event's second it forms the idempotency key."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=4).digest(), "big")


def encode(event: Event, ts: int) -> bytes:
    """The event's 14-byte record; `ts` is its Unix second, which the caller has already computed."""
    return RECORD.pack(
        ts,
        fingerprint(event.event_id),
        spec.TYPE_CODE[event.type],
        event.rating or 0,
        spec.to_cents(event.amount or 0.0),
    )


def decode(blobs: Sequence[bytes | None]) -> EventArrays:
    """MGET replies (one per user, None for unknown users) -> event arrays, without per-field loops."""
    counts = np.fromiter((len(b) // RECORD.size if b else 0 for b in blobs), dtype=np.int64, count=len(blobs))
    records = np.frombuffer(b"".join(b for b in blobs if b), dtype=RECORD_DTYPE)
    return EventArrays(
        n_users=len(blobs),
        user=np.repeat(np.arange(len(blobs), dtype=np.int64), counts),
        ts=records["ts"].astype(np.int64),
        kind=records["kind"].astype(np.int64),
        cents=records["cents"].astype(np.int64),
        rating=records["rating"].astype(np.int64),
        time_ordered=True,  # each user's records are kept sorted, and users follow request order
    )


@dataclass(frozen=True)
class Rejection:
    index: int
    event_id: str
    reason: Literal["too_late", "in_future"]


@dataclass
class ApplyResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


class OnlineFeatureStore:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        allowed_lateness_s: int,
        max_future_skew_s: int,
        retention_days: int,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._lateness = allowed_lateness_s
        self._skew = max_future_skew_s
        self._ttl = retention_days * spec.DAY_SECONDS

    def key(self, user_id: str) -> str:
        return f"{self._prefix}:{{{user_id}}}:ev"

    async def apply(self, events: Sequence[Event], now: datetime) -> ApplyResult:
        """Apply a batch in one round trip: one atomic script call per user, pipelined."""
        now_s = spec.unix_seconds(now)
        result = ApplyResult()
        by_user: dict[str, list[bytes]] = {}
        for index, event in enumerate(events):
            ts = spec.unix_seconds(event.ts)
            if ts < now_s - self._lateness:
                result.rejected.append(Rejection(index, event.event_id, "too_late"))
            elif ts > now_s + self._skew:
                result.rejected.append(Rejection(index, event.event_id, "in_future"))
            else:
                by_user.setdefault(event.user_id, []).append(encode(event, ts))
        if by_user:
            started = time.perf_counter()
            replies = await self._apply_scripts(by_user, now_s - PRUNE_AFTER_S)
            metrics.REDIS_SECONDS.labels("apply").observe(time.perf_counter() - started)
            inserted = sum(sum(reply) for reply in replies)
            result.accepted = inserted
            result.duplicates = sum(len(r) for r in by_user.values()) - inserted
        return result

    async def _apply_scripts(self, by_user: dict[str, list[bytes]], prune_before: int) -> list[list[int]]:
        """EVALSHA per user in one pipeline: one round trip. The script is loaded only when Redis says
        it lacks it (a restart); rerunning the batch then is safe because applying is idempotent."""
        for attempt in range(2):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for user_id, records in by_user.items():
                        pipe.evalsha(APPLY_SHA, 1, self.key(user_id), prune_before, self._ttl, *records)
                    replies: list[list[int]] = await pipe.execute()
                    return replies
            except NoScriptError:
                if attempt:
                    raise
                await self._redis.script_load(APPLY_SCRIPT)
        raise AssertionError("unreachable")

    async def read(self, user_ids: Sequence[str], as_of: datetime) -> tuple[FloatMatrix, np.ndarray]:  # type: ignore[type-arg]
        """Feature matrix (request order) and known-user flags, in one round trip.

        `as_of` is meant to be the store's now (or later): records that pruning dropped cannot be
        brought back for an earlier time."""
        started = time.perf_counter()
        blobs: list[bytes | None] = await self._redis.mget([self.key(u) for u in user_ids])  # type: ignore[assignment]
        metrics.REDIS_SECONDS.labels("read").observe(time.perf_counter() - started)
        return compute_features(decode(blobs), spec.unix_seconds(as_of))
