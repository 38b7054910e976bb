"""Scoring a file of user ids with the live features and the served model, outside HTTP.

The pieces the service's ScoringService composes, in the same order, on batches of thousands of users:
one MGET (OnlineFeatureStore.fetch), the features (OnlineFeatureStore.features, the same
`compute_features` as training), one pass of the model (ChurnModel.score: scaling, forward and backward,
calibration, tiers, segments, reasons). Results are written as columns, never as a dict per user. Each
batch's MGET is sent before the batch before it is scored, so Redis works while the model does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from app.actions.warnings import WarningEmitter
from app.features import spec
from app.features.directory import known_users
from app.features.online import OnlineFeatureStore
from app.model.postprocess import TIERS
from app.model.results import NO_HISTORY_NAME, ScoredRows, TopReasons
from app.model.scorer import ChurnModel
from app.redis_client import StoreClient
from app.schemas import PRINTABLE_ID

DEFAULT_BATCH: Final = 4_096
REASON_SEPARATOR: Final = ";"
EXAMPLES_KEPT: Final = 10
_IDENTIFIER = re.compile(PRINTABLE_ID)
# Lines of 0-128 printable characters (0: a blank line, skipped), each ended by \n or \r\n, the last
# one perhaps by nothing.
_CLEAN_BLOCK = re.compile(r"(?:[\x20-\x7e]{0,128}\r?\n)*[\x20-\x7e]{0,128}")
OUTPUT_SCHEMA: Final = pa.schema(
    [
        ("user_id", pa.string()),
        ("churn_probability", pa.float64()),
        ("risk_tier", pa.string()),
        ("segment", pa.string()),
        ("known_user", pa.bool_()),
        ("top_reasons", pa.string()),  # feature names, strongest first, joined by REASON_SEPARATOR
        ("model_version", pa.string()),
    ]
)


_DICTIONARY_COLUMNS: Final = [name for name in OUTPUT_SCHEMA.names if name != "user_id"]


class UserListError(ValueError):
    """A file of user ids that cannot be read: the message says why."""


@dataclass
class IdBatch:
    user_ids: list[str]
    refused: list[str] = field(default_factory=list)  # "line 7: ..." for ids that are not ids


@dataclass
class ScoreSummary:
    users: int = 0
    known: int = 0
    tiers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    refused: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    warned: int | None = None  # warnings written, when the run hands its answers to the warnings


def read_user_ids(path: Path, column: str, batch: int) -> Iterator[IdBatch]:
    """Ids in batches: a CSV file's `column`, or one id a line of any other file (blank lines skipped).
    An id is what /score takes: 1-128 printable ASCII characters."""
    if not path.is_file():
        raise UserListError(f"{path}: no such file")
    if path.suffix == ".csv" or path.suffixes[-2:] == [".csv", ".gz"]:
        yield from _csv_ids(path, column, batch)
    else:
        yield from _line_ids(path, batch)


def _line_ids(path: Path, batch: int) -> Iterator[IdBatch]:
    done = 0  # lines read so far
    with path.open(encoding="utf-8", errors="replace", newline="") as stream:
        while lines := list(itertools.islice(stream, batch)):
            block = "".join(lines)
            # Usually every line is an id: one regex pass over the block then clears them all.
            if _CLEAN_BLOCK.fullmatch(block):
                yield IdBatch(list(filter(None, block.splitlines())))
            else:
                yield _checked_lines(lines, done)
            done += len(lines)


def _checked_lines(lines: list[str], done: int) -> IdBatch:
    ids: list[str] = []
    refused: list[str] = []
    for number, line in enumerate(lines, start=done + 1):
        user_id = line.rstrip("\r\n")
        if _IDENTIFIER.fullmatch(user_id) and len(user_id) <= 128:
            ids.append(user_id)
        elif user_id:
            refused.append(f"line {number}: not 1-128 printable ASCII characters")
    return IdBatch(ids, refused)


def _csv_ids(path: Path, column: str, batch: int) -> Iterator[IdBatch]:
    options = pa_csv.ConvertOptions(column_types={column: pa.string()}, include_columns=[column])
    done = 0
    try:
        with pa_csv.open_csv(path, convert_options=options) as reader:
            for record_batch in reader:
                values = record_batch.column(0).to_pylist()
                for start in range(0, len(values), batch):
                    ids, refused = [], []
                    for offset, user_id in enumerate(values[start : start + batch]):
                        if user_id and _IDENTIFIER.fullmatch(user_id) and len(user_id) <= 128:
                            ids.append(user_id)
                        elif user_id:
                            line = done + start + offset + 2  # line 1 is the header
                            refused.append(f"line {line}: not 1-128 printable ASCII characters")
                    yield IdBatch(ids, refused)
                done += len(values)
    except (pa.ArrowInvalid, KeyError) as error:
        raise UserListError(f"{path}: cannot read column {column!r}: {error}") from None


class OutputFile:
    """Parquet or CSV, chosen by the file's extension, written a batch at a time."""

    def __init__(self, path: Path) -> None:
        if path.suffix not in (".parquet", ".csv"):
            raise UserListError(f"{path}: the output must end in .parquet or .csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pa_parquet.ParquetWriter | pa_csv.CSVWriter = (
            # Dictionary-encoding the ids, each one distinct, only costs time and space.
            pa_parquet.ParquetWriter(path, OUTPUT_SCHEMA, use_dictionary=_DICTIONARY_COLUMNS)
            if path.suffix == ".parquet"
            else pa_csv.CSVWriter(path, OUTPUT_SCHEMA)
        )

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


