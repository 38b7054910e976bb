"""Event files read in bounded chunks: CSV and Parquet as Arrow record batches, JSON lines a chunk of lines
at a time. A file larger than memory is never held whole; each row keeps where it came from (its line in
a text file, its row in a Parquet file), so that a refused row can be named.

JSON lines are held to what POST /events takes for one event, beyond the schema's checks (offline.py):
strict JSON types (a number is not a text, `2.5` is not an integer, `true` is not a number), no key
outside the schema and no key given twice. A chunk is first handed whole to Arrow's JSON reader, which
refuses all of that too; only a chunk it refuses is read line by line, to say what is wrong where. CSV has
no types: its cells are text, read as the schema says.
"""

from __future__ import annotations

import gzip
import io
import itertools
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, cast

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pa_parquet

from app.api.strict_json import find_repeated_key
from app.features.offline import SCHEMA_COLUMNS, EventLogError, RowProblem

DEFAULT_CHUNK_ROWS: Final = 100_000
WHOLE_ROW: Final = ""  # the column of a problem with the row as a whole (a line that is not an object)
_CSV_BYTES_PER_ROW: Final = 96  # Arrow reads CSV in blocks of bytes: about this many make one row
_TEXT_COLUMNS: Final = ("event_id", "user_id", "type", "ts")
# Which JSON values each optional field takes (pandas' names for a column's kinds of values).
_NUMBER_KINDS: Final = frozenset({"integer", "floating", "mixed-integer-float", "empty"})
_INTEGER_KINDS: Final = frozenset({"integer", "empty"})
# The schema's JSON types for Arrow: a value of another type, a key outside it or given twice, a line that
# is not an object, each makes Arrow refuse the chunk. (An integer in `amount` is a number: it reads as one.)
_ARROW_JSON: Final = pa_json.ParseOptions(
    explicit_schema=pa.schema(
        [(name, pa.string()) for name in _TEXT_COLUMNS]
        + [("amount", pa.float64()), ("items", pa.int64()), ("rating", pa.int64())]
    ),
    unexpected_field_behavior="error",
)


@dataclass
class Chunk:
    """Consecutive rows of a file: as read (schema columns), and where each one is in the file."""

    raw: pd.DataFrame
    locations: npt.NDArray[np.int64]  # 1-based line (text files) or row (Parquet) of each row
    problems: list[RowProblem] = field(default_factory=list)  # found while reading, by row position
    # Rows whose reading problems are all that is said of them: a line that is not a JSON object, or
    # gives a key twice (the value kept may not be the one meant, as /events answers).
    told_alone: npt.NDArray[np.intp] = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    # Lines that could not be read as rows at all (a CSV line with too many fields): (line, why).
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class EventFile:
    path: Path
    kind: str  # "csv", "jsonl" or "parquet"

    @property
    def unit(self) -> str:
        """What a location counts: lines of a text file, rows of a Parquet file."""
        return "row" if self.kind == "parquet" else "line"

    def rows(self) -> int | None:
        """The number of rows when the file says it without being read (Parquet's footer)."""
        return pa_parquet.ParquetFile(self.path).metadata.num_rows if self.kind == "parquet" else None

    def chunks(self, rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Chunk]:
        if self.kind == "parquet":
            return _parquet_chunks(self.path, rows)
        if self.kind == "csv":
            return _csv_chunks(self.path, rows)
        return _jsonl_chunks(self.path, rows)


def open_event_file(path: str | Path) -> EventFile:
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:])
    if not path.is_file():
        raise EventLogError(f"{path}: no such file")
    if suffixes.endswith(".parquet"):
        return EventFile(path, "parquet")
    if suffixes.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return EventFile(path, "jsonl")
    if suffixes.endswith((".csv", ".csv.gz")):
        return EventFile(path, "csv")
    raise EventLogError(f"{path}: unknown format; use .csv, .jsonl or .parquet (optionally .gz)")


def _parquet_chunks(path: Path, rows: int) -> Iterator[Chunk]:
    source = pa_parquet.ParquetFile(path)
    done = 0
    for batch in source.iter_batches(batch_size=rows):
        yield Chunk(batch.to_pandas(), np.arange(done + 1, done + batch.num_rows + 1, dtype=np.int64))
        done += batch.num_rows


