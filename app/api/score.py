"""POST /score: parse, admit, await the scoring pipeline, render."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import Receive

from app.api.deps import ScoringDep, require
from app.api.disconnect import result_unless_gone
from app.api.documented import ERRORS, json_body
from app.api.errors import Reply
from app.api.strict_json import score_strings, validate
from app.model.batcher import QueueFull
from app.model.scoring import ScoringService
from app.schemas import ScoreRequest, ScoreResponse

router = APIRouter(tags=["score"], dependencies=[require("score")])


async def answer(scoring: ScoringService, body: bytes, receive: Receive) -> Reply:
    """The whole request; raises what errors.reply_for answers."""
    if not scoring.has_room():  # refuse before parsing, reading Redis or computing anything
        raise QueueFull
    ask = validate(ScoreRequest, body, score_strings)
    job = scoring.submit(ask.user_ids, ask.explain)
    result = await result_unless_gone(job, receive)
    return Reply(200, orjson.dumps(result, option=orjson.OPT_UTC_Z))


@router.post("/score", response_model=ScoreResponse, responses=ERRORS, openapi_extra=json_body(ScoreRequest))
async def score(request: Request, scoring: ScoringDep) -> Response:
    """Churn probability, risk tier, segment and reasons for each user, in request order."""
    reply = await answer(scoring, await request.body(), request.receive)
    return reply.response()