_FEATURE_NAMES: Final = pa.array(spec.FEATURE_NAMES, pa.string())


def reason_names(top: TopReasons) -> pa.Array:
    """Per row, its reasons' feature names joined by REASON_SEPARATOR ("" without reasons, NO_HISTORY_NAME
    for a user with no history), in Arrow: no Python string per row."""
    # A place without a positive reason is null, and the join skips nulls; but a row of nulls only is
    # dropped from the join's output (pyarrow 26), so the first place is "" instead: shares are sorted
    # descending, so a row without a first reason has none.
    first = pc.if_else(pa.array(top.shares[:, 0] > 0), _FEATURE_NAMES.take(top.features[:, 0]), "")
    places = [
        _FEATURE_NAMES.take(pa.array(top.features[:, place], mask=~(top.shares[:, place] > 0)))
        for place in range(1, top.features.shape[1])
    ]
    names = pc.binary_join_element_wise(first, *places, REASON_SEPARATOR, null_handling="skip")
    if top.no_history is not None and top.no_history.any():
        names = pc.if_else(pa.array(top.no_history), NO_HISTORY_NAME, names)
    return names


async def directory_batches(
    store: OnlineFeatureStore, redis: StoreClient, prefix: str, batch: int
) -> AsyncIterator[IdBatch]:
    """Every user in the user directory (app/features/directory.py), `batch` at a time."""
    if store.directory is None:
        raise UserListError(
            "--all needs the user directory (CHURN_USER_DIRECTORY=true when events are written)"
        )
    async for page in known_users(redis, prefix, store.directory, batch):
        yield IdBatch(page)


async def _as_async(batches: Iterable[IdBatch]) -> AsyncIterator[IdBatch]:
    for batch in batches:
        yield batch


