"""POST /events: parse, apply in one Redis round trip, render."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from app import metrics
from app.api.deps import ClockDep, StoreDep, require
from app.api.documented import ERRORS, json_body
from app.api.errors import Reply
from app.api.event_parsing import parse_events
from app.clock import Clock
from app.features.online import OnlineFeatureStore
from app.schemas import EventBatch, EventsAccepted

router = APIRouter(tags=["events"], dependencies=[require("events")])


async def answer(store: OnlineFeatureStore, clock: Clock, body: bytes) -> Reply:
    """The whole request; raises what errors.reply_for answers (a busy pool is 429 before any write)."""
    events = await parse_events(body)
    result = await store.apply(events, clock.now())
    metrics.count_events(result.accepted, result.duplicates, [r.reason for r in result.rejected])
    return Reply(200, orjson.dumps(result))


@router.post("/events", response_model=EventsAccepted, responses=ERRORS, openapi_extra=json_body(EventBatch))
async def post_events(request: Request, store: StoreDep, clock: ClockDep) -> Response:
    """Apply a batch of events; answered only after Redis has applied the accepted ones."""
    reply = await answer(store, clock, await request.body())
    return reply.response()
