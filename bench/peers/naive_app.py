"""The tutorial-style service: one Redis hash of precomputed features per user, one HGETALL per user
awaited one at a time, the model called once per request (no batching), a pydantic response.

Run: python -m bench.peers.naive_app PORT REDIS_URL PREFIX
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager

import numpy as np
import redis.asyncio as aredis
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from bench.peers.model import FEATURE_NAMES, PeerModel


class ScoreRequest(BaseModel):
    user_ids: list[str]
    explain: bool = False


class UserScore(BaseModel):
    user_id: str
    churn_probability: float
    risk_tier: str
    segment: str
    known_user: bool


class ScoreResponse(BaseModel):
    model_version: str
    results: list[UserScore]


def create_app(redis_url: str, prefix: str) -> FastAPI:
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        state["model"] = PeerModel()
        state["redis"] = aredis.Redis.from_url(redis_url, decode_responses=True)
        yield
        await state["redis"].aclose()  # type: ignore[attr-defined]

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/score")
    async def score(request: ScoreRequest) -> ScoreResponse:
        redis: aredis.Redis = state["redis"]  # type: ignore[assignment]
        model: PeerModel = state["model"]  # type: ignore[assignment]
        rows, known = [], []
        for user_id in request.user_ids:
            stored = await redis.hgetall(f"{prefix}:{user_id}")
            known.append(bool(stored))
            rows.append([float(stored.get(name, 0.0)) for name in FEATURE_NAMES])
        scores = model.score(np.array(rows, dtype=np.float64))
        results = [
            UserScore(user_id=u, known_user=k, **s)
            for u, k, s in zip(request.user_ids, known, scores, strict=True)
        ]
        return ScoreResponse(model_version=model.version, results=results)

    return app


if __name__ == "__main__":
    port, redis_url, prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(
        create_app(redis_url, prefix), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False,
    )  # fmt: skip
