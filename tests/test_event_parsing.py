"""Large event bodies are validated in chunks, with the same answers as one pass and the loop let go."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from app.api.errors import field_path
from app.api.event_parsing import CHUNKED_ABOVE_BYTES, InvalidEvents, parse_events
from app.api.strict_json import DuplicateKey, MalformedJSON, event_strings, repeats_ruled_out
from app.schemas import EventBatch
from tests.helpers import before, event


def body(n: int, **bad: dict[str, Any]) -> bytes:
    events = [event(f"u{i % 37}", "purchase", before(days=i % 30), f"e{i}", amount=1.0 + i) for i in range(n)]
    for index, change in bad.items():
        events[int(index.lstrip("i"))] = {**events[int(index.lstrip("i"))], **change}
    raw = json.dumps({"events": events}).replace('"NAN"', "NaN").encode()
    assert len(raw) > CHUNKED_ABOVE_BYTES  # the chunked path is the one under test
    return raw


def one_pass(raw: bytes) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        EventBatch.model_validate_json(raw)
    return sorted((field_path(e["loc"]), e["msg"]) for e in info.value.errors())


def chunked(raw: bytes) -> list[tuple[str, str]]:
    with pytest.raises(InvalidEvents) as info:
        asyncio.run(parse_events(raw))
    return sorted((field_path(e["loc"]), e["msg"]) for e in info.value.errors)


def test_a_valid_large_body_gives_the_events_of_one_pass() -> None:
    raw = body(900)
    assert asyncio.run(parse_events(raw)) == EventBatch.model_validate_json(raw).events


def test_errors_in_several_chunks_carry_the_paths_and_messages_of_one_pass() -> None:
    raw = body(
        900,
        i3={"amount": None},
        i250={"type": "review", "amount": None, "rating": 9},
        i611={"ts": "2026-01-01T00:00:00"},
        i700={"ts": "1767225600"},
        i899={"amount": "NAN", "colour": "red"},
    )
    errors = chunked(raw)
    assert errors == one_pass(raw)
    assert {path for path, _ in errors} == {
        "events[3].amount",
        "events[250].rating",
        "events[611].ts",
        "events[700].ts",
        "events[899].amount",
        "events[899].colour",
    }


@pytest.mark.parametrize(
    "envelope",
    [
        {"events": [{"x": "y" * 40_000}], "more": 1},
        {"events": "y" * 40_000},
        {"events": [{"event_id": "x" * 40}] * 1001},
    ],
    ids=["unknown key", "not a list", "too many"],
)
def test_envelope_errors_match_one_pass(envelope: dict[str, Any]) -> None:
    raw = json.dumps(envelope).encode()
    assert len(raw) > CHUNKED_ABOVE_BYTES
    with pytest.raises(ValidationError) as chunked_error:
        asyncio.run(parse_events(raw))
    paths = {field_path(e["loc"]) for e in chunked_error.value.errors()}
    assert paths and paths <= {path for path, _ in one_pass(raw)}


def test_the_event_loop_runs_other_work_between_chunks() -> None:
    raw = body(1000)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        await parse_events(raw)
        task.cancel()

    asyncio.run(main())
    assert ticks >= 5  # one at least per 200-event chunk


@pytest.mark.parametrize("n", [3, 900], ids=["one pass", "chunked"])
def test_a_repeated_key_is_refused_on_both_paths_with_its_place(n: int) -> None:
    events = [event(f"u{i}", "page_view", before(days=1), f"e{i}") for i in range(n)]
    raw = json.dumps({"events": events}).encode()
    raw = raw.replace(b'"event_id": "e2"', b'"user_id": "x", "event_id": "e2"')
    assert (len(raw) > CHUNKED_ABOVE_BYTES) == (n > 3)
    with pytest.raises(DuplicateKey) as info:
        asyncio.run(parse_events(raw))
    assert field_path(info.value.loc) == "events[2].user_id"


@pytest.mark.parametrize("n", [3, 900], ids=["one pass", "chunked"])
def test_bodies_without_escapes_are_cleared_by_the_quote_count_alone(n: int) -> None:
    events = [
        event("type", "purchase", before(days=1), "events", amount=2.0, items=3),
        event("ts", "review", before(days=1), "rating", rating=5, amount=None),
        event("amount", "page_view", before(days=1), "items") | {"items": None},
    ]
    events += [event(f"u{i}", "refund", before(days=2), f"r{i}", amount=1.0) for i in range(n - 3)]
    raw = json.dumps({"events": events}, indent=1).encode()
    parsed = asyncio.run(parse_events(raw))
    assert len(parsed) == n
    # The slower parse that finds a repeated key is needed only when this does not hold.
    assert repeats_ruled_out(raw, 1 + event_strings(parsed))


@pytest.mark.parametrize("size", [100, 40_000], ids=["one pass", "chunked"])
def test_malformed_json_is_told_apart_from_schema_errors_on_both_paths(size: int) -> None:
    raw = b'{"events": [\n' + b" " * size + b"{]}"
    with pytest.raises(MalformedJSON, match=r"line 2 column \d+"):
        asyncio.run(parse_events(raw))
