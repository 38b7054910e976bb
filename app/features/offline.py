"""Event logs on disk (CSV, JSONL, Parquet) -> validated events -> feature matrices as of any time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from app.features import spec
from app.features.compute import EventArrays, FloatMatrix, compute_features
from app.schemas import (
    FIELD_RULES,
    LATEST_TS,
    MAX_AMOUNT,
    PRINTABLE_CHAR,
    RFC3339_TIME,
    TS_MESSAGE,
    TS_YEARS,
)

SCHEMA_COLUMNS = ("event_id", "user_id", "type", "ts", "amount", "items", "rating")
REQUIRED_COLUMNS = ("event_id", "user_id", "type", "ts")
_TZ_SUFFIX = r"(?:[Zz]|[+-]\d{2}:\d{2})$"
_MAX_REPORTED = 5
Check = Callable[[pd.Series, str, str], None]  # (rows that are bad, column, message)


class EventLogError(ValueError):
    """An event log that does not follow the event schema; the message names rows and columns."""


def read_event_log(path: str | Path) -> pd.DataFrame:
    """Read and validate an event log; duplicate (user_id, event_id) pairs keep their first row."""
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:])
    if suffixes.endswith(".parquet"):
        raw = pd.read_parquet(path)
    elif suffixes.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        raw = pd.read_json(path, lines=True, dtype=False)
    elif suffixes.endswith((".csv", ".csv.gz")):
        # Ids and times stay text: "00042" is an id, not the number 42.
        text = pa.string()
        options = pa_csv.ConvertOptions(
            column_types=dict.fromkeys(("event_id", "user_id", "type", "ts"), text)
        )
        raw = pa_csv.read_csv(path, convert_options=options).to_pandas()
    else:
        raise EventLogError(f"{path}: unknown format; use .csv, .jsonl or .parquet")
    return validate_events(raw)


def write_event_log(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [c for c in SCHEMA_COLUMNS if c in frame.columns]
    if path.suffix == ".parquet":
        frame[columns].to_parquet(path, index=False)
    elif path.suffix in (".jsonl", ".ndjson"):
        frame[columns].to_json(path, orient="records", lines=True)
    else:
        frame[columns].to_csv(path, index=False)


def validate_events(raw: pd.DataFrame) -> pd.DataFrame:
    """Check a frame against the event schema, vectorised; return the columns the features need.

    Output columns: user_id, event_id, ts_s (int Unix seconds), kind (type code), cents, rating (0 if none).
    """
    frame, problems = check_events(raw)
    if problems:
        lines = [
            f"row {r}, column {p.column!r}: {p.message}" for p in problems for r in p.rows[:_MAX_REPORTED]
        ]
        raise EventLogError("invalid events:\n  " + "\n  ".join(lines[:20]))
    return frame.drop_duplicates(subset=["user_id", "event_id"], keep="first", ignore_index=True)


@dataclass(frozen=True)
class RowProblem:
    """One rule of the event schema and every row (position in the frame) that breaks it."""

    column: str
    message: str
    rows: npt.NDArray[np.intp]


def check_events(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Every row of `raw` in the columns the features need (as validate_events), and the rules rows
    break. Rows named in a problem hold placeholder values. A frame whose columns are wrong, or whose
    times carry no time zone at all, is refused whole (EventLogError): no row of it could be read."""
    unknown = sorted(set(raw.columns) - set(SCHEMA_COLUMNS))
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if unknown or missing:
        raise EventLogError(f"columns: missing {missing}, unknown {unknown}")
    raw = raw.reset_index(drop=True)
    problems: list[RowProblem] = []

    def check(bad: pd.Series, column: str, message: str) -> None:
        rows = np.flatnonzero(bad.to_numpy(dtype=bool, na_value=True))
        if len(rows):
            problems.append(RowProblem(column, message, rows))

    for column in ("event_id", "user_id"):
        text = raw[column].astype("string")
        check(~text.str.fullmatch(PRINTABLE_CHAR + "{1,128}").fillna(False), column, "1-128 printable chars")
    # A hash lookup per row: Series.map with a dict calls back into Python per row, 3x the time.
    position = _TYPE_NAMES.get_indexer(raw["type"])
    kind = pd.Series(np.where(position >= 0, _TYPE_CODES[position], np.nan), raw.index)
    check(kind.isna(), "type", f"must be one of {', '.join(spec.EVENT_TYPES)}")
    ts = _parse_ts(raw["ts"], check)

    numbers = {name: _numbers(raw, name, check) for name in FIELD_RULES}
    for name, values in numbers.items():
        allowed, required = FIELD_RULES[name]
        belongs = raw["type"].isin(allowed)
        check(~belongs & values.notna(), name, "is not allowed for this type")
        if required:
            check(belongs & values.isna(), name, "is required for this type")
    amount, items, rating = numbers["amount"], numbers["items"], numbers["rating"]
    check(~np.isfinite(amount.fillna(0)) | (amount < 0) | (amount > MAX_AMOUNT), "amount", "finite, 0..1e7")
    check((items.notna() & ((items < 1) | (items % 1 != 0))), "items", "must be an integer >= 1")
    check((rating.notna() & (~rating.isin([1, 2, 3, 4, 5]))), "rating", "must be an integer 1-5")

    # Placeholders where a value is bad, so that the conversions below cannot fail on those rows.
    amount_or_zero = amount.where(np.isfinite(amount.fillna(0)) & (amount.abs() <= MAX_AMOUNT), 0)
    frame = pd.DataFrame(
        {
            "user_id": raw["user_id"].astype(str),
            "event_id": raw["event_id"].astype(str),
            "ts_s": ts,
            "kind": kind.fillna(-1).astype(np.int64),
            "cents": np.rint(amount_or_zero.fillna(0).to_numpy() * 100).astype(np.int64),
            "rating": rating.where(rating.isin([1, 2, 3, 4, 5]), 0).astype(np.int64),
        }
    )
    return frame, problems


