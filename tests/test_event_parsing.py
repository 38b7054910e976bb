"""Large event bodies are validated in chunks, with the same answers as one pass and the loop let go."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import ValidationError

from app.api.errors import field_path
from app.api.event_parsing import CHUNKED_ABOVE_BYTES, InvalidEvents, parse_events
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
        i899={"amount": "NAN", "colour": "red"},
    )
    errors = chunked(raw)
    assert errors == one_pass(raw)
    assert {path for path, _ in errors} == {
        "events[3].amount",
        "events[250].rating",
        "events[611].ts",
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
