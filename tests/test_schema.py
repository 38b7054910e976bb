import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from app.schemas import TS_MESSAGE, Event

GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "type": "purchase",
    "ts": "2026-01-01T10:00:00+01:00",
    "amount": 9.5,
}


def errors(**changes: Any) -> dict[str, str]:
    data = {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}
    with pytest.raises(ValidationError) as info:
        Event.model_validate(data)
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}


def test_a_valid_event_parses_with_its_time_zone() -> None:
    event = Event.model_validate(GOOD)
    assert event.ts.utcoffset() is not None and event.ts.hour == 10 and event.amount == 9.5


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"ts": "2026-01-01T10:00:00"}, "ts", "timezone"),
        ({"ts": 1767225600}, "ts", "RFC 3339"),
        ({"ts": "yesterday"}, "ts", "RFC 3339 text with seconds"),
        ({"ts": "1960-01-01T00:00:00Z"}, "ts", "years 1971 to 2104"),
        ({"ts": "2105-06-01T00:00:00Z"}, "ts", "years 1971 to 2104"),
        ({"amount": -1.0}, "amount", "greater than or equal"),
        ({"amount": float("nan")}, "amount", "finite"),
        ({"amount": float("inf")}, "amount", "finite"),
        ({"amount": "3"}, "amount", "valid number"),
        ({"amount": ...}, "amount", "required for type 'purchase'"),
        ({"type": "page_view"}, "amount", "not allowed for type 'page_view'"),
        ({"type": "review", "amount": ..., "rating": 6}, "rating", "less than or equal to 5"),
        ({"type": "review", "amount": ...}, "rating", "required for type 'review'"),
        ({"rating": 3}, "rating", "not allowed"),
        ({"items": 0}, "items", "greater than or equal to 1"),
        ({"items": 2.5}, "items", "valid integer"),
        ({"items": "2"}, "items", "valid integer"),
        ({"items": True}, "items", "valid integer"),
        ({"type": "review", "amount": ..., "rating": 6.0}, "rating", "less than or equal to 5"),
        ({"type": "teleport"}, "type", "Input should be"),
        ({"user_id": ""}, "user_id", "at least 1"),
        ({"user_id": "x" * 129}, "user_id", "at most 128"),
        ({"event_id": "tab\there"}, "event_id", "pattern"),
        ({"user_id": 42}, "user_id", "valid string"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_bad_values_name_the_field_and_the_problem(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    found = errors(**changes)
    assert field in found, found
    assert fragment in found[field], found[field]


def from_json(ts: str) -> Event:
    return Event.model_validate_json(json.dumps({**GOOD, "ts": ts}))


@pytest.mark.parametrize(
    ("ts", "utc"),
    [
        ("2026-11-28T10:00:00Z", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        ("2026-11-28t10:00:00z", datetime(2026, 11, 28, 10, tzinfo=UTC)),  # RFC 3339 allows lower case
        ("2026-11-28T10:00:00.123+02:00", datetime(2026, 11, 28, 8, 0, 0, 123_000, tzinfo=UTC)),
        ("2026-11-28T10:00:00-05:30", datetime(2026, 11, 28, 15, 30, tzinfo=UTC)),
        ("2026-11-28T10:00:00-00:00", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        ("2026-11-28T10:00:00.1234567Z", datetime(2026, 11, 28, 10, 0, 0, 123_456, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_are_read_as_the_instant_they_name(ts: str, utc: datetime) -> None:
    assert from_json(ts).ts == utc


@pytest.mark.parametrize(
    "ts",
    [
        "1795861599",  # Unix seconds, milliseconds and fractional seconds as text
        "1795861599000",
        "1795861599.5",
        "2026-11-28T10:00Z",  # no seconds
        "2026-11-28 10:00:00Z",  # ISO 8601 and pydantic allow these separators; RFC 3339's grammar does not
        "2026-11-28_10:00:00Z",
        "2026-11-28T10:00:00+0200",
        "2026-11-28T10:00:00,5Z",
        "2026-11-28",
        "2026-11-28T10:00:00Z\n",
        " 2026-11-28T10:00:00Z",
        "\u0662026-11-28T10:00:00Z",  # a non-ASCII digit
    ],
)
def test_other_time_formats_are_refused_saying_what_is_expected(ts: str) -> None:
    # From JSON (/events) and from Python objects (the chunked parse of large bodies) alike.
    for validate in (from_json, lambda ts: Event.model_validate({**GOOD, "ts": ts})):
        with pytest.raises(ValidationError) as info:
            validate(ts)
        assert [(e["loc"], e["msg"]) for e in info.value.errors()] == [(("ts",), TS_MESSAGE)]


def test_datetime_objects_from_python_are_taken_and_checked() -> None:
    assert Event.model_validate({**GOOD, "ts": datetime(2026, 1, 1, tzinfo=UTC)}).ts.year == 2026
    with pytest.raises(ValidationError, match="timezone"):
        Event.model_validate({**GOOD, "ts": datetime(2026, 1, 1)})


@pytest.mark.parametrize(
    ("ts", "fragment"),
    [
        ("2026-11-28T10:00:00", "timezone"),
        ("2026-13-28T10:00:00Z", "month"),
        ("2026-11-28T10:00:00+24:00", "datetime"),
    ],
)
def test_well_shaped_but_impossible_times_are_refused_by_pydantic(ts: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        from_json(ts)
    assert fragment in info.value.errors()[0]["msg"]


def test_an_integer_is_any_json_number_without_a_fraction_as_json_schema_says() -> None:
    # The published schema says "integer", and JSON Schema counts 2.0 as one: it is taken, as 2.
    raw = json.dumps(GOOD | {"items": 2.0})
    assert Event.model_validate_json(raw).items == 2
    review = {k: v for k, v in GOOD.items() if k != "amount"} | {"type": "review", "rating": 4.0}
    parsed = Event.model_validate_json(json.dumps(review))
    assert parsed.rating == 4 and isinstance(parsed.rating, int)