_TYPE_NAMES = pd.Index(list(spec.TYPE_CODE))
_TYPE_CODES = np.array(list(spec.TYPE_CODE.values()), dtype=np.float64)


def _numbers(raw: pd.DataFrame, name: str, check: Check) -> pd.Series:
    """An optional numeric column as floats, NaN where not given; a given value that is not a number
    is a problem. Text (CSV) is converted only where given: most rows leave most of these empty."""
    if name not in raw.columns:
        return pd.Series(np.nan, raw.index)
    column = raw[name]
    if pd.api.types.is_numeric_dtype(column):
        return pd.to_numeric(column, errors="coerce")
    given = (column.notna() & (column.astype("string").str.strip() != "")).to_numpy(dtype=bool)
    values = pd.Series(np.nan, raw.index)
    values[given] = pd.to_numeric(column[given], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    check(pd.Series(given, raw.index) & values.isna(), name, "must be a number")
    return values


def _parse_ts(column: pd.Series, check: Check) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dt, "tz", None) is None:
            raise EventLogError("column 'ts': naive timestamps; a time zone is required")
        # The years RFC 3339 text may give, read in each time's own zone as they would be written.
        check(~column.dt.year.isin(TS_YEARS), "ts", TS_MESSAGE)
        parsed = column.dt.tz_convert("UTC")
    else:
        text = column.astype("string")
        check(~text.str.contains(_TZ_SUFFIX, regex=True).fillna(False), "ts", "RFC 3339 with a time zone")
        # The API's rule (seconds required, T between date and time), so a file takes what /events takes.
        check(~text.str.fullmatch(RFC3339_TIME).fillna(False), "ts", TS_MESSAGE)
        parsed = pd.to_datetime(text.str.upper(), format="ISO8601", utc=True, errors="coerce")
        check(parsed.isna(), "ts", "not an RFC 3339 time")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    latest = (pd.Timestamp(LATEST_TS) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    check((seconds < 0) | (seconds >= latest), "ts", "must lie between 1970 and 2106")
    return seconds.fillna(0).astype(np.int64)


def event_arrays(events: pd.DataFrame, users: Sequence[str] | pd.Index) -> EventArrays:
    """The events of `users` (in that order) as arrays; events of other users are left out."""
    index = pd.Index(users)
    position = index.get_indexer(events["user_id"])
    mine = position >= 0
    return EventArrays(
        n_users=len(index),
        user=position[mine].astype(np.int64),
        ts=events["ts_s"].to_numpy(np.int64)[mine],
        kind=events["kind"].to_numpy(np.int64)[mine],
        cents=events["cents"].to_numpy(np.int64)[mine],
        rating=events["rating"].to_numpy(np.int64)[mine],
    )


def active_users(events: pd.DataFrame, as_of: int) -> pd.Index:
    """Users with at least one event at or before `as_of`, sorted."""
    return pd.Index(np.sort(events.loc[events["ts_s"] <= as_of, "user_id"].unique()))


def features(
    events: pd.DataFrame, as_of: int, users: Sequence[str] | pd.Index | None = None
) -> tuple[pd.Index, FloatMatrix]:
    """Feature matrix as of `as_of` for `users` (default: every user with an event <= as_of)."""
    index = active_users(events, as_of) if users is None else pd.Index(users)
    matrix, _known = compute_features(event_arrays(events, index), as_of)
    return index, matrix
