"""Request dependencies, one per concern, declared once as Annotated aliases.

The lifespan puts each long-lived part on `app.state`; the raw fast routes read the same attributes.
They are async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from app.clock import Clock
from app.config import Settings
from app.features.online import OnlineFeatureStore
from app.model.scoring import ScoringService


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_store(request: Request) -> OnlineFeatureStore:
    store: OnlineFeatureStore = request.app.state.store
    return store


async def get_scoring(request: Request) -> ScoringService:
    scoring: ScoringService = request.app.state.scoring
    return scoring


async def get_probe(request: Request) -> Redis:
    probe: Redis = request.app.state.probe
    return probe


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
StoreDep = Annotated[OnlineFeatureStore, Depends(get_store)]
ScoringDep = Annotated[ScoringService, Depends(get_scoring)]
RedisProbeDep = Annotated[Redis, Depends(get_probe)]
