from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import ServicesDep
from app.api.disconnect import unless_disconnected
from app.schemas import ScoreRequest, ScoreResponse

router = APIRouter(tags=["score"])


@router.post("/score", response_model=ScoreResponse)
async def score(request: ScoreRequest, services: ServicesDep, http: Request) -> dict[str, Any]:
    """Churn probability, risk tier, segment and reasons for each user, in request order."""
    now = services.clock.now()
    raw, known = await services.store.read(request.user_ids, now)
    model = services.model  # one reference for the whole request, even if a swap happens meanwhile
    scaled = model.scale(raw)
    settings = services.settings
    logits, gradients = await unless_disconnected(
        http, services.batcher.submit(scaled, request.explain, settings.score_deadline_s)
    )
    results = model.results(request.user_ids, raw, scaled, known, logits, gradients, settings.explain_top_k)
    return {"model_version": model.version, "scored_at": now, "results": results}