def _csv_chunks(path: Path, rows: int) -> Iterator[Chunk]:
    # Every cell as text, as offline.read_event_log reads ids and times: "00042" is an id, not 42. Empty
    # cells stay empty text, which the checks read as "not given".
    options = pa_csv.ConvertOptions(column_types=dict.fromkeys(SCHEMA_COLUMNS, pa.string()))
    # One thread, so that a line with the wrong number of fields is reported before the batch it
    # would have been in: the lines of the rows around it depend on it.
    read = pa_csv.ReadOptions(block_size=max(1 << 16, rows * _CSV_BYTES_PER_ROW), use_threads=False)
    skipped: list[tuple[int, str]] = []

    def skip(row: pa_csv.InvalidRow) -> str:
        skipped.append(
            (row.number or 0, f"{row.actual_columns} fields where the header has {row.expected_columns}")
        )
        return "skip"

    parse = pa_csv.ParseOptions(invalid_row_handler=skip)
    next_line = 2  # line 1 is the header
    try:
        with pa_csv.open_csv(path, read_options=read, parse_options=parse, convert_options=options) as reader:
            for batch in reader:
                # The batch's rows are the next lines but those skipped. (A quoted cell spanning lines
                # would shift later numbers; no valid event has one: ids and times are printable.)
                gaps = np.array([number for number, _ in skipped], dtype=np.int64)
                candidates = np.arange(next_line, next_line + batch.num_rows + len(gaps), dtype=np.int64)
                lines = candidates[~np.isin(candidates, gaps)][: batch.num_rows]
                yield Chunk(batch.to_pandas(), lines, skipped_lines=skipped)
                next_line = int(lines[-1]) + 1 if len(lines) else next_line + len(gaps)
                skipped = []
    except pa.ArrowInvalid as error:
        raise EventLogError(f"{path}: not a readable CSV file after line {next_line - 1}: {error}") from None
    if skipped:
        yield Chunk(pd.DataFrame(columns=list(SCHEMA_COLUMNS)), np.empty(0, np.int64), skipped_lines=skipped)


def _jsonl_chunks(path: Path, rows: int) -> Iterator[Chunk]:
    # Arrow parses a chunk without holding the GIL: the next chunk is parsed in a thread of its own while
    # the one before is checked and planned, so that loading is not parse, then check, then parse.
    with _open_binary(path) as stream, ThreadPoolExecutor(1, thread_name_prefix="jsonl") as parser:
        parsing: Future[Chunk] | None = None
        for lines, numbers in _non_blank_lines(stream, rows):
            upcoming = parser.submit(_json_chunk, lines, numbers)
            if parsing is not None:
                yield parsing.result()
            parsing = upcoming
        if parsing is not None:
            yield parsing.result()


def _non_blank_lines(stream: IO[bytes], rows: int) -> Iterator[tuple[list[bytes], list[int]]]:
    """The stream's lines `rows` at a time, blank ones (a trailing one, say) left out, with the line
    numbers of those kept."""
    done = 0
    while block := list(itertools.islice(stream, rows)):
        numbers = range(done + 1, done + len(block) + 1)
        done += len(block)
        if all(map(bytes.strip, block)):  # the usual block: no blank line, no loop in Python
            yield block, list(numbers)
        else:
            kept = [(line, number) for line, number in zip(block, numbers, strict=True) if line.strip()]
            if kept:
                yield [line for line, _ in kept], [number for _, number in kept]


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _json_chunk(lines: list[bytes], numbers: list[int]) -> Chunk:
    return _arrow_json_chunk(lines, numbers) or _json_chunk_by_line(lines, numbers)


def _arrow_json_chunk(lines: list[bytes], numbers: list[int]) -> Chunk | None:
    """The usual chunk, read by Arrow at once, as Parquet's chunks are; None when Arrow refuses it (an
    integer written 2.0 included, which /events takes: the line-by-line reading then decides)."""
    try:
        table = pa_json.read_json(
            io.BytesIO(b"".join(lines)),
            read_options=pa_json.ReadOptions(use_threads=False),
            parse_options=_ARROW_JSON,
        )
    except pa.ArrowException:
        return None
    if table.num_rows != len(lines):  # a line holding two objects, say
        return None
    raw = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return Chunk(raw, np.array(numbers, dtype=np.int64))


