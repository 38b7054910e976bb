from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.features import offline
from tests.helpers import T_S, before, event

ROWS = [
    event("a", "purchase", before(days=3), "1", amount=12.5, items=2),
    event("a", "review", before(days=2), "2", rating=4),
    event("b", "page_view", before(days=1), "3"),
    event("b", "page_view", before(days=1), "3"),  # duplicate event id
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_every_format_reads_back_the_same_events(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"events{suffix}"
    offline.write_event_log(pd.DataFrame(ROWS), path)
    events = offline.read_event_log(path)
    assert list(events["event_id"]) == ["1", "2", "3"]  # the duplicate is dropped
    assert list(events["cents"]) == [1250, 0, 0] and list(events["rating"]) == [0, 4, 0]
    index, matrix = offline.features(events, T_S)
    assert list(index) == ["a", "b"] and np.isfinite(matrix).all()


def test_optional_columns_may_be_absent(tmp_path: Path) -> None:
    path = tmp_path / "views.csv"
    pd.DataFrame([event("b", "page_view", before(days=1), "x")]).to_csv(path, index=False)
    assert len(offline.read_event_log(path)) == 1


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("ts", "2026-01-01T00:00:00", "row 0, column 'ts': RFC 3339 with a time zone"),
        # Files take exactly what /events takes: seconds and a T are required.
        ("ts", "2026-01-01T00:00Z", "row 0, column 'ts': must be RFC 3339 text with seconds"),
        ("ts", "2026-01-01 00:00:00Z", "row 0, column 'ts': must be RFC 3339 text with seconds"),
        # The years the API takes, whether the time comes as text or as a datetime (parquet).
        ("ts", "1970-06-01T00:00:00Z", "row 0, column 'ts': must be RFC 3339 text .* years 1971 to 2104"),
        ("ts", pd.Timestamp("1970-06-01", tz="UTC"), "row 0, column 'ts': must be RFC 3339 .* 1971 to 2104"),
        ("ts", pd.Timestamp("2105-01-01", tz="UTC"), "row 0, column 'ts': must be RFC 3339 .* 1971 to 2104"),
        ("amount", -3.0, "row 0, column 'amount'"),
        ("amount", np.nan, "row 0, column 'amount': is required for this type"),
        ("type", "teleport", "row 0, column 'type'"),
        ("user_id", "", "row 0, column 'user_id'"),
    ],
)
def test_invalid_rows_are_named_with_row_and_column(column: str, value: object, message: str) -> None:
    frame = pd.DataFrame(ROWS[:1])
    frame[column] = [value]
    with pytest.raises(offline.EventLogError, match=message.replace("(", r"\(")):
        offline.validate_events(frame)


def test_unknown_columns_are_refused() -> None:
    with pytest.raises(offline.EventLogError, match="unknown \\['colour'\\]"):
        offline.validate_events(pd.DataFrame(ROWS).assign(colour="red"))


def test_a_rating_on_a_page_view_is_refused() -> None:
    frame = pd.DataFrame([ROWS[2] | {"rating": 3}])
    with pytest.raises(offline.EventLogError, match="column 'rating': is not allowed for this type"):
        offline.validate_events(frame)
