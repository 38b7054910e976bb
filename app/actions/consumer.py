"""A CRM-side consumer of the warning stream, with a consumer group: at-least-once delivery.

Each consumer of a group reads new messages (XREADGROUP), hands each to its handler, and acknowledges
it (XACK) only once the handler returned. A message read but never acknowledged (its consumer died,
or the handler failed) stays pending; any consumer of the group takes it over once it has been idle
for `claim_idle_ms` (XAUTOCLAIM) and handles it again. So a handler may see a message twice and should
be idempotent: the message's `warning_id` (or the entry id) tells a repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import ResponseError

from app.actions.message import decode

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], None]


@dataclass
class WarningConsumer:
    client: redis.Redis  # with decode_responses=True
    stream: str
    group: str
    name: str
    claim_idle_ms: int = 60_000
    count: int = 100  # messages taken at a time

    def ensure_group(self) -> None:
        """Create the group (reading the stream from its start) unless it exists."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def claim_stale(self, limit: int) -> list[tuple[str, dict[str, str]]]:
        """Up to `limit` messages other consumers (or this one, before a restart) read and left
        unacknowledged for the idle time; they are this consumer's from now on."""
        claimed: list[tuple[str, dict[str, str]]] = []
        cursor = "0-0"
        while True:
            reply: Any = self.client.xautoclaim(
                self.stream, self.group, self.name, self.claim_idle_ms, cursor, count=limit - len(claimed)
            )
            cursor, entries = reply[0], reply[1]
            # Entries trimmed from the stream meanwhile come back empty (or are listed apart, Redis 7+).
            claimed += [(entry_id, fields) for entry_id, fields in entries if fields]
            if cursor == "0-0" or len(claimed) >= limit:
                return claimed

    def read_new(self, limit: int, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.client.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=limit, block=block_ms
        )
        return [(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]

    def run(
        self,
        handle: Handler,
        *,
        block_ms: int = 5_000,
        max_messages: int | None = None,
        until_idle: bool = False,
    ) -> int:
        """Handle and acknowledge until `max_messages` are handled (forever when None), or with
        `until_idle` until a read finds nothing within `block_ms`; returns how many were handled.
        A handler that raises leaves its message pending (redelivered after the idle time) and ends the
        run: the caller decides whether to go on."""
        self.ensure_group()
        handled = 0
        while max_messages is None or handled < max_messages:
            # Never take more than is left to handle: what is taken and not handled waits the idle time.
            limit = self.count if max_messages is None else min(self.count, max_messages - handled)
            batch = self.claim_stale(limit) or self.read_new(limit, block_ms)
            if not batch and until_idle:
                break
            for entry_id, fields in batch:
                handle(decode(entry_id, fields))
                self.client.xack(self.stream, self.group, entry_id)
                handled += 1
        return handled
