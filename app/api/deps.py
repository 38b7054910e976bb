"""Request dependencies, one per concern, declared once as Annotated aliases.

The lifespan puts each long-lived part on `app.state`; the raw fast routes read the same attributes.
The dependencies are async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.auth import Caller, Keyring
from app.clock import Clock
from app.features.online import OnlineFeatureStore
from app.model.scoring import ScoringService
from app.redis_client import StoreClient


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning `app.state.<name>`, as the lifespan set it."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"get_{name}"
    return dependency


ClockDep = Annotated[Clock, Depends(from_state("clock"))]
StoreDep = Annotated[OnlineFeatureStore, Depends(from_state("store"))]
ScoringDep = Annotated[ScoringService, Depends(from_state("scoring"))]
RedisProbeDep = Annotated[StoreClient, Depends(from_state("probe"))]


# Documents the bearer scheme in OpenAPI; the check itself is the keyring's (the same for the fast routes).
_BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ck_<id>.<secret>`")


def require(*scopes: str, public_as: str | None = None) -> Any:
    """A dependency admitting callers whose key holds any of `scopes` (everyone when auth is off, or
    when `public_as` is named in the public endpoints setting)."""
    allowed = frozenset(scopes)

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
    ) -> Caller | None:
        keyring: Keyring | None = request.app.state.keyring
        if keyring is None or (public_as is not None and public_as in request.app.state.public_endpoints):
            return None
        caller = keyring.authenticate(request.headers.get("authorization"))
        keyring.authorize(caller, allowed)
        await request.app.state.rate_limiter.admit(caller)
        return caller

    dependency.__name__ = f"require_{'_or_'.join(sorted(allowed))}"
    return Depends(dependency)
