"""Warnings to the CRM: each high-risk user, at most once per cool-down, as one Redis Stream message.

The emitter is a plain object any scoring path can hand its answers to: `offer` (non-blocking, for
code on the event loop such as the scoring pipeline's observer) queues the candidates; `send` (awaited,
for sweeps and batch jobs that can wait) writes them. One flusher task drains the queue through `send`.

Backpressure: the queue is bounded (CHURN_WARNINGS_QUEUE_MAX users). When it is full, new candidates
are dropped and counted (`churn_warnings_total{outcome="queue_full"}`); a batch that Redis fails is
dropped and counted too (`redis_error`). Nothing is lost for good: a dropped user set no cool-down key,
so the next time they are scored high-risk they are warned. Scoring never waits for the CRM.

Whether a user is warned is decided in Redis by one script call (warn_script.lua): SET NX EX on a
cool-down key named by the user's pseudonym, the action's daily budget, and XADD with a length cap.
Two replicas scoring the same user race on the SET: exactly one of them writes the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Final

import numpy as np
from redis.exceptions import NoScriptError, RedisError

from app import metrics
from app.actions.policy import NO_ACTION, ControlGroup, Policy
from app.features.pseudonym import Pseudonyms
from app.model.postprocess import TIERS
from app.model.results import Reason, ScoredRows
from app.model.scoring import ScoredBatch
from app.redis_client import PoolExhausted, StoreClient

log = logging.getLogger(__name__)

WARN_SCRIPT: Final = (files("app.actions") / "warn_script.lua").read_text()
WARN_SHA: Final = hashlib.sha1(WARN_SCRIPT.encode()).hexdigest()
FLUSH_MAX: Final = 256  # candidates per pipeline: one round trip, a few ms of Redis time at most
BUDGET_TTL_S: Final = 2 * 86_400  # a day's counter outlives its day, then goes
STOP_GRACE_S: Final = 2.0  # on shutdown, how long the flusher may take to write what is queued


@dataclass(frozen=True)
class WarningSettings:
    prefix: str
    stream: str
    cooldown_s: int
    stream_max_len: int
    stream_max_age_s: float
    tiers: frozenset[str]
    queue_max: int


def keys_tag(prefix: str) -> str:
    """The hash tag every warning key shares: one slot on a cluster, so one script call can touch them."""
    return f"{{{prefix}:warnings}}"


def stream_key(prefix: str, stream: str) -> str:
    return f"{keys_tag(prefix)}:{stream}"


@dataclass(frozen=True)
class Candidate:
    """A user scored in a warning tier, with what the message needs."""

    user_id: str
    probability: float
    tier: str
    segment: str
    reasons: list[Reason] | None
    model_version: str
    scored_at: datetime


@dataclass(frozen=True)
class Outcome:
    user_id: str
    sent: bool  # False: the user was warned within the cool-down
    entry_id: str | None = None
    action: str | None = None


def candidates(
    user_ids: Sequence[str],
    scored: ScoredRows,
    model_version: str,
    scored_at: datetime,
    tiers: frozenset[str],
) -> list[Candidate]:
    """The rows worth a warning: known users in a warning tier. An unknown user (no events) scores as
    long gone, but the shop has told us nothing about them: there is nobody to win back."""
    tier_codes = [i for i, name in enumerate(TIERS) if name in tiers]
    rows = np.flatnonzero(np.isin(scored.tier, tier_codes) & scored.known)
    if not len(rows):
        return []
    names = scored.segment_names
    return [
        Candidate(
            user_ids[row],
            float(scored.probability[row]),
            TIERS[int(scored.tier[row])],
            names[int(scored.segment[row])],
            None if scored.reasons is None else scored.reasons[row],
            model_version,
            scored_at,
        )
        for row in rows.tolist()
    ]


@dataclass(frozen=True)
class ScriptCall:
    keys: list[str]
    args: list[str | int | float]
    group: str
    action: str  # the action the warning carries if the budget allows it


class WarningEmitter:
    def __init__(
        self,
        redis: StoreClient,
        pseudonyms: Pseudonyms,
        policy: Policy,
        control: ControlGroup,
        settings: WarningSettings,
    ) -> None:
        self._redis = redis
        self._pseudonyms = pseudonyms
        self._policy = policy
        self._control = control
        self._settings = settings
        self._tag = keys_tag(settings.prefix)
        self.stream_key = stream_key(settings.prefix, settings.stream)
        self._queue: asyncio.Queue[Candidate] = asyncio.Queue(settings.queue_max)
        self._flusher: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # -- the non-blocking side, for code on the event loop -------------------------------------------

    def observe(self, batch: ScoredBatch) -> None:
        """The scoring pipeline's observer: queue the batch's high-risk users (microseconds)."""
        self.offer(batch.user_ids, batch.scored, batch.model.version, batch.scored_at)

    def offer(self, user_ids: Sequence[str], scored: ScoredRows, model_version: str, at: datetime) -> int:
        """Queue the warnings these answers call for; returns how many were queued. Full queue: the
        rest are dropped and counted (see the module's note on backpressure)."""
        found = candidates(user_ids, scored, model_version, at, self._settings.tiers)
        queued = 0
        for candidate in found:
            try:
                self._queue.put_nowait(candidate)
            except asyncio.QueueFull:
                metrics.WARNINGS.labels("queue_full").inc(len(found) - queued)
                break
            queued += 1
        metrics.WARNING_QUEUE.set(self._queue.qsize())
        return queued

    async def offer_and_wait(
        self, user_ids: Sequence[str], scored: ScoredRows, model_version: str, at: datetime
    ) -> list[Outcome]:
        """For paths that can wait (sweeps, batch scoring): the same selection as `offer`, written now."""
        found = candidates(user_ids, scored, model_version, at, self._settings.tiers)
        outcomes = []
        for start in range(0, len(found), FLUSH_MAX):
            outcomes += await self.send(found[start : start + FLUSH_MAX])
        return outcomes

    # -- the flusher ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="warnings-flusher")

    async def stop(self) -> None:
        """Write what is queued (for a moment at most), then end the flusher."""
        if self._flusher is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), STOP_GRACE_S)
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        self._flusher = None

    async def _flush_forever(self) -> None:
        pause = 0.05
        while True:
            batch = [await self._queue.get()]
            while len(batch) < FLUSH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            metrics.WARNING_QUEUE.set(self._queue.qsize())
            try:
                await self.send(batch)
                pause = 0.05
            except (RedisError, OSError, PoolExhausted) as error:
                metrics.WARNINGS.labels("redis_error").inc(len(batch))
                log.warning("dropped %d warnings: Redis failed (%s)", len(batch), error)
                await asyncio.sleep(pause)  # Redis down: do not spin; drop what comes meanwhile
                pause = min(pause * 2, 2.0)
            except Exception:  # a bug must not end the flusher: every later warning would be lost
                metrics.WARNINGS.labels("redis_error").inc(len(batch))
                log.exception("dropped %d warnings", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    # -- the awaited side ----------------------------------------------------------------------------

    async def send(self, batch: Sequence[Candidate]) -> list[Outcome]:
        """Decide and write these warnings in one round trip; each user's outcome, in order."""
        calls = [self._script_call(candidate) for candidate in batch]
        for attempt in range(2):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for call in calls:
                        # By the raw command: a cluster pipeline refuses evalsha by name, and routes this
                        # by its keys (all of one hash tag, so one slot).
                        pipe.execute_command("EVALSHA", WARN_SHA, len(call.keys), *call.keys, *call.args)
                    replies = await pipe.execute()
                break
            except NoScriptError:  # Redis restarted and lost its scripts
                if attempt:
                    raise
                await self._redis.script_load(WARN_SCRIPT)
        outcomes = []
        for candidate, call, reply in zip(batch, calls, replies, strict=True):
            if not int(reply[0]):
                metrics.WARNINGS.labels("cooling_down").inc()
                outcomes.append(Outcome(candidate.user_id, sent=False))
                continue
            entry_id = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            action = call.action if int(reply[2]) else NO_ACTION
            metrics.WARNINGS.labels("sent").inc()
            metrics.WARNING_ACTIONS.labels(action, call.group).inc()
            outcomes.append(Outcome(candidate.user_id, True, entry_id, action))
        return outcomes

    def _script_call(self, candidate: Candidate) -> ScriptCall:
        pseudonym = self._pseudonyms.of(candidate.user_id)
        top_reason = candidate.reasons[0]["feature"] if candidate.reasons else None
        intended, rule = self._policy.choose(candidate.tier, candidate.segment, top_reason)
        in_control = self._control.holds(candidate.user_id)
        scored_at = candidate.scored_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        base = {
            "warning_id": warning_id(pseudonym, scored_at, candidate.model_version),
            "user_id": candidate.user_id,
            "churn_probability": repr(candidate.probability),
            "risk_tier": candidate.tier,
            "segment": candidate.segment,
            "reasons": json.dumps(candidate.reasons),
            "model_version": candidate.model_version,
            "scored_at": scored_at,
            "group": "control" if in_control else "treatment",
            "intended_action": intended,
            "policy_rule": str(rule),
        }
        action = self._policy.actions.get(intended)
        budget = -1
        if in_control or action is None:
            fields = {
                "action": NO_ACTION,
                "action_kind": "",
                "action_params": "{}",
                "action_reason": "control" if in_control else "no_rule",
            }
        else:
            budget = action.daily_budget
            fields = {
                "action": intended,
                "action_kind": action.kind,
                "action_params": json.dumps(action.params, sort_keys=True),
                "action_reason": "policy",
            }
        day = candidate.scored_at.date().isoformat()
        keys = [f"{self._tag}:cool:{pseudonym}", f"{self._tag}:budget:{day}:{intended}", self.stream_key]
        settings = self._settings
        args: list[str | int | float] = [
            settings.cooldown_s,
            budget,
            BUDGET_TTL_S,
            settings.stream_max_len,
            int(settings.stream_max_age_s * 1000),
            2 * len(base),
        ]
        for pairs in (base, fields):
            for name, value in pairs.items():
                args += [name, value]
        return ScriptCall(keys, args, base["group"], fields["action"])


def warning_id(pseudonym: str, scored_at: str, model_version: str) -> str:
    """The same scoring of the same user gives the same id: a CRM that sees one twice can tell."""
    text = f"{pseudonym}|{scored_at}|{model_version}".encode()
    return hashlib.blake2b(text, digest_size=12).hexdigest()
