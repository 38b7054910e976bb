"""The online feature store: each user's events as one sorted binary string in Redis.

A user's events that can still matter (the newest events of the longest window, every purchase, the
first and the last event) are kept as fixed-size records (app/features/records.py), sorted by (time,
event-id fingerprint). Writing is one Lua script per user, atomic and idempotent; reading is one MGET
for the whole batch, decoded with numpy and fed to the same `compute_features` as training. So served
features equal trained ones by construction, for any set of events and any arrival order, within
the capacity limits of app/features/capacity.py.

Keys: `<prefix>:{<pseudonym>}:ev:v1`, the pseudonym a keyed hash of the user id
(app/features/pseudonym.py), so Redis never holds a raw id. The braces are a Redis Cluster hash tag: a
user's keys share a slot. The version names the record layout: a new layout gets a new key, never a
misread old string. An erased user's pseudonym keeps one key, `<prefix>:{<pseudonym>}:erased`, for the
allowed lateness: the erasure time (plus the future skew), before which the apply script refuses events.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import Final

import numpy as np
import numpy.typing as npt
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app import metrics
from app.features import spec
from app.features.capacity import MAX_PURCHASE_RECORDS, MAX_RECENT_RECORDS, PRUNE_AFTER_S
from app.features.compute import FloatMatrix, compute_features
from app.features.events import RejectionReason
from app.features.pseudonym import Pseudonyms
from app.features.records import LUA_HEAD_FORMAT, RECORD, decode, encode, fingerprint
from app.schemas import Event

KEY_SUFFIX: Final = "ev:v1"
TOMBSTONE_SUFFIX: Final = "erased"
# Every key the store may hold for a user's data: erasure deletes them. A new layout's key joins here.
DATA_SUFFIXES: Final = (KEY_SUFFIX,)
APPLY_SCRIPT: Final = (files("app.features") / "apply_events.lua").read_text()
APPLY_SHA: Final = hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest()
INSERTED, DUPLICATE, REFUSED, ERASED = 1, 0, 2, 3  # the script's per-record replies
# Users merged per script call. One call per user spent most of a 100-event request packing commands
# and dispatching scripts; one call for a whole 1,000-user request would hold Redis for tens of ms.
USERS_PER_CALL: Final = 32
YIELD_EVERY: Final = 250  # events encoded between two yields to the event loop


@dataclass(frozen=True)
class Rejection:
    index: int
    event_id: str
    reason: RejectionReason


@dataclass
class ApplyResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class UserWrite:
    """One user's share of a request: records in (ts, fingerprint) order without repeats, as the
    script receives them, with each one's request index; repeats within the request are duplicates."""

    records: list[bytes] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    repeats: int = 0


def user_tag(prefix: str, pseudonym: str) -> str:
    """What every key of the user starts with: the prefix and the hash tag."""
    return f"{prefix}:{{{pseudonym}}}:"


def plan(entries: Sequence[tuple[int, int, int, bytes]]) -> UserWrite:
    """(ts, fingerprint, request index, record) in request order -> the script's sorted input.

    The sort is stable, so of two records with one idempotency key the earlier in the request wins,
    as it would had they come in two requests."""
    write = UserWrite()
    last: tuple[int, int] | None = None
    for ts, fp, index, record in sorted(entries, key=lambda e: (e[0], e[1])):
        if (ts, fp) == last:
            write.repeats += 1
            continue
        last = (ts, fp)
        write.records.append(record)
        write.indices.append(index)
    return write


class NotDurable(Exception):
    """Applied on the primary, but fewer replicas than required confirmed it in time. The client should
    retry: applying is idempotent, so the events are counted once whichever attempt lands."""

    def __init__(self, acknowledged: int, required: int, timeout_ms: int) -> None:
        super().__init__(f"{acknowledged} of {required} replicas confirmed the write within {timeout_ms} ms")