def _json_chunk_by_line(lines: list[bytes], numbers: list[int]) -> Chunk:
    objects: list[dict[str, object]] = []
    unreadable: list[int] = []
    not_objects: list[int] = []
    for position, line in enumerate(lines):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            unreadable.append(position)
            value = {}
        if not isinstance(value, dict):
            not_objects.append(position)
            value = {}
        objects.append(value)
    raw = pd.DataFrame(objects, dtype=object)
    problems = [
        RowProblem(WHOLE_ROW, message, np.array(where, dtype=np.intp))
        for message, where in (("not valid JSON", unreadable), ("must be a JSON object", not_objects))
        if where
    ]
    raw = _keep_schema_keys(raw, problems)
    problems += _wrong_json_types(raw)
    repeated = _repeated_keys(lines, objects, raw)
    told_alone = np.array([*unreadable, *not_objects, *(r for p in repeated for r in p.rows)], dtype=np.intp)
    return Chunk(raw, np.array(numbers, dtype=np.int64), problems + repeated, told_alone)


def _keep_schema_keys(raw: pd.DataFrame, problems: list[RowProblem]) -> pd.DataFrame:
    """The schema's columns only (absent ones empty); a row with another key is refused, as /events does."""
    for name in sorted(set(raw.columns) - set(SCHEMA_COLUMNS)):
        rows = np.flatnonzero(raw[name].notna().to_numpy())
        problems.append(RowProblem(str(name), "is not a field of the event schema", rows))
    return raw.reindex(columns=list(SCHEMA_COLUMNS))


def _wrong_json_types(raw: pd.DataFrame) -> list[RowProblem]:
    """Values of the wrong JSON type. A column of one kind of value is cleared in one C pass; only a
    column that mixes kinds is looked at value by value."""
    problems = []
    for name in SCHEMA_COLUMNS:
        column = raw[name]
        kind = pd.api.types.infer_dtype(column, skipna=True)
        if name in _TEXT_COLUMNS:
            if kind in ("string", "empty"):
                continue
            wrong = [not isinstance(v, str) for v in column]
            message = "must be a JSON string"
        elif name == "amount":
            if kind in _NUMBER_KINDS:
                continue
            wrong = [isinstance(v, bool) or not isinstance(v, (int, float)) for v in column]
            message = "must be a JSON number"
        else:
            if kind in _INTEGER_KINDS:
                continue
            # As JSON Schema and /events count them: a number without a fractional part (2 or 2.0).
            wrong = [
                isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))
                for v in column
            ]
            message = "must be a JSON integer"
        # Absent keys and nulls are the schema checks' business (required, or allowed to be empty).
        rows = np.flatnonzero(np.asarray(wrong, dtype=bool) & column.notna().to_numpy())
        if len(rows):
            problems.append(RowProblem(name, message, rows))
    return problems


def _repeated_keys(
    lines: list[bytes], objects: list[dict[str, object]], raw: pd.DataFrame
) -> list[RowProblem]:
    """Rows that give a key twice (the JSON parser keeps the last silently). Ruled out for the whole
    chunk by counting quotes, as app/api/strict_json.py does for a request; a chunk the count does not
    clear is looked at line by line."""
    text = b"".join(lines)
    strings = sum(map(len, objects)) + sum(map(_text_values, (raw[name] for name in SCHEMA_COLUMNS)))
    if b"\\" not in text and text.count(b'"') == 2 * strings:
        return []
    repeated: dict[str, list[int]] = {}
    for position, line in enumerate(lines):
        found = find_repeated_key(line)
        if found is not None:
            repeated.setdefault(found.key, []).append(position)
    return [
        RowProblem(key, "is given twice in one object", np.array(rows, dtype=np.intp))
        for key, rows in repeated.items()
    ]


def _text_values(column: pd.Series) -> int:
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind == "string":
        return int(column.notna().sum())
    if kind in _NUMBER_KINDS:
        return 0
    return sum(isinstance(value, str) for value in column)
