"""Loading event history from a file straight into the online store.

Each chunk of the file is checked against the event schema (offline.check_events, which takes what
/events takes), its times against the store's admitted times with the retention as the lateness bound
(the service takes only the allowed lateness; history of any age the store would still keep is taken
here), planned column-wise (app/bulk/plan.py) and written by the store's apply script, so a row is
stored exactly as /events would store it, and loading a file twice changes nothing: the second run finds
every row a duplicate. While Redis applies one chunk the next is read and planned in a thread.

The store keeps of a user's non-purchase events older than its window (capacity.PRUNE_AFTER_S) only the
first and the last: the others are read by no feature and dropped as they arrive, so no later run can
know them again. Which ones were dropped is read back after each chunk and reported as "not kept", on
every run alike; a second run reports every stored row as a duplicate and accepts nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.bulk.plan import PlannedWrites, plan_writes
from app.bulk.readers import DEFAULT_CHUNK_ROWS, WHOLE_ROW, Chunk, EventFile
from app.features import spec
from app.features.capacity import PRUNE_AFTER_S
from app.features.offline import RowProblem, check_events
from app.features.online import CONFLICT, DUPLICATE, ERASED, INSERTED, REFUSED, OnlineFeatureStore
from app.features.pseudonym import Pseudonyms
from app.features.records import RECORD_DTYPE

WINDOW_DAYS: Final = PRUNE_AFTER_S // spec.DAY_SECONDS
EXAMPLES_KEPT: Final = 10  # invalid rows shown in the summary, the first in the file
# The apply script's per-record replies that refuse a record, as the rejection reasons /events answers.
SCRIPT_REFUSALS: Final = {REFUSED: "user_over_capacity", ERASED: "erased", CONFLICT: "conflict"}


@dataclass
class BackfillSummary:
    rows: int = 0
    accepted: int = 0  # stored
    not_kept: int = 0  # taken, but too old to be read by any feature, so not stored
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> rows
    invalid: Counter[tuple[str, str]] = field(default_factory=Counter)  # (field, problem) -> rows
    examples: list[str] = field(default_factory=list)  # the first invalid rows, where and why
    seconds: float = 0.0

    @property
    def rejected_rows(self) -> int:
        return sum(self.rejected.values())


@dataclass
class _Stored:
    """The script's reply for each record sent, and which of the records it inserted are stored."""

    outcomes: npt.NDArray[np.int64]
    dropped: npt.NDArray[np.bool_]


@dataclass
class _Prepared:
    """A chunk read, checked and planned, waiting for the script."""

    rows: int
    planned: PlannedWrites
    rejected: Counter[str]
    invalid: Counter[tuple[str, str]]
    examples: list[str]