class OnlineFeatureStore:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        allowed_lateness_s: int,
        max_future_skew_s: int,
        retention_days: int,
        *,
        pseudonyms: Pseudonyms,
        max_recent_records: int = MAX_RECENT_RECORDS,
        max_purchase_records: int = MAX_PURCHASE_RECORDS,
        ack_replicas: int = 0,
        ack_timeout_ms: int = 500,
    ) -> None:
        self._redis = redis
        # Acknowledge a write only once this many replicas have it (WAIT), or answer NotDurable.
        self._ack_replicas = ack_replicas
        self._ack_timeout_ms = ack_timeout_ms
        self._prefix = prefix
        self._pseudonyms = pseudonyms
        self._lateness = allowed_lateness_s
        self._skew = max_future_skew_s
        self._ttl = retention_days * spec.DAY_SECONDS
        self._max_recent = max_recent_records
        self._max_purchases = max_purchase_records

    def pseudonym(self, user_id: str) -> str:
        """What Redis knows the user by (and the audit log names them by)."""
        return self._pseudonyms.of(user_id)

    def key(self, user_id: str) -> str:
        """The user's record string."""
        return user_tag(self._prefix, self._pseudonyms.of(user_id)) + KEY_SUFFIX

    async def apply(
        self, events: Sequence[Event], now: datetime, *, lateness_s: int | None = None
    ) -> ApplyResult:
        """Apply a batch in one round trip: script calls of up to USERS_PER_CALL users (each user's merge
        atomic), pipelined. `lateness_s` overrides the allowed lateness (see admitted_times)."""
        now_s = spec.unix_seconds(now)
        earliest, latest = self.admitted_times(now_s, lateness_s)
        result = ApplyResult()
        by_user: dict[str, list[tuple[int, int, int, bytes]]] = {}
        for index, event in enumerate(events):
            ts = spec.unix_seconds(event.ts)
            if ts < earliest:
                result.rejected.append(Rejection(index, event.event_id, "too_late"))
            elif ts > latest:
                result.rejected.append(Rejection(index, event.event_id, "in_future"))
            else:
                fp = fingerprint(event.event_id)
                by_user.setdefault(event.user_id, []).append((ts, fp, index, encode(event, ts, fp)))
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a 1,000-event batch must not hold the event loop throughout
        if not by_user:
            return result
        # Keyed by the users' key tags: one pseudonym per user per request.
        writes = {user_tag(self._prefix, self._pseudonyms.of(u)): plan(e) for u, e in by_user.items()}
        started = time.perf_counter()
        replies = await self._apply_scripts(writes, now_s - PRUNE_AFTER_S)
        metrics.REDIS_SECONDS.labels("apply").observe(time.perf_counter() - started)
        for write, reply in zip(writes.values(), replies, strict=True):
            result.duplicates += write.repeats
            for index, outcome in zip(write.indices, reply, strict=True):
                if outcome == INSERTED:
                    result.accepted += 1
                elif outcome == DUPLICATE:
                    result.duplicates += 1
                else:
                    reason: RejectionReason = "erased" if outcome == ERASED else "user_over_capacity"
                    result.rejected.append(Rejection(index, events[index].event_id, reason))
        result.rejected.sort(key=lambda r: r.index)
        return result

    @property
    def retention_s(self) -> int:
        """How long a user's data outlives their last write: no older event can still matter."""
        return self._ttl

    def admitted_times(self, now_s: int, lateness_s: int | None = None) -> tuple[int, int]:
        """The first and last event time (Unix s) a write at `now_s` takes; older events are `too_late`,
        later ones `in_future`. `lateness_s` replaces the allowed lateness: loading history takes any age
        within the retention, where live traffic takes only the allowed lateness."""
        return now_s - (self._lateness if lateness_s is None else lateness_s), now_s + self._skew

    async def apply_planned(self, writes: dict[str, UserWrite], now_s: int) -> list[list[int]]:
        """The apply script's per-record replies for writes planned elsewhere (keyed by user_tag, each
        user's records as `plan` leaves them), for callers that plan whole files column-wise. The caller
        has checked the times against admitted_times."""
        return await self._apply_scripts(writes, now_s - PRUNE_AFTER_S)

    async def _apply_scripts(self, writes: dict[str, UserWrite], prune_before: int) -> list[list[int]]:
        """EVALSHA per group of users in one pipeline: one round trip. The script is loaded only when
        Redis says it lacks it (a restart); rerunning the batch then is safe: applying is idempotent."""
        layout = (RECORD.size, LUA_HEAD_FORMAT, spec.PURCHASE, self._max_recent, self._max_purchases)
        for attempt in range(2):
            try:
                users = list(writes.items())
                async with self._redis.pipeline(transaction=False) as pipe:
                    for start in range(0, len(users), USERS_PER_CALL):
                        group = users[start : start + USERS_PER_CALL]
                        # Two keys per user: the records and the tombstone the script checks.
                        keys = [tag + suffix for tag, _ in group for suffix in (KEY_SUFFIX, TOMBSTONE_SUFFIX)]
                        # One argument per user: the script slices it.
                        records = [b"".join(write.records) for _, write in group]
                        pipe.evalsha(APPLY_SHA, len(keys), *keys, prune_before, self._ttl, *layout, *records)
                    if self._ack_replicas:
                        # On the same connection, after the scripts: WAIT counts the replicas that have
                        # every write this connection made so far.
                        pipe.execute_command("WAIT", self._ack_replicas, self._ack_timeout_ms)
                    replies = await pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                await self._redis.script_load(APPLY_SCRIPT)
                continue
            if self._ack_replicas:
                acknowledged = int(replies.pop())
                if acknowledged < self._ack_replicas:
                    raise NotDurable(acknowledged, self._ack_replicas, self._ack_timeout_ms)
            return [reply for group_replies in replies for reply in group_replies]
        raise AssertionError("unreachable")

    async def fetch(self, user_ids: Sequence[str]) -> list[bytes | None]:
        """The users' record strings (None for unknown users), in one MGET."""
        if not user_ids:
            return []
        # One pseudonym per distinct id: a gathered batch may ask for a user more than once.
        distinct = dict.fromkeys(user_ids)
        keys = dict(zip(distinct, map(self.key, distinct), strict=True))
        started = time.perf_counter()
        blobs: list[bytes | None] = await self._redis.mget([keys[u] for u in user_ids])  # type: ignore[assignment]
        metrics.REDIS_SECONDS.labels("read").observe(time.perf_counter() - started)
        return blobs

    def features(
        self, blobs: Sequence[bytes | None], as_of_s: int
    ) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
        """Feature matrix (request order) and known-user flags of fetched strings: CPU only.

        `as_of_s` is meant to be the store's now (or later): records that pruning dropped cannot be
        brought back for an earlier time."""
        return compute_features(decode(blobs), as_of_s)

    async def read(
        self, user_ids: Sequence[str], as_of: datetime
    ) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
        """Feature matrix (request order) and known-user flags, in one round trip."""
        return self.features(await self.fetch(user_ids), spec.unix_seconds(as_of))

    async def erase(self, pseudonym: str, now: datetime) -> int:
        """Delete the user's data keys and leave the tombstone, in one transaction; the keys removed.

        The tombstone refuses events up to `now` plus the future skew, the latest time an event sent
        before the erasure can carry; it lasts until those are too late anyway. Erasing again renews it."""
        tag = user_tag(self._prefix, pseudonym)
        erased_through = spec.unix_seconds(now) + self._skew
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(tag + suffix for suffix in DATA_SUFFIXES))
            pipe.set(tag + TOMBSTONE_SUFFIX, erased_through, ex=self._lateness + self._skew + 1)
            removed, _ = await pipe.execute()
        return int(removed)
