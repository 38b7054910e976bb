"""POST /score: parse, admit, await the scoring pipeline, render."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import Receive

from app.api.deps import ScoringDep, require
from app.api.disconnect import result_unless_gone
from app.api.documented import ERRORS, json_body
from app.api.errors import Reply
from app.api.strict_json import BACKSLASH, score_strings, validate
from app.model.batcher import QueueFull
from app.model.scoring import ScoringService
from app.schemas import MAX_BATCH, ScoreRequest, ScoreResponse

router = APIRouter(tags=["score"], dependencies=[require("score")])


async def answer(scoring: ScoringService, body: bytes, receive: Receive) -> Reply:
    """The whole request; raises what errors.reply_for answers."""
    try:
        if not scoring.has_room(ids_at_least(body)):  # refused before parsing, reading Redis or computing
            raise QueueFull
        ask = validate(ScoreRequest, body, score_strings)
        job = scoring.submit(ask.user_ids, ask.explain)
    except QueueFull:
        raise await scoring.refuse() from None
    result = await result_unless_gone(job, receive)
    return Reply(200, orjson.dumps(result, option=orjson.OPT_UTC_Z))


def ids_at_least(body: bytes) -> int:
    """How many user ids a score request holds at least, before it is parsed: without a backslash no
    quote is escaped, so each of the at most two keys and each id is one pair of quotes. Under overload
    most requests are refused, and parsing them only to count their ids was most of a refusal's cost.
    Capped at what a request may hold, so that a body with too many ids is parsed and told so (422)."""
    if BACKSLASH in body:
        return 1
    return min(MAX_BATCH, max(1, body.count(b'"') // 2 - len(ScoreRequest.model_fields)))


@router.post("/score", response_model=ScoreResponse, responses=ERRORS, openapi_extra=json_body(ScoreRequest))
async def score(request: Request, scoring: ScoringDep) -> Response:
    """Churn probability, risk tier, segment and reasons for each user, in request order."""
    reply = await answer(scoring, await request.body(), request.receive)
    return reply.response()
