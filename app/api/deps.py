"""Request dependencies, declared once as Annotated aliases.

They are async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from app.clock import Clock
from app.config import Settings
from app.features.online import OnlineFeatureStore
from app.model.batcher import MicroBatcher
from app.model.scorer import ChurnModel


@dataclass
class Services:
    """What the lifespan opens; `model` is the one reference a model swap replaces."""

    settings: Settings
    clock: Clock
    redis: Redis
    store: OnlineFeatureStore
    model: ChurnModel
    batcher: MicroBatcher


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
