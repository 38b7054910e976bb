"""Parsing a request's events without holding the event loop for a whole large batch.

A 1,000-event body takes milliseconds to validate, and nothing else runs on the loop meanwhile: every
other request waits. Small bodies are validated in one pass; large ones are first split into their
events (the envelope: a list of 1..1,000 items and nothing else), then validated in chunks with a yield
to the loop between chunks. Both paths accept and refuse exactly the same bodies, with the same field
paths in their errors (tested). Both refuse a key given twice (app/api/strict_json.py); a large body that
must be parsed again to find it is parsed in a worker thread, for the same reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from app.api.strict_json import (
    batch_strings,
    event_strings,
    find_repeated_key,
    raise_repeated_key,
    refusal,
    repeats_ruled_out,
    validate,
)
from app.schemas import MAX_BATCH, Event, EventBatch

# Events validated between two yields to the loop: small, because every other request waits meanwhile
# (bystanders beside a client that sends 1,000-event batches: case 6 of `make bench-serve`).
CHUNK_EVENTS = 50
CHUNKED_ABOVE_BYTES = 32_768  # about 300 events


class InvalidEvents(Exception):
    """Validation errors of a chunked parse, with field paths as one whole-body pass would give them."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid fields")
        self.errors = errors


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


_EVENTS = TypeAdapter(list[Event])


async def parse_events(body: bytes) -> list[Event]:
    if len(body) <= CHUNKED_ABOVE_BYTES:
        return validate(EventBatch, body, batch_strings).events
    try:
        raw = _Envelope.model_validate_json(body).events
    except ValidationError as error:
        raise await asyncio.to_thread(refusal, error, body) from None
    events: list[Event] = []
    errors: list[dict[str, Any]] = []
    for start in range(0, len(raw), CHUNK_EVENTS):
        await asyncio.sleep(0)
        try:
            events.extend(_EVENTS.validate_python(raw[start : start + CHUNK_EVENTS]))
        except ValidationError as error:
            for detail in error.errors(include_url=False):
                index, *inside = detail["loc"]
                errors.append({**detail, "loc": ("events", start + int(index), *inside)})
    if errors:
        raise await asyncio.to_thread(find_repeated_key, body) or InvalidEvents(errors)
    if not repeats_ruled_out(body, 1 + event_strings(events)):  # 1: the "events" key
        await asyncio.to_thread(raise_repeated_key, body)
    return events