class Backfill:
    def __init__(
        self,
        store: OnlineFeatureStore,
        prefix: str,
        pseudonyms: Pseudonyms,
        now: datetime,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._pseudonyms = pseudonyms
        self._now_s = spec.unix_seconds(now)
        # History of any age the store keeps: an older event could not outlast its own retention.
        self._earliest, self._latest = store.admitted_times(self._now_s, lateness_s=store.retention_s)
        self._prune_before = self._now_s - PRUNE_AFTER_S
        self._chunk_rows = chunk_rows

    async def run(
        self, source: EventFile, progress: Callable[[int], object] = lambda rows: None
    ) -> BackfillSummary:
        """Load the file; `progress` is told the rows of each chunk once it is stored."""
        started = time.perf_counter()
        summary = BackfillSummary()
        chunks = source.chunks(self._chunk_rows)
        pending: asyncio.Task[_Stored] | None = None
        waiting: _Prepared | None = None
        while True:
            # Read and plan the next chunk while Redis applies the one before.
            try:
                prepared = await asyncio.to_thread(self._prepare_next, chunks, source.unit)
            except BaseException:
                if pending is not None:  # the chunk before is written whole before the error is told
                    await asyncio.wait([pending])
                raise
            if pending is not None and waiting is not None:
                self._count(summary, waiting, await pending)
                progress(waiting.rows)
            if prepared is None:
                break
            pending = asyncio.create_task(self._write(prepared.planned))
            waiting = prepared
        summary.seconds = time.perf_counter() - started
        return summary

    async def _write(self, planned: PlannedWrites) -> _Stored:
        """Apply a planned chunk, then read back the users that had inserted records the store may have
        dropped at once (non-purchases older than its window), before the next chunk can drop more."""
        replies = await self._store.apply_planned(planned.writes, planned.user_ids, self._now_s)
        outcomes = np.fromiter(itertools.chain.from_iterable(replies), np.int64, count=len(planned.records))
        records = planned.records
        maybe = (
            (outcomes == INSERTED) & (records["kind"] != spec.PURCHASE) & (records["ts"] < self._prune_before)
        )
        dropped = np.zeros(len(records), dtype=bool)
        if maybe.any():
            users = np.unique(planned.owners[maybe])
            blobs = await self._store.fetch([planned.user_ids[u] for u in users.tolist()])
            dropped[maybe] = ~_stored(records[maybe], planned.owners[maybe], users, blobs)
        return _Stored(outcomes, dropped)

    def _prepare_next(self, chunks: Iterator[Chunk], unit: str) -> _Prepared | None:
        chunk = next(chunks, None)
        return None if chunk is None else self._prepare(chunk, unit)

    def _prepare(self, chunk: Chunk, unit: str) -> _Prepared:
        frame, problems = check_events(chunk.raw)
        if len(chunk.told_alone):
            alone = chunk.told_alone
            problems = [RowProblem(p.column, p.message, np.setdiff1d(p.rows, alone)) for p in problems]
        problems = [p for p in chunk.problems + problems if len(p.rows)]
        invalid = np.zeros(len(frame), dtype=bool)
        for problem in problems:
            invalid[problem.rows] = True
        ts = frame["ts_s"].to_numpy()
        too_late = ~invalid & (ts < self._earliest)
        in_future = ~invalid & (ts > self._latest)
        skipped = chunk.skipped_lines
        rejected = Counter(
            {
                "invalid": int(invalid.sum()) + len(skipped),
                "too_late": int(too_late.sum()),
                "in_future": int(in_future.sum()),
            }
        )
        admitted = frame[~(invalid | too_late | in_future)]
        invalid_fields = Counter({(p.column, p.message): len(p.rows) for p in problems})
        invalid_fields.update((WHOLE_ROW, why) for _, why in skipped)
        examples = _examples(problems, chunk.locations) + [(line, why) for line, why in skipped]
        return _Prepared(
            rows=len(frame) + len(skipped),
            planned=plan_writes(admitted, self._prefix, self._pseudonyms, self._prune_before),
            rejected=+rejected,
            invalid=invalid_fields,
            examples=[f"{unit} {where}: {why}" for where, why in sorted(examples)[:EXAMPLES_KEPT]],
        )

    @staticmethod
    def _count(summary: BackfillSummary, prepared: _Prepared, stored: _Stored) -> None:
        codes = Counter(dict(zip(*np.unique(stored.outcomes, return_counts=True), strict=True)))
        planned = prepared.planned
        # Left-out records of an erased user would have been refused as erased: the script refuses a
        # user's records up to the erasure as a prefix, and the user's last non-purchase, sent, is later.
        erased = (planned.last_other >= 0) & (stored.outcomes[np.maximum(planned.last_other, 0)] == ERASED)
        erased_left_out = int(planned.left_out[erased].sum())
        if erased_left_out:
            summary.rejected["erased"] += erased_left_out
        dropped = int(stored.dropped.sum())
        summary.rows += prepared.rows
        summary.accepted += int(codes.pop(INSERTED, 0)) - dropped
        summary.not_kept += dropped + int(planned.left_out.sum()) - erased_left_out
        summary.duplicates += int(codes.pop(DUPLICATE, 0)) + planned.repeats
        summary.rejected.update(prepared.rejected)
        if planned.conflicts:
            summary.rejected["conflict"] += planned.conflicts
        for code, count in codes.items():
            summary.rejected[SCRIPT_REFUSALS.get(int(code), f"refused by the store ({code})")] += int(count)
        summary.invalid.update(prepared.invalid)
        room = EXAMPLES_KEPT - len(summary.examples)
        summary.examples += prepared.examples[:room]


def _stored(
    records: npt.NDArray[np.void],
    owners: npt.NDArray[np.intp],
    users: npt.NDArray[np.intp],
    blobs: list[bytes | None],
) -> npt.NDArray[np.bool_]:
    """Whether each record (of user owners[i]) is in its user's record string; blobs[j] is users[j]'s."""
    present = [b or b"" for b in blobs]
    held = np.frombuffer(b"".join(present), dtype=RECORD_DTYPE)
    held_owner = np.repeat(users, [len(b) // RECORD_DTYPE.itemsize for b in present])
    # The record within the user: (ts, fingerprint) names it, as the event id and its time.
    keys = pd.MultiIndex.from_arrays([held_owner, held["ts"].astype(np.int64), held["fp"]])
    asked = pd.MultiIndex.from_arrays([owners, records["ts"].astype(np.int64), records["fp"]])
    return np.asarray(asked.isin(keys), dtype=bool)


def _examples(problems: list[RowProblem], locations: npt.NDArray[np.int64]) -> list[tuple[int, str]]:
    """The chunk's first invalid rows in file order, each with every problem it has: (location, why)."""
    first = sorted({int(r) for p in problems for r in p.rows[:EXAMPLES_KEPT]})[:EXAMPLES_KEPT]
    told = []
    for row in first:
        why = "; ".join(
            f"{p.column!r} {p.message}" if p.column != WHOLE_ROW else p.message
            for p in problems
            if row in set(p.rows[:EXAMPLES_KEPT].tolist())
        )
        told.append((int(locations[row]), why))
    return told


def format_summary(summary: BackfillSummary, name: str) -> str:
    rate = summary.rows / summary.seconds if summary.seconds else 0.0
    lines = [
        f"{name}: {summary.rows:,} rows in {summary.seconds:.1f} s ({rate:,.0f} rows/s)",
        f"  accepted    {summary.accepted:>12,}",
        f"  not kept    {summary.not_kept:>12,}  (older than {WINDOW_DAYS} days: read by no feature)",
        f"  duplicates  {summary.duplicates:>12,}",
        f"  rejected    {summary.rejected_rows:>12,}",
    ]
    for reason, count in sorted(summary.rejected.items()):
        lines.append(f"    {reason:<22}{count:>10,}")
        if reason == "invalid":
            lines += [
                f"      {column or 'row'}: {message} ({count:,})"
                for (column, message), count in summary.invalid.most_common()
            ]
    if summary.examples:
        lines.append("first invalid rows:")
        lines += [f"  {example}" for example in summary.examples]
    return "\n".join(lines)
