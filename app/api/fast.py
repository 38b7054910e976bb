"""Raw ASGI handlers for the two hot routes, in front of everything else.

FastAPI's routing, dependency solving and request/response objects, and even two layers of ASGI
middleware, cost more per request than the scoring itself once scoring is batched (see the README's
benchmarks). These handlers call the very same `answer` functions as the FastAPI routes, which stay
mounted and documented in the OpenAPI schema, and do the body limit and the latency metric inline;
only the dispatch differs. Every other request goes to `app` (the middleware, then FastAPI).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from app import metrics
from app.api import events, score
from app.api.auth import Keyring, header
from app.api.errors import Reply, reply_for, too_large
from app.api.middleware import declared_length_ok, read_bounded

Handler = Callable[[State, bytes, Receive], Awaitable[Reply]]

# path -> (the scope its key needs, the handler)
HANDLERS: dict[str, tuple[frozenset[str], Handler]] = {
    "/score": (frozenset({"score"}), lambda state, body, receive: score.answer(state.scoring, body, receive)),
    "/events": (frozenset({"events"}), lambda state, body, _: events.answer(state.store, state.clock, body)),
}


class FastRoutes:
    def __init__(self, app: ASGIApp, state: State, max_body_bytes: int) -> None:
        self.app = app
        self.state = state  # the app's state, where the lifespan puts the store and the scoring service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = HANDLERS.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        try:
            reply = await self._reply(*route, scope, receive)
            status = reply.status
            await reply.send(send)
        finally:
            metrics.request_seconds(scope["path"], "POST", status).observe(time.perf_counter() - started)

    async def _reply(
        self, allowed: frozenset[str], handler: Handler, scope: Scope, receive: Receive
    ) -> Reply:
        try:
            keyring: Keyring | None = self.state.keyring
            if keyring is not None:  # before the body is read: an unknown caller costs nothing more
                caller = keyring.authenticate(header(scope["headers"], b"authorization"))
                keyring.authorize(caller, allowed)
                await self.state.rate_limiter.admit(caller)
            if declared_length_ok(scope, self.max_body_bytes) is False:
                return too_large(self.max_body_bytes)
            body = await read_bounded(receive, self.max_body_bytes)
            if body is None:
                return too_large(self.max_body_bytes)
            return await handler(self.state, body, receive)
        except Exception as exc:
            reply = reply_for(exc)
            if reply is None:
                raise
            return reply