class BatchScorer:
    def __init__(
        self,
        store: OnlineFeatureStore,
        model: ChurnModel,
        top_k: int,
        warnings: WarningEmitter | None = None,
    ) -> None:
        self._store = store
        self._model = model
        self._top_k = top_k
        self._warnings = warnings  # high-risk answers become warnings, as the service's do

    def _scored(self, blobs: list[bytes | None], as_of: datetime) -> ScoredRows:
        """One batch, as the service scores one gathered batch."""
        raw, known = self._store.features(blobs, spec.unix_seconds(as_of))
        return self._model.score(raw, known, True, self._top_k, reason_dicts=False)

    def _columns(self, user_ids: list[str], scored: ScoredRows) -> pa.Table:
        """The batch's answers as the output's columns."""
        assert scored.top is not None  # explaining: the reasons are there
        # Tiers and segments by index into their few names, in Arrow: no Python string per row.
        columns = [
            pa.array(user_ids, pa.string()),
            pa.array(scored.probability),
            pa.array(TIERS, pa.string()).take(scored.tier),
            pa.array(scored.segment_names, pa.string()).take(scored.segment),
            pa.array(scored.known),
            reason_names(scored.top),
            pa.repeat(self._model.version, len(user_ids)),
        ]
        return pa.Table.from_arrays(columns, schema=OUTPUT_SCHEMA)

    async def run(
        self,
        batches: Iterable[IdBatch] | AsyncIterator[IdBatch],
        out: OutputFile,
        as_of: datetime,
        progress: Callable[[int], object] = lambda users: None,
    ) -> ScoreSummary:
        summary = ScoreSummary()
        pending: tuple[IdBatch, asyncio.Task[list[bytes | None]]] | None = None
        source = batches if isinstance(batches, AsyncIterator) else _as_async(batches)
        while True:
            batch = await anext(source, None)
            # Send the next batch's MGET, let the loop write it out, then score the batch before it.
            upcoming = None
            if batch is not None:
                upcoming = (batch, asyncio.create_task(self._store.fetch(batch.user_ids)))
                await asyncio.sleep(0)
            if pending is not None:
                done, fetching = pending
                scored = self._scored(await fetching, as_of)
                table = self._columns(done.user_ids, scored)
                out.write(table)
                if self._warnings is not None:
                    summary.warned = (summary.warned or 0) + await self._warn(done.user_ids, scored, as_of)
                self._count(summary, done, scored)
                progress(len(done.user_ids))
            if upcoming is None:
                return summary
            pending = upcoming

    async def _warn(self, user_ids: list[str], scored: ScoredRows, as_of: datetime) -> int:
        """Hand the batch's answers to the warnings; the number of messages written."""
        assert self._warnings is not None and scored.top is not None
        with_reasons = dataclasses.replace(scored, reasons=scored.top.as_lists(self._model.reason_texts))
        outcomes = await self._warnings.offer_and_wait(user_ids, with_reasons, self._model.version, as_of)
        return sum(outcome.sent for outcome in outcomes)

    @staticmethod
    def _count(summary: ScoreSummary, batch: IdBatch, scored: ScoredRows) -> None:
        summary.users += len(scored.tier)
        summary.known += int(np.count_nonzero(scored.known))
        for tier, count in zip(TIERS, np.bincount(scored.tier, minlength=len(TIERS)).tolist(), strict=True):
            summary.tiers[tier] += count
        summary.refused += len(batch.refused)
        summary.examples += batch.refused[: EXAMPLES_KEPT - len(summary.examples)]


def format_summary(summary: ScoreSummary, out: Path, model_version: str) -> str:
    rate = summary.users / summary.seconds if summary.seconds else 0.0
    tiers = ", ".join(f"{tier} {count:,}" for tier, count in summary.tiers.items())
    lines = [
        f"{out}: {summary.users:,} users scored by model {model_version} in {summary.seconds:.1f} s "
        f"({rate:,.0f} users/s)",
        f"  known users {summary.known:,}; unknown {summary.users - summary.known:,} (scored on no events)",
        f"  risk tiers: {tiers}",
    ]
    if summary.warned is not None:
        lines.append(
            f"  warnings written: {summary.warned:,} (the rest in a warning tier were within the cool-down)"
        )
    if summary.refused:
        lines.append(f"  refused ids: {summary.refused:,}")
        lines += [f"    {example}" for example in summary.examples]
    return "\n".join(lines)
