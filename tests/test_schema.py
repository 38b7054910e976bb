from typing import Any

import pytest
from pydantic import ValidationError

from app.schemas import Event

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
        ({"ts": "yesterday"}, "ts", "datetime"),
        ({"ts": "1960-01-01T00:00:00Z"}, "ts", "1970"),
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
