"""Request dependencies, one per concern, declared once as Annotated aliases.

The lifespan puts each long-lived part on `app.state`; the raw fast routes read the same attributes.
The dependencies are async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis

from app.clock import Clock
from app.features.online import OnlineFeatureStore
from app.model.scoring import ScoringService


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning `app.state.<name>`, as the lifespan set it."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"get_{name}"
    return dependency


ClockDep = Annotated[Clock, Depends(from_state("clock"))]
StoreDep = Annotated[OnlineFeatureStore, Depends(from_state("store"))]
ScoringDep = Annotated[ScoringService, Depends(from_state("scoring"))]
RedisProbeDep = Annotated[Redis, Depends(from_state("probe"))]
