"""The online feature store: each user's events as one sorted binary string in Redis.

A user's events that can still matter (the newest events of the longest window, every purchase, the
first and the last event) are kept as fixed-size records (app/features/records.py), sorted by (time,
event-id fingerprint). Writing is one Lua script per user, atomic and idempotent per event id: an event
id the user's string already holds is a duplicate when the event is the same, and a conflict when it is
not. Reading is one MGET for the whole batch, whose records the compiled per-user pass of training's
`compute_features` reads directly (app/features/_kernel.c). So served features equal trained ones by
construction, for any set of events and any arrival order, within the capacity limits of
app/features/capacity.py.

The key names, and how they place users in a Redis Cluster, are in app/features/keys.py; what differs
on a cluster in app/features/cluster.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from app import metrics
from app.config import Settings
from app.features import records, spec
from app.features.capacity import MAX_PURCHASE_RECORDS, MAX_RECENT_RECORDS, PRUNE_AFTER_S
from app.features.cluster import ClusterFault, ClusterReads, PartialWrite, cluster_faults
from app.features.compute import FloatMatrix
from app.features.directory import IdSealer
from app.features.events import RejectionReason
from app.features.keys import (
    DATA_SUFFIXES,
    DIRECTORY_SUFFIX,
    KEY_SUFFIX,
    TOMBSTONE_SUFFIX,
    RecordKeys,
    by_hash_tag,
    legacy_keys,
    user_tag,
)
from app.features.pseudonym import Pseudonyms
from app.features.records import FP_BYTES, FP_OFFSET, LUA_HEAD_FORMAT, RECORD, encode, fingerprint
from app.redis_client import StoreClient
from app.schemas import Event

APPLY_SCRIPT: Final = (files("app.features") / "apply_events.lua").read_text()
APPLY_SHA: Final = hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest()
INSERTED, DUPLICATE, REFUSED, ERASED, CONFLICT = 1, 0, 2, 3, 4  # the script's per-record replies
OUTCOME_REASONS: Final[dict[int, RejectionReason]] = {
    REFUSED: "user_over_capacity",
    ERASED: "erased",
    CONFLICT: "conflict",
}
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
    """One user's share of a request, as the script receives it: records in (ts, fingerprint) order, one
    per event id, with each one's request index. A later event of the request with an event id already
    given is not sent: a copy of the first (the same record) shares its outcome, reported as a
    duplicate when the first was applied or already stored; a different record is a conflict."""

    records: list[bytes] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    copies: dict[int, list[int]] = field(default_factory=dict)  # first's request index -> the copies'
    conflicts: list[int] = field(default_factory=list)
    sealed_id: bytes = b""  # the user's sealed id, for the user directory (empty when it is off)


def plan(entries: Sequence[tuple[int, bytes, int, bytes]]) -> UserWrite:
    """(ts, fingerprint, request index, record) in request order -> the script's sorted input.

    Of two events with one event id the earlier in the request is sent, and the later one compared with
    it, as it would be had the two come in two requests."""
    if len(entries) == 1:  # most users of a live request: nothing to match or sort
        _, _, index, record = entries[0]
        return UserWrite(records=[record], indices=[index])
    write = UserWrite()
    first: dict[bytes, bytes] = {}
    first_index: dict[bytes, int] = {}
    sent: list[tuple[int, bytes, int, bytes]] = []
    for entry in entries:
        _, fp, index, record = entry
        earlier = first.get(fp)
        if earlier is None:
            first[fp], first_index[fp] = record, index
            sent.append(entry)
        elif earlier == record:
            write.copies.setdefault(first_index[fp], []).append(index)
        else:
            write.conflicts.append(index)
    for _, _, index, record in sorted(sent, key=lambda e: (e[0], e[1])):
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
        redis: StoreClient,
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
        directory: IdSealer | None = None,
    ) -> None:
        self._redis = redis
        # With a sealer, every write also keeps the user's sealed id (app/features/directory.py).
        self.directory = directory
        # On a cluster every command must keep to one slot: reads and writes are grouped by hash tag.
        self._cluster_reads = ClusterReads(redis) if isinstance(redis, RedisCluster) else None
        # Acknowledge a write only once this many replicas have it (WAIT), or answer NotDurable.
        self._ack_replicas = ack_replicas
        self._ack_timeout_ms = ack_timeout_ms
        self._prefix = prefix
        self._record_keys = RecordKeys(prefix)
        self._pseudonyms = pseudonyms
        self._lateness = allowed_lateness_s
        self._skew = max_future_skew_s
        self._ttl = retention_days * spec.DAY_SECONDS
        self._max_recent = max_recent_records
        self._max_purchases = max_purchase_records

    async def aclose(self) -> None:
        """Close what the store opened itself (a cluster's per-primary read clients), not its client."""
        if self._cluster_reads is not None:
            await self._cluster_reads.close()

    def pseudonym(self, user_id: str) -> str:
        """What Redis knows the user by (and the audit log names them by)."""
        return self._pseudonyms.of(user_id)

    def key(self, user_id: str) -> str:
        """The user's record string."""
        return self._record_keys.of(self._pseudonyms.of(user_id))

    async def apply(
        self, events: Sequence[Event], now: datetime, *, lateness_s: int | None = None
    ) -> ApplyResult:
        """Apply a batch in one round trip: script calls of up to USERS_PER_CALL users (each user's merge
        atomic), pipelined. `lateness_s` overrides the allowed lateness (see admitted_times)."""
        now_s = spec.unix_seconds(now)
        earliest, latest = self.admitted_times(now_s, lateness_s)
        result = ApplyResult()
        by_user: dict[str, list[tuple[int, bytes, int, bytes]]] = {}
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
        self._seal_ids(writes, by_user)
        started = time.perf_counter()
        replies = await self._apply_scripts(writes, now_s - PRUNE_AFTER_S)
        metrics.REDIS_SECONDS.labels("apply").observe(time.perf_counter() - started)
        for write, reply in zip(writes.values(), replies, strict=True):
            result.rejected += (Rejection(i, events[i].event_id, "conflict") for i in write.conflicts)
            for index, outcome in zip(write.indices, reply, strict=True):
                copies = write.copies.get(index, [])
                if outcome == INSERTED:
                    result.accepted += 1
                    result.duplicates += len(copies)
                elif outcome == DUPLICATE:
                    result.duplicates += 1 + len(copies)
                else:
                    reason: RejectionReason = OUTCOME_REASONS[outcome]
                    result.rejected += (Rejection(i, events[i].event_id, reason) for i in (index, *copies))
        result.rejected.sort(key=lambda r: r.index)
        return result

    def _script_args(self, group: Sequence[tuple[str, UserWrite]], prune_before: int) -> list[Any]:
        """EVALSHA's arguments merging `group`'s users (keys of one slot when on a cluster)."""
        layout = (RECORD.size, LUA_HEAD_FORMAT, FP_OFFSET, FP_BYTES, spec.PURCHASE)
        caps = (self._max_recent, self._max_purchases)
        # Per user: the records and the tombstone the script checks (and the directory entry it sets).
        suffixes = (KEY_SUFFIX, TOMBSTONE_SUFFIX, DIRECTORY_SUFFIX)[: 3 if self.directory else 2]
        keys = [tag + suffix for tag, _ in group for suffix in suffixes]
        # One argument per user: the script slices it.
        records = [b"".join(write.records) for _, write in group]
        sealed = [write.sealed_id for _, write in group] if self.directory else []
        return [APPLY_SHA, len(keys), *keys, prune_before, self._ttl, *layout, *caps, len(suffixes),
                *records, *sealed]  # fmt: skip

    @property
    def retention_s(self) -> int:
        """How long a user's data outlives their last write: no older event can still matter."""
        return self._ttl

    def admitted_times(self, now_s: int, lateness_s: int | None = None) -> tuple[int, int]:
        """The first and last event time (Unix s) a write at `now_s` takes; older events are `too_late`,
        later ones `in_future`. `lateness_s` replaces the allowed lateness: loading history takes any age
        within the retention, where live traffic takes only the allowed lateness."""
        return now_s - (self._lateness if lateness_s is None else lateness_s), now_s + self._skew

    async def apply_planned(
        self, writes: dict[str, UserWrite], user_ids: Sequence[str], now_s: int
    ) -> list[list[int]]:
        """The apply script's per-record replies for writes planned elsewhere (keyed by user_tag, each
        user's records as `plan` leaves them; `user_ids` in the same order), for callers that plan whole
        files column-wise. The caller has checked the times against admitted_times."""
        self._seal_ids(writes, user_ids)
        return await self._apply_scripts(writes, now_s - PRUNE_AFTER_S)

    def _seal_ids(self, writes: dict[str, UserWrite], user_ids: Iterable[str]) -> None:
        """With the user directory on, give each write its user's sealed id (`user_ids` in its order)."""
        if self.directory is not None:
            for user_id, write in zip(user_ids, writes.values(), strict=True):
                write.sealed_id = self.directory.seal(user_id)

    async def _apply_scripts(self, writes: dict[str, UserWrite], prune_before: int) -> list[list[int]]:
        """EVALSHA per group of users in one pipeline: one round trip. The script is loaded only when
        Redis says it lacks it (a restart); rerunning the batch then is safe: applying is idempotent."""
        if self._cluster_reads is not None:
            return await self._apply_scripts_on_cluster(writes, prune_before)
        for attempt in range(2):
            try:
                users = list(writes.items())
                async with self._redis.pipeline(transaction=False) as pipe:
                    for start in range(0, len(users), USERS_PER_CALL):
                        pipe.evalsha(*self._script_args(users[start : start + USERS_PER_CALL], prune_before))
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

    async def _apply_scripts_on_cluster(
        self, writes: dict[str, UserWrite], prune_before: int
    ) -> list[list[int]]:
        """As `_apply_scripts`, with each script call's users in one slot; the cluster pipeline sends each
        node its calls in parallel. A node failing after others applied their share is a PartialWrite."""
        users = list(writes.items())
        calls = [
            positions[start : start + USERS_PER_CALL]
            for positions in by_hash_tag([tag for tag, _ in users])
            for start in range(0, len(positions), USERS_PER_CALL)
        ]
        for attempt in range(2):
            with cluster_faults():
                async with self._redis.pipeline() as pipe:
                    for call in calls:
                        # The cluster pipeline refuses evalsha by name; the raw command is routed by key.
                        pipe.execute_command(
                            "EVALSHA", *self._script_args([users[i] for i in call], prune_before)
                        )
                    replies = await pipe.execute(raise_on_error=False)
            failures = [reply for reply in replies if isinstance(reply, BaseException)]
            if any(isinstance(failure, NoScriptError) for failure in failures) and not attempt:
                # A primary without the script (restarted, or a replica just promoted): load it on every
                # primary and run the whole write again, which applying's idempotency makes safe.
                with cluster_faults():
                    await self._redis.script_load(APPLY_SCRIPT)
                continue
            if failures:
                applied = sum(len(users[i][1].records) for call, reply in zip(calls, replies, strict=True)
                              if not isinstance(reply, BaseException) for i in call)  # fmt: skip
                if not applied:
                    raise (
                        failures[0] if isinstance(failures[0], RedisError) else ClusterFault(str(failures[0]))
                    )
                raise PartialWrite(applied, sum(len(write.records) for _, write in users), failures[0])
            by_user: list[list[int]] = [[] for _ in users]
            for call, reply in zip(calls, replies, strict=True):
                for i, user_reply in zip(call, reply, strict=True):
                    by_user[i] = user_reply
            return by_user
        raise AssertionError("unreachable")

    async def fetch(self, user_ids: Sequence[str]) -> list[bytes | None]:
        """The users' record strings (None for unknown users), in one MGET (one per slot on a cluster)."""
        if not user_ids:
            return []
        # One pseudonym per distinct id: a gathered batch may ask for a user more than once.
        distinct = dict.fromkeys(user_ids)
        keys = dict(zip(distinct, self._record_keys.of_many(self._pseudonyms.of_many(distinct)), strict=True))
        ordered = list(keys.values()) if len(keys) == len(user_ids) else [keys[u] for u in user_ids]
        started = time.perf_counter()
        blobs: list[bytes | None]
        if self._cluster_reads is not None:
            blobs = await self._cluster_reads.mget(ordered)
        else:
            blobs = await self._redis.mget(ordered)  # type: ignore[assignment]
        metrics.REDIS_SECONDS.labels("read").observe(time.perf_counter() - started)
        return blobs

    def features(self, blobs: list[bytes | None], as_of_s: int) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
        """Feature matrix (request order) and known-user flags of fetched strings: CPU only.

        `as_of_s` is meant to be the store's now (or later): records that pruning dropped cannot be
        brought back for an earlier time."""
        return records.features(blobs, as_of_s)

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
        for legacy in legacy_keys(self._prefix, pseudonym):  # one DEL each: another slot on a cluster
            removed += await self._redis.delete(legacy)
        return int(removed)


def store_for(settings: Settings, client: StoreClient, pseudonyms: Pseudonyms) -> OnlineFeatureStore:
    """The store as the settings describe it: the service's and the bulk commands' are the same."""
    return OnlineFeatureStore(
        client,
        settings.redis_prefix,
        settings.allowed_lateness_s,
        settings.max_future_skew_s,
        settings.retention_days,
        pseudonyms=pseudonyms,
        ack_replicas=settings.ack_replicas,
        ack_timeout_ms=settings.ack_timeout_ms,
        directory=IdSealer(pseudonyms.secret) if settings.user_directory else None,
    )
